// SPDX-License-Identifier: Apache-2.0
/* Stage 4: load or adopt the sock_addr programs, pin them, and write compiled frontends into their maps. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dataplane.h"
#include "util.h"
#include "sock_addr.skel.h"

/*
 * A retired slot run may still be read by a connect that looked up the old
 * frontend value just before the swap. BPF programs finish within
 * microseconds of that lookup, so one second is a generous grace period.
 */
#define KB_RUN_GRACE_NS 1000000000ull

/* ---- a small open-addressing index: hash -> element number, rebuilt every apply ---- */

struct kb_index {
	__u32 *tab;	/* element number + 1; 0 is empty */
	size_t cap;	/* power of two */
};

static __u64 kb_fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	__u64 h = 1469598103934665603ull;

	while (n--)
		h = (h ^ *b++) * 1099511628211ull;
	return h;
}

static int kb_index_init(struct kb_index *ix, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	ix->tab = calloc(cap, sizeof(*ix->tab));
	ix->cap = cap;
	return ix->tab ? 0 : -ENOMEM;
}

static void kb_index_free(struct kb_index *ix)
{
	free(ix->tab);
	ix->tab = NULL;
	ix->cap = 0;
}

/*
 * Find key (of size ksz) among elements whose keys sit at base + i * stride.
 * Returns the element number, or -1 with *hole set to where it would go.
 */
static long kb_index_find(const struct kb_index *ix, const void *key, size_t ksz, const void *base, size_t stride,
			  size_t *hole)
{
	size_t m = ix->cap - 1, i = kb_fnv(key, ksz) & m;

	for (; ix->tab[i]; i = (i + 1) & m) {
		size_t e = ix->tab[i] - 1;

		if (!memcmp((const char *)base + e * stride, key, ksz))
			return (long)e;
	}
	*hole = i;
	return -1;
}

/* ---- state mirrored from the maps ---- */

struct kb_fe_state {
	struct kb_frontend_key key;	/* first: the index compares it */
	struct kb_frontend val;
	struct kb_slot *slots;		/* copy of the run, val.nslots long */
};

/*
 * What identifies an endpoint for endpoint_id: the frontend it serves and its
 * address, so counters are per frontend and endpoint. Unix endpoints are told
 * apart by path.
 */
struct kb_ep_ident {
	struct kb_frontend_key fe;
	__u32 ip[4];
	__u16 port;	/* network order */
	__u8 family;
	__u8 kind;
	char path[108];
};

struct kb_ep_state {
	struct kb_ep_ident ident;	/* first: the index compares it */
	__u32 id;
};

struct kb_run {
	__u32 base, len;
	__u64 since;	/* retired at (CLOCK_MONOTONIC ns); 0 for free runs */
};

struct kb_runs {
	struct kb_run *v;
	size_t n, cap;
};

struct kb_ids {
	__u32 *free;	/* ids given back, reused LIFO */
	size_t nfree, cap;
	__u32 next;	/* never used so far */
	__u32 max;
};

struct kb_bpf_dataplane {
	struct kb_dataplane dp;
	struct sock_addr_bpf *skel;
	struct bpf_link **links;
	size_t nlinks;
	int ncpus;
	__u32 max_frontends, max_slots, max_endpoints, max_peers;

	struct kb_fe_state *fes;
	size_t nfes;
	struct kb_ep_state *eps;
	size_t neps;
	struct kb_runs free_runs, retired_runs;
	struct kb_ids fe_ids, ep_ids;
	struct kb_index feix, epix;	/* over fes / eps, for the stats lookups */
};

static __u64 kb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

static int kb_runs_push(struct kb_runs *r, __u32 base, __u32 len, __u64 since)
{
	if (!len)
		return 0;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct kb_run *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = (struct kb_run){ base, len, since };
	return 0;
}

static int kb_run_cmp(const void *a, const void *b)
{
	const struct kb_run *x = a, *y = b;

	return x->base < y->base ? -1 : x->base > y->base;
}

/* Move retired runs whose grace period is over to the free list, and merge neighbours. */
static int kb_reclaim_runs(struct kb_bpf_dataplane *d, __u64 now)
{
	struct kb_runs *f = &d->free_runs, *r = &d->retired_runs;
	size_t i, j = 0;
	int err;

	for (i = 0; i < r->n; i++) {
		if (now - r->v[i].since >= KB_RUN_GRACE_NS) {
			err = kb_runs_push(f, r->v[i].base, r->v[i].len, 0);
			if (err)
				return err;
		} else {
			r->v[j++] = r->v[i];
		}
	}
	r->n = j;
	if (!f->n)
		return 0;
	qsort(f->v, f->n, sizeof(*f->v), kb_run_cmp);
	for (i = 1, j = 0; i < f->n; i++) {
		if (f->v[j].base + f->v[j].len == f->v[i].base)
			f->v[j].len += f->v[i].len;
		else
			f->v[++j] = f->v[i];
	}
	f->n = j + 1;
	return 0;
}

/*
 * First fit over the free runs. When only retired runs could serve, wait for
 * the oldest of them to age, rather than fail an apply that fits.
 */
static int kb_alloc_run(struct kb_bpf_dataplane *d, __u32 n, __u32 *base)
{
	struct kb_runs *f = &d->free_runs;
	int err;

	for (;;) {
		__u64 now = kb_now_ns(), oldest = now;
		size_t i;

		err = kb_reclaim_runs(d, now);
		if (err)
			return err;
		for (i = 0; i < f->n; i++) {
			if (f->v[i].len < n)
				continue;
			*base = f->v[i].base;
			f->v[i].base += n;
			f->v[i].len -= n;
			if (!f->v[i].len) {
				memmove(&f->v[i], &f->v[i + 1], (f->n - i - 1) * sizeof(*f->v));
				f->n--;
			}
			return 0;
		}
		if (!d->retired_runs.n)
			return -ENOSPC;
		for (i = 0; i < d->retired_runs.n; i++)
			if (d->retired_runs.v[i].since < oldest)
				oldest = d->retired_runs.v[i].since;
		{
			__u64 wait = oldest + KB_RUN_GRACE_NS - now + 1000000;
			struct timespec ts = { (time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull) };

			kb_log_debug("waiting %llu ms for retired slot runs", (unsigned long long)(wait / 1000000));
			nanosleep(&ts, NULL);
		}
	}
}

