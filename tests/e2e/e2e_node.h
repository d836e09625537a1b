/* SPDX-License-Identifier: Apache-2.0 */
/* The node that test_daemon, test_control, test_state and test_reads share: its netns, three endpoints, the daemon in it, looping clients, and the daemon's view. */
#ifndef KB_E2E_NODE_H
#define KB_E2E_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "e2e_daemon.h"

/*
 * Topology (DESIGN section 8). The daemon and the clients live in the node
 * netns, which has no default route: a frontend is reachable only through
 * the programs the daemon attaches to the test cgroup. <t> is the binary's
 * letter (d: test_daemon, c: test_control, s: test_state, l: test_limits, k: test_crash,
 * r: test_reads, i: test_incremental, e: test_endpoints), so that the
 * binaries' names never meet.
 *
 *   kbt-<t>node-<pid>  198.51.100.254/24 203.0.113.254/24  ==veth==  kbt-<t>be-<pid>
 *                                          e1 198.51.100.1, e2 203.0.113.2, e3 198.51.100.3 (TCP 8080)
 *
 * Each endpoint answers a TCP connection with its own address, then closes.
 * The daemon runs as `build/kbackend daemon` with its own cgroup, bpffs
 * directory, state directory and socket; the tests talk to it through the
 * CLI (checking -o json) and through kb_ctl_call().
 */
#define FE_ADDR "198.18.0.10"
#define FE_PORT 80
#define EP_PORT 8080
#define NEPS 3
#define MAX_KIDS 8

extern const char *const EPS[NEPS];

struct node_env {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	char node[64], be[64];
	char tag;		/* the binary's letter in its netns and veth names */
	bool netns_made;
	pid_t server;		/* process group of the endpoint servers */
	pid_t daemon;
	pid_t kids[MAX_KIDS];
	struct e2e_tally *t;	/* MAX_KIDS tallies, MAP_SHARED */
};

/* The one node of this test binary. */
extern struct node_env E;

/* The daemon's and the CLI's stderr, as TAP comments: what a failed start or apply said. */
void dump_log(void);

/* ---- manifests: the shape of examples/, with a TCP listener and three Backends ---- */

extern const char YAML_EG[];	/* EnvoyGateway with the Backend API on */
extern const char YAML_GW[];	/* Gateway "eg": a TCP listener at FE_ADDR:FE_PORT */
/* e1 and e3 in Envoy Gateway's shape, e2 in the seed's; e1_addr may replace e1's address. */
void yaml_backends(char *buf, size_t len, const char *e1_addr);
/* The TCPRoute "app": a backendRef to e<i+1> for every w[i] > 0. */
void yaml_route(char *buf, size_t len, const int w[NEPS]);
/*
 * Apply n Backends that nothing routes to (bulk-0 ... in namespace bulk, with
 * the label tag=<tag> unless tag is NULL) from <tmp>/bulk.yaml (its path in
 * path): `get backends -n bulk` then answers with megabytes.
 */
void apply_bulk(char *path, size_t len, int n, const char *tag);
/* The whole configuration as one multi-document file. */
void yaml_all(char *buf, size_t len, const int w[NEPS], const char *e1_addr);
/* content written to <tmp>/name; its path in path. Fails the test when it cannot. */
void write_yaml(char *path, size_t len, const char *name, const char *content);

/* ---- the daemon, as a child process in the node netns ---- */

/* Send one request to the daemon; NULL with errno set when it could not be reached. */
struct json_object *ctl(const char *op, int timeout_ms);
/* Connect to the control socket by hand; the fd or -errno. */
int ctl_connect(void);
/* The daemon answers `status` with ok. */
bool daemon_serves(void);
/* More daemon flags for daemon_start (NULL-terminated; NULL: none). */
extern const char *const *daemon_args;
/* Start it and wait until it serves: 0, or -1 (its log says why). */
int daemon_start(void);
void daemon_kill(void);
/* A test may leave the daemon dead (kill -9, unload, a failure): the next one gets a fresh one. */
void daemon_ensure(void);

/* ---- the CLI: build/kbackend with KBACKEND_SOCKET set; stdout captured, stderr to the log ---- */

#define CLI(out, ...) e2e_cli(E.env.kb, E.env.sock, E.env.log, (out), (const char *const[]){ __VA_ARGS__, NULL })
/* The same with -o json: the parsed stdout (caller puts it), its exit code in *rc. */
#define CLI_JSON(rc, ...) e2e_cli_json(E.env.kb, E.env.sock, E.env.log, (rc), (const char *const[]){ __VA_ARGS__, NULL })

/* ---- applying through the control socket ---- */

/* The request to apply one file (caller puts it). */
struct json_object *apply_req(const char *name, const char *content);
/* Apply the whole configuration with these route weights; fails the test unless accepted. */
void apply_weights(int w1, int w2, int w3);

/* ---- clients: in the test cgroup and the node netns, counting on the tallies E.t ---- */

/* Start a client on tally idx, making `limit` connects (0: until stopped). */
void client_spawn(int idx, long limit, bool check_peer);
/* Stop (or just wait for) client idx. 0, or 1 if it had to be killed or died badly. */
int client_wait(int idx, bool stop, long deadline);
/* Clients on tallies 0..n-1. */
void clients_start(int n, long limit, bool check_peer);
/* Stop (or wait for) every client; returns how many had to be killed or died badly. */
int clients_stop(bool wait_only);
void clients_kill(void);
/* Results of tallies first..first+n-1. */
struct e2e_sum tallies_sum(int first, int n);
struct e2e_sum clients_sum(int n);
/* Wait until the answers of clients 0..n-1 reach `target`; false on timeout. */
bool clients_reach(int n, long target, long timeout_ms);
/* `count` connects by one fresh client, on the last tally so that looping clients can go on. */
struct e2e_sum connect_n(long count, bool check_peer);

/* ---- reading the daemon's view ---- */

/* Names of the objects `get KIND -A -o json` lists, as " name name ... ". */
void get_names(const char *kind, char *buf, size_t len);
/* The pinned frontends map and every slot run it points at, as sorted hex lines (caller frees). */
char *dump_frontends_map(void);
/*
 * The same, with history_free: without what depends on allocation history
 * (slot_base, frontend and endpoint ids), so two programmings of the same
 * compile compare equal whatever came before them.
 */
char *dump_frontends_map_as(bool history_free);
struct kb_store;
struct kb_model;
/* The daemon's state dir (E.env.state) opened and loaded into m, as a restart reads it; fails the test unless it loads. */
void load_stored_state(struct kb_store *st, struct kb_model *m);
/* Entries of dir whose names start with prefix, as "name name ... " in names; their count, -1 when dir does not exist. */
int dir_entries(const char *dir, const char *prefix, char *names, size_t len);

/* ---- setup and teardown ---- */

/*
 * The group setup of a binary: the test environment kbt-<name>-<pid>, the
 * topology with the binary's letter tag, the endpoint servers and the daemon.
 * 0 (also when skipping), or -1 after tearing down what it made.
 */
int node_setup(const char *name, char tag);
/* The group teardown: idempotent, since a failed setup and a signal run it too. */
int group_teardown(void **state);
/* After every test, even a failed one: no client outlives it. */
int test_teardown(void **state);

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

#endif /* KB_E2E_NODE_H */
