// SPDX-License-Identifier: Apache-2.0
/* The frontend tables for people (get frontends, get endpoints, stats): rows from a JSON item or, in the daemon, from its own state. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "render/render.h"
#include "render/table.h"

/* v in decimal at buf (room for 21 bytes); its length. Rows are made 100,000 at a time: no printf per number. */
static size_t put_ll(char *buf, long long v)
{
	char tmp[24];
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
	size_t n = 0, k = 0;

	do
		tmp[n++] = (char)('0' + u % 10);
	while ((u /= 10));
	if (v < 0)
		buf[k++] = '-';
	while (n)
		buf[k++] = tmp[--n];
	buf[k] = '\0';
	return k;
}

void kb_hostport(char *buf, size_t len, bool unix_path, const char *addr, long long port)
{
	size_t a = strlen(addr);
	bool v6 = strchr(addr, ':');

	/* snprintf's result, made by hand: this runs once per endpoint row. */
	if (unix_path || a + 26 > len) {
		if (unix_path)
			snprintf(buf, len, "unix:%s", addr);
		else
			snprintf(buf, len, v6 ? "[%s]:%lld" : "%s:%lld", addr, port);
		return;
	}
	if (v6)
		*buf++ = '[';
	memcpy(buf, addr, a);
	buf += a;
	if (v6)
		*buf++ = ']';
	*buf++ = ':';
	put_ll(buf, port);
}

/* "198.18.0.10:80" or "[2001:db8:f::10]:80" or "unix:/path". */
void kb_json_hostport(char *buf, size_t len, struct json_object *o)
{
	kb_hostport(buf, len, strcmp(kb_json_str(o, "type"), "Unix") == 0, kb_json_str(o, "address"),
		    kb_json_int(o, "port"));
}

/*
 * The HEALTH cell ("healthy", "ejected until 12:03:04Z", "failing 3 probes")
 * and the sockops cell ("open ok/refused/timed out") from an endpoint's
 * "health" object; without one (no daemon health), the compiled verdict.
 */
void kb_health_cells(struct json_object *h, bool healthy, char *hc, size_t hlen, char *oc, size_t olen)
{
	struct json_object *a = NULL, *o = NULL;
	const char *state, *until;

	snprintf(oc, olen, "-");
	if (!h) {
		snprintf(hc, hlen, "%s", healthy ? "healthy" : "unhealthy");
		return;
	}
	state = kb_json_str(h, "state");
	json_object_object_get_ex(h, "active", &a);
	until = kb_json_str(h, "ejectedUntil");
	if (!strcmp(state, "ejected"))
		snprintf(hc, hlen, "ejected until %s", strlen(until) > 11 ? until + 11 : until);
	else if (a && kb_json_int(a, "failingProbes") > 0)
		snprintf(hc, hlen, "%s, %lld failing probe%s", !strcmp(state, "healthy") ? "healthy" : "failing",
			 kb_json_int(a, "failingProbes"), kb_json_int(a, "failingProbes") == 1 ? "" : "s");
	else
		snprintf(hc, hlen, "%s", state);
	if (json_object_object_get_ex(h, "outcomes", &o))
		snprintf(oc, olen, "%lld %lld/%lld/%lld", kb_json_int(h, "activeConnections"),
			 kb_json_int(o, "established"), kb_json_int(o, "refused"), kb_json_int(o, "timedOut"));
}

/* One row per FQDN: what DNS answered, how long it holds, and the last error. */
static void dns_row(struct kb_table *t, const char *name, struct json_object *dns, struct json_object *seen)
{
	struct json_object *addrs = NULL, *refused = NULL;
	char list[512] = "", when[32] = "-", ttl[24];
	size_t n = 0;

	if (!dns || json_object_object_get_ex(seen, name, NULL))
		return;
	json_object_object_add(seen, name, NULL);
	json_object_object_get_ex(dns, "addresses", &addrs);
	json_object_object_get_ex(dns, "refused", &refused);
	for (size_t i = 0; addrs && i < json_object_array_length(addrs) && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? "," : "",
				      kb_json_str(json_object_array_get_idx(addrs, i), "address"));
	for (size_t i = 0; refused && i < json_object_array_length(refused) && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s(refused)", n ? "," : "",
				      kb_json_str(json_object_array_get_idx(refused, i), "address"));
	if (kb_json_int(dns, "last_refresh")) {
		time_t tm = (time_t)kb_json_int(dns, "last_refresh");

		strftime(when, sizeof(when), "%H:%M:%S", localtime(&tm));
	}
	snprintf(ttl, sizeof(ttl), "%lld", kb_json_int(dns, "ttl_left_s"));
	kb_table_add(t, name, kb_json_str(dns, "state"), n ? list : "-", ttl, when,
		     *kb_json_str(dns, "last_error") ? kb_json_str(dns, "last_error") : "-");
}