static int kb_id_get(struct kb_ids *ids, __u32 *id)
{
	if (ids->nfree) {
		*id = ids->free[--ids->nfree];
		return 0;
	}
	if (ids->next >= ids->max)
		return -ENOSPC;
	*id = ids->next++;
	return 0;
}

static int kb_id_put(struct kb_ids *ids, __u32 id)
{
	if (ids->nfree == ids->cap) {
		size_t cap = ids->cap ? ids->cap * 2 : 64;
		__u32 *v = realloc(ids->free, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ids->free = v;
		ids->cap = cap;
	}
	ids->free[ids->nfree++] = id;
	return 0;
}

/* ---- errors and libbpf output ---- */

static int kb_fail(int err, const char *verb, const char *object)
{
	if (err > 0)
		err = -err;
	if (!err)
		err = -EIO;
	kb_err("failed to %s %s: %s", verb, object, strerror(-err));
	return err;
}

static int kb_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's own chatter is demoted one level: warnings show under -v, debug under -vv. */
	if (level == LIBBPF_DEBUG ? kb_verbosity < 2 : kb_verbosity < 1)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* ---- map helpers ---- */

static size_t kb_percpu_size(size_t value_size, int ncpus)
{
	return ((value_size + 7) & ~(size_t)7) * (size_t)ncpus;
}

/* Zero a per-CPU slot before its id names a new frontend or endpoint. */
static int kb_zero_percpu(struct bpf_map *map, __u32 id, int ncpus)
{
	size_t sz = kb_percpu_size(bpf_map__value_size(map), ncpus);
	void *zero = calloc(1, sz);
	int err;

	if (!zero)
		return -ENOMEM;
	err = bpf_map_update_elem(bpf_map__fd(map), &id, zero, 0) ? -errno : 0;
	free(zero);
	return err;
}

static int kb_write_slots(struct kb_bpf_dataplane *d, __u32 base, const struct kb_slot *s, __u32 n)
{
	int fd = bpf_map__fd(d->skel->maps.slots);
	__u32 *keys, i, count = n;
	int err = 0;

	keys = malloc(n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		keys[i] = base + i;
	if (bpf_map_update_batch(fd, keys, s, &count, NULL)) {
		/* Batch ops on arrays need 5.6+; fall back to one update each. */
		for (i = 0; i < n && !err; i++)
			if (bpf_map_update_elem(fd, &keys[i], &s[i], 0))
				err = -errno;
	}
	free(keys);
	return err;
}

/* Index the mirror by frontend key and endpoint identity, for the stats calls. */
static int kb_reindex(struct kb_bpf_dataplane *d)
{
	size_t i, hole;
	int err;

	kb_index_free(&d->feix);
	kb_index_free(&d->epix);
	err = kb_index_init(&d->feix, d->nfes);
	err = err ?: kb_index_init(&d->epix, d->neps);
	if (err)
		return err;
	for (i = 0; i < d->nfes; i++) {
		kb_index_find(&d->feix, &d->fes[i].key, sizeof(d->fes[i].key), d->fes, sizeof(*d->fes), &hole);
		d->feix.tab[hole] = (__u32)i + 1;
	}
	for (i = 0; i < d->neps; i++) {
		kb_index_find(&d->epix, &d->eps[i].ident, sizeof(d->eps[i].ident), d->eps, sizeof(*d->eps), &hole);
		d->epix.tab[hole] = (__u32)i + 1;
	}
	return 0;
}

/* ---- adopting pinned state ---- */

static int kb_ep_find(struct kb_bpf_dataplane *d, const struct kb_index *ix, const struct kb_ep_ident *id,
		      size_t *hole)
{
	return (int)kb_index_find(ix, id, sizeof(*id), d->eps, sizeof(*d->eps), hole);
}

static void kb_slot_ident(const struct kb_frontend_key *fe, const struct kb_slot *s, struct kb_ep_ident *id)
{
	memset(id, 0, sizeof(*id));
	id->fe = *fe;
	memcpy(id->ip, s->ip, sizeof(id->ip));
	id->port = s->port;
	id->family = s->family;
	id->kind = s->kind;
}

static int kb_run_base_cmp(const void *a, const void *b)
{
	const struct kb_fe_state *x = a, *y = b;

	return x->val.slot_base < y->val.slot_base ? -1 : x->val.slot_base > y->val.slot_base;
}

/*
 * Rebuild the user-space mirror from pinned maps, so that a restarted daemon
 * allocates around the runs that serve. Space between runs may have been
 * retired by the previous process a moment ago, so it starts out retired.
 */
static int kb_adopt_state(struct kb_bpf_dataplane *d)
{
	int fefd = bpf_map__fd(d->skel->maps.frontends), slfd = bpf_map__fd(d->skel->maps.slots);
	struct kb_frontend_key key, next, *prev = NULL;
	struct kb_index epix = { 0 };
	size_t i, cap = 0, epcap = 0;
	__u32 end = 0;
	__u64 now = kb_now_ns();
	int err = 0;
	bool *fe_used = NULL, *ep_used = NULL;

	while (!bpf_map_get_next_key(fefd, prev, &next)) {
		struct kb_fe_state *fs;

		key = next;
		prev = &key;
		if (d->nfes == cap) {
			cap = cap ? cap * 2 : 256;
			fs = realloc(d->fes, cap * sizeof(*fs));
			if (!fs)
				return -ENOMEM;
			d->fes = fs;
		}
		fs = &d->fes[d->nfes];
		memset(fs, 0, sizeof(*fs));
		fs->key = key;
		if (bpf_map_lookup_elem(fefd, &key, &fs->val))
			continue;	/* deleted under us: not ours to serve */
		if (fs->val.nslots > d->max_slots || fs->val.slot_base > d->max_slots - fs->val.nslots ||
		    fs->val.frontend_id >= d->max_frontends) {
			kb_log_info("pinned frontend with a bad slot run or id dropped from the mirror");
			continue;
		}
		if (fs->val.nslots) {
			fs->slots = calloc(fs->val.nslots, sizeof(*fs->slots));
			if (!fs->slots)
				return -ENOMEM;
			for (i = 0; i < fs->val.nslots; i++) {
				__u32 k = fs->val.slot_base + (__u32)i;

				if (bpf_map_lookup_elem(slfd, &k, &fs->slots[i]))
					return -errno;
			}
		}
		d->nfes++;
	}

	/* Free space: the gaps between the runs in use, retired now. */
	qsort(d->fes, d->nfes, sizeof(*d->fes), kb_run_base_cmp);
	for (i = 0; i < d->nfes; i++) {
		struct kb_frontend *v = &d->fes[i].val;

		if (!v->nslots)
			continue;
		if (v->slot_base < end)
			return -EUCLEAN;	/* overlapping runs: refuse to guess */
		err = kb_runs_push(&d->retired_runs, end, v->slot_base - end, now);
		if (err)
			return err;
		end = v->slot_base + v->nslots;
	}
	err = kb_runs_push(&d->retired_runs, end, d->max_slots - end, now);
	if (err)
		return err;

	/* Ids: the highest in use bounds the never-used range; holes below it are free. */
	fe_used = calloc(d->max_frontends, 1);
	ep_used = calloc(d->max_endpoints, 1);
	if (!fe_used || !ep_used) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < d->nfes; i++) {
		struct kb_fe_state *fs = &d->fes[i];

		fe_used[fs->val.frontend_id] = true;
		if (fs->val.frontend_id >= d->fe_ids.next)
			d->fe_ids.next = fs->val.frontend_id + 1;
		epcap += fs->val.nslots;
	}
	err = kb_index_init(&epix, epcap);
	if (err)
		goto out;
	d->eps = calloc(epcap ? epcap : 1, sizeof(*d->eps));
	if (!d->eps) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < d->nfes; i++) {
		struct kb_fe_state *fs = &d->fes[i];

		for (__u32 j = 0; j < fs->val.nslots; j++) {
			struct kb_ep_ident id;
			size_t hole;
			__u32 eid = fs->slots[j].endpoint_id;

			kb_slot_ident(&fs->key, &fs->slots[j], &id);
			if (kb_ep_find(d, &epix, &id, &hole) >= 0 || eid >= d->max_endpoints || ep_used[eid])
				continue;
			d->eps[d->neps].ident = id;
			d->eps[d->neps].id = eid;
			epix.tab[hole] = (__u32)++d->neps;
			ep_used[eid] = true;
			if (eid >= d->ep_ids.next)
				d->ep_ids.next = eid + 1;
		}
	}
	for (__u32 id = d->fe_ids.next; id-- > 0;)
		if (!fe_used[id] && (err = kb_id_put(&d->fe_ids, id)))
			goto out;
	for (__u32 id = d->ep_ids.next; id-- > 0;)
		if (!ep_used[id] && (err = kb_id_put(&d->ep_ids, id)))
			goto out;
	err = kb_reindex(d);
	kb_log_debug("adopted %zu frontends and %zu endpoints from pinned maps", d->nfes, d->neps);
out:
	kb_index_free(&epix);
	free(fe_used);
	free(ep_used);
	return err;
}

