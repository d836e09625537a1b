// SPDX-License-Identifier: Apache-2.0
/* e2e: real sockets in throwaway namespaces are steered from a frontend to endpoints, and only inside the test cgroup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <bpf/bpf.h>

#include "e2e.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8): the node netns holds the clients and reaches
 * the backend netns over one veth; it has no default route, so the frontend
 * address is unroutable unless the programs rewrite it.
 *
 *   kbt-node-<pid>  198.51.100.254/24 2001:db8:1::fe/64  ==veth==  kbt-be-<pid>
 *                                         198.51.100.1, .2 / 2001:db8:1::1, ::2, port 8080
 */
#define EP_PORT 8080

struct env {
	const char *skip;
	char cgroot[PATH_MAX];
	bool cgmounted;
	char cgroup[PATH_MAX];
	char pin[PATH_MAX];
	char node[64], be[64];
	bool netns_made;
	pid_t server;
	struct kb_dataplane *dp;
};

static struct env E;

static const char *const eps4[] = { "198.51.100.1", "198.51.100.2" };
static const char *const eps6[] = { "2001:db8:1::1", "2001:db8:1::2" };

/* ---- backend: answers every TCP connection and UDP datagram with the address it was reached at ---- */

static int listen_on(int type, const char *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1, fd;

	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (void *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(EP_PORT);
		inet_pton(AF_INET6, addr, &s6->sin6_addr);
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (void *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(EP_PORT);
		inet_pton(AF_INET, addr, &s4->sin_addr);
		len = sizeof(*s4);
	}
	fd = socket(ss.ss_family, type, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || (type == SOCK_STREAM && listen(fd, 64))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void addr_str(const struct sockaddr_storage *ss, char *buf, size_t len, bool port)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned p = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		p = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		p = ntohs(s6->sin6_port);
	}
	if (port)
		snprintf(buf, len, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, p);
	else
		snprintf(buf, len, "%s", ip);
}

static void server_main(int ready)
{
	const char *addrs[] = { eps4[0], eps4[1], eps6[0], eps6[1] };
	struct pollfd pf[8];
	int n = 0;

	if (e2e_setns(E.be))
		_exit(1);
	for (size_t i = 0; i < 4; i++) {
		pf[n++].fd = listen_on(SOCK_STREAM, addrs[i]);
		pf[n++].fd = listen_on(SOCK_DGRAM, addrs[i]);
	}
	for (int i = 0; i < n; i++) {
		if (pf[i].fd < 0)
			_exit(2);
		pf[i].events = POLLIN;
	}
	if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	for (;;) {
		if (poll(pf, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			struct sockaddr_storage me, peer;
			socklen_t ml = sizeof(me), pl = sizeof(peer);
			char buf[128], msg[128];
			int c;

			if (!(pf[i].revents & POLLIN))
				continue;
			if (i % 2 == 0) {
				c = accept(pf[i].fd, NULL, NULL);
				if (c < 0)
					continue;
				getsockname(c, (struct sockaddr *)&me, &ml);
				addr_str(&me, msg, sizeof(msg), false);
				if (write(c, msg, strlen(msg)) < 0)
					{ /* the client went away */ }
				close(c);
			} else {
				if (recvfrom(pf[i].fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &pl) < 0)
					continue;
				getsockname(pf[i].fd, (struct sockaddr *)&me, &ml);
				addr_str(&me, msg, sizeof(msg), false);
				sendto(pf[i].fd, msg, strlen(msg), 0, (struct sockaddr *)&peer, pl);
			}
		}
	}
}

/* ---- setup and teardown ---- */

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "kbn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kbb%d", (int)getpid());
	E.netns_made = true;	/* teardown deletes both names, made or not */
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be))
		return -1;
	/* Made inside the node netns, so nothing of the topology ever touches the root namespace. */
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vb, E.be) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.be) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 2001:db8:1::fe/64 dev %s nodad", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 198.51.100.1/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 198.51.100.2/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 2001:db8:1::1/64 dev %s nodad", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 2001:db8:1::2/64 dev %s nodad", E.be, vb) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.be, vb))
		return -1;
	/* The rule that keeps mistakes on this machine: no default route in the node netns. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node))
		return -1;
	return 0;
}

static int group_teardown(void **state);

static int setup_failed(void)
{
	group_teardown(NULL);
	return -1;
}

static int group_setup(void **state)
{
	int p[2];
	char c;

	if (e2e_netns_check(E.cgroot, sizeof(E.cgroot), &E.cgmounted, &E.skip))
		return setup_failed();
	if (E.skip)
		return 0;
	snprintf(E.cgroup, sizeof(E.cgroup), "%s/kbt-steer-%d", E.cgroot, (int)getpid());
	snprintf(E.pin, sizeof(E.pin), "/sys/fs/bpf/kbackend-test-%d", (int)getpid());
	snprintf(E.node, sizeof(E.node), "kbt-node-%d", (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-be-%d", (int)getpid());
	if (mkdir(E.cgroup, 0755) || e2e_ensure_bpffs() || topo_up() || pipe(p))
		return setup_failed();
	E.server = fork();
	if (E.server < 0)
		return setup_failed();
	if (E.server == 0) {
		close(p[0]);
		server_main(p[1]);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1) {
		close(p[0]);
		return setup_failed();
	}
	close(p[0]);
	{
		struct kb_dataplane_opts o = { .bpffs = E.pin, .cgroup = E.cgroup, .max_frontends = 1024,
					       .max_slots = 4096 };

		if (kb_dataplane_bpf_open(&o, &E.dp))
			return setup_failed();
	}
	return 0;
}

static int group_teardown(void **state)
{
	/* Idempotent: a failed setup runs it too. */
	if (E.server > 0) {
		kill(E.server, SIGKILL);
		waitpid(E.server, NULL, 0);
		E.server = 0;
	}
	if (E.dp)
		E.dp->ops->close(E.dp);
	E.dp = NULL;
	if (E.pin[0])
		kb_dataplane_unload(E.pin);
	E.pin[0] = '\0';
	if (E.cgroup[0])
		e2e_cgroup_remove(E.cgroot, E.cgroup);
	E.cgroup[0] = '\0';
	e2e_cgroup2_release(E.cgroot, E.cgmounted);
	E.cgmounted = false;
	if (E.netns_made) {
		/* Deleting the netns removes its end of the veth, and with it the peer. */
		e2e_sh("ip netns del %s", E.node);
		e2e_sh("ip netns del %s", E.be);
		E.netns_made = false;
	}
	return 0;
}

