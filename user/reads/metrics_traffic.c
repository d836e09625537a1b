// SPDX-License-Identifier: Apache-2.0
/* /metrics' per-frontend and per-endpoint families, written a piece at a time so that a scrape never holds its whole text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <json-c/json.h>

#include "daemon/daemon_int.h"
#include "reads/metrics_int.h"
#include "util.h"

/*
 * The counters are read at the start of the section, all of them in batches
 * (one snapshot, a few system calls); health's view once per distinct
 * address. Then each family is written frontend after frontend, resuming
 * where the last piece ended. The frontends are the compiled ones: a change
 * of state during the scrape frees them, so the caller checks the daemon's
 * reads_gen before every piece and ends the scrape if it moved.
 */

enum fam {
	F_FE_CONNECTS, F_FE_REFUSED, F_FE_ENDPOINTS, F_FE_HEALTHY, F_EP_CONNECTS, F_EP_HEALTHY, F_EP_SHARE,
	F_ADDR_ESTABLISHED, F_ADDR_FAILURES, F_ADDR_ACTIVE, F_ADDR_EJECTIONS, F_DONE,
};

static const struct { const char *name, *type, *help; } fams[] = {
	[F_FE_CONNECTS] = { "kbackend_frontend_connections_total", "counter",
			    "Connections (TCP connects, UDP flows) steered by the frontend to an endpoint." },
	[F_FE_REFUSED] = { "kbackend_frontend_refused_total", "counter",
			   "Connects to the frontend refused because it had no usable endpoint." },
	[F_FE_ENDPOINTS] = { "kbackend_frontend_endpoints", "gauge", "Endpoints the frontend selects from." },
	[F_FE_HEALTHY] = { "kbackend_frontend_healthy_endpoints", "gauge", "Endpoints of the frontend that are healthy." },
	[F_EP_CONNECTS] = { "kbackend_endpoint_connections_total", "counter",
			    "Connections the frontend steered to the endpoint." },
	[F_EP_HEALTHY] = { "kbackend_endpoint_healthy", "gauge",
			   "1 when the endpoint is healthy (active checks and outlier ejection), else 0." },
	[F_EP_SHARE] = { "kbackend_endpoint_share_ratio", "gauge",
			 "Fraction of the frontend's new connections the endpoint receives (0 to 1)." },
	[F_ADDR_ESTABLISHED] = { "kbackend_endpoint_established_total", "counter",
				 "TCP connects to the endpoint address whose handshake completed (all frontends)." },
	[F_ADDR_FAILURES] = { "kbackend_endpoint_failures_total", "counter",
			      "TCP connects to the endpoint address that failed, by reason: refused (RST), timeout, other." },
	[F_ADDR_ACTIVE] = { "kbackend_endpoint_active_connections", "gauge",
			    "TCP connections to the endpoint address open now (all frontends)." },
	[F_ADDR_EJECTIONS] = { "kbackend_endpoint_ejections_total", "counter",
			       "Outlier ejections of the endpoint address (passive health), since health began tracking it." },
};

/* What health knows of one endpoint address (shared by every frontend that uses it). */
struct addr_row {
	size_t fe, ep;		/* the first frontend endpoint with this address */
	uint64_t established, refused, timed_out, failed, active, ejections;
	bool outcomes;		/* sockops counts its connects */
};

struct kb_mtraffic {
	struct kb_conn_stats *fs, *es;	/* counters of frontend i, and of its endpoint e at es[ep_off[i] + e] */
	bool *fs_ok, *es_ok;
	bool *repeat;			/* es[k]'s endpoint repeats an earlier one of its frontend: no series of its own */
	size_t *ep_off;
	struct addr_row *addrs;
	size_t naddr;
	enum fam fam;
	size_t i;			/* the next frontend (or address) of fam */
	bool head;			/* fam's HELP and TYPE are written */
};

/* "198.18.0.10:80", "[2001:db8:f::1]:80", or a unix path as it is; made by hand (a few per series). */
static void host_port(char *buf, size_t len, const char *addr, unsigned port, int family)
{
	size_t n = addr ? strlen(addr) : 0, k = 0;
	bool v6 = family == AF_INET6 || (addr && strchr(addr, ':'));
	char digits[8];
	size_t nd = 0;

	if (family == AF_UNIX || !port) {
		snprintf(buf, len, "%s", addr ? addr : "");
		return;
	}
	if (n + 10 > len) {
		snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", addr ? addr : "", port);
		return;
	}
	do
		digits[nd++] = (char)('0' + port % 10);
	while ((port /= 10));
	if (v6)
		buf[k++] = '[';
	memcpy(buf + k, addr, n);
	k += n;
	if (v6)
		buf[k++] = ']';
	buf[k++] = ':';
	while (nd)
		buf[k++] = digits[--nd];
	buf[k] = '\0';
}

