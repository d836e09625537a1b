// SPDX-License-Identifier: Apache-2.0
/*
 * e2e: FQDN endpoints through the daemon's resolver, against a real dnsmasq:
 * an A record that changes, the DNS server going away and coming back,
 * lookup families, SSRF filtering of answers, 1,000 names at once without
 * blocking the control socket, Service backendRefs through --cluster-domain
 * and ServiceImport ones through --clusterset-domain, and absolute
 * (trailing-dot) names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8). Nothing has a default route.
 *
 *   kbt-fnode-<pid>  198.51.100.254/24 203.0.113.254/24 2001:db8:1::fe/64 ==veth== kbt-fbe-<pid>
 *        clients (test cgroup), daemon,           198.51.100.1 198.51.100.3 203.0.113.2
 *        canary on 127.0.0.1:8080, [::1]:8080     2001:db8:1::2 2001:db8:1::3: TCP 8080 on all
 *                   203.0.113.54/30  ==veth==  kbt-fdns-<pid> 203.0.113.53/30: dnsmasq :53
 *
 * The endpoint servers answer each connection with the local address it
 * reached, then close. The canary in the node netns answers "canary": if
 * an SSRF-refused answer (127.0.0.1, ::1) were ever programmed, a connect
 * would reach it instead of being refused.
 *
 * dnsmasq answers only from a hosts file (TTL DNS_TTL s, reloaded on
 * SIGHUP), and NXDOMAIN for other names under the test's domains. The daemon
 * always runs with --dns-server DNS_ADDR: the machine's resolv.conf is never
 * used.
 */
#define FE4 "198.18.0.20"
#define FE6 "2001:db8:f::20"
#define DNS_ADDR "203.0.113.53"
#define EP_PORT 8080
#define DNS_TTL 2		/* seconds, dnsmasq --local-ttl */
#define BULK 1000		/* test 5: Backends, listeners, routes */
#define BULK_PORT0 20000
#define MAX_TRACK 8
#define MAX_KIDS 4

/* One client's results, in memory shared with the test process. */
struct track {
	int stop;
	long limit;		/* connects to make; 0: until stop */
	long total, fail;
	int first_err;
	int na;
	struct {
		char addr[48];
		long n, first_ms, last_ms;	/* CLOCK_MONOTONIC at the start of the connect */
	} a[MAX_TRACK];
};

struct env {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	char hosts[PATH_MAX];
	char dnslog[PATH_MAX];
	char dnsmasq[PATH_MAX];
	char node[64], be[64], dns[64];
	bool netns_made;
	pid_t server, canary, dnsd, daemon;
	pid_t kids[MAX_KIDS];
	struct track *t;	/* MAX_KIDS tracks, MAP_SHARED */
};

static struct env E;

/* ---- small helpers ---- */

static int write_file(const char *path, const char *content)
{
	char tmp[PATH_MAX + 8];
	FILE *f;

	/* Whole or not at all: dnsmasq may read it at any time. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fputs(content, f);
	if (fclose(f))
		return -1;
	return rename(tmp, path);
}

static void dump_logs(void)
{
	e2e_dump_file("log", E.env.log, 40);
	e2e_dump_file("dnsmasq", E.dnslog, 20);
}

/* A growing string. */
struct sb {
	char *p;
	size_t n, cap;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (b->n + (size_t)len + 1 > b->cap) {
		b->cap = (b->n + (size_t)len + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->n, (size_t)len + 1, fmt, ap);
	va_end(ap);
	b->n += (size_t)len;
}

/* ---- JSON ---- */

/* ---- topology ---- */

static int topo_up(void)
{
	char vn[32], vb[32], dn[32], dd[32];
	int pid = (int)getpid();

	snprintf(vn, sizeof(vn), "kfn%d", pid);
	snprintf(vb, sizeof(vb), "kfb%d", pid);
	snprintf(dn, sizeof(dn), "kfdn%d", pid);
	snprintf(dd, sizeof(dd), "kfdd%d", pid);
	E.netns_made = true;	/* teardown deletes the three names, made or not */
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be) || e2e_sh("ip netns add %s", E.dns))
		return -1;
	/* Every link is made inside the node netns: nothing touches the root namespace. */
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vb, E.be) ||
	    e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, dn, dd, E.dns) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.be) ||
	    e2e_sh("ip -n %s link set lo up", E.dns) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 203.0.113.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 2001:db8:1::fe/64 dev %s nodad", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 198.51.100.1/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 198.51.100.3/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 203.0.113.2/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 2001:db8:1::2/64 dev %s nodad", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 2001:db8:1::3/64 dev %s nodad", E.be, vb) ||
	    /* The /30 is more specific than the node's 203.0.113.0/24: only .53 goes this way. */
	    e2e_sh("ip -n %s addr add 203.0.113.54/30 dev %s", E.node, dn) ||
	    e2e_sh("ip -n %s addr add " DNS_ADDR "/30 dev %s", E.dns, dd) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.be, vb) ||
	    e2e_sh("ip -n %s link set %s up", E.node, dn) || e2e_sh("ip -n %s link set %s up", E.dns, dd))
		return -1;
	/* The rule that keeps mistakes on this machine: no default route anywhere. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s -6 route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s route show default | grep -q .", E.dns) ||
	    !e2e_sh("ip -n %s route show default | grep -q .", E.be))
		return -1;
	return 0;
}

/* ---- servers: endpoints (backend netns) and the canary (node netns) ---- */

static void serve_forever(struct pollfd *pf, int n, const char *fixed)
{
	for (;;) {
		if (poll(pf, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char text[64];
			int c;

			if (!(pf[i].revents & POLLIN))
				continue;
			while ((c = accept4(pf[i].fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
				const char *msg = fixed;

				if (!msg) {
					getsockname(c, (struct sockaddr *)&ss, &sl);
					if (ss.ss_family == AF_INET6)
						inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text,
							  sizeof(text));
					else
						inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text,
							  sizeof(text));
					msg = text;
				}
				if (write(c, msg, strlen(msg)) < 0)
					{ /* the client went away */ }
				close(c);
			}
		}
	}
}

static int listen_on(int af, const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	int one = 1, fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	socklen_t sl;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (af == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(EP_PORT);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(EP_PORT);
		inet_pton(AF_INET, ip, &s4->sin_addr);
		sl = sizeof(*s4);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 1024)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Fork a server in netns ns on v4 and v6 addresses; answers `fixed`, or the local address when NULL. */
static pid_t server_start(const char *ns, const char *ip4, const char *ip6, const char *fixed)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct pollfd pf[2];

		e2e_child_init();
		setpgid(0, 0);
		close(p[0]);
		if (e2e_setns(ns))
			_exit(1);
		pf[0].fd = listen_on(AF_INET, ip4);
		pf[1].fd = listen_on(AF_INET6, ip6);
		if (pf[0].fd < 0 || pf[1].fd < 0)
			_exit(2);
		pf[0].events = pf[1].events = POLLIN;
		/* Two workers on the same listeners. */
		if (fork() == 0)
			prctl(PR_SET_PDEATHSIG, SIGKILL);
		else if (write(p[1], "R", 1) != 1)
			_exit(3);
		close(p[1]);
		serve_forever(pf, 2, fixed);
	}
	setpgid(pid, pid);
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		pid = -pid;
	close(p[0]);
	return pid;
}

