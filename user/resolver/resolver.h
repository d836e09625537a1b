/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FQDN endpoints for the daemon's event loop: c-ares, TTLs, lookup families,
 * and kbackend's SSRF guard on every answer (DESIGN.md sections 2 and 3).
 *
 * One resolver owns one c-ares channel. It never blocks: queries go out as
 * UDP datagrams (TCP on truncation), answers are read when the daemon says a
 * socket is ready, and timers run when the daemon calls kb_resolver_tick().
 *
 * Integration with an epoll loop (the simplest way: one fd, which is itself
 * an epoll instance holding every c-ares socket):
 *
 *   r = kb_resolver_new(&opts, err, sizeof(err));
 *   epoll_ctl(epfd, EPOLL_CTL_ADD, kb_resolver_epoll_fd(r), {EPOLLIN, .data.ptr = &tag});
 *   kb_resolver_set_names(r, names, n);               after every apply
 *   loop:
 *     timeout = min(other timeouts, kb_resolver_timeout_ms(r))   (-1: none)
 *     epoll_wait(epfd, ..., timeout)
 *     if the resolver's fd is ready: kb_resolver_process(r)
 *     kb_resolver_tick(r)                               every iteration (cheap)
 *     if (kb_resolver_changed(r)) recompile with env.resolve = kb_resolver_lookup,
 *                                 env.ctx = r, and swap
 *
 * Alternatives: opts.sock_cb reports each socket for the daemon's own epoll
 * (then kb_resolver_process_fd() per ready fd), and kb_resolver_fds() lists
 * them for poll().
 *
 * Semantics (Envoy's where Envoy defines them):
 * - lookupFamily: IPv4 asks A; IPv6 asks AAAA; IPv4AndIPv6 asks both at once;
 *   IPv4Preferred asks A, and AAAA only when A gives no usable address
 *   (IPv6Preferred the other way round). "Usable" is after the SSRF guard.
 * - Refresh: with respect_ttl the next query is due when the answer's TTL runs
 *   out, the TTL (the smallest of the records') clamped to [min_ttl, max_ttl];
 *   without it, every refresh_ms. refresh_ms <= 0 means 30 s; it is never
 *   below KB_RESOLVER_MIN_REFRESH_MS.
 * - Failures (timeout, SERVFAIL, REFUSED, connection refused, bad reply) keep
 *   the last good answer for as long as they last, and retry after
 *   retry_base_ms, doubling per consecutive failure up to the name's refresh
 *   interval (refresh_ms, or the clamped TTL when respect_ttl).
 * - NXDOMAIN (and NODATA: the name exists but has no record of the asked
 *   family) is a failure too, but once the last good answer's clamped TTL has
 *   run out while the name is still negative, the answer is emptied: the
 *   locality loses its endpoints and traffic spills to the others.
 * - A name ending in '.' is absolute: asked as is, no search domains
 *   (ares_query). Other names go through the search list (ares_search).
 * - An IP literal (as an FQDN endpoint may be) resolves to itself, without
 *   DNS, whatever the lookup family; it is still judged by the SSRF guard.
 * - SSRF: every address goes through kb_policy_allows_ip(), the code that
 *   judges IP endpoints. A refused address is never returned; the status
 *   lists it with the reason.
 * - Names are case-insensitive. A host listed twice in set_names keeps the
 *   first entry's settings.
 * - At most max_inflight names have queries outstanding; the rest wait in a
 *   FIFO, so 1,000 names due together do not flood the server's socket.
 */
#ifndef KB_RESOLVER_H
#define KB_RESOLVER_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "manifest/model.h"

#define KB_RESOLVER_DEFAULT_REFRESH_MS	30000	/* BackendTrafficPolicy dns.dnsRefreshRate default */
#define KB_RESOLVER_DEFAULT_MIN_TTL_MS	5000	/* --dns-min-ttl default */
#define KB_RESOLVER_DEFAULT_MAX_TTL_MS	300000	/* --dns-max-ttl default */
#define KB_RESOLVER_DEFAULT_TIMEOUT_MS	1000	/* first try; c-ares doubles it each round over the servers */
#define KB_RESOLVER_DEFAULT_TRIES	2	/* so one server that never answers: a timeout after 3 s */
#define KB_RESOLVER_DEFAULT_RETRY_MS	1000	/* first retry after a failure; doubles */
#define KB_RESOLVER_DEFAULT_MAX_INFLIGHT 128	/* names with queries outstanding at once */
#define KB_RESOLVER_MIN_REFRESH_MS	1000
#define KB_RESOLVER_MAX_ADDRS		64	/* addresses kept per record type of one name */

enum kb_lookup_family {
	KB_LOOKUP_V4_PREFERRED = 0,	/* the default */
	KB_LOOKUP_V4,
	KB_LOOKUP_V6,
	KB_LOOKUP_V6_PREFERRED,
	KB_LOOKUP_V4_AND_V6,
};

/* "IPv4", "IPv6", "IPv4Preferred", "IPv6Preferred", "IPv4AndIPv6"; NULL is IPv4Preferred. false if unknown. */
bool kb_lookup_family_parse(const char *s, enum kb_lookup_family *out);
const char *kb_lookup_family_name(enum kb_lookup_family f);

/*
 * Socket interest, for the daemon's epoll: called when c-ares opens a socket
 * or changes what it waits for (epoll_ctl ADD or MOD with EPOLLIN and/or
 * EPOLLOUT), and with both false just before it closes one (epoll_ctl DEL).
 * Called from inside kb_resolver_* calls (never from elsewhere).
 */
typedef void (*kb_resolver_sock_cb)(void *ctx, int fd, bool readable, bool writable);

/* Zero values mean the defaults above. */
struct kb_resolver_opts {
	/* --dns-server: "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT" or a bare IPv6. None: /etc/resolv.conf. */
	const char *const *servers;
	size_t nservers;
	/* Override resolv.conf's search list (set_search true; nsearch may be 0 for none). */
	bool set_search;
	const char *const *search;
	size_t nsearch;
	int64_t min_ttl_ms, max_ttl_ms;		/* --dns-min-ttl / --dns-max-ttl */
	int timeout_ms;				/* per try */
	int tries;
	int64_t retry_base_ms;			/* first retry after a failure */
	unsigned max_inflight;
	/* The SSRF policy (--allow-endpoint, node addresses); must outlive the resolver. NULL: no allow list. */
	const struct kb_policy *policy;
	kb_resolver_sock_cb sock_cb;		/* optional: kb_resolver_epoll_fd() is simpler */
	void *sock_ctx;
};

/* One desired name, as the daemon computes it from Backends, Services and BackendTrafficPolicy dns. */
struct kb_resolver_name {
	const char *host;		/* copied */
	enum kb_lookup_family family;
	int64_t refresh_ms;		/* <= 0: 30 s */
	bool respect_ttl;		/* BackendTrafficPolicy default: true */
};

struct kb_resolver;

/* NULL on error, with one line in err (a bad --dns-server, c-ares init failure). */
struct kb_resolver *kb_resolver_new(const struct kb_resolver_opts *opts, char *err, size_t errlen);
/* Cancels outstanding queries (sock_cb sees the closes) and frees everything. NULL is fine. */
void kb_resolver_free(struct kb_resolver *r);

/*
 * Replace the desired set. New names are queried at once; names no longer
 * listed are dropped (their in-flight queries are ignored); names still
 * listed keep their answer and state. A changed lookup family re-queries at
 * once (the old answer serves until the new one arrives); changed refresh
 * settings take effect from the last refresh. O(n). Returns 0, or -1 on ENOMEM.
 */
int kb_resolver_set_names(struct kb_resolver *r, const struct kb_resolver_name *names, size_t n);

/*
 * Current good, SSRF-allowed addresses of host, in the compile env's resolve
 * shape (family AF_INET/AF_INET6, ip words in network order as in struct
 * kb_slot; IPv4 in ip[0]). Pass as kb_compile_env.resolve with ctx = the
 * resolver. Sorted (IPv4 first), without duplicates. 0 for an unknown name,
 * one not resolved yet, or one whose answer is empty.
 */
size_t kb_resolver_lookup(void *resolver, const char *host, __u8 *family, __u32 (*ip)[4], size_t max);

/* True once after any name's usable address set changed (then false until the next change). */
bool kb_resolver_changed(struct kb_resolver *r);
/*
 * The same, with the names that changed (a name may appear more than once),
 * so that only the frontends using them are recompiled: their count, *hosts
 * valid until the next call. *all: something changed that is not listed (too
 * many names): recompile everything. Clears what kb_resolver_changed reports.
 */
size_t kb_resolver_take_changed(struct kb_resolver *r, const char *const **hosts, bool *all);

/*
 * The sockets to watch now and their events (POLLIN/POLLOUT), for poll()
 * users; epoll users may rely on sock_cb instead. Returns the count (it may
 * exceed max: only max are written).
 */
struct pollfd;
size_t kb_resolver_fds(const struct kb_resolver *r, struct pollfd *pfds, size_t max);

/*
 * One fd (an epoll instance holding the c-ares sockets) for the daemon's
 * epoll: when it is readable, call kb_resolver_process(). Valid for the
 * resolver's life.
 */
int kb_resolver_epoll_fd(const struct kb_resolver *r);
/* Handle every ready resolver socket (up to 64 a call), then kb_resolver_tick(). Never blocks. */
void kb_resolver_process(struct kb_resolver *r);

/* Milliseconds until kb_resolver_tick() has work (c-ares retransmits, refreshes, retries, expiries); -1: none. */
int kb_resolver_timeout_ms(struct kb_resolver *r);

/*
 * Handle readiness of one resolver socket. events are poll bits (POLLIN,
 * POLLOUT, POLLERR, POLLHUP), which on Linux equal the EPOLL* bits, so an
 * epoll_event.events value may be passed as is. Unknown fds are ignored.
 */
void kb_resolver_process_fd(struct kb_resolver *r, int fd, unsigned events);

/* Run due timers: c-ares timeouts, refreshes, retries and NXDOMAIN expiries. Cheap when nothing is due. */
void kb_resolver_tick(struct kb_resolver *r);

/* Totals since start, for metrics: query rounds that ended with a good answer, and with a failure. */
void kb_resolver_counters(const struct kb_resolver *r, uint64_t *refreshes, uint64_t *errors);

/* Names with queries outstanding or waiting for a slot (for tests and `kbackend status`). */
size_t kb_resolver_busy(const struct kb_resolver *r);

/*
 * Status for `get endpoints -o wide`: a new object keyed by host (sorted),
 * each value an object:
 *   host, lookupFamily, respectDnsTtl, refreshRateMs,
 *   state: "pending" (never answered), "resolved", "stale" (last query failed,
 *          last good answer kept), "expired" (NXDOMAIN/NODATA past the TTL:
 *          emptied), "literal" (an IP literal), "refused" (answered, but the
 *          SSRF guard refused every address: nothing is programmed, even
 *          when the other family failed),
 *   addresses: [{address, family: "IPv4"|"IPv6"}],
 *   refused: [{address, family, reason}],
 *   ttl_s (the records' TTL as answered, before clamping), ttl_left_s,
 *   last_refresh (unix time of the last good answer, or null),
 *   next_refresh_s (seconds until the next query; 0 while one is in flight),
 *   last_error ("NXDOMAIN", "NODATA", "SERVFAIL", "REFUSED", "timeout",
 *               "connection refused", ... or null), last_error_time,
 *   last_answers ({"A": "NOERROR"|"REFUSED"|..., "AAAA": ...}: how each
 *               record type of the last round ended; null if not asked),
 *   reason (state "refused": why nothing is programmed; else null),
 *   consecutive_failures.
 */
struct json_object *kb_resolver_status_json(struct kb_resolver *r);
/* One name's object as above (a new reference), or NULL if host is not in the set. */
struct json_object *kb_resolver_name_json(struct kb_resolver *r, const char *host);

#endif /* KB_RESOLVER_H */
