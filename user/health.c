// SPDX-License-Identifier: Apache-2.0
/* Endpoint health: active probes in the daemon's loop, passive ejection from sockops' counters, and UDP socket teardown. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "health.h"
#include "util.h"
#include "sockops.skel.h"
#include "udp_destroy.skel.h"

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
	bool dirty;		/* health changed since the last recompile */
	struct kb_endpoint_key *doomed;	/* UDP endpoints whose connected sockets must go */
	size_t ndoomed, capdoomed;
};

/* ---- the endpoint index ---- */

static __u64 key_hash(const struct kb_endpoint_key *k)
{
	const unsigned char *b = (const void *)k;
	__u64 h = 1469598103934665603ull;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static struct hep *find(const struct kb_health *h, const struct kb_endpoint_key *k)
{
	size_t m, i;

	if (!h->ixcap)
		return NULL;
	m = h->ixcap - 1;
	for (i = key_hash(k) & m; h->ix[i]; i = (i + 1) & m)
		if (!memcmp(&h->eps[h->ix[i] - 1]->key, k, sizeof(*k)))
			return h->eps[h->ix[i] - 1];
	return NULL;
}

static int reindex(struct kb_health *h)
{
	size_t cap = 16, m;

	while (cap < h->neps * 2)
		cap <<= 1;
	free(h->ix);
	h->ix = calloc(cap, sizeof(*h->ix));
	h->ixcap = h->ix ? cap : 0;
	if (!h->ix)
		return -ENOMEM;
	m = cap - 1;
	for (size_t e = 0; e < h->neps; e++) {
		size_t i = key_hash(&h->eps[e]->key) & m;

		while (h->ix[i])
			i = (i + 1) & m;
		h->ix[i] = (__u32)e + 1;
	}
	return 0;
}

static void ep_key(const struct kb_cfrontend *fe, const struct kb_cendpoint *ep, struct kb_endpoint_key *k)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->ip, ep->ip, sizeof(k->ip));
	k->port = htons(ep->port);
	k->family = ep->family;
	k->proto = fe->proto;
}

static void doom(struct kb_health *h, const struct kb_endpoint_key *k)
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
static void run_destroy(struct kb_health *h)
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

/* ---- state changes ---- */

static bool hep_healthy(const struct hep *e)
{
	return !e->ejected && !e->down;
}

static void set_dirty(struct kb_health *h, struct hep *e, bool was_healthy)
{
	if (was_healthy == hep_healthy(e))
		return;
	h->dirty = true;
	if (was_healthy)
		doom(h, &e->key);
}

static bool in_group(const struct group *g, const struct hep *e)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i] == e)
			return true;
	return false;
}

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
	set_dirty(h, e, was);
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct kb_health *h = ctx;
	const struct kb_health_event *ev = data;
	struct hep *e;

	if (len < sizeof(*ev))
		return 0;
	e = find(h, &ev->endpoint);
	if (e)
		try_eject(h, e, ev->failures);
	return 0;
}

static void on_ring(void *ctx, int fd, uint32_t events)
{
	struct kb_health *h = ctx;

	ring_buffer__consume(h->rb);
}

/* ---- active probes ---- */

static void probe_close(struct kb_health *h, struct hep *e)
{
	if (e->fd >= 0) {
		kb_loop_del(h->loop, e->fd);
		close(e->fd);
	}
	e->fd = -1;
	e->phase = PROBE_IDLE;
	e->rlen = 0;
}

static void probe_done(struct kb_health *h, struct hep *e, bool ok, const char *why)
{
	bool was = hep_healthy(e);

	probe_close(h, e);
	e->probes++;
	if (ok) {
		e->fails = 0;
		e->oks++;
		e->last_error[0] = '\0';
		if (e->down && e->oks >= e->healthy_th) {
			e->down = false;
			kb_log_info("health: %s:%u passes its checks again", e->addr, e->port);
		}
	} else {
		e->probe_failures++;
		e->oks = 0;
		e->fails++;
		snprintf(e->last_error, sizeof(e->last_error), "%s", why);
		if (!e->down && e->fails >= e->unhealthy_th) {
			e->down = true;
			kb_log_info("health: %s:%u failed %u checks in a row (%s)", e->addr, e->port, e->fails, why);
		}
	}
	set_dirty(h, e, was);
}

static bool status_expected(const struct hep *e, int status)
{
	if (!e->nstatuses)
		return status == 200;	/* Envoy Gateway: 200 only, by default */
	for (size_t i = 0; i < e->nstatuses; i++)
		if (e->statuses[i] == status)
			return true;
	return false;
}

