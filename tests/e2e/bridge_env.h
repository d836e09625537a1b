/* SPDX-License-Identifier: Apache-2.0 */
/* What the bridge e2e tests share: the topology and its set-up, the sidecars, the daemon under a chosen bridge configuration, clients and counters (bridge_env.c). */
#ifndef KB_BRIDGE_ENV_H
#define KB_BRIDGE_ENV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "e2e_daemon.h"

/*
 * Topology (DESIGN section 8):
 *
 *   kbt-bnode-<pid>: the daemon, the test process (in the test cgroup) and the sidecars.
 *       198.51.100.254/24 on a veth; `ip route add local 198.18.0.0/15 dev lo` so that
 *       frontends arriving from the host are delivered locally, where sk_lookup steers them.
 *   kbt-bhost-<pid>: another host, 198.51.100.7/24, route 198.18.0.0/15 via the node.
 *   kbt-bcl-<pid>: a client netns given to the daemon with --bridge-netns; lo only.
 *
 * No namespace has a default route. Sidecars serve unix sockets under <tmp>/sc, the
 * daemon's --unix-dir. Frontend 198.18.0.20: port 80 echo, 81 stall (never reads),
 * 82 speaks first and half-closes, 83 absent (no socket file), 84 restartable echo.
 */#define FE "198.18.0.20"
#define FE_REG "198.18.0.21"
#define P_ECHO 80
#define P_STALL 81
#define P_FIRST 82
#define P_ABSENT 83
#define P_RESTART 84
#define P_RACE 85
#define P_RACEDIR 86
#define P_INNOCENT 87
#define P_FLOOD 88
#define P_RESET 89
#define FIRST_BYTES (1u << 20)

struct shared {
	long first_got;		/* speak-first sidecar: bytes read after its own half-close */
	int first_ok;		/* 1: all of them matched the pattern, then EOF */
	int first_done;
	int outside_accepts;	/* the sidecar outside --unix-dir: connections it accepted */
	uint64_t flood_sent;	/* the flooding sidecar: bytes written (to a client that never reads) */
};

struct env {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	char scdir[PATH_MAX];
	char node[64], host[64], cl[64];
	bool netns_made;
	int rootns;
	const char *innocent;	/* the path (under the sidecar dir) of Backend innocent */
	char outdir[PATH_MAX];	/* a directory outside --unix-dir, with a counting sidecar */
	pid_t daemon, sidecar, restart, outside, racer;
	struct shared *sh;
};

enum sc_mode {
	SC_ECHO,
	SC_STALL,	/* never reads */
	SC_FIRST,	/* speaks first, then half-closes */
	SC_OUTSIDE,	/* echo, counted in E.sh */
	SC_FLOOD,	/* writes until the peer stops taking bytes, counted in E.sh */
	SC_RESET,	/* echoes one read, then closes with bytes unread: the bridge sees a reset mid-stream */
};

/* A daemon configuration the limit tests run under (NULL fields: the defaults). */
struct bconf {
	const char *name;
	const char *mode;	/* --bridge-mode */
	const char *buffer;	/* --bridge-buffer */
	uint64_t B;		/* the bound it sets */
	const char *idle;	/* --bridge-idle-timeout */
	int fd_conns;		/* connections in the fd test */
};

/* The bridge's counters from `status` (accepted, refused, active, idleClosed): -1 each when unreadable. */
struct bcount {
	long accepted, refused, active, idle_closed, pooled_pipes;
};

#define SKIP_IF_NEEDED()        \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)


extern struct env E;
/* The bridge configurations the tests run under; the group starts with C_DEFAULT. */
extern const struct bconf C_DEFAULT, C_SPLICE, C_SMALL, C_IDLE;
/* What the last failed echo_check failed at: "send", "recv", "eof" (too early), "bytes" or "no-eof". */
extern const char *echo_fail;

/* The daemon's log, as TAP comments. */
void dump_log(void);
/* The test stream (pattern `seed` at offset off): fill, and check folding every word into *sum. */
void pat_fill(uint64_t seed, uint64_t off, unsigned char *p, size_t n);
bool pat_check(uint64_t seed, uint64_t off, const unsigned char *p, size_t n, uint64_t *sum);
/* A sidecar process serving names[i] (relative: under the sidecar dir) in modes[i]; its pid (a group leader), or -1. */
pid_t sidecar_start(const char *const *names, const enum sc_mode *modes, int n);
/* The group's manifests (one Gateway, a listener and a unix Backend per port), then extra. */
void yaml_config(char *buf, size_t len, const char *extra);
struct json_object *apply_yaml(const char *yaml);
/* Start the daemon with configuration c; 0 once it serves. */
int daemon_start(const struct bconf *c);
/* Run the daemon with c, restarting it when it runs with another (its state comes back from --state-dir). */
void use_conf(const struct bconf *c);
/* A connected TCP socket with send and receive timeouts (and, unless 0, that SO_RCVBUF), or -errno. */
int tcp_connect_rcvbuf(const char *ip, int port, int timeout_s, int rcvbuf);
int tcp_connect(const char *ip, int port, int timeout_s);
/* Send n bytes of stream seed, half-close, read the echo to EOF: 0, or -errno (-EPIPE: early EOF; -1000: bad bytes). */
int echo_check(int fd, size_t n, uint64_t seed);
/* cmocka group set-up and teardown: topology, sidecars, the daemon, the manifests; teardown is idempotent. */
int group_setup(void **state);
int group_teardown(void **state);
/* Skip when the group was skipped; else run the daemon with the test's prestate configuration (NULL: the default). */
const struct bconf *conf_of(void **state);
/* The bridge's counters from `status`. */
struct bcount bridge_counters(void);
/* Open fds of pid; settled_fds: the lowest connection_fds() over 300 ms, with nothing in flight. */
int count_fds(pid_t pid);
int settled_fds(void);
/* count_fds of the daemon less two per pipe in the bridge's pool: the fds that belong to connections and listeners. */
int connection_fds(void);
/* A connect to FE:port is accepted, then reset within a second. */
void expect_fast_reset(int port);
/* Run fn in a child inside netns name (and, unless in_cgroup, out of the test cgroup): its exit status. */
int in_netns(const char *name, bool in_cgroup, int (*fn)(void *), void *arg);
/* One byte to an echo sidecar and back: 0, or -errno (-EPIPE: EOF). */
int ping(int fd);
#endif /* KB_BRIDGE_ENV_H */
