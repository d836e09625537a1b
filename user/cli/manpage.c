// SPDX-License-Identifier: Apache-2.0
/* kbackend(1): roff generated from the command table (ctl.c) and the option descriptions below. */
#include <string.h>

#include "control/control.h"
#include "dataplane/dataplane.h"	/* KB_PIN_DIR_DEFAULT */
#include "cli/manpage.h"
#include "store/store.h"

/*
 * Every long option of every command is described here. tests/unit/test_docs.c
 * fails when an option defined anywhere in user/ (a `{ "name", ..._argument`
 * row) has no row here, or when a row here names an option that no longer exists.
 */
struct opt_doc {
	const char *section;	/* the man page section it is listed under */
	const char *flag;	/* "--name" or "-x, --name" */
	const char *arg;	/* NULL: takes no argument */
	const char *text;	/* plain text: escaped on output */
};

#define S_COMMON "COMMON OPTIONS"
#define S_POLICY "POLICY OPTIONS"
#define S_DAEMON "DAEMON OPTIONS"
#define S_REGISTER "REGISTER OPTIONS"

static const struct opt_doc opts[] = {
	{ S_COMMON, "-f, --filename", "FILE|DIR|-",
	  "A manifest file, a directory (its *.yaml and *.yml files, sorted), or - for standard input. Repeatable." },
	{ S_COMMON, "-o, --output", "wide|json|yaml",
	  "Output format. json and yaml print the Kubernetes-style objects with their status conditions; in these "
	  "modes an error is printed as {\"error\": \"...\"} as well as on standard error. The table of an apply or "
	  "delete of more than 100 objects lists only those not plainly Accepted and counts the rest; wide, json and "
	  "yaml list every object." },
	{ S_COMMON, "-n, --namespace", "NS", "Only objects in namespace NS (default: default; frontends and endpoints: all, and with -n only those "
	  "whose route is in NS)." },
	{ S_COMMON, "-A, --all-namespaces", NULL, "Objects in every namespace." },
	{ S_COMMON, "-l, --selector", "SELECTOR",
	  "get: only objects whose labels match, as kubectl writes it: key=value, key==value, key!=value, key "
	  "(present), !key (absent), joined by commas, all of which must hold. frontends and endpoints are selected "
	  "by the labels of their Backends (a frontend is shown when one of its Backends matches)." },
	{ S_COMMON, "--field-selector", "SELECTOR",
	  "get: only objects whose fields match (key=value or key!=value, joined by commas): metadata.name and "
	  "metadata.namespace for objects; frontend (ADDR:PORT), address, port, protocol, backend (NS/NAME), route "
	  "(NS/NAME), gateway (NS/NAME) and listener for frontends and endpoints. A name, an equality on frontend, "
	  "backend, route or gateway, or a label equality is looked up in the daemon's index, not by a walk over "
	  "every object." },
	{ S_COMMON, "--dry-run", NULL,
	  "apply: parse, validate and compile in the CLI process and print the frontends that would be programmed; "
	  "needs neither the daemon nor root." },
	{ S_COMMON, "--replace", NULL,
	  "apply: the files are the whole desired state. Stored objects they do not name are deleted, and their "
	  "frontends unprogrammed, in the same all-or-nothing change. This is also the way out when status shows the "
	  "state as DEGRADED (a bad state file at start)." },
	{ S_COMMON, "--each-file", NULL,
	  "validate: treat every file as its own set of manifests, as test cases are written." },
	{ S_COMMON, "-w, --watch", NULL, "stats: print the counters again every second." },
	{ S_COMMON, "--socket", "PATH",
	  "The control socket (default: $KBACKEND_SOCKET, else " KB_SOCKET_DEFAULT "). The daemon creates it mode 0600." },
	{ S_COMMON, "--bpffs", "DIR",
	  "The pin directory (default " KB_PIN_DIR_DEFAULT "). The daemon mounts bpffs on its parent when none is "
	  "mounted there. unload removes every pin under it, also with no daemon running." },
	{ S_COMMON, "-v, --verbose", NULL, "More log output; twice for debug output, libbpf's included." },
	{ S_COMMON, "-h, --help", NULL, "Show the command's usage line." },

	{ S_POLICY, "--enable-backend", NULL,
	  "Accept Backend resources, as Envoy Gateway's extensionApis.enableBackend: true does. Without it (and "
	  "without a --config that turns it on) every Backend is refused with Envoy Gateway's message." },
	{ S_POLICY, "--config", "FILE",
	  "An EnvoyGateway configuration file; its extensionApis.enableBackend is honoured unless --enable-backend "
	  "is given." },
	{ S_POLICY, "--unix-dir", "DIR",
	  "Allow unix-socket endpoints whose path lies under DIR (repeatable). Without it routes to unix endpoints "
	  "are refused." },
	{ S_POLICY, "--allow-endpoint", "CIDR",
	  "Allow endpoints in CIDR that the SSRF guard refuses by default: loopback, link-local (169.254.0.0/16 "
	  "including cloud metadata, fe80::/10), unspecified, multicast and the node's own addresses. Applies to "
	  "IP endpoints and to FQDN answers alike. Repeatable." },
	{ S_POLICY, "--cluster-domain", "DOMAIN",
	  "The cluster DNS domain used to resolve Service backendRefs as NAME.NAMESPACE.svc.DOMAIN (default "
	  "cluster.local)." },
	{ S_POLICY, "--clusterset-domain", "DOMAIN",
	  "The multi-cluster DNS domain used to resolve ServiceImport (multicluster.x-k8s.io) backendRefs as "
	  "NAME.NAMESPACE.svc.DOMAIN (default clusterset.local)." },
	{ S_POLICY, "--service-endpoints", "auto|slices|dns",
	  "How Service and ServiceImport backendRefs are steered. auto (default): straight to the ready endpoints "
	  "of the Service's EndpointSlices when the Service object is in the state, else through cluster DNS. "
	  "slices: always through EndpointSlices; a Service that is not in the state is refused as Envoy Gateway "
	  "refuses it (BackendNotFound), as the Kubernetes source wants. dns: always through cluster DNS, the "
	  "ClusterIP then goes through kube-proxy." },

	{ S_DAEMON, "--cgroup", "PATH",
	  "Required. The cgroup v2 directory the sock_addr programs attach to; connections from processes in it and "
	  "below are steered. On a host with the unified hierarchy /sys/fs/cgroup steers the whole node." },
	{ S_DAEMON, "--state-dir", "DIR",
	  "Where accepted manifests are stored and restored from on start (default " KB_STATE_DIR_DEFAULT "): "
	  "applied.yaml, a YAML snapshot written by temp file, fsync and rename, and applied.log, the per-object "
	  "changes since, each apply fsynced before it is acknowledged. dump-state reads the same directory." },
	{ S_DAEMON, "--watch-dir", "DIR",
	  "Treat the manifests in DIR as the desired state: applied at start and on every change (inotify, "
	  "debounced), as one replace. A Kubernetes ConfigMap mount is read through its symlinks. Objects are judged "
	  "each on its own, as Envoy Gateway judges a cluster: an invalid one (and a route that names it) is set "
	  "aside with its conditions, listed by status, and the rest is programmed. A file that is not YAML keeps "
	  "the last good state and shows the error in status." },
	{ S_DAEMON, "--kubernetes", NULL,
	  "Take the desired state from the Kubernetes API, in-cluster: the pod's service account (token re-read "
	  "when it rotates, ca.crt, namespace) and KUBERNETES_SERVICE_HOST/PORT. GatewayClass, Gateway, the routes, "
	  "ReferenceGrant, Backend, BackendTrafficPolicy, Service, EndpointSlice, ServiceImport and Namespace are "
	  "listed and watched (a kind the server does not serve is skipped); the cluster's objects are the whole "
	  "state, each judged on its own: an invalid one is set aside and listed by status, the rest programmed." },
	{ S_DAEMON, "--kubeconfig", "FILE",
	  "As --kubernetes, with FILE's current context: server, certificate-authority(-data), "
	  "client-certificate/-key(-data), token or tokenFile. Exec plugins and auth providers are not supported." },
	{ S_DAEMON, "--controller-name", "NAME",
	  "The GatewayClass controllerName whose Gateways this daemon programs (default "
	  "kbackend.io/gateway-controller). gateway.envoyproxy.io/gatewayclass-controller with --no-status "
	  "accelerates Envoy Gateway's own classes." },
	{ S_DAEMON, "--no-status", NULL, "Write no status to the Kubernetes API (another controller writes it)." },
	{ S_DAEMON, "--metrics-addr", "ADDR:PORT", "Serve Prometheus metrics at http://ADDR:PORT/metrics." },
	{ S_DAEMON, "--dns-server", "ADDR[:PORT]",
	  "A DNS server for FQDN endpoints instead of /etc/resolv.conf's (repeatable)." },
	{ S_DAEMON, "--dns-min-ttl", "DURATION", "Re-resolve no more often than this (default 5s), whatever the TTL." },
	{ S_DAEMON, "--dns-max-ttl", "DURATION", "Re-resolve at least this often (default 5m), whatever the TTL." },
	{ S_DAEMON, "--bridge-netns", "PATH",
	  "Also make the unix-sidecar bridge's listeners in the network namespace at PATH (repeatable); needs "
	  "setns(2), so CAP_SYS_ADMIN." },
	{ S_DAEMON, "--bridge-buffer", "SIZE",
	  "Bytes in flight per bridged connection and direction, 64KiB to 2GiB (default 4MiB)." },
	{ S_DAEMON, "--bridge-mode", "copy|splice",
	  "How the bridge moves bytes between TCP and unix sockets: a bounded user-space buffer (copy, the "
	  "default) or splice(2) through a pipe." },
	{ S_DAEMON, "--bridge-idle-timeout", "DURATION",
	  "Close a bridged connection that moved no byte either way for this long (default 1h; 0: never). The "
	  "client side also has TCP keepalive (60s idle, then 6 probes 10s apart)." },
	{ S_DAEMON, "--no-inbound", NULL,
	  "Do not attach the sk_lookup program that steers connections arriving from other hosts." },
	{ S_DAEMON, "--max-frontends", "N",
	  "Frontends (address, port, protocol) the maps hold, 16 to 1048576 (default 8192). An apply that needs more "
	  "is refused. A restart keeps the pinned sizes; a larger --max-frontends, --max-slots or --max-endpoints "
	  "grows the pinned maps while they steer, a smaller one is refused (docs/OPERATIONS.md, sizing)." },
	{ S_DAEMON, "--max-slots", "N",
	  "Selection-table slots over all frontends, 16 to 16777216 (default 131072); a frontend with n endpoints "
	  "of equal weight uses n, uneven weights up to 16384." },
	{ S_DAEMON, "--max-endpoints", "N",
	  "Distinct (frontend, endpoint) pairs, 16 to 1048576 (default 16384); also sizes the per-endpoint health "
	  "maps." },
	{ S_DAEMON, "--max-tracked-sockets", "N",
	  "Steered sockets open at once whose frontend getpeername and UDP replies can show, 16 to 4194304 (default "
	  "65536); unconnected UDP senders get a quarter of it. Over it, connects still go through. Fixed once "
	  "pinned: a change needs `kbackend unload`." },

	{ S_REGISTER, "--fd", "N", "The listening socket to hand over is fd N (default 3, systemd's first socket)." },
	{ S_REGISTER, "--pid", "PID", "Take fd N from process PID (pidfd_getfd(2)) instead of from kbackend itself." },
	{ S_REGISTER, "--remove", NULL, "Remove the registration for ADDR:PORT." },
};

