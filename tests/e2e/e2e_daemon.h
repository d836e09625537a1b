/* SPDX-License-Identifier: Apache-2.0 */
/* What the daemon e2e tests share: child processes, the daemon's lifecycle, its socket and CLI, identity servers, counting clients, teardown and signals. */
#ifndef KB_E2E_DAEMON_H
#define KB_E2E_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

/* Sleep ms, resumed when a signal interrupts it, so that a wait is never cut short. */
void e2e_sleep_ms(long ms);

/* A child of the test: dies with it, never outlives a crashed run, and never runs the test's cleanup. */
void e2e_child_init(void);

/* A whole file as a string (caller frees), or NULL. */
char *e2e_read_text(const char *path);
/* Write content to path (truncating); 0 or -1. */
int e2e_write_file(const char *path, const char *content);
/*
 * The last last_lines lines (0: all) of the file at path, the daemon's and the
 * CLI's stderr, as TAP comments "# tag: line": what a failed start or apply said.
 * Nothing when path is "".
 */
void e2e_dump_file(const char *tag, const char *path, int last_lines);

/* JSON lookups that tolerate a missing object or key, so a bad reply fails an assertion rather than crashing. */
const char *e2e_jstr(struct json_object *o, const char *k);	/* "" when absent or null */
long e2e_jint(struct json_object *o, const char *k);		/* -1 when absent or null */
struct json_object *e2e_jget(struct json_object *o, const char *k);
bool e2e_reply_ok(struct json_object *r);			/* the reply says "ok": true */

/* The request {"op": op, "files": [{"name": name, "content": content}]}: apply or replace one manifest file (caller puts it). */
struct json_object *e2e_files_req(const char *op, const char *name, const char *content);
/* Send {"op": op} to the daemon on sock; NULL with errno set when it could not be reached. */
struct json_object *e2e_ctl(const char *sock, const char *op, int timeout_ms);
/* The daemon on sock answers `status` with ok. */
bool e2e_daemon_serves(const char *sock, int timeout_ms);

/*
 * Fork `kb argv...` (argv[0] is the program name) with stdout and stderr
 * appended to log, inside netns when it is not NULL; the pid, or -1.
 */
pid_t e2e_daemon_spawn(const char *kb, const char *log, const char *netns, const char *const *argv);
/*
 * Wait up to timeout_ms for the daemon pid to answer `status` on sock: 0, or
 * -1 when it exited first (then it is reaped and *pid set to 0) or never answered.
 */
int e2e_daemon_wait(pid_t *pid, const char *sock, long timeout_ms);

/*
 * Run the CLI `kb args...` with KBACKEND_SOCKET=sock, stderr appended to log;
 * its stdout in *out (caller frees; NULL: discarded) and its exit code.
 */
int e2e_cli(const char *kb, const char *sock, const char *log, char **out, const char *const *args);
/* The same with -o json: the parsed stdout (caller puts it; a test failure when it is not JSON), exit code in *rc. */
struct json_object *e2e_cli_json(const char *kb, const char *sock, const char *log, int *rc,
				 const char *const *args);

/*
 * build/kbackend, found from the test binary (build/e2e/test_X) unless
 * $KBACKEND_BIN names it: 0 when it is executable, so a test run from
 * anywhere tests this build's daemon.
 */
int e2e_kbackend_path(char *buf, size_t len);

/*
 * The start of every test's main: $KB_VERBOSE, unbuffered stdout (forked
 * children must not flush the parent's pending TAP lines again), and
 * SIGINT/SIGTERM/SIGALRM running teardown before exiting, with an alarm after
 * watchdog_s seconds, so that an interrupted or hung run still removes its
 * netns, cgroups and pins. name is the binary's, for the message.
 */
void e2e_main_init(const char *name, int (*teardown)(void **state), unsigned watchdog_s);

/* SIGKILL and reap *pid (when set), then clear it: teardown may run twice. */
void e2e_kill(pid_t *pid);
/* The same for a process group leader and its group (servers that fork workers). */
void e2e_kill_group(pid_t *pid);

/*
 * Identity servers: in netns, a TCP listener on each ips[i]:port (IPv4) that
 * answers every connection with ips[i] and closes, so a client sees which
 * endpoint it reached. Two workers serve the same listeners. The leader of
 * their process group (stop it with e2e_kill_group) once they listen, or -1.
 */
pid_t e2e_ident_servers_start(const char *netns, const char *const *ips, int n, uint16_t port);

/*
 * Teardown steps, each idempotent (a failed setup runs teardown, and a signal
 * may run it again) and each clearing what it released.
 */