#define NEED_ENV()                   \
	do {                         \
		if (E.skip)          \
			skip();      \
	} while (0)

/* ---- clients: run in a child in the node netns, inside the test cgroup or not ---- */

static socklen_t mk_addr(const char *ip, __u16 port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (void *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (void *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	inet_pton(AF_INET, ip, &s4->sin_addr);
	return sizeof(*s4);
}

/*
 * OP_UDP_CONNECTED shows getpeername(); OP_UDP_CONNECTED_FROM shows the
 * source recvfrom() reports on the connected socket; OP_UDP_SENDMSG uses
 * sendmsg()/recvmsg() with msg_name, as opposed to sendto()/recvfrom().
 * OP_UDP_SENDTO2 sends twice on one socket before it reads two replies,
 * reported in sorted order and joined by ','.
 */
enum op { OP_TCP, OP_UDP_CONNECTED, OP_UDP_CONNECTED_FROM, OP_UDP_SENDTO, OP_UDP_SENDTO2, OP_UDP_SENDMSG, OP_BIND };

/* Put two strings of size sz in order. */
static void sort2(char *a, char *b, size_t sz)
{
	char t[128];

	if (strcmp(a, b) <= 0 || sz > sizeof(t))
		return;
	memcpy(t, a, sz);
	memcpy(a, b, sz);
	memcpy(b, t, sz);
}

/* When set, client sockets bind to this source address (port 0) before they connect. */
static const char *client_src;

/* One exchange; out gets "<endpoint that answered> <peer the client sees>" or "E<errno>". */
static void client_op(enum op op, const char *ip, __u16 port, char *out, size_t len)
{
	struct sockaddr_storage ss, peer;
	socklen_t sl = mk_addr(ip, port, &ss), pl = sizeof(peer);
	struct timeval tv = { 2, 0 };
	char buf[128] = "", ps[128] = "";
	ssize_t n;
	int fd;

	fd = socket(ss.ss_family, op == OP_TCP || op == OP_BIND ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0)
		goto err;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	switch (op) {
	case OP_BIND:
		if (bind(fd, (struct sockaddr *)&ss, sl))
			goto err;
		snprintf(out, len, "bound");
		close(fd);
		return;
	case OP_TCP:
	case OP_UDP_CONNECTED:
	case OP_UDP_CONNECTED_FROM:
		if (client_src) {
			struct sockaddr_storage src;
			socklen_t srl = mk_addr(client_src, 0, &src);

			if (bind(fd, (struct sockaddr *)&src, srl))
				goto err;
		}
		if (connect(fd, (struct sockaddr *)&ss, sl))
			goto err;
		if (op != OP_TCP && send(fd, "q", 1, 0) != 1)
			goto err;
		if (op == OP_UDP_CONNECTED_FROM) {
			n = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&peer, &pl);
			if (n < 0)
				goto err;
			buf[n] = '\0';
			break;
		}
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n < 0)
			goto err;
		buf[n] = '\0';
		if (getpeername(fd, (struct sockaddr *)&peer, &pl))
			goto err;
		break;
	case OP_UDP_SENDTO2: {
		char one[2][128];

		for (int k = 0; k < 2; k++)
			if (sendto(fd, "q", 1, 0, (struct sockaddr *)&ss, sl) != 1)
				goto err;
		for (int k = 0; k < 2; k++) {
			pl = sizeof(peer);
			n = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&peer, &pl);
			if (n < 0)
				goto err;
			buf[n] = '\0';
			addr_str(&peer, ps, sizeof(ps), true);
			snprintf(one[k], sizeof(one[k]), "%s %s", buf, ps);
		}
		sort2(one[0], one[1], sizeof(one[0]));
		snprintf(out, len, "%s,%s", one[0], one[1]);
		close(fd);
		return;
	}
	case OP_UDP_SENDMSG: {
		struct iovec iov = { .iov_base = "q", .iov_len = 1 };
		struct msghdr mh = { .msg_name = &ss, .msg_namelen = sl, .msg_iov = &iov, .msg_iovlen = 1 };

		if (sendmsg(fd, &mh, 0) != 1)
			goto err;
		iov = (struct iovec){ .iov_base = buf, .iov_len = sizeof(buf) - 1 };
		mh = (struct msghdr){ .msg_name = &peer, .msg_namelen = pl, .msg_iov = &iov, .msg_iovlen = 1 };
		n = recvmsg(fd, &mh, 0);
		if (n < 0)
			goto err;
		buf[n] = '\0';
		break;
	}
	case OP_UDP_SENDTO:
		if (sendto(fd, "q", 1, 0, (struct sockaddr *)&ss, sl) != 1)
			goto err;
		n = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&peer, &pl);
		if (n < 0)
			goto err;
		buf[n] = '\0';
		break;
	}
	addr_str(&peer, ps, sizeof(ps), true);
	snprintf(out, len, "%s %s", buf, ps);
	close(fd);
	return;
