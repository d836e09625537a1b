// SPDX-License-Identifier: Apache-2.0
/* Judges Backends: Envoy Gateway's CRD/CEL rules, its translator rules, and kbackend's SSRF guard and L4 limits. */
#include <arpa/inet.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "validate_int.h"

/*
 * A CRD/CEL-layer refusal: the apiserver would have refused the object at
 * admission. The diagnostic reads like kubectl's ("path: Invalid value: ...");
 * the condition repeats the path because the message alone ("Required value")
 * would not say what is wrong.
 */
void vx_crd(struct vx_bjudge *j, const char *path, const char *fmt, ...)
{
	struct kb_model *m = j->c->m;
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = kb_vsprintf(&m->arena, fmt, ap);
	va_end(ap);
	kb_diag_add(m, KB_SEV_ERROR, &j->b->meta, path, "%s", msg);
	if (!j->v->refused) {
		j->v->refused = true;
		j->v->reason = VX_R_INVALID_REF;
		j->v->why = kb_sprintf(&m->arena, "%s: %s", path, msg);
	}
	j->crd_errors++;
}

void vx_refuse(struct vx_bjudge *j, const char *reason, const char *path, const char *why, const char *hint)
{
	kb_diag_add(j->c->m, KB_SEV_ERROR, &j->b->meta, path, "%s%s", why, hint ? hint : "");
	if (!j->v->refused) {
		j->v->refused = true;
		j->v->reason = reason;
		j->v->why = why;
	}
}

bool vx_parse_addr(const char *s, struct vx_addr *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(a, 0, sizeof(*a));
	if (!s)
		return false;
	if (inet_pton(AF_INET, s, a->b) == 1) {
		a->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, a->b) != 1)
		return false;
	a->family = AF_INET6;
	/* ::ffff:127.0.0.1 connects to 127.0.0.1: judge it as the IPv4 address it is. */
	if (memcmp(a->b, mapped, sizeof(mapped)) == 0) {
		memmove(a->b, a->b + 12, 4);
		memset(a->b + 4, 0, 12);
		a->family = AF_INET;
	}
	return true;
}

bool vx_cidr_contains(const struct vx_cidr *c, const struct vx_addr *a)
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (c->net.family != a->family)
		return false;
	if (memcmp(c->net.b, a->b, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		if ((c->net.b[full] & mask) != (a->b[full] & mask))
			return false;
	}
	return true;
}

static bool in_cidrs(const struct vx_cidr *set, size_t n, const struct vx_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (vx_cidr_contains(&set[i], a))
			return true;
	return false;
}

static bool allowed(const struct vx_ctx *c, const struct vx_addr *a)
{
	return in_cidrs(c->allow, c->nallow, a);
}

struct ssrf_range {
	int family;
	uint8_t net[16];
	int bits;
	const char *what;	/* "link-local" */
	const char *text;	/* "169.254.0.0/16" */
};

/*
 * Ranges the SSRF guard refuses (DESIGN.md section 2). Loopback is Envoy
 * Gateway's own rule; the rest are kbackend's: a Backend must not be a way to
 * reach the cloud metadata service, the node itself, or a multicast group.
 */
static const struct ssrf_range ssrf_ranges[] = {
	{ AF_INET, { 127 }, 8, "loopback", "127.0.0.0/8" },
	{ AF_INET, { 0 }, 8, "unspecified", "0.0.0.0/8" },
	{ AF_INET, { 169, 254 }, 16, "link-local", "169.254.0.0/16" },
	{ AF_INET, { 224 }, 4, "multicast", "224.0.0.0/4" },
	{ AF_INET, { 255, 255, 255, 255 }, 32, "broadcast", "255.255.255.255/32" },
	{ AF_INET6, { [15] = 1 }, 128, "loopback", "::1/128" },
	{ AF_INET6, { 0 }, 128, "unspecified", "::/128" },
	{ AF_INET6, { 0xfe, 0x80 }, 10, "link-local", "fe80::/10" },
	{ AF_INET6, { 0xff }, 8, "multicast", "ff00::/8" },
};

/* What refuses the node's own addresses (text NULL: no fixed range). */
static const struct ssrf_range ssrf_node = { 0, { 0 }, 0, "an address of this node", NULL };

