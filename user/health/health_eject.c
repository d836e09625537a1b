// SPDX-License-Identifier: Apache-2.0
/* Passive health (outlier detection): sockops' per-endpoint maps, ejection and its timing, UDP socket teardown. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "health_int.h"
#include "util.h"

/* ---- the kernel's per-endpoint entries ---- */

/* Kernel entries: endpoint_load and endpoint_outcomes for every TCP endpoint, eject_thresholds for passive ones. */
void hl_sync_ep(struct kb_health *h, struct hep *e, const void *zo)
{
	struct kb_ep_load zl = { 0 };
	__u32 th = e->threshold, cur;

	if (h->load_fd < 0 || e->key.proto != KB_PROTO_TCP)
		return;
	/* Written before with the same settings: a change of 1 of 10,000 frontends makes no call here. */
	if (e->synced && e->synced_passive == e->passive && e->synced_th == th)
		return;
	e->synced = true;
	e->synced_passive = e->passive;
	e->synced_th = th;
	bpf_map_update_elem(h->load_fd, &e->key, &zl, BPF_NOEXIST);
	if (h->outcomes_fd >= 0)
		bpf_map_update_elem(h->outcomes_fd, &e->key, zo, BPF_NOEXIST);
	if (h->thresh_fd < 0)
		return;
	if (!e->passive)
		bpf_map_delete_elem(h->thresh_fd, &e->key);
	else if (bpf_map_lookup_elem(h->thresh_fd, &e->key, &cur) || cur != th)
		bpf_map_update_elem(h->thresh_fd, &e->key, &th, BPF_ANY);
}

void hl_forget_ep(struct kb_health *h, const struct kb_endpoint_key *k)
{
	if (h->load_fd < 0)
		return;
	bpf_map_delete_elem(h->load_fd, k);
	if (h->outcomes_fd >= 0)
		bpf_map_delete_elem(h->outcomes_fd, k);
	if (h->thresh_fd >= 0)
		bpf_map_delete_elem(h->thresh_fd, k);
}

void hl_sync_maps(struct kb_health *h)
{
	struct kb_endpoint_key k, next, *prev = NULL, *stale = NULL;
	struct kb_ep_outcomes *zo = calloc((size_t)h->ncpus, sizeof(*zo));
	size_t nstale = 0, cap = 0;

	if (h->load_fd < 0 || !zo) {
		free(zo);
		return;
	}
	for (size_t i = 0; i < h->neps; i++)
		hl_sync_ep(h, h->eps[i], zo);
	/* Entries of endpoints that are gone, also those a previous daemon left behind (once, then after each removal). */
	while (!h->swept && !bpf_map_get_next_key(h->load_fd, prev, &next)) {
		k = next;
		prev = &k;
		if (hl_find(h, &k))
			continue;
		if (nstale == cap) {
			struct kb_endpoint_key *v;

			cap = cap ? cap * 2 : 64;
			v = realloc(stale, cap * sizeof(*v));
			if (!v)
				break;
			stale = v;
		}
		stale[nstale++] = k;
	}
	for (size_t i = 0; i < nstale; i++)
		hl_forget_ep(h, &stale[i]);
	free(stale);
	free(zo);
	h->swept = true;
}

/* ---- ejection ---- */

/*
 * Envoy's outlier ejection: refused while the ejected hosts of any frontend
 * the endpoint serves are already at maxEjectionPercent ("the number of
 * ejected hosts is below the allowed threshold", so with none ejected one
 * host always may go). The ejection lasts base × multiplier, capped.
 */