/* ---- apply ---- */

static void kb_cendpoint_ident(const struct kb_cfrontend *cf, const struct kb_cendpoint *ep, struct kb_ep_ident *id)
{
	memset(id, 0, sizeof(*id));
	id->fe = cf->key;
	if (ep->type == KB_EP_UNIX) {
		/* The slot carries the bridge listener (127.0.0.1:port); port 0 (no bridge) is refused. */
		id->kind = KB_SLOT_BRIDGE;
		id->family = AF_INET;
		memcpy(id->ip, ep->ip, sizeof(id->ip));
		id->port = htons(ep->port);
		if (ep->address)
			snprintf(id->path, sizeof(id->path), "%s", ep->address);
		return;
	}
	memcpy(id->ip, ep->ip, sizeof(id->ip));
	id->port = htons(ep->port);
	id->family = ep->family;
	id->kind = KB_SLOT_IP;
}

static void kb_addr_of(const struct kb_frontend_key *k, struct kb_addr_key *a)
{
	memset(a, 0, sizeof(*a));
	memcpy(a->ip, k->ip, sizeof(a->ip));
	a->family = k->family;
}

/*
 * Make a hash map hold exactly `n` entries (keys at kbase, values at vbase):
 * add and change first, then delete what is not wanted any more.
 */
