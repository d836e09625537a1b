// SPDX-License-Identifier: Apache-2.0
/* FQDN endpoints: c-ares in the daemon's event loop, TTLs, lookup families, the SSRF guard on answers. */
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
#include <time.h>
#include <unistd.h>

#include "resolver.h"
#include "validate.h"

#define T_A	1	/* ns_t_a */
#define T_AAAA	28	/* ns_t_aaaa */
#define C_IN	1	/* ns_c_in */
#define NEVER	INT64_MAX

/* One address: family + ip words in network order, IPv4 in ip[0] (struct kb_slot's layout). */
struct raddr {
	__u8 family;
	__u32 ip[4];
};

struct rrefused {
	struct raddr a;
	char *why;
};

/* One record type's outcome in the current round. */
struct rres {
	int status;		/* ARES_SUCCESS (n >= 1), ARES_ENODATA / ARES_ENOTFOUND (negative), else a failure */
	int ttl;		/* smallest TTL of the records, seconds */
	size_t n;
	struct raddr a[KB_RESOLVER_MAX_ADDRS];
	bool allowed[KB_RESOLVER_MAX_ADDRS];
	size_t nallowed;
};

struct rname;

/* The callback argument of one query: which name, which record type (0: A, 1: AAAA). */
struct rquery {
	struct rname *n;
	int idx;
};

struct rname {
	struct kb_resolver *r;
	char *host;
	uint32_t hash;
	struct rname *hnext;		/* hash chain */
	/* what the daemon asked for */
	enum kb_lookup_family family;
	int64_t refresh_ms;
	bool respect_ttl;
	bool absolute;			/* trailing dot: no search list */
	bool literal;			/* an IP literal: resolves to itself */
	/* the answer in force */
	struct raddr *addrs;
	size_t naddrs;
	struct rrefused *refused;
	size_t nrefused;
	bool answered;			/* a good answer arrived at least once */
	bool expired;			/* emptied: negative past the last TTL */
	int ttl_s;			/* as answered */
	int64_t ttl_ms;			/* clamped */
	int64_t expires_ms;		/* monotonic: answer time + ttl_ms */
	time_t last_refresh;		/* wall clock of the last good answer */
	/* failures */
	unsigned failures;		/* consecutive */
	int64_t backoff_ms;
	bool negative;			/* the last round said NXDOMAIN/NODATA */
	char last_error[64];
	time_t last_error_time;
	/* schedule */
	int64_t next_ms;		/* monotonic time of the next query */
	int64_t due;			/* the heap key: min(next query, expiry) */
	size_t heap_idx;		/* SIZE_MAX: not in the heap */
	/* the round in progress */
	bool active;			/* holds one of max_inflight slots */
	bool queued;			/* waiting for a slot */
	struct rname *qnext;
	unsigned inflight;		/* outstanding c-ares queries (+1 while sending) */
	int phase;			/* preferred families: 0 the preferred type, 1 the fallback */
	enum kb_lookup_family round_family;	/* the family the round in progress asked for */
	bool requery;			/* the family changed during the round: ask again when it ends */
	struct rres *res;		/* [0] A, [1] AAAA, for the round */
	struct rquery q[2];
	bool dropped;			/* no longer in the set: freed once no query refers to it */
};

struct rsock {
	int fd;
	bool rd, wr;
};

struct kb_resolver {
	ares_channel ch;
	struct kb_resolver_opts o;	/* servers/search not kept */
	struct rname **tab;		/* hash table of the live names */
	size_t tabcap;			/* power of two */
	size_t nnames;
	struct rname **heap;		/* min-heap on due */
	size_t nheap, heapcap;
	struct rname *qhead, *qtail;	/* FIFO waiting for an inflight slot */
	size_t nqueued;
	unsigned nactive;
	bool pumping;
	bool changed;
	bool destroying;
	struct rsock *socks;
	size_t nsocks, sockcap;
	int epfd;			/* holds every c-ares socket: one fd for the daemon's epoll */
	uint64_t refreshes, errors;	/* rounds that ended with a good answer / a failure (metrics) */
};

/* ---- small helpers ----------------------------------------------------------------- */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static uint32_t host_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)tolower((unsigned char)*s)) * 16777619u;
	return h;
}

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