/* FQDN rows of one frontend (its endpoints' names and its unresolved ones), each name once. */
static void dns_rows(struct kb_fe_table *ft, struct json_object *fe)
{
	struct json_object *eps = NULL, *locs = NULL, *dns;

	json_object_object_get_ex(fe, "endpoints", &eps);
	json_object_object_get_ex(fe, "localities", &locs);
	for (size_t e = 0; eps && e < json_object_array_length(eps); e++) {
		struct json_object *ep = json_object_array_get_idx(eps, e);

		if (json_object_object_get_ex(ep, "dns", &dns))
			dns_row(&ft->dns, kb_json_str(ep, "fqdn"), dns, ft->seen_dns);
	}
	for (size_t l = 0; locs && l < json_object_array_length(locs); l++) {
		if (!json_object_object_get_ex(json_object_array_get_idx(locs, l), "dns", &dns))
			continue;
		json_object_object_foreach(dns, name, st)
			dns_row(&ft->dns, name, st, ft->seen_dns);
	}
}

/* Unix endpoints whose connects the bridge reset, once each: how many and why (the last reason). */
static void bridge_rows(struct kb_fe_table *ft, struct json_object *fe)
{
	struct json_object *eps = NULL;

	json_object_object_get_ex(fe, "endpoints", &eps);
	for (size_t e = 0; eps && e < json_object_array_length(eps); e++) {
		struct json_object *ep = json_object_array_get_idx(eps, e), *br;
		const char *path = kb_json_str(ep, "address");
		char resets[24];

		if (!json_object_object_get_ex(ep, "bridge", &br) || json_object_object_get_ex(ft->seen_br, path, NULL))
			continue;
		json_object_object_add(ft->seen_br, path, NULL);
		snprintf(resets, sizeof(resets), "%lld", kb_json_int(br, "refused"));
		kb_table_add(&ft->br, path, resets, kb_json_str(br, "lastRefusal"));
	}
}

void kb_fe_table_init(struct kb_fe_table *ft, enum kb_table_view view, bool wide)
{
	memset(ft, 0, sizeof(*ft));
	ft->view = view;
	ft->wide = wide;
	if (view == KB_TABLE_FRONTENDS) {
		kb_table_init(&ft->t, 8);
		kb_table_add(&ft->t, "FRONTEND", "PROTO", "LB", "ROUTE", "ENDPOINTS", "SLOTS", "CONNECTS", "REFUSED");
	} else {
		kb_table_init(&ft->t, 11);
		kb_table_add(&ft->t, "FRONTEND", "PROTO", "BACKEND", "PRIO", "WT", "ENDPOINT", "HEALTH", "SHARE%", "SLOTS",
			     "CONNECTS", "OPEN OK/REFUSED/TIMEOUT");
	}
	if (view == KB_TABLE_ENDPOINTS && wide) {
		kb_table_init(&ft->dns, 6);
		kb_table_add(&ft->dns, "FQDN", "STATE", "ADDRESSES", "TTL-LEFT", "LAST-REFRESH", "LAST-ERROR");
		kb_table_init(&ft->br, 3);
		kb_table_add(&ft->br, "UNIX-SOCKET", "RESETS", "LAST-RESET-REASON");
		ft->seen_dns = json_object_new_object();
		ft->seen_br = json_object_new_object();
	}
}

/* ---- rows: what each table row holds, wherever its values come from --------------------------- */

static const char *short_backend(const char *be, bool wide)
{
	const char *slash = strchr(be, '/');

	return wide || !slash ? be : slash + 1;
}

void kb_fe_row(struct kb_table *t, const char *front, const char *proto, const char *lb, const char *route,
	       size_t neps, long long slots, const long long *counters)
{
	char n1[24], n2[24], c1[24] = "-", c2[24] = "-";

	put_ll(n1, (long long)neps);
	put_ll(n2, slots);
	if (counters) {
		put_ll(c1, counters[0]);
		put_ll(c2, counters[1]);
	}
	kb_table_add(t, front, proto, lb, route, n1, n2, c1, c2);
}

void kb_ep_row(struct kb_table *t, const struct kb_ep_cells *c, bool wide)
{
	/* A frontend's endpoints mostly share one value: the last one's text is kept (printf of a double is slow). */
	static double last_pct = -1;
	static char share[32] = "";
	char prio[24], wt[24], slots[24], c1[24] = "-";

	put_ll(prio, c->prio);
	put_ll(wt, c->weight);
	if (c->share_pct != last_pct || !share[0]) {
		snprintf(share, sizeof(share), "%.2f", c->share_pct);
		last_pct = c->share_pct;
	}
	put_ll(slots, c->slots);
	if (c->connects)
		put_ll(c1, *c->connects);
	kb_table_add(t, c->front, c->proto, short_backend(c->backend, wide), prio, wt, c->where, c->health, share, slots,
		     c1, c->open);
}

void kb_ep_none_row(struct kb_table *t, const char *front, const char *proto)
{
	kb_table_add(t, front, proto, "-", "-", "-", "(none: connects are refused)", NULL, NULL, NULL, NULL, NULL);
}

