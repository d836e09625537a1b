// SPDX-License-Identifier: Apache-2.0
/* FQDN endpoints, the part the daemon drives: lifetime, the name set and its schedule, sockets, lookups. */
#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolver_int.h"

/* ---- lookup families ------------------------------------------------------------------ */

static const char *const family_names[] = {
	[KB_LOOKUP_V4_PREFERRED] = "IPv4Preferred", [KB_LOOKUP_V4] = "IPv4", [KB_LOOKUP_V6] = "IPv6",
	[KB_LOOKUP_V6_PREFERRED] = "IPv6Preferred", [KB_LOOKUP_V4_AND_V6] = "IPv4AndIPv6",
};

bool kb_lookup_family_parse(const char *s, enum kb_lookup_family *out)
{
	if (!s) {
		*out = KB_LOOKUP_V4_PREFERRED;
		return true;
	}
	for (size_t i = 0; i < sizeof(family_names) / sizeof(family_names[0]); i++)
		if (strcmp(s, family_names[i]) == 0) {
			*out = (enum kb_lookup_family)i;
			return true;
		}
	return false;
}

const char *kb_lookup_family_name(enum kb_lookup_family f)
{
	return (unsigned)f < sizeof(family_names) / sizeof(family_names[0]) ? family_names[f] : "IPv4Preferred";
}

/* ---- the due-time heap ------------------------------------------------------------------- */

static void heap_set(struct kb_resolver *r, size_t i, struct rname *n)
{
	r->heap[i] = n;
	n->heap_idx = i;
}

static void heap_up(struct kb_resolver *r, size_t i)
{
	struct rname *n = r->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (r->heap[p]->due <= n->due)
			break;
		heap_set(r, i, r->heap[p]);
		i = p;
	}
	heap_set(r, i, n);
}

static void heap_down(struct kb_resolver *r, size_t i)
{
	struct rname *n = r->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= r->nheap)
			break;
		if (c + 1 < r->nheap && r->heap[c + 1]->due < r->heap[c]->due)
			c++;
		if (r->heap[c]->due >= n->due)
			break;
		heap_set(r, i, r->heap[c]);
		i = c;
	}
	heap_set(r, i, n);
}

static void heap_remove(struct kb_resolver *r, struct rname *n)
{
	size_t i = n->heap_idx;
	struct rname *last;

	if (i == SIZE_MAX)
		return;
	n->heap_idx = SIZE_MAX;
	last = r->heap[--r->nheap];
	if (last == n)
		return;
	heap_set(r, i, last);
	heap_up(r, i);
	heap_down(r, last->heap_idx);
}

/* The next time tick() has work for n: its next query (when idle) or its NXDOMAIN expiry. */
static int64_t name_due(const struct rname *n)
{
	int64_t d = NEVER;

	if (n->literal || n->dropped)
		return NEVER;
	if (!n->active && !n->queued)
		d = n->next_ms;
	if (n->negative && n->answered && !n->expired)
		d = min64(d, n->expires_ms);
	return d;
}

void rv_reschedule(struct kb_resolver *r, struct rname *n)
{
	int64_t due = name_due(n);

	if (due == NEVER) {
		heap_remove(r, n);
		return;
	}
	if (n->heap_idx == SIZE_MAX) {
		n->due = due;
		heap_set(r, r->nheap++, n);
		heap_up(r, n->heap_idx);
		return;
	}
	n->due = due;
	heap_up(r, n->heap_idx);
	heap_down(r, n->heap_idx);
}

/* ---- names --------------------------------------------------------------------------- */

/* Names are case-insensitive (FNV-1a over the lowercased host). */
static uint32_t host_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)tolower((unsigned char)*s)) * 16777619u;
	return h;
}

void rv_free_name(struct rname *n)
{
	rv_clear_answer(n);
	free(n->res);
	free(n->host);
	free(n);
}

static struct rname *find_name(struct rname *const *tab, size_t cap, const char *host, uint32_t h)
{
	if (!tab)
		return NULL;
	for (struct rname *n = tab[h & (cap - 1)]; n; n = n->hnext)
		if (n->hash == h && strcasecmp(n->host, host) == 0)
			return n;
	return NULL;
}

struct rname *rv_find(const struct kb_resolver *r, const char *host)
{
	return find_name(r->tab, r->tabcap, host, host_hash(host));
}