/*
 * The SSRF guard on one address, shared by IP endpoints and FQDN answers:
 * NULL when it may be an endpoint (an --allow-endpoint CIDR wins over every
 * refused range), else the range that refuses it.
 */
static const struct ssrf_range *ssrf_refusal(const struct vx_cidr *allow, size_t nallow, const struct vx_cidr *node,
					     size_t nnode, const struct vx_addr *a)
{
	if (in_cidrs(allow, nallow, a))
		return NULL;
	for (size_t i = 0; i < sizeof(ssrf_ranges) / sizeof(ssrf_ranges[0]); i++) {
		const struct ssrf_range *r = &ssrf_ranges[i];
		struct vx_cidr cidr = { .net.family = r->family, .bits = r->bits };

		memcpy(cidr.net.b, r->net, sizeof(cidr.net.b));
		if (vx_cidr_contains(&cidr, a))
			return r;
	}
	return in_cidrs(node, nnode, a) ? &ssrf_node : NULL;
}

/* The --allow-endpoint value that would let `lit` through: the single address. */
static const char *allow_hint(struct kb_model *m, const char *lit, const struct vx_addr *a)
{
	return kb_sprintf(&m->arena, "%s/%d", lit, a->family == AF_INET ? 32 : 128);
}

/*
 * Judge one IP endpoint's address: with eg, only by Envoy Gateway's own rule
 * (loopback); without, only by kbackend's other ranges.
 */
static void ssrf_ip(struct vx_bjudge *j, const char *path, const char *lit, const struct vx_addr *a, bool eg)
{
	struct kb_model *m = j->c->m;
	const struct ssrf_range *r = ssrf_refusal(j->c->allow, j->c->nallow, j->c->node, j->c->nnode, a);
	const char *flag;

	if (!r || eg != (r != &ssrf_node && strcmp(r->what, "loopback") == 0))
		return;
	flag = allow_hint(m, lit, a);
	if (r == &ssrf_node) {
		vx_refuse(j, VX_R_INVALID_ADDR, path,
			  kb_sprintf(&m->arena,
				     "IP address %s is an address of this node, refused by kbackend's SSRF guard; allow it with --allow-endpoint %s",
				     lit, flag),
			  NULL);
	} else if (strcmp(r->what, "loopback") == 0) {
		/* Envoy Gateway's exact text (internal/gatewayapi/backend.go validateIP), address as written. */
		vx_refuse(j, VX_R_INVALID_ADDR, path,
			  kb_sprintf(&m->arena,
				     "IP address %s in the loopback range is only supported when using the Host infrastructure",
				     lit),
			  kb_sprintf(&m->arena, "; kbackend allows it with --allow-endpoint %s", flag));
	} else {
		vx_refuse(j, VX_R_INVALID_ADDR, path,
			  kb_sprintf(&m->arena,
				     "IP address %s is %s (%s), refused by kbackend's SSRF guard; allow it with --allow-endpoint %s",
				     lit, r->what, r->text, flag),
			  NULL);
	}
}

const char *vx_ssrf_why(const struct vx_ctx *c, const char *lit, const struct vx_addr *a)
{
	const struct ssrf_range *r = ssrf_refusal(c->allow, c->nallow, c->node, c->nnode, a);

	if (!r)
		return NULL;
	if (r->text)
		return kb_sprintf(&c->m->arena,
				  "IP address %s is %s (%s), refused by kbackend's SSRF guard; allow it with --allow-endpoint %s",
				  lit, r->what, r->text, allow_hint(c->m, lit, a));
	return kb_sprintf(&c->m->arena,
			  "IP address %s is %s, refused by kbackend's SSRF guard; allow it with --allow-endpoint %s", lit,
			  r->what, allow_hint(c->m, lit, a));
}

/* Parse a policy list for kb_policy_allows_ip; an unreadable entry is skipped (validate reports it on apply). */
static struct vx_cidr *policy_cidrs(char **list, size_t n, size_t *out_n)
{
	struct vx_cidr *v = calloc(n + 1, sizeof(*v));

	*out_n = 0;
	for (size_t i = 0; v && i < n; i++)
		if (list[i] && vx_parse_cidr(list[i], &v[*out_n]))
			(*out_n)++;
	return v;
}

