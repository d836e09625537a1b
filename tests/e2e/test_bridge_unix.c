// SPDX-License-Identifier: Apache-2.0
/* e2e: unix sidecars through the bridge: absent and restarted sidecars, --unix-dir and its symlinks, --bridge-netns clients, inbound sk_lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "util.h"
#include "bridge_env.h"


static void test_sidecar_absent_and_restart(void **state)
{
	static const char *const rs[] = { "restart.sock" };
	static const enum sc_mode rsm[] = { SC_ECHO };
	int fd;

	SKIP_IF_NEEDED();
	expect_fast_reset(P_ABSENT);

	fd = tcp_connect(FE, P_RESTART, 5);
	assert_true(fd >= 0);
	assert_int_equal(echo_check(fd, 1000, 5), 0);
	close(fd);
	/* Killed: its socket file stays, and nobody listens on it. */
	e2e_kill_group(&E.restart);
	expect_fast_reset(P_RESTART);
	/* Back: new connections work without touching the daemon. */
	E.restart = sidecar_start(rs, rsm, 1);
	assert_true(E.restart > 0);
	fd = tcp_connect(FE, P_RESTART, 5);
	assert_true(fd >= 0);
	assert_int_equal(echo_check(fd, 100000, 6), 0);
	close(fd);
}

/* An echo through the frontend at FE:port; with peer_check, getpeername must show the frontend. */
static int echo_client(void *arg)
{
	int port = (int)(long)arg, fd = tcp_connect(FE, port, 5);
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);

	if (fd < 0)
		return 10;
	if (getpeername(fd, (struct sockaddr *)&peer, &pl) || ntohs(peer.sin_port) != port)
		return 11;
	return echo_check(fd, 200000, 11) ? 12 : 0;
}

/* A client in a --bridge-netns namespace reaches the sidecar through the listener the daemon made there. */
static void test_bridge_netns_client(void **state)
{
	SKIP_IF_NEEDED();
	assert_int_equal(in_netns(E.cl, true, echo_client, (void *)(long)P_ECHO), 0);
	/* And the node's own clients see the frontend as their peer too. */
	assert_int_equal(echo_client((void *)(long)P_ECHO), 0);
}

static int greet_client(void *arg)
{
	char buf[64] = { 0 };
	int fd = tcp_connect(FE_REG, 80, 5);
	ssize_t r;

	if (fd < 0)
		return 20;
	r = recv(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	return r > 0 && !strcmp(buf, "registered\n") ? 0 : 21;
}

static int refused_client(void *arg)
{
	int fd = tcp_connect(FE_REG, 80, 5);

	if (fd >= 0) {
		close(fd);
		return 30;
	}
	return fd == -ECONNREFUSED ? 0 : 31;
}

/* Inbound: from another host, a frontend reaches the sidecar through sk_lookup and the bridge; a registered listener too. */
static void test_inbound_sk_lookup(void **state)
{
	char fdarg[16], pidarg[16];
	int p[2], lfd = -1, status;
	pid_t srv, cli;

	SKIP_IF_NEEDED();
	assert_int_equal(in_netns(E.host, false, echo_client, (void *)(long)P_ECHO), 0);

	/* A sidecar's own listener (in the node netns, any address) handed over with `kbackend register`. */
	assert_int_equal(pipe(p), 0);
	srv = fork();
	if (srv == 0) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd;

		e2e_child_init();
		e2e_cgroup_enter(E.env.cgroot, 0);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64))
			_exit(2);
		if (write(p[1], &fd, sizeof(fd)) != sizeof(fd))
			_exit(3);
		for (;;) {
			int cfd = accept(fd, NULL, NULL);

			if (cfd >= 0) {
				if (write(cfd, "registered\n", 11) != 11)
					{ /* gone */ }
				close(cfd);
			}
		}
	}
	close(p[1]);
	assert_int_equal(read(p[0], &lfd, sizeof(lfd)), (ssize_t)sizeof(lfd));
	close(p[0]);
	snprintf(fdarg, sizeof(fdarg), "%d", lfd);
	snprintf(pidarg, sizeof(pidarg), "%d", (int)srv);
	cli = fork();
	if (cli == 0) {
		int fd = open(E.env.log, O_WRONLY | O_APPEND | O_CLOEXEC);

		e2e_child_init();
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setenv("KBACKEND_SOCKET", E.env.sock, 1);
		execl(E.env.kb, "kbackend", "register", FE_REG ":80", "--pid", pidarg, "--fd", fdarg, (char *)NULL);
		_exit(127);
	}
	waitpid(cli, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		kill(srv, SIGKILL);
		waitpid(srv, NULL, 0);
		dump_log();
		fail_msg("kbackend register failed (status %#x)", status);
	}
	assert_int_equal(in_netns(E.host, false, greet_client, NULL), 0);
	/* The sidecar goes away: its socket leaves the map by itself, and the frontend is refused again. */
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
	e2e_sleep_ms(100);
	assert_int_equal(in_netns(E.host, false, refused_client, NULL), 0);
}