/* ---- sockets --------------------------------------------------------------------------- */

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct kb_resolver *r = data;
	size_t i;

	for (i = 0; i < r->nsocks && r->socks[i].fd != fd; i++)
		;
	if (readable || writable) {
		if (i == r->nsocks) {
			if (r->nsocks == r->sockcap) {
				size_t cap = r->sockcap ? 2 * r->sockcap : 8;
				struct rsock *s = realloc(r->socks, cap * sizeof(*s));

				if (!s)
					goto forward;	/* poll users miss it; sock_cb users still get it */
				r->socks = s;
				r->sockcap = cap;
			}
			r->nsocks++;
		}
		r->socks[i] = (struct rsock){ .fd = fd, .rd = readable, .wr = writable };
	} else if (i < r->nsocks) {
		r->socks[i] = r->socks[--r->nsocks];
	}
forward:
	if (r->epfd >= 0) {
		struct epoll_event ev = { .events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0), .data.fd = fd };

		if (!readable && !writable)
			epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
		else if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
			epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	if (r->o.sock_cb)
		r->o.sock_cb(r->o.sock_ctx, fd, readable, writable);
}

size_t kb_resolver_fds(const struct kb_resolver *r, struct pollfd *pfds, size_t max)
{
	for (size_t i = 0; i < r->nsocks && i < max; i++) {
		pfds[i].fd = r->socks[i].fd;
		pfds[i].events = (short)((r->socks[i].rd ? POLLIN : 0) | (r->socks[i].wr ? POLLOUT : 0));
		pfds[i].revents = 0;
	}
	return r->nsocks;
}

void kb_resolver_process_fd(struct kb_resolver *r, int fd, unsigned events)
{
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	if (fd < 0)
		return;
	if (events & (POLLIN | POLLERR | POLLHUP))
		rfd = fd;	/* an error is read, so c-ares sees it and fails over */
	if (events & POLLOUT)
		wfd = fd;
	if (rfd != ARES_SOCKET_BAD || wfd != ARES_SOCKET_BAD)
		ares_process_fd(r->ch, rfd, wfd);
}

int kb_resolver_epoll_fd(const struct kb_resolver *r)
{
	return r->epfd;
}

void kb_resolver_process(struct kb_resolver *r)
{
	struct epoll_event evs[64];
	int n = epoll_wait(r->epfd, evs, 64, 0);

	/* At most 64 sockets a call: the daemon's level-triggered epoll calls again for the rest. */
	for (int i = 0; i < n; i++)
		kb_resolver_process_fd(r, evs[i].data.fd, evs[i].events);
	kb_resolver_tick(r);
}

int kb_resolver_timeout_ms(struct kb_resolver *r)
{
	int64_t t = -1;
	struct timeval tv, *tvp;

	if (r->nheap) {
		t = r->heap[0]->due - mono_ms();
		if (t < 0)
			t = 0;
	}
	tvp = ares_timeout(r->ch, NULL, &tv);
	if (tvp) {
		int64_t a = (int64_t)tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000;

		t = t < 0 ? a : min64(t, a);
	}
	return t > INT_MAX ? INT_MAX : (int)t;
}

void kb_resolver_tick(struct kb_resolver *r)
{
	int64_t now;
	size_t guard;

	/* c-ares retransmits and times out its queries here (both fds "bad": timers only). */
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	now = mono_ms();
	guard = r->nheap * 2 + 16;
	while (r->nheap && r->heap[0]->due <= now && guard--) {
		struct rname *n = r->heap[0];

		if (n->negative && n->answered && !n->expired && now >= n->expires_ms)
			rv_expire(r, n);
		if (!n->active && !n->queued && now >= n->next_ms)
			rv_round_begin(r, n);	/* may complete synchronously and reschedule */
		rv_reschedule(r, n);
		if (n->heap_idx != SIZE_MAX && n->due <= now) {
			/* Should not happen (every path moves due past now); never spin on it. */
			n->due = now + 1;
			heap_down(r, n->heap_idx);
		}
	}
}

/* ---- public API ------------------------------------------------------------------------- */