/* ---- dnsmasq, in the dns netns ---- */

static int dns_set_hosts(const char *content)
{
	if (write_file(E.hosts, content))
		return -1;
	if (E.dnsd > 0)
		kill(E.dnsd, SIGHUP);	/* dnsmasq re-reads --addn-hosts and clears its cache */
	return 0;
}

static void dns_stop(void)
{
	if (E.dnsd > 0) {
		kill(E.dnsd, SIGTERM);
		for (long deadline = kb_now_ms() + 3000; kb_now_ms() < deadline; e2e_sleep_ms(10))
			if (waitpid(E.dnsd, NULL, WNOHANG) == E.dnsd) {
				E.dnsd = 0;
				return;
			}
		kill(E.dnsd, SIGKILL);
		waitpid(E.dnsd, NULL, 0);
	}
	E.dnsd = 0;
}

static int dns_start(void)
{
	char hosts[PATH_MAX + 32], logf[PATH_MAX + 32], ttl[32];
	long deadline;
	pid_t pid;

	if (E.dnsd > 0)
		return 0;
	snprintf(hosts, sizeof(hosts), "--addn-hosts=%s", E.hosts);
	snprintf(logf, sizeof(logf), "--log-facility=%s", E.dnslog);
	snprintf(ttl, sizeof(ttl), "--local-ttl=%d", DNS_TTL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		e2e_child_init();
		if (e2e_setns(E.dns))
			_exit(126);
		/* No resolv.conf, no /etc/hosts, no upstream: only the test's names. Root, to read E.env.tmp (0700). */
		execl(E.dnsmasq, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
		      "--bind-interfaces", "--listen-address=" DNS_ADDR, "--port=53", "--user=root", "--pid-file=",
		      hosts, ttl, "--log-queries", logf, "--local=/fqdn.test/", "--local=/search.test/",
		      "--local=/cluster.local/", "--local=/corp.test/", (char *)NULL);
		_exit(127);
	}
	E.dnsd = pid;
	for (deadline = kb_now_ms() + 5000; kb_now_ms() < deadline; e2e_sleep_ms(20)) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			E.dnsd = 0;
			return -1;
		}
		if (!e2e_sh("nsenter --net=/run/netns/%s ss -Hlun 'src " DNS_ADDR ":53' | grep -q .", E.dns))
			return 0;
	}
	return -1;
}

/* ---- the daemon, a child in the node netns; a fresh one (and state) for every test ---- */

static struct json_object *ctl(const char *op, int timeout_ms)
{
	return e2e_ctl(E.env.sock, op, timeout_ms);
}

static void daemon_stop(void)
{
	if (E.daemon > 0) {
		struct json_object *r = ctl("unload", 5000);
		long deadline;

		json_object_put(r);
		for (deadline = kb_now_ms() + 5000; kb_now_ms() < deadline; e2e_sleep_ms(10))
			if (waitpid(E.daemon, NULL, WNOHANG) == E.daemon)
				break;
		if (kb_now_ms() >= deadline) {
			kill(E.daemon, SIGKILL);
			waitpid(E.daemon, NULL, 0);
		}
	}
	E.daemon = 0;
	if (E.env.bpffs[0])
		kb_dataplane_unload(E.env.bpffs);
}

/* extra: more daemon flags (NULL-terminated, may be NULL); localdomain: $LOCALDOMAIN for c-ares, or NULL. */
static void daemon_start(const char *const *extra, const char *localdomain)
{
	const char *argv[32];
	size_t n = 0;
	pid_t pid;

	daemon_stop();
	e2e_sh("rm -rf '%s'", E.env.state);
	argv[n++] = "kbackend";
	argv[n++] = "daemon";
	argv[n++] = "--cgroup";
	argv[n++] = E.env.cgroup;
	argv[n++] = "--bpffs";
	argv[n++] = E.env.bpffs;
	argv[n++] = "--state-dir";
	argv[n++] = E.env.state;
	argv[n++] = "--socket";
	argv[n++] = E.env.sock;
	/* Always: this machine's resolv.conf points off the machine. */
	argv[n++] = "--dns-server";
	argv[n++] = DNS_ADDR ":53";
	argv[n++] = "--dns-min-ttl";
	argv[n++] = "1s";
	argv[n++] = "--dns-max-ttl";
	argv[n++] = "30s";
	for (size_t i = 0; extra && extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd;

		e2e_child_init();
		fd = open(E.env.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0 || e2e_setns(E.node))
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		if (localdomain) {
			/* c-ares reads the search list and options from the environment too. */
			setenv("LOCALDOMAIN", localdomain, 1);
			setenv("RES_OPTIONS", "ndots:5", 1);
		} else {
			unsetenv("LOCALDOMAIN");
			unsetenv("RES_OPTIONS");
		}
		execv(E.env.kb, (char *const *)argv);
		_exit(127);
	}
	E.daemon = pid;
	if (!e2e_daemon_wait(&E.daemon, E.env.sock, 15000))
		return;
	dump_logs();
	fail_msg("the daemon did not start");
}

/* ---- the CLI: build/kbackend with KBACKEND_SOCKET set; stdout captured, stderr to the log ---- */

#define CLI(out, ...) e2e_cli(E.env.kb, E.env.sock, E.env.log, (out), (const char *const[]){ __VA_ARGS__, NULL })

/* `kbackend get endpoints -o json`: the frontends array (caller puts it). */
static struct json_object *get_endpoints(void)
{
	struct json_object *j;
	char *out = NULL;
	int rc = CLI(&out, "get", "endpoints", "-o", "json");

	if (rc != 0) {
		dump_logs();
		fail_msg("kbackend get endpoints -o json: exit %d", rc);
	}
	j = json_tokener_parse(out);
	if (!j || !json_object_is_type(j, json_type_array))
		fail_msg("get endpoints -o json: not a JSON array: %.300s", out);
	free(out);
	return j;
}

static struct json_object *find_frontend(struct json_object *fes, const char *addr, long port)
{
	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);

		if (!strcmp(e2e_jstr(fe, "address"), addr) && e2e_jint(fe, "port") == port)
			return fe;
	}
	return NULL;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The programmed endpoint addresses of a frontend, sorted, joined by ","; "" when none, "-" when no such frontend. */
static void fe_addrs(struct json_object *fes, const char *addr, long port, char *buf, size_t len)
{
	struct json_object *fe = find_frontend(fes, addr, port), *eps = e2e_jget(fe, "endpoints");
	const char *v[64];
	size_t n = 0, off = 0;

	buf[0] = '\0';
	if (!fe) {
		snprintf(buf, len, "-");
		return;
	}
	for (size_t i = 0; eps && i < json_object_array_length(eps) && n < 64; i++)
		v[n++] = e2e_jstr(json_object_array_get_idx(eps, i), "address");
	qsort(v, n, sizeof(v[0]), str_cmp);
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", v[i]);
}

/* The resolver's object for host at a frontend: on a programmed endpoint, or in a locality's "dns" (a new ref). */
static struct json_object *dns_of(struct json_object *fes, const char *addr, long port, const char *host)
{
	struct json_object *fe = find_frontend(fes, addr, port), *eps = e2e_jget(fe, "endpoints"), *locs = e2e_jget(fe, "localities");