bool kb_policy_allows_ip(const struct kb_policy *p, int family, const void *addr, char *why, size_t whylen)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct vx_addr a = { .family = family };
	const struct ssrf_range *r;
	struct vx_cidr *allow, *node;
	size_t nallow, nnode;
	char lit[INET6_ADDRSTRLEN];

	if (why && whylen)
		why[0] = '\0';
	if (family != AF_INET && family != AF_INET6) {
		if (why && whylen)
			snprintf(why, whylen, "address family %d is not IPv4 or IPv6", family);
		return false;
	}
	memcpy(a.b, addr, family == AF_INET ? 4 : 16);
	inet_ntop(family, addr, lit, sizeof(lit));
	/* ::ffff:127.0.0.1 connects to 127.0.0.1: judge it as the IPv4 address it is (as vx_parse_addr does). */
	if (family == AF_INET6 && memcmp(a.b, mapped, sizeof(mapped)) == 0) {
		memmove(a.b, a.b + 12, 4);
		memset(a.b + 4, 0, 12);
		a.family = AF_INET;
	}
	allow = policy_cidrs(p ? p->allow_cidrs : NULL, p ? p->nallow_cidrs : 0, &nallow);
	node = policy_cidrs(p ? p->node_addrs : NULL, p ? p->nnode_addrs : 0, &nnode);
	if (!allow || !node) {	/* out of memory: refuse rather than widen */
		free(allow);
		free(node);
		if (why && whylen)
			snprintf(why, whylen, "out of memory judging %s", lit);
		return false;
	}
	r = ssrf_refusal(allow, nallow, node, nnode, &a);
	free(allow);
	free(node);
	if (!r)
		return true;
	if (why && whylen) {
		if (r->text)
			snprintf(why, whylen,
				 "%s is %s (%s), refused by kbackend's SSRF guard; allow it with --allow-endpoint %s/%d",
				 lit, r->what, r->text, lit, family == AF_INET ? 32 : 128);
		else
			snprintf(why, whylen,
				 "%s is %s, refused by kbackend's SSRF guard; allow it with --allow-endpoint %s/%d", lit,
				 r->what, lit, family == AF_INET ? 32 : 128);
	}
	return false;
}

/* Names every resolver maps to loopback (RFC 6761 and the usual /etc/hosts entries). */
static bool loopback_name(const char *h)
{
	static const char *const names[] = {
		"localhost", "localhost.localdomain", "localhost4", "localhost4.localdomain4", "localhost6",
		"localhost6.localdomain6", "ip6-localhost", "ip6-loopback",
	};
	size_t n = strlen(h);

	if (n && h[n - 1] == '.')
		n--;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(h, names[i], n) == 0)
			return true;
	/* RFC 6761 6.3: every name under .localhost is loopback too. */
	return n > 10 && strncasecmp(h + n - 10, ".localhost", 10) == 0;
}

/*
 * The Backend CRD's hostname patterns (api/v1alpha1/backend_types.go): an fqdn
 * may end in the root dot, an endpoint's hostname may not. Neither limits a
 * label to 63 characters, and neither does Envoy Gateway's translator.
 */
#define FQDN_PATTERN "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\.?$"
#define HOST_PATTERN "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

/*
 * The CRD's ip.address pattern. It refuses forms inet_pton takes (v4-mapped
 * "::ffff:a.b.c.d", "::1", "2001:db8::1:2:3") and admits some it does not
 * ("010.0.0.1", "1:2"), which Envoy Gateway's translator then refuses.
 */
#define IP_PATTERN                                                                                         \
	"^((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)$|^(([0-9a-fA-F]{1,4}:){1,7}" \
	"[0-9a-fA-F]{1,4}|::|(([0-9a-fA-F]{1,4}:){0,5})?(:[0-9a-fA-F]{1,4}){1,2})$"

/* The Backend CRD's unix.path CEL rule (size() counts characters) and what kbackend's bridge can hold. */
#define UNIX_MAX_CHARS 108
#define UNIX_MAX_BYTES (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/*
 * The CRD patterns are a handful of constants, checked once per field of every
 * object: each is compiled once and kept (compiling one per check made
 * validation of 10,000 Backends take 5 s). The lock covers only the cache.
 */