/* "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT" or a bare IPv6, into c-ares's "[V6]:PORT" / "V4:PORT". */
static bool server_entry(const char *s, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned char buf[16];
	const char *port = NULL;
	long p = 53;
	size_t hl;
	bool v6;

	if (s[0] == '[') {
		const char *e = strchr(s, ']');

		if (!e)
			return false;
		hl = (size_t)(e - s - 1);
		if (hl == 0 || hl >= sizeof(host))
			return false;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (e[1] == ':')
			port = e + 2;
		else if (e[1])
			return false;
	} else if (inet_pton(AF_INET6, s, buf) == 1) {
		snprintf(host, sizeof(host), "%s", s);
	} else {
		const char *c = strrchr(s, ':');

		hl = c ? (size_t)(c - s) : strlen(s);
		if (hl == 0 || hl >= sizeof(host))
			return false;
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (c)
			port = c + 1;
	}
	v6 = inet_pton(AF_INET6, host, buf) == 1;
	if (!v6 && inet_pton(AF_INET, host, buf) != 1)
		return false;
	if (port) {
		char *end;

		errno = 0;
		p = strtol(port, &end, 10);
		if (!*port || *end || errno || p < 1 || p > 65535)
			return false;
	}
	return snprintf(out, outlen, v6 ? "[%s]:%ld" : "%s:%ld", host, p) < (int)outlen;
}

/* How many servers /etc/resolv.conf names (0 if it cannot be read). */
static size_t system_servers(void)
{
	struct ares_addr_port_node *list = NULL;
	ares_channel ch;
	size_t k = 0;

	if (ares_init(&ch) != ARES_SUCCESS)
		return 0;
	if (ares_get_servers_ports(ch, &list) == ARES_SUCCESS)
		for (struct ares_addr_port_node *p = list; p; p = p->next)
			k++;
	ares_free_data(list);
	ares_destroy(ch);
	return k;
}

struct kb_resolver *kb_resolver_new(const struct kb_resolver_opts *opts, char *err, size_t errlen)
{
	struct kb_resolver_opts none = { 0 };
	struct kb_resolver *r;
	struct ares_options ao;
	size_t nserv;
	int mask, rc;

	if (!opts)
		opts = &none;
	if (err && errlen)
		err[0] = '\0';
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0) {
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		free(r);
		return NULL;
	}
	r->o = *opts;
	r->o.servers = NULL;
	r->o.nservers = 0;
	r->o.search = NULL;
	r->o.nsearch = 0;
	if (r->o.min_ttl_ms <= 0)
		r->o.min_ttl_ms = KB_RESOLVER_DEFAULT_MIN_TTL_MS;
	if (r->o.max_ttl_ms <= 0)
		r->o.max_ttl_ms = KB_RESOLVER_DEFAULT_MAX_TTL_MS;
	if (r->o.max_ttl_ms < r->o.min_ttl_ms)
		r->o.max_ttl_ms = r->o.min_ttl_ms;
	if (r->o.timeout_ms <= 0)
		r->o.timeout_ms = KB_RESOLVER_DEFAULT_TIMEOUT_MS;
	if (r->o.tries <= 0)
		r->o.tries = KB_RESOLVER_DEFAULT_TRIES;
	if (r->o.retry_base_ms <= 0)
		r->o.retry_base_ms = KB_RESOLVER_DEFAULT_RETRY_MS;
	if (r->o.max_inflight == 0)
		r->o.max_inflight = KB_RESOLVER_DEFAULT_MAX_INFLIGHT;

	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		close(r->epfd);
		free(r);
		return NULL;
	}
	memset(&ao, 0, sizeof(ao));
	ao.timeout = r->o.timeout_ms;
	ao.tries = r->o.tries;
	ao.sock_state_cb = sock_state;
	ao.sock_state_cb_data = r;
	mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
	/*
	 * c-ares 1.18 (Debian 12) reports a REFUSED or SERVFAIL answer as
	 * ECONNREFUSED once it has no other server to try. With one server there
	 * is nothing to fail over to, so take such answers as they are and name
	 * the rcode (resolver_query.c then checks the question itself). With
	 * several, keep c-ares' failover and say that the causes are lumped.
	 */
	nserv = opts->nservers ? opts->nservers : system_servers();
	if (nserv == 1) {
		ao.flags = ARES_FLAG_NOCHECKRESP;
		mask |= ARES_OPT_FLAGS;
	}
	r->lumped = nserv > 1;
	if (opts->set_search) {
		ao.domains = (char **)opts->search;
		ao.ndomains = (int)opts->nsearch;
		mask |= ARES_OPT_DOMAINS;
	}
	rc = ares_init_options(&r->ch, &ao, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		ares_library_cleanup();
		close(r->epfd);
		free(r);
		return NULL;
	}
	if (opts->nservers) {
		size_t cap = opts->nservers * (INET6_ADDRSTRLEN + 10) + 1, len = 0;
		char *csv = malloc(cap);

		if (!csv) {
			snprintf(err, errlen, "out of memory");
			kb_resolver_free(r);
			return NULL;
		}
		csv[0] = '\0';
		for (size_t i = 0; i < opts->nservers; i++) {
			char one[INET6_ADDRSTRLEN + 10];

			if (!opts->servers[i] || !server_entry(opts->servers[i], one, sizeof(one))) {
				snprintf(err, errlen, "--dns-server %s: not ADDR, ADDR:PORT or [ADDR]:PORT",
					 opts->servers[i] ? opts->servers[i] : "");
				free(csv);
				kb_resolver_free(r);
				return NULL;
			}
			len += (size_t)snprintf(csv + len, cap - len, "%s%s", i ? "," : "", one);
		}
		rc = ares_set_servers_ports_csv(r->ch, csv);
		free(csv);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "--dns-server: c-ares: %s", ares_strerror(rc));
			kb_resolver_free(r);
			return NULL;
		}
	}
	return r;
}