	for (size_t i = 0; eps && i < json_object_array_length(eps); i++) {
		struct json_object *ep = json_object_array_get_idx(eps, i);

		if (!strcmp(e2e_jstr(ep, "fqdn"), host) && e2e_jget(ep, "dns"))
			return json_object_get(e2e_jget(ep, "dns"));
	}
	for (size_t i = 0; locs && i < json_object_array_length(locs); i++) {
		struct json_object *d = e2e_jget(e2e_jget(json_object_array_get_idx(locs, i), "dns"), host);

		if (d)
			return json_object_get(d);
	}
	return NULL;
}

/* Poll `get endpoints -o json` until the frontend's programmed addresses are `want`; the time it took, or -1. */
static long wait_addrs(const char *addr, long port, const char *want, long timeout_ms)
{
	long t0 = kb_now_ms();
	char got[1024] = "";

	for (;;) {
		struct json_object *fes = get_endpoints();

		fe_addrs(fes, addr, port, got, sizeof(got));
		json_object_put(fes);
		if (!strcmp(got, want))
			return kb_now_ms() - t0;
		if (kb_now_ms() - t0 > timeout_ms)
			break;
		e2e_sleep_ms(50);
	}
	fprintf(stderr, "# %s:%ld: endpoints \"%s\", expected \"%s\"\n", addr, port, got, want);
	return -1;
}

#define ASSERT_ADDRS(addr, port, want, timeout_ms)                                                \
	do {                                                                                      \
		if (wait_addrs((addr), (port), (want), (timeout_ms)) < 0) {                       \
			dump_logs();                                                              \
			fail_msg("%s:%d never programmed with %s", (addr), (int)(port), (want));  \
		}                                                                                 \
	} while (0)

/* ---- apply ---- */

static void apply_yaml(const char *yaml, long *took_ms)
{
	struct json_object *req = e2e_files_req("apply", "fqdn.yaml", yaml), *reply;
	long t0 = kb_now_ms();

	reply = kb_ctl_call(E.env.sock, req, 120000);
	json_object_put(req);
	if (took_ms)
		*took_ms = kb_now_ms() - t0;
	if (!e2e_reply_ok(reply)) {
		dump_logs();
		fail_msg("apply refused: %.2000s", reply ? json_object_to_json_string(e2e_jget(reply, "diagnostics")) : strerror(errno));
	}
	json_object_put(reply);
}

/*
 * `kbackend verify`: the daemon's table equals a from-scratch compile; and
 * how many changes (DNS ones included) it made scoped so far.
 */
static long verify_ok(void)
{
	struct json_object *req = json_object_new_object(), *reply;
	long scoped;

	json_object_object_add(req, "op", json_object_new_string("verify"));
	reply = kb_ctl_call(E.env.sock, req, 60000);
	json_object_put(req);
	if (!e2e_reply_ok(reply))
		fail_msg("verify: %s", reply ? json_object_to_json_string(reply) : strerror(errno));
	scoped = e2e_jint(reply, "scopedChanges");
	json_object_put(reply);
	return scoped;
}

/* ---- manifests ---- */

/* EnvoyGateway, and Gateway eg at FE4 (and FE6) with TCP listeners "l<port>". */
static void y_head(struct sb *b, const int *ports, size_t n, bool v6)
{
	sb_printf(b,
		  "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		  "kind: EnvoyGateway\n"
		  "metadata:\n"
		  "  name: envoy-gateway\n"
		  "  namespace: envoy-gateway-system\n"
		  "extensionApis:\n"
		  "  enableBackend: true\n"
		  "---\n"
		  "apiVersion: gateway.networking.k8s.io/v1\n"
		  "kind: Gateway\n"
		  "metadata:\n"
		  "  name: eg\n"
		  "  namespace: default\n"
		  "spec:\n"
		  "  gatewayClassName: eg\n"
		  "  addresses:\n"
		  "    - type: IPAddress\n"
		  "      value: " FE4 "\n");
	if (v6)
		sb_printf(b, "    - type: IPAddress\n      value: \"" FE6 "\"\n");
	sb_printf(b, "  listeners:\n");
	for (size_t i = 0; i < n; i++)
		sb_printf(b, "    - name: l%d\n      protocol: TCP\n      port: %d\n", ports[i], ports[i]);
}

/* Backend `name` with one fqdn endpoint per host, port EP_PORT. */
static void y_backend(struct sb *b, const char *name, const char *const *hosts, size_t n)
{
	sb_printf(b,
		  "---\n"
		  "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		  "kind: Backend\n"
		  "metadata:\n"
		  "  name: %s\n"
		  "  namespace: default\n"
		  "spec:\n"
		  "  endpoints:\n",
		  name);
	for (size_t i = 0; i < n; i++)
		sb_printf(b, "    - fqdn:\n        hostname: %s\n        port: %d\n", hosts[i], EP_PORT);
}

/* TCPRoute r<port> on listener l<port> to a Backend, or to a Service (kind "Service", with port). */
static void y_route(struct sb *b, int port, const char *kind, const char *ref)
{
	sb_printf(b,
		  "---\n"
		  "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		  "kind: TCPRoute\n"
		  "metadata:\n"
		  "  name: r%d\n"
		  "  namespace: default\n"
		  "spec:\n"
		  "  parentRefs:\n"
		  "    - name: eg\n"
		  "      sectionName: l%d\n"
		  "  rules:\n"
		  "    - backendRefs:\n",
		  port, port);
	if (!strcmp(kind, "Service"))
		sb_printf(b, "        - kind: Service\n          name: %s\n          port: %d\n", ref, EP_PORT);
	else if (!strcmp(kind, "ServiceImport"))
		sb_printf(b, "        - group: multicluster.x-k8s.io\n          kind: ServiceImport\n          name: %s\n"
			  "          port: %d\n", ref, EP_PORT);
	else
		sb_printf(b, "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: %s\n", ref);
}

/* BackendTrafficPolicy on TCPRoute r<port>: spec.dns.lookupFamily. */
static void y_family(struct sb *b, int port, const char *family)
{
	sb_printf(b,
		  "---\n"
		  "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		  "kind: BackendTrafficPolicy\n"
		  "metadata:\n"
		  "  name: dns-r%d\n"
		  "  namespace: default\n"
		  "spec:\n"
		  "  targetRefs:\n"
		  "    - group: gateway.networking.k8s.io\n"
		  "      kind: TCPRoute\n"
		  "      name: r%d\n"
		  "  dns:\n"
		  "    lookupFamily: %s\n",
		  port, port, family);
}

/* One listener, one route, one Backend with these FQDNs. */
static void apply_simple(int port, const char *const *hosts, size_t n)
{
	struct sb b = { 0 };

	y_head(&b, &port, 1, true);
	y_backend(&b, "app", hosts, n);
	y_route(&b, port, "Backend", "app");
	apply_yaml(b.p, NULL);
	free(b.p);
}

/* ---- clients: in the test cgroup and the node netns ---- */

