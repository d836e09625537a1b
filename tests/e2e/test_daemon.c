// SPDX-License-Identifier: Apache-2.0
/* e2e: the daemon steering end to end: apply a directory, weights, apply under load, kill -9 and restart, unload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"
#include "util.h"

/* The node, its endpoints and the daemon: e2e_node.h. */

/* ---- the daemon's processes and pins ---- */

/* Processes whose command line names our socket: the daemon, or a stray CLI. */
static int count_our_processes(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], buf[4096];
		ssize_t len;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;	/* kernel threads and zombies have none */
		for (ssize_t i = 0; i < len; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[len] = '\0';
		if (strstr(buf, "kbackend") && strstr(buf, E.env.sock))
			n++;
	}
	closedir(d);
	return n;
}

/* ---- reading the daemon's view ---- */

static struct json_object *find_frontend(struct json_object *fes, const char *addr, long port)
{
	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);

		if (!strcmp(e2e_jstr(fe, "address"), addr) && e2e_jint(fe, "port") == port)
			return fe;
	}
	return NULL;
}

static struct json_object *find_endpoint(struct json_object *fe, const char *addr)
{
	struct json_object *eps;

	if (!json_object_object_get_ex(fe, "endpoints", &eps))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(eps); i++) {
		struct json_object *ep = json_object_array_get_idx(eps, i);

		if (!strcmp(e2e_jstr(ep, "address"), addr))
			return ep;
	}
	return NULL;
}

/* Connect counters from `kbackend stats -o json`: the frontend's, then each endpoint's (0 when absent). */
struct counters {
	long fe, ep[NEPS];
};

static struct counters stats_now(void)
{
	struct json_object *fes, *fe, *st;
	struct counters c = { 0 };
	int rc;

	fes = CLI_JSON(&rc, "stats");
	assert_int_equal(rc, 0);
	assert_true(json_object_is_type(fes, json_type_array));
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_true(json_object_object_get_ex(fe, "stats", &st));
	c.fe = e2e_jint(st, "connects");
	for (int e = 0; e < NEPS; e++) {
		struct json_object *ep = find_endpoint(fe, EPS[e]);

		if (ep && json_object_object_get_ex(ep, "stats", &st))
			c.ep[e] = e2e_jint(st, "connects");
	}
	json_object_put(fes);
	return c;
}

/* The kernel id of a pinned map or link (0 when it is not pinned). */
static __u32 pinned_id(const char *name, bool link)
{
	char path[PATH_MAX];
	__u32 id = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", E.env.bpffs, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (link) {
		struct bpf_link_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			id = info.id;
	} else {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			id = info.id;
	}
	close(fd);
	return id;
}