/* Text for last_error: DNS rcodes as dig prints them, transport errors in words. */
static const char *status_text(int st)
{
	switch (st) {
	case ARES_ENOTFOUND:
		return "NXDOMAIN";
	case ARES_ENODATA:
		return "NODATA";
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	case ARES_EFORMERR:
		return "FORMERR";
	case ARES_ENOTIMP:
		return "NOTIMP";
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ECONNREFUSED:
		return "connection refused";
	case ARES_EBADRESP:
		return "bad response";
	case ARES_EBADNAME:
		return "bad name";
	case ARES_ENOMEM:
		return "out of memory";
	case ARES_ECANCELLED:
		return "cancelled";
	default:
		return ares_strerror(st);
	}
}

static bool is_negative(int st)
{
	return st == ARES_ENOTFOUND || st == ARES_ENODATA;
}

static int addr_cmp(const void *a, const void *b)
{
	const struct raddr *x = a, *y = b;

	if (x->family != y->family)
		return x->family == AF_INET ? -1 : 1;
	return memcmp(x->ip, y->ip, sizeof(x->ip));
}

static void addr_text(const struct raddr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family, a->ip, buf, (socklen_t)len))
		snprintf(buf, len, "?");
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

/* Put n where its due time says (in, moved, or out of the heap). The heap is sized for every name. */
static void reschedule(struct kb_resolver *r, struct rname *n)
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

static void clear_answer(struct rname *n)
{
	for (size_t i = 0; i < n->nrefused; i++)
		free(n->refused[i].why);
	free(n->refused);
	free(n->addrs);
	n->refused = NULL;
	n->nrefused = 0;
	n->addrs = NULL;
	n->naddrs = 0;
}

