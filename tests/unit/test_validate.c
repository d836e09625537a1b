// SPDX-License-Identifier: Apache-2.0
/* Table-driven tests of validate: every refusal rule with its exact located message, and the policy flags that allow. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

enum en { EN_ON, EN_FROM_CONFIG, EN_OFF };

struct pol {
	enum en enable;
	const char *unix_dir;	/* --unix-dir */
	const char *allow;	/* --allow-endpoint */
	const char *node;	/* a node address */
};

struct bad {
	const char *name;
	const char *yaml;
	struct pol pol;
	const char *want;	/* "test.yaml:L:C: Kind ns/name: path: message" (a substring of one error) */
};

struct good {
	const char *name;
	const char *yaml;
	struct pol pol;
	const char *want;	/* NULL, or a substring of some condition message or diagnostic (warnings included) */
};

/* ---- YAML building blocks; line numbers in the comments are what the `want` strings rely on. */

/* Lines 1-6; the spec's fields start on line 7. */
#define HDRNS(api, kind, n, ns) "apiVersion: " api "\nkind: " kind "\nmetadata:\n  name: " n "\n  namespace: " ns "\nspec:\n"
#define HDR(api, kind, n) HDRNS(api, kind, n, "default")
#define BE(n) HDR("gateway.envoyproxy.io/v1alpha1", "Backend", n)
#define HR(n) HDR("gateway.networking.k8s.io/v1", "HTTPRoute", n)
#define TCPR(n) HDR("gateway.networking.k8s.io/v1alpha2", "TCPRoute", n)
#define BTP(n) HDR("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy", n)
#define GWH(n) HDR("gateway.networking.k8s.io/v1", "Gateway", n)

/* One ip endpoint: "  endpoints:" on line 7, "- ip:" 8, address 9 (col 18), port 10 (col 15). */
#define EPS_IP(a, p) "  endpoints:\n    - ip:\n        address: " a "\n        port: " p "\n"
#define EPS_FQDN(h, p) "  endpoints:\n    - fqdn:\n        hostname: " h "\n        port: " p "\n"
#define EPS_UNIX(path) "  endpoints:\n    - unix:\n        path: " path "\n"

/* A route's parent (lines 7-8) and one rule with one Backend ref (lines 9-13; the ref item is 11:11). */
#define TO_GW "  parentRefs:\n    - name: gw\n"
#define RULE(b) "  rules:\n    - backendRefs:\n        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: " b "\n"
#define REF(b) "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: " b "\n"

/* A Gateway with one address and HTTP/80, TCP/9000, UDP/53 listeners, and two good Backends. */
#define GW "---\n" GWH("gw") "  addresses:\n    - value: 198.18.0.1\n  listeners:\n" \
	"    - name: http\n      port: 80\n      protocol: HTTP\n"                       \
	"    - name: tcp\n      port: 9000\n      protocol: TCP\n"                        \
	"    - name: udp\n      port: 53\n      protocol: UDP\n"
#define B1 "---\n" BE("b1") EPS_IP("198.51.100.1", "8080")
#define B2 "---\n" BE("b2") EPS_IP("198.51.100.2", "8080")
#define UDS(n, path) "---\n" BE(n) EPS_UNIX(path)

/* The CRD's patterns for fqdn.hostname and an endpoint's hostname, as kubectl prints them. */
#define FQDN_RE "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\.?$"
#define HOST_RE "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
/* DNS labels of 60..63 characters, to build names near the 253 limit. */
#define L60 "a23456789012345678901234567890123456789012345678901234567890"
#define L61 L60 "1"
#define L62 L60 "12"
#define L63 L60 "123"

/* The CRD's ip.address pattern (api/v1alpha1/backend_types.go), as kubectl prints it. */
#define IP_RE "^((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)$|^(([0-9a-fA-F]{1,4}:){1,7}[0-9a-fA-F]{1,4}|::|(([0-9a-fA-F]{1,4}:){0,5})?(:[0-9a-fA-F]{1,4}){1,2})$"
/* Gateway API's PreciseHostname pattern (BackendTLSSettings.sni) and WellKnownCACertificatesType pattern. */
#define SNI_RE HOST_RE
#define WKCA_RE "^(System|([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]))$"
/* kbackend's own refusal of unix path forms that Envoy Gateway admits (README: unix-path-form). */
#define UNIX_FORM "; kbackend reaches sockets only beneath a --unix-dir and refuses this form on purpose (Envoy Gateway admits it)"
/* A unix path of 100 characters; with 8 more it is at Envoy Gateway's limit. */
#define P100 "/run/" L60 "01234567890123456789012345678901234"
#define TLS_L4 "kbackend steers connections at L4 and does not originate TLS"
#define BTLS(n, target) "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata:\n  name: " n "\n  namespace: default\nspec:\n" \
	"  targetRefs:\n    - group: gateway.envoyproxy.io\n      kind: Backend\n      name: " target "\n" \
	"  validation:\n    wellKnownCACertificates: System\n    hostname: a.example.com\n"

#define LOOP "in the loopback range is only supported when using the Host infrastructure"
#define SSRF "refused by kbackend's SSRF guard; allow it with --allow-endpoint"

