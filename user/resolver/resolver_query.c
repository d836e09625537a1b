// SPDX-License-Identifier: Apache-2.0
/* One refresh of one FQDN: c-ares queries, answers through the SSRF guard, family fallback, TTLs, backoff. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "resolver_int.h"
#include "validate/validate.h"

#define T_A	1	/* ns_t_a */
#define T_AAAA	28	/* ns_t_aaaa */
#define C_IN	1	/* ns_c_in */

/* ---- small helpers ----------------------------------------------------------------- */

const char *rv_status_text(const struct kb_resolver *r, int st)
{
	switch (st) {
	case ARES_SUCCESS:
		return "NOERROR";
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
		/* c-ares 1.18 ends a query that every server answered with REFUSED/SERVFAIL/NOTIMP the same way. */
		return r->lumped ? "no server answered (connection refused, REFUSED or SERVFAIL)" : "connection refused";
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
				rv_free_name(n);
			continue;
		}
		launch(r, n);
		rv_reschedule(r, n);
	}
	r->pumping = false;
}

/* Begin a refresh of n now, or queue it for a slot. */
void rv_round_begin(struct kb_resolver *r, struct rname *n)
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

/*
 * The answer is to the question asked: one question, of the asked type, for
 * the host or the host under a search domain. c-ares checks this itself
 * unless ARES_FLAG_NOCHECKRESP is set (see kb_resolver_new), so check here.
 */
static bool same_question(const struct rname *n, int idx, const unsigned char *abuf, int alen)
{
	size_t hl = strlen(n->host) - (n->absolute ? 1 : 0);
	char *name = NULL;
	long enclen = 0;
	bool ok;
	int type;

	if (alen < 12 || abuf[4] != 0 || abuf[5] != 1)
		return false;
	if (ares_expand_name(abuf + 12, abuf, alen, &name, &enclen) != ARES_SUCCESS)
		return false;
	ok = 12 + enclen + 4 <= alen;
	type = ok ? abuf[12 + enclen] << 8 | abuf[12 + enclen + 1] : 0;
	ok = ok && type == (idx ? T_AAAA : T_A) && strncasecmp(name, n->host, hl) == 0 &&
	     (name[hl] == '\0' || (name[hl] == '.' && !n->absolute));
	ares_free_string(name);
	return ok;
}

/* Parse one answer into res, judging each address with the SSRF guard. */
static void parse_answer(struct kb_resolver *r, const struct rname *n, struct rres *res, int idx, int status,
			 unsigned char *abuf, int alen)
{
	int rc, cnt = KB_RESOLVER_MAX_ADDRS;

	res->n = res->nallowed = 0;
	res->ttl = 0;
	if (status != ARES_SUCCESS) {
		res->status = status;
		return;
	}
	if (!same_question(n, idx, abuf, alen)) {
		res->status = ARES_EBADRESP;
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
			rv_free_name(n);
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
		parse_answer(r, n, &n->res[q->idx], q->idx, status, abuf, alen);
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
	rv_reschedule(r, n);
	pump(r);
}

void rv_clear_answer(struct rname *n)
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

/* The addresses of use[] that the SSRF guard refused, each with its reason, into out (room for all). */
static size_t refused_of(struct kb_resolver *r, const struct rres *const *use, size_t nuse, struct rrefused *out)
{
	size_t nr = 0;

	for (size_t i = 0; i < nuse; i++)
		for (size_t k = 0; k < use[i]->n; k++) {
			char why[256];

			if (use[i]->allowed[k])
				continue;
			kb_policy_allows_ip(r->o.policy, use[i]->a[k].family, use[i]->a[k].ip, why, sizeof(why));
			out[nr].a = use[i]->a[k];
			out[nr++].why = strdup(why);
		}
	return nr;
}

/*
 * A failed round in which a family did answer, with refused addresses only.
 * While no usable address is in force, those refusals become the name's, so
 * its status says why nothing is programmed rather than only the other
 * family's error. A usable answer in force keeps its own list.
 */
static void note_refused(struct kb_resolver *r, struct rname *n)
{
	const struct rres *use[2];
	struct rrefused *refused;
	size_t nuse = 0, total = 0;

	if (n->naddrs)
		return;
	for (int i = 0; i < 2; i++)
		if (n->res[i].status == ARES_SUCCESS && n->res[i].n > n->res[i].nallowed) {
			use[nuse++] = &n->res[i];
			total += n->res[i].n;
		}
	if (!nuse || !(refused = calloc(total, sizeof(*refused))))
		return;
	rv_clear_answer(n);
	n->refused = refused;
	n->nrefused = refused_of(r, use, nuse, refused);
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
		for (size_t k = 0; k < res->n; k++)
			if (res->allowed[k])
				addrs[na++] = res->a[k];
	}
	nr = refused_of(r, use, nuse, refused);
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
		rv_mark_changed(r, n);
	rv_clear_answer(n);
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
void rv_expire(struct kb_resolver *r, struct rname *n)
{
	if (n->naddrs)
		rv_mark_changed(r, n);
	rv_clear_answer(n);
	n->expired = true;
}

/* A failed round (transient or negative): keep the answer, back off, and for a negative one watch the TTL. */
static void commit_failure(struct kb_resolver *r, struct rname *n, int status)
{
	int64_t now = mono_ms();
	int64_t cap = n->answered && n->respect_ttl ? n->ttl_ms : n->refresh_ms;

	if (cap < r->o.retry_base_ms)
		cap = r->o.retry_base_ms;
	note_refused(r, n);
	n->failures++;
	r->errors++;
	n->backoff_ms = n->failures == 1 ? r->o.retry_base_ms : min64(n->backoff_ms * 2, cap);
	n->next_ms = now + n->backoff_ms;
	set_error(n, rv_status_text(r, status));
	/* Only a good answer ends a negative spell: a timeout in between proves nothing. */
	if (is_negative(status))
		n->negative = true;
	if (n->negative && n->answered && !n->expired && now >= n->expires_ms)
		rv_expire(r, n);
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

	for (int i = 0; i < 2; i++) {
		n->asked[i] = n->res[i].status != ARES_ECANCELLED;
		n->last_status[i] = n->res[i].status;
	}
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

/* ---- IP literals ----------------------------------------------------------------------- */

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

bool rv_literal(struct kb_resolver *r, struct rname *n)
{
	struct raddr lit;

	if (!parse_literal(n->host, &lit))
		return false;
	set_literal(r, n, &lit);
	return true;
}