static void free_name(struct rname *n)
{
	clear_answer(n);
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

/* The interval to the next refresh after a good answer. */
static int64_t refresh_interval(const struct rname *n)
{
	return n->respect_ttl ? n->ttl_ms : n->refresh_ms;
}

static void set_error(struct rname *n, const char *text)
{
	snprintf(n->last_error, sizeof(n->last_error), "%s", text);
	n->last_error_time = time(NULL);
}

/* ---- rounds: one refresh of one name (one or two record types) ----------------------- */

static void launch(struct kb_resolver *r, struct rname *n);
static void send_types(struct kb_resolver *r, struct rname *n, bool a, bool aaaa);

/* Start waiting rounds while slots are free. Not reentrant: a nested call leaves the work to the outer loop. */
static void pump(struct kb_resolver *r)
{
	if (r->pumping || r->destroying)
		return;
	r->pumping = true;
	while (r->qhead && r->nactive < r->o.max_inflight) {
		struct rname *n = r->qhead;

		r->qhead = n->qnext;
		if (!r->qhead)
			r->qtail = NULL;
		n->qnext = NULL;
		n->queued = false;
		r->nqueued--;
		if (n->dropped) {
			if (!n->inflight)
				free_name(n);
			continue;
		}
		launch(r, n);
		reschedule(r, n);
	}
	r->pumping = false;
}

/* Begin a refresh of n now, or queue it for a slot. */
static void round_begin(struct kb_resolver *r, struct rname *n)
{
	if (n->active || n->queued || n->literal)
		return;
	if (r->nactive >= r->o.max_inflight || r->pumping) {
		n->queued = true;
		if (r->qtail)
			r->qtail->qnext = n;
		else
			r->qhead = n;
		r->qtail = n;
		r->nqueued++;
		return;
	}
	launch(r, n);
}

static void launch(struct kb_resolver *r, struct rname *n)
{
	bool a = false, aaaa = false;

	if (!n->res)
		n->res = malloc(2 * sizeof(*n->res));
	if (!n->res) {
		/* No memory for a round: count it as a failure and retry later. */
		n->failures++;
		set_error(n, "out of memory");
		n->next_ms = mono_ms() + r->o.retry_base_ms;
		return;
	}
	n->active = true;
	r->nactive++;
	n->phase = 0;
	n->round_family = n->family;
	for (int i = 0; i < 2; i++) {
		n->res[i].status = ARES_ECANCELLED;
		n->res[i].n = n->res[i].nallowed = 0;
		n->res[i].ttl = 0;
	}
	switch (n->round_family) {
	case KB_LOOKUP_V4:
	case KB_LOOKUP_V4_PREFERRED:
		a = true;
		break;
	case KB_LOOKUP_V6:
	case KB_LOOKUP_V6_PREFERRED:
		aaaa = true;
		break;
	case KB_LOOKUP_V4_AND_V6:
		a = aaaa = true;
		break;
	}
	send_types(r, n, a, aaaa);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void send_one(struct kb_resolver *r, struct rname *n, int idx)
{
	int type = idx ? T_AAAA : T_A;

	if (n->absolute)
		ares_query(r->ch, n->host, C_IN, type, on_answer, &n->q[idx]);
	else
		ares_search(r->ch, n->host, C_IN, type, on_answer, &n->q[idx]);
}

static void phase_done(struct kb_resolver *r, struct rname *n);

/*
 * Send the queries of one phase. The extra hold on inflight keeps a query
 * that completes synchronously (inside ares_query) from ending the phase
 * before its sibling is sent.
 */
static void send_types(struct kb_resolver *r, struct rname *n, bool a, bool aaaa)
{
	n->inflight += 1u + a + aaaa;
	if (a)
		send_one(r, n, 0);
	if (aaaa)
		send_one(r, n, 1);
	if (--n->inflight == 0)
		phase_done(r, n);
}

/* Parse one answer into res, judging each address with the SSRF guard. */
static void parse_answer(struct kb_resolver *r, struct rres *res, int idx, int status, unsigned char *abuf, int alen)
{
	int rc, cnt = KB_RESOLVER_MAX_ADDRS;

	res->n = res->nallowed = 0;
	res->ttl = 0;
	if (status != ARES_SUCCESS) {
		res->status = status;
		return;
	}
	if (idx == 0) {
		struct ares_addrttl t[KB_RESOLVER_MAX_ADDRS];

		rc = ares_parse_a_reply(abuf, alen, NULL, t, &cnt);
		for (int i = 0; rc == ARES_SUCCESS && i < cnt; i++) {
			struct raddr *x = &res->a[res->n++];

			memset(x, 0, sizeof(*x));
			x->family = AF_INET;
			memcpy(&x->ip[0], &t[i].ipaddr, 4);
			if (i == 0 || t[i].ttl < res->ttl)
				res->ttl = t[i].ttl;
		}
	} else {
		struct ares_addr6ttl t[KB_RESOLVER_MAX_ADDRS];

		rc = ares_parse_aaaa_reply(abuf, alen, NULL, t, &cnt);
		for (int i = 0; rc == ARES_SUCCESS && i < cnt; i++) {
			struct raddr *x = &res->a[res->n++];

			x->family = AF_INET6;
			memcpy(x->ip, &t[i].ip6addr, 16);
			if (i == 0 || t[i].ttl < res->ttl)
				res->ttl = t[i].ttl;
		}
	}
	if (rc == ARES_SUCCESS && res->n == 0)
		rc = ARES_ENODATA;
	res->status = rc;
	if (rc != ARES_SUCCESS) {
		res->n = 0;
		return;
	}
	if (res->ttl < 0)
		res->ttl = 0;
	for (size_t i = 0; i < res->n; i++) {
		res->allowed[i] = kb_policy_allows_ip(r->o.policy, res->a[i].family, res->a[i].ip, NULL, 0);
		res->nallowed += res->allowed[i];
	}
}

static void query_done(struct kb_resolver *r, struct rname *n)
{
	if (--n->inflight)
		return;
	if (n->dropped) {
		if (n->active) {
			n->active = false;
			r->nactive--;
		}
		if (!n->queued)
			free_name(n);
		pump(r);
		return;
	}
	if (r->destroying)
		return;
	phase_done(r, n);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct rquery *q = arg;
	struct rname *n = q->n;
	struct kb_resolver *r = n->r;

	if (!n->dropped && !r->destroying && n->res)
		parse_answer(r, &n->res[q->idx], q->idx, status, abuf, alen);
	query_done(r, n);
}

static void round_end(struct kb_resolver *r, struct rname *n)
{
	n->active = false;
	r->nactive--;
	free(n->res);	/* rounds are short; idle names keep no buffers */
	n->res = NULL;
	if (n->requery) {
		n->requery = false;
		n->next_ms = mono_ms();
	}
	reschedule(r, n);
	pump(r);
}

/* A good answer: the usable addresses of use[] become the name's set. */
static void commit_success(struct kb_resolver *r, struct rname *n, const struct rres *const *use, size_t nuse)
{
	size_t total = 0, na = 0, nr = 0;
	struct raddr *addrs;
	struct rrefused *refused;
	int64_t now = mono_ms();
	int ttl = -1;
	bool same;

	for (size_t i = 0; i < nuse; i++)
		total += use[i]->n;
	addrs = calloc(total + 1, sizeof(*addrs));
	refused = calloc(total + 1, sizeof(*refused));
	if (!addrs || !refused) {
		free(addrs);
		free(refused);
		n->failures++;
		set_error(n, "out of memory");
		n->next_ms = now + r->o.retry_base_ms;
		return;
	}
	for (size_t i = 0; i < nuse; i++) {
		const struct rres *res = use[i];

		if (res->n && (ttl < 0 || res->ttl < ttl))
			ttl = res->ttl;
		for (size_t k = 0; k < res->n; k++) {
			if (res->allowed[k]) {
				addrs[na++] = res->a[k];
			} else {
				char why[256];

				kb_policy_allows_ip(r->o.policy, res->a[k].family, res->a[k].ip, why, sizeof(why));
				refused[nr].a = res->a[k];
				refused[nr++].why = strdup(why);
			}
		}
	}
	qsort(addrs, na, sizeof(*addrs), addr_cmp);
	if (na > 1) {
		size_t w = 1;

		for (size_t k = 1; k < na; k++)
			if (addr_cmp(&addrs[k], &addrs[w - 1]) != 0)
				addrs[w++] = addrs[k];
		na = w;
	}
	same = na == n->naddrs && (na == 0 || memcmp(addrs, n->addrs, na * sizeof(*addrs)) == 0);
	if (!same)
		r->changed = true;
	clear_answer(n);
	n->addrs = addrs;
	n->naddrs = na;
	n->refused = refused;
	n->nrefused = nr;
	if (ttl < 0)
		ttl = 0;
	n->ttl_s = ttl;
	n->ttl_ms = (int64_t)ttl * 1000;
	if (n->ttl_ms < r->o.min_ttl_ms)
		n->ttl_ms = r->o.min_ttl_ms;
	if (n->ttl_ms > r->o.max_ttl_ms)
		n->ttl_ms = r->o.max_ttl_ms;
	n->answered = true;
	n->expired = false;
	n->negative = false;
	n->failures = 0;
	r->refreshes++;
	n->backoff_ms = 0;
	n->expires_ms = now + n->ttl_ms;
	n->last_refresh = time(NULL);
	n->next_ms = now + refresh_interval(n);
}

/* Empty a name whose NXDOMAIN/NODATA outlived its last answer's TTL. */
static void expire(struct kb_resolver *r, struct rname *n)
{
	if (n->naddrs)
		r->changed = true;
	clear_answer(n);
	n->expired = true;
}

/* A failed round (transient or negative): keep the answer, back off, and for a negative one watch the TTL. */
static void commit_failure(struct kb_resolver *r, struct rname *n, int status)
{
	int64_t now = mono_ms();
	int64_t cap = n->answered && n->respect_ttl ? n->ttl_ms : n->refresh_ms;

	if (cap < r->o.retry_base_ms)
		cap = r->o.retry_base_ms;
	n->failures++;
	r->errors++;
	n->backoff_ms = n->failures == 1 ? r->o.retry_base_ms : min64(n->backoff_ms * 2, cap);
	n->next_ms = now + n->backoff_ms;
	set_error(n, status_text(status));
	/* Only a good answer ends a negative spell: a timeout in between proves nothing. */
	if (is_negative(status))
		n->negative = true;
	if (n->negative && n->answered && !n->expired && now >= n->expires_ms)
		expire(r, n);
}

/* The worst status of two negatives: NXDOMAIN over NODATA. */
static int neg_status(int a, int b)
{
	return a == ARES_ENOTFOUND || b == ARES_ENOTFOUND ? ARES_ENOTFOUND : ARES_ENODATA;
}

/* All queries of a phase are back: decide, or start the preferred family's fallback. */
static void phase_done(struct kb_resolver *r, struct rname *n)
{
	const struct rres *a = &n->res[0], *b = &n->res[1];
	const struct rres *use[2];
	int pi = n->round_family == KB_LOOKUP_V6_PREFERRED ? 1 : 0;	/* preferred index */
	const struct rres *p = &n->res[pi], *s = &n->res[1 - pi];

	switch (n->round_family) {
	case KB_LOOKUP_V4:
	case KB_LOOKUP_V6: {
		const struct rres *x = n->round_family == KB_LOOKUP_V4 ? a : b;

		if (x->status == ARES_SUCCESS) {
			use[0] = x;
			commit_success(r, n, use, 1);
		} else {
			commit_failure(r, n, x->status);
		}
		break;
	}
	case KB_LOOKUP_V4_AND_V6:
		if (a->status != ARES_SUCCESS && !is_negative(a->status)) {
			commit_failure(r, n, a->status);
		} else if (b->status != ARES_SUCCESS && !is_negative(b->status)) {
			commit_failure(r, n, b->status);
		} else if (is_negative(a->status) && is_negative(b->status)) {
			commit_failure(r, n, neg_status(a->status, b->status));
		} else {
			size_t k = 0;

			if (a->status == ARES_SUCCESS)
				use[k++] = a;
			if (b->status == ARES_SUCCESS)
				use[k++] = b;
			commit_success(r, n, use, k);
		}
		break;
	case KB_LOOKUP_V4_PREFERRED:
	case KB_LOOKUP_V6_PREFERRED:
		if (n->phase == 0) {
			if (p->status == ARES_SUCCESS && p->nallowed) {
				use[0] = p;
				commit_success(r, n, use, 1);
			} else if (p->status == ARES_SUCCESS || is_negative(p->status)) {
				/* No usable address of the preferred family: ask the other one. */
				n->phase = 1;
				send_types(r, n, pi == 1, pi == 0);
				return;
			} else {
				commit_failure(r, n, p->status);
			}
		} else if (s->status == ARES_SUCCESS) {
			use[0] = p->status == ARES_SUCCESS ? p : s;	/* keeps p's refused addresses in status */
			use[1] = s;
			commit_success(r, n, use[0] == s ? use + 1 : use, use[0] == s ? 1 : 2);
		} else if (is_negative(s->status) && p->status == ARES_SUCCESS) {
			use[0] = p;	/* only refused addresses: an empty, good answer */
			commit_success(r, n, use, 1);
		} else if (is_negative(s->status)) {
			commit_failure(r, n, neg_status(p->status, s->status));
		} else {
			commit_failure(r, n, s->status);
		}
		break;
	}
	round_end(r, n);
}

/* An IP literal resolves to itself: judged once, never queried. */
static void set_literal(struct kb_resolver *r, struct rname *n, const struct raddr *a)
{
	struct rres *res = calloc(1, sizeof(*res));
	const struct rres *use[1] = { res };

	if (!res)
		return;
	res->status = ARES_SUCCESS;
	res->n = 1;
	res->a[0] = *a;
	res->allowed[0] = kb_policy_allows_ip(r->o.policy, a->family, a->ip, NULL, 0);
	res->nallowed = res->allowed[0];
	res->ttl = 0;
	commit_success(r, n, use, 1);
	free(res);
	n->literal = true;
	n->next_ms = NEVER;
}

static bool parse_literal(const char *host, struct raddr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, &a->ip[0]) == 1) {
		a->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, host, a->ip) == 1) {
		a->family = AF_INET6;
		return true;
	}
	return false;
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
			expire(r, n);
		if (!n->active && !n->queued && now >= n->next_ms)
			round_begin(r, n);	/* may complete synchronously and reschedule */
		reschedule(r, n);
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

