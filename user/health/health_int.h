/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to health*.c (not an API): the per-endpoint health record, the
 * tracker, and the few functions the files call across. health.c owns the
 * endpoint table, the BPF programs, timers and sync with the compiled table;
 * health_probe.c runs the active checks; health_eject.c does passive
 * ejection from sockops' counters and the UDP socket teardown.
 */
#ifndef KB_HEALTH_INT_H
#define KB_HEALTH_INT_H

#include <netinet/in.h>
#include <time.h>

#include "health/health.h"

struct bpf_link;
struct ring_buffer;
struct sockops_bpf;
struct udp_destroy_bpf;

/*
 * Health is kept per endpoint address (ip, port, transport), like Envoy's
 * per-host health: an endpoint that serves several frontends is probed once.
 * Its policy is the one of the first frontend (compile order) whose
 * BackendTrafficPolicy has a health check; maxEjectionPercent is enforced
 * per frontend, Envoy's cluster.
 */

enum probe_phase { PROBE_IDLE, PROBE_CONNECTING, PROBE_READING };

struct hep {
	struct kb_endpoint_key key;	/* first: the index compares it */
	struct kb_health *h;
	char addr[INET6_ADDRSTRLEN];
	__u16 port;			/* host order */
	bool seen;			/* in the table being synced */
	unsigned refs;			/* (frontend, endpoint) pairs of the table that name it */
	/* What hl_sync_maps last wrote to the kernel for it, so an unchanged endpoint costs no system call. */
	bool synced, synced_passive;
	__u32 synced_th;

	/* Active checks (healthCheck.active). */
	bool active, http;
	long timeout_ms, interval_ms;
	unsigned unhealthy_th, healthy_th;
	char path[512], method[16];
	int statuses[16];
	size_t nstatuses;
	bool down;			/* unhealthy_th probes failed in a row */
	unsigned fails, oks;		/* current run */
	unsigned long probes, probe_failures;
	char last_error[64];
	long next_probe, deadline;	/* monotonic ms */
	int fd;
	enum probe_phase phase;
	char rbuf[128];
	size_t rlen;

	/* Passive ejection (healthCheck.passive, Envoy's outlier detection). */
	bool passive;
	unsigned threshold;		/* consecutive failed connects that eject */
	long base_ms, od_interval_ms;
	unsigned max_pct;
	bool ejected;
	long eject_until;		/* monotonic ms */
	time_t eject_until_wall;
	unsigned ejections;		/* since tracked */
	unsigned multiplier;		/* Envoy's ejection backoff: +1 an ejection, -1 an interval healthy */
	long next_decay;
};

/* A frontend with a passive policy: the endpoints maxEjectionPercent counts over. */
struct group {
	struct hep **v;
	size_t n;
	unsigned max_pct;
};

struct kb_health {
	bool swept;			/* the kernel's entries were checked for endpoints that are gone */
	struct kb_loop *loop;
	void (*changed)(void *ctx);
	void *ctx;
	const char *bpffs;
	int ncpus;
	struct sockops_bpf *so;
	struct bpf_link *so_link;
	struct udp_destroy_bpf *ud;
	struct bpf_link *ud_link;
	int load_fd, outcomes_fd, thresh_fd, targets_fd, events_fd;
	struct ring_buffer *rb;

	struct hep **eps;
	size_t neps;
	__u32 *ix;		/* open addressing over eps by key: index + 1, 0 empty */
	size_t ixcap;
	struct group *groups;
	size_t ngroups;
	size_t npolicy;		/* endpoints with an active or passive check: none, nothing is timed */
	long walk_at;		/* kb_now_ms() from which the tick has an endpoint to serve (health_due's finding) */
	bool dirty;		/* health changed since the last recompile */
	struct kb_endpoint_key *doomed;	/* UDP endpoints whose connected sockets must go */
	size_t ndoomed, capdoomed;
};

static inline bool hep_healthy(const struct hep *e)
{
	return !e->ejected && !e->down;
}

static inline bool in_group(const struct group *g, const struct hep *e)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i] == e)
			return true;
	return false;
}

/* ---- the tracker (health.c) ------------------------------------------------------------ */

/* The tracked endpoint of key k, or NULL. */
struct hep *hl_find(const struct kb_health *h, const struct kb_endpoint_key *k);
/* After a change to e: if its health flipped, recompile; if it went unhealthy, its UDP sockets go. */
void hl_set_dirty(struct kb_health *h, struct hep *e, bool was_healthy);

/* ---- active checks (health_probe.c) ---------------------------------------------------- */

/* Start e's probe when it is due, or fail the one in flight at its deadline. */
void hl_probe_tick(struct kb_health *h, struct hep *e, long now);
/* Abandon e's probe in flight, if any (no outcome is counted). */
void hl_probe_close(struct kb_health *h, struct hep *e);

/* ---- passive ejection and UDP teardown (health_eject.c) -------------------------------- */

/* Watch sockops' event ring (events_fd): an endpoint past its threshold of failed connects is ejected. */
void hl_eject_watch(struct kb_health *h);
/* End an ejection that ran its time; decay the backoff multiplier after a healthy interval. */
void hl_eject_tick(struct kb_health *h, struct hep *e, long now);
/* Make the kernel's per-endpoint entries match the tracked endpoints. */
void hl_sync_maps(struct kb_health *h);
/* The same for one endpoint (zo: zeroed per-CPU outcomes, ncpus long); and drop the entries of one that went. */
void hl_sync_ep(struct kb_health *h, struct hep *e, const void *zo);
void hl_forget_ep(struct kb_health *h, const struct kb_endpoint_key *k);
/* Queue k's connected UDP sockets for destruction (TCP keys are ignored). */
void hl_doom(struct kb_health *h, const struct kb_endpoint_key *k);
/* Destroy the queued UDP sockets now. */
void hl_run_destroy(struct kb_health *h);

#endif /* KB_HEALTH_INT_H */
