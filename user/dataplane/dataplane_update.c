// SPDX-License-Identifier: Apache-2.0
/*
 * The dataplane's update path: frontends that are programmed already, each
 * reprogrammed in place of the one of its key. A scoped change recompiles a
 * Gateway's frontends and keeps their keys, so nothing is added or removed:
 * the frontend addresses stay, the mirror keeps its index, and the work is
 * the given frontends only (an unchanged one costs no system call, a changed
 * one a fresh slot run and its value written in place), however many others there are.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "dataplane_int.h"
#include "util.h"

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

/* Where each of fes is in the mirror (from[i]); -ENOENT when one is not programmed, or is given twice. */
static int locate(const struct kb_bpf_dataplane *d, const struct kb_cfrontend *fes, size_t n, long *from)
{
	long *sorted;
	int err = 0;

	if (d->nstale)
		return -ENOENT;	/* pinned frontends adoption could not mirror: a whole apply deletes them */
	for (size_t i = 0; i < n; i++) {
		from[i] = kb_fe_lookup(d, &fes[i].key);
		if (from[i] < 0)
			return -ENOENT;
	}
	sorted = malloc((n ? n : 1) * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, from, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_long);
	for (size_t i = 1; i < n && !err; i++)
		if (sorted[i] == sorted[i - 1])
			err = -ENOENT;
	free(sorted);
	return err;
}

int kb_bpf_fits_update(struct kb_dataplane *dp, const struct kb_cfrontend *fes, size_t n, char *why, size_t len)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	long *from = calloc(n ? n : 1, sizeof(*from));
	__u64 slots = d->nslots;
	size_t neps = d->neps;
	int err;

	err = !from ? -ENOMEM : locate(d, fes, n, from);
	if (err) {
		snprintf(why, len, "%s", err == -ENOMEM ? "out of memory" : "a frontend to update is not programmed");
		free(from);
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		const struct kb_fe_state *of = &d->fes[from[i]];

		if (kb_fe_same(of, &fes[i]))
			continue;
		slots = slots - of->val.nslots + fes[i].nslots;
		neps = neps - of->nids + kb_distinct_eps(&fes[i]);
	}
	free(from);
	if (slots > d->max_slots) {
		snprintf(why, len, "the applied set needs %llu slots; the daemon was started with --max-slots %u",
			 (unsigned long long)slots, d->max_slots);
		return -ENOSPC;
	}
	if (neps > d->max_endpoints) {
		snprintf(why, len,
			 "the applied set needs %zu endpoints (frontend and endpoint pairs); the daemon was started with "
			 "--max-endpoints %u", neps, d->max_endpoints);
		return -ENOSPC;
	}
	return 0;
}

int kb_bpf_update(struct kb_dataplane *dp, const struct kb_cfrontend *fes, size_t n)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	struct kb_fe_state *nfes = calloc(n ? n : 1, sizeof(*nfes));
	long *from = calloc(n ? n : 1, sizeof(*from));
	bool *build = calloc(n ? n : 1, sizeof(*build)), *changed = calloc(n ? n : 1, sizeof(*changed));
	struct kb_fresh fresh = { 0 };
	__u64 freeslots = 0, needslots = 0;
	size_t i, nbuilt = 0;
	int err;

	err = !nfes || !from || !build || !changed ? -ENOMEM : locate(d, fes, n, from);
	if (err)
		goto out;

	/* Pass 1, no kernel writes: the new mirror entries of the frontends that differ. */
	for (i = 0; i < n; i++) {
		const struct kb_fe_state *of = &d->fes[from[i]];
		struct kb_fe_state *nf = &nfes[i];

		if (kb_fe_same(of, &fes[i]))
			continue;
		build[i] = true;
		nbuilt++;
		err = kb_fe_build(d, &fes[i], of, nf, &fresh);
		if (err) {
			if (err != -ENOSPC && err != -EINVAL)
				kb_fail(err, "update", "frontends");
			goto out_put_ids;
		}
		changed[i] = !(of->val.lb == nf->val.lb && !of->val.flags && of->val.nslots == nf->val.nslots &&
			       (!nf->val.nslots || !memcmp(of->slots, nf->slots, nf->val.nslots * sizeof(*nf->slots))));
		if (changed[i]) {
			needslots += nf->val.nslots;
			freeslots += of->val.nslots;
		}
	}
	if (!nbuilt)
		goto out;
	/* Capacity before any write, as the whole apply checks it: a change that does not fit changes nothing. */
	err = kb_before_writes(d, needslots, freeslots, fresh.v, fresh.n);
	if (err)
		goto out_put_ids;

	/* Pass 2: publish each changed frontend, new run first, then one value written in place; the old run retires. */
	for (i = 0; i < n; i++) {
		struct kb_fe_state *nf = &nfes[i], *of = &d->fes[from[i]];

		if (!build[i])
			continue;
		if (!changed[i]) {
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
		/* In place (frontend_write): a hash update would replace the element under a connect reading it. */
		err = kb_fe_publish(d, &nf->key, &nf->val, true);
		if (err) {
			err = kb_fail(err, "update", "frontends map");
			goto out_partial;
		}
		kb_runs_push(&d->retired_runs, of->val.slot_base, of->val.nslots, kb_now_ns());
	}

	/* The new entries replace the old ones in place (same keys: the index stands). */
	for (i = 0; i < n; i++) {
		struct kb_fe_state *of = &d->fes[from[i]];

		if (!build[i])
			continue;
		kb_put_gone_ids(d, of, &nfes[i]);
		d->neps = d->neps - of->nids + nfes[i].nids;
		d->nslots = d->nslots - of->val.nslots + nfes[i].val.nslots;
		kb_fe_state_free(of);
		*of = nfes[i];
		memset(&nfes[i], 0, sizeof(nfes[i]));
	}
	goto out;

out_partial:
	/* Each frontend already published is whole; the mirror must match the maps, so adopt them again. */
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
out:
	for (i = 0; nfes && i < n; i++)
		kb_fe_state_free(&nfes[i]);
	if (err == -ENOMEM)
		kb_fail(err, "update", "frontends");
	free(nfes);
	free(from);
	free(build);
	free(changed);
	free(fresh.v);
	return err;
}