static const char *proto_label(__u8 proto)
{
	return proto == KB_PROTO_UDP ? "udp" : "tcp";
}

static void ep_name(char *buf, size_t len, const struct kb_cendpoint *ep)
{
	host_port(buf, len, ep->address, ep->port, ep->family);
}

/* An endpoint listed twice in one frontend (two refs to one Backend) is one series: the first one stands. */
static bool ep_repeat(const struct kb_cfrontend *fe, size_t e)
{
	const struct kb_cendpoint *x = &fe->eps[e];
	char a[300], b[300];

	for (size_t k = 0; k < e; k++) {
		const struct kb_cendpoint *y = &fe->eps[k];

		if (!kb_str_same(x->address, y->address) || !kb_str_same(x->backend, y->backend))
			continue;
		ep_name(a, sizeof(a), x);
		ep_name(b, sizeof(b), y);
		if (!strcmp(a, b))
			return true;
	}
	return false;
}

static uint64_t ju64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

/* Every frontend's and endpoint's counters, 1024 frontends a dataplane call; one call each when that cannot. */
static void read_stats(struct daemon *d, struct kb_mtraffic *t)
{
	const struct kb_compiled *c = &d->compiled;
	const struct kb_cfrontend *batch[1024];
	bool batched = d->dp->ops->stats_many;

	for (size_t i = 0; batched && i < c->nfes; i += 1024) {
		size_t n = c->nfes - i < 1024 ? c->nfes - i : 1024;

		for (size_t k = 0; k < n; k++)
			batch[k] = &c->fes[i + k];
		batched = !d->dp->ops->stats_many(d->dp, batch, n, t->fs + i, t->fs_ok + i, t->es + t->ep_off[i],
						  t->es_ok + t->ep_off[i]);
	}
	for (size_t i = 0; !batched && i < c->nfes; i++) {
		const struct kb_cfrontend *fe = &c->fes[i];

		t->fs_ok[i] = d->dp->ops->frontend_stats && !d->dp->ops->frontend_stats(d->dp, fe, &t->fs[i]);
		for (size_t e = 0; e < fe->neps; e++)
			t->es_ok[t->ep_off[i] + e] = d->dp->ops->endpoint_stats &&
						     !d->dp->ops->endpoint_stats(d->dp, fe, e, &t->es[t->ep_off[i] + e]);
	}
}