static int kb_sync_hash(struct bpf_map *map, const void *kbase, const void *vbase, size_t n)
{
	size_t ksz = bpf_map__key_size(map), vsz = bpf_map__value_size(map), i, hole;
	int fd = bpf_map__fd(map), err = 0;
	struct kb_index ix = { 0 };
	char *key = NULL, *prev = NULL, *cur = NULL, *stale = NULL;
	size_t nstale = 0, capstale = 0;

	err = kb_index_init(&ix, n);
	if (err)
		return err;
	key = malloc(ksz);
	prev = malloc(ksz);
	cur = malloc(vsz);
	if (!key || !prev || !cur) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const void *k = (const char *)kbase + i * ksz, *v = (const char *)vbase + i * vsz;

		if (kb_index_find(&ix, k, ksz, kbase, ksz, &hole) >= 0)
			continue;	/* duplicate: the first one wins */
		ix.tab[hole] = (__u32)i + 1;
		if (!bpf_map_lookup_elem(fd, k, cur) && !memcmp(cur, v, vsz))
			continue;
		if (bpf_map_update_elem(fd, k, v, BPF_ANY)) {
			err = -errno;
			goto out;
		}
	}
	/* Collect first: deleting while walking get_next_key restarts the walk. */
	for (char *p = NULL; !bpf_map_get_next_key(fd, p, key); p = prev) {
		memcpy(prev, key, ksz);
		if (kb_index_find(&ix, key, ksz, kbase, ksz, &hole) >= 0)
			continue;
		if (nstale == capstale) {
			char *s;

			capstale = capstale ? capstale * 2 : 64;
			s = realloc(stale, capstale * ksz);
			if (!s) {
				err = -ENOMEM;
				goto out;
			}
			stale = s;
		}
		memcpy(stale + nstale++ * ksz, key, ksz);
	}
	for (i = 0; i < nstale; i++)
		if (bpf_map_delete_elem(fd, stale + i * ksz) && errno != ENOENT) {
			err = -errno;
			goto out;
		}
out:
	kb_index_free(&ix);
	free(key);
	free(prev);
	free(cur);
	free(stale);
	return err;
}