/* Remove the test cgroup (moving what is left in it out), then our cgroup2 mount if we made one. */
void e2e_cgroups_release(const char *cgroot, char *cgroup, bool *cgmounted);
/* `ip netns del` each name of the NULL-terminated list when *made: deleting a netns removes its veth ends, and their peers. */
void e2e_netns_del(bool *made, ...) __attribute__((sentinel));
/* rm -rf the temp dir, first running dump (the logs in it) when $KB_KEEP_LOG is set. */
void e2e_tmpdir_remove(char *tmp, void (*dump)(void));
/* A failed group setup: say why, dump the logs, tear down what was made; -1 for cmocka. */
int e2e_setup_failed(const char *why, void (*dump)(void), int (*teardown)(void **state));

/* What every daemon test's group setup makes: the binary, a temp dir with the daemon's files, a test cgroup, a pin dir. */
struct e2e_env {
	const char *skip;	/* why the tests skip, or NULL */
	char kb[PATH_MAX];	/* build/kbackend */
	char tmp[PATH_MAX];	/* /tmp/kbt-<name>-XXXXXX */
	char sock[PATH_MAX];	/* <tmp>/kb.sock */
	char state[PATH_MAX];	/* <tmp>/state */
	char log[PATH_MAX];	/* <tmp>/daemon.log */
	char cgroot[PATH_MAX];	/* the cgroup2 hierarchy */
	bool cgmounted;		/* we mounted it */
	char cgroup[PATH_MAX];	/* <cgroot>/kbt-<name>-<pid> */
	char bpffs[PATH_MAX];	/* /sys/fs/bpf/kbt-<name>-<pid> (not made: the daemon pins there) */
};

/*
 * The common half of a group setup: skip checks (root, kernel, ip,
 * build/kbackend, cgroup2), then the temp dir, the test cgroup and bpffs.
 * 0 when ready or skipping (env->skip set); -1 (said on stderr) when
 * something failed: the test's setup_failed.
 */
int e2e_env_setup(struct e2e_env *env, const char *name);
/* Release the test cgroup and our cgroup2 mount, then remove the temp dir (dump first with $KB_KEEP_LOG); idempotent. */
void e2e_env_teardown(struct e2e_env *env, void (*dump)(void));

/* ---- client processes: looping TCP clients that count which endpoint answered ---- */

/* Room for every test's endpoints; the unused counters stay 0. */
#define E2E_TALLY_EPS 4

/* One looping client's results, in memory the test shares (MAP_SHARED) with the client process. */
struct e2e_tally {
	long ok[E2E_TALLY_EPS];	/* answers, by endpoint */
	long bad;		/* answered, but by something that is not an endpoint */
	long fail;		/* connect or read failed */
	int first_err;		/* errno of the first failure */
	char first_bad[64];
	long limit;		/* stop after this many connects; 0: until stop */
	int stop;
	int pause_us;		/* between connects (0: none), so a client that runs for minutes leaves CPU to the rest */
};

/* Several tallies added up. */
struct e2e_sum {
	long ok[E2E_TALLY_EPS], total_ok, bad, fail;
	int first_err;
	char first_bad[64];
};

/*
 * One TCP connection to ip:port; out gets what the endpoint answered (its
 * identity). With check_peer, getpeername must still show ip:port, not the
 * endpoint. 0 or -errno.
 */
int e2e_tcp_ident(const char *ip, uint16_t port, char *out, size_t len, bool check_peer);
/*
 * The body of a client process (already in its cgroup and netns): connect to
 * ip:port until t->stop or t->limit, counting answers by their index in
 * eps[neps]; then _exit(0).
 */
void e2e_tally_run(struct e2e_tally *t, const char *ip, uint16_t port, bool check_peer, const char *const *eps,
		   int neps) __attribute__((noreturn));
/* Tallies t[0..n-1] added up. */
struct e2e_sum e2e_tallies_sum(const struct e2e_tally *t, int n);

/*
 * Wait for the child *kid until deadline (kb_now_ms), first setting *stop when
 * stop is not NULL; killed when it overstays. Its wait status (0 when there
 * was none); *kid is 0 afterwards.
 */
int e2e_kid_wait(pid_t *kid, int *stop, long deadline);
/* SIGKILL and reap kids[0..n-1] that still run. */
void e2e_kids_kill(pid_t *kids, int n);

/* Not one connection of the sum failed or reached something that is not an endpoint. */
#define e2e_assert_no_failure(s)                                                                        \
	do {                                                                                            \
		if ((s).fail || (s).bad)                                                                \
			fail_msg("%ld failed connection(s) (first: %s), %ld answered by a non-endpoint (%s)", \
				 (s).fail, strerror((s).first_err), (s).bad, (s).first_bad);            \
	} while (0)

#endif /* KB_E2E_DAEMON_H */