/* Health's view of each distinct endpoint address (protocol and name), in the order the frontends first use them. */
static void read_addrs(struct daemon *d, struct kb_mtraffic *t)
{
	const struct kb_compiled *c = &d->compiled;
	struct kb_arena arena = { 0 };
	struct kb_smap seen = { .a = &arena };

	for (size_t i = 0; d->health && i < c->nfes; i++) {
		const struct kb_cfrontend *fe = &c->fes[i];

		for (size_t e = 0; e < fe->neps; e++) {
			struct json_object *jh, *oc;
			struct addr_row *a;
			char key[320];
			int n;

			if (fe->eps[e].type == KB_EP_UNIX)
				continue;
			n = snprintf(key, sizeof(key), "%u ", fe->proto);
			ep_name(key + n, sizeof(key) - (size_t)n, &fe->eps[e]);
			if (kb_smap_get(&seen, key))
				continue;
			kb_smap_put(&seen, kb_strdup(&arena, key), t);
			jh = kb_health_endpoint_json(d->health, fe, &fe->eps[e]);
			if (!jh)
				continue;
			a = &t->addrs[t->naddr++];
			memset(a, 0, sizeof(*a));
			a->fe = i;
			a->ep = e;
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
	}
	kb_arena_free(&arena);
}

struct kb_mtraffic *kb_mtraffic_new(struct daemon *d)
{
	const struct kb_compiled *c = &d->compiled;
	struct kb_mtraffic *t = calloc(1, sizeof(*t));
	size_t total = 0;

	if (!t)
		return NULL;
	t->ep_off = calloc(c->nfes + 1, sizeof(*t->ep_off));
	for (size_t i = 0; t->ep_off && i < c->nfes; i++)
		t->ep_off[i + 1] = total += c->fes[i].neps;
	t->fs = calloc(c->nfes + 1, sizeof(*t->fs));
	t->fs_ok = calloc(c->nfes + 1, sizeof(*t->fs_ok));
	t->es = calloc(total + 1, sizeof(*t->es));
	t->es_ok = calloc(total + 1, sizeof(*t->es_ok));
	t->addrs = calloc(total + 1, sizeof(*t->addrs));
	t->repeat = calloc(total + 1, sizeof(*t->repeat));
	if (!t->ep_off || !t->fs || !t->fs_ok || !t->es || !t->es_ok || !t->addrs || !t->repeat) {
		kb_mtraffic_free(t);
		return NULL;
	}
	for (size_t i = 0; i < c->nfes; i++)
		for (size_t e = 1; e < c->fes[i].neps; e++)
			t->repeat[t->ep_off[i] + e] = ep_repeat(&c->fes[i], e);
	read_stats(d, t);
	read_addrs(d, t);
	return t;
}

void kb_mtraffic_free(struct kb_mtraffic *t)
{
	if (!t)
		return;
	free(t->fs);
	free(t->fs_ok);
	free(t->es);
	free(t->es_ok);
	free(t->ep_off);
	free(t->addrs);
	free(t->repeat);
	free(t);
}

/* Family fam's lines for frontend (or address) i. */
static void lines(struct daemon *d, struct kb_mtraffic *t, struct kb_mout *o, size_t i)
{
	const char *name = fams[t->fam].name;
	const struct kb_cfrontend *fe;
	char fn[80], en[300];

	if (t->fam >= F_ADDR_ESTABLISHED) {
		const struct addr_row *a = &t->addrs[i];
		const char *proto;

		fe = &d->compiled.fes[a->fe];
		proto = proto_label(fe->proto);
		ep_name(en, sizeof(en), &fe->eps[a->ep]);
		if (t->fam == F_ADDR_FAILURES && a->outcomes) {
			kb_metrics_u64(o, name, a->refused, "endpoint", en, "protocol", proto, "reason", "refused", NULL);
			kb_metrics_u64(o, name, a->timed_out, "endpoint", en, "protocol", proto, "reason", "timeout", NULL);
			kb_metrics_u64(o, name, a->failed, "endpoint", en, "protocol", proto, "reason", "other", NULL);
		} else if (t->fam == F_ADDR_EJECTIONS || (t->fam != F_ADDR_FAILURES && a->outcomes)) {
			uint64_t v = t->fam == F_ADDR_ESTABLISHED ? a->established
				     : t->fam == F_ADDR_ACTIVE    ? a->active
								  : a->ejections;

			kb_metrics_u64(o, name, v, "endpoint", en, "protocol", proto, NULL);
		}
		return;
	}
	fe = &d->compiled.fes[i];
	host_port(fn, sizeof(fn), fe->address, fe->port, fe->key.family);
	if (t->fam <= F_FE_HEALTHY) {
		uint64_t v = 0;

		if (t->fam == F_FE_CONNECTS || t->fam == F_FE_REFUSED) {
			if (!t->fs_ok[i])
				return;
			v = t->fam == F_FE_CONNECTS ? t->fs[i].connects : t->fs[i].refused;
		} else if (t->fam == F_FE_ENDPOINTS) {
			v = fe->neps;
		} else {
			for (size_t e = 0; e < fe->neps; e++)
				v += fe->eps[e].healthy;
		}
		kb_metrics_u64(o, name, v, "frontend", fn, "protocol", proto_label(fe->proto), NULL);
		return;
	}
	for (size_t e = 0; e < fe->neps; e++) {
		const struct kb_cendpoint *ep = &fe->eps[e];
		size_t k = t->ep_off[i] + e;

		if (t->repeat[k] || (t->fam == F_EP_CONNECTS && !t->es_ok[k]))
			continue;
		ep_name(en, sizeof(en), ep);
#define EP_LABELS "frontend", fn, "protocol", proto_label(fe->proto), "backend", ep->backend, "endpoint", en, NULL
		if (t->fam == F_EP_CONNECTS)
			kb_metrics_u64(o, name, t->es[k].connects, EP_LABELS);
		else if (t->fam == F_EP_HEALTHY)
			kb_metrics_u64(o, name, ep->healthy ? 1 : 0, EP_LABELS);
		else
			kb_metrics_f64(o, name, ep->share, EP_LABELS);
#undef EP_LABELS
	}
}

int kb_mtraffic_fill(struct kb_mtraffic *t, struct daemon *d, struct kb_mout *o, size_t want)
{
	while (t->fam < F_DONE && o->len < want) {
		size_t n = t->fam >= F_ADDR_ESTABLISHED ? t->naddr : d->compiled.nfes;

		if (!t->head) {
			kb_metrics_family(o, fams[t->fam].name, fams[t->fam].type, fams[t->fam].help);
			t->head = true;
		}
		while (t->i < n && o->len < want)
			lines(d, t, o, t->i++);
		if (t->i == n) {
			t->fam++;
			t->i = 0;
			t->head = false;
		}
	}
	return t->fam < F_DONE;
}
