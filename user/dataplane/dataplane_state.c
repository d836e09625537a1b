// SPDX-License-Identifier: Apache-2.0
/* The dataplane's mirror of its maps: a hashed index, the slot-run allocator, id tables, adoption of pinned state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dataplane_int.h"
#include "util.h"

/*
 * A retired slot run may still be read by a connect that looked up the old
 * frontend value just before the swap. BPF programs finish within
 * microseconds of that lookup, so one second is a generous grace period.
 */
#define KB_RUN_GRACE_NS 1000000000ull

/* ---- a small open-addressing index: hash -> element number, rebuilt every apply ---- */

static __u64 kb_fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	__u64 h = 1469598103934665603ull;

	while (n--)
		h = (h ^ *b++) * 1099511628211ull;
	return h;
}

int kb_index_init(struct kb_index *ix, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	ix->tab = calloc(cap, sizeof(*ix->tab));
	ix->cap = cap;
	return ix->tab ? 0 : -ENOMEM;
}

void kb_index_free(struct kb_index *ix)
{
	free(ix->tab);
	ix->tab = NULL;
	ix->cap = 0;
}

/*
 * Find key (of size ksz) among elements whose keys sit at base + i * stride.
 * Returns the element number, or -1 with *hole set to where it would go.
 */
long kb_index_find(const struct kb_index *ix, const void *key, size_t ksz, const void *base, size_t stride,
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

/* ---- slot runs and ids ---- */

__u64 kb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

int kb_runs_push(struct kb_runs *r, __u32 base, __u32 len, __u64 since)
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
int kb_alloc_run(struct kb_bpf_dataplane *d, __u32 n, __u32 *base)
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

int kb_id_get(struct kb_ids *ids, __u32 *id)
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

int kb_id_put(struct kb_ids *ids, __u32 id)
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

/* ---- the mirror ---- */

/* Index the mirror by frontend key, for apply and the stats calls. */
int kb_reindex(struct kb_bpf_dataplane *d)
{
	size_t i, hole;
	int err;

	kb_index_free(&d->feix);
	err = kb_index_init(&d->feix, d->nfes);
	if (err)
		return err;
	d->nslots = 0;
	for (i = 0; i < d->nfes; i++) {
		kb_index_find(&d->feix, &d->fes[i].key, sizeof(d->fes[i].key), d->fes, sizeof(*d->fes), &hole);
		d->feix.tab[hole] = (__u32)i + 1;
		d->nslots += d->fes[i].val.nslots;
	}
	return 0;
}

void kb_fe_ep_of(const struct kb_cendpoint *ep, struct kb_fe_ep *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->ip, ep->ip, sizeof(out->ip));
	out->port = htons(ep->port);
	if (ep->type == KB_EP_UNIX) {
		/* The slot carries the bridge listener (127.0.0.1:port); port 0 (no bridge) is refused. */
		out->kind = KB_SLOT_BRIDGE;
		out->family = AF_INET;
		out->path = ep->address;
		return;
	}
	out->family = ep->family;
	out->kind = KB_SLOT_IP;
}

bool kb_fe_ep_eq(const struct kb_fe_ep *a, const struct kb_fe_ep *b)
{
	if (memcmp(a->ip, b->ip, sizeof(a->ip)) || a->port != b->port || a->family != b->family || a->kind != b->kind)
		return false;
	/* An adopted endpoint has no path: it matches none, so its frontend is written again. */
	return a->path && b->path ? !strcmp(a->path, b->path) : !a->path && !b->path;
}

long kb_fe_ep_find(const struct kb_fe_state *fs, const struct kb_fe_ep *e, size_t hint)
{
	if (hint < fs->neps && kb_fe_ep_eq(&fs->eps[hint], e))
		return (long)hint;
	for (size_t i = 0; i < fs->neps; i++)
		if (kb_fe_ep_eq(&fs->eps[i], e))
			return (long)i;
	return -1;
}

static bool kb_slot_is(const struct kb_slot *s, const struct kb_fe_ep *e)
{
	return !memcmp(s->ip, e->ip, sizeof(s->ip)) && s->port == e->port && s->family == e->family &&
	       s->kind == e->kind && s->endpoint_id == e->id;
}

/*
 * Exact, not a hash: the same value, endpoints in the same order, and each
 * slot what the compile's slot index names with that endpoint's id. A few
 * comparisons per slot, so 10,000 unchanged frontends take well under a
 * millisecond each pass.
 */