void kb_unresolved_row(struct kb_table *t, const char *backend, long long prio, long long weight, const char *name,
		       bool wide)
{
	char p[24], w[24];

	snprintf(p, sizeof(p), "%lld", prio);
	snprintf(w, sizeof(w), "%lld", weight);
	kb_table_add(t, "", "", short_backend(backend, wide), p, w, name, "unresolved", "0.00", "0", "-", "-");
}

/* A JSON "stats" object's two counters; false when there is none. */
static bool json_counters(struct json_object *st, const char *k1, const char *k2, long long out[2])
{
	if (!st)
		return false;
	out[0] = kb_json_int(st, k1);
	out[1] = k2 ? kb_json_int(st, k2) : 0;
	return true;
}

void kb_fe_table_add(struct kb_fe_table *ft, struct json_object *fe)
{
	struct json_object *eps = NULL, *st = NULL, *locs = NULL;
	struct kb_table *t = &ft->t;
	const char *proto = kb_json_str(fe, "protocol");
	bool wide = ft->wide;
	long long cs[2];
	char front[80];

	kb_json_hostport(front, sizeof(front), fe);
	json_object_object_get_ex(fe, "stats", &st);
	json_object_object_get_ex(fe, "endpoints", &eps);
	if (ft->view == KB_TABLE_FRONTENDS) {
		kb_fe_row(t, front, proto, kb_json_str(fe, "loadBalancer"), kb_json_str(fe, "route"),
			  eps ? json_object_array_length(eps) : 0, kb_json_int(fe, "slots"),
			  json_counters(st, "connects", "refused", cs) ? cs : NULL);
		return;
	}
	if (!eps || !json_object_array_length(eps))
		kb_ep_none_row(t, front, proto);
	for (size_t e = 0; eps && e < json_object_array_length(eps); e++) {
		struct json_object *ep = json_object_array_get_idx(eps, e), *es = NULL, *h = NULL;
		char where[300], hc[64], oc[96];
		struct kb_ep_cells c = {
			.front = e ? "" : front, .proto = e ? "" : proto, .backend = kb_json_str(ep, "backend"),
			.where = where, .health = hc, .open = oc, .prio = kb_json_int(ep, "priority"),
			.weight = kb_json_int(ep, "weight"), .slots = kb_json_int(ep, "slots"),
			.share_pct = json_object_get_double(json_object_object_get(ep, "sharePercent")),
		};

		kb_json_hostport(where, sizeof(where), ep);
		json_object_object_get_ex(ep, "stats", &es);
		json_object_object_get_ex(ep, "healthy", &h);
		c.connects = json_counters(es, "connects", NULL, cs) ? cs : NULL;
		kb_health_cells(json_object_object_get(ep, "health"), json_object_get_boolean(h), hc, sizeof(hc), oc,
				sizeof(oc));
		kb_ep_row(t, &c, wide);
	}
	/* FQDNs with no usable address yet hold no slot; show them so the gap is visible. */
	json_object_object_get_ex(fe, "localities", &locs);
	for (size_t l = 0; locs && l < json_object_array_length(locs); l++) {
		struct json_object *lc = json_object_array_get_idx(locs, l), *un = NULL;

		json_object_object_get_ex(lc, "unresolved", &un);
		for (size_t u = 0; un && u < json_object_array_length(un); u++)
			kb_unresolved_row(t, kb_json_str(lc, "backend"), kb_json_int(lc, "priority"),
					  kb_json_int(lc, "weight"), json_object_get_string(json_object_array_get_idx(un, u)),
					  wide);
	}
	if (ft->seen_dns) {
		dns_rows(ft, fe);
		bridge_rows(ft, fe);
	}
}

void kb_fe_table_print(FILE *f, struct kb_fe_table *ft)
{
	kb_table_print(f, &ft->t);
	/* A table of only its header (no FQDN, no unix endpoint ever reset) is not printed. */
	if (ft->seen_dns && ft->dns.ncells > ft->dns.ncols) {
		fputc('\n', f);
		kb_table_print(f, &ft->dns);
	}
	if (ft->seen_br && ft->br.ncells > ft->br.ncols) {
		fputc('\n', f);
		kb_table_print(f, &ft->br);
	}
}

void kb_fe_table_free(struct kb_fe_table *ft)
{
	kb_table_free(&ft->t);
	if (ft->seen_dns) {
		kb_table_free(&ft->dns);
		kb_table_free(&ft->br);
		json_object_put(ft->seen_dns);
		json_object_put(ft->seen_br);
	}
}

void kb_print_frontends_table(FILE *f, struct json_object *fes, enum kb_table_view view, bool wide)
{
	struct kb_fe_table ft;

	kb_fe_table_init(&ft, view, wide);
	for (size_t i = 0; i < json_object_array_length(fes); i++)
		kb_fe_table_add(&ft, json_object_array_get_idx(fes, i));
	kb_fe_table_print(f, &ft);
	kb_fe_table_free(&ft);
}