/* A unix path outside --unix-dir is refused at apply, and the message names the flag. */
static void test_unix_outside_dir_refused(void **state)
{
	static char yaml[20000];
	struct json_object *r;
	const char *s;
	int fd;

	SKIP_IF_NEEDED();
	/* On its own listener, so that nothing else can be the reason. */
	E.innocent = "/run/elsewhere/app.sock";
	yaml_config(yaml, sizeof(yaml), NULL);
	E.innocent = "innocent.sock";
	r = apply_yaml(yaml);
	assert_non_null(r);
	assert_false(e2e_reply_ok(r));
	s = json_object_to_json_string_ext(r, JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!strstr(s, "/run/elsewhere/app.sock is not under an allowed sidecar directory") || !strstr(s, "--unix-dir"))
		fail_msg("the refusal does not name --unix-dir: %.600s", s);
	json_object_put(r);
	/* Nothing changed: the echo sidecar still serves. */
	fd = tcp_connect(FE, P_ECHO, 5);
	assert_true(fd >= 0);
	assert_int_equal(echo_check(fd, 1000, 12), 0);
	close(fd);
}

/* The outside sidecar: o.sock and r.sock in a directory that is not --unix-dir; it counts what it accepts. */
static void outside_start(void)
{
	static const char *names[2];
	static const enum sc_mode modes[] = { SC_OUTSIDE, SC_OUTSIDE };
	static char o[PATH_MAX], r[PATH_MAX];

	snprintf(E.outdir, sizeof(E.outdir), "%s/outside", E.env.tmp);
	snprintf(o, sizeof(o), "%s/o.sock", E.outdir);
	snprintf(r, sizeof(r), "%s/r.sock", E.outdir);
	names[0] = o;
	names[1] = r;
	if (E.outside > 0)
		return;
	assert_true(mkdir(E.outdir, 0755) == 0 || errno == EEXIST);
	E.outside = sidecar_start(names, modes, 2);
	assert_true(E.outside > 0);
	__atomic_store_n(&E.sh->outside_accepts, 0, __ATOMIC_SEQ_CST);
}

/* Apply time: a symlinked socket or directory under --unix-dir is refused, and the message names it. */
static void test_unix_symlink_refused(void **state)
{
	static const struct {
		const char *name;	/* the link, under the sidecar dir */
		const char *target;	/* under the outside dir ("": the dir itself) */
		const char *path;	/* the Backend's path, under the sidecar dir */
	} rows[] = {
		{ "innocent.sock", "/o.sock", "innocent.sock" },
		{ "sub", "", "sub/o.sock" },
	};
	static char yaml[20000];
	char link[PATH_MAX], target[PATH_MAX], want[PATH_MAX + 64];

	SKIP_IF_NEEDED();
	outside_start();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct json_object *r;
		const char *s;

		snprintf(link, sizeof(link), "%s/%s", E.scdir, rows[i].name);
		snprintf(target, sizeof(target), "%s%s", E.outdir, rows[i].target);
		unlink(link);
		assert_int_equal(symlink(target, link), 0);
		E.innocent = rows[i].path;
		yaml_config(yaml, sizeof(yaml), NULL);
		E.innocent = "innocent.sock";
		r = apply_yaml(yaml);
		unlink(link);
		assert_non_null(r);
		s = json_object_to_json_string_ext(r, JSON_C_TO_STRING_NOSLASHESCAPE);
		snprintf(want, sizeof(want), "%s is a symbolic link", link);
		if (e2e_reply_ok(r) || !strstr(s, want))
			fail_msg("[%s] expected a refusal saying \"%s\": %.1500s", rows[i].name, want,
				 strstr(s, "\"innocent\"") ? strstr(s, "\"innocent\"") : s);
		json_object_put(r);
	}
	assert_int_equal(__atomic_load_n(&E.sh->outside_accepts, __ATOMIC_SEQ_CST), 0);
}