bool vx_matches(const char *pattern, const char *s)
{
	static struct {
		const char *pattern;
		regex_t re;
	} cache[16];
	static size_t ncache;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	regex_t *re = NULL;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < ncache && !re; i++)
		if (strcmp(cache[i].pattern, pattern) == 0)
			re = &cache[i].re;
	if (!re) {
		if (ncache == sizeof(cache) / sizeof(cache[0]) ||
		    regcomp(&cache[ncache].re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
			abort();	/* the patterns are a few constants */
		cache[ncache].pattern = pattern;
		re = &cache[ncache++].re;
	}
	pthread_mutex_unlock(&lock);
	return regexec(re, s, 0, NULL, 0) == 0;
}

void vx_crd_string(struct vx_bjudge *j, const char *path, const char *s, size_t minlen, size_t maxlen,
		   const char *pattern)
{
	if (strlen(s) > maxlen)
		vx_crd(j, path, "Too long: may not be more than %zu bytes", maxlen);
	else if (strlen(s) < minlen)
		vx_crd(j, path, "Invalid value: \"%s\": %s in body should be at least %zu chars long", s, path, minlen);
	else if (pattern && !vx_matches(pattern, s))
		vx_crd(j, path, "Invalid value: \"%s\": %s in body should match '%s'", s, path, pattern);
}

/* Characters (UTF-8 code points), as CEL's size() counts them on a string. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/*
 * Envoy Gateway's validateHostname (internal/gatewayapi/backend.go) on a name
 * the CRD admitted, so its DNS-1123 check cannot fail here. kbackend is never
 * the Host infrastructure, where a single label would pass. NULL: fine.
 */
static const char *hostname_refusal(struct kb_model *m, const char *h)
{
	uint8_t b[16];

	if (!strchr(h, '.'))
		return kb_sprintf(&m->arena, "hostname %s should be a domain with at least two segments separated by dots", h);
	if (inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1)
		return kb_sprintf(&m->arena, "hostname %s is an IP address", h);
	return NULL;
}

/*
 * An endpoint's field paths, made in the caller's buffer: they are needed only
 * when a diagnostic copies them, and in the model's arena they cost 12 MB of
 * dead text per 10,000 Backends judged.
 */
#define EP_PATH_LEN 512

static const char *ep_addr_path(char *buf, const struct kb_endpoint *ep)
{
	const char *sub = ep->type == KB_EP_IP ? "ip" : ep->type == KB_EP_FQDN ? "fqdn" : "unix";
	const char *leaf = ep->type == KB_EP_IP ? ".address" : ep->type == KB_EP_FQDN ? ".hostname" : ".path";

	snprintf(buf, EP_PATH_LEN, "%s.%s%s", ep->path, sub, ep->seed_shape ? "" : leaf);
	return buf;
}

static const char *ep_port_path(char *buf, const struct kb_endpoint *ep)
{
	if (ep->seed_shape)
		snprintf(buf, EP_PATH_LEN, "%s.port", ep->path);
	else
		snprintf(buf, EP_PATH_LEN, "%s.%s.port", ep->path, ep->type == KB_EP_IP ? "ip" : "fqdn");
	return buf;
}

static void crd_endpoint(struct vx_bjudge *j, const struct kb_endpoint *ep)
{
	struct kb_model *m = j->c->m;
	unsigned n = __builtin_popcount(ep->present & (KB_EP_HAS_IP | KB_EP_HAS_FQDN | KB_EP_HAS_UNIX));
	char abuf[EP_PATH_LEN], pbuf[EP_PATH_LEN];
	const char *apath, *ppath;

	if (ep->hostname)
		vx_crd_string(j, kb_sprintf(&m->arena, "%s.hostname", ep->path), ep->hostname, 1, 253, HOST_PATTERN);
	if (n == 0) {
		vx_crd(j, ep->path, "Invalid value: \"object\": one of fqdn, ip or unix must be specified");
		return;
	}
	if (n > 1) {
		vx_crd(j, ep->path, "Invalid value: \"object\": only one of fqdn, ip or unix can be specified");
		return;
	}
	apath = ep_addr_path(abuf, ep);
	if (ep->type == KB_EP_UNIX) {
		/* Required, but "" is admitted: the CRD has no minLength (kbackend refuses it later). */
		if (!ep->address)
			vx_crd(j, apath, "Required value");
		else if (utf8_chars(ep->address) > UNIX_MAX_CHARS)
			vx_crd(j, apath, "Invalid value: \"string\": unix domain socket path must not exceed 108 characters");
		return;
	}
	ppath = ep_port_path(pbuf, ep);
	if (!ep->has_port)
		vx_crd(j, ppath, "Required value");
	else if (ep->port > 65535)
		vx_crd(j, ppath, "Invalid value: %lld: %s in body should be less than or equal to 65535", (long long)ep->port,
		       ppath);
	else if (ep->port < 0)
		vx_crd(j, ppath, "Invalid value: %lld: %s in body should be greater than or equal to 0", (long long)ep->port,
		       ppath);
	else if (ep->port == 0)
		/* The CRD admits 0, then Envoy Gateway's IR refuses it (ErrDestEndpointPortInvalid); say so up front. */
		vx_crd(j, ppath, "Invalid value: 0: port 0 cannot be connected to; an %s endpoint needs a port in 1..65535",
		       ep->type == KB_EP_IP ? "ip" : "fqdn");
	if (!ep->address)
		vx_crd(j, apath, "Required value");
	else if (ep->type == KB_EP_FQDN)
		vx_crd_string(j, apath, ep->address, 1, 253, FQDN_PATTERN);
	else
		vx_crd_string(j, apath, ep->address, 3, 45, IP_PATTERN);
}

/*
 * appProtocols. Envoy Gateway's enum is the three gateway.envoyproxy.io/
 * values. kbackend also accepts the seed's bare values (DESIGN.md section 1,
 * "both shapes"), although Envoy Gateway's CRD refuses them (cases/19): at L4
 * they change nothing, so refusing a documented spelling would only break
 * seed-shaped manifests. The lead documents this difference.
 */
static const char *const app_protocols[] = {
	"gateway.envoyproxy.io/h2c", "gateway.envoyproxy.io/ws", "gateway.envoyproxy.io/wss",
	"http", "https", "h2c", "h2", "grpc", "grpcs", "tcp", "udp",
};

static void crd_backend(struct vx_bjudge *j)
{
	struct kb_model *m = j->c->m;
	struct kb_backend *b = j->b;
	const struct kb_backend_tls *t = &b->tls;
	bool dr = vx_streq(b->type, "DynamicResolver");
	size_t nfqdn = 0;

	if (!b->has_spec) {
		vx_crd(j, "spec", "Required value");
		return;
	}
	if (b->type && !dr && strcmp(b->type, "Endpoints") != 0)
		vx_crd(j, "spec.type", "Unsupported value: \"%s\": supported values: \"Endpoints\", \"DynamicResolver\"",
		       b->type);
	if (b->has_endpoints && b->nendpoints == 0)
		vx_crd(j, "spec.endpoints", "Invalid value: 0: spec.endpoints in body should have at least 1 items");
	if (b->nendpoints > 256)
		vx_crd(j, "spec.endpoints", "Too many: %zu: must have at most 256 items", b->nendpoints);
	for (size_t i = 0; i < b->nendpoints; i++) {
		crd_endpoint(j, &b->endpoints[i]);
		if (b->endpoints[i].present & KB_EP_HAS_FQDN)
			nfqdn++;
	}
	if (nfqdn && nfqdn < b->nendpoints)
		vx_crd(j, "spec.endpoints",
		       "Invalid value: \"array\": fqdn addresses cannot be mixed with other address types");
	for (size_t i = 0; i < b->napp_protocols; i++) {
		const char *ap = b->app_protocols[i];
		bool ok = false;

		for (size_t k = 0; k < sizeof(app_protocols) / sizeof(app_protocols[0]) && !ok; k++)
			ok = vx_streq(ap, app_protocols[k]);
		if (!ok)
			vx_crd(j, kb_sprintf(&m->arena, "spec.appProtocols[%zu]", i),
			       "Unsupported value: \"%s\": supported values: \"gateway.envoyproxy.io/h2c\", \"gateway.envoyproxy.io/ws\", \"gateway.envoyproxy.io/wss\" (kbackend also accepts the seed's \"http\", \"https\", \"h2c\", \"h2\", \"grpc\", \"grpcs\", \"tcp\", \"udp\")",
			       ap ? ap : "");
	}
	if (dr && (b->has_endpoints || b->nendpoints))
		vx_crd(j, "spec", "Invalid value: \"object\": DynamicResolver type cannot have endpoints specified");
	if (dr && t->present && t->auto_sni)
		vx_crd(j, "spec", "Invalid value: \"object\": DynamicResolver type cannot use autoSNIFromEndpointHostname");
	vx_tls_crd(j);
	if (b->has_fallback_ref) {
		if (!b->fallback_ref_name || !*b->fallback_ref_name)
			vx_crd(j, "spec.fallback.backendRef.name", "Required value");
		if (b->has_fallback_ref_port && (b->fallback_ref_port < 1 || b->fallback_ref_port > 65535))
			vx_crd(j, "spec.fallback.backendRef.port",
			       "Invalid value: %lld: spec.fallback.backendRef.port in body should be between 1 and 65535",
			       (long long)b->fallback_ref_port);
	}
}

/*
 * Envoy Gateway's translator (validateBackend), in its order: the tls block,
 * then per endpoint its hostname, then its address. Runs only on a Backend
 * the CRD would have admitted, and before kbackend's own limits, so that
 * whatever Envoy Gateway refuses gets Envoy Gateway's words.
 */
static void eg_translate(struct vx_bjudge *j)
{
	struct kb_model *m = j->c->m;
	struct kb_backend *b = j->b;

	vx_tls_translate(j);
	for (size_t i = 0; i < b->nendpoints; i++) {
		const struct kb_endpoint *ep = &b->endpoints[i];
		char path[EP_PATH_LEN];
		const char *why;
		struct vx_addr a;

		if (ep->hostname && (why = hostname_refusal(m, ep->hostname))) {
			vx_refuse(j, VX_R_INVALID_ADDR, kb_sprintf(&m->arena, "%s.hostname", ep->path), why, NULL);
			continue;
		}
		if (ep->type == KB_EP_FQDN && (why = hostname_refusal(m, ep->address)))
			vx_refuse(j, VX_R_INVALID_ADDR, ep_addr_path(path, ep), why, NULL);
		else if (ep->type == KB_EP_IP && !vx_parse_addr(ep->address, &a))
			/* The pattern admitted it; netip.ParseAddr, like inet_pton, refuses "010.0.0.1" and "1:2". */
			vx_refuse(j, VX_R_INVALID_ADDR, ep_addr_path(path, ep),
				  kb_sprintf(&m->arena, "IP address %s is invalid", ep->address), NULL);
		else if (ep->type == KB_EP_IP)
			ssrf_ip(j, ep_addr_path(path, ep), ep->address, &a, true);
	}
}

/* A unix path Envoy Gateway admits and kbackend cannot serve (README: unix-path-form); NULL: fine. */
static const char *unix_form_refusal(struct kb_model *m, const char *p)
{
	if (p[0] == '@' || p[0] != '/')
		return kb_sprintf(&m->arena,
				  "unix socket path \"%s\" is %s; kbackend reaches sockets only beneath a --unix-dir and refuses this form on purpose (Envoy Gateway admits it)",
				  p, p[0] == '@' ? "abstract" : "relative");
	if (strlen(p) > UNIX_MAX_BYTES)
		return kb_sprintf(&m->arena,
				  "unix socket path %s is %zu bytes long; kbackend's bridge holds a unix path in sun_path, at most %zu bytes, and refuses longer ones on purpose (Envoy Gateway admits up to %d characters)",
				  p, strlen(p), UNIX_MAX_BYTES, UNIX_MAX_CHARS);
	return NULL;
}

/* kbackend's own limits, after Envoy Gateway's rules: L4 only, the SSRF guard, unix paths, seed fallbacks. */
static void kb_limits(struct vx_bjudge *j)
{
	struct vx_ctx *c = j->c;
	struct kb_model *m = c->m;
	struct kb_backend *b = j->b;

	if (vx_streq(b->type, "DynamicResolver"))
		vx_refuse(j, VX_R_UNSUPPORTED, "spec.type",
			  "kbackend steers connections at L4 and cannot route by Host or SNI: type DynamicResolver is not supported",
			  NULL);
	vx_tls_l4(j);
	for (size_t i = 0; i < b->nendpoints; i++) {
		const struct kb_endpoint *ep = &b->endpoints[i];
		char path[EP_PATH_LEN];
		const char *why;
		struct vx_addr a;

		if (ep->type == KB_EP_UNIX) {
			/* Beyond the form, judged where a route uses it: --unix-dir. */
			if ((why = unix_form_refusal(m, ep->address)))
				vx_refuse(j, "UnsupportedAddressType", ep_addr_path(path, ep), why, NULL);
		} else if (ep->type == KB_EP_IP) {
			if (vx_parse_addr(ep->address, &a))
				ssrf_ip(j, ep_addr_path(path, ep), ep->address, &a, false);
		} else if (loopback_name(ep->address)) {
			struct vx_addr lo4 = { .family = AF_INET, .b = { 127, 0, 0, 1 } };
			struct vx_addr lo6 = { .family = AF_INET6, .b = { [15] = 1 } };

			if (allowed(c, &lo4) || allowed(c, &lo6))
				continue;
			vx_refuse(j, VX_R_INVALID_ADDR, ep_addr_path(path, ep),
				  kb_sprintf(&m->arena,
					     "hostname %s resolves to the loopback range, which is only supported when using the Host infrastructure",
					     ep->address),
				  "; kbackend allows it with --allow-endpoint 127.0.0.1/32");
		}
	}
	if (b->has_fallback_ref && b->fallback_ref_name) {
		const char *ns = b->fallback_ref_namespace ? b->fallback_ref_namespace : vx_ns(&b->meta);

		if (strcmp(ns, vx_ns(&b->meta)) == 0 && strcmp(b->fallback_ref_name, b->meta.name ? b->meta.name : "") == 0)
			vx_refuse(j, VX_R_INVALID_REF, "spec.fallback.backendRef", "a Backend cannot be its own fallback", NULL);
		else if (vx_backend_index(c, ns, b->fallback_ref_name) < 0)
			vx_refuse(j, VX_R_INVALID_REF, "spec.fallback.backendRef.name",
				  kb_sprintf(&m->arena, "fallback Backend %s/%s not found in the applied set", ns,
					     b->fallback_ref_name),
				  NULL);
		else if (strcmp(ns, vx_ns(&b->meta)) != 0 &&
			 !vx_grant_allows(m, VX_GROUP_EG, "Backend", vx_ns(&b->meta), VX_GROUP_EG, "Backend", ns,
					  b->fallback_ref_name))
			vx_refuse(j, "RefNotPermitted", "spec.fallback.backendRef.namespace",
				  kb_sprintf(&m->arena,
					     "fallback Backend %s/%s is in another namespace and no ReferenceGrant in %s allows Backend references from %s",
					     ns, b->fallback_ref_name, ns, vx_ns(&b->meta)),
				  NULL);
	}
}

/* Seed-shape fallback chains must end: a -> b -> a would leave no last resort. */
static void fallback_cycles(struct vx_ctx *c)
{
	struct kb_model *m = c->m;

	for (size_t i = 0; i < m->nbackends; i++) {
		struct kb_backend *b = m->backends[i];
		long cur = (long)i;
		char *chain;

		if (!b->has_fallback_ref || c->bv[i].refused || b->meta.skip_judge)
			continue;
		chain = kb_sprintf(&m->arena, "%s/%s", vx_ns(&b->meta), b->meta.name);
		for (size_t step = 0; step <= m->nbackends; step++) {
			struct kb_backend *x = m->backends[cur];
			const char *ns;

			if (!x->has_fallback_ref || !x->fallback_ref_name)
				break;
			ns = x->fallback_ref_namespace ? x->fallback_ref_namespace : vx_ns(&x->meta);
			cur = vx_backend_index(c, ns, x->fallback_ref_name);
			if (cur < 0)
				break;
			chain = kb_sprintf(&m->arena, "%s -> %s/%s", chain, ns, x->fallback_ref_name);
			if ((size_t)cur == i) {
				struct vx_bjudge j = { .c = c, .b = b, .v = &c->bv[i] };

				vx_refuse(&j, VX_R_INVALID_REF, "spec.fallback.backendRef",
					  kb_sprintf(&m->arena, "fallback cycle: %s", chain), NULL);
				break;
			}
		}
	}
}

void vx_backends(struct vx_ctx *c)
{
	struct kb_model *m = c->m;

	for (size_t i = 0; i < m->nbackends; i++) {
		struct vx_bjudge j = { .c = c, .b = m->backends[i], .v = &c->bv[i] };

		if (j.b->meta.skip_judge)
			continue;
		crd_backend(&j);
		if (j.crd_errors)
			continue;
		if (!c->backend_enabled) {
			/* Envoy Gateway's text in the condition; the diagnostic also says how to turn it on. */
			j.v->refused = true;
			j.v->reason = VX_R_UNSUPPORTED;
			j.v->why = NULL;
			kb_diag_add(m, KB_SEV_ERROR, &j.b->meta, NULL,
				    "The Backend was not accepted since Backend is not enabled in Envoy Gateway Config; apply an EnvoyGateway object with extensionApis.enableBackend: true");
			continue;
		}
		eg_translate(&j);
		kb_limits(&j);
	}
	fallback_cycles(c);
	for (size_t i = 0; i < m->nbackends; i++) {
		struct kb_backend *b = m->backends[i];
		struct kb_meta *o = &b->meta;
		const struct vx_bverdict *v = &c->bv[i];

		if (o->skip_judge)
			continue;
		b->v_refused = v->refused;
		b->v_reason = v->reason;
		b->v_why = v->why;

		/*
		 * type Accepted / reason Invalid is Envoy Gateway's documented intent;
		 * its code swaps the two (status/backend.go), and kbackend does not copy the bug.
		 */
		if (!v->refused)
			kb_set_condition(m, o, "Accepted", KB_COND_TRUE, "Accepted", "The Backend was accepted");
		else if (!v->why)
			kb_set_condition(m, o, "Accepted", KB_COND_FALSE, "Invalid",
					 "The Backend was not accepted since Backend is not enabled in Envoy Gateway Config");
		else
			kb_set_condition(m, o, "Accepted", KB_COND_FALSE, "Invalid", "The Backend was not accepted: %s",
					 v->why);
	}
}

int kb_unix_dir_of(char *const *dirs, size_t ndirs, const char *path, size_t *len)
{
	for (size_t i = 0; i < ndirs; i++) {
		const char *d = dirs[i];
		size_t n = d ? strlen(d) : 0;

		while (n > 1 && d[n - 1] == '/')
			n--;	/* "/var/run/" and "/var/run" are the same directory */
		if (n == 0 || d[0] != '/')
			continue;
		if ((n == 1 && path[0] == '/' && path[1]) ||
		    (n > 1 && strncmp(path, d, n) == 0 && path[n] == '/' && path[n + 1])) {
			*len = n == 1 ? 0 : n;
			return (int)i;
		}
	}
	return -1;
}

/*
 * The first component at or below the unix dir (path[0..dirlen)) that is a
 * symlink, as a prefix of path in buf; NULL when none. A component that does
 * not exist yet ends the walk: the socket may come later, and the bridge
 * checks again, without following links, at every connect.
 */
static const char *unix_symlink_component(const char *path, size_t dirlen, char *buf, size_t len)
{
	struct stat st;
	size_t i = dirlen;

	if (strlen(path) >= len)
		return NULL;
	while (path[i]) {
		while (path[i] == '/')
			i++;
		while (path[i] && path[i] != '/')
			i++;
		memcpy(buf, path, i);
		buf[i] = '\0';
		if (lstat(buf, &st))
			return NULL;
		if (S_ISLNK(st.st_mode))
			return buf;
	}
	return NULL;
}

const char *vx_unix_refusal(const struct vx_ctx *c, const char *path)
{
	struct kb_model *m = c->m;
	char buf[PATH_MAX];
	const char *s, *link;
	size_t n;

	/* A ".." component would climb out of an allowed directory after the prefix check. */
	for (s = path; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == path || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return kb_sprintf(&m->arena,
					  "unix socket %s has a \"..\" component; name the socket by a plain path under a --unix-dir",
					  path);
	if (kb_unix_dir_of(c->p->unix_dirs, c->p->nunix_dirs, path, &n) < 0)
		return kb_sprintf(&m->arena,
				  "unix socket %s is not under an allowed sidecar directory; start kbackend with --unix-dir DIR",
				  path);
	/* Anyone who can write in the dir could point a link anywhere: links are never followed there. */
	link = unix_symlink_component(path, n, buf, sizeof(buf));
	if (link)
		return kb_sprintf(&m->arena,
				  "unix socket %s: %s is a symbolic link; sidecar sockets under --unix-dir are reached "
				  "without following links, so name the socket by its real path",
				  path, link);
	return NULL;
}