/* Plain text to roff: backslashes and hyphens escaped, a leading dot or quote defused. */
static void esc(FILE *f, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", f);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
	}
}

static void section(FILE *f, const char *name, const char *intro)
{
	fprintf(f, ".SH \"%s\"\n", name);
	if (intro) {
		esc(f, intro);
		fputc('\n', f);
	}
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (strcmp(opts[i].section, name) != 0)
			continue;
		fputs(".TP\n\\fB", f);
		esc(f, opts[i].flag);
		fputs("\\fR", f);
		if (opts[i].arg) {
			fputs(" \\fI", f);
			esc(f, opts[i].arg);
			fputs("\\fR", f);
		}
		fputc('\n', f);
		esc(f, opts[i].text);
		fputc('\n', f);
	}
}

static const char *const body_description =
	".SH DESCRIPTION\n"
	"kbackend implements Envoy Gateway's Backend resource (gateway.envoyproxy.io/v1alpha1) inside the Linux\n"
	"kernel. It reads the manifests written for Envoy Gateway (Gateway, HTTPRoute, GRPCRoute, TLSRoute,\n"
	"TCPRoute, UDPRoute, Backend, BackendTrafficPolicy, ReferenceGrant), compiles every Gateway listener's\n"
	"backendRefs into weighted, prioritised slot tables in BPF maps, and lets cgroup sock_addr programs\n"
	"rewrite a \\fBconnect\\fR(2) aimed at a Gateway address into a connect to the chosen endpoint.\n"
	"There is no proxy in the byte path; a change or a failover is one atomic map update per frontend.\n"
	".PP\n"
	"\\fBkbackend daemon\\fR is the single writer of the maps. The other commands talk to it over a unix\n"
	"control socket; \\fBvalidate\\fR and \\fBapply \\-\\-dry\\-run\\fR work offline, without root.\n"
	"Maps, programs and links are pinned under the \\fB\\-\\-bpffs\\fR directory, so steering goes on while\n"
	"no kbackend process is alive, and a new daemon adopts them without a gap.\n";

