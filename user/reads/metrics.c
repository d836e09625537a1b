// SPDX-License-Identifier: Apache-2.0
/* Prometheus metrics at /metrics (libmicrohttpd, run from the daemon's loop): counters from the per-CPU maps and the daemon. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <microhttpd.h>

#include "daemon/daemon_int.h"
#include "reads/metrics.h"
#include "reads/metrics_int.h"
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

static void put(struct kb_mout *o, const char *s, size_t n)
{
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *nb;

		while (cap < o->len + n)
			cap *= 2;
		nb = o->oom ? NULL : realloc(o->b, cap);
		if (!nb) {
			o->oom = true;
			return;
		}
		o->b = nb;
		o->cap = cap;
	}
	memcpy(o->b + o->len, s, n);
	o->len += n;
}

static void puts_(struct kb_mout *o, const char *s)
{
	put(o, s, strlen(s));
}

void kb_metrics_family(struct kb_mout *o, const char *name, const char *type, const char *help)
{
	puts_(o, "# HELP ");
	puts_(o, name);
	put(o, " ", 1);
	puts_(o, help);
	puts_(o, "\n# TYPE ");
	puts_(o, name);
	put(o, " ", 1);
	puts_(o, type);
	put(o, "\n", 1);
}

/* Label values escape backslash, double quote and newline (the text format's rules). */
static void put_labels(struct kb_mout *o, va_list ap)
{
	const char *k, *v;
	bool first = true;

	while ((k = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		put(o, first ? "{" : ",", 1);
		puts_(o, k);
		put(o, "=\"", 2);
		/* Most values need no escape: one copy, not one a character. */
		if (!v || !strpbrk(v, "\\\"\n")) {
			puts_(o, v ? v : "");
			v = "";
		}
		for (const char *p = v; *p; p++) {
			if (*p == '\\' || *p == '"')
				put(o, "\\", 1);
			if (*p == '\n')
				put(o, "\\n", 2);
			else
				put(o, p, 1);
		}
		put(o, "\"", 1);
		first = false;
	}
	if (!first)
		put(o, "}", 1);
}

void kb_metrics_u64(struct kb_mout *o, const char *name, uint64_t v, ...)
{
	char buf[24];
	size_t n = sizeof(buf);
	va_list ap;

	puts_(o, name);
	va_start(ap, v);
	put_labels(o, ap);
	va_end(ap);
	/* The digits by hand: this runs for every series (a few hundred thousand at 10,000 frontends). */
	buf[--n] = '\n';
	do
		buf[--n] = (char)('0' + v % 10);
	while ((v /= 10));
	buf[--n] = ' ';
	put(o, buf + n, sizeof(buf) - n);
}

void kb_metrics_f64(struct kb_mout *o, const char *name, double v, ...)
{
	va_list ap;

	puts_(o, name);
	va_start(ap, v);
	put_labels(o, ap);
	va_end(ap);
	/* A frontend's endpoints mostly share one value: its text is made once (printf of a double is slow). */
	if (!o->last_ftext[0] || memcmp(&v, &o->last_f, sizeof(v))) {
		snprintf(o->last_ftext, sizeof(o->last_ftext), " %.17g\n", v);
		o->last_f = v;
	}
	puts_(o, o->last_ftext);
}

/* ---- sections ------------------------------------------------------------------------ */

static void section_daemon(struct kb_mout *f, struct daemon *d)
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

static void section_watch(struct kb_mout *f, struct daemon *d)
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

/* DNS: totals from the resolver, and each name's usable addresses and failure streak. */
static void section_dns(struct kb_mout *f, struct daemon *d)
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
static void section_bridge(struct kb_mout *f, struct daemon *d)
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
static void section_bpf(struct kb_mout *f, struct daemon *d)
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
static void section_limits(struct kb_mout *f, struct daemon *d)
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
 * values belong in the traffic section (metrics_traffic.c), so that each
 * family stays one block. NULL: the traffic section, written in pieces.
 */
static void (*const sections[])(struct kb_mout *f, struct daemon *d) = {
	section_daemon, section_limits, section_watch, NULL, section_dns, section_bridge, section_bpf,
};

#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))
/* A piece: about this much text is written before the connection takes it. */
#define SCRAPE_PIECE (64u << 10)

struct kb_metrics_scrape {
	struct daemon *d;
	size_t section;
	struct kb_mtraffic *traffic;	/* while in the traffic section */
	unsigned long gen;		/* d->reads_gen when the traffic section began */
	struct kb_mout out;		/* the current piece */
	size_t off;			/* bytes of it taken */
};

struct kb_metrics_scrape *kb_metrics_scrape_new(struct daemon *d)
{
	struct kb_metrics_scrape *s = calloc(1, sizeof(*s));

	if (s)
		s->d = d;
	return s;
}

void kb_metrics_scrape_free(struct kb_metrics_scrape *s)
{
	if (!s)
		return;
	kb_mtraffic_free(s->traffic);
	free(s->out.b);
	free(s);
}

/* Write the next piece: whole small sections, and the traffic section up to SCRAPE_PIECE at a time. 0 or -1. */
static int next_piece(struct kb_metrics_scrape *s)
{
	struct daemon *d = s->d;

	s->out.len = s->off = 0;
	while (s->section < NSECTIONS && s->out.len < SCRAPE_PIECE) {
		if (sections[s->section]) {
			sections[s->section++](&s->out, d);
			continue;
		}
		if (!s->traffic) {
			s->traffic = kb_mtraffic_new(d);
			s->gen = d->reads_gen;
			if (!s->traffic)
				return -1;
		} else if (s->gen != d->reads_gen) {
			kb_log_info("metrics: a scrape was cut short: the state changed during it");
			return -1;
		}
		if (!kb_mtraffic_fill(s->traffic, d, &s->out, SCRAPE_PIECE)) {
			kb_mtraffic_free(s->traffic);
			s->traffic = NULL;
			s->section++;
			if (d->compiled.nfes >= 1000)
				kb_daemon_trim_soon(d);
		}
	}
	return s->out.oom ? -1 : 0;
}

long kb_metrics_scrape_read(struct kb_metrics_scrape *s, char *buf, size_t max)
{
	size_t n;

	if (s->off == s->out.len && next_piece(s))
		return -1;
	n = s->out.len - s->off < max ? s->out.len - s->off : max;
	memcpy(buf, s->out.b + s->off, n);
	s->off += n;
	return (long)n;
}

/* ---- HTTP -------------------------------------------------------------------------- */

/* A short fixed answer (index, 404, 405). */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static ssize_t on_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	long n = kb_metrics_scrape_read(cls, buf, max);

	(void)pos;
	/* An error ends the connection without the last chunk: the client sees a failed scrape, not a short one. */
	return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void on_read_done(void *cls)
{
	kb_metrics_scrape_free(cls);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	static char index[] = "kbackend: Prometheus metrics at /metrics\n";
	static char not_found[] = "not found: try /metrics\n";
	static char not_allowed[] = "method not allowed: GET or HEAD\n";
	struct daemon *d = cls;
	struct kb_metrics_scrape *s;
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed));
	if (!strcmp(url, "/"))
		return reply(conn, MHD_HTTP_OK, index, strlen(index));
	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found));
	/* Written as the connection takes it (chunked in HTTP/1.1), from the daemon's loop like everything else. */
	s = kb_metrics_scrape_new(d);
	r = s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SCRAPE_PIECE, on_read, s, on_read_done) : NULL;
	if (!r) {
		kb_metrics_scrape_free(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	d->metrics->scrapes++;
	return ret;
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