/* One TCP connection; out gets what the endpoint answered. 0 or -errno. */
static int tcp_ident(int af, const char *ip, int port, char *out, size_t len)
{
	struct sockaddr_storage ss = { 0 };
	struct timeval tv = { 3, 0 };
	socklen_t sl;
	size_t got = 0;
	ssize_t n;
	int fd, err = 0;

	if (af == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((__u16)port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((__u16)port);
		inet_pton(AF_INET, ip, &s4->sin_addr);
		sl = sizeof(*s4);
	}
	fd = socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, sl)) {
		err = -errno;
		goto out;
	}
	/* Read to EOF: the endpoint closes first, so the client leaves no TIME_WAIT behind. */
	while (got < len - 1 && (n = recv(fd, out + got, len - 1 - got, 0)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		got += (size_t)n;
	}
	out[got] = '\0';
	if (!got)
		err = -ENODATA;
out:
	close(fd);
	return err;
}

static void track_add(struct track *t, const char *addr, long t0)
{
	int i;

	for (i = 0; i < t->na; i++)
		if (!strcmp(t->a[i].addr, addr))
			break;
	if (i == t->na) {
		if (t->na == MAX_TRACK)
			i = MAX_TRACK - 1;	/* "other": should never fill up */
		else
			t->na++;
		snprintf(t->a[i].addr, sizeof(t->a[i].addr), "%s", addr);
		t->a[i].first_ms = t0;
	}
	t->a[i].n++;
	t->a[i].last_ms = t0;
}

static void client_main(struct track *t, int af, const char *ip, int port, long pause_ms)
{
	char buf[128];

	if (e2e_cgroup_enter(E.env.cgroup, 0) || e2e_setns(E.node))
		_exit(99);
	for (long i = 0; !__atomic_load_n(&t->stop, __ATOMIC_RELAXED) && (!t->limit || i < t->limit); i++) {
		long t0 = kb_now_ms();
		int err = tcp_ident(af, ip, port, buf, sizeof(buf));

		t->total++;
		if (err) {
			if (!t->fail)
				t->first_err = -err;
			t->fail++;
		} else {
			track_add(t, buf, t0);
		}
		if (pause_ms)
			e2e_sleep_ms(pause_ms);
	}
	_exit(0);
}

static void client_spawn(int idx, int af, const char *ip, int port, long limit, long pause_ms)
{
	pid_t pid;

	assert_true(idx < MAX_KIDS && E.kids[idx] <= 0);
	memset(&E.t[idx], 0, sizeof(E.t[idx]));
	E.t[idx].limit = limit;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		client_main(&E.t[idx], af, ip, port, pause_ms);
	}
	E.kids[idx] = pid;
}

static void client_wait(int idx, bool stop)
{
	int status = e2e_kid_wait(&E.kids[idx], stop ? &E.t[idx].stop : NULL, kb_now_ms() + 60000);

	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("client %d died (status %#x)", idx, status);
}

static void clients_kill(void)
{
	e2e_kids_kill(E.kids, MAX_KIDS);
}

/* `count` connects by a fresh client; its track. */
static const struct track *connect_n(int af, const char *ip, int port, long count)
{
	client_spawn(MAX_KIDS - 1, af, ip, port, count, 0);
	client_wait(MAX_KIDS - 1, false);
	return &E.t[MAX_KIDS - 1];
}

static long track_n(const struct track *t, const char *addr)
{
	for (int i = 0; i < t->na; i++)
		if (!strcmp(t->a[i].addr, addr))
			return t->a[i].n;
	return 0;
}

static void track_print(const char *what, const struct track *t)
{
	fprintf(stderr, "# %s: %ld connect(s), %ld failed%s%s", what, t->total, t->fail, t->fail ? ": " : "",
		t->fail ? strerror(t->first_err) : "");
	for (int i = 0; i < t->na; i++)
		fprintf(stderr, "; %s x%ld", t->a[i].addr, t->a[i].n);
	fprintf(stderr, "\n");
}

/* Every one of `count` connects to ip:port is answered by `want`. */
static void assert_all_reach(int af, const char *ip, int port, long count, const char *want)
{
	const struct track *t = connect_n(af, ip, port, count);

	if (t->fail || track_n(t, want) != count) {
		track_print("connects", t);
		fail_msg("%s:%d: expected all %ld connects answered by %s", ip, port, count, want);
	}
}

/* ---- setup and teardown ---- */

static int group_teardown(void **state);

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_logs, group_teardown);
}