err:
	snprintf(out, len, "E%d", errno);
	close(fd);
}

/* Run count ops in a child (one CPU, so RoundRobin's per-CPU cursor is observable); results joined by '|'. */
static void run_client(bool in_cgroup, enum op op, const char *ip, __u16 port, int count, char *out,
		       size_t len)
{
	int p[2];
	pid_t pid;
	ssize_t n, got = 0;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char res[128], all[2048] = "";
		cpu_set_t cpus;

		close(p[0]);
		alarm(20);
		if (in_cgroup && e2e_cgroup_enter(E.cgroup, 0))
			_exit(1);
		if (e2e_setns(E.node))
			_exit(1);
		CPU_ZERO(&cpus);
		CPU_SET(0, &cpus);
		sched_setaffinity(0, sizeof(cpus), &cpus);
		for (int i = 0; i < count; i++) {
			client_op(op, ip, port, res, sizeof(res));
			if (i)
				strncat(all, "|", sizeof(all) - strlen(all) - 1);
			strncat(all, res, sizeof(all) - strlen(all) - 1);
		}
		if (write(p[1], all, strlen(all)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	while (got < (ssize_t)len - 1 && (n = read(p[0], out + got, len - 1 - (size_t)got)) > 0)
		got += n;
	out[got] = '\0';
	close(p[0]);
	waitpid(pid, NULL, 0);
}

static void apply(struct e2e_fe *fes, size_t n)
{
	struct kb_cfrontend cf[8];
	struct kb_compiled c = { .fes = cf, .nfes = n };

	for (size_t i = 0; i < n; i++) {
		cf[i] = fes[i].fe;
		cf[i].eps = fes[i].eps;
		cf[i].slots = fes[i].slots;
	}
	assert_int_equal(E.dp->ops->apply(E.dp, &c), 0);
}

/* ---- tests ---- */

static void test_tcp4_round_robin_and_getpeername(void **state)
{
	struct e2e_fe f;
	char out[2048];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.10", 80, KB_PROTO_TCP, KB_LB_ROUND_ROBIN, eps4, 2, EP_PORT, false);
	apply(&f, 1);
	run_client(true, OP_TCP, "198.18.0.10", 80, 4, out, sizeof(out));
	/* The cursor may start anywhere; it then alternates, and getpeername shows the frontend. */
	if (strcmp(out, "198.51.100.1 198.18.0.10:80|198.51.100.2 198.18.0.10:80|198.51.100.1 198.18.0.10:80|"
			 "198.51.100.2 198.18.0.10:80") &&
	    strcmp(out, "198.51.100.2 198.18.0.10:80|198.51.100.1 198.18.0.10:80|198.51.100.2 198.18.0.10:80|"
			"198.51.100.1 198.18.0.10:80"))
		fail_msg("round robin over two endpoints, got %s", out);
	{
		struct kb_conn_stats st;

		assert_int_equal(E.dp->ops->frontend_stats(E.dp, &f.fe, &st), 0);
		assert_int_equal(st.connects, 4);
		assert_int_equal(E.dp->ops->endpoint_stats(E.dp, &f.fe, 0, &st), 0);
		assert_int_equal(st.connects, 2);
	}
}

static void test_outside_cgroup_not_steered(void **state)
{
	struct e2e_fe f;
	char out[256], want[32];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.10", 80, KB_PROTO_TCP, KB_LB_RANDOM, eps4, 2, EP_PORT, false);
	apply(&f, 1);
	run_client(false, OP_TCP, "198.18.0.10", 80, 1, out, sizeof(out));
	snprintf(want, sizeof(want), "E%d", ENETUNREACH);
	assert_string_equal(out, want);
}

static void test_non_frontend_untouched(void **state)
{
	struct e2e_fe f;
	char out[256];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.10", 80, KB_PROTO_TCP, KB_LB_RANDOM, eps4, 1, EP_PORT, false);
	apply(&f, 1);
	/* An endpoint addressed directly, and a frontend address on another port. */
	run_client(true, OP_TCP, "198.51.100.2", EP_PORT, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.51.100.2:8080");
	run_client(true, OP_TCP, "198.18.0.10", 81, 1, out, sizeof(out));
	assert_int_equal(strcmp(out, "E101"), 0);
}

static void test_no_endpoint_refused(void **state)
{
	struct e2e_fe f;
	char out[256], want[32];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.10", 80, KB_PROTO_TCP, KB_LB_RANDOM, eps4, 2, EP_PORT, true);
	apply(&f, 1);
	run_client(true, OP_TCP, "198.18.0.10", 80, 1, out, sizeof(out));
	snprintf(want, sizeof(want), "E%d", ECONNREFUSED);
	assert_string_equal(out, want);
}

static void test_bind_to_frontend_refused(void **state)
{
	struct e2e_fe f;
	char out[256], want[32];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.10", 80, KB_PROTO_TCP, KB_LB_RANDOM, eps4, 2, EP_PORT, false);
	apply(&f, 1);
	run_client(true, OP_BIND, "198.18.0.10", 0, 1, out, sizeof(out));
	snprintf(want, sizeof(want), "E%d", EADDRNOTAVAIL);
	assert_string_equal(out, want);
}

static void test_udp4_both_ways(void **state)
{
	struct e2e_fe f;
	char out[512];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps4 + 1, 1, EP_PORT, false);
	apply(&f, 1);
	/* Unconnected: the reply shows the frontend through recvmsg4's reverse map. */
	run_client(true, OP_UDP_SENDTO, "198.18.0.11", 53, 2, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.18.0.11:53|198.51.100.2 198.18.0.11:53");
	/* Connected: connect4 steers, getpeername4 shows the frontend. */
	run_client(true, OP_UDP_CONNECTED, "198.18.0.11", 53, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.18.0.11:53");
}

static void test_tcp6_and_udp6(void **state)
{
	struct e2e_fe f[2];
	char out[512];

	NEED_ENV();
	e2e_fe_init(&f[0], "2001:db8:f::10", 80, KB_PROTO_TCP, KB_LB_RANDOM, eps6, 1, EP_PORT, false);
	e2e_fe_init(&f[1], "2001:db8:f::10", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps6 + 1, 1, EP_PORT, false);
	apply(f, 2);
	run_client(true, OP_TCP, "2001:db8:f::10", 80, 1, out, sizeof(out));
	assert_string_equal(out, "2001:db8:1::1 [2001:db8:f::10]:80");
	run_client(true, OP_UDP_SENDTO, "2001:db8:f::10", 53, 1, out, sizeof(out));
	assert_string_equal(out, "2001:db8:1::2 [2001:db8:f::10]:53");
}

/* One client run of one op per row: "<ip> <port> <op> <expected>". */
struct udp_row {
	const char *ip;
	__u16 port;
	enum op op;
	const char *want;
};

/* Every row runs; each mismatch is printed, then the test fails with the count. */
static void run_rows(const struct udp_row *rows, size_t n)
{
	char out[512];
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		run_client(true, rows[i].op, rows[i].ip, rows[i].port, 1, out, sizeof(out));
		if (!strcmp(out, rows[i].want))
			continue;
		bad++;
		printf("# row %zu: op %d to %s:%u: got \"%s\", want \"%s\"\n", i, (int)rows[i].op, rows[i].ip,
		       rows[i].port, out, rows[i].want);
	}
	if (bad)
		fail_msg("%zu of %zu rows differ", bad, n);
}

/*
 * Invariant 3 for UDP: with UDP frontends that steer to 198.51.100.2 and
 * 2001:db8:1::2, a socket that names the endpoint itself (unconnected with
 * sendto or sendmsg, or connected) sees the endpoint as the source of the
 * reply, and a frontend address on another port is not rewritten at all.
 */
static void test_udp_non_frontend_untouched(void **state)
{
	static const struct udp_row rows[] = {
		{ "198.51.100.2", EP_PORT, OP_UDP_SENDTO, "198.51.100.2 198.51.100.2:8080" },
		{ "198.51.100.2", EP_PORT, OP_UDP_SENDMSG, "198.51.100.2 198.51.100.2:8080" },
		{ "198.51.100.2", EP_PORT, OP_UDP_CONNECTED_FROM, "198.51.100.2 198.51.100.2:8080" },
		{ "198.51.100.2", EP_PORT, OP_UDP_CONNECTED, "198.51.100.2 198.51.100.2:8080" },
		{ "2001:db8:1::2", EP_PORT, OP_UDP_SENDTO, "2001:db8:1::2 [2001:db8:1::2]:8080" },
		{ "2001:db8:1::2", EP_PORT, OP_UDP_SENDMSG, "2001:db8:1::2 [2001:db8:1::2]:8080" },
		{ "2001:db8:1::2", EP_PORT, OP_UDP_CONNECTED_FROM, "2001:db8:1::2 [2001:db8:1::2]:8080" },
		{ "2001:db8:1::2", EP_PORT, OP_UDP_CONNECTED, "2001:db8:1::2 [2001:db8:1::2]:8080" },
		/* A frontend address on a port that is no frontend: unroutable from the node, untouched. */
		{ "198.18.0.11", 54, OP_UDP_SENDTO, "E101" },
		{ "198.18.0.11", 54, OP_UDP_CONNECTED, "E101" },
		{ "2001:db8:f::11", 54, OP_UDP_SENDMSG, "E101" },
		{ "2001:db8:f::11", 54, OP_UDP_CONNECTED, "E101" },
		/* The frontends themselves still steer, both ways. */
		{ "198.18.0.11", 53, OP_UDP_SENDTO, "198.51.100.2 198.18.0.11:53" },
		{ "2001:db8:f::11", 53, OP_UDP_SENDMSG, "2001:db8:1::2 [2001:db8:f::11]:53" },
	};
	struct e2e_fe f[2];

	NEED_ENV();
	e2e_fe_init(&f[0], "198.18.0.11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps4 + 1, 1, EP_PORT, false);
	e2e_fe_init(&f[1], "2001:db8:f::11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps6 + 1, 1, EP_PORT, false);
	apply(f, 2);
	run_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

/*
 * Two UDP frontends share one endpoint: each socket's reply shows the
 * frontend that socket sent to, unconnected or connected, IPv4 and IPv6.
 */
static void test_udp_reply_shows_its_own_frontend(void **state)
{
	static const struct udp_row rows[] = {
		{ "198.18.0.11", 53, OP_UDP_SENDTO, "198.51.100.2 198.18.0.11:53" },
		{ "198.18.0.12", 53, OP_UDP_SENDTO, "198.51.100.2 198.18.0.12:53" },
		{ "198.18.0.12", 53, OP_UDP_SENDMSG, "198.51.100.2 198.18.0.12:53" },
		{ "198.18.0.11", 53, OP_UDP_SENDMSG, "198.51.100.2 198.18.0.11:53" },
		{ "198.18.0.12", 53, OP_UDP_CONNECTED_FROM, "198.51.100.2 198.18.0.12:53" },
		{ "198.18.0.11", 53, OP_UDP_CONNECTED_FROM, "198.51.100.2 198.18.0.11:53" },
		{ "2001:db8:f::12", 53, OP_UDP_SENDTO, "2001:db8:1::2 [2001:db8:f::12]:53" },
		{ "2001:db8:f::11", 53, OP_UDP_SENDTO, "2001:db8:1::2 [2001:db8:f::11]:53" },
		{ "2001:db8:f::11", 53, OP_UDP_CONNECTED_FROM, "2001:db8:1::2 [2001:db8:f::11]:53" },
		{ "2001:db8:f::12", 53, OP_UDP_CONNECTED_FROM, "2001:db8:1::2 [2001:db8:f::12]:53" },
		/* And the endpoint addressed directly is still itself. */
		{ "198.51.100.2", EP_PORT, OP_UDP_SENDTO, "198.51.100.2 198.51.100.2:8080" },
	};
	struct e2e_fe f[4];

	NEED_ENV();
	e2e_fe_init(&f[0], "198.18.0.11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps4 + 1, 1, EP_PORT, false);
	e2e_fe_init(&f[1], "198.18.0.12", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps4 + 1, 1, EP_PORT, false);
	e2e_fe_init(&f[2], "2001:db8:f::11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps6 + 1, 1, EP_PORT, false);
	e2e_fe_init(&f[3], "2001:db8:f::12", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps6 + 1, 1, EP_PORT, false);
	apply(f, 4);
	run_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

#define CH_SOURCES 16

/*
 * ConsistentHash on the bound source address: 16 client addresses
 * (198.51.100.100-115 on the node's veth) connect 4 times each. Sticky:
 * every source lands on one endpoint every time. Spread: each of the two
 * endpoints takes at least 3 of the 16 sources, which a pick that ignores
 * the source (always one slot) cannot pass; for this fixed set the hash
 * gives a split well inside that bound, so the check is deterministic.
 */
static void test_consistent_hash_sticks(void **state)
{
	int per_ep[2] = { 0, 0 };
	struct e2e_fe f;
	char out[2048], src[32], first[64];

	NEED_ENV();
	for (int i = 0; i < CH_SOURCES; i++)
		assert_int_equal(e2e_sh("ip -n %s addr add 198.51.100.%d/32 dev kbn%d", E.node, 100 + i, (int)getpid()),
				 0);
	e2e_fe_init(&f, "198.18.0.12", 80, KB_PROTO_TCP, KB_LB_CONSISTENT_HASH, eps4, 2, EP_PORT, false);
	apply(&f, 1);
	for (int i = 0; i < CH_SOURCES; i++) {
		char *tok, *save = NULL;

		snprintf(src, sizeof(src), "198.51.100.%d", 100 + i);
		client_src = src;
		run_client(true, OP_TCP, "198.18.0.12", 80, 4, out, sizeof(out));
		client_src = NULL;
		tok = strtok_r(out, "|", &save);
		if (!tok || strncmp(tok, "198.51.100.", 11))
			fail_msg("source %s: got %s", src, tok ? tok : "nothing");
		snprintf(first, sizeof(first), "%s", tok);
		while ((tok = strtok_r(NULL, "|", &save)))
			if (strcmp(tok, first))
				fail_msg("source %s is not sticky: %s, then %s", src, first, tok);
		per_ep[!strncmp(first, eps4[1], strlen(eps4[1]))]++;
	}
	printf("# consistent hash: %d sources on %s, %d on %s\n", per_ep[0], eps4[0], per_ep[1], eps4[1]);
	for (int i = 0; i < CH_SOURCES; i++)
		e2e_sh("ip -n %s addr del 198.51.100.%d/32 dev kbn%d", E.node, 100 + i, (int)getpid());
	if (per_ep[0] < 3 || per_ep[1] < 3)
		fail_msg("no spread: %d and %d of %d sources per endpoint", per_ep[0], per_ep[1], CH_SOURCES);
}

static int pinned_map(const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", E.pin, name);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	return fd;
}

static size_t map_count(int fd)
{
	__u64 key, next, *prev = NULL;
	size_t n = 0;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		n++;
	}
	return n;
}

static __u64 peer_drops(void)
{
	int fd = pinned_map("peer_drops"), ncpus = libbpf_num_possible_cpus();
	__u64 *v = calloc((size_t)ncpus, sizeof(*v)), sum = 0;
	__u32 zero = 0;

	assert_non_null(v);
	assert_int_equal(bpf_map_lookup_elem(fd, &zero, v), 0);
	for (int c = 0; c < ncpus; c++)
		sum += v[c];
	free(v);
	close(fd);
	return sum;
}

/* Records for getpeername live as long as their socket: close() (sock_release) removes them. */
static void test_peer_records_freed_on_close(void **state)
{
	struct e2e_fe f[2];
	char out[2048];
	int fd, ufd;

	NEED_ENV();
	e2e_fe_init(&f[0], "198.18.0.10", 80, KB_PROTO_TCP, KB_LB_RANDOM, eps4, 1, EP_PORT, false);
	e2e_fe_init(&f[1], "198.18.0.11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps4 + 1, 1, EP_PORT, false);
	apply(f, 2);
	fd = pinned_map("sock_peers");
	ufd = pinned_map("udp_replies");
	run_client(true, OP_TCP, "198.18.0.10", 80, 3, out, sizeof(out));
	assert_string_equal(out, "198.51.100.1 198.18.0.10:80|198.51.100.1 198.18.0.10:80|"
				 "198.51.100.1 198.18.0.10:80");
	run_client(true, OP_UDP_CONNECTED, "198.18.0.11", 53, 2, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.18.0.11:53|198.51.100.2 198.18.0.11:53");
	/* Unconnected sends leave a udp_replies record each, until close. */
	run_client(true, OP_UDP_SENDTO, "198.18.0.11", 53, 2, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.18.0.11:53|198.51.100.2 198.18.0.11:53");
	run_client(true, OP_UDP_SENDMSG, "198.18.0.11", 53, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.18.0.11:53");
	/* Unsteered sockets (getpeername made their cookie) leave nothing either. */
	run_client(true, OP_TCP, "198.51.100.2", EP_PORT, 2, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.51.100.2:8080|198.51.100.2 198.51.100.2:8080");
	run_client(true, OP_UDP_SENDTO, "198.51.100.2", EP_PORT, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.51.100.2:8080");
	assert_int_equal(map_count(fd), 0);
	assert_int_equal(map_count(ufd), 0);
	close(fd);
	close(ufd);
}

/*
 * Fill the pinned map `name` with junk records (value_size bytes of zeros)
 * until it is full; cookies count up from 1, so keys from the top of the
 * range never meet a real socket. Returns the lowest key used.
 */
static __u64 map_fill(int fd, size_t value_size)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	void *junk = calloc(1, value_size);
	__u64 key;

	assert_non_null(junk);
	assert_int_equal(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	for (key = ~0ull;; key--) {
		if (bpf_map_update_elem(fd, &key, junk, BPF_NOEXIST)) {
			assert_int_equal(errno, E2BIG);
			break;
		}
		assert_true(~0ull - key < info.max_entries);
	}
	free(junk);
	return key + 1;
}

static void map_unfill(int fd, __u64 lowest)
{
	for (__u64 key = lowest; key != 0; key++)
		assert_int_equal(bpf_map_delete_elem(fd, &key), 0);
}

/*
 * A full record map never fails a connect or a send: the socket shows its
 * endpoint, and peer_drops counts it. sock_peers serves connected sockets,
 * udp_replies unconnected ones.
 */
static void check_full_map(const char *map, size_t value_size, enum op op)
{
	struct e2e_fe f;
	__u64 lowest, drops;
	char out[512];
	int fd;

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.11", 53, KB_PROTO_UDP, KB_LB_RANDOM, eps4 + 1, 1, EP_PORT, false);
	apply(&f, 1);
	fd = pinned_map(map);
	lowest = map_fill(fd, value_size);
	drops = peer_drops();
	run_client(true, op, "198.18.0.11", 53, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.51.100.2:8080");
	assert_int_equal(peer_drops(), drops + 1);
	map_unfill(fd, lowest);
	run_client(true, op, "198.18.0.11", 53, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.2 198.18.0.11:53");
	assert_int_equal(map_count(fd), 0);
	close(fd);
}

static void test_peer_map_full_still_connects(void **state)
{
	check_full_map("sock_peers", sizeof(struct kb_peer), OP_UDP_CONNECTED);
}

static void test_udp_replies_full_still_sends(void **state)
{
	check_full_map("udp_replies", sizeof(struct kb_udp_replies), OP_UDP_SENDTO);
}

/*
 * One unconnected socket, several endpoints in flight: with RoundRobin over
 * two endpoints, two sends before any receive reach both, and both replies
 * show the frontend (one record per socket and endpoint, not per socket).
 */
static void test_udp_one_socket_two_endpoints(void **state)
{
	struct e2e_fe f;
	char out[512];

	NEED_ENV();
	e2e_fe_init(&f, "198.18.0.13", 53, KB_PROTO_UDP, KB_LB_ROUND_ROBIN, eps4, 2, EP_PORT, false);
	apply(&f, 1);
	run_client(true, OP_UDP_SENDTO2, "198.18.0.13", 53, 1, out, sizeof(out));
	assert_string_equal(out, "198.51.100.1 198.18.0.13:53,198.51.100.2 198.18.0.13:53");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp4_round_robin_and_getpeername),
		cmocka_unit_test(test_outside_cgroup_not_steered),
		cmocka_unit_test(test_non_frontend_untouched),
		cmocka_unit_test(test_no_endpoint_refused),
		cmocka_unit_test(test_bind_to_frontend_refused),
		cmocka_unit_test(test_udp4_both_ways),
		cmocka_unit_test(test_tcp6_and_udp6),
		cmocka_unit_test(test_udp_non_frontend_untouched),
		cmocka_unit_test(test_udp_reply_shows_its_own_frontend),
		cmocka_unit_test(test_consistent_hash_sticks),
		cmocka_unit_test(test_peer_records_freed_on_close),
		cmocka_unit_test(test_peer_map_full_still_connects),
		cmocka_unit_test(test_udp_replies_full_still_sends),
		cmocka_unit_test(test_udp_one_socket_two_endpoints),
	};

	if (getenv("KB_VERBOSE"))
		kb_verbosity = atoi(getenv("KB_VERBOSE"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
