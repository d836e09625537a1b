// SPDX-License-Identifier: Apache-2.0
/* Prometheus metrics at /metrics (libmicrohttpd, run from the daemon's loop): counters from the per-CPU maps and the daemon. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <microhttpd.h>

#include "daemon/daemon_int.h"
#include "reads/metrics.h"
#include "util.h"
#include "sources/watch.h"

#define METRICS_MAX_CONNECTIONS 32
#define METRICS_CONNECTION_TIMEOUT_S 10
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct kb_metrics {
	struct MHD_Daemon *mhd;
	int epfd;		/* MHD's epoll fd, watched by kb_loop */
	long run_at;		/* MHD wants a run by then (its timeouts); 0: no timer */
	unsigned long scrapes;
};

/* ---- writers ------------------------------------------------------------------------ */

void kb_metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values escape backslash, double quote and newline (the text format's rules). */
static void put_labels(FILE *f, va_list ap)
{
	const char *k, *v;
	bool first = true;

	while ((k = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		fprintf(f, "%s%s=\"", first ? "{" : ",", k);
		/* Most values need no escape: one write, not one a character (45 MB at 10,000 frontends). */
		if (!v || !strpbrk(v, "\\\"\n")) {
			fputs(v ? v : "", f);
			v = "";
		}
		for (const char *p = v; *p; p++) {
			if (*p == '\\' || *p == '"')
				fputc('\\', f);
			if (*p == '\n')
				fputs("\\n", f);
			else
				fputc(*p, f);
		}
		fputc('"', f);
		first = false;
	}
	if (!first)
		fputc('}', f);
}

void kb_metrics_u64(FILE *f, const char *name, uint64_t v, ...)
{
	va_list ap;

	fputs(name, f);
	va_start(ap, v);
	put_labels(f, ap);
	va_end(ap);
	fprintf(f, " %llu\n", (unsigned long long)v);
}

void kb_metrics_f64(FILE *f, const char *name, double v, ...)
{
	va_list ap;

	fputs(name, f);
	va_start(ap, v);
	put_labels(f, ap);
	va_end(ap);
	fprintf(f, " %.17g\n", v);
}

/* ---- sections ------------------------------------------------------------------------ */

static void section_daemon(FILE *f, struct daemon *d)
{
	kb_metrics_family(f, "kbackend_start_time_seconds", "gauge", "Unix time the daemon started.");
	kb_metrics_u64(f, "kbackend_start_time_seconds", (uint64_t)d->started, NULL);
	kb_metrics_family(f, "kbackend_objects", "gauge", "Accepted objects in the stored state.");
	kb_metrics_u64(f, "kbackend_objects", d->state.nobjects, NULL);
	kb_metrics_family(f, "kbackend_frontends", "gauge", "Frontends programmed in the maps.");
	kb_metrics_u64(f, "kbackend_frontends", d->compiled.nfes, NULL);
	kb_metrics_family(f, "kbackend_applies_total", "counter",
			  "Changes (apply, delete, watch-dir replace) that took effect.");
	kb_metrics_u64(f, "kbackend_applies_total", d->applies, NULL);
	kb_metrics_family(f, "kbackend_apply_errors_total", "counter",
			  "Changes refused (nothing was changed), and watch-dir reads that failed.");
	kb_metrics_u64(f, "kbackend_apply_errors_total", d->apply_errors, NULL);
	kb_metrics_family(f, "kbackend_last_apply_timestamp_seconds", "gauge",
			  "Unix time of the last change that took effect; 0: none since start.");
	kb_metrics_u64(f, "kbackend_last_apply_timestamp_seconds", (uint64_t)d->last_apply, NULL);
}

static void section_watch(FILE *f, struct daemon *d)
{
	struct kb_watch_counters w;

	if (kb_watch_counters(d, &w))
		return;
	kb_metrics_family(f, "kbackend_watch_reloads_total", "counter", "Reads of --watch-dir that took effect.");
	kb_metrics_u64(f, "kbackend_watch_reloads_total", w.reloads, NULL);
	kb_metrics_family(f, "kbackend_watch_errors_total", "counter",
			  "Reads of --watch-dir refused; the last good state was kept.");
	kb_metrics_u64(f, "kbackend_watch_errors_total", w.errors, NULL);
	kb_metrics_family(f, "kbackend_watch_ok", "gauge",
			  "1 when the maps serve --watch-dir as it is now, 0 when a bad file keeps the last good state.");
	kb_metrics_u64(f, "kbackend_watch_ok", (uint64_t)w.ok, NULL);
	kb_metrics_family(f, "kbackend_watch_last_reload_timestamp_seconds", "gauge",
			  "Unix time of the last read of --watch-dir that took effect.");
	kb_metrics_u64(f, "kbackend_watch_last_reload_timestamp_seconds", (uint64_t)w.last_reload, NULL);
}

/* "198.18.0.10:80", "[2001:db8:f::1]:80", or a unix path as it is. */
static void host_port(char *buf, size_t len, const char *addr, unsigned port, int family)
{
	if (family == AF_UNIX || !port)
		snprintf(buf, len, "%s", addr ? addr : "");
	else if (family == AF_INET6 || (addr && strchr(addr, ':')))
		snprintf(buf, len, "[%s]:%u", addr, port);
	else
		snprintf(buf, len, "%s:%u", addr ? addr : "", port);
}

struct ep_row {
	const struct kb_cfrontend *fe;
	const char *fe_name;	/* its frontend's row name */
	const struct kb_cendpoint *ep;
	char name[300];
	struct kb_conn_stats s;
	bool have;		/* the dataplane has counters for it */
};

struct fe_row {
	const struct kb_cfrontend *fe;
	char name[80];
	struct kb_conn_stats s;
	bool have;
	size_t nhealthy;
};

/* What health knows of one endpoint address (shared by every frontend that uses it). */
struct addr_row {
	const struct ep_row *r;	/* the first frontend endpoint with this address */
	uint64_t established, refused, timed_out, failed, active, ejections;
	bool outcomes;		/* sockops counts its connects */
};

static const char *proto_label(__u8 proto)
{
	return proto == KB_PROTO_UDP ? "udp" : "tcp";
}

#define FE_COUNTER(field, metric, help)                                                                  \
	do {                                                                                             \
		kb_metrics_family(f, metric, "counter", help);                                           \
		for (size_t i = 0; i < nfe; i++)                                                         \
			if (fes[i].have)                                                                 \
				kb_metrics_u64(f, metric, fes[i].s.field, "frontend", fes[i].name, "protocol", \
					       proto_label(fes[i].fe->proto), NULL);                     \
	} while (0)

#define EP_LABELS(r)                                                                      \
	"frontend", (r)->fe_name, "protocol", proto_label((r)->fe->proto), "backend", (r)->ep->backend, \
		"endpoint", (r)->name, NULL

#define ADDR_LABELS(a) "endpoint", (a)->r->name, "protocol", proto_label((a)->r->fe->proto), NULL

/* An endpoint listed twice in one frontend (two refs to one Backend) is one series: rows[from..n) are its frontend's. */
static bool ep_seen(const struct ep_row *rows, size_t from, size_t n, const struct ep_row *r)
{
	for (size_t i = from; i < n; i++)
		if (!strcmp(rows[i].name, r->name) &&
		    !strcmp(rows[i].ep->backend ? rows[i].ep->backend : "", r->ep->backend ? r->ep->backend : ""))
			return true;
	return false;
}

static uint64_t ju64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

/* Health's view of each distinct endpoint address: handshakes, failures, open connections, ejections. */
static size_t addr_rows(struct daemon *d, const struct ep_row *eps, size_t nep, struct addr_row *out)
{
	struct kb_arena arena = { 0 };
	struct kb_smap seen = { .a = &arena };	/* "proto name": each address once, without a walk per row */
	size_t n = 0;

	for (size_t i = 0; d->health && i < nep; i++) {
		struct json_object *jh, *oc;
		struct addr_row *a;
		char key[320];

		if (eps[i].ep->type == KB_EP_UNIX)
			continue;
		snprintf(key, sizeof(key), "%u %s", eps[i].fe->proto, eps[i].name);
		if (kb_smap_get(&seen, key))
			continue;
		kb_smap_put(&seen, kb_strdup(&arena, key), (void *)&eps[i]);
		jh = kb_health_endpoint_json(d->health, eps[i].fe, eps[i].ep);
		if (!jh)
			continue;
		a = &out[n++];
		memset(a, 0, sizeof(*a));
		a->r = &eps[i];
		a->ejections = ju64(jh, "ejections");
		a->active = ju64(jh, "activeConnections");
		if (json_object_object_get_ex(jh, "outcomes", &oc)) {
			a->outcomes = true;
			a->established = ju64(oc, "established");
			a->refused = ju64(oc, "refused");
			a->timed_out = ju64(oc, "timedOut");
			a->failed = ju64(oc, "failed");
		}
		json_object_put(jh);
	}
	kb_arena_free(&arena);
	return n;
}

/*
 * Per frontend and per endpoint: connects and refusals from the per-CPU
 * maps, then health's per-address view (sockops outcomes, open connections,
 * ejections) and each endpoint's health as programmed.
 */
/* Every frontend's and endpoint's counters, STATS_BATCH frontends a dataplane call; false: not available. */
#define STATS_BATCH 1024
static bool read_all_stats(struct daemon *d, struct kb_conn_stats *fe, bool *fe_ok, struct kb_conn_stats *ep,
			   bool *ep_ok)
{
	const struct kb_compiled *c = &d->compiled;
	const struct kb_cfrontend *batch[STATS_BATCH];
	size_t off = 0;

	if (!d->dp->ops->stats_many)
		return false;
	for (size_t i = 0; i < c->nfes; i += STATS_BATCH) {
		size_t n = c->nfes - i < STATS_BATCH ? c->nfes - i : STATS_BATCH, nep = 0;

		for (size_t k = 0; k < n; k++) {
			batch[k] = &c->fes[i + k];
			nep += batch[k]->neps;
		}
		if (d->dp->ops->stats_many(d->dp, batch, n, fe + i, fe_ok + i, ep + off, ep_ok + off))
			return false;
		off += nep;
	}
	return true;
}

static void section_traffic(FILE *f, struct daemon *d)
{
	const struct kb_compiled *c = &d->compiled;
	struct fe_row *fes = calloc(c->nfes + 1, sizeof(*fes));
	struct ep_row *eps;
	struct addr_row *addrs = NULL;
	size_t nfe = 0, nep = 0, naddr = 0, total = 0, k = 0;
	struct kb_conn_stats *fs = NULL, *es = NULL;
	bool *fs_ok = NULL, *es_ok = NULL, batched = false;

	for (size_t i = 0; i < c->nfes; i++)
		total += c->fes[i].neps;
	eps = calloc(total + 1, sizeof(*eps));
	addrs = calloc(total + 1, sizeof(*addrs));
	if (!fes || !eps || !addrs)
		goto out;
	fs = calloc(c->nfes + 1, sizeof(*fs));
	fs_ok = calloc(c->nfes + 1, sizeof(*fs_ok));
	es = calloc(total + 1, sizeof(*es));
	es_ok = calloc(total + 1, sizeof(*es_ok));
	batched = fs && fs_ok && es && es_ok && read_all_stats(d, fs, fs_ok, es, es_ok);
	for (size_t i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *fe = &c->fes[i];
		struct fe_row *r = &fes[nfe++];

		r->fe = fe;
		host_port(r->name, sizeof(r->name), fe->address, fe->port, fe->key.family);
		if (batched) {
			r->s = fs[i];
			r->have = fs_ok[i];
		} else {
			r->have = d->dp->ops->frontend_stats && !d->dp->ops->frontend_stats(d->dp, fe, &r->s);
		}
		size_t first = nep;

		for (size_t e = 0; e < fe->neps; e++, k++) {
			struct ep_row *er = &eps[nep];

			er->fe = fe;
			er->fe_name = r->name;
			er->ep = &fe->eps[e];
			host_port(er->name, sizeof(er->name), er->ep->address, er->ep->port, er->ep->family);
			if (er->ep->healthy)
				r->nhealthy++;
			if (ep_seen(eps, first, nep, er))
				continue;
			if (batched) {
				er->s = es[k];
				er->have = es_ok[k];
			} else {
				er->have = d->dp->ops->endpoint_stats && !d->dp->ops->endpoint_stats(d->dp, fe, e, &er->s);
			}
			nep++;
		}
	}
	naddr = addr_rows(d, eps, nep, addrs);

	FE_COUNTER(connects, "kbackend_frontend_connections_total",
		   "Connections (TCP connects, UDP flows) steered by the frontend to an endpoint.");
	FE_COUNTER(refused, "kbackend_frontend_refused_total",
		   "Connects to the frontend refused because it had no usable endpoint.");
	kb_metrics_family(f, "kbackend_frontend_endpoints", "gauge", "Endpoints the frontend selects from.");
	for (size_t i = 0; i < nfe; i++)
		kb_metrics_u64(f, "kbackend_frontend_endpoints", fes[i].fe->neps, "frontend", fes[i].name, "protocol",
			       proto_label(fes[i].fe->proto), NULL);
	kb_metrics_family(f, "kbackend_frontend_healthy_endpoints", "gauge",
			  "Endpoints of the frontend that are healthy.");
	for (size_t i = 0; i < nfe; i++)
		kb_metrics_u64(f, "kbackend_frontend_healthy_endpoints", fes[i].nhealthy, "frontend", fes[i].name,
			       "protocol", proto_label(fes[i].fe->proto), NULL);

	kb_metrics_family(f, "kbackend_endpoint_connections_total", "counter",
			  "Connections the frontend steered to the endpoint.");
	for (size_t i = 0; i < nep; i++)
		if (eps[i].have)
			kb_metrics_u64(f, "kbackend_endpoint_connections_total", eps[i].s.connects, EP_LABELS(&eps[i]));
	kb_metrics_family(f, "kbackend_endpoint_healthy", "gauge",
			  "1 when the endpoint is healthy (active checks and outlier ejection), else 0.");
	for (size_t i = 0; i < nep; i++)
		kb_metrics_u64(f, "kbackend_endpoint_healthy", eps[i].ep->healthy ? 1 : 0, EP_LABELS(&eps[i]));
	kb_metrics_family(f, "kbackend_endpoint_share_ratio", "gauge",
			  "Fraction of the frontend's new connections the endpoint receives (0 to 1).");
	for (size_t i = 0; i < nep; i++)
		kb_metrics_f64(f, "kbackend_endpoint_share_ratio", eps[i].ep->share, EP_LABELS(&eps[i]));

	/* Per endpoint address, over every frontend that uses it: what sockops saw and health decided. */
	kb_metrics_family(f, "kbackend_endpoint_established_total", "counter",
			  "TCP connects to the endpoint address whose handshake completed (all frontends).");
	for (size_t i = 0; i < naddr; i++)
		if (addrs[i].outcomes)
			kb_metrics_u64(f, "kbackend_endpoint_established_total", addrs[i].established,
				       ADDR_LABELS(&addrs[i]));
	kb_metrics_family(f, "kbackend_endpoint_failures_total", "counter",
			  "TCP connects to the endpoint address that failed, by reason: refused (RST), timeout, other.");
	for (size_t i = 0; i < naddr; i++) {
		if (!addrs[i].outcomes)
			continue;
		kb_metrics_u64(f, "kbackend_endpoint_failures_total", addrs[i].refused, "endpoint", addrs[i].r->name,
			       "protocol", proto_label(addrs[i].r->fe->proto), "reason", "refused", NULL);
		kb_metrics_u64(f, "kbackend_endpoint_failures_total", addrs[i].timed_out, "endpoint", addrs[i].r->name,
			       "protocol", proto_label(addrs[i].r->fe->proto), "reason", "timeout", NULL);
		kb_metrics_u64(f, "kbackend_endpoint_failures_total", addrs[i].failed, "endpoint", addrs[i].r->name,
			       "protocol", proto_label(addrs[i].r->fe->proto), "reason", "other", NULL);
	}
	kb_metrics_family(f, "kbackend_endpoint_active_connections", "gauge",
			  "TCP connections to the endpoint address open now (all frontends).");
	for (size_t i = 0; i < naddr; i++)
		if (addrs[i].outcomes)
			kb_metrics_u64(f, "kbackend_endpoint_active_connections", addrs[i].active, ADDR_LABELS(&addrs[i]));
	kb_metrics_family(f, "kbackend_endpoint_ejections_total", "counter",
			  "Outlier ejections of the endpoint address (passive health), since health began tracking it.");
	for (size_t i = 0; i < naddr; i++)
		kb_metrics_u64(f, "kbackend_endpoint_ejections_total", addrs[i].ejections, ADDR_LABELS(&addrs[i]));
out:
	free(fs);
	free(fs_ok);
	free(es);
	free(es_ok);
	free(fes);
	free(eps);
	free(addrs);
}

/* DNS: totals from the resolver, and each name's usable addresses and failure streak. */
static void section_dns(FILE *f, struct daemon *d)
{
	struct json_object *st = kb_resolver_status_json(d->resolver);
	uint64_t refreshes, errors;

	kb_resolver_counters(d->resolver, &refreshes, &errors);
	kb_metrics_family(f, "kbackend_dns_refreshes_total", "counter", "DNS lookups that returned a good answer.");
	kb_metrics_u64(f, "kbackend_dns_refreshes_total", refreshes, NULL);
	kb_metrics_family(f, "kbackend_dns_errors_total", "counter",
			  "DNS lookups that failed (timeout, SERVFAIL, NXDOMAIN, ...); the last good answer is kept.");
	kb_metrics_u64(f, "kbackend_dns_errors_total", errors, NULL);
	if (!st)
		return;
	kb_metrics_family(f, "kbackend_dns_name_addresses", "gauge", "Usable addresses of an FQDN endpoint's name.");
	json_object_object_foreach(st, host, o) {
		struct json_object *a;

		kb_metrics_u64(f, "kbackend_dns_name_addresses",
			       json_object_object_get_ex(o, "addresses", &a) ? json_object_array_length(a) : 0, "name",
			       host, NULL);
	}
	kb_metrics_family(f, "kbackend_dns_name_consecutive_failures", "gauge",
			  "Failed lookups of the name since its last good answer.");
	json_object_object_foreach(st, host2, o2) {
		struct json_object *v;

		kb_metrics_u64(f, "kbackend_dns_name_consecutive_failures",
			       json_object_object_get_ex(o2, "consecutive_failures", &v) ? (uint64_t)json_object_get_int64(v)
											    : 0,
			       "name", host2, NULL);
	}
	json_object_put(st);
}

/* The unix-socket bridge: connections and bytes it moved between clients and sidecars. */
static void section_bridge(FILE *f, struct daemon *d)
{
	struct kb_bridge_stats s = { 0 };

	if (!d->bridge)
		return;
	kb_bridge_get_stats(d->bridge, &s);
	kb_metrics_family(f, "kbackend_bridge_connections_total", "counter",
			  "Connections the bridge accepted for unix-socket endpoints.");
	kb_metrics_u64(f, "kbackend_bridge_connections_total", s.accepted, NULL);
	kb_metrics_family(f, "kbackend_bridge_refused_total", "counter",
			  "Bridged connections reset because the sidecar refused them or was absent.");
	kb_metrics_u64(f, "kbackend_bridge_refused_total", s.refused, NULL);
	kb_metrics_family(f, "kbackend_bridge_active_connections", "gauge", "Bridged connections open now.");
	kb_metrics_u64(f, "kbackend_bridge_active_connections", s.active, NULL);
	kb_metrics_family(f, "kbackend_bridge_bytes_total", "counter",
			  "Bytes the bridge moved, by direction (to_sidecar: from clients; to_client: from sidecars).");
	kb_metrics_u64(f, "kbackend_bridge_bytes_total", s.bytes_up, "direction", "to_sidecar", NULL);
	kb_metrics_u64(f, "kbackend_bridge_bytes_total", s.bytes_down, "direction", "to_client", NULL);
	kb_metrics_family(f, "kbackend_bridge_listeners", "gauge", "Unix sidecar paths the bridge serves.");
	kb_metrics_u64(f, "kbackend_bridge_listeners", s.listeners, NULL);
}

/*
 * Every program attached through a link pinned under <bpffs>/links: its run
 * count and run time (bpf_prog_info run_cnt, run_time_ns). The kernel counts
 * both only while BPF stats are on, which costs a little on every run, so it
 * is the operator's choice; the sysctl does not show a BPF_ENABLE_STATS fd.
 */
static void section_bpf(FILE *f, struct daemon *d)
{
	struct prog { char name[256]; __u64 cnt, ns; } *progs = NULL;
	size_t n = 0;
	char dir[4096];
	struct dirent *e;
	DIR *dh;

	snprintf(dir, sizeof(dir), "%s/links", d->bpffs);
	dh = opendir(dir);
	while (dh && (e = readdir(dh))) {
		struct bpf_link_info li = { 0 };
		struct bpf_prog_info pi = { 0 };
		__u32 ll = sizeof(li), pl = sizeof(pi);
		char path[4400];
		struct prog *np;
		int lfd, pfd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		lfd = bpf_obj_get(path);
		if (lfd < 0)
			continue;
		pfd = bpf_obj_get_info_by_fd(lfd, &li, &ll) ? -1 : bpf_prog_get_fd_by_id(li.prog_id);
		close(lfd);
		if (pfd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(pfd, &pi, &pl) && (np = realloc(progs, (n + 1) * sizeof(*progs)))) {
			progs = np;
			snprintf(progs[n].name, sizeof(progs[n].name), "%s", e->d_name);
			progs[n].cnt = pi.run_cnt;
			progs[n].ns = pi.run_time_ns;
			n++;
		}
		close(pfd);
	}
	if (dh)
		closedir(dh);
	kb_metrics_family(f, "kbackend_bpf_program_runs_total", "counter",
			  "Runs of the BPF program, counted only while the kernel's BPF stats are on "
			  "(sysctl kernel.bpf_stats_enabled=1, or a BPF_ENABLE_STATS holder).");
	for (size_t i = 0; i < n; i++)
		kb_metrics_u64(f, "kbackend_bpf_program_runs_total", progs[i].cnt, "program", progs[i].name, NULL);
	kb_metrics_family(f, "kbackend_bpf_program_run_seconds_total", "counter",
			  "Time spent running the BPF program, counted only while the kernel's BPF stats are on.");
	for (size_t i = 0; i < n; i++)
		kb_metrics_f64(f, "kbackend_bpf_program_run_seconds_total", (double)progs[i].ns / 1e9, "program",
			       progs[i].name, NULL);
	free(progs);
}

/* The map sizes (--max-* flags) and their use, so that an alert can fire before an apply is refused. */
static void section_limits(FILE *f, struct daemon *d)
{
	struct kb_dataplane_usage u;
	struct { const char *map; __u64 used; __u32 max; } rows[5];

	if (!d->dp->ops->usage)
		return;
	d->dp->ops->usage(d->dp, true, &u);
	rows[0] = (typeof(rows[0])){ "frontends", u.frontends, u.max_frontends };
	rows[1] = (typeof(rows[0])){ "slots", u.slots, u.max_slots };
	rows[2] = (typeof(rows[0])){ "endpoints", u.endpoints, u.max_endpoints };
	rows[3] = (typeof(rows[0])){ "tracked_sockets", u.sockets, u.max_sockets };
	rows[4] = (typeof(rows[0])){ "udp_senders", u.udp_senders, u.max_udp_senders };
	kb_metrics_family(f, "kbackend_map_capacity", "gauge",
			  "Entries the maps hold at most (--max-frontends, --max-slots, --max-endpoints, "
			  "--max-tracked-sockets).");
	for (size_t i = 0; i < 5; i++)
		kb_metrics_u64(f, "kbackend_map_capacity", rows[i].max, "limit", rows[i].map, NULL);
	kb_metrics_family(f, "kbackend_map_used", "gauge", "Entries in use of each limit.");
	for (size_t i = 0; i < 5; i++)
		if (rows[i].used != ~0ull)
			kb_metrics_u64(f, "kbackend_map_used", rows[i].used, "limit", rows[i].map, NULL);
}

/*
 * Every family, in order. A new module adds a section here, written with
 * kb_metrics_family() and kb_metrics_u64()/kb_metrics_f64(); per-endpoint
 * values belong in section_traffic, so that each family stays one block.
 */
static void (*const sections[])(FILE *f, struct daemon *d) = {
	section_daemon, section_limits, section_watch, section_traffic, section_dns, section_bridge, section_bpf,
};

char *kb_metrics_render(struct daemon *d, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	if (!f)
		return NULL;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		sections[i](f, d);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	if (len)
		*len = n;
	return buf;
}

/* ---- HTTP -------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len, bool must_free)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				status == MHD_HTTP_OK && must_free ? METRICS_CONTENT_TYPE : "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	static char index[] = "kbackend: Prometheus metrics at /metrics\n";
	static char not_found[] = "not found: try /metrics\n";
	static char not_allowed[] = "method not allowed: GET or HEAD\n";
	struct daemon *d = cls;
	size_t len;
	char *body;

	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed), false);
	if (!strcmp(url, "/"))
		return reply(conn, MHD_HTTP_OK, index, strlen(index), false);
	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found), false);
	body = kb_metrics_render(d, &len);
	if (!body)
		return MHD_NO;
	d->metrics->scrapes++;
	return reply(conn, MHD_HTTP_OK, body, len, true);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	kb_log_info("metrics: %s", msg);
}

static void run_mhd(struct kb_metrics *m)
{
	m->run_at = 0;
	MHD_run(m->mhd);
}

static void on_mhd_ready(void *ctx, int fd, uint32_t events)
{
	struct daemon *d = ctx;

	if (d->metrics)
		run_mhd(d->metrics);
}

static int mhd_due(void *ctx)
{
	struct daemon *d = ctx;
	MHD_UNSIGNED_LONG_LONG t;
	long now = kb_now_ms();

	if (!d->metrics || MHD_get_timeout(d->metrics->mhd, &t) != MHD_YES)
		return -1;
	if (t > 60000)
		t = 60000;
	d->metrics->run_at = now + (long)t;
	return (int)t;
}

static void mhd_tick(void *ctx)
{
	struct daemon *d = ctx;

	if (d->metrics && d->metrics->run_at && kb_now_ms() >= d->metrics->run_at)
		run_mhd(d->metrics);
}

int kb_metrics_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h = s;
	size_t hl;
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (!hl || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
		return -EINVAL;
	if (s[0] != '[' && !strchr(host, ':')) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			return -EINVAL;
		*len = sizeof(*in);
		return 0;
	}
	if (s[0] == '[') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			return -EINVAL;
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;	/* a bare IPv6 address needs brackets: [2001:db8::1]:9464 */
}

int kb_metrics_start(struct daemon *d)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	struct kb_metrics *m;
	socklen_t len;
	int err;

	if (!d->metrics_addr)
		return 0;
	if (kb_metrics_parse_addr(d->metrics_addr, &ss, &len)) {
		kb_err("failed to serve metrics on %s: expected ADDR:PORT or [ADDR]:PORT", d->metrics_addr);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	/*
	 * No internal thread: MHD runs only when the loop calls MHD_run, on the
	 * daemon's thread. SO_REUSEPORT lets an upgraded daemon bind the same
	 * address while the old one still runs.
	 */
	m->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				  0, NULL, NULL, on_request, d,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_CONNECTION_TIMEOUT_S,
				  MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
				  MHD_OPTION_END);
	if (!m->mhd) {
		kb_err("failed to serve metrics on %s: cannot listen (address in use or not local?)", d->metrics_addr);
		free(m);
		return -EADDRNOTAVAIL;
	}
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	m->epfd = info ? info->epoll_fd : -1;
	err = m->epfd < 0 ? -EINVAL : kb_loop_add(d->loop, m->epfd, EPOLLIN, on_mhd_ready, d);
	if (!err)
		err = kb_loop_add_timer(d->loop, mhd_due, mhd_tick, d);
	if (err) {
		kb_err("failed to serve metrics on %s: %s", d->metrics_addr, strerror(-err));
		if (m->epfd >= 0)
			kb_loop_del(d->loop, m->epfd);
		MHD_stop_daemon(m->mhd);
		free(m);
		return err;
	}
	d->metrics = m;
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
	kb_log_info("metrics at http://%s/metrics (port %u)", d->metrics_addr, info ? (unsigned)info->port : 0);
	return 0;
}

void kb_metrics_stop(struct daemon *d)
{
	struct kb_metrics *m = d->metrics;

	if (!m)
		return;
	kb_loop_del(d->loop, m->epfd);
	MHD_stop_daemon(m->mhd);
	free(m);
	d->metrics = NULL;	/* the timer stays registered, and does nothing from now on */
}
