// SPDX-License-Identifier: Apache-2.0
/* The dataplane's apply path: a compiled state into the maps, a fresh slot run and one value swap per changed frontend. */
#include <errno.h>
#include <time.h>
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

/*
 * Zero the per-CPU values of ids before they name a new frontend or
 * endpoint: batches of up to 4096 (a first apply of 10,000 Backends zeroes
 * 100,000 endpoint ids: one update each was most of its map writing).
 */
int kb_zero_percpu(struct bpf_map *map, const __u32 *ids, size_t n, int ncpus)
{
	size_t sz = kb_percpu_size(bpf_map__value_size(map), ncpus), chunk = n < 4096 ? n : 4096;
	int fd = bpf_map__fd(map), err = 0;
	void *zero;

	if (!n)
		return 0;
	zero = calloc(chunk, sz);
	if (!zero)
		return -ENOMEM;
	for (size_t i = 0; i < n && !err; i += chunk) {
		__u32 count = (__u32)(n - i < chunk ? n - i : chunk);

		if (!bpf_map_update_batch(fd, ids + i, zero, &count, NULL))
			continue;
		/* Batch ops on arrays need 5.6+; one update each otherwise. */
		for (size_t j = i; j < i + count && !err; j++)
			if (bpf_map_update_elem(fd, &ids[j], zero, 0))
				err = -errno;
	}
	free(zero);
	return err;
}

int kb_before_writes(struct kb_bpf_dataplane *d, __u64 needslots, __u64 freeslots, const __u32 *fresh, size_t nfresh)
{
	int err;

	for (size_t i = 0; i < d->free_runs.n; i++)
		freeslots += d->free_runs.v[i].len;
	for (size_t i = 0; i < d->retired_runs.n; i++)
		freeslots += d->retired_runs.v[i].len;
	if (needslots > freeslots) {
		kb_err("failed to apply %llu new slots: %llu free of %u in the slots map",
		       (unsigned long long)needslots, (unsigned long long)freeslots, d->max_slots);
		return -ENOSPC;
	}
	err = kb_zero_percpu(d->skel->maps.endpoint_stats, fresh, nfresh, d->ncpus);
	return err ? kb_fail(err, "zero", "endpoint counters") : 0;
}

int kb_write_slots(struct kb_bpf_dataplane *d, __u32 base, const struct kb_slot *s, __u32 n)
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
 * A present key's value is written in place by frontend_write (a hash update
 * would replace its element, and a connect looking it up meanwhile could miss
 * it: frontend_write.bpf.c); an absent key is inserted, and only then can
 * connects find it. An insert may reuse the element of a frontend deleted a
 * moment ago at once, under a connect that looked that frontend up and has not
 * read its value yet, which would then read the new frontend's: so an insert
 * after a delete first waits for an RCU grace period (connect4/6 run under
 * rcu_read_lock), or for a second where the kernel cannot promise one.
 */
static void kb_fe_reuse_grace(struct kb_bpf_dataplane *d)
{
	__u64 now = kb_now_ns(), until = d->fe_freed_ns + 1000000000ull;

	if (!d->fe_freed_ns)
		return;
	if (now < until && !kb_rcu_grace()) {
		struct timespec ts = { (time_t)((until - now) / 1000000000ull), (long)((until - now) % 1000000000ull) };

		nanosleep(&ts, NULL);
	}
	d->fe_freed_ns = 0;
}

int kb_fe_publish(struct kb_bpf_dataplane *d, const struct kb_frontend_key *key, const struct kb_frontend *val,
		  bool present)
{
	struct kb_frontend_write w = { .key = *key, .val = *val };
	LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = &w, .ctx_size_in = sizeof(w));
	int fefd = bpf_map__fd(d->skel->maps.frontends);

	for (int tries = 0; tries < 2; tries++, present = !present) {
		if (!present) {
			kb_fe_reuse_grace(d);
			if (!bpf_map_update_elem(fefd, key, val, BPF_NOEXIST))
				return 0;
			if (errno != EEXIST)
				return -errno;
			continue;
		}
		if (bpf_prog_test_run_opts(bpf_program__fd(d->fw->progs.frontend_write), &run))
			return -errno;
		if ((int)run.retval != -ENOENT)
			return (int)run.retval;
	}
	return -EAGAIN;	/* deleted and inserted by someone else in between: the daemon is the only writer */
}