static const char *const body_tail =
	".SH ENVIRONMENT\n"
	".TP\n"
	"\\fBKBACKEND_SOCKET\\fR\n"
	"The control socket, when \\fB\\-\\-socket\\fR is not given.\n"
	".SH FILES\n"
	".TP\n"
	"\\fI" KB_SOCKET_DEFAULT "\\fR\n"
	"The control socket: mode 0600, and the daemon also checks the peer's uid (root or its own).\n"
	".TP\n"
	"\\fI" KB_PIN_DIR_DEFAULT "/\\fR\n"
	"Pinned maps (\\fBbpftool map dump pinned " KB_PIN_DIR_DEFAULT "/frontends\\fR) and, under\n"
	"\\fIlinks/\\fR, the pinned cgroup links.\n"
	".TP\n"
	"\\fI" KB_STATE_DIR_DEFAULT "/applied.yaml\\fR, \\fIapplied.log\\fR\n"
	"The accepted manifests: a YAML snapshot and the per-object changes since it, restored when the daemon\n"
	"starts; \\fBkbackend dump\\-state\\fR prints them as YAML. A change cut short by a crash is dropped\n"
	"(it was never acknowledged). A state that cannot be trusted (unreadable, truncated, corrupt, from a\n"
	"newer kbackend) is renamed \\fIapplied.yaml.bad\\-TIME\\fR and \\fIapplied.log.bad\\-TIME\\fR; the pinned\n"
	"frontends keep serving and \\fBstatus\\fR shows the state as DEGRADED until \\fBapply \\-\\-replace\\fR.\n"
	".SH \"EXIT STATUS\"\n"
	"0 on success, 1 when the command failed (an error line \\fBkbackend: ...\\fR on standard error, or\n"
	"a refused object), 2 on a usage error.\n"
	"\\fBkbackend status\\fR exits 0 exactly when the daemon answers, which makes it a liveness probe.\n"
	".SH SECURITY\n"
	"Only root (or the daemon's own uid) may use the control socket. The SSRF guard refuses loopback,\n"
	"link\\-local (169.254.0.0/16, fe80::/10), unspecified, multicast and node addresses as endpoints,\n"
	"for IP endpoints and FQDN answers alike, unless \\fB\\-\\-allow\\-endpoint\\fR names them. Unix\n"
	"endpoints must lie under a \\fB\\-\\-unix\\-dir\\fR. kbackend never originates TLS: a Backend with\n"
	"\\fBtls\\fR settings is refused.\n"
	".SH EXAMPLES\n"
	".nf\n"
	"kbackend validate \\-f examples/\n"
	"kbackend apply \\-\\-dry\\-run \\-f examples/ \\-o json\n"
	"kbackend daemon \\-\\-cgroup /sys/fs/cgroup \\-\\-enable\\-backend &\n"
	"kbackend apply \\-f examples/ && kbackend get endpoints \\-o wide\n"
	"kbackend describe backend app\\-a \\-n default\n"
	"bpftool cgroup tree\n"
	".fi\n"
	".SH \"SEE ALSO\"\n"
	"\\fBbpftool\\fR(8), \\fBsystemd.exec\\fR(5), \\fBkubectl\\fR(1);\n"
	"docs/OPERATIONS.md and docs/ARCHITECTURE.md in the kbackend sources.\n";

