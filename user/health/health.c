// SPDX-License-Identifier: Apache-2.0
/* Endpoint health, the tracker: lifetime, BPF programs, timers, sync with the compiled table, healthy(), JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon/kernel_features.h"
#include "dataplane/dataplane.h"
#include "health_int.h"
#include "util.h"
#include "sockops.skel.h"
#include "udp_destroy.skel.h"

/* ---- the endpoint index ---- */

static __u64 key_hash(const struct kb_endpoint_key *k)
{
	const unsigned char *b = (const void *)k;
	__u64 h = 1469598103934665603ull;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

struct hep *hl_find(const struct kb_health *h, const struct kb_endpoint_key *k)
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

/* Where the endpoint of key k is in eps (it is tracked). */
static size_t find_pos(const struct kb_health *h, const struct kb_endpoint_key *k)
{
	size_t m = h->ixcap - 1, i;

	for (i = key_hash(k) & m; h->ix[i]; i = (i + 1) & m)
		if (!memcmp(&h->eps[h->ix[i] - 1]->key, k, sizeof(*k)))
			break;
	return h->ix[i] - 1;
}

/* Put eps[e] in the index; a reindex makes room when it is half full. */
static int index_add(struct kb_health *h, size_t e)
{
	size_t m, i;

	if (!h->ixcap || h->neps * 2 > h->ixcap)
		return reindex(h);
	m = h->ixcap - 1;
	for (i = key_hash(&h->eps[e]->key) & m; h->ix[i]; i = (i + 1) & m)
		;
	h->ix[i] = (__u32)e + 1;
	return 0;
}

/* The index slot that holds eps[e]. */
static size_t index_slot(const struct kb_health *h, size_t e)
{
	size_t m = h->ixcap - 1, i;

	for (i = key_hash(&h->eps[e]->key) & m; h->ix[i] != e + 1; i = (i + 1) & m)
		;
	return i;
}

/*
 * Take eps[e] out of the index (linear probing's backward shift: later
 * entries of the run move up when their home allows) and out of eps (the
 * last endpoint takes its place). The caller frees it.
 */
static void hep_remove(struct kb_health *h, size_t e)
{
	size_t m = h->ixcap - 1, i = index_slot(h, e), j = i, last = h->neps - 1;

	for (;;) {
		size_t k;

		j = (j + 1) & m;
		if (!h->ix[j])
			break;
		k = key_hash(&h->eps[h->ix[j] - 1]->key) & m;
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			h->ix[i] = h->ix[j];
			i = j;
		}
	}
	h->ix[i] = 0;
	if (e != last) {
		h->ix[index_slot(h, last)] = (__u32)e + 1;
		h->eps[e] = h->eps[last];
	}
	h->neps--;
}

static void ep_key(const struct kb_cfrontend *fe, const struct kb_cendpoint *ep, struct kb_endpoint_key *k)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->ip, ep->ip, sizeof(k->ip));
	k->port = htons(ep->port);
	k->family = ep->family;
	k->proto = fe->proto;
}

/* ---- state changes ---- */

void hl_set_dirty(struct kb_health *h, struct hep *e, bool was_healthy)
{
	if (was_healthy == hep_healthy(e))
		return;
	h->dirty = true;
	if (was_healthy)
		hl_doom(h, &e->key);
}

/* ---- timers ---- */

static long min_due(long best, long at, long now)
{
	long d = at > now ? at - now : 0;

	return best < 0 || d < best ? d : best;
}

/* One loop timer serves every endpoint: ms to the nearest probe start or deadline, ejection end or decay. */
static int health_due(void *ctx)
{
	struct kb_health *h = ctx;
	long now = kb_now_ms(), best = -1;

	/* The tick walks the endpoints only from walk_at: the loop ticks every timer at every wake. */
	h->walk_at = LONG_MAX;
	if (!h->npolicy)
		return h->dirty || h->ndoomed ? 0 : -1;	/* no check anywhere: nothing to time or walk */
	h->walk_at = now;
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
	h->walk_at = best < 0 ? LONG_MAX : now + best;
	return best > INT32_MAX ? INT32_MAX : (int)best;
}

/* Each endpoint's probe, then its ejection; then one recompile for whatever changed, then the UDP teardown. */
static void health_tick(void *ctx)
{
	struct kb_health *h = ctx;
	long now = kb_now_ms();

	for (size_t i = 0; now >= h->walk_at && i < h->neps; i++) {
		hl_probe_tick(h, h->eps[i], now);
		hl_eject_tick(h, h->eps[i], now);
	}
	if (h->dirty) {
		h->dirty = false;
		if (h->changed)
			h->changed(h->ctx);
	}
	hl_run_destroy(h);
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
	bool was = hep_healthy(e), had = e->active || e->passive;

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
		hl_probe_close(h, e);
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
	h->npolicy = h->npolicy - had + (e->active || e->passive);
	hl_set_dirty(h, e, was);
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

void kb_health_sync(struct kb_health *h, const struct kb_compiled *c)
{
	long now = kb_now_ms();
	size_t n = 0;

	if (!h)
		return;
	for (size_t i = 0; i < h->neps; i++) {
		h->eps[i]->seen = false;
		h->eps[i]->refs = 0;
	}
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
			e = hl_find(h, &k);
			if (!e) {
				e = hep_new(h, &k, now);
				if (!e || reindex(h))
					continue;
			}
			e->refs++;
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
		hl_probe_close(h, e);
		hl_doom(h, &e->key);
		h->npolicy -= e->active || e->passive;
		free(e);
		h->swept = false;	/* its kernel entries go at the next sync */
	}
	h->neps = n;
	if (reindex(h))
		kb_err("failed to index endpoint health: out of memory");
	hl_sync_maps(h);
	hl_run_destroy(h);
}