static int group_setup(void **state)
{
	int pid = (int)getpid();

	if (e2e_env_setup(&E.env, "fqdn"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	/* `make deps` installs these: missing, they are a failure, not a skip. */
	if (e2e_sh("command -v ss") || e2e_sh("command -v nsenter"))
		return setup_failed("needs ss (iproute2) and nsenter (util-linux); run `make deps`");
	snprintf(E.dnsmasq, sizeof(E.dnsmasq), "%s", getenv("DNSMASQ") ? getenv("DNSMASQ") : "/usr/sbin/dnsmasq");
	if (access(E.dnsmasq, X_OK))
		return setup_failed("needs dnsmasq (/usr/sbin/dnsmasq, package dnsmasq-base); run `make deps`");
	E.t = mmap(NULL, sizeof(*E.t) * MAX_KIDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.t == MAP_FAILED) {
		E.t = NULL;
		return setup_failed("mmap");
	}
	snprintf(E.hosts, sizeof(E.hosts), "%s/hosts", E.env.tmp);
	snprintf(E.dnslog, sizeof(E.dnslog), "%s/dnsmasq.log", E.env.tmp);
	snprintf(E.node, sizeof(E.node), "kbt-fnode-%d", pid);
	snprintf(E.be, sizeof(E.be), "kbt-fbe-%d", pid);
	snprintf(E.dns, sizeof(E.dns), "kbt-fdns-%d", pid);
	if (topo_up())
		return setup_failed("topology");
	E.server = server_start(E.be, "0.0.0.0", "::", NULL);
	if (E.server <= 0)
		return setup_failed("endpoint servers");
	E.canary = server_start(E.node, "127.0.0.1", "::1", "canary");
	if (E.canary <= 0)
		return setup_failed("canary servers");
	if (write_file(E.hosts, "") || dns_start())
		return setup_failed("dnsmasq did not start");
	return 0;
}

static int group_teardown(void **state)
{
	/* Idempotent: a failed setup runs it too. */
	clients_kill();
	daemon_stop();
	dns_stop();
	e2e_kill_group(&E.server);
	e2e_kill_group(&E.canary);
	E.env.bpffs[0] = '\0';
	e2e_netns_del(&E.netns_made, E.node, E.be, E.dns, NULL);
	e2e_env_teardown(&E.env, dump_logs);
	if (E.t)
		munmap(E.t, sizeof(*E.t) * MAX_KIDS);
	E.t = NULL;
	return 0;
}

/* After every test, even a failed one: no client or daemon outlives it; DNS is back up. */
static int test_teardown(void **state)
{
	if (E.env.skip)
		return 0;
	clients_kill();
	daemon_stop();
	if (dns_start())
		fprintf(stderr, "# dnsmasq did not restart\n");
	return 0;
}

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

/* ---- tests ---- */

/* 1. An A record changes: new connects follow within TTL + 2 s; none reaches the old address after that. */
static void test_a_record_change(void **state)
{
	static const char *const hosts[] = { "app.fqdn.test" };
	const long bound = (DNS_TTL + 2) * 1000L;
	struct json_object *fes, *d;
	const struct track *t;
	long t_change, old_last = -1, new_first = -1, old_first = -1;

	NEED_ENV();
	assert_int_equal(dns_set_hosts("198.51.100.1 app.fqdn.test\n"), 0);
	daemon_start(NULL, NULL);
	apply_simple(81, hosts, 1);
	ASSERT_ADDRS(FE4, 81, "198.51.100.1", 10000);

	client_spawn(0, AF_INET, FE4, 81, 0, 1);
	e2e_sleep_ms(1000);
	assert_int_equal(dns_set_hosts("198.51.100.3 app.fqdn.test\n"), 0);
	t_change = kb_now_ms();
	e2e_sleep_ms(bound + 2000);
	client_wait(0, true);
	t = &E.t[0];
	track_print("loop", t);
	for (int i = 0; i < t->na; i++) {
		if (!strcmp(t->a[i].addr, "198.51.100.1")) {
			old_first = t->a[i].first_ms;
			old_last = t->a[i].last_ms;
		} else if (!strcmp(t->a[i].addr, "198.51.100.3")) {
			new_first = t->a[i].first_ms;
		} else {
			fail_msg("a connect reached %s, which is neither the old nor the new address", t->a[i].addr);
		}
	}
	fprintf(stderr, "# record changed at +0 ms; old 198.51.100.1: first %+ld ms, last %+ld ms; new 198.51.100.3: first %+ld ms (bound %ld ms)\n",
		old_first - t_change, old_last - t_change, new_first >= 0 ? new_first - t_change : -1, bound);
	assert_int_equal(t->fail, 0);
	assert_true(old_first >= 0 && old_first < t_change);
	if (new_first < 0)
		fail_msg("no connect reached the new address within %ld ms", bound + 2000);
	if (new_first - t_change > bound)
		fail_msg("the first connect to the new address came %ld ms after the change (bound %ld)",
			 new_first - t_change, bound);
	if (old_last - t_change > bound)
		fail_msg("a connect reached the old address %ld ms after the change (bound %ld)", old_last - t_change,
			 bound);

	/* The DNS table agrees: the new address, with dnsmasq's TTL as answered. */
	fes = get_endpoints();
	d = dns_of(fes, FE4, 81, "app.fqdn.test");
	assert_non_null(d);
	assert_string_equal(e2e_jstr(d, "state"), "resolved");
	assert_int_equal(e2e_jint(d, "ttl_s"), DNS_TTL);
	assert_string_equal(e2e_jstr(json_object_array_get_idx(e2e_jget(d, "addresses"), 0), "address"), "198.51.100.3");
	json_object_put(d);
	json_object_put(fes);
	/* The answer moved the frontend through a scoped recompile (the apply before was whole), equal to a whole one. */
	assert_true(verify_ok() >= 1);
}

/* 2. The DNS server stops: the old answer keeps serving, the error shows (stale); service resumes when it returns. */
static void test_dns_server_stops(void **state)
{
	static const char *const hosts[] = { "app.fqdn.test" };
	struct json_object *fes, *d = NULL;
	long t_stop, t_back, took = -1, deadline;
	char err[128] = "";

	NEED_ENV();
	assert_int_equal(dns_set_hosts("198.51.100.1 app.fqdn.test\n"), 0);
	daemon_start(NULL, NULL);
	apply_simple(81, hosts, 1);
	ASSERT_ADDRS(FE4, 81, "198.51.100.1", 10000);

	dns_stop();
	t_stop = kb_now_ms();
	for (deadline = kb_now_ms() + 15000; kb_now_ms() < deadline; e2e_sleep_ms(100)) {
		fes = get_endpoints();
		json_object_put(d);
		d = dns_of(fes, FE4, 81, "app.fqdn.test");
		json_object_put(fes);
		if (d && !strcmp(e2e_jstr(d, "state"), "stale") && e2e_jstr(d, "last_error")[0]) {
			took = kb_now_ms() - t_stop;
			break;
		}
	}
	if (took < 0)
		fail_msg("the DNS outage never showed: %s", d ? json_object_to_json_string(d) : "(no dns object)");
	snprintf(err, sizeof(err), "%s", e2e_jstr(d, "last_error"));
	fprintf(stderr, "# DNS down: state stale, last_error \"%s\" after %ld ms\n", err, took);
	json_object_put(d);
	d = NULL;

	/* Still serving the last good answer, past its TTL, through retries (at least two failed in a row). */
	assert_all_reach(AF_INET, FE4, 81, 50, "198.51.100.1");
	for (deadline = kb_now_ms() + 15000;; e2e_sleep_ms(100)) {
		fes = get_endpoints();
		d = dns_of(fes, FE4, 81, "app.fqdn.test");
		json_object_put(fes);
		assert_non_null(d);
		if (kb_now_ms() - t_stop > DNS_TTL * 1000 + 1500 && e2e_jint(d, "consecutive_failures") >= 2)
			break;
		if (kb_now_ms() > deadline)
			fail_msg("DNS down for %ld ms: %s", kb_now_ms() - t_stop, json_object_to_json_string(d));
		json_object_put(d);
	}
	assert_all_reach(AF_INET, FE4, 81, 50, "198.51.100.1");
	assert_string_equal(e2e_jstr(d, "state"), "stale");
	assert_true(e2e_jstr(d, "last_error")[0] != '\0');
	assert_true(e2e_jint(d, "consecutive_failures") >= 2);
	fprintf(stderr, "# still down after %ld ms: %ld consecutive failure(s), last_error \"%s\"\n",
		kb_now_ms() - t_stop, e2e_jint(d, "consecutive_failures"), e2e_jstr(d, "last_error"));
	json_object_put(d);

	/* DNS returns, with a new answer. */
	assert_int_equal(dns_set_hosts("198.51.100.3 app.fqdn.test\n"), 0);
	assert_int_equal(dns_start(), 0);
	t_back = kb_now_ms();
	took = wait_addrs(FE4, 81, "198.51.100.3", 15000);
	if (took < 0) {
		dump_logs();
		fail_msg("the new answer was not picked up within 15 s of DNS coming back");
	}
	fprintf(stderr, "# DNS back: new answer programmed %ld ms later\n", kb_now_ms() - t_back);
	assert_all_reach(AF_INET, FE4, 81, 50, "198.51.100.3");
	fes = get_endpoints();
	d = dns_of(fes, FE4, 81, "app.fqdn.test");
	json_object_put(fes);
	assert_string_equal(e2e_jstr(d, "state"), "resolved");
	assert_int_equal(e2e_jint(d, "consecutive_failures"), 0);
	json_object_put(d);
}

/* 3. Lookup families (BackendTrafficPolicy spec.dns.lookupFamily on the route). */
static void test_lookup_families(void **state)
{
	static const struct {
		int port;
		const char *host, *family;	/* NULL: no policy, IPv4Preferred */
		const char *want;		/* programmed endpoints */
		int af;				/* the frontend a real client uses */
		const char *reach[2];		/* what answers it */
	} cases[] = {
		{ 83, "v6a.fqdn.test", "IPv6", "2001:db8:1::2", AF_INET6, { "2001:db8:1::2" } },
		{ 84, "v6b.fqdn.test", "IPv4AndIPv6", "2001:db8:1::2", AF_INET6, { "2001:db8:1::2" } },
		{ 85, "duala.fqdn.test", NULL, "198.51.100.1", AF_INET, { "198.51.100.1" } },
		{ 86, "dualb.fqdn.test", "IPv6Preferred", "2001:db8:1::2", AF_INET6, { "2001:db8:1::2" } },
		{ 87, "dualc.fqdn.test", "IPv4AndIPv6", "198.51.100.1,2001:db8:1::3", AF_INET6,
		  { "198.51.100.1", "2001:db8:1::3" } },
		{ 88, "duald.fqdn.test", "IPv4", "198.51.100.1", AF_INET, { "198.51.100.1" } },
	};
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	struct json_object *fes;
	struct sb b = { 0 };
	int ports[8];

	NEED_ENV();
	/* A names have AAAA siblings except v6a/v6b (AAAA only). */
	assert_int_equal(dns_set_hosts("2001:db8:1::2 v6a.fqdn.test v6b.fqdn.test\n"
				       "198.51.100.1 duala.fqdn.test dualb.fqdn.test dualc.fqdn.test duald.fqdn.test\n"
				       "2001:db8:1::2 duala.fqdn.test dualb.fqdn.test duald.fqdn.test\n"
				       "2001:db8:1::3 dualc.fqdn.test\n"),
			 0);
	daemon_start(NULL, NULL);
	for (size_t i = 0; i < n; i++)
		ports[i] = cases[i].port;
	y_head(&b, ports, n, true);
	for (size_t i = 0; i < n; i++) {
		char name[32];

		snprintf(name, sizeof(name), "b%d", cases[i].port);
		y_backend(&b, name, &cases[i].host, 1);
		y_route(&b, cases[i].port, "Backend", name);
		if (cases[i].family)
			y_family(&b, cases[i].port, cases[i].family);
	}
	apply_yaml(b.p, NULL);
	free(b.p);

	for (size_t i = 0; i < n; i++) {
		const char *fam = cases[i].family ? cases[i].family : "IPv4Preferred";
		struct json_object *d;
		const char *fe = cases[i].af == AF_INET6 ? FE6 : FE4;
		const struct track *t;
		long want_n = 40;

		/*
		 * Checked on the frontend the client uses: an IPv4 frontend never
		 * holds IPv6 endpoints (IPv4 sockets cannot reach them), an IPv6
		 * frontend holds both.
		 */
		ASSERT_ADDRS(fe, cases[i].port, cases[i].want, 10000);
		/*
		 * With a 2 s TTL a refresh may be in flight or have timed out on a
		 * loaded machine ("expired", "stale" keep the last answer): wait for
		 * a round that ended resolved.
		 */
		for (long deadline = kb_now_ms() + 10000;; e2e_sleep_ms(100)) {
			fes = get_endpoints();
			d = dns_of(fes, fe, cases[i].port, cases[i].host);
			json_object_put(fes);
			assert_non_null(d);
			if (!strcmp(e2e_jstr(d, "state"), "resolved") || kb_now_ms() > deadline)
				break;
			json_object_put(d);
		}
		assert_string_equal(e2e_jstr(d, "lookupFamily"), fam);
		assert_string_equal(e2e_jstr(d, "state"), "resolved");
		json_object_put(d);

		t = connect_n(cases[i].af, fe, cases[i].port, want_n);
		fprintf(stderr, "# %-15s %-13s -> programmed %s; ", cases[i].host, fam, cases[i].want);
		track_print(cases[i].af == AF_INET6 ? "via [" FE6 "]" : "via " FE4, t);
		assert_int_equal(t->fail, 0);
		if (track_n(t, cases[i].reach[0]) + (cases[i].reach[1] ? track_n(t, cases[i].reach[1]) : 0) != want_n)
			fail_msg("%s: a connect was answered by another address", cases[i].host);
		for (int r = 0; r < 2 && cases[i].reach[r]; r++)
			if (!track_n(t, cases[i].reach[r]))
				fail_msg("%s: no connect reached %s", cases[i].host, cases[i].reach[r]);
	}
}

/* The refused entry for addr in a dns object, or NULL. */
static struct json_object *refused_entry(struct json_object *d, const char *addr)
{
	struct json_object *r = e2e_jget(d, "refused");

	for (size_t i = 0; r && i < json_object_array_length(r); i++)
		if (!strcmp(e2e_jstr(json_object_array_get_idx(r, i), "address"), addr))
			return json_object_array_get_idx(r, i);
	return NULL;
}

/* 4. Answers in refused ranges are filtered and reported; nothing left means ECONNREFUSED. */
static void test_refused_answers(void **state)
{
	static const char *const bad[] = { "lo.fqdn.test", "meta.fqdn.test", "lo6.fqdn.test" };
	static const char *const mixed[] = { "mixed.fqdn.test" };
	static const struct {
		const char *host, *addr, *why;
	} refused[] = {
		{ "lo.fqdn.test", "127.0.0.1", "loopback" },
		{ "meta.fqdn.test", "169.254.169.254", "link-local" },
		{ "lo6.fqdn.test", "::1", "loopback" },
	};
	int ports[2] = { 89, 90 };
	struct json_object *fes, *d, *un;
	const struct track *t;
	struct sb b = { 0 };
	char got[256];

	NEED_ENV();
	assert_int_equal(dns_set_hosts("127.0.0.1 lo.fqdn.test mixed.fqdn.test\n"
				       "169.254.169.254 meta.fqdn.test\n"
				       "::1 lo6.fqdn.test\n"
				       "198.51.100.1 mixed.fqdn.test\n"),
			 0);
	daemon_start(NULL, NULL);
	y_head(&b, ports, 2, true);
	y_backend(&b, "bad", bad, 3);
	y_route(&b, 89, "Backend", "bad");
	y_backend(&b, "mixed", mixed, 1);
	y_route(&b, 90, "Backend", "mixed");
	apply_yaml(b.p, NULL);
	free(b.p);

	ASSERT_ADDRS(FE4, 90, "198.51.100.1", 10000);
	/* Wait until every bad name has been answered (and judged). */
	for (long deadline = kb_now_ms() + 10000;; e2e_sleep_ms(100)) {
		bool all = true;

		fes = get_endpoints();
		for (size_t i = 0; i < 3; i++) {
			d = dns_of(fes, FE4, 89, refused[i].host);
			all = all && d && refused_entry(d, refused[i].addr);
			json_object_put(d);
		}
		if (all)
			break;
		json_object_put(fes);
		if (kb_now_ms() > deadline)
			fail_msg("the refused answers never showed in get endpoints -o json");
	}
	fe_addrs(fes, FE4, 89, got, sizeof(got));
	assert_string_equal(got, "");
	un = e2e_jget(json_object_array_get_idx(e2e_jget(find_frontend(fes, FE4, 89), "localities"), 0), "unresolved");
	assert_non_null(un);
	assert_int_equal(json_object_array_length(un), 3);
	for (size_t i = 0; i < 3; i++) {
		struct json_object *r;

		d = dns_of(fes, FE4, 89, refused[i].host);
		r = refused_entry(d, refused[i].addr);
		assert_int_equal(json_object_array_length(e2e_jget(d, "addresses")), 0);
		if (!strstr(e2e_jstr(r, "reason"), refused[i].why))
			fail_msg("%s: refused %s with reason \"%s\", expected it to say %s", refused[i].host,
				 refused[i].addr, e2e_jstr(r, "reason"), refused[i].why);
		fprintf(stderr, "# %s -> %s refused: %s\n", refused[i].host, refused[i].addr, e2e_jstr(r, "reason"));
		json_object_put(d);
	}
	/* The mixed name keeps its good address and reports the bad one. */
	d = dns_of(fes, FE4, 90, "mixed.fqdn.test");
	assert_non_null(refused_entry(d, "127.0.0.1"));
	json_object_put(d);
	json_object_put(fes);

	/* Nothing is programmed: refused, never the canary on 127.0.0.1 / ::1 in the node netns. */
	t = connect_n(AF_INET, FE4, 89, 5);
	track_print("via " FE4 ":89", t);
	assert_int_equal(t->fail, 5);
	assert_int_equal(t->first_err, ECONNREFUSED);
	t = connect_n(AF_INET6, FE6, 89, 5);
	track_print("via [" FE6 "]:89", t);
	assert_int_equal(t->fail, 5);
	assert_int_equal(t->first_err, ECONNREFUSED);
	assert_all_reach(AF_INET, FE4, 90, 50, "198.51.100.1");
}

/* The NXDOMAIN names' consecutive failures, summed: it grows with every retry round the resolver finishes. */
static long bulk_retries(struct json_object *fes)
{
	long sum = 0;

	for (int i = 9; i < BULK; i += 10) {
		char host[64];
		struct json_object *d;

		snprintf(host, sizeof(host), "n%d.bulk.fqdn.test", i);
		d = dns_of(fes, FE4, BULK_PORT0 + i, host);
		if (d)
			sum += e2e_jint(d, "consecutive_failures");
		json_object_put(d);
	}
	return sum;
}

/*
 * 5. 1,000 FQDN Backends at once: the daemon's loop never blocks on them.
 * While the names resolve, refresh and retry (the resolver's own progress is
 * read from get endpoints), every `status` and `get` is answered: a loop
 * that waited on DNS would miss the generous per-request bound (10 s, ten
 * c-ares query timeouts). The latencies are measured and printed, not bounded
 * tighter: on a slow or shared machine they say how loaded it was. The 10 s is
 * not scaled by KB_SCALE (e2e.h): c-ares' timeouts are wall-clock time on any
 * CPU, so a larger bound in the emulated 6.1 guest (where the slowest answer
 * took 2.5 s) would let a loop that waits on DNS pass there.
 */
static void test_thousand_names(void **state)
{
	const int bound = 10000;
	const long answered = BULK - BULK / 10;
	long apply_ms, t0, max_st = 0, max_get = 0, sum_st = 0, sum_get = 0, calls = 0, done_at = -1, end = 0;
	long max_raw_st = 0, max_raw_get = 0, retries0 = -1, retries1 = -1, mid = 0;
	struct sb b = { 0 }, h = { 0 };
	static int ports[BULK];
	const struct track *t;

	NEED_ENV();
	/* Every tenth name has no record: NXDOMAIN, retried with backoff all along. */
	for (int i = 0; i < BULK; i++)
		if (i % 10 != 9)
			sb_printf(&h, "%s n%d.bulk.fqdn.test\n", i % 2 ? "198.51.100.3" : "198.51.100.1", i);
	assert_int_equal(dns_set_hosts(h.p), 0);
	free(h.p);
	daemon_start(NULL, NULL);
	for (int i = 0; i < BULK; i++)
		ports[i] = BULK_PORT0 + i;
	y_head(&b, ports, BULK, false);
	for (int i = 0; i < BULK; i++) {
		char name[32], host[64];
		const char *hp = host;

		snprintf(name, sizeof(name), "b%d", i);
		snprintf(host, sizeof(host), "n%d.bulk.fqdn.test", i);
		y_backend(&b, name, &hp, 1);
		y_route(&b, BULK_PORT0 + i, "Backend", name);
	}
	fprintf(stderr, "# applying %d Backends, %d TCPRoutes, %d listeners (%zu bytes of YAML)\n", BULK, BULK, BULK, b.n);
	apply_yaml(b.p, &apply_ms);
	free(b.p);
	fprintf(stderr, "# apply took %ld ms\n", apply_ms);

	/* Until every answered name is programmed, then 3 more TTLs of refreshes and NXDOMAIN retries. */
	for (t0 = kb_now_ms(); end == 0 || kb_now_ms() < end;) {
		struct json_object *fes;
		long a = kb_now_ms(), st, gt, resolved = 0;
		char *out = NULL;
		int rc = CLI(&out, "status");

		st = kb_now_ms() - a;
		free(out);
		if (rc != 0) {
			dump_logs();
			fail_msg("kbackend status: exit %d after %ld ms (round %ld)", rc, st, calls + 1);
		}
		a = kb_now_ms();
		fes = get_endpoints();
		gt = kb_now_ms() - a;
		/* The same two requests on the control socket alone, without the CLI's start-up and printing. */
		{
			struct json_object *req = json_object_new_object(), *r;
			long ra = kb_now_ms();

			r = ctl("status", bound);
			if (!e2e_reply_ok(r))
				fail_msg("status on the control socket: no answer within %d ms (round %ld)", bound, calls + 1);
			json_object_put(r);
			ra = kb_now_ms() - ra;
			max_raw_st = ra > max_raw_st ? ra : max_raw_st;
			json_object_object_add(req, "op", json_object_new_string("get"));
			json_object_object_add(req, "what", json_object_new_string("endpoints"));
			ra = kb_now_ms();
			r = kb_ctl_call(E.env.sock, req, bound);
			ra = kb_now_ms() - ra;
			if (!e2e_reply_ok(r))
				fail_msg("get endpoints on the control socket: no answer within %d ms (round %ld)", bound,
					 calls + 1);
			json_object_put(r);
			json_object_put(req);
			max_raw_get = ra > max_raw_get ? ra : max_raw_get;
		}
		for (size_t i = 0; i < json_object_array_length(fes); i++)
			resolved += json_object_array_length(e2e_jget(json_object_array_get_idx(fes, i), "endpoints")) > 0;
		retries1 = bulk_retries(fes);
		if (retries0 < 0)
			retries0 = retries1;
		mid += resolved > 0 && resolved < answered;	/* answered halfway through the first answers */
		json_object_put(fes);
		calls++;
		sum_st += st;
		sum_get += gt;
		max_st = st > max_st ? st : max_st;
		max_get = gt > max_get ? gt : max_get;
		if (resolved >= answered && done_at < 0) {
			done_at = kb_now_ms() - t0;
			end = kb_now_ms() + 3 * DNS_TTL * 1000;
		}
		if (kb_now_ms() - t0 > 60000)
			fail_msg("only %ld of %ld names programmed after 60 s", resolved, answered);
	}
	fprintf(stderr, "# all %ld answered names programmed %ld ms after the apply returned\n", answered, done_at);
	fprintf(stderr, "# latency over %ld rounds: `kbackend status` max %ld ms, mean %ld ms; "
		"`kbackend get endpoints -o json` max %ld ms, mean %ld ms (measured, not bounded)\n",
		calls, max_st, sum_st / calls, max_get, sum_get / calls);
	fprintf(stderr, "# control socket alone (no CLI): status max %ld ms, get endpoints max %ld ms (bound %d ms)\n",
		max_raw_st, max_raw_get, bound);
	fprintf(stderr, "# resolver progress while answering: NXDOMAIN retries %ld -> %ld; %ld round(s) answered "
		"while the first answers were still arriving\n", retries0, retries1, mid);
	/* The requests above were answered while the resolver worked: its retries went on between them. */
	if (retries1 <= retries0)
		fail_msg("no resolver progress seen over %ld rounds (NXDOMAIN retries %ld -> %ld)", calls, retries0,
			 retries1);

	/* Spot checks: an answered name steers, an unanswered one is refused and says why. */
	t = connect_n(AF_INET, FE4, BULK_PORT0 + 0, 10);
	assert_int_equal(track_n(t, "198.51.100.1"), 10);
	t = connect_n(AF_INET, FE4, BULK_PORT0 + 1, 10);
	assert_int_equal(track_n(t, "198.51.100.3"), 10);
	t = connect_n(AF_INET, FE4, BULK_PORT0 + 9, 3);
	assert_int_equal(t->fail, 3);
	assert_int_equal(t->first_err, ECONNREFUSED);
	{
		struct json_object *fes = get_endpoints(), *d = dns_of(fes, FE4, BULK_PORT0 + 9, "n9.bulk.fqdn.test");

		assert_non_null(d);
		assert_string_equal(e2e_jstr(d, "last_error"), "NXDOMAIN");
		json_object_put(d);
		json_object_put(fes);
	}
	/*
	 * Each batch of answers recompiled only the frontends that use its names,
	 * among the Gateway's BULK listeners, in place: the table equals a whole compile.
	 */
	assert_true(verify_ok() >= 1);
}

/* An offline `apply --dry-run` with the same flags names the same host (pending: nothing resolves offline). */
static void dry_run_names(const char *yaml, const char *const *flags, const char *host)
{
	char path[] = "/tmp/kbackend-fqdn-dry-XXXXXX.yaml";
	int fd = mkstemps(path, 5), rc;
	struct json_object *reply;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	reply = e2e_cli_json(E.env.kb, E.env.sock, E.env.log, &rc,
			     (const char *const[]){ "apply", "--dry-run", flags[0], flags[1], "-f", path, NULL });
	unlink(path);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(json_object_to_json_string(e2e_jget(reply, "frontends")), host));
	json_object_put(reply);
}

/*
 * 6. Service backendRefs resolve as <name>.<namespace>.svc.<--cluster-domain>,
 * ServiceImport backendRefs as <name>.<namespace>.svc.<--clusterset-domain>.
 */
static void test_service_refs(void **state)
{
	static const char *const local[] = { "--cluster-domain", "cluster.local", NULL };
	static const char *const corp[] = { "--cluster-domain", "corp.test", NULL };
	static const char *const fleet[] = { "--clusterset-domain", "fleet.test", NULL };
	static const struct {
		const char *const *flags;
		const char *kind, *host, *addr;
	} runs[] = {
		{ local, "Service", "web.default.svc.cluster.local", "198.51.100.3" },
		{ corp, "Service", "web.default.svc.corp.test", "203.0.113.2" },
		{ fleet, "ServiceImport", "web.default.svc.fleet.test", "198.51.100.1" },
	};
	int port = 91;

	NEED_ENV();
	assert_int_equal(dns_set_hosts("198.51.100.3 web.default.svc.cluster.local\n"
				       "203.0.113.2 web.default.svc.corp.test\n"
				       "198.51.100.1 web.default.svc.fleet.test\n"),
			 0);
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		struct json_object *fes, *eps;
		struct sb b = { 0 };

		daemon_start(runs[r].flags, NULL);
		y_head(&b, &port, 1, true);
		y_route(&b, port, runs[r].kind, "web");
		apply_yaml(b.p, NULL);
		ASSERT_ADDRS(FE4, port, runs[r].addr, 10000);
		fes = get_endpoints();
		eps = e2e_jget(find_frontend(fes, FE4, port), "endpoints");
		assert_string_equal(e2e_jstr(json_object_array_get_idx(eps, 0), "fqdn"), runs[r].host);
		json_object_put(fes);
		assert_all_reach(AF_INET, FE4, port, 20, runs[r].addr);
		fprintf(stderr, "# %s %s: %s web -> %s -> %s\n", runs[r].flags[0], runs[r].flags[1], runs[r].kind,
			runs[r].host, runs[r].addr);
		if (r + 1 == sizeof(runs) / sizeof(runs[0]))
			dry_run_names(b.p, runs[r].flags, runs[r].host);
		free(b.p);
	}
}