static void probe_send(struct kb_health *h, struct hep *e)
{
	char req[1024], host[INET6_ADDRSTRLEN + 16];
	int n;

	if (e->key.family == AF_INET6)
		snprintf(host, sizeof(host), "[%s]:%u", e->addr, e->port);
	else
		snprintf(host, sizeof(host), "%s:%u", e->addr, e->port);
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kbackend-health\r\nConnection: close\r\n\r\n",
		     e->method, e->path, host);
	if (n <= 0 || n >= (int)sizeof(req) || send(e->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		probe_done(h, e, false, "send failed");
		return;
	}
	e->phase = PROBE_READING;
	kb_loop_mod(h->loop, e->fd, EPOLLIN);
}

static void on_probe(void *ctx, int fd, uint32_t events)
{
	struct hep *e = ctx;
	struct kb_health *h = e->h;
	int err = 0, status;
	socklen_t len = sizeof(err);
	ssize_t n;
	char *eol;

	if (e->phase == PROBE_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
			probe_done(h, e, false, strerror(err ? err : errno));
			return;
		}
		if (!e->http) {
			probe_done(h, e, true, NULL);
			return;
		}
		probe_send(h, e);
		return;
	}
	n = recv(fd, e->rbuf + e->rlen, sizeof(e->rbuf) - 1 - e->rlen, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			probe_done(h, e, false, strerror(errno));
		return;
	}
	e->rlen += (size_t)n;
	e->rbuf[e->rlen] = '\0';
	eol = strstr(e->rbuf, "\r\n");
	if (!eol && n > 0 && e->rlen < sizeof(e->rbuf) - 1)
		return;	/* the status line is not complete yet */
	if (sscanf(e->rbuf, "HTTP/%*d.%*d %d", &status) != 1) {
		probe_done(h, e, false, "no HTTP status line");
		return;
	}
	if (status_expected(e, status)) {
		probe_done(h, e, true, NULL);
	} else {
		char why[32];

		snprintf(why, sizeof(why), "HTTP status %d", status);
		probe_done(h, e, false, why);
	}
}

/* Non-blocking connect from the daemon's network namespace; the loop reports the outcome. */
static void probe_start(struct kb_health *h, struct hep *e, long now)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(e->port) };
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(e->port) };
	struct sockaddr *sa = (struct sockaddr *)&s4;
	socklen_t sl = sizeof(s4);
	int fd;

	e->next_probe = now + e->interval_ms;
	e->deadline = now + e->timeout_ms;
	if (e->key.family == AF_INET6) {
		memcpy(&s6.sin6_addr, e->key.ip, 16);
		sa = (struct sockaddr *)&s6;
		sl = sizeof(s6);
	} else {
		memcpy(&s4.sin_addr, &e->key.ip[0], 4);
	}
	fd = socket(e->key.family == AF_INET6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		probe_done(h, e, false, strerror(errno));
		return;
	}
	e->fd = fd;
	e->phase = PROBE_CONNECTING;
	if (connect(fd, sa, sl) && errno != EINPROGRESS) {
		probe_done(h, e, false, strerror(errno));
		return;
	}
	if (kb_loop_add(h->loop, fd, EPOLLOUT, on_probe, e)) {
		probe_done(h, e, false, "event loop full");
		return;
	}
}

/* ---- timers ---- */

static long min_due(long best, long at, long now)
{
	long d = at > now ? at - now : 0;

	return best < 0 || d < best ? d : best;
}

static int health_due(void *ctx)
{
	struct kb_health *h = ctx;
	long now = kb_now_ms(), best = -1;

	if (h->dirty || h->ndoomed)
		return 0;
	for (size_t i = 0; i < h->neps; i++) {
		const struct hep *e = h->eps[i];

		if (e->active)
			best = min_due(best, e->phase == PROBE_IDLE ? e->next_probe : e->deadline, now);
		if (e->ejected)
			best = min_due(best, e->eject_until, now);
		else if (e->multiplier)
			best = min_due(best, e->next_decay, now);
	}
	return best > INT32_MAX ? INT32_MAX : (int)best;
}