bool kb_fe_same(const struct kb_fe_state *fs, const struct kb_cfrontend *cf)
{
	struct kb_fe_ep e;

	if (fs->val.lb != (__u8)cf->lb || fs->val.flags || fs->val.nslots != cf->nslots || fs->neps != cf->neps)
		return false;
	for (size_t k = 0; k < cf->neps; k++) {
		kb_fe_ep_of(&cf->eps[k], &e);
		if (!kb_fe_ep_eq(&fs->eps[k], &e))
			return false;
	}
	for (__u32 s = 0; s < cf->nslots; s++)
		if (cf->slots[s] >= fs->neps || !kb_slot_is(&fs->slots[s], &fs->eps[cf->slots[s]]))
			return false;
	return true;
}

void kb_fe_state_free(struct kb_fe_state *fs)
{
	for (__u32 k = 0; k < fs->neps; k++)
		free(fs->eps[k].path);
	free(fs->eps);
	free(fs->slots);
	fs->eps = NULL;
	fs->slots = NULL;
	fs->neps = fs->nids = 0;
}

void kb_mirror_free(struct kb_bpf_dataplane *d)
{
	for (size_t i = 0; i < d->nfes; i++)
		kb_fe_state_free(&d->fes[i]);
	free(d->fes);
	free(d->addrs);
	free(d->stale);
	d->fes = NULL;
	d->addrs = NULL;
	d->stale = NULL;
	d->nfes = d->neps = d->naddrs = d->nstale = 0;
	kb_index_free(&d->feix);
}

/* ---- adopting pinned state ---- */

static int kb_run_base_cmp(const void *a, const void *b)
{
	const struct kb_fe_state *x = a, *y = b;

	return x->val.slot_base < y->val.slot_base ? -1 : x->val.slot_base > y->val.slot_base;
}

/*
 * Wait for an RCU grace period: cgroup sock_addr programs run under
 * rcu_read_lock, and membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu(),
 * so afterwards no connect still reads a run that was retired before the call.
 * Not trusted on one CPU (membarrier skips the wait there, and a preempted
 * reader would not be waited for); EINVAL with nohz_full. False: use the
 * one-second grace.
 */
bool kb_rcu_grace(void)
{
	return sysconf(_SC_NPROCESSORS_ONLN) > 1 && !syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
}