/* Programs attached to the test cgroup for one hook. */
static __u32 cgroup_progs(enum bpf_attach_type type)
{
	__u32 ids[64], cnt = 64, flags = 0;
	int fd = open(E.env.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	if (bpf_prog_query(fd, type, 0, &flags, ids, &cnt))
		fail_msg("bpf_prog_query on %s: %s", E.env.cgroup, strerror(errno));
	close(fd);
	return cnt;
}

/* Entries under the pin directory, -1 when it does not exist. */
static int pin_entries(char *names, size_t len)
{
	return dir_entries(E.env.bpffs, "", names, len);
}

/* ---- tests ---- */

/* examples/-shaped manifests through `kbackend apply -f DIR`; real traffic; get and stats agree with it. */
static void test_apply_dir_traffic_and_stats(void **state)
{
	const int w[NEPS] = { 1, 1, 0 };
	char dir[PATH_MAX], path[PATH_MAX + 32], buf[8192], names[512];
	struct json_object *reply, *fes, *fe, *eps;
	struct counters before, after;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	snprintf(dir, sizeof(dir), "%s/examples", E.env.tmp);
	assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/00-envoy-gateway.yaml", dir);
	assert_int_equal(e2e_write_file(path, YAML_EG), 0);
	snprintf(path, sizeof(path), "%s/10-gateway.yaml", dir);
	assert_int_equal(e2e_write_file(path, YAML_GW), 0);
	yaml_backends(buf, sizeof(buf), NULL);
	snprintf(path, sizeof(path), "%s/20-backends.yaml", dir);
	assert_int_equal(e2e_write_file(path, buf), 0);
	yaml_route(buf, sizeof(buf), w);
	snprintf(path, sizeof(path), "%s/30-routes.yaml", dir);
	assert_int_equal(e2e_write_file(path, buf), 0);

	reply = CLI_JSON(&rc, "apply", "-f", dir);
	if (rc != 0 || !e2e_reply_ok(reply))
		fail_msg("apply -f %s: exit %d, %s", dir, rc, json_object_to_json_string(reply));
	json_object_put(reply);

	/* get shows the objects, and the frontend with both endpoints at half each. */
	get_names("backends", names, sizeof(names));
	assert_non_null(strstr(names, " e1 "));
	assert_non_null(strstr(names, " e2 "));
	assert_non_null(strstr(names, " e3 "));
	get_names("routes", names, sizeof(names));
	assert_non_null(strstr(names, " app "));
	get_names("gateways", names, sizeof(names));
	assert_non_null(strstr(names, " eg "));
	fes = CLI_JSON(&rc, "get", "frontends");
	assert_int_equal(rc, 0);
	assert_int_equal(json_object_array_length(fes), 1);
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_string_equal(e2e_jstr(fe, "protocol"), "TCP");
	assert_true(json_object_object_get_ex(fe, "endpoints", &eps));
	assert_int_equal(json_object_array_length(eps), 2);
	assert_non_null(find_endpoint(fe, EPS[0]));
	assert_non_null(find_endpoint(fe, EPS[1]));
	assert_null(find_endpoint(fe, EPS[2]));
	assert_int_equal(e2e_jint(find_endpoint(fe, EPS[0]), "port"), EP_PORT);
	json_object_put(fes);
	{
		struct json_object *doc = CLI_JSON(&rc, "describe", "backend", "e2"), *b, *md, *mine;

		assert_int_equal(rc, 0);
		assert_true(json_object_object_get_ex(doc, "backend", &b));
		assert_true(json_object_object_get_ex(b, "metadata", &md));
		assert_string_equal(e2e_jstr(md, "name"), "e2");
		assert_true(json_object_object_get_ex(doc, "frontends", &mine));
		assert_int_equal(json_object_array_length(mine), 1);
		json_object_put(doc);
	}

	/* Traffic: a client in the test cgroup reaches both endpoints, and getpeername shows the frontend. */
	before = stats_now();
	s = connect_n(200, true);
	e2e_assert_no_failure(s);
	assert_int_equal(s.total_ok, 200);
	assert_true(s.ok[0] > 0 && s.ok[1] > 0);
	assert_int_equal(s.ok[2], 0);
	after = stats_now();
	assert_int_equal(after.fe - before.fe, 200);
	for (int e = 0; e < NEPS; e++)
		if (after.ep[e] - before.ep[e] != s.ok[e])
			fail_msg("stats for %s: %ld connects counted, %ld made", EPS[e], after.ep[e] - before.ep[e],
				 s.ok[e]);
}

/*
 * Weights 90/10 over 10,000 TCP connections land within 2 percentage points. Under KB_SCALE
 * (e2e.h) over fewer (at least 2,000), and the window widens to 5 standard deviations of the
 * binomial count where that is wider than 2 points (2,000 connections: within 67, 3.4 points).
 */
static void test_weights_90_10(void **state)
{
	const long n = e2e_scaled(10000, 2000);
	const double sd5 = 5 * sqrt(n * 0.9 * 0.1), win = sd5 > n * 0.02 ? sd5 : n * 0.02;
	struct json_object *fes, *fe;
	struct counters before, after;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	apply_weights(90, 10, 0);
	fes = CLI_JSON(&rc, "get", "frontends");
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_int_equal(e2e_jint(find_endpoint(fe, EPS[0]), "weight"), 90);
	assert_int_equal(e2e_jint(find_endpoint(fe, EPS[1]), "weight"), 10);
	json_object_put(fes);

	before = stats_now();
	clients_start(2, n / 2, false);
	assert_int_equal(clients_stop(true), 0);
	s = clients_sum(2);
	after = stats_now();
	e2e_assert_no_failure(s);
	assert_int_equal(s.total_ok, n);
	assert_int_equal(s.ok[2], 0);
	printf("# weights 90/10: %ld to e1, %ld to e2 of %ld\n", s.ok[0], s.ok[1], n);
	if (fabs(s.ok[0] - 0.9 * n) > win)
		fail_msg("90/10 split: e1 got %ld of %ld (%.2f%%), outside 90 +- %.2f%%", s.ok[0], n,
			 100.0 * s.ok[0] / n, 100.0 * win / n);
	assert_int_equal(after.fe - before.fe, n);
	assert_int_equal(after.ep[0] - before.ep[0], s.ok[0]);
	assert_int_equal(after.ep[1] - before.ep[1], s.ok[1]);
}

/*
 * The endpoints' netns's TCP counters, printed: they showed the likely reason a 6.1 guest run
 * once lost a connect to EPIPE (a TIME_WAIT table overflow there, e2e_node.c sizes it now); a
 * reset that comes without an overflow is something else.
 */
static void hammer_tcp_counters(void)
{
	char cmd[256], line[256];
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "nsenter --net=/run/netns/%s nstat -azs TcpExtTCPTimeWaitOverflow TcpOutRsts TcpExtTCPAbortOnClose "
		 "2>/dev/null", E.be);
	f = popen(cmd, "r");
	while (f && fgets(line, sizeof(line), f))
		if (line[0] != '#')
			printf("# endpoints' netns: %s", line);
	if (f)
		pclose(f);
}