static int kb_bpf_apply(struct kb_dataplane *dp, const struct kb_compiled *c)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_index feix = { 0 }, epix = { 0 }, nfeix = { 0 }, nepix = { 0 };
	struct kb_fe_state *nfes = NULL;
	struct kb_ep_state *neps = NULL;
	struct kb_endpoint_key *rkeys = NULL;
	struct kb_frontend_key *rvals = NULL;
	struct kb_addr_key *akeys = NULL;
	__u32 *avals = NULL;
	size_t nnfes = 0, nneps = 0, nrev = 0, naddr = 0, totslots = 0, i, hole;
	bool *matched = NULL, *changed = NULL, *fresh_ep = NULL;
	__u64 freeslots = 0, needslots = 0;
	int fefd = bpf_map__fd(d->skel->maps.frontends);
	int err = 0;

	/* Sized for every slot and every endpoint: both index into neps and the reverse keys. */
	for (i = 0; i < c->nfes; i++)
		totslots += c->fes[i].nslots + c->fes[i].neps;
	if (c->nfes > d->max_frontends) {
		err = -ENOSPC;
		kb_err("failed to apply %zu frontends: the frontends map holds %u", c->nfes, d->max_frontends);
		return err;
	}

	nfes = calloc(c->nfes ? c->nfes : 1, sizeof(*nfes));
	neps = calloc(totslots ? totslots : 1, sizeof(*neps));
	rkeys = calloc(totslots ? totslots : 1, sizeof(*rkeys));
	rvals = calloc(totslots ? totslots : 1, sizeof(*rvals));
	akeys = calloc(c->nfes ? c->nfes : 1, sizeof(*akeys));
	avals = calloc(c->nfes ? c->nfes : 1, sizeof(*avals));
	matched = calloc(d->nfes ? d->nfes : 1, sizeof(*matched));
	changed = calloc(c->nfes ? c->nfes : 1, sizeof(*changed));
	fresh_ep = calloc(totslots ? totslots : 1, sizeof(*fresh_ep));
	if (!nfes || !neps || !rkeys || !rvals || !akeys || !avals || !matched || !changed || !fresh_ep) {
		err = -ENOMEM;
		goto out_fail;
	}
	err = kb_index_init(&feix, d->nfes);
	err = err ?: kb_index_init(&epix, d->neps);
	err = err ?: kb_index_init(&nfeix, c->nfes);
	err = err ?: kb_index_init(&nepix, totslots);
	if (err)
		goto out_fail;
	for (i = 0; i < d->nfes; i++) {
		kb_index_find(&feix, &d->fes[i].key, sizeof(d->fes[i].key), d->fes, sizeof(*d->fes), &hole);
		feix.tab[hole] = (__u32)i + 1;
	}
	for (i = 0; i < d->neps; i++) {
		kb_ep_find(d, &epix, &d->eps[i].ident, &hole);
		epix.tab[hole] = (__u32)i + 1;
	}

	/* Pass 1, no kernel writes: build the new mirror, reusing ids and unchanged runs. */
	for (i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *cf = &c->fes[i];
		struct kb_fe_state *nf;
		long old;

		if (kb_index_find(&nfeix, &cf->key, sizeof(cf->key), nfes, sizeof(*nfes), &hole) >= 0) {
			kb_log_debug("duplicate frontend %s:%u ignored", cf->address, cf->port);
			continue;
		}
		nfeix.tab[hole] = (__u32)nnfes + 1;
		nf = &nfes[nnfes++];
		nf->key = cf->key;
		nf->val.nslots = cf->nslots;
		nf->val.lb = (__u8)cf->lb;
		nf->val.frontend_id = UINT32_MAX;
		if (cf->nslots) {
			nf->slots = calloc(cf->nslots, sizeof(*nf->slots));
			if (!nf->slots) {
				err = -ENOMEM;
				goto out_fail;
			}
		}
		/*
		 * Every endpoint gets an id, also one that holds no slot now (a
		 * standby priority, a drained endpoint), so its counters survive
		 * while it waits.
		 */
		for (size_t k = 0; k < cf->neps; k++) {
			struct kb_ep_ident id;

			kb_cendpoint_ident(cf, &cf->eps[k], &id);
			if (kb_index_find(&nepix, &id, sizeof(id), neps, sizeof(*neps), &hole) < 0) {
				long o = kb_ep_find(d, &epix, &id, &(size_t){ 0 });

				neps[nneps].ident = id;
				neps[nneps].id = o >= 0 ? d->eps[o].id : UINT32_MAX;
				nepix.tab[hole] = (__u32)++nneps;
			}
		}
		for (__u32 s = 0; s < cf->nslots; s++) {
			const struct kb_cendpoint *ep = &cf->eps[cf->slots[s]];
			struct kb_slot *sl = &nf->slots[s];
			struct kb_ep_ident id;
			long e;

			kb_cendpoint_ident(cf, ep, &id);
			memcpy(sl->ip, id.ip, sizeof(sl->ip));
			sl->port = id.port;
			sl->family = id.family;
			sl->kind = id.kind;
			e = kb_index_find(&nepix, &id, sizeof(id), neps, sizeof(*neps), &hole);
			if (e < 0) {
				long o = kb_ep_find(d, &epix, &id, &(size_t){ 0 });

				e = (long)nneps++;
				neps[e].ident = id;
				neps[e].id = o >= 0 ? d->eps[o].id : UINT32_MAX;
				nepix.tab[hole] = (__u32)e + 1;
			}
			/* Replies from a UDP endpoint show its frontend; the first frontend wins (kb_sync_hash). */
			if (cf->proto == KB_PROTO_UDP && id.kind == KB_SLOT_IP) {
				struct kb_endpoint_key *rk = &rkeys[nrev];

				memcpy(rk->ip, id.ip, sizeof(rk->ip));
				rk->port = id.port;
				rk->family = id.family;
				rk->proto = KB_PROTO_UDP;
				rvals[nrev++] = cf->key;
			}
			sl->endpoint_id = (__u32)e;	/* fixed up below, once ids exist */
		}
		old = kb_index_find(&feix, &cf->key, sizeof(cf->key), d->fes, sizeof(*d->fes), &hole);
		if (old >= 0) {
			matched[old] = true;
			nf->val.frontend_id = d->fes[old].val.frontend_id;
			nf->val.slot_base = d->fes[old].val.slot_base;	/* kept if unchanged */
		}
		kb_addr_of(&cf->key, &akeys[naddr]);
		avals[naddr++] = 1;
	}

	/* Endpoint ids: kept for known endpoints; new ones are zeroed once the apply is known to fit. */
	for (i = 0; i < nneps; i++) {
		if (neps[i].id != UINT32_MAX)
			continue;
		err = kb_id_get(&d->ep_ids, &neps[i].id);
		if (err) {
			kb_err("failed to apply endpoints: more than %u distinct endpoints", d->max_endpoints);
			goto out_put_ids;
		}
		fresh_ep[i] = true;
	}
	for (i = 0; i < nnfes; i++)
		for (__u32 s = 0; s < nfes[i].val.nslots; s++)
			nfes[i].slots[s].endpoint_id = neps[nfes[i].slots[s].endpoint_id].id;

	/*
	 * Capacity, checked before any write so that a too-big apply changes
	 * nothing: changed frontends need fresh runs, and the space they may use
	 * is free, retired, or held by frontends that go away or change.
	 */
	for (i = 0; i < d->free_runs.n; i++)
		freeslots += d->free_runs.v[i].len;
	for (i = 0; i < d->retired_runs.n; i++)
		freeslots += d->retired_runs.v[i].len;
	for (i = 0; i < d->nfes; i++)
		if (!matched[i])
			freeslots += d->fes[i].val.nslots;
	for (i = 0; i < nnfes; i++) {
		struct kb_fe_state *nf = &nfes[i];
		long old = kb_index_find(&feix, &nf->key, sizeof(nf->key), d->fes, sizeof(*d->fes), &hole);
		struct kb_fe_state *of = old >= 0 ? &d->fes[old] : NULL;

		changed[i] = !(of && of->val.lb == nf->val.lb && of->val.nslots == nf->val.nslots &&
			       (!nf->val.nslots ||
				!memcmp(of->slots, nf->slots, nf->val.nslots * sizeof(*nf->slots))));
		if (changed[i])
			needslots += nf->val.nslots;
		if (changed[i] && of)
			freeslots += of->val.nslots;
	}
	if (needslots > freeslots) {
		err = -ENOSPC;
		kb_err("failed to apply %llu new slots: %llu free of %u in the slots map",
		       (unsigned long long)needslots, (unsigned long long)freeslots, d->max_slots);
		goto out_put_ids;
	}
	for (i = 0; i < nneps; i++) {
		if (!fresh_ep[i])
			continue;
		err = kb_zero_percpu(d->skel->maps.endpoint_stats, neps[i].id, d->ncpus);
		if (err) {
			err = kb_fail(err, "zero", "endpoint counters");
			goto out_put_ids;
		}
	}

	/* Reverse entries and frontend addresses go in before the frontends that need them. */
	{
		/* Add-only pass: deletes wait until the frontends are gone. */
		int rfd = bpf_map__fd(d->skel->maps.udp_reverse), afd = bpf_map__fd(d->skel->maps.frontend_addrs);

		for (i = 0; i < nrev; i++)
			if (bpf_map_update_elem(rfd, &rkeys[i], &rvals[i], BPF_NOEXIST) && errno != EEXIST) {
				err = kb_fail(-errno, "update", "udp_reverse map");
				goto out_put_ids;
			}
		for (i = 0; i < naddr; i++)
			if (bpf_map_update_elem(afd, &akeys[i], &avals[i], BPF_NOEXIST) && errno != EEXIST) {
				err = kb_fail(-errno, "update", "frontend_addrs map");
				goto out_put_ids;
			}
	}

	/* Frontends that are gone go first, so that their runs can serve the new ones after the grace period. */
	for (i = 0; i < d->nfes; i++) {
		if (matched[i])
			continue;
		if (bpf_map_delete_elem(fefd, &d->fes[i].key) && errno != ENOENT) {
			err = kb_fail(-errno, "delete", "frontend");
			goto out_partial;
		}
		kb_runs_push(&d->retired_runs, d->fes[i].val.slot_base, d->fes[i].val.nslots, kb_now_ns());
		kb_id_put(&d->fe_ids, d->fes[i].val.frontend_id);
	}
	/* Pass 2: publish each changed frontend: new run first, then one value update. */
	for (i = 0; i < nnfes; i++) {
		struct kb_fe_state *nf = &nfes[i];
		long old = kb_index_find(&feix, &nf->key, sizeof(nf->key), d->fes, sizeof(*d->fes), &hole);
		struct kb_fe_state *of = old >= 0 ? &d->fes[old] : NULL;
		bool fresh_id = nf->val.frontend_id == UINT32_MAX;

		if (!changed[i]) {
			nf->val = of->val;
			continue;
		}
		if (fresh_id) {
			err = kb_id_get(&d->fe_ids, &nf->val.frontend_id);
			if (err) {
				kb_err("failed to apply frontend %u: no frontend id left", (unsigned)i);
				goto out_partial;
			}
			err = kb_zero_percpu(d->skel->maps.frontend_stats, nf->val.frontend_id, d->ncpus);
			err = err ?: kb_zero_percpu(d->skel->maps.rr_cursors, nf->val.frontend_id, d->ncpus);
			if (err) {
				err = kb_fail(err, "zero", "frontend counters");
				goto out_partial;
			}
		}
		nf->val.slot_base = 0;
		if (nf->val.nslots) {
			err = kb_alloc_run(d, nf->val.nslots, &nf->val.slot_base);
			if (err) {
				err = kb_fail(err, "allocate", "slot run");
				goto out_partial;
			}
			err = kb_write_slots(d, nf->val.slot_base, nf->slots, nf->val.nslots);
			if (err) {
				err = kb_fail(err, "write", "slots map");
				goto out_partial;
			}
		}
		if (bpf_map_update_elem(fefd, &nf->key, &nf->val, BPF_ANY)) {
			err = kb_fail(-errno, "update", "frontends map");
			goto out_partial;
		}
		if (of)
			kb_runs_push(&d->retired_runs, of->val.slot_base, of->val.nslots, kb_now_ns());
	}

	for (i = 0; i < d->neps; i++)
		if (kb_index_find(&nepix, &d->eps[i].ident, sizeof(d->eps[i].ident), neps, sizeof(*neps), &hole) < 0)
			kb_id_put(&d->ep_ids, d->eps[i].id);

	err = kb_sync_hash(d->skel->maps.udp_reverse, rkeys, rvals, nrev);
	err = err ?: kb_sync_hash(d->skel->maps.frontend_addrs, akeys, avals, naddr);
	if (err)
		err = kb_fail(err, "prune", "reverse and address maps");

	/* The new mirror replaces the old one. */
	for (i = 0; i < d->nfes; i++)
		free(d->fes[i].slots);
	free(d->fes);
	free(d->eps);
	d->fes = nfes;
	d->nfes = nnfes;
	d->eps = neps;
	d->neps = nneps;
	nfes = NULL;
	neps = NULL;
	if (kb_reindex(d) && !err)
		err = kb_fail(-ENOMEM, "index", "dataplane state");
	goto out;

