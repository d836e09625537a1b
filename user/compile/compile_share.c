// SPDX-License-Identifier: Apache-2.0
/* The compiler's pure math: Envoy's priority load, largest-remainder apportionment, and the slot table's size and layout. */
#include <math.h>
#include <stdlib.h>

#include "compile/compile.h"
#include "compile_int.h"

#define KB_SLOTS_PER_EP		64
#define KB_SLOTS_MIN		256	/* 1 slot = 0.39%: below the 1% granularity we promise */
#define KB_SLOTS_MAX		16384	/* bounds the per-frontend run in the slots map */
#define KB_OVERPROVISION_PCT	140	/* Envoy's default overprovisioning factor, as Envoy stores it */

/* ---- Envoy's priority load ------------------------------------------------- */

/*
 * Health of one level, as LoadBalancerBase::recalculatePerPriorityState
 * computes it: integer min(100, 140 * healthy / total); an empty level is 0.
 */
static unsigned level_health(size_t healthy, size_t total)
{
	uint64_t h;

	if (!total)
		return 0;
	h = (uint64_t)KB_OVERPROVISION_PCT * healthy / total;
	return h > 100 ? 100 : (unsigned)h;
}

/*
 * This follows Envoy's source/extensions/load_balancing_policies/common/
 * load_balancer_impl.cc with no degraded hosts:
 *  - recalculatePerPriorityState + distributeLoad: normalized total
 *    availability NTA = min(100, sum of health); when NTA > 0 each level in
 *    order takes min(remaining, health * 100 / NTA) integer percent, and the
 *    rounding remainder goes to the first level with health > 0;
 *  - recalculatePerPriorityPanic: with a threshold of 0 and NTA 0, P0 gets
 *    100% and nothing is in panic (nothing will be served); otherwise no level
 *    is in panic when NTA is 100, else a level is in panic when its healthy
 *    percentage (unscaled) is below the threshold;
 *  - recalculateLoadInTotalPanic: when every level is in panic, the load is
 *    split by host count (integer percent, remainder to the first non-empty
 *    level; all to P0 when there are no hosts at all).
 * Loads are integer percentages, as in Envoy, converted to 0..1 at the end.
 */
void kb_priority_load(const size_t *healthy, const size_t *total, size_t n, unsigned panic_pct, double *load,
		      bool *panic)
{
	unsigned threshold = panic_pct > 100 ? 100 : panic_pct;
	unsigned nta = 0, remaining;
	bool total_panic = true;
	long first = -1;

	if (!n)
		return;
	for (size_t i = 0; i < n; i++) {
		nta += level_health(healthy[i], total[i]);
		load[i] = 0;
		panic[i] = false;
	}
	if (nta > 100)
		nta = 100;

	if (nta > 0) {
		remaining = 100;
		for (size_t i = 0; i < n; i++) {
			unsigned h = level_health(healthy[i], total[i]);
			unsigned l = h * 100 / nta;

			if (first < 0 && h > 0)
				first = (long)i;
			if (l > remaining)
				l = remaining;
			load[i] = l;
			remaining -= l;
		}
		load[first] += remaining;
	}

	if (threshold == 0 && nta == 0) {
		load[0] = 100;
		goto out;
	}

	for (size_t i = 0; i < n; i++) {
		double pct = total[i] ? 100.0 * (double)healthy[i] / (double)total[i] : 0.0;

		panic[i] = nta == 100 ? false : pct < threshold;
		total_panic = total_panic && panic[i];
	}

	if (total_panic) {
		size_t hosts = 0;

		for (size_t i = 0; i < n; i++)
			hosts += total[i];
		for (size_t i = 0; i < n; i++)
			load[i] = 0;
		if (!hosts) {
			load[0] = 100;
			goto out;
		}
		remaining = 100;
		first = -1;
		for (size_t i = 0; i < n; i++) {
			unsigned l = (unsigned)(100 * (uint64_t)total[i] / hosts);

			if (first < 0 && total[i])
				first = (long)i;
			load[i] = l;
			remaining -= l;
		}
		load[first] += remaining;
	}
out:
	for (size_t i = 0; i < n; i++)
		load[i] /= 100.0;
}

/* ---- apportionment and slot layout ----------------------------------------- */

struct rem {
	double frac;
	size_t idx;
};

