// SPDX-License-Identifier: Apache-2.0
/* The resolver's JSON for `get endpoints -o wide`: each name's state, addresses, refusals, TTL, last error. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>

#include "resolver_int.h"

static void addr_text(const struct raddr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family, a->ip, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

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
	if (!n->naddrs && n->nrefused)
		return "refused";	/* answered, but the SSRF guard refused every address */
	if (!n->answered)
		return "pending";
	if (n->expired)
		return "expired";
	return n->failures ? "stale" : "resolved";
}

/* How each record type of the last round ended: {"A": "NOERROR", "AAAA": "REFUSED"}; a type not asked is null. */
static struct json_object *answers_json(const struct rname *n)
{
	struct json_object *o = json_object_new_object();
	static const char *const type[2] = { "A", "AAAA" };

	for (int i = 0; i < 2; i++)
		json_object_object_add(o, type[i], n->asked[i] ? json_object_new_string(rv_status_text(n->r, n->last_status[i]))
							      : NULL);
	return o;
}

/* Why nothing is programmed for a name in state "refused" (null otherwise). */
static struct json_object *reason_json(const struct rname *n)
{
	char buf[256];

	if (n->literal || n->naddrs || !n->nrefused)
		return NULL;
	snprintf(buf, sizeof(buf), "no usable address: %zu answered address%s refused by the SSRF guard%s%s", n->nrefused,
		 n->nrefused == 1 ? "" : "es", n->failures ? "; last error: " : "", n->failures ? n->last_error : "");
	return json_object_new_string(buf);
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
	json_object_object_add(o, "last_answers", answers_json(n));
	json_object_object_add(o, "reason", reason_json(n));
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
	struct rname *n = host ? rv_find(r, host) : NULL;

	return n ? name_json(n, mono_ms()) : NULL;
}