out_partial:
	/*
	 * Each frontend already published is whole; the mirror must match the
	 * maps, so adopt them again rather than guess.
	 */
	for (i = 0; i < d->nfes; i++)
		free(d->fes[i].slots);
	free(d->fes);
	free(d->eps);
	d->fes = NULL;
	d->eps = NULL;
	d->nfes = d->neps = 0;
	d->free_runs.n = d->retired_runs.n = 0;
	d->fe_ids.next = d->ep_ids.next = 0;
	d->fe_ids.nfree = d->ep_ids.nfree = 0;
	if (kb_adopt_state(d))
		kb_err("failed to rebuild dataplane state: maps may hold unreachable runs");
	goto out;
out_put_ids:
	for (i = 0; i < nneps; i++)
		if (fresh_ep[i])
			kb_id_put(&d->ep_ids, neps[i].id);
	goto out;
out_fail:
	kb_fail(err, "apply", "frontends");
out:
	if (nfes)
		for (i = 0; i < nnfes; i++)
			free(nfes[i].slots);
	free(nfes);
	free(neps);
	free(rkeys);
	free(rvals);
	free(akeys);
	free(avals);
	free(matched);
	free(changed);
	free(fresh_ep);
	kb_index_free(&feix);
	kb_index_free(&epix);
	kb_index_free(&nfeix);
	kb_index_free(&nepix);
	return err;
}

static int kb_sum_stats(struct kb_bpf_dataplane *d, struct bpf_map *map, __u32 id, struct kb_conn_stats *out)
{
	struct kb_conn_stats *v = calloc((size_t)d->ncpus, sizeof(*v));
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(bpf_map__fd(map), &id, v)) {
		err = kb_fail(-errno, "read", bpf_map__name(map));
		goto out;
	}
	for (int c = 0; c < d->ncpus; c++) {
		out->connects += v[c].connects;
		out->refused += v[c].refused;
		out->established += v[c].established;
		out->failed += v[c].failed;
	}
out:
	free(v);
	return err;
}

static int kb_bpf_frontend_stats(struct kb_dataplane *dp, const struct kb_cfrontend *fe, struct kb_conn_stats *out)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	size_t hole;
	long i;

	memset(out, 0, sizeof(*out));
	if (!d->feix.cap)
		return -ENOENT;
	i = kb_index_find(&d->feix, &fe->key, sizeof(fe->key), d->fes, sizeof(*d->fes), &hole);
	if (i < 0)
		return -ENOENT;
	return kb_sum_stats(d, d->skel->maps.frontend_stats, d->fes[i].val.frontend_id, out);
}