static int rem_cmp(const void *a, const void *b)
{
	const struct rem *x = a, *y = b;

	if (x->frac != y->frac)
		return x->frac > y->frac ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * Hamilton's largest-remainder method: every count is the floor of its exact
 * quota or one more, so it is within one slot of weight/sum * nslots, and the
 * counts sum to nslots exactly. Equal remainders go to the lower index, so the
 * result is a pure function of the input.
 */
void kb_apportion(const double *weights, size_t n, __u32 nslots, __u32 *counts)
{
	struct rem *r;
	double sum = 0;
	__u64 given = 0;
	size_t npos = 0, left;

	for (size_t i = 0; i < n; i++) {
		counts[i] = 0;
		if (weights[i] > 0) {
			sum += weights[i];
			npos++;
		}
	}
	if (!n || !nslots || sum <= 0)
		return;

	r = calloc(n, sizeof(*r));
	if (!r)
		abort();
	for (size_t i = 0; i < n; i++) {
		double exact = weights[i] > 0 ? (double)nslots * (weights[i] / sum) : 0;
		double fl = (double)(__u64)exact;

		if (fl > nslots)
			fl = nslots;
		counts[i] = (__u32)fl;
		given += counts[i];
		r[i].frac = weights[i] > 0 ? exact - fl : -1.0;	/* zero weights sort last */
		r[i].idx = i;
	}
	qsort(r, n, sizeof(*r), rem_cmp);
	/* Rounding error can only leave fewer than npos slots over; never give one to a zero weight. */
	left = given < nslots ? nslots - (size_t)given : 0;
	for (size_t k = 0; left && npos; k = (k + 1) % npos, left--)
		counts[r[k].idx]++;
	free(r);
}

/*
 * The bound on a table for n endpoints that carry traffic, and its size when
 * no smaller table is exact (kb_table_size()): 64 slots per endpoint, rounded
 * up to a power of two and clamped to [256, 16384]. 256 keeps every inexact
 * table at <= 0.39% a slot; 64 per endpoint keeps a one-slot rounding error
 * under ~1.6% of an endpoint's own share; the cap bounds one frontend's run in
 * the shared slots map (256 or more endpoints share 16384 slots, 0.006% a slot).
 */
__u32 kb_slot_count(size_t n)
{
	__u64 want, p = KB_SLOTS_MIN;

	if (!n)
		return 0;
	if (n > KB_SLOTS_MAX)
		return KB_SLOTS_MAX;
	want = (__u64)n * KB_SLOTS_PER_EP;
	while (p < want && p < KB_SLOTS_MAX)
		p <<= 1;
	return (__u32)p;
}

/*
 * The smallest table that holds every share exactly, if one of at most
 * kb_slot_count(used) slots exists, else kb_slot_count(used) (each endpoint
 * then within one slot). Shares come from integer percents, integer weights
 * and endpoint counts, so they are usually small fractions: 90/10 fits in 10
 * slots and one endpoint in 1. That keeps the common frontend's run tiny (the
 * slots map is shared by every frontend) and makes Random exact, not just
 * within a slot.
 */
__u32 kb_table_size(const double *w, size_t n, size_t used)
{
	__u32 max = kb_slot_count(used);
	double sum = 0;

	if (!used)
		return 0;
	for (size_t i = 0; i < n; i++)
		sum += w[i] > 0 ? w[i] : 0;
	for (__u32 size = (__u32)used; size < max; size++) {
		size_t i;

		for (i = 0; i < n; i++) {
			double x, r;

			if (w[i] <= 0)
				continue;
			x = w[i] / sum * size;
			r = floor(x + 0.5);
			if (r < 1 || fabs(x - r) > 1e-7)
				break;
		}
		if (i == n)
			return size;
	}
	return max;
}

struct spot {
	__u32 k;	/* the k-th slot of ... */
	__u32 count;	/* ... an endpoint holding count slots */
	__u32 ep;
};

/* Order by the fractional position (2k+1)/(2*count), compared exactly, then by endpoint. */
static int spot_cmp(const void *a, const void *b)
{
	const struct spot *x = a, *y = b;
	__u64 l = (2ull * x->k + 1) * y->count, r = (2ull * y->k + 1) * x->count;

	if (l != r)
		return l < r ? -1 : 1;
	return x->ep < y->ep ? -1 : x->ep > y->ep;
}

/*
 * Interleave rather than lay out runs: endpoint i's k-th slot sits at the
 * fractional position (k + 0.5) / count_i, and the table is all positions in
 * order. Any window of the table then holds each endpoint close to its share,
 * so RoundRobin over slots is smooth from the first connection, and the layout
 * depends only on the counts, so ConsistentHash (source hash -> slot index)
 * keeps its mapping across recompiles that change nothing.
 */
void kb_lay_out_slots(const __u32 *counts, size_t n, __u32 nslots, __u32 *slots)
{
	struct spot *s;
	size_t j = 0;

	if (!nslots)
		return;
	s = calloc(nslots, sizeof(*s));
	if (!s)
		abort();
	for (size_t i = 0; i < n; i++)
		for (__u32 k = 0; k < counts[i] && j < nslots; k++)
			s[j++] = (struct spot){ .k = k, .count = counts[i], .ep = (__u32)i };
	qsort(s, j, sizeof(*s), spot_cmp);
	for (size_t i = 0; i < j; i++)
		slots[i] = s[i].ep;
	free(s);
}