static void free_hosts(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void kb_resolver_free(struct kb_resolver *r)
{
	if (!r)
		return;
	r->destroying = true;
	/* Every outstanding query's callback runs here with ARES_EDESTRUCTION; dropped names free themselves. */
	if (r->ch)
		ares_destroy(r->ch);
	/* Dropped names that were only queued. */
	for (struct rname *n = r->qhead, *next; n; n = next) {
		next = n->qnext;
		n->queued = false;
		if (n->dropped && !n->inflight)
			rv_free_name(n);
	}
	for (size_t i = 0; i < r->tabcap; i++)
		for (struct rname *n = r->tab[i], *next; n; n = next) {
			next = n->hnext;
			rv_free_name(n);
		}
	free(r->tab);
	free(r->heap);
	free(r->socks);
	free_hosts(r->changed_hosts, r->nchanged);
	free_hosts(r->taken_hosts, r->ntaken);
	if (r->epfd >= 0)
		close(r->epfd);
	free(r);
	ares_library_cleanup();
}

static void drop_name(struct kb_resolver *r, struct rname *n)
{
	heap_remove(r, n);
	n->dropped = true;
	n->hnext = NULL;
	if (!n->inflight && !n->queued) {
		if (n->active) {	/* cannot happen: active implies inflight; kept for safety */
			n->active = false;
			r->nactive--;
		}
		rv_free_name(n);
	}
}

int kb_resolver_set_names(struct kb_resolver *r, const struct kb_resolver_name *names, size_t count)
{
	size_t cap = 64, nstart = 0, nlive = 0;
	struct rname **tab, **start, **heap;
	int64_t now = mono_ms();

	while (cap < 2 * count)
		cap *= 2;
	tab = calloc(cap, sizeof(*tab));
	start = calloc(count + 1, sizeof(*start));
	heap = r->heapcap >= count + r->nnames + 1 ? r->heap : realloc(r->heap, (count + r->nnames + 1) * sizeof(*heap));
	if (!tab || !start || !heap) {
		free(tab);
		free(start);
		if (heap)
			r->heap = heap;
		return -1;
	}
	if (heap != r->heap) {
		r->heap = heap;
		r->heapcap = count + r->nnames + 1;
	}
	for (size_t i = 0; i < count; i++) {
		const struct kb_resolver_name *w = &names[i];
		int64_t refresh = w->refresh_ms > 0 ? w->refresh_ms : KB_RESOLVER_DEFAULT_REFRESH_MS;
		uint32_t h;
		struct rname *n, **pp;

		if (!w->host || !*w->host)
			continue;
		if (refresh < KB_RESOLVER_MIN_REFRESH_MS)
			refresh = KB_RESOLVER_MIN_REFRESH_MS;
		h = host_hash(w->host);
		if (find_name(tab, cap, w->host, h))
			continue;	/* listed twice: the first entry wins */
		n = NULL;
		if (r->tab)
			for (pp = &r->tab[h & (r->tabcap - 1)]; *pp; pp = &(*pp)->hnext)
				if ((*pp)->hash == h && strcasecmp((*pp)->host, w->host) == 0) {
					n = *pp;
					*pp = n->hnext;
					break;
				}
		if (n) {
			bool fam = n->family != w->family;
			bool timing = n->refresh_ms != refresh || n->respect_ttl != w->respect_ttl;

			n->family = w->family;
			n->refresh_ms = refresh;
			n->respect_ttl = w->respect_ttl;
			if (!n->literal && fam) {
				n->next_ms = now;
				n->requery = n->active;
				start[nstart++] = n;
			} else if (!n->literal && timing && n->answered && !n->failures) {
				n->next_ms = min64(n->next_ms, n->expires_ms - n->ttl_ms + refresh_interval(n));
			}
		} else {
			n = calloc(1, sizeof(*n));
			if (n)
				n->host = strdup(w->host);
			if (!n || !n->host) {
				free(n);
				continue;	/* out of memory: this name stays unresolved until the next apply */
			}
			n->r = r;
			n->hash = h;
			n->family = w->family;
			n->refresh_ms = refresh;
			n->respect_ttl = w->respect_ttl;
			n->absolute = n->host[strlen(n->host) - 1] == '.';
			n->heap_idx = SIZE_MAX;
			n->q[0] = (struct rquery){ n, 0 };
			n->q[1] = (struct rquery){ n, 1 };
			n->next_ms = now;
			if (!rv_literal(r, n))
				start[nstart++] = n;
		}
		n->hnext = tab[h & (cap - 1)];
		tab[h & (cap - 1)] = n;
		nlive++;
		rv_reschedule(r, n);
	}
	/* What is left of the old table is no longer wanted. */
	for (size_t i = 0; i < r->tabcap; i++)
		for (struct rname *n = r->tab[i], *next; n; n = next) {
			next = n->hnext;
			drop_name(r, n);
		}
	free(r->tab);
	r->tab = tab;
	r->tabcap = cap;
	r->nnames = nlive;
	/* Query new names (and changed families) now; synchronous completions find a consistent table. */
	for (size_t i = 0; i < nstart; i++) {
		rv_round_begin(r, start[i]);
		rv_reschedule(r, start[i]);
	}
	free(start);
	return 0;
}

size_t kb_resolver_lookup(void *resolver, const char *host, __u8 *family, __u32 (*ip)[4], size_t max)
{
	struct kb_resolver *r = resolver;
	struct rname *n;
	size_t k;

	if (!r || !host)
		return 0;
	n = rv_find(r, host);
	if (!n)
		return 0;
	for (k = 0; k < n->naddrs && k < max; k++) {
		family[k] = n->addrs[k].family;
		memcpy(ip[k], n->addrs[k].ip, sizeof(ip[k]));
	}
	return k;
}

#define MAX_CHANGED_LISTED 1024	/* more changed names than this: recompile everything */

void rv_mark_changed(struct kb_resolver *r, const struct rname *n)
{
	char **v;

	r->changed = true;
	if (r->changed_overflow)
		return;
	if (r->nchanged == MAX_CHANGED_LISTED) {
		r->changed_overflow = true;
		return;
	}
	v = realloc(r->changed_hosts, (r->nchanged + 1) * sizeof(*v));
	if (!v || !(v[r->nchanged] = strdup(n->host))) {
		if (v)
			r->changed_hosts = v;
		r->changed_overflow = true;	/* out of memory: the caller recompiles everything */
		return;
	}
	r->changed_hosts = v;
	r->nchanged++;
}

size_t kb_resolver_take_changed(struct kb_resolver *r, const char *const **hosts, bool *all)
{
	size_t n = r->nchanged;

	free_hosts(r->taken_hosts, r->ntaken);
	r->taken_hosts = r->changed_hosts;
	r->ntaken = n;
	*hosts = (const char *const *)r->changed_hosts;
	*all = r->changed_overflow || (r->changed && n == 0);
	r->changed_hosts = NULL;
	r->nchanged = 0;
	r->changed_overflow = false;
	r->changed = false;
	return n;
}

bool kb_resolver_changed(struct kb_resolver *r)
{
	bool c = r->changed;

	r->changed = false;
	return c;
}

void kb_resolver_counters(const struct kb_resolver *r, uint64_t *refreshes, uint64_t *errors)
{
	*refreshes = r->refreshes;
	*errors = r->errors;
}

size_t kb_resolver_busy(const struct kb_resolver *r)
{
	return r->nactive + r->nqueued;
}