struct kb_resolver *kb_resolver_new(const struct kb_resolver_opts *opts, char *err, size_t errlen)
{
	struct kb_resolver_opts none = { 0 };
	struct kb_resolver *r;
	struct ares_options ao;
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
			free_name(n);
	}
	for (size_t i = 0; i < r->tabcap; i++)
		for (struct rname *n = r->tab[i], *next; n; n = next) {
			next = n->hnext;
			free_name(n);
		}
	free(r->tab);
	free(r->heap);
	free(r->socks);
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
		free_name(n);
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
		struct raddr lit;

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
			if (parse_literal(n->host, &lit))
				set_literal(r, n, &lit);
			else
				start[nstart++] = n;
		}
		n->hnext = tab[h & (cap - 1)];
		tab[h & (cap - 1)] = n;
		nlive++;
		reschedule(r, n);
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
		round_begin(r, start[i]);
		reschedule(r, start[i]);
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
	n = find_name(r->tab, r->tabcap, host, host_hash(host));
	if (!n)
		return 0;
	for (k = 0; k < n->naddrs && k < max; k++) {
		family[k] = n->addrs[k].family;
		memcpy(ip[k], n->addrs[k].ip, sizeof(ip[k]));
	}
	return k;
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

/* ---- status ----------------------------------------------------------------------------- */