static const struct bad bad[] = {
	/* -- Backend: CRD / CEL layer -- */
	{ "no address", BE("x") "  endpoints:\n    - hostname: a.example.com\n", {},
	  "test.yaml:8:7: Backend default/x: spec.endpoints[0]: Invalid value: \"object\": one of fqdn, ip or unix must be specified" },
	{ "two addresses", BE("x") "  endpoints:\n    - ip: {address: 198.51.100.1, port: 80}\n      unix: {path: /run/a.sock}\n", {},
	  "test.yaml:8:7: Backend default/x: spec.endpoints[0]: Invalid value: \"object\": only one of fqdn, ip or unix can be specified" },
	{ "fqdn mixed with ip", BE("x") EPS_FQDN("a.example.com", "80") "    - ip: {address: 198.51.100.1, port: 80}\n", {},
	  "test.yaml:7:3: Backend default/x: spec.endpoints: Invalid value: \"array\": fqdn addresses cannot be mixed with other address types" },
	{ "port too big", BE("x") EPS_IP("198.51.100.1", "70000"), {},
	  "test.yaml:10:15: Backend default/x: spec.endpoints[0].ip.port: Invalid value: 70000: spec.endpoints[0].ip.port in body should be less than or equal to 65535" },
	{ "port negative", BE("x") EPS_FQDN("a.example.com", "-1"), {},
	  "test.yaml:10:15: Backend default/x: spec.endpoints[0].fqdn.port: Invalid value: -1: spec.endpoints[0].fqdn.port in body should be greater than or equal to 0" },
	{ "seed-shape port too big", BE("x") "  endpoints:\n    - fqdn: a.example.com\n      port: 70000\n", {},
	  "test.yaml:9:13: Backend default/x: spec.endpoints[0].port: Invalid value: 70000: spec.endpoints[0].port in body should be less than or equal to 65535" },
	{ "seed-shape bad IP", BE("x") "  endpoints:\n    - ip: 10.0.0.300\n      port: 80\n", {},
	  "test.yaml:8:11: Backend default/x: spec.endpoints[0].ip: Invalid value: \"10.0.0.300\": spec.endpoints[0].ip in body should match '" IP_RE "'" },
	/* The CRD's ip.address pattern and lengths refuse forms that inet_pton takes. */
	{ "v4-mapped IPv6", BE("x") EPS_IP("\"::ffff:198.51.100.1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: Invalid value: \"::ffff:198.51.100.1\": spec.endpoints[0].ip.address in body should match '" IP_RE "'" },
	{ "compressed IPv6 the pattern refuses", BE("x") EPS_IP("\"2001:db8::1:2:3\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: Invalid value: \"2001:db8::1:2:3\": spec.endpoints[0].ip.address in body should match '" IP_RE "'" },
	{ "loopback ::1 fails the pattern", BE("x") EPS_IP("\"::1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: Invalid value: \"::1\": spec.endpoints[0].ip.address in body should match '" IP_RE "'" },
	{ "IP shorter than 3", BE("x") EPS_IP("\"::\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: Invalid value: \"::\": spec.endpoints[0].ip.address in body should be at least 3 chars long" },
	{ "IP longer than 45", BE("x") EPS_IP("\"0000:0000:0000:0000:0000:0000:0000:0000:0000:0\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: Too long: may not be more than 45 bytes" },
	/* The pattern admits them; Envoy Gateway's translator (netip.ParseAddr) does not. */
	{ "leading-zero IPv4", BE("x") EPS_IP("010.0.0.1", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 010.0.0.1 is invalid" },
	{ "IPv6 of two groups", BE("x") EPS_IP("\"1:2\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 1:2 is invalid" },
	{ "port missing", BE("x") "  endpoints:\n    - ip:\n        address: 198.51.100.1\n", {},
	  "test.yaml:8:7: Backend default/x: spec.endpoints[0].ip.port: Required value" },
	{ "port zero", BE("x") EPS_FQDN("a.example.com", "0"), {},
	  "test.yaml:10:15: Backend default/x: spec.endpoints[0].fqdn.port: Invalid value: 0: port 0 cannot be connected to; an fqdn endpoint needs a port in 1..65535" },
	/* The CRD requires spec (api/v1alpha1/backend_types.go: `json:"spec"`, no omitempty). */
	{ "Backend without spec", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: x\n  namespace: default\n", {},
	  "test.yaml:1:1: Backend default/x: spec: Required value" },
	{ "Backend with a null spec", BE("x"), {}, "test.yaml:6:6: Backend default/x: spec: Required value" },
	{ "empty endpoints", BE("x") "  endpoints: []\n", {},
	  "test.yaml:7:3: Backend default/x: spec.endpoints: Invalid value: 0: spec.endpoints in body should have at least 1 items" },
	{ "not an IP", BE("x") EPS_IP("198.51.100.1", "80") "    - ip:\n        address: 10.0.0.300\n        port: 80\n", {},
	  "test.yaml:12:18: Backend default/x: spec.endpoints[1].ip.address: Invalid value: \"10.0.0.300\": spec.endpoints[1].ip.address in body should match '" IP_RE "'" },
	/* The CRD's hostname patterns and MaxLength (api/v1alpha1/backend_types.go), in kubectl's words. */
	{ "bad DNS name", BE("x") EPS_FQDN("bad_host.example.com", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: Invalid value: \"bad_host.example.com\": spec.endpoints[0].fqdn.hostname in body should match '" FQDN_RE "'" },
	{ "DNS label starts with -", BE("x") EPS_FQDN("-a.example.com", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: Invalid value: \"-a.example.com\": spec.endpoints[0].fqdn.hostname in body should match '" FQDN_RE "'" },
	{ "FQDN in uppercase", BE("x") EPS_FQDN("API.example.com", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: Invalid value: \"API.example.com\": spec.endpoints[0].fqdn.hostname in body should match '" FQDN_RE "'" },
	{ "FQDN of 254 characters", BE("x") EPS_FQDN(L63 "." L63 "." L63 "." L62 ".a", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: Too long: may not be more than 253 bytes" },
	{ "seed-shape FQDN in uppercase", BE("x") "  endpoints:\n    - fqdn: Api.example.com\n      port: 80\n", {},
	  "test.yaml:8:13: Backend default/x: spec.endpoints[0].fqdn: Invalid value: \"Api.example.com\": spec.endpoints[0].fqdn in body should match '" FQDN_RE "'" },
	{ "endpoint hostname in uppercase", BE("x") EPS_IP("198.51.100.1", "80") "      hostname: A.example.com\n", {},
	  "test.yaml:11:17: Backend default/x: spec.endpoints[0].hostname: Invalid value: \"A.example.com\": spec.endpoints[0].hostname in body should match '" HOST_RE "'" },
	{ "endpoint hostname with a trailing dot", BE("x") EPS_IP("198.51.100.1", "80") "      hostname: a.example.com.\n", {},
	  "test.yaml:11:17: Backend default/x: spec.endpoints[0].hostname: Invalid value: \"a.example.com.\": spec.endpoints[0].hostname in body should match '" HOST_RE "'" },
	{ "endpoint hostname empty", BE("x") EPS_IP("198.51.100.1", "80") "      hostname: \"\"\n", {},
	  "test.yaml:11:17: Backend default/x: spec.endpoints[0].hostname: Invalid value: \"\": spec.endpoints[0].hostname in body should be at least 1 chars long" },
	{ "endpoint hostname of 254 characters", BE("x") EPS_IP("198.51.100.1", "80") "      hostname: " L63 "." L63 "." L63 "." L62 ".a\n", {},
	  "test.yaml:11:17: Backend default/x: spec.endpoints[0].hostname: Too long: may not be more than 253 bytes" },
	/* The CRD's CEL rule counts characters: 109 refused, 108 admitted (below). */
	{ "unix path of 109 characters", BE("x") EPS_UNIX(P100 "abcd.sock"), {},
	  "test.yaml:9:15: Backend default/x: spec.endpoints[0].unix.path: Invalid value: \"string\": unix domain socket path must not exceed 108 characters" },
	{ "unix path of 108 characters and 110 bytes", BE("x") EPS_UNIX("/run/\u00e9\u00e9" L60 "012345678901234567890123456789012345.sock"), {},
	  "test.yaml:9:15: Backend default/x: spec.endpoints[0].unix.path: unix socket path /run/\u00e9\u00e9" L60 "012345678901234567890123456789012345.sock is 110 bytes long; kbackend's bridge" },
	/* Envoy Gateway admits these; kbackend refuses them on purpose. */
	{ "unix path relative", BE("x") EPS_UNIX("run/a.sock"), {},
	  "test.yaml:9:15: Backend default/x: spec.endpoints[0].unix.path: unix socket path \"run/a.sock\" is relative" UNIX_FORM },
	{ "unix path abstract", BE("x") EPS_UNIX("\"@sidecar\""), {},
	  "test.yaml:9:15: Backend default/x: spec.endpoints[0].unix.path: unix socket path \"@sidecar\" is abstract" UNIX_FORM },
	{ "unix path empty", BE("x") EPS_UNIX("\"\""), {},
	  "test.yaml:9:15: Backend default/x: spec.endpoints[0].unix.path: unix socket path \"\" is relative" UNIX_FORM },
	{ "unix path of 108 bytes", BE("x") EPS_UNIX(P100 "abc.sock"), {},
	  "test.yaml:9:15: Backend default/x: spec.endpoints[0].unix.path: unix socket path " P100 "abc.sock is 108 bytes long; "
	  "kbackend's bridge holds a unix path in sun_path, at most 107 bytes, and refuses longer ones on purpose (Envoy Gateway admits up to 108 characters)" },
	{ "type enum", BE("x") "  type: FOO\n", {},
	  "test.yaml:7:9: Backend default/x: spec.type: Unsupported value: \"FOO\": supported values: \"Endpoints\", \"DynamicResolver\"" },
	{ "DynamicResolver with endpoints", BE("x") "  type: DynamicResolver\n" EPS_FQDN("a.example.com", "443"), {},
	  "test.yaml:6:1: Backend default/x: spec: Invalid value: \"object\": DynamicResolver type cannot have endpoints specified" },
	{ "DynamicResolver autoSNI", BE("x") "  type: DynamicResolver\n  tls:\n    autoSNIFromEndpointHostname: true\n", {},
	  "test.yaml:6:1: Backend default/x: spec: Invalid value: \"object\": DynamicResolver type cannot use autoSNIFromEndpointHostname" },
	{ "tls insecure with CA", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    insecureSkipVerify: true\n    wellKnownCACertificates: System\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: Invalid value: \"object\": must not contain either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is enabled" },
	{ "tls both CA sources", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n    caCertificateRefs:\n      - {group: \"\", kind: ConfigMap, name: ca}\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: Invalid value: \"object\": must not contain both CACertificateRefs and WellKnownCACertificates" },
	{ "tls sni and autoSNI", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    sni: a.example.com\n    autoSNIFromEndpointHostname: true\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: Invalid value: \"object\": sni and autoSNIFromEndpointHostname are mutually exclusive" },
	{ "tls autoSNI ip without hostname", BE("x") EPS_IP("198.51.100.1", "443") "  tls:\n    autoSNIFromEndpointHostname: true\n    wellKnownCACertificates: System\n", {},
	  "test.yaml:6:1: Backend default/x: spec: Invalid value: \"object\": when autoSNIFromEndpointHostname is enabled, IP and Unix endpoints must define a hostname" },
	{ "tls ciphers with 1.3", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n    minVersion: \"1.3\"\n    ciphers: [ECDHE-RSA-AES128-GCM-SHA256]\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: Invalid value: \"object\": setting ciphers has no effect if the minimum possible TLS version is 1.3" },
	{ "tls well-known CA pattern", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: Mozilla\n", {},
	  "test.yaml:12:30: Backend default/x: spec.tls.wellKnownCACertificates: Invalid value: \"Mozilla\": spec.tls.wellKnownCACertificates in body should match '" WKCA_RE "'" },
	{ "tls minVersion above maxVersion", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n    minVersion: \"1.3\"\n    maxVersion: \"1.2\"\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: Invalid value: \"object\": minVersion must be smaller or equal to maxVersion" },
	{ "tls maxVersion below the default minimum", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n    maxVersion: \"1.1\"\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: Invalid value: \"object\": minVersion must be smaller or equal to maxVersion" },
	{ "tls version enum", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n    minVersion: \"1.4\"\n", {},
	  "test.yaml:13:17: Backend default/x: spec.tls.minVersion: Unsupported value: \"1.4\": supported values: \"Auto\", \"1.0\", \"1.1\", \"1.2\", \"1.3\"" },
	{ "tls sni pattern", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n    sni: Bad_SNI.example.com\n", {},
	  "test.yaml:13:10: Backend default/x: spec.tls.sni: Invalid value: \"Bad_SNI.example.com\": spec.tls.sni in body should match '" SNI_RE "'" },
	{ "tls too many CA refs", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    caCertificateRefs:\n"
	  "      - {group: \"\", kind: ConfigMap, name: a}\n      - {group: \"\", kind: ConfigMap, name: b}\n      - {group: \"\", kind: ConfigMap, name: c}\n"
	  "      - {group: \"\", kind: ConfigMap, name: d}\n      - {group: \"\", kind: ConfigMap, name: e}\n      - {group: \"\", kind: ConfigMap, name: f}\n"
	  "      - {group: \"\", kind: ConfigMap, name: g}\n      - {group: \"\", kind: ConfigMap, name: h}\n      - {group: \"\", kind: ConfigMap, name: i}\n", {},
	  "test.yaml:12:5: Backend default/x: spec.tls.caCertificateRefs: Too many: 9: must have at most 8 items" },
	/* Gateway API's LocalObjectReference and SecretObjectReference, and the fingerprint enum. */
	{ "tls CA ref without a group", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    caCertificateRefs:\n      - {kind: ConfigMap, name: ca}\n", {},
	  "test.yaml:13:9: Backend default/x: spec.tls.caCertificateRefs[0].group: Required value" },
	{ "tls CA ref kind pattern", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    caCertificateRefs:\n      - {group: \"\", kind: Config_Map, name: ca}\n", {},
	  "Backend default/x: spec.tls.caCertificateRefs[0].kind: Invalid value: \"Config_Map\": spec.tls.caCertificateRefs[0].kind in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$'" },
	{ "tls client certificate without a name", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    insecureSkipVerify: true\n    clientCertificateRef:\n      kind: Secret\n", {},
	  "test.yaml:13:5: Backend default/x: spec.tls.clientCertificateRef.name: Required value" },
	{ "tls fingerprint enum", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    insecureSkipVerify: true\n    fingerprints: [JA3, JA5]\n", {},
	  "Backend default/x: spec.tls.fingerprints[1]: Unsupported value: \"JA5\": supported values: \"JA3\", \"JA4\"" },
	/* Envoy Gateway's translator (validateBackendTLSSettings) before kbackend's L4 refusal. */
	{ "tls without a trust anchor", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    insecureSkipVerify: false\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: must specify either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is unset or false" },
	{ "tls client certificate elsewhere", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    insecureSkipVerify: true\n"
	  "    clientCertificateRef:\n      name: cert\n      namespace: other\n", {},
	  "test.yaml:13:5: Backend default/x: spec.tls.clientCertificateRef: clientCertificateRef Secret is not located in the same namespace as Backend. Secret namespace: other does not match Backend namespace: default" },
	{ "tls CA only on some ports' policies", BE("x") EPS_IP("198.51.100.1", "443") "    - ip:\n        address: 198.51.100.2\n        port: 8443\n  tls: {}\n"
	  "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata:\n  name: p\nspec:\n"
	  "  targetRefs:\n    - {group: gateway.envoyproxy.io, kind: Backend, name: x, sectionName: \"443\"}\n"
	  "  validation:\n    wellKnownCACertificates: System\n    hostname: a.example.com\n", {},
	  "Backend default/x: spec.tls: must specify either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is unset or false" },
	{ "tls CA from a policy, then L4", BE("x") EPS_IP("198.51.100.1", "443") "  tls: {}\n" BTLS("p", "x"), {},
	  "test.yaml:11:3: Backend default/x: spec.tls: " TLS_L4 ": spec.tls is not supported" },
	/* A BackendTLSPolicy asks for the same TLS origination as spec.tls, and gets the same answer. */
	{ "BackendTLSPolicy on a Backend", BE("x") EPS_IP("198.51.100.1", "443") BTLS("p", "x"), {},
	  "test.yaml:1:1: Backend default/x: " TLS_L4 ": BackendTLSPolicy default/p targets this Backend" },
	{ "BackendTLSPolicy on a Backend a route uses", HR("r") TO_GW RULE("b1") GW B1 BTLS("p", "b1"), {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: " TLS_L4 ": BackendTLSPolicy default/p targets this Backend." },
	{ "BackendTLSPolicy on a Service a route uses", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - name: svc\n          port: 443\n" GW
	  "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata:\n  name: p\nspec:\n"
	  "  targetRefs:\n    - {group: \"\", kind: Service, name: svc}\n  validation:\n    wellKnownCACertificates: System\n    hostname: a.example.com\n", {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: " TLS_L4 ": BackendTLSPolicy default/p targets Service default/svc." },
	{ "BackendTLSPolicy on a Service, itself", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - name: svc\n          port: 443\n" GW
	  "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata:\n  name: p\nspec:\n"
	  "  targetRefs:\n    - {group: \"\", kind: Service, name: svc}\n  validation:\n    wellKnownCACertificates: System\n    hostname: a.example.com\n", {},
	  "BackendTLSPolicy default/p: " TLS_L4 ": the routes to its target Service default/svc are refused" },
	{ "BackendTLSPolicy of Gateway API 1.0 (targetRef, tls)", BE("x") EPS_IP("198.51.100.1", "443")
	  "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: BackendTLSPolicy\nmetadata:\n  name: p\nspec:\n"
	  "  targetRef: {group: gateway.envoyproxy.io, kind: Backend, name: x}\n  tls:\n    wellKnownCACerts: System\n    hostname: a.example.com\n", {},
	  "test.yaml:1:1: Backend default/x: " TLS_L4 ": BackendTLSPolicy default/p targets this Backend" },
	{ "BackendTLSPolicy itself", BE("x") EPS_IP("198.51.100.1", "443") BTLS("p", "x"), {},
	  "BackendTLSPolicy default/p: " TLS_L4 ": its target Backend default/x is refused" },
	{ "appProtocol enum", BE("x") "  appProtocols: [HTTP7]\n" EPS_FQDN("a.example.com", "443"), {},
	  "test.yaml:7:18: Backend default/x: spec.appProtocols[0]: Unsupported value: \"HTTP7\": supported values: \"gateway.envoyproxy.io/h2c\", \"gateway.envoyproxy.io/ws\", \"gateway.envoyproxy.io/wss\"" },
	{ "seed fallback missing", BE("x") EPS_IP("198.51.100.1", "80") "  fallback:\n    backendRef:\n      name: nope\n", {},
	  "test.yaml:13:13: Backend default/x: spec.fallback.backendRef.name: fallback Backend default/nope not found in the applied set" },
	{ "seed fallback self", BE("x") EPS_IP("198.51.100.1", "80") "  fallback:\n    backendRef:\n      name: x\n", {},
	  "test.yaml:12:5: Backend default/x: spec.fallback.backendRef: a Backend cannot be its own fallback" },
	{ "seed fallback cycle", BE("x") EPS_IP("198.51.100.1", "80") "  fallback:\n    backendRef:\n      name: y\n---\n"
	  BE("y") EPS_IP("198.51.100.2", "80") "  fallback:\n    backendRef:\n      name: x\n", {},
	  "test.yaml:12:5: Backend default/x: spec.fallback.backendRef: fallback cycle: default/x -> default/y -> default/x" },
	/* -- Backend: translator layer and the SSRF guard -- */
	{ "Backend API disabled by default", BE("x") EPS_IP("198.51.100.1", "80"), { .enable = EN_FROM_CONFIG },
	  "test.yaml:1:1: Backend default/x: The Backend was not accepted since Backend is not enabled in Envoy Gateway Config" },
	{ "Backend API off in EnvoyGateway", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\nextensionApis:\n  enableBackend: false\n---\n"
	  BE("x") EPS_IP("198.51.100.1", "80"), { .enable = EN_FROM_CONFIG },
	  "test.yaml:6:1: Backend default/x: The Backend was not accepted since Backend is not enabled in Envoy Gateway Config" },
	{ "an explicit off beats EnvoyGateway", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\nextensionApis:\n  enableBackend: true\n---\n"
	  BE("x") EPS_IP("198.51.100.1", "80"), { .enable = EN_OFF },
	  "test.yaml:6:1: Backend default/x: The Backend was not accepted since Backend is not enabled in Envoy Gateway Config" },
	{ "loopback v4", BE("x") EPS_IP("127.0.0.3", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 127.0.0.3 " LOOP "; kbackend allows it with --allow-endpoint 127.0.0.3/32" },
	{ "loopback v6 long form", BE("x") EPS_IP("\"0:0:0:0:0:0:0:1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 0:0:0:0:0:0:0:1 " LOOP },
	{ "loopback v4-mapped", BE("x") EPS_IP("\"::ffff:127.0.0.1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: Invalid value: \"::ffff:127.0.0.1\": spec.endpoints[0].ip.address in body should match '" IP_RE "'" },
	{ "link-local metadata", BE("x") EPS_IP("169.254.169.254", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 169.254.169.254 is link-local (169.254.0.0/16), " SSRF " 169.254.169.254/32" },
	{ "link-local v6", BE("x") EPS_IP("\"fe80::1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address fe80::1 is link-local (fe80::/10), " SSRF " fe80::1/128" },
	{ "link-local v6, top of fe80::/10", BE("x") EPS_IP("\"febf::1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address febf::1 is link-local (fe80::/10)" },
	{ "unspecified v4", BE("x") EPS_IP("0.0.0.0", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 0.0.0.0 is unspecified (0.0.0.0/8), " SSRF " 0.0.0.0/32" },
	{ "unspecified v6", BE("x") EPS_IP("\"0::0\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 0::0 is unspecified (::/128), " SSRF " 0::0/128" },
	{ "multicast v4", BE("x") EPS_IP("239.1.2.3", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 239.1.2.3 is multicast (224.0.0.0/4), " SSRF " 239.1.2.3/32" },
	{ "multicast v6", BE("x") EPS_IP("\"ff02::1\"", "80"), {},
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address ff02::1 is multicast (ff00::/8), " SSRF " ff02::1/128" },
	{ "node address", BE("x") EPS_IP("198.51.100.7", "80"), { .node = "198.51.100.7" },
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 198.51.100.7 is an address of this node, " SSRF " 198.51.100.7/32" },
	{ "allow-list for another range", BE("x") EPS_IP("169.254.169.254", "80"), { .allow = "169.254.0.0/24" },
	  "test.yaml:9:18: Backend default/x: spec.endpoints[0].ip.address: IP address 169.254.169.254 is link-local" },
	{ "localhost FQDN", BE("x") EPS_FQDN("localhost.", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: hostname localhost. resolves to the loopback range" },
	{ "localhost.localdomain FQDN", BE("x") EPS_FQDN("localhost.localdomain", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: hostname localhost.localdomain resolves to the loopback range" },
	/* Envoy Gateway's validateHostname (internal/gatewayapi/backend.go), before kbackend's own loopback names. */
	{ "ip6-localhost FQDN", BE("x") EPS_FQDN("ip6-localhost", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: hostname ip6-localhost should be a domain with at least two segments separated by dots" },
	{ "FQDN of one label", BE("x") EPS_FQDN("backend", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: hostname backend should be a domain with at least two segments separated by dots" },
	{ "FQDN that is an IP literal", BE("x") EPS_FQDN("169.254.169.254", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: hostname 169.254.169.254 is an IP address" },
	{ "FQDN that is a public IP literal", BE("x") EPS_FQDN("198.51.100.10", "80"), {},
	  "test.yaml:9:19: Backend default/x: spec.endpoints[0].fqdn.hostname: hostname 198.51.100.10 is an IP address" },
	{ "endpoint hostname of one label", BE("x") EPS_IP("198.51.100.1", "80") "      hostname: my-svc\n", {},
	  "test.yaml:11:17: Backend default/x: spec.endpoints[0].hostname: hostname my-svc should be a domain with at least two segments separated by dots" },
	{ "endpoint hostname that is an IP", BE("x") EPS_UNIX("/run/a.sock") "      hostname: 198.51.100.1\n", {},
	  "test.yaml:10:17: Backend default/x: spec.endpoints[0].hostname: hostname 198.51.100.1 is an IP address" },
	{ "tls refused at L4", BE("x") EPS_FQDN("a.example.com", "443") "  tls:\n    wellKnownCACertificates: System\n", {},
	  "test.yaml:11:3: Backend default/x: spec.tls: kbackend steers connections at L4 and does not originate TLS: spec.tls is not supported" },
	{ "DynamicResolver refused at L4", BE("x") "  type: DynamicResolver\n", {},
	  "test.yaml:7:9: Backend default/x: spec.type: kbackend steers connections at L4 and cannot route by Host or SNI: type DynamicResolver is not supported" },
	{ "bad --allow-endpoint", BE("x") EPS_IP("198.51.100.1", "80"), { .allow = "10.0.0.0/33" },
	  "--allow-endpoint 10.0.0.0/33: not an IP address or CIDR" },
	{ "duplicate Backend", B1 B1, {},
	  "test.yaml:16:9: Backend default/b1: metadata.name: duplicate Backend default/b1; first defined at test.yaml:2:1" },
	/* -- routes: backendRefs -- */
	{ "Backend not found", HR("r") TO_GW RULE("nope") GW, {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: Backend default/nope not found." },
	{ "backendRef filters", HR("r") TO_GW RULE("b1") "          filters:\n            - type: RequestHeaderModifier\n" GW B1, {},
	  "test.yaml:14:11: HTTPRoute default/r: spec.rules[0].backendRefs[0].filters: Failed to process route rule 0 backendRef 0: kbackend steers connections at L4; backendRef filters are not supported." },
	{ "weight too big", HR("r") TO_GW RULE("b1") "          weight: 1000001\n" GW B1, {},
	  "test.yaml:14:19: HTTPRoute default/r: spec.rules[0].backendRefs[0].weight: Failed to process route rule 0 backendRef 0: Invalid value: 1000001: weight must be between 0 and 1000000." },
	{ "unknown kind", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - group: example.com\n          kind: Foo\n          name: f\n" GW, {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: Group is invalid, only the core API group (specified by omitting the group field or setting it to an empty string), multicluster.x-k8s.io and gateway.envoyproxy.io are supported." },
	{ "Backend kind in an unknown group", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - group: example.com\n          kind: Backend\n          name: b1\n" GW B1, {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: Group is invalid, only the core API group (specified by omitting the group field or setting it to an empty string), multicluster.x-k8s.io and gateway.envoyproxy.io are supported." },
	{ "Service without port", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - name: svc\n" GW, {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: Invalid value: \"object\": Must have port for Service reference." },
	/* Not the CRD's rule (that needs the core group); Envoy Gateway's translator text. */
	{ "ServiceImport without port", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - {group: multicluster.x-k8s.io, kind: ServiceImport, name: svc}\n" GW, {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: A valid port number corresponding to a port on the Service must be specified." },
	{ "cross-namespace without grant", HR("r") TO_GW RULE("b1") "          namespace: other\n" GW
	  "---\n" HDRNS("gateway.envoyproxy.io/v1alpha1", "Backend", "b1", "other") EPS_IP("198.51.100.1", "80"), {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: Backend ref to Backend other/b1 not permitted by any ReferenceGrant." },
	{ "ref to a refused Backend", HR("r") TO_GW RULE("lo") GW "---\n" BE("lo") EPS_IP("127.0.0.1", "80"), {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: IP address 127.0.0.1 " LOOP "." },
	{ "ref while the Backend API is off", HR("r") TO_GW RULE("b1") GW B1, { .enable = EN_OFF },
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: Backend is disabled in Envoy Gateway configuration." },
	{ "unix without --unix-dir", HR("r") TO_GW RULE("u") GW UDS("u", "/run/sidecar/a.sock"), {},
	  "test.yaml:11:11: HTTPRoute default/r: spec.rules[0].backendRefs[0]: Failed to process route rule 0 backendRef 0: unix socket /run/sidecar/a.sock is not under an allowed sidecar directory; start kbackend with --unix-dir DIR." },
	{ "unix under another dir", HR("r") TO_GW RULE("u") GW UDS("u", "/var/run/a.sock"), { .unix_dir = "/run/sidecar" },
	  "Failed to process route rule 0 backendRef 0: unix socket /var/run/a.sock is not under an allowed sidecar directory" },
	{ "unix dir is a prefix, not a directory", HR("r") TO_GW RULE("u") GW UDS("u", "/run/sidecar2/a.sock"), { .unix_dir = "/run/sidecar" },
	  "unix socket /run/sidecar2/a.sock is not under an allowed sidecar directory; start kbackend with --unix-dir DIR" },
	{ "unix path climbs out", HR("r") TO_GW RULE("u") GW UDS("u", "/run/sidecar/../../etc/a.sock"), { .unix_dir = "/run/sidecar" },
	  "unix socket /run/sidecar/../../etc/a.sock has a \"..\" component" },
	{ "unix in the fallback chain", HR("r") TO_GW RULE("b1") GW "---\n" BE("b1") EPS_IP("198.51.100.1", "80")
	  "  fallback:\n    backendRef:\n      name: u\n" UDS("u", "/tmp/a.sock"), { .unix_dir = "/run/sidecar" },
	  "unix socket /tmp/a.sock is not under an allowed sidecar directory" },
	/* -- routes: L4 honesty -- */
	{ "rules with different backends", HR("r") TO_GW RULE("b1") "    - matches:\n        - path: {value: /b}\n      backendRefs:\n" REF("b2") GW B1 B2, {},
	  "test.yaml:16:7: HTTPRoute default/r: spec.rules[1].backendRefs: kbackend steers whole connections at L4 and sees no path, header or SNI; rules 0 and 1 send requests to different backends" },
	/* Refused for itself, even while its Gateway is not in the applied set. */
	{ "rules with different backends, Gateway absent", HR("r") TO_GW RULE("b1") "    - matches:\n        - path: {value: /b}\n      backendRefs:\n" REF("b2") B1 B2, {},
	  "test.yaml:16:7: HTTPRoute default/r: spec.rules[1].backendRefs: kbackend steers whole connections at L4 and sees no path, header or SNI; rules 0 and 1 send requests to different backends" },
	{ "rules with different weights", HR("r") TO_GW RULE("b1") "          weight: 2\n    - backendRefs:\n" REF("b1") GW B1, {},
	  "spec.rules[1].backendRefs: kbackend steers whole connections at L4 and sees no path, header or SNI; rules 0 and 1 send requests to different backends" },
	{ "two routes on one listener", HR("r1") TO_GW RULE("b1") "---\n" HR("r2") TO_GW RULE("b2") GW B1 B2, {},
	  "test.yaml:22:7: HTTPRoute default/r2: spec.parentRefs[0]: listener default/gw/http (port 80) already sends its connections to the backends of HTTPRoute default/r1" },
	/* -- routes: parents -- */
	{ "sectionName matches no listener", HR("r") "  parentRefs:\n    - name: gw\n      sectionName: nope\n" "  rules:\n    - backendRefs:\n" REF("b1") GW B1, {},
	  "test.yaml:8:7: HTTPRoute default/r: spec.parentRefs[0]: No listeners match this parent ref" },
	{ "port matches no listener", HR("r") "  parentRefs:\n    - name: gw\n      port: 81\n" "  rules:\n    - backendRefs:\n" REF("b1") GW B1, {},
	  "test.yaml:8:7: HTTPRoute default/r: spec.parentRefs[0]: No listeners match this parent ref" },
	{ "listener protocol does not fit", TCPR("r") "  parentRefs:\n    - name: gw\n      sectionName: http\n" "  rules:\n    - backendRefs:\n" REF("b1") GW B1, {},
	  "test.yaml:8:7: TCPRoute default/r: spec.parentRefs[0]: No listeners included by this parent ref allowed this attachment." },
	{ "parent is not a Gateway", HR("r") "  parentRefs:\n    - kind: Service\n      group: \"\"\n      name: svc\n" "  rules:\n    - backendRefs:\n" REF("b1") B1, {},
	  "test.yaml:8:7: HTTPRoute default/r: spec.parentRefs[0]: kbackend attaches routes to Gateways only, not to Service" },
	/* -- Gateway -- */
	{ "Gateway address not an IP", GWH("g") "  addresses:\n    - type: IPAddress\n      value: 198.18.0.300\n  listeners:\n    - {name: a, port: 80, protocol: TCP}\n", {},
	  "test.yaml:9:14: Gateway default/g: spec.addresses[0].value: \"198.18.0.300\" is not an IP address" },
	{ "listener port 0", GWH("g") "  addresses:\n    - value: 198.18.0.1\n  listeners:\n    - name: a\n      port: 0\n      protocol: TCP\n", {},
	  "test.yaml:11:13: Gateway default/g: spec.listeners[0].port: Invalid value: 0: port must be between 1 and 65535" },
	{ "listener protocol unknown", GWH("g") "  addresses:\n    - value: 198.18.0.1\n  listeners:\n    - name: a\n      port: 80\n      protocol: SCTP\n", {},
	  "test.yaml:12:17: Gateway default/g: spec.listeners[0].protocol: Unsupported value: \"SCTP\": supported values: \"HTTP\", \"HTTPS\", \"TLS\", \"TCP\", \"UDP\"" },
	{ "listener names repeat", GWH("g") "  addresses:\n    - value: 198.18.0.1\n  listeners:\n    - {name: a, port: 80, protocol: TCP}\n    - {name: a, port: 81, protocol: TCP}\n", {},
	  "test.yaml:11:14: Gateway default/g: spec.listeners[1].name: Duplicate value: \"a\"" },
	/* -- BackendTrafficPolicy -- */
	{ "lookupFamily enum", BTP("p") "  dns:\n    lookupFamily: IPv5\n", {},
	  "test.yaml:8:19: BackendTrafficPolicy default/p: spec.dns.lookupFamily: Unsupported value: \"IPv5\"" },
	{ "loadBalancer type enum", BTP("p") "  loadBalancer:\n    type: Fastest\n", {},
	  "test.yaml:8:11: BackendTrafficPolicy default/p: spec.loadBalancer.type: Unsupported value: \"Fastest\"" },
	{ "consistentHash by header", BTP("p") "  loadBalancer:\n    type: ConsistentHash\n    consistentHash:\n      type: Header\n", {},
	  "test.yaml:10:13: BackendTrafficPolicy default/p: spec.loadBalancer.consistentHash.type: kbackend steers connections at L4 and can hash only on the source IP: consistentHash type Header is not supported" },
	{ "consistentHash unset", BTP("p") "  loadBalancer:\n    type: ConsistentHash\n", {},
	  "test.yaml:7:3: BackendTrafficPolicy default/p: spec.loadBalancer: Invalid value: \"object\": If LoadBalancer type is consistentHash, consistentHash field needs to be set." },
	{ "active check type", BTP("p") "  healthCheck:\n    active:\n      type: GRPC\n", {},
	  "test.yaml:9:13: BackendTrafficPolicy default/p: spec.healthCheck.active.type: Unsupported value: \"GRPC\"" },
	{ "active threshold 0", BTP("p") "  healthCheck:\n    active:\n      type: TCP\n      unhealthyThreshold: 0\n", {},
	  "test.yaml:10:27: BackendTrafficPolicy default/p: spec.healthCheck.active.unhealthyThreshold: Invalid value: 0: spec.healthCheck.active.unhealthyThreshold in body should be greater than or equal to 1" },
	{ "expected status 600", BTP("p") "  healthCheck:\n    active:\n      type: HTTP\n      http:\n        path: /healthz\n        expectedStatuses: [200, 600]\n", {},
	  "test.yaml:12:33: BackendTrafficPolicy default/p: spec.healthCheck.active.http.expectedStatuses[1]: Invalid value: 600: must be an HTTP status between 100 and 599" },
	{ "maxEjectionPercent 101", BTP("p") "  healthCheck:\n    passive:\n      maxEjectionPercent: 101\n", {},
	  "test.yaml:9:27: BackendTrafficPolicy default/p: spec.healthCheck.passive.maxEjectionPercent: Invalid value: 101: must be between 0 and 100" },
	{ "policy targets a Backend", BTP("p") "  targetRefs:\n    - group: gateway.envoyproxy.io\n      kind: Backend\n      name: b1\n" B1, {},
	  "test.yaml:9:13: BackendTrafficPolicy default/p: spec.targetRefs[0].kind: Unsupported value: \"Backend\"" },
};

static const struct good good[] = {
	{ "IPv4, IPv6 and FQDN with a trailing dot", BE("a") EPS_IP("198.51.100.1", "80") "---\n" BE("b")
	  EPS_IP("\"2001:db8:1::1\"", "80") "---\n" BE("c") EPS_FQDN("api.example.com.", "443"), {}, "The Backend was accepted" },
	{ "Backend with an empty spec", BE("x") "  {}\n", {}, "The Backend was accepted" },
	{ "IP and unix together", BE("a") EPS_IP("198.51.100.1", "80") "    - unix:\n        path: /run/sidecar/a.sock\n", {} },
	{ "seed shape and seed appProtocols", BE("a") "  appProtocols: [h2c, grpc, gateway.envoyproxy.io/ws]\n  endpoints:\n    - fqdn: api.example.com\n      port: 443\n", {} },
	{ "seed fallback chain", BE("a") EPS_IP("198.51.100.1", "80") "  fallback:\n    backendRef:\n      name: b\n---\n"
	  BE("b") EPS_IP("198.51.100.2", "80") "  fallback:\n    backendRef:\n      name: c\n      port: 8080\n---\n" BE("c") EPS_IP("198.51.100.3", "80"), {} },
	{ "--allow-endpoint allows link-local", BE("x") EPS_IP("169.254.169.254", "80"), { .allow = "169.254.169.254/32" } },
	{ "--allow-endpoint allows loopback", BE("x") EPS_IP("127.0.0.1", "80"), { .allow = "127.0.0.0/8" } },
	{ "--allow-endpoint allows v6 link-local", BE("x") EPS_IP("\"fe80::1\"", "80"), { .allow = "fe80::/10" } },
	{ "--allow-endpoint allows localhost", BE("x") EPS_FQDN("localhost.", "80"), { .allow = "127.0.0.1" } },
	/* Envoy Gateway admits these: no 63-character label limit (IsDNS1123Subdomain), and "a." has two segments. */
	{ "FQDN with a 64-character label", BE("x") EPS_FQDN(L63 "4.example.com", "80"), {}, "The Backend was accepted" },
	{ "FQDN of 253 characters", BE("x") EPS_FQDN(L63 "." L63 "." L63 "." L61, "80"), {}, "The Backend was accepted" },
	{ "FQDN of 253 characters and the root dot", BE("x") EPS_FQDN(L63 "." L63 "." L63 "." L60 ".", "80"), {} },
	{ "FQDN of one label and the root dot", BE("x") EPS_FQDN("backend.", "80"), {} },
	{ "endpoint hostname on an IP endpoint", BE("x") EPS_IP("198.51.100.1", "80") "      hostname: a.example.com\n", {} },
	/* The CRD's CEL rule counts characters, not bytes; kbackend's bridge then needs the path to fit sun_path. */
	{ "unix path of 107 bytes", BE("x") EPS_UNIX(P100 "ab.sock"), {}, "The Backend was accepted" },
	{ "IPv6 forms the CRD pattern admits", BE("x") EPS_IP("\"2001:db8:1::7\"", "80") "    - ip:\n        address: \"1::2:3\"\n        port: 80\n"
	  "    - ip:\n        address: \"2001:0db8:0:0:0:0:0:1\"\n        port: 80\n", {}, "The Backend was accepted" },
	{ "BackendTLSPolicy on a Service is ignored", "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata:\n  name: p\nspec:\n"
	  "  targetRefs:\n    - {group: \"\", kind: Service, name: svc}\n  validation:\n    wellKnownCACertificates: System\n    hostname: a.example.com\n",
	  {}, "kbackend records BackendTLSPolicy but does not act on it" },
	{ "node address elsewhere", BE("x") EPS_IP("198.51.100.1", "80"), { .node = "198.51.100.7" } },
	{ "enableBackend from an EnvoyGateway object", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\nextensionApis:\n  enableBackend: true\n---\n"
	  BE("x") EPS_IP("198.51.100.1", "80"), { .enable = EN_FROM_CONFIG }, "the Backend API is enabled" },
	{ "--unix-dir allows", HR("r") TO_GW RULE("u") GW UDS("u", "/run/sidecar/a.sock"), { .unix_dir = "/run/sidecar/" }, "Route is accepted" },
	{ "--unix-dir / allows any", HR("r") TO_GW RULE("u") GW UDS("u", "/tmp/a.sock"), { .unix_dir = "/" } },
	{ "rules with the same refs in another order", HR("r") TO_GW RULE("b1") REF("b2") "    - matches:\n        - path: {value: /b}\n      backendRefs:\n" REF("b2") REF("b1") GW B1 B2, {},
	  "its hostnames, matches and filters are not enforced" },
	{ "two routes, same backends, one listener", HR("r1") TO_GW RULE("b1") "---\n" HR("r2") TO_GW RULE("b1") GW B1, {} },
	{ "routes on different listeners", HR("r1") "  parentRefs:\n    - {name: gw, sectionName: http}\n" RULE("b1") "---\n"
	  TCPR("r2") "  parentRefs:\n    - {name: gw, port: 9000}\n" RULE("b2") GW B1 B2, {} },
	{ "ReferenceGrant allows a cross-namespace ref", HR("r") TO_GW RULE("b1") "          namespace: other\n" GW
	  "---\n" HDRNS("gateway.envoyproxy.io/v1alpha1", "Backend", "b1", "other") EPS_IP("198.51.100.1", "80")
	  "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata:\n  name: g\n  namespace: other\nspec:\n"
	  "  from:\n    - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}\n"
	  "  to:\n    - {group: gateway.envoyproxy.io, kind: Backend}\n", {}, "Resolved all the Object references" },
	/* Envoy Gateway checks group and kind apart and dispatches on kind (validate.go validateBackendRef). */
	{ "Backend ref without a group", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - kind: Backend\n          name: b1\n" GW B1, {},
	  "Resolved all the Object references" },
	{ "grant for a Backend ref without a group", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - kind: Backend\n          name: b1\n          namespace: other\n" GW
	  "---\n" HDRNS("gateway.envoyproxy.io/v1alpha1", "Backend", "b1", "other") EPS_IP("198.51.100.1", "80")
	  "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata:\n  name: g\n  namespace: other\nspec:\n"
	  "  from:\n    - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}\n"
	  "  to:\n    - {group: \"\", kind: Backend}\n", {}, "Resolved all the Object references" },
	{ "Service ref with a port", HR("r") TO_GW "  rules:\n    - backendRefs:\n        - name: svc\n          port: 8080\n" GW, {} },
	{ "missing Gateway is not a refusal", HR("r") "  parentRefs:\n    - name: elsewhere\n" RULE("b1") B1, {},
	  "Gateway default/elsewhere was not found in the applied set; no frontend is programmed" },
	{ "Gateway without an IP address warns", GWH("g") "  listeners:\n    - {name: a, port: 80, protocol: TCP}\n", {},
	  "the Gateway has no address of type IPAddress" },
	{ "record-only kinds are ignored", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\nmetadata:\n  name: s\n", {},
	  "kbackend records SecurityPolicy but does not act on it" },
	{ "policy with a good health check", BTP("p") "  targetRefs:\n    - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}\n"
	  "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: SourceIP}\n"
	  "  healthCheck:\n    active: {type: HTTP, unhealthyThreshold: 1, http: {path: /, expectedStatuses: [200, 599]}}\n    passive: {maxEjectionPercent: 100}\n"
	  "---\n" HR("r") TO_GW RULE("b1") GW B1, {}, "Policy has been accepted." },
};

static void set_policy(struct kb_policy *p, const struct pol *t, char **ud, char **al, char **nd)
{
	kb_policy_init(p);
	p->enable_backend = t->enable == EN_ON ? 1 : t->enable == EN_OFF ? 0 : -1;
	if (t->unix_dir) {
		ud[0] = (char *)t->unix_dir;
		p->unix_dirs = ud;
		p->nunix_dirs = 1;
	}
	if (t->allow) {
		al[0] = (char *)t->allow;
		p->allow_cidrs = al;
		p->nallow_cidrs = 1;
	}
	if (t->node) {
		nd[0] = (char *)t->node;
		p->node_addrs = nd;
		p->nnode_addrs = 1;
	}
}

/* The model under test; the teardown frees it when an assertion jumps out. */
static struct kb_model cur;
static bool cur_live;

static int teardown(void **state)
{
	if (cur_live)
		kb_model_free(&cur);
	cur_live = false;
	return 0;
}

static int run(const char *yaml, const struct pol *t)
{
	char *ud[1], *al[1], *nd[1], buf[16384];
	struct kb_policy p;

	tu_load(&cur, yaml);
	cur_live = true;
	if (cur.nerrors)
		fail_msg("the test's YAML does not parse:\n%s", tu_diags(&cur, buf, sizeof(buf)));
	set_policy(&p, t, ud, al, nd);
	return kb_validate(&cur, &p);
}

static bool some_message(const struct kb_model *m, const char *want)
{
	char buf[16384];

	if (strstr(tu_diags(m, buf, sizeof(buf)), want))
		return true;
	for (size_t i = 0; i < m->nobjects; i++) {
		const struct kb_meta *o = m->objects[i];

		for (size_t k = 0; k < o->nconds; k++)
			if (strstr(o->conds[k].message, want))
				return true;
		for (size_t p = 0; p < o->nparents; p++)
			for (size_t k = 0; k < o->parents[p].nconds; k++)
				if (strstr(o->parents[p].conds[k].message, want))
					return true;
	}
	return false;
}

static void test_bad_inputs(void **state)
{
	int failed = 0;

	assert_true(sizeof(bad) / sizeof(bad[0]) >= 40);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char buf[16384];
		int refused = run(bad[i].yaml, &bad[i].pol);
		bool found = false;

		/* The wanted text must be an error (not a warning) ... */
		for (size_t k = 0; k < cur.ndiags && !found; k++) {
			if (cur.diags[k].sev != KB_SEV_ERROR)
				continue;
			kb_diag_format(&cur.diags[k], buf, sizeof(buf));
			found = strstr(buf, bad[i].want) != NULL;
		}
		if (!found) {
			print_error("[%s] no error contains\n  %s\ngot:\n%s", bad[i].name, bad[i].want,
				    tu_diags(&cur, buf, sizeof(buf)));
			failed++;
		} else if (refused < 1 && cur.diags[0].object) {
			/* ... and, unless the problem is the flags themselves, some object is refused for it. */
			print_error("[%s] an error was reported but no object was refused\n", bad[i].name);
			failed++;
		}
		kb_model_free(&cur);
		cur_live = false;
	}
	/* Report every row that fails, then fail once. */
	assert_int_equal(failed, 0);
}

static void test_good_inputs(void **state)
{
	int failed = 0;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char buf[16384];
		int refused = run(good[i].yaml, &good[i].pol);

		if (refused || cur.nerrors) {
			print_error("[%s] refused %d object(s):\n%s", good[i].name, refused,
				    tu_diags(&cur, buf, sizeof(buf)));
			failed++;
		} else if (good[i].want && !some_message(&cur, good[i].want)) {
			print_error("[%s] nothing says \"%s\":\n%s", good[i].name, good[i].want,
				    tu_diags(&cur, buf, sizeof(buf)));
			failed++;
		}
		kb_model_free(&cur);
		cur_live = false;
	}
	assert_int_equal(failed, 0);
}

static const struct kb_condition *parent_cond(const struct kb_meta *o, const char *parent, const char *type)
{
	for (size_t p = 0; p < o->nparents; p++)
		if (strcmp(o->parents[p].parent, parent) == 0)
			for (size_t k = 0; k < o->parents[p].nconds; k++)
				if (strcmp(o->parents[p].conds[k].type, type) == 0)
					return &o->parents[p].conds[k];
	return NULL;
}

/* The exact status shapes: Backend Accepted/Invalid, route conditions per parent key. */
static void test_conditions(void **state)
{
	static const struct pol on = { 0 };
	const struct kb_condition *c;
	const struct kb_meta *r, *lo;

	run(HR("r") "  parentRefs:\n    - {name: gw, sectionName: http}\n    - name: gw2\n" RULE("lo") GW
	    "---\n" BE("lo") EPS_IP("127.0.0.1", "80"), &on);
	r = cur.objects[0];
	lo = cur.objects[2];
	c = kb_get_condition(lo, "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->reason, "Invalid");
	assert_string_equal(c->message, "The Backend was not accepted: IP address 127.0.0.1 " LOOP);
	c = parent_cond(r, "default/gw/http", "ResolvedRefs");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->reason, "InvalidAddress");
	c = parent_cond(r, "default/gw/http", "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_TRUE);
	c = parent_cond(r, "default/gw2", "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_UNKNOWN);
	assert_string_equal(c->reason, "NoMatchingParent");
	assert_true(kb_object_refused(r));
	assert_true(kb_object_refused(lo));
	assert_false(kb_object_refused(cur.objects[1]));	/* the Gateway */
	kb_model_free(&cur);
	cur_live = false;

	/* Envoy Gateway's validateHostname text and reason, on the Backend and on the route that uses it. */
	run(HR("r") TO_GW RULE("one") GW "---\n" BE("one") EPS_FQDN("backend", "80"), &on);
	c = kb_get_condition(cur.objects[2], "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->reason, "Invalid");
	assert_string_equal(c->message,
			    "The Backend was not accepted: hostname backend should be a domain with at least two segments separated by dots");
	c = parent_cond(cur.objects[0], "default/gw", "ResolvedRefs");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->reason, "InvalidAddress");
	assert_string_equal(c->message,
			    "Failed to process route rule 0 backendRef 0: hostname backend should be a domain with at least two segments separated by dots.");
	kb_model_free(&cur);
	cur_live = false;

	run("apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: nospec\n", &on);
	c = kb_get_condition(cur.objects[0], "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->message, "The Backend was not accepted: spec: Required value");
	kb_model_free(&cur);
	cur_live = false;

	/* A BackendTLSPolicy on a Backend: the Backend, the route that uses it and the policy all say why. */
	run(HR("r") TO_GW RULE("b1") GW B1 BTLS("p", "b1"), &on);
	c = kb_get_condition(cur.objects[2], "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->message, "The Backend was not accepted: " TLS_L4 ": BackendTLSPolicy default/p targets this Backend");
	c = parent_cond(cur.objects[0], "default/gw", "ResolvedRefs");
	assert_non_null(c);
	assert_string_equal(c->reason, "InvalidBackendRef");
	c = kb_get_condition(cur.objects[3], "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_FALSE);
	assert_string_equal(c->reason, "Invalid");
	assert_string_equal(c->message, TLS_L4 ": its target Backend default/b1 is refused");
	kb_model_free(&cur);
	cur_live = false;

	run(BE("ok") EPS_IP("198.51.100.1", "80"), &on);
	c = kb_get_condition(cur.objects[0], "Accepted");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_TRUE);
	assert_string_equal(c->reason, "Accepted");
	assert_string_equal(c->message, "The Backend was accepted");
	kb_model_free(&cur);
	cur_live = false;
}

/*
 * Kinds kbackend does not use are Accepted=Unknown/Ignored, naming the kind;
 * they never refuse anything (a Service backendRef with no Service object
 * resolves through DNS under the default --service-endpoints=auto), and the
 * same name under two such kinds is not a duplicate.
 */
static void test_ignored_kinds(void **state)
{
	static const struct pol on = { 0 };
	const struct kb_condition *c;

	assert_int_equal(run("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {k: dg==}\n"
			     "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: v}\n"
			     "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: svc}\n"
			     "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: HTTPRouteFilter\nmetadata: {name: x}\n"
			     "spec: {}\n"
			     "---\n" HR("r") TO_GW "  rules:\n    - backendRefs:\n        - {name: svc, port: 80}\n" GW,
			     &on),
			 0);
	assert_int_equal(cur.nerrors, 0);
	for (size_t i = 0; i < 4; i++) {
		static const char *const want[] = {
			"kbackend does not use Secret (v1): the object is read and ignored",
			"kbackend does not use ConfigMap (v1): the object is read and ignored",
			"kbackend does not use ServiceAccount (v1): the object is read and ignored",
			"kbackend does not use HTTPRouteFilter (gateway.envoyproxy.io/v1alpha1): the object is read and ignored",
		};

		c = kb_get_condition(cur.objects[i], "Accepted");
		assert_non_null(c);
		assert_int_equal(c->status, KB_COND_UNKNOWN);
		assert_string_equal(c->reason, "Ignored");
		assert_string_equal(c->message, want[i]);
		assert_false(kb_object_refused(cur.objects[i]));
	}
	c = parent_cond(cur.objects[4], "default/gw", "ResolvedRefs");
	assert_non_null(c);
	assert_int_equal(c->status, KB_COND_TRUE);
	assert_false(kb_object_refused(cur.objects[4]));
	kb_model_free(&cur);
	cur_live = false;

	/* The same kind twice is still a duplicate, as for every kind. */
	assert_int_equal(run("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n"
			     "---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", &on),
			 1);
	assert_true(some_message(&cur, "duplicate Secret default/x; first defined at test.yaml:1:1"));
	kb_model_free(&cur);
	cur_live = false;
}

/*
 * Symlinks under --unix-dir, on a real directory tree: a linked socket, a
 * linked directory, and a link to a path inside the dir are all refused, and
 * the message names the link; a missing tail and a linked --unix-dir itself
 * (the operator's own flag) are fine.
 */
static void test_unix_symlinks(void **state)
{
	static const struct {
		const char *name;
		const char *path;	/* under the unix dir */
		const char *link;	/* the component named, under the unix dir; NULL: accepted */
	} rows[] = {
		{ "linked socket", "/l.sock", "/l.sock" },
		{ "linked directory", "/ldir/a.sock", "/ldir" },
		{ "link that stays inside", "/in.sock", "/in.sock" },
		{ "link deep down", "/real/deep/a.sock", "/real/deep" },
		{ "plain, not there yet", "/real/none/a.sock", NULL },
		{ "plain socket file", "/real/a.sock", NULL },
	};
	char tmp[] = "/tmp/kbt-validate-XXXXXX", p[256], q[256], dir[256], want[512], yaml[2048];
	struct pol pol = { 0 };
	int failed = 0;

	assert_non_null(mkdtemp(tmp));
	snprintf(dir, sizeof(dir), "%s/d", tmp);
	snprintf(p, sizeof(p), "%s/out", tmp);
	assert_int_equal(mkdir(dir, 0755) | mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/real", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/real/a.sock", dir);
	assert_int_equal(mknod(p, S_IFSOCK | 0600, 0), 0);
	snprintf(p, sizeof(p), "%s/l.sock", dir);
	snprintf(q, sizeof(q), "%s/out/x.sock", tmp);
	assert_int_equal(symlink(q, p), 0);
	snprintf(p, sizeof(p), "%s/ldir", dir);
	snprintf(q, sizeof(q), "%s/out", tmp);
	assert_int_equal(symlink(q, p), 0);
	snprintf(p, sizeof(p), "%s/in.sock", dir);
	assert_int_equal(symlink("real/a.sock", p), 0);
	snprintf(p, sizeof(p), "%s/real/deep", dir);
	assert_int_equal(symlink("..", p), 0);
	/* The flag itself through a link: trusted, resolved by the daemon at start. */
	snprintf(q, sizeof(q), "%s/dlink", tmp);
	assert_int_equal(symlink("d", q), 0);
	for (int via = 0; via < 2; via++) {
		const char *ud = via ? q : dir;

		pol.unix_dir = ud;
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			char buf[16384];

			snprintf(yaml, sizeof(yaml), HR("r") TO_GW RULE("u") GW UDS("u", "%s%s"), ud, rows[i].path);
			run(yaml, &pol);
			snprintf(want, sizeof(want), "unix socket %s%s: %s%s is a symbolic link", ud, rows[i].path, ud,
				 rows[i].link ? rows[i].link : "");
			if (rows[i].link ? !some_message(&cur, want) : cur.nerrors > 0) {
				print_error("[%s via %s] want %s:\n%s", rows[i].name, ud,
					    rows[i].link ? want : "accepted", tu_diags(&cur, buf, sizeof(buf)));
				failed++;
			}
			kb_model_free(&cur);
			cur_live = false;
		}
	}
	snprintf(p, sizeof(p), "rm -rf '%s'", tmp);
	assert_int_equal(system(p), 0);
	assert_int_equal(failed, 0);
}

/* kb_parent_key and kb_parent_attaches on hand-built objects (no parser involved). */
static void test_parent_helpers(void **state)
{
	struct kb_model m;
	/* The route lives in another namespace than the Gateway: these listeners admit All. */
	struct kb_listener ls[] = {
		{ .name = "http", .port = 80, .protocol = "HTTP", .ns_from = "All" },
		{ .name = "tcp", .port = 9000, .protocol = "TCP", .ns_from = "All" },
		{ .name = "udp", .port = 53, .protocol = "UDP", .ns_from = "All" },
		{ .name = "tls", .port = 443, .protocol = "TLS", .ns_from = "All", .tls_mode = "Passthrough" },
	};
	struct kb_gateway g = { .meta = { .kind = KB_KIND_GATEWAY, .name = "gw", .namespace = "infra" },
				.listeners = ls, .nlisteners = 4 };
	struct kb_route r = { .meta = { .kind = KB_KIND_HTTPROUTE, .name = "r", .namespace = "app" } };
	struct kb_parent_ref pr = { .name = "gw", .namespace = "infra" };

	kb_model_init(&m);
	assert_string_equal(kb_parent_key(&m, &r, &pr), "infra/gw");
	pr.section_name = "http";
	assert_string_equal(kb_parent_key(&m, &r, &pr), "infra/gw/http");
	pr.namespace = NULL;
	assert_string_equal(kb_parent_key(&m, &r, &pr), "app/gw/http");

	pr = (struct kb_parent_ref){ .name = "gw", .namespace = "infra" };
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[1]));	/* HTTPRoute on TCP */
	pr.section_name = "tcp";
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));	/* another section */
	pr.section_name = NULL;
	pr.has_port = true;
	pr.port = 81;
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));	/* another port */
	pr.port = 80;
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	pr.namespace = NULL;	/* defaults to the route's namespace, where gw is not */
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	pr = (struct kb_parent_ref){ .name = "gw", .namespace = "infra", .kind = "Service" };
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	pr = (struct kb_parent_ref){ .name = "gw", .namespace = "infra" };
	r.meta.kind = KB_KIND_UDPROUTE;
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[2]));
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[1]));
	r.meta.kind = KB_KIND_TCPROUTE;
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[1]));
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[3]));	/* TLS Passthrough carries TLSRoutes only */
	ls[3].tls_mode = NULL;
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[3]));	/* ... Terminate also TCPRoutes */
	r.meta.kind = KB_KIND_TLSROUTE;
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[3]));
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	r.meta.kind = KB_KIND_GRPCROUTE;
	assert_true(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	ls[0].ns_from = NULL;	/* Same, the default: app is not infra */
	assert_false(kb_parent_attaches(&m, &r, &pr, &g, &ls[0]));
	kb_model_free(&m);
}

static void want_parent(const struct kb_meta *o, const char *parent, const char *type, enum kb_cond_status st,
			const char *reason, const char *msg)
{
	const struct kb_condition *c = parent_cond(o, parent, type);

	if (!c)
		fail_msg("%s %s: no %s condition for parent %s", kb_kind_name(o->kind), o->name, type, parent);
	if (c->status != st || strcmp(c->reason, reason) != 0 || strcmp(c->message, msg) != 0)
		fail_msg("%s %s parent %s %s:\n  want %s %s \"%s\"\n  got  %s %s \"%s\"", kb_kind_name(o->kind), o->name,
			 parent, type, kb_cond_status_name(st), reason, msg, kb_cond_status_name(c->status), c->reason,
			 c->message);
}

static const struct kb_meta *find_obj(const char *kind, const char *ns, const char *name)
{
	for (size_t i = 0; i < cur.nobjects; i++)
		if (strcmp(kb_kind_name(cur.objects[i]->kind), kind) == 0 && strcmp(cur.objects[i]->namespace, ns) == 0 &&
		    strcmp(cur.objects[i]->name, name) == 0)
			return cur.objects[i];
	fail_msg("no %s %s/%s", kind, ns, name);
	return NULL;
}

#define ACCEPTED "Route is accepted"
#define RESOLVED "Resolved all the Object references for the Route"
#define NOT_ALLOWED "No listeners included by this parent ref allowed this attachment."
#define HRNS(n, ns) HDRNS("gateway.networking.k8s.io/v1", "HTTPRoute", n, ns)
#define TO_INFRA(section) "  parentRefs:\n    - {name: gw, namespace: infra, sectionName: " section "}\n"
#define SVC_RULE "  rules:\n    - backendRefs:\n        - {name: web, port: 80}\n"

/*
 * Envoy Gateway's own route verdicts (internal/gatewayapi/route.go, validate.go,
 * status/error.go): every failed backendRef joined, allowedRoutes, sectionName,
 * ref kinds and grants, ServiceImport, hostname intersection.
 */
static void test_eg_route_verdicts(void **state)
{
	static const struct pol on = { 0 };
	const struct kb_meta *r;

	/* 1. Every failed backendRef, one line each; the distinct reasons sorted and comma-joined. */
	run(HR("r") TO_GW RULE("nope1") REF("nope2") "    - backendRefs:\n        - {group: multicluster.x-k8s.io, kind: ServiceImport, name: svc}\n" GW, &on);
	want_parent(cur.objects[0], "default/gw", "ResolvedRefs", KB_COND_FALSE, "BackendNotFound,PortNotSpecified",
		    "Failed to process route rule 0 backendRef 0: Backend default/nope1 not found.\n"
		    "Failed to process route rule 0 backendRef 1: Backend default/nope2 not found.\n"
		    "Failed to process route rule 1 backendRef 0: A valid port number corresponding to a port on the Service must be specified.");
	kb_model_free(&cur);
	cur_live = false;

	/* 2. allowedRoutes: namespaces Same (default), Selector on Namespace labels, All; kinds. */
	run(HDRNS("gateway.networking.k8s.io/v1", "Gateway", "gw", "infra") "  listeners:\n"
	    "    - {name: same, port: 80, protocol: HTTP}\n"
	    "    - name: sel\n      port: 81\n      protocol: HTTP\n      allowedRoutes:\n        namespaces:\n"
	    "          from: Selector\n          selector:\n            matchLabels: {team: a}\n"
	    "            matchExpressions:\n              - {key: env, operator: In, values: [prod, stage]}\n"
	    "    - name: all\n      port: 82\n      protocol: HTTP\n      allowedRoutes:\n        namespaces: {from: All}\n"
	    "        kinds: [{kind: GRPCRoute}]\n"
	    "    - name: nosel\n      port: 83\n      protocol: HTTP\n      allowedRoutes:\n        namespaces: {from: Selector}\n"
	    "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n  labels: {team: a, env: prod}\n"
	    "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: dev\n  labels: {team: a, env: dev}\n"
	    "---\n" HRNS("same", "app") TO_INFRA("same") SVC_RULE
	    "---\n" HRNS("sel", "app") TO_INFRA("sel") SVC_RULE
	    "---\n" HRNS("seldev", "dev") TO_INFRA("sel") SVC_RULE
	    "---\n" HRNS("selnons", "elsewhere") TO_INFRA("sel") SVC_RULE
	    "---\n" HRNS("kind", "app") TO_INFRA("all") SVC_RULE
	    "---\n" HRNS("nosel", "app") TO_INFRA("nosel") SVC_RULE
	    "---\n" HRNS("home", "infra") "  parentRefs:\n    - {name: gw, sectionName: same}\n" SVC_RULE, &on);
	want_parent(find_obj("HTTPRoute", "infra", "home"), "infra/gw/same", "Accepted", KB_COND_TRUE, "Accepted", ACCEPTED);
	r = find_obj("HTTPRoute", "app", "same");
	want_parent(r, "infra/gw/same", "Accepted", KB_COND_FALSE, "NotAllowedByListeners", NOT_ALLOWED);
	want_parent(r, "infra/gw/same", "ResolvedRefs", KB_COND_TRUE, "ResolvedRefs", RESOLVED);
	want_parent(find_obj("HTTPRoute", "app", "sel"), "infra/gw/sel", "Accepted", KB_COND_TRUE, "Accepted", ACCEPTED);
	want_parent(find_obj("HTTPRoute", "dev", "seldev"), "infra/gw/sel", "Accepted", KB_COND_FALSE,
		    "NotAllowedByListeners", NOT_ALLOWED);
	want_parent(find_obj("HTTPRoute", "elsewhere", "selnons"), "infra/gw/sel", "Accepted", KB_COND_FALSE,
		    "NotAllowedByListeners", NOT_ALLOWED);
	want_parent(find_obj("HTTPRoute", "app", "kind"), "infra/gw/all", "Accepted", KB_COND_FALSE,
		    "NotAllowedByListeners", NOT_ALLOWED);
	want_parent(find_obj("HTTPRoute", "app", "nosel"), "infra/gw/nosel", "Accepted", KB_COND_FALSE,
		    "NotAllowedByListeners", NOT_ALLOWED);
	kb_model_free(&cur);
	cur_live = false;

	/* Listener kinds that its protocol cannot carry: Envoy Gateway's listener text, as a warning. */
	run(GWH("gw") "  listeners:\n    - name: a\n      port: 80\n      protocol: HTTP\n      allowedRoutes:\n"
	    "        kinds: [{kind: FooRoute}]\n"
	    "    - name: b\n      port: 81\n      protocol: HTTP\n      allowedRoutes:\n        namespaces:\n          from: Selector\n"
	    "          selector:\n            matchExpressions: [{key: foo, operator: Exists, values: [bar]}]\n", &on);
	tu_assert_diag(&cur, "warning: Gateway default/gw: spec.listeners[0].allowedRoutes.kinds[0]: FooRoute is not supported, kind must be one of [HTTPRoute GRPCRoute]");
	tu_assert_diag(&cur, "warning: Gateway default/gw: spec.listeners[1].allowedRoutes.namespaces.selector.matchExpressions[0]: The allowedRoutes.namespaces.selector could not be parsed: values: Invalid value: [\"bar\"]: values set must be empty for exists and does not exist.");
	kb_model_free(&cur);
	cur_live = false;

	/* 3. sectionName that names no listener; ref group, kind and namespace: Envoy Gateway's texts and reasons. */
	run(HR("r") "  parentRefs:\n    - {name: gw, sectionName: nope}\n" RULE("b1") GW B1, &on);
	want_parent(cur.objects[0], "default/gw/nope", "Accepted", KB_COND_FALSE, "NoMatchingParent",
		    "No listeners match this parent ref");
	kb_model_free(&cur);
	cur_live = false;
	run(HR("r") TO_GW "  rules:\n    - backendRefs:\n        - {group: example.com, kind: Backend, name: b1}\n"
	    "        - {kind: Pod, name: p, port: 80}\n        - {kind: Backend, group: gateway.envoyproxy.io, name: b1, namespace: other}\n"
	    "        - {name: web, namespace: other, port: 80}\n" GW B1, &on);
	want_parent(cur.objects[0], "default/gw", "ResolvedRefs", KB_COND_FALSE, "InvalidKind,RefNotPermitted",
		    "Failed to process route rule 0 backendRef 0: Group is invalid, only the core API group (specified by omitting the group field or setting it to an empty string), multicluster.x-k8s.io and gateway.envoyproxy.io are supported.\n"
		    "Failed to process route rule 0 backendRef 1: Kind is invalid, only Service, MCS ServiceImport and Envoy Gateway Backend are supported.\n"
		    "Failed to process route rule 0 backendRef 2: Backend ref to Backend other/b1 not permitted by any ReferenceGrant.\n"
		    "Failed to process route rule 0 backendRef 3: Backend ref to Service other/web not permitted by any ReferenceGrant.");
	kb_model_free(&cur);
	cur_live = false;

	/* 4. A ServiceImport resolves like a Service. */
	run(HR("r") TO_GW "  rules:\n    - backendRefs:\n        - {group: multicluster.x-k8s.io, kind: ServiceImport, name: web, port: 80}\n" GW, &on);
	want_parent(cur.objects[0], "default/gw", "ResolvedRefs", KB_COND_TRUE, "ResolvedRefs", RESOLVED);
	want_parent(cur.objects[0], "default/gw", "Accepted", KB_COND_TRUE, "Accepted", ACCEPTED);
	kb_model_free(&cur);
	cur_live = false;

	/* 5. Hostnames must intersect the listener's (Envoy Gateway's computeHosts). */
	run(GWH("gw") "  listeners:\n    - {name: w, port: 80, protocol: HTTP, hostname: \"*.example.com\"}\n"
	    "    - {name: x, port: 80, protocol: HTTP, hostname: x.example.com}\n"
	    "---\n" HR("miss") "  parentRefs:\n    - {name: gw, sectionName: w}\n  hostnames: [foo.example.org, example.com]\n" SVC_RULE
	    "---\n" HR("hit") "  parentRefs:\n    - {name: gw, sectionName: w}\n  hostnames: [foo.example.org, a.example.com]\n" SVC_RULE
	    "---\n" HR("wild") "  parentRefs:\n    - {name: gw, sectionName: w}\n  hostnames: [\"*.com\"]\n" SVC_RULE
	    "---\n" HR("taken") "  parentRefs:\n    - {name: gw, sectionName: w}\n  hostnames: [x.example.com]\n" SVC_RULE, &on);
	want_parent(find_obj("HTTPRoute", "default", "miss"), "default/gw/w", "Accepted", KB_COND_FALSE,
		    "NoMatchingListenerHostname",
		    "There were no hostname intersections between the HTTPRoute and this parent ref's Listener(s).");
	want_parent(find_obj("HTTPRoute", "default", "hit"), "default/gw/w", "Accepted", KB_COND_TRUE, "Accepted", ACCEPTED);
	want_parent(find_obj("HTTPRoute", "default", "wild"), "default/gw/w", "Accepted", KB_COND_TRUE, "Accepted", ACCEPTED);
	/* x.example.com belongs to listener x on the same port. */
	want_parent(find_obj("HTTPRoute", "default", "taken"), "default/gw/w", "Accepted", KB_COND_FALSE,
		    "NoMatchingListenerHostname",
		    "There were no hostname intersections between the HTTPRoute and this parent ref's Listener(s).");
	kb_model_free(&cur);
	cur_live = false;
}

static void test_ref_is_backend(void **state)
{
	struct kb_backend_ref a = { .group = "gateway.envoyproxy.io", .kind = "Backend", .name = "x" };
	struct kb_backend_ref b = { .kind = "Backend", .name = "x" };
	struct kb_backend_ref mcs = { .group = "multicluster.x-k8s.io", .kind = "Backend", .name = "x" };
	struct kb_backend_ref other = { .group = "example.com", .kind = "Backend", .name = "x" };
	struct kb_backend_ref s = { .name = "svc" };

	assert_true(kb_ref_is_backend(&a));
	/* Envoy Gateway judges group and kind apart: any supported group with kind Backend is a Backend. */
	assert_true(kb_ref_is_backend(&b));
	assert_true(kb_ref_is_backend(&mcs));
	assert_false(kb_ref_is_backend(&other));
	assert_false(kb_ref_is_backend(&s));
}

/* 257 endpoints: too long for the table, built here. */
static void test_too_many_endpoints(void **state)
{
	static const struct pol on = { 0 };
	static char yaml[32768];
	size_t n = (size_t)snprintf(yaml, sizeof(yaml), "%s  endpoints:\n", BE("many"));

	for (int i = 0; i < 257; i++)
		n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "    - {ip: {address: 198.51.%d.%d, port: 80}}\n",
				      100 + i / 250, 1 + i % 250);
	assert_int_equal(run(yaml, &on), 1);
	tu_assert_diag(&cur, "test.yaml:7:3: Backend default/many: spec.endpoints: Too many: 257: must have at most 256 items");
	kb_model_free(&cur);
	cur_live = false;
	/* 256 is fine. */
	*strrchr(yaml, '-') = '#';
	assert_int_equal(run(yaml, &on), 0);
	kb_model_free(&cur);
	cur_live = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_inputs, teardown),
		cmocka_unit_test_teardown(test_good_inputs, teardown),
		cmocka_unit_test_teardown(test_conditions, teardown),
		cmocka_unit_test_teardown(test_ignored_kinds, teardown),
		cmocka_unit_test_teardown(test_unix_symlinks, teardown),
		cmocka_unit_test(test_parent_helpers),
		cmocka_unit_test_teardown(test_eg_route_verdicts, teardown),
		cmocka_unit_test(test_ref_is_backend),
		cmocka_unit_test_teardown(test_too_many_endpoints, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
