// SPDX-License-Identifier: Apache-2.0
/* The dataplane's apply path: a compiled state into the maps, a fresh slot run and one value swap per changed frontend. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "dataplane_int.h"
#include "util.h"

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

/* ---- apply ---- */

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

/*
 * What c needs of the maps, counted as the apply counts it: distinct
 * frontends, their slots, and distinct (frontend, endpoint) pairs, standby
 * endpoints included. Checked against the flags before anything is written.
 */
int kb_bpf_fits(struct kb_dataplane *dp, const struct kb_compiled *c, char *why, size_t len)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_index feix = { 0 }, epix = { 0 };
	struct kb_frontend_key *keys = NULL;
	struct kb_ep_ident *ids = NULL;
	size_t neps = 0, nkeys = 0, hole, i;
	__u64 slots = 0;
	__u32 maxfe = d->fe_ids.max < d->max_frontends ? d->fe_ids.max : d->max_frontends;
	int err;

	for (i = 0; i < c->nfes; i++)
		neps += c->fes[i].neps;
	keys = calloc(c->nfes ? c->nfes : 1, sizeof(*keys));
	ids = calloc(neps ? neps : 1, sizeof(*ids));
	err = !keys || !ids ? -ENOMEM : 0;
	err = err ?: kb_index_init(&feix, c->nfes);
	err = err ?: kb_index_init(&epix, neps);
	if (err) {
		snprintf(why, len, "failed to count what the applied set needs: %s", strerror(-err));
		goto out;
	}
	neps = 0;
	for (i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *cf = &c->fes[i];

		if (kb_index_find(&feix, &cf->key, sizeof(cf->key), keys, sizeof(*keys), &hole) >= 0)
			continue;	/* a duplicate: the apply ignores it */
		keys[nkeys] = cf->key;
		feix.tab[hole] = (__u32)++nkeys;
		slots += cf->nslots;
		for (size_t k = 0; k < cf->neps; k++) {
			kb_cendpoint_ident(cf, &cf->eps[k], &ids[neps]);
			if (kb_index_find(&epix, &ids[neps], sizeof(*ids), ids, sizeof(*ids), &hole) >= 0)
				continue;
			epix.tab[hole] = (__u32)++neps;
		}
	}
	err = -ENOSPC;
	if (nkeys > maxfe)
		snprintf(why, len, "the applied set needs %zu frontends; the daemon was started with --max-frontends %u",
			 nkeys, maxfe);
	else if (slots > d->max_slots)
		snprintf(why, len, "the applied set needs %llu slots; the daemon was started with --max-slots %u",
			 (unsigned long long)slots, d->max_slots);
	else if (neps > d->max_endpoints)
		snprintf(why, len,
			 "the applied set needs %zu endpoints (frontend and endpoint pairs); the daemon was started with "
			 "--max-endpoints %u", neps, d->max_endpoints);
	else
		err = 0;
out:
	kb_index_free(&feix);
	kb_index_free(&epix);
	free(keys);
	free(ids);
	return err;
}

int kb_bpf_apply(struct kb_dataplane *dp, const struct kb_compiled *c)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_index feix = { 0 }, epix = { 0 }, nfeix = { 0 }, nepix = { 0 };
	struct kb_fe_state *nfes = NULL;
	struct kb_ep_state *neps = NULL;
	struct kb_addr_key *akeys = NULL;
	__u32 *avals = NULL;
	size_t nnfes = 0, nneps = 0, naddr = 0, totslots = 0, i, hole;
	bool *matched = NULL, *changed = NULL, *fresh_ep = NULL;
	__u64 freeslots = 0, needslots = 0;
	int fefd = bpf_map__fd(d->skel->maps.frontends);
	int err = 0;

	/* Sized for every slot and every endpoint: both may add to neps. */
	for (i = 0; i < c->nfes; i++)
		totslots += c->fes[i].nslots + c->fes[i].neps;
	if (c->nfes > d->max_frontends) {
		err = -ENOSPC;
		kb_err("failed to apply %zu frontends: the frontends map holds %u", c->nfes, d->max_frontends);
		return err;
	}

	nfes = calloc(c->nfes ? c->nfes : 1, sizeof(*nfes));
	neps = calloc(totslots ? totslots : 1, sizeof(*neps));
	akeys = calloc(c->nfes ? c->nfes : 1, sizeof(*akeys));
	avals = calloc(c->nfes ? c->nfes : 1, sizeof(*avals));
	matched = calloc(d->nfes ? d->nfes : 1, sizeof(*matched));
	changed = calloc(c->nfes ? c->nfes : 1, sizeof(*changed));
	fresh_ep = calloc(totslots ? totslots : 1, sizeof(*fresh_ep));
	if (!nfes || !neps || !akeys || !avals || !matched || !changed || !fresh_ep) {
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

	/* Frontend addresses go in before the frontends that need them. */
	{
		/* Add-only pass: deletes wait until the frontends are gone. */
		int afd = bpf_map__fd(d->skel->maps.frontend_addrs);

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

	err = kb_sync_hash(d->skel->maps.frontend_addrs, akeys, avals, naddr);
	if (err)
		err = kb_fail(err, "prune", "frontend_addrs map");

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