/* Two configurations applied alternately 500 times (fewer under KB_SCALE, at least 100) while 4 clients connect: none fails or strays. */
static void test_hammer_apply_under_load(void **state)
{
	static char ya[16384], yb[16384];
	const int wa[NEPS] = { 1, 1, 0 }, wb[NEPS] = { 0, 0, 1 }, applies = (int)e2e_scaled(500, 100);
	struct json_object *ra, *rb;
	int refused = 0, stuck;
	long t0, ms;
	struct e2e_sum s;
	char why[512] = "";

	NEED_ENV();
	daemon_ensure();
	yaml_all(ya, sizeof(ya), wa, NULL);
	yaml_all(yb, sizeof(yb), wb, NULL);
	ra = apply_req("a.yaml", ya);
	rb = apply_req("b.yaml", yb);
	t0 = kb_now_ms();
	clients_start(4, 0, false);
	if (!clients_reach(4, 100, 10000)) {
		json_object_put(ra);
		json_object_put(rb);
		fail_msg("clients made no progress before the applies");
	}
	for (int i = 0; i < applies; i++) {
		struct json_object *reply = kb_ctl_call(E.env.sock, i % 2 ? rb : ra, 30000);

		if (!e2e_reply_ok(reply)) {
			if (!refused++)
				snprintf(why, sizeof(why), "%s",
					 reply ? json_object_to_json_string(reply) : strerror(errno));
		}
		json_object_put(reply);
	}
	/* A last stretch on the final configuration. */
	clients_reach(4, clients_sum(4).total_ok + 200, 5000);
	stuck = clients_stop(false);
	ms = kb_now_ms() - t0;
	json_object_put(ra);
	json_object_put(rb);
	s = clients_sum(4);
	printf("# hammer: %ld connections (e1 %ld, e2 %ld, e3 %ld), %ld failed, %d applies (%d refused) in %ld ms\n",
	       s.total_ok + s.fail + s.bad, s.ok[0], s.ok[1], s.ok[2], s.fail, applies, refused, ms);
	hammer_tcp_counters();
	if (refused)
		fail_msg("%d of %d applies refused; first: %s", refused, applies, why);
	assert_int_equal(stuck, 0);
	e2e_assert_no_failure(s);
	/* Both configurations served traffic, so the check above covered swaps. */
	assert_true(s.ok[0] + s.ok[1] > 0);
	assert_true(s.ok[2] > 0);
	/* The last apply was B: only e3 now. */
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[2], 50);
}