static int kb_bpf_endpoint_stats(struct kb_dataplane *dp, const struct kb_cfrontend *fe, size_t ep,
				 struct kb_conn_stats *out)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_ep_ident id;
	size_t hole;
	long i;

	memset(out, 0, sizeof(*out));
	if (ep >= fe->neps || !d->epix.cap)
		return -ENOENT;
	kb_cendpoint_ident(fe, &fe->eps[ep], &id);
	i = kb_index_find(&d->epix, &id, sizeof(id), d->eps, sizeof(*d->eps), &hole);
	if (i < 0)
		return -ENOENT;
	return kb_sum_stats(d, d->skel->maps.endpoint_stats, d->eps[i].id, out);
}

static void kb_bpf_close(struct kb_dataplane *dp)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	size_t i;

	if (!d)
		return;
	/* Closing a pinned link's fd leaves it attached: steering outlives us. */
	for (i = 0; i < d->nlinks; i++)
		bpf_link__destroy(d->links[i]);
	free(d->links);
	sock_addr_bpf__destroy(d->skel);
	for (i = 0; i < d->nfes; i++)
		free(d->fes[i].slots);
	free(d->fes);
	free(d->eps);
	free(d->free_runs.v);
	free(d->retired_runs.v);
	free(d->fe_ids.free);
	free(d->ep_ids.free);
	kb_index_free(&d->feix);
	kb_index_free(&d->epix);
	free(d);
}

static const struct kb_dataplane_ops kb_bpf_ops = {
	.apply = kb_bpf_apply,
	.frontend_stats = kb_bpf_frontend_stats,
	.endpoint_stats = kb_bpf_endpoint_stats,
	.close = kb_bpf_close,
};

/* ---- open, attach, pin ---- */

static int kb_mkdir(const char *path, mode_t mode)
{
	return mkdir(path, mode) && errno != EEXIST ? -errno : 0;
}

static int kb_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (kb_mkdir(buf, 0755))
			return -errno;
		*p = '/';
	}
	return kb_mkdir(buf, mode);
}

/* Mount bpffs on the pin directory's parent unless one serves there already, as Cilium's agent does. */
static int kb_ensure_bpffs(const char *dir)
{
	char parent[PATH_MAX], links[PATH_MAX];
	struct statfs sfs;
	char *slash;
	int err;

	if (snprintf(parent, sizeof(parent), "%s", dir) >= (int)sizeof(parent))
		return kb_fail(-ENAMETOOLONG, "use", dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return kb_fail(-EINVAL, "use pin directory", dir);
	*slash = '\0';
	if (statfs(parent, &sfs) || sfs.f_type != BPF_FS_MAGIC) {
		err = kb_mkdir_p(parent, 0755);
		if (err)
			return kb_fail(err, "create", parent);
		if (mount("bpf", parent, "bpf", 0, NULL))
			return kb_fail(-errno, "mount bpffs on", parent);
		kb_log_debug("mounted bpffs on %s", parent);
	}
	err = kb_mkdir(dir, 0700);
	if (err)
		return kb_fail(err, "create", dir);
	snprintf(links, sizeof(links), "%s/links", dir);
	err = kb_mkdir(links, 0700);
	if (err)
		return kb_fail(err, "create", links);
	return 0;
}

/*
 * Reuse the pinned link for prog: point it at the freshly loaded program
 * (an atomic replacement, no gap), or move it if it serves another cgroup.
 * Returns 1 when adopted, 0 when there is nothing usable to adopt.
 */
static int kb_adopt_link(const char *path, struct bpf_program *prog, __u64 cgid, struct bpf_link **out)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);
	struct bpf_link *link;
	int err;

	if (access(path, F_OK))
		return errno == ENOENT ? 0 : -errno;
	link = bpf_link__open(path);
	if (!link)
		return -errno;
	if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 && info.type == BPF_LINK_TYPE_CGROUP &&
	    info.cgroup.cgroup_id != cgid) {
		kb_log_info("moving %s to the configured cgroup", bpf_program__name(prog));
		bpf_link_detach(bpf_link__fd(link));
		bpf_link__destroy(link);
		unlink(path);
		return 0;
	}
	err = bpf_link__update_program(link, prog);
	if (err) {
		bpf_link__destroy(link);
		return err;
	}
	*out = link;
	return 1;
}