static struct json_object *addr_json(const struct raddr *a, const char *why)
{
	struct json_object *o = json_object_new_object();
	char buf[INET6_ADDRSTRLEN];

	addr_text(a, buf, sizeof(buf));
	json_object_object_add(o, "address", json_object_new_string(buf));
	json_object_object_add(o, "family", json_object_new_string(a->family == AF_INET ? "IPv4" : "IPv6"));
	if (why)
		json_object_object_add(o, "reason", json_object_new_string(why));
	return o;
}

static const char *state_name(const struct rname *n)
{
	if (n->literal)
		return "literal";
	if (!n->answered)
		return "pending";
	if (n->expired)
		return "expired";
	return n->failures ? "stale" : "resolved";
}

static struct json_object *name_json(const struct rname *n, int64_t now)
{
	struct json_object *o = json_object_new_object(), *addrs = json_object_new_array(),
			   *refused = json_object_new_array();
	int64_t left;

	json_object_object_add(o, "host", json_object_new_string(n->host));
	json_object_object_add(o, "lookupFamily", json_object_new_string(kb_lookup_family_name(n->family)));
	json_object_object_add(o, "respectDnsTtl", json_object_new_boolean(n->respect_ttl));
	json_object_object_add(o, "refreshRateMs", json_object_new_int64(n->refresh_ms));
	json_object_object_add(o, "state", json_object_new_string(state_name(n)));
	for (size_t i = 0; i < n->naddrs; i++)
		json_object_array_add(addrs, addr_json(&n->addrs[i], NULL));
	json_object_object_add(o, "addresses", addrs);
	for (size_t i = 0; i < n->nrefused; i++)
		json_object_array_add(refused, addr_json(&n->refused[i].a, n->refused[i].why));
	json_object_object_add(o, "refused", refused);
	if (n->answered && !n->literal) {
		left = n->expires_ms > now ? (n->expires_ms - now + 999) / 1000 : 0;
		json_object_object_add(o, "ttl_s", json_object_new_int(n->ttl_s));
		json_object_object_add(o, "ttl_left_s", json_object_new_int64(left));
		json_object_object_add(o, "last_refresh", json_object_new_int64((int64_t)n->last_refresh));
	} else {
		json_object_object_add(o, "ttl_s", NULL);
		json_object_object_add(o, "ttl_left_s", NULL);
		json_object_object_add(o, "last_refresh", NULL);
	}
	if (n->literal)
		json_object_object_add(o, "next_refresh_s", NULL);
	else
		json_object_object_add(o, "next_refresh_s",
				       json_object_new_int64(n->active || n->queued || n->next_ms <= now
							     ? 0 : (n->next_ms - now + 999) / 1000));
	json_object_object_add(o, "last_error", n->last_error[0] ? json_object_new_string(n->last_error) : NULL);
	json_object_object_add(o, "last_error_time",
			       n->last_error[0] ? json_object_new_int64((int64_t)n->last_error_time) : NULL);
	json_object_object_add(o, "consecutive_failures", json_object_new_int64(n->failures));
	return o;
}

static int name_cmp(const void *a, const void *b)
{
	return strcasecmp((*(struct rname *const *)a)->host, (*(struct rname *const *)b)->host);
}

struct json_object *kb_resolver_status_json(struct kb_resolver *r)
{
	struct json_object *o = json_object_new_object();
	struct rname **v = calloc(r->nnames + 1, sizeof(*v));
	int64_t now = mono_ms();
	size_t k = 0;

	if (!v)
		return o;
	for (size_t i = 0; i < r->tabcap; i++)
		for (struct rname *n = r->tab[i]; n; n = n->hnext)
			v[k++] = n;
	qsort(v, k, sizeof(*v), name_cmp);
	for (size_t i = 0; i < k; i++)
		json_object_object_add(o, v[i]->host, name_json(v[i], now));
	free(v);
	return o;
}

struct json_object *kb_resolver_name_json(struct kb_resolver *r, const char *host)
{
	struct rname *n = host ? find_name(r->tab, r->tabcap, host, host_hash(host)) : NULL;

	return n ? name_json(n, mono_ms()) : NULL;
}