/* 7. A trailing-dot FQDN is absolute: the search list is not applied to it. */
static void test_trailing_dot_absolute(void **state)
{
	static const char *const rel[] = { "rel.fqdn.test" };
	static const char *const abs[] = { "rel.fqdn.test." };
	int ports[2] = { 92, 93 };
	struct sb b = { 0 };

	NEED_ENV();
	/*
	 * The search domain (LOCALDOMAIN, with ndots:5 so that it is tried
	 * first) names another address: a relative name that went through the
	 * search list resolves to .1, the absolute one must give .3.
	 */
	assert_int_equal(dns_set_hosts("198.51.100.1 rel.fqdn.test.search.test\n"
				       "198.51.100.3 rel.fqdn.test\n"),
			 0);
	daemon_start(NULL, "search.test");
	y_head(&b, ports, 2, false);
	y_backend(&b, "rel", rel, 1);
	y_route(&b, 92, "Backend", "rel");
	y_backend(&b, "abs", abs, 1);
	y_route(&b, 93, "Backend", "abs");
	apply_yaml(b.p, NULL);
	free(b.p);
	/* Debian's c-ares takes the search list from LOCALDOMAIN, which the daemon's environment sets here. */
	if (wait_addrs(FE4, 92, "198.51.100.1", 5000) < 0) {
		dump_logs();
		fail_msg("rel.fqdn.test was not resolved through the search list search.test");
	}
	ASSERT_ADDRS(FE4, 93, "198.51.100.3", 10000);
	assert_all_reach(AF_INET, FE4, 93, 20, "198.51.100.3");
	fprintf(stderr, "# search list search.test: rel.fqdn.test -> 198.51.100.1 (searched), rel.fqdn.test. -> 198.51.100.3 (absolute)\n");
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_a_record_change, test_teardown),
		cmocka_unit_test_teardown(test_dns_server_stops, test_teardown),
		cmocka_unit_test_teardown(test_lookup_families, test_teardown),
		cmocka_unit_test_teardown(test_refused_answers, test_teardown),
		cmocka_unit_test_teardown(test_thousand_names, test_teardown),
		cmocka_unit_test_teardown(test_service_refs, test_teardown),
		cmocka_unit_test_teardown(test_trailing_dot_absolute, test_teardown),
	};

	e2e_main_init("test_fqdn", group_teardown, 600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