void kb_man_write(FILE *f, const char *version)
{
	struct kb_cmd_doc c;

	fprintf(f, ".\\\" Generated by `kbackend help --man` from the command table: do not edit.\n");
	fprintf(f, ".TH KBACKEND 1 \"\" \"kbackend %s\" \"User Commands\"\n", version);
	fputs(".SH NAME\nkbackend \\- steer connections for Envoy Gateway Backends inside the kernel\n", f);
	/* One source line a command (the test compares them with `kbackend help NAME`), wrapped with a hanging indent. */
	fputs(".nh\n.ad l\n.SH SYNOPSIS\n", f);
	for (size_t i = 0; kb_ctl_command(i, &c); i++) {
		fprintf(f, ".PP\n.in +4n\n.ti -4n\n\\fBkbackend %s\\fR", c.name);
		if (*c.usage) {
			fputc(' ', f);
			esc(f, c.usage);
		}
		fputs("\n.in -4n\n", f);
	}
	fputs(body_description, f);
	fputs(".SH COMMANDS\n", f);
	for (size_t i = 0; kb_ctl_command(i, &c); i++) {
		fprintf(f, ".TP\n\\fB%s\\fR\n", c.name);
		esc(f, c.summary);
		fputc('\n', f);
	}
	section(f, S_COMMON, NULL);
	section(f, S_POLICY, "Accepted by daemon, and by validate and apply --dry-run, which apply the same rules offline.");
	section(f, S_DAEMON, "kbackend daemon needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN "
			     "(and CAP_SYS_ADMIN to mount bpffs or use --bridge-netns).");
	section(f, S_REGISTER, "kbackend register ADDR:PORT hands a sidecar's listening socket to the daemon.");
	fputs(body_tail, f);
}