/* kill -9: steering goes on with no process; a restarted daemon adopts the pins and restores the state. */
static void test_kill9_and_restart(void **state)
{
	struct json_object *st, *fes, *fe;
	struct e2e_sum s, killed;
	__u32 map_id, link_id;
	char names[512];
	long objects, c0;
	int rc, stuck;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	objects = e2e_jint(st, "objects");
	json_object_put(st);
	assert_true(objects >= 6);

	map_id = pinned_id("frontends", false);
	link_id = pinned_id("links/connect4", true);
	assert_true(map_id && link_id);
	assert_int_equal(cgroup_progs(BPF_CGROUP_INET4_CONNECT), 1);

	clients_start(2, 0, true);
	assert_true(clients_reach(2, 200, 10000));
	kill(E.daemon, SIGKILL);
	waitpid(E.daemon, NULL, 0);
	E.daemon = 0;
	assert_int_equal(count_our_processes(), 0);

	/* No kbackend process at all: the looping clients keep landing on endpoints, and so does a new one. */
	c0 = clients_sum(2).total_ok;
	if (!clients_reach(2, c0 + 500, 10000))
		fail_msg("no progress with the daemon dead: %ld -> %ld", c0, clients_sum(2).total_ok);
	s = connect_n(50, true);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 50);
	assert_int_equal(count_our_processes(), 0);
	killed = clients_sum(2);
	e2e_assert_no_failure(killed);

	/* Restart while the clients keep going: the new daemon adopts the pins and restores the state. */
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not restart over its pins");
	}
	c0 = clients_sum(2).total_ok;
	assert_true(clients_reach(2, c0 + 200, 10000));
	/* Adopted, not rebuilt: the same maps and links, and still one program on the hook. */
	assert_int_equal(pinned_id("frontends", false), map_id);
	assert_int_equal(pinned_id("links/connect4", true), link_id);
	assert_int_equal(cgroup_progs(BPF_CGROUP_INET4_CONNECT), 1);
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	assert_int_equal(e2e_jint(st, "objects"), objects);
	json_object_put(st);
	get_names("backends", names, sizeof(names));
	assert_non_null(strstr(names, " e1 "));
	assert_non_null(strstr(names, " e2 "));
	assert_non_null(strstr(names, " e3 "));
	get_names("routes", names, sizeof(names));
	assert_non_null(strstr(names, " app "));
	fes = CLI_JSON(&rc, "get", "frontends");
	assert_int_equal(rc, 0);
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_non_null(find_endpoint(fe, EPS[0]));
	assert_non_null(find_endpoint(fe, EPS[1]));
	json_object_put(fes);

	/* The adopted maps take new writes: switch to e3 while the clients run. */
	apply_weights(0, 0, 1);
	c0 = clients_sum(2).total_ok;
	assert_true(clients_reach(2, c0 + 200, 10000));
	stuck = clients_stop(false);
	s = clients_sum(2);
	printf("# kill -9: %ld connections up to the restart, %ld in all, %ld failed\n", killed.total_ok,
	       s.total_ok, s.fail);
	assert_int_equal(stuck, 0);
	e2e_assert_no_failure(s);
	assert_true(s.ok[2] > 0);
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[2], 50);
}

/* `kbackend unload`: no pin, no program on the cgroup, no daemon, no steering. */
static void test_unload_leaves_nothing(void **state)
{
	static const enum bpf_attach_type hooks[] = {
		BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT, BPF_CGROUP_UDP4_SENDMSG,
		BPF_CGROUP_UDP6_SENDMSG, BPF_CGROUP_UDP4_RECVMSG, BPF_CGROUP_UDP6_RECVMSG,
		BPF_CGROUP_INET4_GETPEERNAME, BPF_CGROUP_INET6_GETPEERNAME, BPF_CGROUP_INET4_BIND,
		BPF_CGROUP_INET6_BIND, BPF_CGROUP_SOCK_OPS,
	};
	char names[4096], *out = NULL;
	long deadline;
	int status = -1, rc, n;
	pid_t dpid;
	struct e2e_sum s;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	/* The checks below can fail: before unload there are pins and programs. */
	assert_true(pin_entries(names, sizeof(names)) > 0);
	assert_true(cgroup_progs(BPF_CGROUP_INET4_CONNECT) > 0);
	assert_int_equal(count_our_processes(), 1);

	dpid = E.daemon;
	rc = CLI(&out, "unload", "--bpffs", E.env.bpffs);
	free(out);
	assert_int_equal(rc, 0);
	/* Checked as soon as the CLI returns, as a user's next command would. */
	n = pin_entries(names, sizeof(names));
	if (n > 0)
		fail_msg("pins left under %s after unload: %s", E.env.bpffs, names);
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++)
		if (cgroup_progs(hooks[i]))
			fail_msg("%u program(s) still attached to %s for attach type %d", cgroup_progs(hooks[i]),
				 E.env.cgroup, hooks[i]);
	for (deadline = kb_now_ms() + 5000; kb_now_ms() < deadline; e2e_sleep_ms(10))
		if (waitpid(dpid, &status, WNOHANG) == dpid)
			break;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("the daemon did not exit cleanly after unload (status %#x)", status);
	E.daemon = 0;
	assert_int_equal(count_our_processes(), 0);
	assert_false(e2e_exists(E.env.sock));

	/* Nothing steers any more: the frontend is unroutable from the node netns. */
	s = connect_n(1, false);
	assert_int_equal(s.fail, 1);
	assert_int_equal(s.first_err, ENETUNREACH);
}

static int group_setup(void **state)
{
	return node_setup("daemon", 'd');
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_apply_dir_traffic_and_stats, test_teardown),
		cmocka_unit_test_teardown(test_weights_90_10, test_teardown),
		cmocka_unit_test_teardown(test_hammer_apply_under_load, test_teardown),
		cmocka_unit_test_teardown(test_kill9_and_restart, test_teardown),
		cmocka_unit_test_teardown(test_unload_leaves_nothing, test_teardown),
	};

	e2e_main_init("test_daemon", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