static bool tracked(const struct kb_cendpoint *ep)
{
	return ep->type != KB_EP_UNIX && (ep->family == AF_INET || ep->family == AF_INET6);
}

int kb_health_update(struct kb_health *h, const struct kb_cfrontend *old, const struct kb_cfrontend *now, size_t n)
{
	struct kb_ep_outcomes *zo;
	long t = kb_now_ms();

	if (!h)
		return 0;
	/*
	 * An endpoint's check is the first frontend's (in table order) that has
	 * one: when one is involved, on either side or on an endpoint either
	 * side uses, only the whole sync knows which.
	 */
	for (size_t f = 0; f < 2 * n; f++) {
		const struct kb_cfrontend *fe = f < n ? &old[f] : &now[f - n];
		struct kb_endpoint_key k;
		const struct hep *e;

		if (fe->policy && (fe->policy->active.present || fe->policy->passive.present))
			return -EAGAIN;
		for (size_t i = 0; i < fe->neps; i++) {
			if (!tracked(&fe->eps[i]))
				continue;
			ep_key(fe, &fe->eps[i], &k);
			e = hl_find(h, &k);
			if (e && (e->active || e->passive))
				return -EAGAIN;
		}
	}
	zo = calloc((size_t)h->ncpus + 1, sizeof(*zo));
	if (!zo)
		return -ENOMEM;
	/* The new users first, so that an endpoint both sides name never drops to no user. */
	for (size_t f = 0; f < n; f++)
		for (size_t i = 0; i < now[f].neps; i++) {
			struct kb_endpoint_key k;
			struct hep *e;

			if (!tracked(&now[f].eps[i]))
				continue;
			ep_key(&now[f], &now[f].eps[i], &k);
			e = hl_find(h, &k);
			if (!e) {
				e = hep_new(h, &k, t);
				if (!e || index_add(h, h->neps - 1)) {
					free(zo);
					return -ENOMEM;	/* the whole sync counts again from scratch */
				}
				e->seen = true;
				apply_policy(h, e, NULL);
				hl_sync_ep(h, e, zo);
			}
			e->refs++;
		}
	for (size_t f = 0; f < n; f++)
		for (size_t i = 0; i < old[f].neps; i++) {
			struct kb_endpoint_key k;
			struct hep *e;

			if (!tracked(&old[f].eps[i]))
				continue;
			ep_key(&old[f], &old[f].eps[i], &k);
			e = hl_find(h, &k);
			if (!e || !e->refs || --e->refs)
				continue;
			/* Its last user went: its probe stops, its UDP sockets and kernel entries go. */
			hl_probe_close(h, e);
			hl_doom(h, &e->key);
			hl_forget_ep(h, &e->key);
			h->npolicy -= e->active || e->passive;
			hep_remove(h, find_pos(h, &k));
			free(e);
		}
	free(zo);
	hl_run_destroy(h);
	return 0;
}

bool kb_health_healthy(struct kb_health *h, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	struct kb_endpoint_key k;
	const struct hep *e;

	if (!h || ep->type == KB_EP_UNIX)
		return true;
	ep_key(fe, ep, &k);
	e = hl_find(h, &k);
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
	e = hl_find(h, &k);
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
	h->so = sockops_bpf__open_opts(kb_core_open_opts());
	err = h->so ? kb_dataplane_reuse_pins(h->so->obj, o->bpffs) : -errno;
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

/* bpf_sock_destroy needs 6.5+; without it (the probe logged that) UDP sockets to an ejected endpoint keep their peer. */
static void open_udp_destroy(struct kb_health *h, const struct kb_health_opts *o)
{
	int err;

	if (!o->udp_destroy)
		return;
	h->ud = udp_destroy_bpf__open();
	err = h->ud ? kb_dataplane_reuse_pins(h->ud->obj, o->bpffs) : -errno;
	if (!err) {
		err = udp_destroy_bpf__load(h->ud);
	}
	if (!err) {
		h->ud_link = bpf_program__attach_iter(h->ud->progs.udp_destroy, NULL);
		if (!h->ud_link)
			err = -errno;
	}
	if (err) {
		kb_err("failed to load the UDP iterator with bpf_sock_destroy: %s; connected UDP sockets will not "
		       "be destroyed on ejection", strerror(-err));
		udp_destroy_bpf__destroy(h->ud);
		h->ud = NULL;
		h->ud_link = NULL;
	}
}

int kb_health_load(const struct kb_health_opts *o, struct kb_health **out)
{
	struct kb_health *h = calloc(1, sizeof(*h));

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
	*out = h;
	return 0;
}

int kb_health_start(struct kb_health *h)
{
	int err;

	hl_eject_watch(h);
	err = kb_loop_add_timer(h->loop, health_due, health_tick, h);
	if (err)
		return err;
	kb_log_debug("health: sockops %s, UDP socket teardown %s", h->so ? "attached" : "off",
		     h->ud_link ? "on" : "off");
	return 0;
}

void kb_health_close(struct kb_health *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->neps; i++) {
		hl_probe_close(h, h->eps[i]);
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
