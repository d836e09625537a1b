// SPDX-License-Identifier: Apache-2.0
/* Runs the Envoy Gateway case files through manifest + validate and checks kbackend's verdict on every object. */
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

enum pol { P_ENABLED, P_DEFAULT, P_UNIXDIR };
enum verdict { ACCEPT, REFUSE };

struct case_row {
	const char *file;
	enum pol pol;
	const char *kind, *name;
	enum verdict v;
	const char *msg;	/* substring of a condition message or of one of the object's diagnostics */
	const char *reason;	/* when set: some False condition has this reason */
};

#define TLS_L4 "kbackend steers connections at L4 and does not originate TLS: spec.tls is not supported"
#define DR_L4 "kbackend steers connections at L4 and cannot route by Host or SNI: type DynamicResolver is not supported"
#define OK_BE "The Backend was accepted"
#define NO_GW "was not found in the applied set; no frontend is programmed"
#define RESOLVED "Resolved all the Object references for the Route"
#define LOOP "in the loopback range is only supported when using the Host infrastructure"

static const struct case_row rows[] = {
	{ "01-valid-fqdn-single-httproute.yaml", P_ENABLED, "Backend", "ext-api", ACCEPT, OK_BE },
	{ "01-valid-fqdn-single-httproute.yaml", P_ENABLED, "HTTPRoute", "to-ext-api", ACCEPT, "Gateway default/eg " NO_GW },
	{ "03-valid-ipv4.yaml", P_ENABLED, "Backend", "backend-ip", ACCEPT, OK_BE },
	{ "05-valid-unix-socket-in-extproc-policy.yaml", P_ENABLED, "Backend", "extproc-uds", ACCEPT, OK_BE },
	{ "05-valid-unix-socket-in-extproc-policy.yaml", P_ENABLED, "Backend", "ip-uds-static-mix", ACCEPT, OK_BE },
	{ "05-valid-unix-socket-in-extproc-policy.yaml", P_ENABLED, "EnvoyExtensionPolicy", "extproc-over-uds", ACCEPT,
	  "kbackend records EnvoyExtensionPolicy but does not act on it" },
	{ "06-valid-fallback-active-passive.yaml", P_ENABLED, "Backend", "active", ACCEPT, OK_BE },
	{ "06-valid-fallback-active-passive.yaml", P_ENABLED, "Backend", "passive", ACCEPT, OK_BE },
	{ "06-valid-fallback-active-passive.yaml", P_ENABLED, "HTTPRoute", "ha-example", ACCEPT, RESOLVED },
	{ "06-valid-fallback-active-passive.yaml", P_ENABLED, "BackendTrafficPolicy", "passive-health-check", ACCEPT,
	  "Policy has been accepted." },
	{ "07-valid-appprotocols.yaml", P_ENABLED, "Backend", "backend-h2c", ACCEPT, OK_BE },
	{ "07-valid-appprotocols.yaml", P_ENABLED, "Backend", "backend-ws", ACCEPT, OK_BE },
	{ "07-valid-appprotocols.yaml", P_ENABLED, "Backend", "backend-wss", REFUSE, TLS_L4, "Invalid" },
	{ "08-valid-tls-settings.yaml", P_ENABLED, "Backend", "tls-system-ca-auto-sni", REFUSE, TLS_L4 },
	{ "08-valid-tls-settings.yaml", P_ENABLED, "Backend", "tls-custom-ca-fixed-sni", REFUSE, TLS_L4 },
	{ "08-valid-tls-settings.yaml", P_ENABLED, "Backend", "tls-insecure", REFUSE, TLS_L4 },
	{ "08-valid-tls-settings.yaml", P_ENABLED, "Backend", "tls-auto-sni-ip-with-hostname", REFUSE, TLS_L4 },
	{ "10-valid-dynamic-resolver.yaml", P_ENABLED, "Backend", "dfp", REFUSE, DR_L4 },
	{ "10-valid-dynamic-resolver.yaml", P_ENABLED, "Backend", "dfp-tls", REFUSE, DR_L4 },
	{ "12-valid-l4-routes-tcp-udp.yaml", P_ENABLED, "Backend", "coredns-fqdn", ACCEPT, OK_BE },
	{ "12-valid-l4-routes-tcp-udp.yaml", P_ENABLED, "Backend", "tcp-ip", ACCEPT, OK_BE },
	{ "12-valid-l4-routes-tcp-udp.yaml", P_ENABLED, "UDPRoute", "udp-dns", ACCEPT, RESOLVED },
	{ "12-valid-l4-routes-tcp-udp.yaml", P_ENABLED, "TCPRoute", "tcp-backend-ip", ACCEPT,
	  "Gateway default/tcp-gateway " NO_GW },
	{ "14-invalid-crd-endpoint-oneof.yaml", P_ENABLED, "Backend", "no-address", REFUSE,
	  "spec.endpoints[0]: Invalid value: \"object\": one of fqdn, ip or unix must be specified" },
	{ "14-invalid-crd-endpoint-oneof.yaml", P_ENABLED, "Backend", "two-addresses", REFUSE,
	  "spec.endpoints[0]: Invalid value: \"object\": only one of fqdn, ip or unix can be specified" },
	{ "15-invalid-crd-fqdn-mixed-with-ip.yaml", P_ENABLED, "Backend", "fqdn-and-ip", REFUSE,
	  "spec.endpoints: Invalid value: \"array\": fqdn addresses cannot be mixed with other address types" },
	{ "18-invalid-crd-port-range.yaml", P_ENABLED, "Backend", "port-too-big", REFUSE,
	  "spec.endpoints[0].ip.port in body should be less than or equal to 65535" },
	{ "18-invalid-crd-port-range.yaml", P_ENABLED, "Backend", "port-negative", REFUSE,
	  "spec.endpoints[0].fqdn.port in body should be greater than or equal to 0" },
	{ "18-invalid-crd-port-range.yaml", P_ENABLED, "Backend", "port-missing", REFUSE,
	  "spec.endpoints[0].fqdn.port: Required value" },
	{ "18-invalid-crd-port-range.yaml", P_ENABLED, "Backend", "port-zero", REFUSE,
	  "spec.endpoints[0].ip.port: Invalid value: 0: port 0 cannot be connected to" },
	{ "19-invalid-crd-appprotocol-enum.yaml", P_ENABLED, "Backend", "bad-appprotocol", REFUSE,
	  "spec.appProtocols[0]: Unsupported value: \"HTTP7\": supported values: \"gateway.envoyproxy.io/h2c\", "
	  "\"gateway.envoyproxy.io/ws\", \"gateway.envoyproxy.io/wss\"" },
	/* kbackend difference: the seed's bare values are its documented seed shape. */
	{ "19-invalid-crd-appprotocol-enum.yaml", P_ENABLED, "Backend", "bare-h2c", ACCEPT, OK_BE },
	{ "21-invalid-crd-endpoint-count.yaml", P_ENABLED, "Backend", "empty-list", REFUSE,
	  "spec.endpoints in body should have at least 1 items" },
	{ "21-invalid-crd-endpoint-count.yaml", P_ENABLED, "Backend", "too-many", REFUSE,
	  "spec.endpoints: Too many: 257: must have at most 256 items" },
	{ "22-invalid-crd-type-and-dynamic-resolver.yaml", P_ENABLED, "Backend", "bad-type", REFUSE,
	  "spec.type: Unsupported value: \"FOO\": supported values: \"Endpoints\", \"DynamicResolver\"" },
	{ "22-invalid-crd-type-and-dynamic-resolver.yaml", P_ENABLED, "Backend", "dfp-with-endpoints", REFUSE,
	  "DynamicResolver type cannot have endpoints specified" },
	{ "22-invalid-crd-type-and-dynamic-resolver.yaml", P_ENABLED, "Backend", "dfp-auto-sni", REFUSE,
	  "DynamicResolver type cannot use autoSNIFromEndpointHostname" },
	{ "23-invalid-crd-tls-rules.yaml", P_ENABLED, "Backend", "insecure-plus-ca", REFUSE,
	  "must not contain either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is enabled" },
	{ "23-invalid-crd-tls-rules.yaml", P_ENABLED, "Backend", "both-ca-sources", REFUSE,
	  "must not contain both CACertificateRefs and WellKnownCACertificates" },
	{ "23-invalid-crd-tls-rules.yaml", P_ENABLED, "Backend", "sni-and-auto-sni", REFUSE,
	  "sni and autoSNIFromEndpointHostname are mutually exclusive" },
	{ "23-invalid-crd-tls-rules.yaml", P_ENABLED, "Backend", "auto-sni-ip-no-hostname", REFUSE,
	  "when autoSNIFromEndpointHostname is enabled, IP and Unix endpoints must define a hostname" },
	{ "23-invalid-crd-tls-rules.yaml", P_ENABLED, "Backend", "ciphers-with-tls13-min", REFUSE,
	  "setting ciphers has no effect if the minimum possible TLS version is 1.3" },
	{ "24-rejected-loopback-ip.yaml", P_ENABLED, "Backend", "envoy-admin", REFUSE,
	  "The Backend was not accepted: IP address 127.0.0.1 " LOOP, "Invalid" },
	{ "24-rejected-loopback-ip.yaml", P_ENABLED, "Backend", "v6-loopback-long-form", REFUSE,
	  "The Backend was not accepted: IP address 0:0:0:0:0:0:0:1 " LOOP },
	{ "24-rejected-loopback-ip.yaml", P_ENABLED, "HTTPRoute", "admin", REFUSE,
	  "Failed to process route rule 0 backendRef 0: IP address 127.0.0.1 " LOOP ".", "InvalidAddress" },
	{ "26-rejected-tls-without-ca.yaml", P_ENABLED, "Backend", "tls-no-ca", REFUSE, TLS_L4 },
	{ "26-rejected-tls-without-ca.yaml", P_ENABLED, "Backend", "tls-explicit-verify-no-ca", REFUSE, TLS_L4 },
	{ "26-rejected-tls-without-ca.yaml", P_ENABLED, "Backend", "tls-ca-from-policy", REFUSE, TLS_L4 },
	{ "26-rejected-tls-without-ca.yaml", P_ENABLED, "Backend", "tls-ca-policy-wrong-port", REFUSE, TLS_L4 },
	{ "26-rejected-tls-without-ca.yaml", P_ENABLED, "BackendTLSPolicy", "btls-for-tls-ca-from-policy", ACCEPT,
	  "kbackend records BackendTLSPolicy but does not act on it" },
	{ "26-rejected-tls-without-ca.yaml", P_ENABLED, "BackendTLSPolicy", "btls-wrong-port", ACCEPT,
	  "kbackend records BackendTLSPolicy but does not act on it" },
	{ "27-rejected-backend-api-disabled.yaml", P_DEFAULT, "Backend", "backend-ip", REFUSE,
	  "The Backend was not accepted since Backend is not enabled in Envoy Gateway Config", "Invalid" },
	{ "27-rejected-backend-api-disabled.yaml", P_DEFAULT, "HTTPRoute", "httproute-1", REFUSE,
	  "Failed to process route rule 0 backendRef 0: Backend is disabled in Envoy Gateway configuration.",
	  "UnsupportedValue" },
	{ "27-rejected-backend-api-disabled.yaml", P_ENABLED, "Backend", "backend-ip", ACCEPT, OK_BE },
	{ "27-rejected-backend-api-disabled.yaml", P_ENABLED, "HTTPRoute", "httproute-1", ACCEPT, RESOLVED },
	{ "28-route-unix-socket-rejected.yaml", P_ENABLED, "Backend", "backend-uds", ACCEPT, OK_BE },
	{ "28-route-unix-socket-rejected.yaml", P_ENABLED, "HTTPRoute", "to-uds", REFUSE,
	  "Failed to process route rule 0 backendRef 0: unix socket /var/run/backend.sock is not under an allowed "
	  "sidecar directory; start kbackend with --unix-dir DIR", "UnsupportedAddressType" },
	{ "28-route-unix-socket-rejected.yaml", P_UNIXDIR, "Backend", "backend-uds", ACCEPT, OK_BE },
	{ "28-route-unix-socket-rejected.yaml", P_UNIXDIR, "HTTPRoute", "to-uds", ACCEPT, RESOLVED },
	{ "30-valid-policy-backendref-fallback.yaml", P_ENABLED, "Backend", "ext-proc-primary", ACCEPT, OK_BE },
	{ "30-valid-policy-backendref-fallback.yaml", P_ENABLED, "Backend", "ext-proc-standby", ACCEPT, OK_BE },
	{ "30-valid-policy-backendref-fallback.yaml", P_ENABLED, "EnvoyExtensionPolicy", "extproc-with-standby", ACCEPT,
	  "kbackend records EnvoyExtensionPolicy but does not act on it" },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* The model being checked; the teardown frees it when an assertion jumps out mid-file. */
static struct kb_model cur;
static bool cur_live;

static void set_policy(struct kb_policy *p, enum pol pol)
{
	static char *unix_dirs[] = { "/var/run" };

	kb_policy_init(p);
	if (pol != P_DEFAULT)
		p->enable_backend = 1;
	if (pol == P_UNIXDIR) {
		p->unix_dirs = unix_dirs;
		p->nunix_dirs = 1;
	}
}

static const struct kb_meta *find(const struct kb_model *m, const char *kind, const char *name)
{
	for (size_t i = 0; i < m->nobjects; i++)
		if (m->objects[i]->kind == kb_kind_from_name(kind) && m->objects[i]->name &&
		    strcmp(m->objects[i]->name, name) == 0)
			return m->objects[i];
	return NULL;
}

static bool conds_have(const struct kb_condition *c, size_t n, const char *msg, const char *reason, bool *reason_seen)
{
	bool hit = false;

	for (size_t i = 0; i < n; i++) {
		if (c[i].message && strstr(c[i].message, msg))
			hit = true;
		if (reason && c[i].status == KB_COND_FALSE && strcmp(c[i].reason, reason) == 0)
			*reason_seen = true;
	}
	return hit;
}

/* Judge every row of `file` under `pol`; returns the number of rows checked. */
static size_t check_file(const char *dir, const char *file, enum pol pol)
{
	char path[PATH_MAX], errs[16384], all[16384];
	struct kb_model *m = &cur;
	struct kb_policy p;
	size_t checked = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	kb_model_init(m);
	cur_live = true;
	if (kb_manifest_load_path(m, path) != 0 || m->nerrors) {
		tu_diags(m, all, sizeof(all));
		fail_msg("%s does not parse:\n%s", path, all);
	}
	set_policy(&p, pol);
	kb_validate(m, &p);
	for (size_t i = 0; i < NROWS; i++) {
		const struct case_row *r = &rows[i];
		const struct kb_meta *o;
		bool hit, reason_seen = false;

		if (strcmp(r->file, file) != 0 || r->pol != pol)
			continue;
		o = find(m, r->kind, r->name);
		if (!o)
			fail_msg("%s: no %s %s", path, r->kind, r->name);
		tu_object_diags(m, o, true, errs, sizeof(errs));
		tu_object_diags(m, o, false, all, sizeof(all));
		if (kb_object_refused(o) != (r->v == REFUSE))
			fail_msg("%s: %s %s: want %s, got %s; diagnostics:\n%s", path, r->kind, r->name,
				 r->v == REFUSE ? "refused" : "accepted", kb_object_refused(o) ? "refused" : "accepted",
				 all);
		/* An accepted object has no error of its own; a refused one names why. */
		if (r->v == ACCEPT && errs[0])
			fail_msg("%s: %s %s is accepted but has errors:\n%s", path, r->kind, r->name, errs);
		if (r->v == REFUSE && !errs[0])
			fail_msg("%s: %s %s is refused without an error diagnostic", path, r->kind, r->name);
		hit = conds_have(o->conds, o->nconds, r->msg, r->reason, &reason_seen) || strstr(all, r->msg);
		for (size_t k = 0; k < o->nparents; k++)
			hit |= conds_have(o->parents[k].conds, o->parents[k].nconds, r->msg, r->reason, &reason_seen);
		if (!hit)
			fail_msg("%s: %s %s: no condition or diagnostic contains \"%s\"; diagnostics:\n%s", path, r->kind,
				 r->name, r->msg, all);
		if (r->reason && !reason_seen)
			fail_msg("%s: %s %s: no False condition with reason %s", path, r->kind, r->name, r->reason);
		checked++;
	}
	/* Every object of the file has a row, so a new document cannot slip through unjudged. */
	for (size_t i = 0; i < m->nobjects; i++) {
		bool listed = false;

		for (size_t k = 0; k < NROWS && !listed; k++)
			listed = strcmp(rows[k].file, file) == 0 && rows[k].pol == pol &&
				 m->objects[i]->kind == kb_kind_from_name(rows[k].kind) &&
				 strcmp(rows[k].name, m->objects[i]->name) == 0;
		if (!listed)
			fail_msg("%s: %s %s has no row in the table", path, kb_kind_name(m->objects[i]->kind),
				 m->objects[i]->name);
	}
	kb_model_free(m);
	cur_live = false;
	return checked;
}

static void check_dir(const char *dir)
{
	size_t checked = 0, files = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	assert_non_null(d);
	/* Every case file in the directory has rows; then every row is checked. */
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		bool listed = false;

		if (n < 6 || strcmp(de->d_name + n - 5, ".yaml") != 0)
			continue;
		for (size_t k = 0; k < NROWS && !listed; k++)
			listed = strcmp(rows[k].file, de->d_name) == 0;
		if (!listed)
			fail_msg("%s/%s has no rows in the table", dir, de->d_name);
		files++;
	}
	closedir(d);
	for (size_t i = 0; i < NROWS; i++) {
		bool first = true;

		for (size_t k = 0; k < i && first; k++)
			first = !(strcmp(rows[k].file, rows[i].file) == 0 && rows[k].pol == rows[i].pol);
		if (first)
			checked += check_file(dir, rows[i].file, rows[i].pol);
	}
	assert_int_equal(checked, NROWS);
	assert_true(files >= 20);
}

static void test_fixture_cases(void **state)
{
	char dir[PATH_MAX];

	if (!tu_find_dir("tests/fixtures/cases", dir, sizeof(dir)))
		fail_msg("tests/fixtures/cases not found (run from the repository)");
	check_dir(dir);
}

/*
 * The shared Envoy Gateway cases, when this checkout sits next to them; a
 * lone clone skips. CI lays shared/ beside its clone, so there it must run.
 */
static void test_shared_cases(void **state)
{
	char dir[PATH_MAX];
	const char *env = getenv("KB_SHARED_CASES"), *ci = getenv("CI");

	if (env && *env)
		snprintf(dir, sizeof(dir), "%s", env);
	else if (!tu_find_dir("../shared/cases", dir, sizeof(dir))) {
		if (ci && *ci && strcmp(ci, "false") != 0 && strcmp(ci, "0") != 0)
			fail_msg("../shared/cases not found, and CI runs every test");
		skip();
	}
	check_dir(dir);
}

static int teardown(void **state)
{
	if (cur_live)
		kb_model_free(&cur);
	cur_live = false;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_fixture_cases, teardown),
		cmocka_unit_test_teardown(test_shared_cases, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