/* The index of key in the mirror, or -1. */
long kb_fe_lookup(const struct kb_bpf_dataplane *d, const struct kb_frontend_key *key)
{
	size_t hole;

	return d->feix.cap ? kb_index_find(&d->feix, key, sizeof(*key), d->fes, sizeof(*d->fes), &hole) : -1;
}

/* Distinct endpoints of a compiled frontend (the ids it needs): few per frontend, so pairwise. */
size_t kb_distinct_eps(const struct kb_cfrontend *cf)
{
	struct kb_fe_ep *e = calloc(cf->neps ? cf->neps : 1, sizeof(*e));
	size_t n = 0;

	if (!e)
		return cf->neps;
	for (size_t k = 0; k < cf->neps; k++) {
		size_t j;

		kb_fe_ep_of(&cf->eps[k], &e[n]);
		for (j = 0; j < n && !kb_fe_ep_eq(&e[j], &e[n]); j++)
			;
		n += j == n;
	}
	free(e);
	return n;
}

/*
 * What c needs of the maps, counted as the apply counts it: distinct
 * frontends, their slots, and distinct (frontend, endpoint) pairs, standby
 * endpoints included. Checked against the flags before anything is written.
 * An unchanged frontend's count is the mirror's.
 */
int kb_bpf_fits(struct kb_dataplane *dp, const struct kb_compiled *c, char *why, size_t len)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_index feix = { 0 };
	struct kb_frontend_key *keys = NULL;
	size_t neps = 0, nkeys = 0, hole, i;
	__u64 slots = 0;
	__u32 maxfe = d->fe_ids.max < d->max_frontends ? d->fe_ids.max : d->max_frontends;
	int err;

	keys = calloc(c->nfes ? c->nfes : 1, sizeof(*keys));
	err = !keys ? -ENOMEM : kb_index_init(&feix, c->nfes);
	if (err) {
		snprintf(why, len, "failed to count what the applied set needs: %s", strerror(-err));
		goto out;
	}
	for (i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *cf = &c->fes[i];
		long old;

		if (kb_index_find(&feix, &cf->key, sizeof(cf->key), keys, sizeof(*keys), &hole) >= 0)
			continue;	/* a duplicate: the apply ignores it */
		keys[nkeys] = cf->key;
		feix.tab[hole] = (__u32)++nkeys;
		slots += cf->nslots;
		old = kb_fe_lookup(d, &cf->key);
		neps += old >= 0 && kb_fe_same(&d->fes[old], cf) ? d->fes[old].nids : kb_distinct_eps(cf);
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
	free(keys);
	return err;
}

static int kb_fresh_push(struct kb_fresh *f, __u32 id)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		__u32 *v = realloc(f->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = id;
	return 0;
}

/*
 * The mirror entry of a changed or new frontend, no kernel writes: its
 * endpoints keep the ids they had in of (the mirror of the same key), new
 * ones get fresh ids; the slots are what the run will hold.
 */
int kb_fe_build(struct kb_bpf_dataplane *d, const struct kb_cfrontend *cf, const struct kb_fe_state *of,
		       struct kb_fe_state *nf, struct kb_fresh *fresh)
{
	int err;

