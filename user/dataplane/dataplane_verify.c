// SPDX-License-Identifier: Apache-2.0
/* The dataplane's verify op: the frontends, slots and frontend_addrs maps read back from the kernel and compared with a compile. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include "dataplane_int.h"
#include "util.h"

/* Differences reported per frontend before the rest are summed up in one line. */
#define KB_VERIFY_SLOT_DIFFS 4

/* A frontend as the kernel holds it. */
struct kb_kfe {
	struct kb_frontend_key key;	/* first: the index compares it */
	struct kb_frontend val;
	bool seen;	/* the compile has it */
};

struct kb_verify {
	struct kb_bpf_dataplane *d;
	kb_verify_diff_fn diff;
	void *ctx;
	int n;
};

static void kb_vdiff(struct kb_verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kb_vdiff(struct kb_verify *v, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	v->n++;
	if (v->diff)
		v->diff(v->ctx, line);
}

static void kb_fmt_ip(const __u32 *ip, __u8 family, char *buf, size_t len)
{
	if (!inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, ip, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

/* "198.18.0.1:10000/tcp", "[2001:db8:f::1]:80/udp". */
static void kb_fmt_fe(const struct kb_frontend_key *k, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	kb_fmt_ip(k->ip, k->family, ip, sizeof(ip));
	snprintf(buf, len, k->family == AF_INET6 ? "[%s]:%u/%s" : "%s:%u/%s", ip, ntohs(k->port),
		 k->proto == KB_PROTO_UDP ? "udp" : k->proto == KB_PROTO_TCP ? "tcp" : "proto?");
}

/* "198.51.100.2:8080", "[2001:db8:1::2]:8080", "bridge 127.0.0.1:40001" (a unix endpoint's listener). */
static void kb_fmt_ep(const __u32 *ip, __u16 port, __u8 family, __u8 kind, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	kb_fmt_ip(ip, family, a, sizeof(a));
	snprintf(buf, len, family == AF_INET6 ? "%s[%s]:%u" : "%s%s:%u", kind == KB_SLOT_BRIDGE ? "bridge " : "", a,
		 ntohs(port));
}

static const char *kb_lb_name(__u8 lb)
{
	static const char *const names[] = { "Random", "RoundRobin", "LeastRequest", "ConsistentHash" };

	return lb < sizeof(names) / sizeof(names[0]) ? names[lb] : "unknown";
}

/* Every frontend in the kernel map, and an index over them. */
static int kb_read_frontends(struct kb_bpf_dataplane *d, struct kb_kfe **out, size_t *n, struct kb_index *ix)
{
	int fd = bpf_map__fd(d->skel->maps.frontends);
	struct kb_frontend_key key, next, *prev = NULL;
	struct kb_kfe *v = NULL;
	size_t cap = 0, hole;
	int err;

	*n = 0;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (*n == cap) {
			struct kb_kfe *g;

			cap = cap ? cap * 2 : 256;
			g = realloc(v, cap * sizeof(*v));
			if (!g) {
				free(v);
				return -ENOMEM;
			}
			v = g;
		}
		memset(&v[*n], 0, sizeof(*v));
		v[*n].key = key;
		if (bpf_map_lookup_elem(fd, &key, &v[*n].val))
			continue;	/* deleted under us */
		(*n)++;
	}
	err = kb_index_init(ix, *n);
	if (err) {
		free(v);
		return err;
	}
	for (size_t i = 0; i < *n; i++) {
		kb_index_find(ix, &v[i].key, sizeof(v[i].key), v, sizeof(*v), &hole);
		ix->tab[hole] = (__u32)i + 1;
	}
	*out = v;
	return 0;
}

/* The run [base, base + n) of the slots map: one batch read, else one lookup a slot. */
static int kb_read_run(struct kb_bpf_dataplane *d, __u32 base, __u32 n, struct kb_slot *out)
{
	int fd = bpf_map__fd(d->skel->maps.slots);
	__u32 *keys = malloc(n * sizeof(*keys)), prev = base - 1, next, count = n;
	int err = 0;

	if (!keys)
		return -ENOMEM;
	/* An array's batch starts after in_batch: the key before base, or the start for 0. */
	if (bpf_map_lookup_batch(fd, base ? &prev : NULL, &next, keys, out, &count, NULL) || count != n ||
	    keys[0] != base) {
		for (__u32 i = 0; i < n && !err; i++) {
			__u32 k = base + i;

			if (bpf_map_lookup_elem(fd, &k, &out[i]))
				err = -errno;
		}
	}
	free(keys);
	return err;
}

/* One compiled frontend against its kernel value and run. */
static int kb_verify_fe(struct kb_verify *v, const struct kb_cfrontend *cf, const struct kb_kfe *k)
{
	struct kb_bpf_dataplane *d = v->d;
	const struct kb_frontend *val = &k->val;
	struct kb_slot *run = NULL;
	struct kb_fe_ep *seen = NULL;
	size_t nseen = 0, more = 0, shown = 0;
	char fe[80], a[80], b[80];
	int err = 0;

	kb_fmt_fe(&cf->key, fe, sizeof(fe));
	if (val->lb != (__u8)cf->lb)
		kb_vdiff(v, "%s: lb is %s, the compile says %s", fe, kb_lb_name(val->lb), kb_lb_name((__u8)cf->lb));
	if (val->flags)
		kb_vdiff(v, "%s: flags are 0x%x, the compile says 0x0", fe, val->flags);
	if (val->frontend_id >= d->max_frontends)
		kb_vdiff(v, "%s: frontend id %u is outside the counters maps (%u)", fe, val->frontend_id,
			 d->max_frontends);
	if (val->nslots != cf->nslots) {
		kb_vdiff(v, "%s: %u slots in the maps, the compile says %u", fe, val->nslots, cf->nslots);
		return 0;
	}
	if (!val->nslots)
		return 0;
	if (val->nslots > d->max_slots || val->slot_base > d->max_slots - val->nslots) {
		kb_vdiff(v, "%s: slot run %u+%u lies outside the slots map (%u)", fe, val->slot_base, val->nslots,
			 d->max_slots);
		return 0;
	}
	run = calloc(val->nslots, sizeof(*run));
	seen = calloc(val->nslots, sizeof(*seen));
	if (!run || !seen) {
		err = -ENOMEM;
		goto out;
	}
	err = kb_read_run(d, val->slot_base, val->nslots, run);
	if (err)
		goto out;
	for (__u32 s = 0; s < val->nslots; s++) {
		const struct kb_slot *sl = &run[s];
		struct kb_fe_ep want;
		size_t j;

		if (cf->slots[s] >= cf->neps) {
			kb_vdiff(v, "%s: the compile's slot %u names no endpoint", fe, s);
			continue;
		}
		kb_fe_ep_of(&cf->eps[cf->slots[s]], &want);
		if (memcmp(sl->ip, want.ip, sizeof(want.ip)) || sl->port != want.port || sl->family != want.family ||
		    sl->kind != want.kind) {
			if (shown++ < KB_VERIFY_SLOT_DIFFS) {
				kb_fmt_ep(sl->ip, sl->port, sl->family, sl->kind, a, sizeof(a));
				kb_fmt_ep(want.ip, want.port, want.family, want.kind, b, sizeof(b));
				kb_vdiff(v, "%s: slot %u is %s, the compile says %s", fe, s, a, b);
			} else {
				more++;
			}
		}
		/* Counter ids, as the data path reads them: one per endpoint address within the frontend. */
		if (sl->endpoint_id >= d->max_endpoints) {
			kb_vdiff(v, "%s: slot %u has endpoint id %u, outside the counters maps (%u)", fe, s,
				 sl->endpoint_id, d->max_endpoints);
			continue;
		}
		for (j = 0; j < nseen; j++) {
			bool same = !memcmp(seen[j].ip, sl->ip, sizeof(sl->ip)) && seen[j].port == sl->port &&
				    seen[j].family == sl->family && seen[j].kind == sl->kind;

			if (!same && seen[j].id != sl->endpoint_id)
				continue;
			if (same != (seen[j].id == sl->endpoint_id)) {
				kb_fmt_ep(sl->ip, sl->port, sl->family, sl->kind, a, sizeof(a));
				kb_fmt_ep(seen[j].ip, seen[j].port, seen[j].family, seen[j].kind, b, sizeof(b));
				if (same)
					kb_vdiff(v, "%s: endpoint %s has ids %u and %u in its slots", fe, a, seen[j].id,
						 sl->endpoint_id);
				else
					kb_vdiff(v, "%s: endpoints %s and %s share id %u", fe, b, a, sl->endpoint_id);
			}
			break;
		}
		if (j == nseen) {
			memcpy(seen[nseen].ip, sl->ip, sizeof(sl->ip));
			seen[nseen].port = sl->port;
			seen[nseen].family = sl->family;
			seen[nseen].kind = sl->kind;
			seen[nseen++].id = sl->endpoint_id;
		}
	}
	if (more)
		kb_vdiff(v, "%s: %zu more slots differ", fe, more);
out:
	free(run);
	free(seen);
	return err;
}

static int kb_kfe_base_cmp(const void *a, const void *b)
{
	const struct kb_kfe *x = *(const struct kb_kfe *const *)a, *y = *(const struct kb_kfe *const *)b;

	return x->val.slot_base < y->val.slot_base ? -1 : x->val.slot_base > y->val.slot_base;
}

static int kb_kfe_id_cmp(const void *a, const void *b)
{
	const struct kb_kfe *x = *(const struct kb_kfe *const *)a, *y = *(const struct kb_kfe *const *)b;

	return x->val.frontend_id < y->val.frontend_id ? -1 : x->val.frontend_id > y->val.frontend_id;
}

/* What no single frontend shows: runs two frontends share, and frontend ids two frontends share. */
static int kb_verify_shared(struct kb_verify *v, struct kb_kfe *kf, size_t n)
{
	struct kb_kfe **p = calloc(n ? n : 1, sizeof(*p));
	char a[80], b[80];
	size_t i, m = 0;

	if (!p)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		if (kf[i].val.nslots)
			p[m++] = &kf[i];
	qsort(p, m, sizeof(*p), kb_kfe_base_cmp);
	for (i = 1; i < m; i++) {
		const struct kb_frontend *x = &p[i - 1]->val, *y = &p[i]->val;

		if ((__u64)x->slot_base + x->nslots <= y->slot_base)
			continue;
		kb_fmt_fe(&p[i - 1]->key, a, sizeof(a));
		kb_fmt_fe(&p[i]->key, b, sizeof(b));
		kb_vdiff(v, "%s and %s share slots from %u", a, b, y->slot_base);
	}
	for (i = 0; i < n; i++)
		p[i] = &kf[i];
	qsort(p, n, sizeof(*p), kb_kfe_id_cmp);
	for (i = 1; i < n; i++) {
		if (p[i - 1]->val.frontend_id != p[i]->val.frontend_id)
			continue;
		kb_fmt_fe(&p[i - 1]->key, a, sizeof(a));
		kb_fmt_fe(&p[i]->key, b, sizeof(b));
		kb_vdiff(v, "%s and %s share frontend id %u", a, b, p[i]->val.frontend_id);
	}
	free(p);
	return 0;
}

/* frontend_addrs: exactly the addresses of c's frontends (binds to them are refused). */
static int kb_verify_addrs(struct kb_verify *v, const struct kb_compiled *c)
{
	int fd = bpf_map__fd(v->d->skel->maps.frontend_addrs);
	struct kb_addr_key *want = calloc(c->nfes ? c->nfes : 1, sizeof(*want)), key, next, *prev = NULL;
	bool *found = calloc(c->nfes ? c->nfes : 1, 1);
	struct kb_index ix = { 0 };
	size_t n = 0, hole;
	char a[INET6_ADDRSTRLEN];
	long i;
	int err = !want || !found ? -ENOMEM : kb_index_init(&ix, c->nfes);

	if (err)
		goto out;
	for (size_t f = 0; f < c->nfes; f++) {
		struct kb_addr_key k = { .family = c->fes[f].key.family };

		memcpy(k.ip, c->fes[f].key.ip, sizeof(k.ip));
		if (kb_index_find(&ix, &k, sizeof(k), want, sizeof(*want), &hole) >= 0)
			continue;
		want[n] = k;
		ix.tab[hole] = (__u32)++n;
	}
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		i = kb_index_find(&ix, &key, sizeof(key), want, sizeof(*want), &hole);
		if (i >= 0) {
			found[i] = true;
			continue;
		}
		kb_fmt_ip(key.ip, key.family, a, sizeof(a));
		kb_vdiff(v, "address %s: in frontend_addrs but no frontend of the compile has it", a);
	}
	for (size_t k = 0; k < n; k++) {
		if (found[k])
			continue;
		kb_fmt_ip(want[k].ip, want[k].family, a, sizeof(a));
		kb_vdiff(v, "address %s: not in frontend_addrs, so binds to it are not refused", a);
	}
out:
	kb_index_free(&ix);
	free(want);
	free(found);
	return err;
}

int kb_bpf_verify(struct kb_dataplane *dp, const struct kb_compiled *c, kb_verify_diff_fn diff, void *ctx)
{
	struct kb_verify v = { .d = (struct kb_bpf_dataplane *)dp, .diff = diff, .ctx = ctx };
	struct kb_index kix = { 0 }, cix = { 0 };
	struct kb_kfe *kf = NULL;
	struct kb_frontend_key *ckeys = NULL;
	size_t nk = 0, nc = 0, hole;
	char fe[80];
	int err;

	err = kb_read_frontends(v.d, &kf, &nk, &kix);
	if (err)
		return kb_fail(err, "read", "frontends map");
	ckeys = calloc(c->nfes ? c->nfes : 1, sizeof(*ckeys));
	err = !ckeys ? -ENOMEM : kb_index_init(&cix, c->nfes);
	for (size_t i = 0; i < c->nfes && !err; i++) {
		const struct kb_cfrontend *cf = &c->fes[i];
		long k;

		if (kb_index_find(&cix, &cf->key, sizeof(cf->key), ckeys, sizeof(*ckeys), &hole) >= 0)
			continue;	/* a duplicate: the apply programs the first */
		ckeys[nc] = cf->key;
		cix.tab[hole] = (__u32)++nc;
		k = kb_index_find(&kix, &cf->key, sizeof(cf->key), kf, sizeof(*kf), &hole);
		if (k < 0) {
			kb_fmt_fe(&cf->key, fe, sizeof(fe));
			kb_vdiff(&v, "%s: in the compile but not in the maps", fe);
			continue;
		}
		kf[k].seen = true;
		err = kb_verify_fe(&v, cf, &kf[k]);
	}
	for (size_t k = 0; k < nk && !err; k++) {
		if (kf[k].seen)
			continue;
		kb_fmt_fe(&kf[k].key, fe, sizeof(fe));
		kb_vdiff(&v, "%s: in the maps but not in the compile", fe);
	}
	err = err ?: kb_verify_shared(&v, kf, nk);
	err = err ?: kb_verify_addrs(&v, c);
	if (err)
		kb_fail(err, "verify", "dataplane maps");
	kb_index_free(&kix);
	kb_index_free(&cix);
	free(kf);
	free(ckeys);
	return err ? err : v.n;
}