int kb_dataplane_bpf_open(const struct kb_dataplane_opts *opts, struct kb_dataplane **out)
{
	const char *pin = opts->bpffs ? opts->bpffs : KB_PIN_DIR_DEFAULT;
	struct kb_bpf_dataplane *d;
	struct bpf_program *prog;
	struct bpf_map *map;
	char path[PATH_MAX];
	bool adopted = false;
	struct stat st;
	int err, cgfd = -1;

	libbpf_set_print(kb_libbpf_print);
	*out = NULL;
	if (!opts->cgroup)
		return kb_fail(-EINVAL, "open", "dataplane: no cgroup given");

	d = calloc(1, sizeof(*d));
	if (!d)
		return kb_fail(-ENOMEM, "allocate", "dataplane");
	d->dp.ops = &kb_bpf_ops;
	d->max_frontends = opts->max_frontends ? opts->max_frontends : KB_MAX_FRONTENDS_DEFAULT;
	d->max_slots = opts->max_slots ? opts->max_slots : KB_MAX_SLOTS_DEFAULT;
	d->max_endpoints = opts->max_endpoints ? opts->max_endpoints : KB_MAX_ENDPOINTS_DEFAULT;
	d->max_peers = KB_MAX_PEERS_DEFAULT;
	d->ncpus = libbpf_num_possible_cpus();
	if (d->ncpus <= 0) {
		err = kb_fail(d->ncpus ? d->ncpus : -EINVAL, "count", "possible CPUs");
		goto out_free;
	}

	cgfd = open(opts->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0 || fstat(cgfd, &st)) {
		err = kb_fail(-errno, "open cgroup", opts->cgroup);
		goto out_free;
	}
	err = kb_ensure_bpffs(pin);
	if (err)
		goto out_close_cg;

	d->skel = sock_addr_bpf__open();
	if (!d->skel) {
		err = kb_fail(-errno, "open", "sock_addr BPF object");
		goto out_close_cg;
	}

	/* Sizes: a pinned map keeps its own, so that it can be reused as it is. */
	bpf_object__for_each_map(map, d->skel->obj) {
		const char *name = bpf_map__name(map);
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info), max = 0;
		int fd;

		if (bpf_map__is_internal(map))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin, name);
		fd = bpf_obj_get(path);
		if (fd >= 0 && map == d->skel->maps.sock_peers && !bpf_obj_get_info_by_fd(fd, &info, &len) &&
		    (info.type != bpf_map__type(map) || info.map_flags != bpf_map__map_flags(map))) {
			/*
			 * Pinned by an older kbackend with another kind of map (an
			 * LRU). libbpf cannot reuse it, and its records only serve
			 * getpeername of live sockets, so it is dropped rather than
			 * block the upgrade: those sockets then show their endpoint.
			 */
			kb_log_info("replacing pinned %s: its map type changed", name);
			close(fd);
			unlink(path);
			fd = -1;
			memset(&info, 0, sizeof(info));
		}
		if (fd >= 0) {
			if (!bpf_obj_get_info_by_fd(fd, &info, &len))
				max = info.max_entries;
			close(fd);
			adopted = true;
		} else if (map == d->skel->maps.frontends || map == d->skel->maps.frontend_stats ||
			   map == d->skel->maps.rr_cursors || map == d->skel->maps.frontend_addrs) {
			max = d->max_frontends;
		} else if (map == d->skel->maps.slots) {
			max = d->max_slots;
		} else if (map == d->skel->maps.endpoint_stats || map == d->skel->maps.udp_reverse) {
			max = d->max_endpoints;
		} else if (map == d->skel->maps.sock_peers) {
			max = d->max_peers;
		}
		if (max)
			bpf_map__set_max_entries(map, max);
		/* libbpf reuses a compatible pinned map, or pins the new one at load. */
		err = bpf_map__set_pin_path(map, path);
		if (err) {
			err = kb_fail(err, "set pin path for", name);
			goto out_destroy;
		}
	}
	d->max_frontends = bpf_map__max_entries(d->skel->maps.frontends);
	d->max_slots = bpf_map__max_entries(d->skel->maps.slots);
	d->max_endpoints = bpf_map__max_entries(d->skel->maps.endpoint_stats);
	d->fe_ids.max = bpf_map__max_entries(d->skel->maps.frontend_stats);
	if (d->fe_ids.max > d->max_frontends)
		d->fe_ids.max = d->max_frontends;
	d->ep_ids.max = d->max_endpoints;

	err = sock_addr_bpf__load(d->skel);
	if (err) {
		err = kb_fail(err, "load", "sock_addr BPF programs");
		goto out_destroy;
	}

	if (adopted) {
		err = kb_adopt_state(d);
		if (err) {
			err = kb_fail(err, "adopt", "pinned maps");
			goto out_destroy;
		}
	} else {
		err = kb_runs_push(&d->free_runs, 0, d->max_slots, 0);
		if (err)
			goto out_destroy;
	}

	bpf_object__for_each_program(prog, d->skel->obj) {
		const char *name = bpf_program__name(prog);
		struct bpf_link *link = NULL, **links;

		links = realloc(d->links, (d->nlinks + 1) * sizeof(*links));
		if (!links) {
			err = kb_fail(-ENOMEM, "allocate", "links");
			goto out_destroy;
		}
		d->links = links;
		snprintf(path, sizeof(path), "%s/links/%s", pin, name);
		err = kb_adopt_link(path, prog, (__u64)st.st_ino, &link);
		if (err < 0) {
			err = kb_fail(err, "update pinned link", path);
			goto out_destroy;
		}
		if (!err) {
			link = bpf_program__attach_cgroup(prog, cgfd);
			if (!link) {
				err = kb_fail(-errno, "attach", name);
				goto out_destroy;
			}
			err = bpf_link__pin(link, path);
			if (err) {
				bpf_link__destroy(link);
				err = kb_fail(err, "pin", path);
				goto out_destroy;
			}
		}
		d->links[d->nlinks++] = link;
	}
	close(cgfd);
	kb_log_debug("sock_addr programs %s on %s, pinned under %s", adopted ? "adopted" : "attached",
		     opts->cgroup, pin);
	*out = &d->dp;
	return 0;

out_destroy:
	kb_bpf_close(&d->dp);
	close(cgfd);
	return err;
out_close_cg:
	close(cgfd);
out_free:
	free(d);
	return err;
}

/* Remove every pin in dir; links are detached first, since a live process may still hold their fds. */
static int kb_unpin_dir(const char *dir, bool links)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *dp;
	int err = 0;

	dp = opendir(dir);
	if (!dp)
		return errno == ENOENT ? 0 : kb_fail(-errno, "open", dir);
	while ((e = readdir(dp))) {
		if (e->d_name[0] == '.' || (!links && !strcmp(e->d_name, "links")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (links) {
			int fd = bpf_obj_get(path);

			if (fd >= 0) {
				bpf_link_detach(fd);
				close(fd);
			}
		}
		if (unlink(path) && errno != ENOENT && !err)
			err = kb_fail(-errno, "unpin", path);
	}
	closedir(dp);
	if (rmdir(dir) && errno != ENOENT && !err)
		err = kb_fail(-errno, "remove", dir);
	return err;
}

int kb_dataplane_unload(const char *bpffs)
{
	char links[PATH_MAX];
	int err, err2;

	if (!bpffs)
		bpffs = KB_PIN_DIR_DEFAULT;
	snprintf(links, sizeof(links), "%s/links", bpffs);
	err = kb_unpin_dir(links, true);
	err2 = kb_unpin_dir(bpffs, false);
	return err ? err : err2;
}