/* Put race.sock and rdir back as plain entries (the links a race test made are removed). */
static void race_restore(void)
{
	char p[PATH_MAX], q[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/race.sock", E.scdir);
	if (!lstat(p, &st) && S_ISLNK(st.st_mode))
		unlink(p);
	snprintf(p, sizeof(p), "%s/rdir", E.scdir);
	snprintf(q, sizeof(q), "%s/rdir.old", E.scdir);
	if (!lstat(p, &st) && S_ISLNK(st.st_mode))
		unlink(p);
	if (!lstat(q, &st))
		rename(q, p);
	e2e_kill_group(&E.racer);
}

/* The `get endpoints` JSON entry of the endpoint at path, as a string ("" when absent). */
static char *endpoint_json(const char *path)
{
	static const char *const args[] = { "get", "endpoints", "-o", "json", NULL };
	struct json_object *fes, *all;
	char *out = strdup("");
	int rc;

	all = e2e_cli_json(E.env.kb, E.env.sock, E.env.log, &rc, args);
	fes = json_object_is_type(all, json_type_array) ? all : e2e_jget(all, "frontends");
	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *eps = e2e_jget(json_object_array_get_idx(fes, i), "endpoints");

		for (size_t e = 0; eps && e < json_object_array_length(eps); e++) {
			struct json_object *ep = json_object_array_get_idx(eps, e);

			if (!strcmp(e2e_jstr(ep, "address"), path)) {
				free(out);
				out = strdup(json_object_to_json_string_ext(ep, JSON_C_TO_STRING_NOSLASHESCAPE));
			}
		}
	}
	json_object_put(all);
	return out;
}

/*
 * After apply: race.sock (and the directory rdir) are swapped for symlinks to
 * sockets outside --unix-dir. Every connect is reset, the outside sidecar hears
 * nothing, and `get endpoints` says why.
 */
static void test_unix_symlink_swapped_after_apply(void **state)
{
	static const char *const names[] = { "race.sock", "rdir/r.sock" };
	static const enum sc_mode modes[] = { SC_ECHO, SC_ECHO };
	static const char *const wide[] = { "get", "endpoints", "-o", "wide", NULL };
	char p[PATH_MAX], q[PATH_MAX], *out = NULL, *js;
	int fd;

	SKIP_IF_NEEDED();
	outside_start();
	snprintf(p, sizeof(p), "%s/rdir", E.scdir);
	assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
	E.racer = sidecar_start(names, modes, 2);
	assert_true(E.racer > 0);
	/* Plain sockets first: the frontends work. */
	for (int port = P_RACE; port <= P_RACEDIR; port++) {
		fd = tcp_connect(FE, port, 5);
		assert_true(fd >= 0);
		assert_int_equal(echo_check(fd, 1000, 13), 0);
		close(fd);
	}
	/* The swap: a link to the outside socket, and a directory turned into a link to the outside dir. */
	snprintf(p, sizeof(p), "%s/race.sock", E.scdir);
	snprintf(q, sizeof(q), "%s/o.sock", E.outdir);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink(q, p), 0);
	snprintf(p, sizeof(p), "%s/rdir", E.scdir);
	snprintf(q, sizeof(q), "%s/rdir.old", E.scdir);
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(symlink(E.outdir, p), 0);
	for (int k = 0; k < 3; k++) {
		expect_fast_reset(P_RACE);
		expect_fast_reset(P_RACEDIR);
	}
	assert_int_equal(__atomic_load_n(&E.sh->outside_accepts, __ATOMIC_SEQ_CST), 0);
	/* Why, per endpoint: in the JSON and in the wide table. */
	snprintf(p, sizeof(p), "%s/race.sock", E.scdir);
	js = endpoint_json(p);
	if (!strstr(js, "symbolic link"))
		fail_msg("get endpoints -o json does not say why %s is refused: %s", p, js);
	free(js);
	snprintf(p, sizeof(p), "%s/rdir/r.sock", E.scdir);
	js = endpoint_json(p);
	if (!strstr(js, "symbolic link"))
		fail_msg("get endpoints -o json does not say why %s is refused: %s", p, js);
	free(js);
	assert_int_equal(e2e_cli(E.env.kb, E.env.sock, E.env.log, &out, wide), 0);
	snprintf(p, sizeof(p), "%s/race.sock", E.scdir);
	if (!out || !strstr(out, p) || !strstr(out, "symbolic link"))
		fail_msg("get endpoints -o wide does not show the refusal of %s:\n%s", p, out ? out : "");
	free(out);
	race_restore();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sidecar_absent_and_restart),
		cmocka_unit_test(test_bridge_netns_client),
		cmocka_unit_test(test_unix_outside_dir_refused),
		cmocka_unit_test(test_unix_symlink_refused),
		cmocka_unit_test(test_unix_symlink_swapped_after_apply),
		cmocka_unit_test(test_inbound_sk_lookup),
	};

	e2e_main_init("test_bridge_unix", group_teardown, 300);
	if (getenv("KB_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KB_TEST_FILTER"));
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