static void try_eject(struct kb_health *h, struct hep *e, unsigned failures)
{
	long now = kb_now_ms(), dur, cap;
	bool was = hep_healthy(e);

	if (!e->passive || e->ejected)
		return;
	for (size_t g = 0; g < h->ngroups; g++) {
		const struct group *gr = &h->groups[g];
		size_t ejected = 0;

		if (!in_group(gr, e))
			continue;
		for (size_t i = 0; i < gr->n; i++)
			ejected += gr->v[i]->ejected;
		if (ejected * 100 >= (size_t)gr->max_pct * gr->n) {
			kb_log_debug("health: %s:%u not ejected: %zu of %zu already ejected (maxEjectionPercent %u)",
				     e->addr, e->port, ejected, gr->n, gr->max_pct);
			return;
		}
	}
	e->multiplier++;
	cap = e->base_ms > KB_OD_MAX_EJECTION_MS ? e->base_ms : KB_OD_MAX_EJECTION_MS;
	dur = e->base_ms * (long)e->multiplier;
	if (dur > cap)
		dur = cap;
	e->ejected = true;
	e->ejections++;
	e->eject_until = now + dur;
	e->eject_until_wall = time(NULL) + (dur + 999) / 1000;
	e->next_decay = now + dur + e->od_interval_ms;
	kb_log_info("health: ejected %s:%u for %ld ms after %u consecutive failed connects", e->addr, e->port, dur,
		    failures);
	hl_set_dirty(h, e, was);
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct kb_health *h = ctx;
	const struct kb_health_event *ev = data;
	struct hep *e;

	if (len < sizeof(*ev))
		return 0;
	e = hl_find(h, &ev->endpoint);
	if (e)
		try_eject(h, e, ev->failures);
	return 0;
}

static void on_ring(void *ctx, int fd, uint32_t events)
{
	struct kb_health *h = ctx;

	ring_buffer__consume(h->rb);
}

void hl_eject_watch(struct kb_health *h)
{
	if (h->events_fd < 0)
		return;
	h->rb = ring_buffer__new(h->events_fd, on_event, h, NULL);
	if (!h->rb || kb_loop_add(h->loop, ring_buffer__epoll_fd(h->rb), EPOLLIN, on_ring, h))
		kb_err("failed to watch the health event ring: %s; passive ejection waits for nothing",
		       strerror(errno));
}

void hl_eject_tick(struct kb_health *h, struct hep *e, long now)
{
	if (e->ejected && now >= e->eject_until) {
		e->ejected = false;
		e->next_decay = now + e->od_interval_ms;
		kb_log_info("health: %s:%u back from ejection", e->addr, e->port);
		h->dirty |= hep_healthy(e);
	} else if (!e->ejected && e->multiplier && now >= e->next_decay) {
		e->multiplier--;
		e->next_decay = now + e->od_interval_ms;
	}
}

/* ---- UDP socket teardown ---- */

void hl_doom(struct kb_health *h, const struct kb_endpoint_key *k)
{
	if (k->proto != KB_PROTO_UDP)
		return;
	if (h->ndoomed == h->capdoomed) {
		size_t cap = h->capdoomed ? h->capdoomed * 2 : 16;
		struct kb_endpoint_key *v = realloc(h->doomed, cap * sizeof(*v));

		if (!v)
			return;
		h->doomed = v;
		h->capdoomed = cap;
	}
	h->doomed[h->ndoomed++] = *k;
}

/*
 * Destroy the connected UDP sockets steered to a doomed endpoint: fill
 * udp_destroy_targets, run the iterator once (reading it to the end runs the
 * program over every UDP socket of this network namespace), then clear it.
 */
void hl_run_destroy(struct kb_health *h)
{
	size_t n = h->ndoomed, i;
	__u8 one = 1;
	char buf[64];
	int fd;

	h->ndoomed = 0;
	if (!n || !h->ud_link || h->targets_fd < 0)
		return;
	for (i = 0; i < n; i++)
		bpf_map_update_elem(h->targets_fd, &h->doomed[i], &one, BPF_ANY);
	fd = bpf_iter_create(bpf_link__fd(h->ud_link));
	if (fd < 0) {
		kb_err("failed to run the UDP socket iterator: %s", strerror(errno));
	} else {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
		kb_log_info("destroyed the connected UDP sockets steered to %zu ejected or removed endpoint(s)", n);
	}
	for (i = 0; i < n; i++)
		bpf_map_delete_elem(h->targets_fd, &h->doomed[i]);
}