	memset(nf, 0, sizeof(*nf));
	nf->key = cf->key;
	nf->val.nslots = cf->nslots;
	nf->val.lb = (__u8)cf->lb;
	nf->val.frontend_id = of ? of->val.frontend_id : UINT32_MAX;
	nf->val.slot_base = of ? of->val.slot_base : 0;	/* kept if the slots are unchanged */
	nf->eps = calloc(cf->neps ? cf->neps : 1, sizeof(*nf->eps));
	nf->slots = calloc(cf->nslots ? cf->nslots : 1, sizeof(*nf->slots));
	if (!nf->eps || !nf->slots)
		return -ENOMEM;
	/*
	 * Every endpoint gets an id, also one that holds no slot now (a standby
	 * priority, a drained endpoint), so its counters survive while it waits.
	 */
	for (size_t k = 0; k < cf->neps; k++) {
		struct kb_fe_ep *e = &nf->eps[k];
		long dup, o;

		kb_fe_ep_of(&cf->eps[k], e);
		dup = kb_fe_ep_find(nf, e, SIZE_MAX);
		if (e->path && !(e->path = strdup(e->path)))
			return -ENOMEM;
		nf->neps++;
		if (dup >= 0) {
			e->id = nf->eps[dup].id;
			continue;
		}
		e->owner = true;
		nf->nids++;
		o = of ? kb_fe_ep_find(of, e, k) : -1;
		if (o >= 0 && of->eps[o].owner) {
			e->id = of->eps[o].id;
			continue;
		}
		err = kb_id_get(&d->ep_ids, &e->id);
		if (err) {
			kb_err("failed to apply endpoints: more than %u distinct endpoints", d->max_endpoints);
			return err;
		}
		err = kb_fresh_push(fresh, e->id);
		if (err) {
			kb_id_put(&d->ep_ids, e->id);
			return err;
		}
	}
	for (__u32 s = 0; s < cf->nslots; s++) {
		const struct kb_fe_ep *e;
		struct kb_slot *sl = &nf->slots[s];

		if (cf->slots[s] >= cf->neps) {
			kb_err("failed to apply frontend %s:%u: slot %u names no endpoint", cf->address, cf->port, s);
			return -EINVAL;
		}
		e = &nf->eps[cf->slots[s]];
		memcpy(sl->ip, e->ip, sizeof(sl->ip));
		sl->port = e->port;
		sl->family = e->family;
		sl->kind = e->kind;
		sl->endpoint_id = e->id;
	}
	return 0;
}

/* Give back the ids of of's endpoints that nf (NULL: the frontend goes) no longer has. */
void kb_put_gone_ids(struct kb_bpf_dataplane *d, const struct kb_fe_state *of, const struct kb_fe_state *nf)
{
	for (__u32 k = 0; k < of->neps; k++) {
		const struct kb_fe_ep *e = &of->eps[k];

		if (e->owner && (!nf || kb_fe_ep_find(nf, e, k) < 0))
			kb_id_put(&d->ep_ids, e->id);
	}
}

static bool kb_addr_in(const struct kb_index *ix, const struct kb_addr_key *base, const struct kb_addr_key *a,
		       size_t *hole)
{
	return ix->cap && kb_index_find(ix, a, sizeof(*a), base, sizeof(*base), hole) >= 0;
}

/*
 * Program c against the mirror: a frontend the mirror shows unchanged
 * (kb_fe_same) costs no system call; a changed one gets a fresh run and one
 * value swap; a frontend that went is deleted. System calls are thus
 * O(changed frontends), and the comparison a few ms at 10,000.
 */