static void health_tick(void *ctx)
{
	struct kb_health *h = ctx;
	long now = kb_now_ms();

	for (size_t i = 0; i < h->neps; i++) {
		struct hep *e = h->eps[i];

		if (e->active && e->phase == PROBE_IDLE && now >= e->next_probe)
			probe_start(h, e, now);
		else if (e->active && e->phase != PROBE_IDLE && now >= e->deadline)
			probe_done(h, e, false, "timed out");
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
	if (h->dirty) {
		h->dirty = false;
		if (h->changed)
			h->changed(h->ctx);
	}
	run_destroy(h);
}

/* ---- policies and sync ---- */

static long dur_or(int64_t v, long def)
{
	return v > 0 ? (long)v : def;
}

static void apply_policy(struct kb_health *h, struct hep *e, const struct kb_btp *p)
{
	const struct kb_active_hc *a = p && p->active.present ? &p->active : NULL;
	const struct kb_passive_hc *o = p && p->passive.present ? &p->passive : NULL;
	bool was = hep_healthy(e);

	e->active = a != NULL;
	if (a) {
		e->http = a->type && strcmp(a->type, "HTTP") == 0;
		e->timeout_ms = dur_or(a->timeout_ms, KB_HC_TIMEOUT_MS);
		e->interval_ms = dur_or(a->interval_ms, KB_HC_INTERVAL_MS);
		e->unhealthy_th = a->unhealthy_threshold > 0 ? (unsigned)a->unhealthy_threshold : KB_HC_UNHEALTHY_THRESHOLD;
		e->healthy_th = a->healthy_threshold > 0 ? (unsigned)a->healthy_threshold : KB_HC_HEALTHY_THRESHOLD;
		snprintf(e->path, sizeof(e->path), "%s", a->http_path ? a->http_path : "/");
		snprintf(e->method, sizeof(e->method), "%s", a->http_method ? a->http_method : "GET");
		e->nstatuses = 0;
		for (size_t i = 0; i < a->nexpected_statuses && e->nstatuses < 16; i++)
			e->statuses[e->nstatuses++] = (int)a->expected_statuses[i];
	} else {
		probe_close(h, e);
		e->down = false;
		e->fails = e->oks = 0;
	}
	e->passive = false;
	if (o) {
		/*
		 * At L4 every failure is a connect failure, a local-origin error.
		 * As in Envoy, those count against consecutiveLocalOriginFailures
		 * when splitExternalLocalOriginErrors is true, and against
		 * consecutive5XxErrors otherwise; both default to 5.
		 */
		int64_t n = o->split_external_local_origin_errors == 1 ? o->consecutive_local_origin_failures
								       : o->consecutive_5xx;

		if (n < 0)
			n = KB_OD_CONSECUTIVE;

		e->passive = n > 0;
		e->threshold = (unsigned)(n > 0 ? n : 0);
		e->base_ms = dur_or(o->base_ejection_ms, KB_OD_BASE_EJECTION_MS);
		e->od_interval_ms = dur_or(o->interval_ms, KB_OD_INTERVAL_MS);
	}
	if (!e->passive) {
		e->ejected = false;
		e->multiplier = 0;
	}
	set_dirty(h, e, was);
}

static struct hep *hep_new(struct kb_health *h, const struct kb_endpoint_key *k, long now)
{
	struct hep *e = calloc(1, sizeof(*e)), **v;

	if (!e)
		return NULL;
	v = realloc(h->eps, (h->neps + 1) * sizeof(*v));
	if (!v) {
		free(e);
		return NULL;
	}
	h->eps = v;
	h->eps[h->neps++] = e;
	e->key = *k;
	e->h = h;
	e->fd = -1;
	e->port = ntohs(k->port);
	e->next_probe = now;	/* a new endpoint is probed at once; it counts as healthy until proven otherwise */
	inet_ntop(k->family == AF_INET6 ? AF_INET6 : AF_INET, k->ip, e->addr, sizeof(e->addr));
	return e;
}

static void free_groups(struct kb_health *h)
{
	for (size_t g = 0; g < h->ngroups; g++)
		free(h->groups[g].v);
	free(h->groups);
	h->groups = NULL;
	h->ngroups = 0;
}

/* Kernel entries: endpoint_load and endpoint_outcomes for every TCP endpoint, eject_thresholds for passive ones. */
static void sync_maps(struct kb_health *h)
{
	struct kb_endpoint_key k, next, *prev = NULL, *stale = NULL;
	struct kb_ep_load zl = { 0 };
	struct kb_ep_outcomes *zo = calloc((size_t)h->ncpus, sizeof(*zo));
	size_t nstale = 0, cap = 0;

	if (h->load_fd < 0 || !zo) {
		free(zo);
		return;
	}
	for (size_t i = 0; i < h->neps; i++) {
		const struct hep *e = h->eps[i];
		__u32 th = e->threshold, cur;

		if (e->key.proto != KB_PROTO_TCP)
			continue;
		bpf_map_update_elem(h->load_fd, &e->key, &zl, BPF_NOEXIST);
		if (h->outcomes_fd >= 0)
			bpf_map_update_elem(h->outcomes_fd, &e->key, zo, BPF_NOEXIST);
		if (h->thresh_fd < 0)
			continue;
		if (!e->passive)
			bpf_map_delete_elem(h->thresh_fd, &e->key);
		else if (bpf_map_lookup_elem(h->thresh_fd, &e->key, &cur) || cur != th)
			bpf_map_update_elem(h->thresh_fd, &e->key, &th, BPF_ANY);
	}
	/* Entries of endpoints that are gone, also those a previous daemon left behind. */
	while (!bpf_map_get_next_key(h->load_fd, prev, &next)) {
		k = next;
		prev = &k;
		if (find(h, &k))
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
	for (size_t i = 0; i < nstale; i++) {
		bpf_map_delete_elem(h->load_fd, &stale[i]);
		if (h->outcomes_fd >= 0)
			bpf_map_delete_elem(h->outcomes_fd, &stale[i]);
		if (h->thresh_fd >= 0)
			bpf_map_delete_elem(h->thresh_fd, &stale[i]);
	}
	free(stale);
	free(zo);
}

void kb_health_sync(struct kb_health *h, const struct kb_compiled *c)
{
	long now = kb_now_ms();
	size_t n = 0;

	if (!h)
		return;
	for (size_t i = 0; i < h->neps; i++)
		h->eps[i]->seen = false;
	free_groups(h);
	h->groups = calloc(c->nfes ? c->nfes : 1, sizeof(*h->groups));
	for (size_t f = 0; f < c->nfes; f++) {
		const struct kb_cfrontend *fe = &c->fes[f];
		const struct kb_btp *p = fe->policy;
		struct group *g = NULL;

		if (h->groups && p && p->passive.present) {
			g = &h->groups[h->ngroups++];
			g->v = calloc(fe->neps ? fe->neps : 1, sizeof(*g->v));
			g->max_pct = p->passive.max_ejection_percent >= 0 ? (unsigned)p->passive.max_ejection_percent
									  : KB_OD_MAX_EJECTION_PCT;
		}
		for (size_t i = 0; i < fe->neps; i++) {
			const struct kb_cendpoint *ep = &fe->eps[i];
			struct kb_endpoint_key k;
			struct hep *e;

			if (ep->type == KB_EP_UNIX || (ep->family != AF_INET && ep->family != AF_INET6))
				continue;
			ep_key(fe, ep, &k);
			e = find(h, &k);
			if (!e) {
				e = hep_new(h, &k, now);
				if (!e || reindex(h))
					continue;
			}
			if (!e->seen) {
				e->seen = true;
				apply_policy(h, e, p);
			} else if (p && !e->active && !e->passive) {
				apply_policy(h, e, p);	/* a later frontend brings the first health policy */
			}
			if (g && g->v && !in_group(g, e))
				g->v[g->n++] = e;
		}
	}
	/* Endpoints that left the table: their probes stop, their UDP sockets go. */
	for (size_t i = 0; i < h->neps; i++) {
		struct hep *e = h->eps[i];

		if (e->seen) {
			h->eps[n++] = e;
			continue;
		}
		probe_close(h, e);
		doom(h, &e->key);
		free(e);
	}
	h->neps = n;
	if (reindex(h))
		kb_err("failed to index endpoint health: out of memory");
	sync_maps(h);
	run_destroy(h);
}

bool kb_health_healthy(struct kb_health *h, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	struct kb_endpoint_key k;
	const struct hep *e;

	if (!h || ep->type == KB_EP_UNIX)
		return true;
	ep_key(fe, ep, &k);
	e = find(h, &k);
	return !e || hep_healthy(e);
}

/* ---- `get endpoints` ---- */

static void add_u64(struct json_object *o, const char *k, __u64 v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

struct json_object *kb_health_endpoint_json(struct kb_health *h, const struct kb_cfrontend *fe,
					    const struct kb_cendpoint *ep)
{
	struct json_object *j, *oc;
	struct kb_endpoint_key k;
	struct kb_ep_load load;
	const struct hep *e;

	if (!h || ep->type == KB_EP_UNIX)
		return NULL;
	ep_key(fe, ep, &k);
	e = find(h, &k);
	if (!e)
		return NULL;
	j = json_object_new_object();
	json_object_object_add(j, "state", json_object_new_string(e->ejected ? "ejected"
								   : e->down  ? "failing-checks"
									      : "healthy"));
	if (e->ejected) {
		char when[32];
		struct tm tm;

		gmtime_r(&e->eject_until_wall, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_object_object_add(j, "ejectedUntil", json_object_new_string(when));
		add_u64(j, "ejectedForMs", (__u64)(e->eject_until > kb_now_ms() ? e->eject_until - kb_now_ms() : 0));
	}
	add_u64(j, "ejections", e->ejections);
	if (e->active) {
		struct json_object *a = json_object_new_object();

		json_object_object_add(a, "type", json_object_new_string(e->http ? "HTTP" : "TCP"));
		add_u64(a, "failingProbes", e->fails);
		add_u64(a, "probes", e->probes);
		add_u64(a, "probeFailures", e->probe_failures);
		if (e->last_error[0])
			json_object_object_add(a, "lastError", json_object_new_string(e->last_error));
		json_object_object_add(j, "active", a);
	}
	if (e->passive) {
		struct json_object *p = json_object_new_object();

		add_u64(p, "consecutiveFailuresToEject", e->threshold);
		add_u64(p, "baseEjectionTimeMs", (__u64)e->base_ms);
		json_object_object_add(j, "passive", p);
	}
	if (k.proto == KB_PROTO_TCP && h->load_fd >= 0 && !bpf_map_lookup_elem(h->load_fd, &k, &load)) {
		struct kb_ep_outcomes *v = calloc((size_t)h->ncpus, sizeof(*v)), sum = { 0 };

		add_u64(j, "activeConnections", load.active > 0 ? (__u64)load.active : 0);
		add_u64(j, "consecutiveFailures", load.consecutive_failures);
		if (v && h->outcomes_fd >= 0 && !bpf_map_lookup_elem(h->outcomes_fd, &k, v)) {
			for (int c = 0; c < h->ncpus; c++) {
				sum.established += v[c].established;
				sum.refused += v[c].refused;
				sum.timed_out += v[c].timed_out;
				sum.failed += v[c].failed;
			}
			oc = json_object_new_object();
			add_u64(oc, "established", sum.established);
			add_u64(oc, "refused", sum.refused);
			add_u64(oc, "timedOut", sum.timed_out);
			add_u64(oc, "failed", sum.failed);
			json_object_object_add(j, "outcomes", oc);
		}
		free(v);
	}
	return j;
}

/* ---- open and close ---- */

/* Point every map of obj at the dataplane's pin of the same name (they all come from bpf/maps.bpf.h). */
static int reuse_pins(struct bpf_object *obj, const char *bpffs)
{
	struct bpf_map *map;
	char path[PATH_MAX];

	bpf_object__for_each_map(map, obj) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		int fd, err;

		if (bpf_map__is_internal(map))
			continue;
		snprintf(path, sizeof(path), "%s/%s", bpffs, bpf_map__name(map));
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			if (!bpf_obj_get_info_by_fd(fd, &info, &len))
				bpf_map__set_max_entries(map, info.max_entries);
			close(fd);
		}
		err = bpf_map__set_pin_path(map, path);
		if (err)
			return err;
	}
	return 0;
}

/* The pinned link of prog, pointed at the new program, or a fresh attachment pinned there. */
static int attach_pinned(struct bpf_program *prog, const char *path, int cgfd, __u64 cgid, struct bpf_link **out)
{
	struct bpf_link *link;
	int err;

	if (!access(path, F_OK)) {
		link = bpf_link__open(path);
		if (link) {
			struct bpf_link_info info = { 0 };
			__u32 len = sizeof(info);

			if (!bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) && info.cgroup.cgroup_id == cgid &&
			    !bpf_link__update_program(link, prog)) {
				*out = link;
				return 0;
			}
			bpf_link_detach(bpf_link__fd(link));
			bpf_link__destroy(link);
		}
		unlink(path);
	}
	link = bpf_program__attach_cgroup(prog, cgfd);
	if (!link)
		return -errno;
	err = bpf_link__pin(link, path);
	if (err) {
		bpf_link__destroy(link);
		return err;
	}
	*out = link;
	return 0;
}

static int pin_fd(const char *bpffs, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", bpffs, name);
	return bpf_obj_get(path);
}

static void open_sockops(struct kb_health *h, const struct kb_health_opts *o)
{
	char path[PATH_MAX];
	struct stat st;
	int cgfd, err;

	cgfd = open(o->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0 || fstat(cgfd, &st)) {
		kb_err("failed to open cgroup %s: %s; no passive health or LeastRequest counts", o->cgroup,
		       strerror(errno));
		if (cgfd >= 0)
			close(cgfd);
		return;
	}
	h->so = sockops_bpf__open();
	err = h->so ? reuse_pins(h->so->obj, o->bpffs) : -errno;
	err = err ?: sockops_bpf__load(h->so);
	snprintf(path, sizeof(path), "%s/links/sockops_health", o->bpffs);
	err = err ?: attach_pinned(h->so->progs.sockops_health, path, cgfd, (__u64)st.st_ino, &h->so_link);
	if (err) {
		kb_err("failed to load sockops program: %s; no passive health or LeastRequest counts", strerror(-err));
		sockops_bpf__destroy(h->so);
		h->so = NULL;
	}
	close(cgfd);
}

/* bpf_sock_destroy needs 6.5+; without it, UDP sockets to an ejected endpoint keep their peer. */
static void open_udp_destroy(struct kb_health *h, const struct kb_health_opts *o)
{
	int err;

	h->ud = udp_destroy_bpf__open();
	err = h->ud ? reuse_pins(h->ud->obj, o->bpffs) : -errno;
	if (!err) {
		/* Quiet: a kernel without the kfunc fails here, and that is reported once below. */
		err = udp_destroy_bpf__load(h->ud);
	}
	if (!err) {
		h->ud_link = bpf_program__attach_iter(h->ud->progs.udp_destroy, NULL);
		if (!h->ud_link)
			err = -errno;
	}
	if (err) {
		kb_log_info("connected UDP sockets will not be destroyed on ejection: the UDP iterator with "
			    "bpf_sock_destroy (Linux 6.5+) did not load: %s", strerror(-err));
		udp_destroy_bpf__destroy(h->ud);
		h->ud = NULL;
		h->ud_link = NULL;
	}
}

int kb_health_open(const struct kb_health_opts *o, struct kb_health **out)
{
	struct kb_health *h = calloc(1, sizeof(*h));
	int err;

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->loop = o->loop;
	h->changed = o->changed;
	h->ctx = o->ctx;
	h->bpffs = o->bpffs;
	h->ncpus = libbpf_num_possible_cpus();
	if (h->ncpus <= 0)
		h->ncpus = 1;
	open_sockops(h, o);
	open_udp_destroy(h, o);
	h->load_fd = pin_fd(o->bpffs, "endpoint_load");
	h->outcomes_fd = pin_fd(o->bpffs, "endpoint_outcomes");
	h->thresh_fd = pin_fd(o->bpffs, "eject_thresholds");
	h->targets_fd = pin_fd(o->bpffs, "udp_destroy_targets");
	h->events_fd = pin_fd(o->bpffs, "health_events");
	if (h->events_fd >= 0) {
		h->rb = ring_buffer__new(h->events_fd, on_event, h, NULL);
		if (!h->rb || kb_loop_add(h->loop, ring_buffer__epoll_fd(h->rb), EPOLLIN, on_ring, h))
			kb_err("failed to watch the health event ring: %s; passive ejection waits for nothing",
			       strerror(errno));
	}
	err = kb_loop_add_timer(h->loop, health_due, health_tick, h);
	if (err) {
		kb_health_close(h);
		return err;
	}
	kb_log_debug("health: sockops %s, UDP socket teardown %s", h->so ? "attached" : "off",
		     h->ud_link ? "on" : "off");
	*out = h;
	return 0;
}

void kb_health_close(struct kb_health *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->neps; i++) {
		probe_close(h, h->eps[i]);
		free(h->eps[i]);
	}
	free(h->eps);
	free(h->ix);
	free_groups(h);
	free(h->doomed);
	if (h->rb) {
		kb_loop_del(h->loop, ring_buffer__epoll_fd(h->rb));
		ring_buffer__free(h->rb);
	}
	/* Closing the pinned sockops link's fd leaves it attached, like the dataplane's links. */
	bpf_link__destroy(h->so_link);
	sockops_bpf__destroy(h->so);
	bpf_link__destroy(h->ud_link);
	udp_destroy_bpf__destroy(h->ud);
	{
		int fds[] = { h->load_fd, h->outcomes_fd, h->thresh_fd, h->targets_fd, h->events_fd };

		for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
	free(h);
}