/* Remember a pinned frontend the mirror cannot hold, so that the next apply deletes or rewrites it. */
static int kb_stale_push(struct kb_bpf_dataplane *d, const struct kb_frontend_key *key)
{
	struct kb_frontend_key *v = realloc(d->stale, (d->nstale + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	d->stale = v;
	d->stale[d->nstale++] = *key;
	return 0;
}

/* The endpoints a pinned frontend's slots name, each once, owning the id its first slot carries when free. */
static int kb_adopt_eps(struct kb_bpf_dataplane *d, struct kb_fe_state *fs, bool *ep_used)
{
	if (!fs->val.nslots)
		return 0;
	fs->eps = calloc(fs->val.nslots, sizeof(*fs->eps));
	if (!fs->eps)
		return -ENOMEM;
	for (__u32 j = 0; j < fs->val.nslots; j++) {
		const struct kb_slot *sl = &fs->slots[j];
		struct kb_fe_ep e = { .port = sl->port, .family = sl->family, .kind = sl->kind };
		__u32 eid = sl->endpoint_id;

		memcpy(e.ip, sl->ip, sizeof(e.ip));
		if (kb_fe_ep_find(fs, &e, fs->neps) >= 0)
			continue;
		/* An id out of range or held twice stays unowned: the next apply gives the endpoint a new one. */
		e.owner = eid < d->max_endpoints && !ep_used[eid];
		e.id = e.owner ? eid : UINT32_MAX;
		fs->eps[fs->neps++] = e;
		if (!e.owner)
			continue;
		ep_used[eid] = true;
		fs->nids++;
		d->neps++;
		if (eid >= d->ep_ids.next)
			d->ep_ids.next = eid + 1;
	}
	return 0;
}

static int kb_adopt_addrs(struct kb_bpf_dataplane *d)
{
	int fd = bpf_map__fd(d->skel->maps.frontend_addrs);
	struct kb_addr_key key, next, *prev = NULL;
	size_t cap = 0;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		if (d->naddrs == cap) {
			struct kb_addr_key *v;

			cap = cap ? cap * 2 : 256;
			v = realloc(d->addrs, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			d->addrs = v;
		}
		d->addrs[d->naddrs++] = next;
		key = next;
		prev = &key;
	}
	return 0;
}

/*
 * Every pinned frontend into *keys and *vals (malloc'ed, *n long), a batch of
 * them per call: a restart at 10,000 frontends spent 110-220 ms in 20,000
 * single calls. A kernel without batches for hash maps is walked key by key.
 */
#define ADOPT_BATCH 4096u

/* Room for cap keys and values: 0 or -ENOMEM (what was read stays, for the caller to free). */
static int grow_pairs(struct kb_frontend_key **keys, struct kb_frontend **vals, size_t cap)
{
	struct kb_frontend_key *k = realloc(*keys, cap * sizeof(**keys));
	struct kb_frontend *v;

	if (!k)
		return -ENOMEM;
	*keys = k;
	v = realloc(*vals, cap * sizeof(**vals));
	if (!v)
		return -ENOMEM;
	*vals = v;
	return 0;
}

static int read_frontends_one_by_one(int fefd, struct kb_frontend_key **keys, struct kb_frontend **vals, size_t *n)
{
	struct kb_frontend_key key, next, *prev = NULL;
	size_t cap = 0;

	while (!bpf_map_get_next_key(fefd, prev, &next)) {
		key = next;
		prev = &key;
		if (*n == cap && grow_pairs(keys, vals, cap = cap ? cap * 2 : 256))
			return -ENOMEM;
		(*keys)[*n] = key;
		if (!bpf_map_lookup_elem(fefd, &key, &(*vals)[*n]))
			(*n)++;	/* else deleted under us: not ours to serve */
	}
	return 0;
}

static int read_frontends(int fefd, struct kb_frontend_key **keys, struct kb_frontend **vals, size_t *n)
{
	__u32 batch = ADOPT_BATCH, in = 0, out = 0;
	size_t cap = 0;
	bool first = true;
	int err;

	*keys = NULL;
	*vals = NULL;
	*n = 0;
	for (;;) {
		__u32 got;

		if (cap - *n < batch && grow_pairs(keys, vals, cap = *n + batch))
			return -ENOMEM;
		got = batch;
		err = bpf_map_lookup_batch(fefd, first ? NULL : &in, &out, *keys + *n, *vals + *n, &got, NULL);
		if (err == -ENOSPC && got == 0 && batch < (1u << 20)) {
			batch *= 2;	/* one hash bucket holds more than a batch */
			continue;
		}
		if (err && err != -ENOENT) {
			if (!first)
				return err;
			*n = 0;
			return read_frontends_one_by_one(fefd, keys, vals, n);
		}
		*n += got;
		if (err == -ENOENT)
			return 0;	/* the map's end */
		in = out;
		first = false;
	}
}

int kb_dataplane_pinned_keys(const char *bpffs, struct kb_frontend_key **keys, size_t *n)
{
	struct kb_frontend *vals = NULL;
	char path[4096];
	int fd, err;

	*keys = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "%s/frontends", bpffs);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	err = read_frontends(fd, keys, &vals, n);
	close(fd);
	free(vals);
	if (err) {
		free(*keys);
		*keys = NULL;
		*n = 0;
	}
	return err;
}

/* Slots [0, top) into *out (malloc'ed), in batches of consecutive keys: 0, or -errno (then read run by run). */
static int read_slot_prefix(int slfd, __u32 top, struct kb_slot **out)
{
	struct kb_slot *v = malloc((size_t)top * sizeof(*v));
	__u32 *keys = malloc(ADOPT_BATCH * sizeof(*keys)), at = 0, prev = 0, last;
	int err = v && keys ? 0 : -ENOMEM;

	while (!err && at < top) {
		__u32 got = top - at < ADOPT_BATCH ? top - at : ADOPT_BATCH;

		err = bpf_map_lookup_batch(slfd, at ? &prev : NULL, &last, keys, v + at, &got, NULL);
		if (err == -ENOENT && at + got == top)
			err = 0;	/* the run reached the map's end */
		if (!err && !got)
			err = -EIO;
		for (__u32 i = 0; !err && i < got; i++)
			if (keys[i] != at + i)
				err = -EIO;
		at += got;
		prev = at - 1;
	}
	free(keys);
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	return 0;
}

/*
 * Read fs's slot run: one batched lookup (a restart at 10,000 frontends made
 * 100,000 single lookups), or slot by slot where the kernel has no batch for
 * arrays. A batch starts after its in_batch key, so the run's first slot
 * is reached from the key before it (or from the start).
 */
static int adopt_run(int slfd, struct kb_fe_state *fs)
{
	__u32 n = fs->val.nslots, got = n, prev = fs->val.slot_base - 1, out, *keys = calloc(n, sizeof(*keys));
	int err = keys ? 0 : -ENOMEM;

	if (!err) {
		err = bpf_map_lookup_batch(slfd, fs->val.slot_base ? &prev : NULL, &out, keys, fs->slots, &got, NULL);
		/* ENOENT: the batch reached the map's end, which a run at the end of the map does. */
		if (err == -ENOENT && got == n)
			err = 0;
		for (__u32 i = 0; !err && i < n; i++)
			if (keys[i] != fs->val.slot_base + i)
				err = -EIO;
	}
	free(keys);
	if (!err || err == -ENOMEM)
		return err;
	for (__u32 i = 0; i < n; i++) {
		__u32 k = fs->val.slot_base + i;

		if (bpf_map_lookup_elem(slfd, &k, &fs->slots[i]))
			return -errno;
	}
	return 0;
}

/* A pinned frontend whose run and id lie inside this daemon's maps (an older process's bad entry does not). */
static bool pinned_fits(const struct kb_bpf_dataplane *d, const struct kb_frontend *v)
{
	return v->nslots <= d->max_slots && v->slot_base <= d->max_slots - v->nslots &&
	       v->frontend_id < d->max_frontends;
}

/*
 * Rebuild the user-space mirror from pinned maps, so that a restarted daemon
 * allocates around the runs that serve and the shadow an apply compares
 * against is what the kernel holds. Space between runs may have been
 * retired by the previous process a moment ago, so it starts out retired:
 * free after an RCU grace period, else after the one-second grace (without
 * which the first apply after a restart waits for that second).
 */
int kb_adopt_state(struct kb_bpf_dataplane *d)
{
	int fefd = bpf_map__fd(d->skel->maps.frontends), slfd = bpf_map__fd(d->skel->maps.slots);
	struct kb_frontend_key *keys = NULL;
	struct kb_frontend *vals = NULL;
	struct kb_slot *prefix = NULL;
	size_t i, n = 0;
	__u32 end = 0;
	__u64 now = kb_now_ns(), used = 0, top = 0;
	int err = 0;
	bool *fe_used = NULL, *ep_used = NULL;

	/* The process before may have deleted frontends a moment ago: the first insert waits for a grace period. */
	d->fe_freed_ns = now;
	err = read_frontends(fefd, &keys, &vals, &n);
	if (err)
		goto out_read;
	/* The runs in one pass over the used part of slots, where it is not mostly gaps; else run by run. */
	for (i = 0; i < n; i++) {
		if (!pinned_fits(d, &vals[i]))
			continue;
		used += vals[i].nslots;
		if (vals[i].slot_base + vals[i].nslots > top)
			top = vals[i].slot_base + vals[i].nslots;
	}
	if (top && top <= 2 * used + ADOPT_BATCH)
		read_slot_prefix(slfd, (__u32)top, &prefix);	/* failed: prefix stays NULL, runs are read one by one */
	d->fes = calloc(n ? n : 1, sizeof(*d->fes));
	if (!d->fes) {
		err = -ENOMEM;
		goto out_read;
	}
	for (i = 0; i < n; i++) {
		struct kb_fe_state *fs = &d->fes[d->nfes];

		fs->key = keys[i];
		fs->val = vals[i];
		if (!pinned_fits(d, &fs->val)) {
			kb_log_info("pinned frontend with a bad slot run or id dropped from the mirror");
			memset(fs, 0, sizeof(*fs));
			err = kb_stale_push(d, &keys[i]);
			if (err)
				goto out_read;
			continue;
		}
		if (fs->val.nslots) {
			fs->slots = calloc(fs->val.nslots, sizeof(*fs->slots));
			if (!fs->slots) {
				err = -ENOMEM;
				goto out_read;
			}
			if (prefix)
				memcpy(fs->slots, prefix + fs->val.slot_base, fs->val.nslots * sizeof(*fs->slots));
			else
				err = adopt_run(slfd, fs);
			if (err) {
				free(fs->slots);
				fs->slots = NULL;
				goto out_read;
			}
		}
		d->nfes++;
	}
out_read:
	free(keys);
	free(vals);
	free(prefix);
	if (err)
		return err;
	err = kb_adopt_addrs(d);
	if (err)
		return err;

	/* Free space: the gaps between the runs in use, retired now, or free at once after an RCU grace period. */
	if (kb_rcu_grace())
		now = now > KB_RUN_GRACE_NS ? now - KB_RUN_GRACE_NS : 0;
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
		err = kb_adopt_eps(d, fs, ep_used);
		if (err)
			goto out;
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
	free(fe_used);
	free(ep_used);
	return err;
}