int kb_bpf_apply(struct kb_dataplane *dp, const struct kb_compiled *c)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_index nfeix = { 0 }, naix = { 0 }, oaix = { 0 };
	struct kb_fe_state *nfes = NULL;
	struct kb_addr_key *naddrs = NULL;
	struct kb_fresh fresh = { 0 }, newfe = { 0 };
	size_t nnfes = 0, nna = 0, i, hole;
	long *from = NULL;
	bool *matched = NULL, *moved = NULL, *changed = NULL;
	__u64 freeslots = 0, needslots = 0;
	int fefd = bpf_map__fd(d->skel->maps.frontends), afd = bpf_map__fd(d->skel->maps.frontend_addrs);
	int err = 0;

	if (c->nfes > d->max_frontends) {
		err = -ENOSPC;
		kb_err("failed to apply %zu frontends: the frontends map holds %u", c->nfes, d->max_frontends);
		return err;
	}
	nfes = calloc(c->nfes ? c->nfes : 1, sizeof(*nfes));
	naddrs = calloc(c->nfes ? c->nfes : 1, sizeof(*naddrs));
	from = calloc(c->nfes ? c->nfes : 1, sizeof(*from));
	changed = calloc(c->nfes ? c->nfes : 1, sizeof(*changed));
	matched = calloc(d->nfes ? d->nfes : 1, sizeof(*matched));
	moved = calloc(d->nfes ? d->nfes : 1, sizeof(*moved));
	if (!nfes || !naddrs || !from || !changed || !matched || !moved) {
		err = -ENOMEM;
		goto out_fail;
	}
	err = kb_index_init(&nfeix, c->nfes);
	err = err ?: kb_index_init(&naix, c->nfes);
	err = err ?: kb_index_init(&oaix, d->naddrs);
	if (err)
		goto out_fail;
	for (i = 0; i < d->naddrs; i++) {
		kb_index_find(&oaix, &d->addrs[i], sizeof(*d->addrs), d->addrs, sizeof(*d->addrs), &hole);
		oaix.tab[hole] = (__u32)i + 1;
	}

	/* Pass 1, no kernel writes: the new mirror; unchanged frontends move over as they are. */
	for (i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *cf = &c->fes[i];
		struct kb_fe_state *nf, *of;
		struct kb_addr_key a;
		long old;

		if (kb_index_find(&nfeix, &cf->key, sizeof(cf->key), nfes, sizeof(*nfes), &hole) >= 0) {
			kb_log_debug("duplicate frontend %s:%u ignored", cf->address, cf->port);
			continue;
		}
		nfeix.tab[hole] = (__u32)nnfes + 1;
		kb_addr_of(&cf->key, &a);
		if (kb_index_find(&naix, &a, sizeof(a), naddrs, sizeof(*naddrs), &hole) < 0) {
			naddrs[nna] = a;
			naix.tab[hole] = (__u32)++nna;
		}
		nf = &nfes[nnfes];
		old = kb_fe_lookup(d, &cf->key);
		of = old >= 0 ? &d->fes[old] : NULL;
		from[nnfes++] = old;
		if (of)
			matched[old] = true;
		if (of && kb_fe_same(of, cf)) {
			*nf = *of;
			moved[old] = true;
			continue;
		}
		err = kb_fe_build(d, cf, of, nf, &fresh);
		if (err) {
			kb_fe_state_free(nf);
			nnfes--;
			if (err != -ENOSPC && err != -EINVAL)
				kb_fail(err, "apply", "frontends");
			goto out_put_ids;
		}
		changed[nnfes - 1] = !(of && of->val.lb == nf->val.lb && !of->val.flags &&
				       of->val.nslots == nf->val.nslots &&
				       (!nf->val.nslots || !memcmp(of->slots, nf->slots, nf->val.nslots * sizeof(*nf->slots))));
	}

	/*
	 * Capacity, checked before any write so that a too-big apply changes
	 * nothing: changed frontends need fresh runs, and the space they may use
	 * is free, retired, or held by frontends that go away or change.
	 */
	for (i = 0; i < d->nfes; i++)
		if (!matched[i])
			freeslots += d->fes[i].val.nslots;
	for (i = 0; i < nnfes; i++) {
		if (!changed[i])
			continue;
		needslots += nfes[i].val.nslots;
		if (from[i] >= 0)
			freeslots += d->fes[from[i]].val.nslots;
	}
	err = kb_before_writes(d, needslots, freeslots, fresh.v, fresh.n);
	if (err)
		goto out_put_ids;

	/* Frontend addresses go in before the frontends that need them; deletes wait until the frontends are gone. */
	for (i = 0; i < nna; i++) {
		__u32 one = 1;

		if (kb_addr_in(&oaix, d->addrs, &naddrs[i], &hole))
			continue;
		if (bpf_map_update_elem(afd, &naddrs[i], &one, BPF_ANY)) {
			err = kb_fail(-errno, "update", "frontend_addrs map");
			goto out_partial;
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
		d->fe_freed_ns = kb_now_ns();
		kb_runs_push(&d->retired_runs, d->fes[i].val.slot_base, d->fes[i].val.nslots, kb_now_ns());
		kb_id_put(&d->fe_ids, d->fes[i].val.frontend_id);
	}
	for (i = 0; i < d->nstale; i++) {
		if (kb_index_find(&nfeix, &d->stale[i], sizeof(d->stale[i]), nfes, sizeof(*nfes), &hole) >= 0)
			continue;	/* rewritten below, as a new frontend */
		if (bpf_map_delete_elem(fefd, &d->stale[i]) && errno != ENOENT) {
			err = kb_fail(-errno, "delete", "frontend");
			goto out_partial;
		}
		d->fe_freed_ns = kb_now_ns();
	}
	/* New frontends take their ids (those of the frontends gone above among them), counters zeroed in batches. */
	for (i = 0; i < nnfes; i++) {
		struct kb_fe_state *nf = &nfes[i];

		if (!changed[i] || nf->val.frontend_id != UINT32_MAX)
			continue;
		err = kb_id_get(&d->fe_ids, &nf->val.frontend_id);
		err = err ?: kb_fresh_push(&newfe, nf->val.frontend_id);
		if (err) {
			kb_err("failed to apply frontend %u: %s", (unsigned)i,
			       err == -ENOSPC ? "no frontend id left" : strerror(-err));
			goto out_partial;
		}
	}
	err = kb_zero_percpu(d->skel->maps.frontend_stats, newfe.v, newfe.n, d->ncpus);
	err = err ?: kb_zero_percpu(d->skel->maps.rr_cursors, newfe.v, newfe.n, d->ncpus);
	if (err) {
		err = kb_fail(err, "zero", "frontend counters");
		goto out_partial;
	}
	/* Pass 2: publish each changed frontend: new run first, then its value, in place when it was there. */
	for (i = 0; i < nnfes; i++) {
		struct kb_fe_state *nf = &nfes[i];
		struct kb_fe_state *of = from[i] >= 0 ? &d->fes[from[i]] : NULL;

		if (!changed[i]) {
			if (of && !moved[from[i]])
				nf->val = of->val;	/* new endpoint ids only: the run stays */
			continue;
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
		err = kb_fe_publish(d, &nf->key, &nf->val, of != NULL);
		if (err) {
			err = kb_fail(err, "update", "frontends map");
			goto out_partial;
		}
		if (of)
			kb_runs_push(&d->retired_runs, of->val.slot_base, of->val.nslots, kb_now_ns());
	}

	for (i = 0; i < d->naddrs; i++) {
		if (kb_addr_in(&naix, naddrs, &d->addrs[i], &hole))
			continue;
		if (bpf_map_delete_elem(afd, &d->addrs[i]) && errno != ENOENT) {
			err = kb_fail(-errno, "prune", "frontend_addrs map");
			goto out_partial;
		}
	}

	/* The new mirror replaces the old one; endpoint ids no frontend holds any more go back. */
	for (i = 0; i < nnfes; i++)
		if (from[i] >= 0 && !moved[from[i]])
			kb_put_gone_ids(d, &d->fes[from[i]], &nfes[i]);
	for (i = 0; i < d->nfes; i++) {
		if (!matched[i])
			kb_put_gone_ids(d, &d->fes[i], NULL);
		if (!moved[i])
			kb_fe_state_free(&d->fes[i]);
	}
	free(d->fes);
	free(d->addrs);
	free(d->stale);
	d->stale = NULL;
	d->nstale = 0;
	d->fes = nfes;
	d->nfes = nnfes;
	d->addrs = naddrs;
	d->naddrs = nna;
	d->neps = 0;
	for (i = 0; i < nnfes; i++)
		d->neps += nfes[i].nids;
	nfes = NULL;
	naddrs = NULL;
	if (kb_reindex(d) && !err)
		err = kb_fail(-ENOMEM, "index", "dataplane state");
	goto out;

out_partial:
	/*
	 * Each frontend already published is whole; the mirror must match the
	 * maps, so adopt them again rather than guess.
	 */
	kb_mirror_free(d);
	d->free_runs.n = d->retired_runs.n = 0;
	d->fe_ids.next = d->ep_ids.next = 0;
	d->fe_ids.nfree = d->ep_ids.nfree = 0;
	if (kb_adopt_state(d))
		kb_err("failed to rebuild dataplane state: maps may hold unreachable runs");
	goto out;
out_put_ids:
	for (i = 0; i < fresh.n; i++)
		kb_id_put(&d->ep_ids, fresh.v[i]);
	goto out;
out_fail:
	kb_fail(err, "apply", "frontends");
out:
	/* Entries moved from the old mirror belong to it (or were freed with it above). */
	if (nfes)
		for (i = 0; i < nnfes; i++)
			if (!(from[i] >= 0 && moved[from[i]]))
				kb_fe_state_free(&nfes[i]);
	free(nfes);
	free(naddrs);
	free(from);
	free(changed);
	free(matched);
	free(moved);
	free(fresh.v);
	free(newfe.v);
	kb_index_free(&nfeix);
	kb_index_free(&naix);
	kb_index_free(&oaix);
	return err;
}
