/* SPDX-License-Identifier: Apache-2.0 */
/* test_kube's environment: two node netns, the test API server with kubectl, the daemons, counting clients. */
#ifndef KB_KUBE_ENV_H
#define KB_KUBE_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "e2e_daemon.h"

/* The topology: the comment at the top of test_kube.c. */
#define FE_ADDR "198.18.0.10"		/* Gateway eg: Backend b1 */
#define SVC_FE_ADDR "198.18.0.12"	/* Gateway svc: Service web through its EndpointSlice */
#define STEADY_FE_ADDR "198.18.0.13"	/* Gateway steady: Backend b2, which no fault changes */
#define FE_PORT 80
#define EP_PORT 8080
#define NEPS 3
#define MAX_KIDS 4
#define API_PORT 16443		/* the server's listener in the node netns */
#define API_PORT2 16444		/* and in node2: daemon2 can reach the server only there */
#define WAIT_MS 20000
#define NODE2_ADDR "198.51.100.253"	/* node2's end of its veth to the endpoints */
#define KUBE_USER "kbackend"		/* the user of the daemon's token on the server */
#define KUBE_USER2 "kbackend-node2"	/* and of daemon2's */

extern const char *const EPS[NEPS];

struct kube_env {
	struct e2e_env env;
	char node[64], node2[64], be[64];
	bool netns_made;
	pid_t server, api, daemon, daemon2;
	char cgroup2[PATH_MAX], bpffs2[PATH_MAX], sock2[PATH_MAX], state2[PATH_MAX], log2[PATH_MAX];
	pid_t kids[MAX_KIDS];
	struct e2e_tally *t;	/* MAX_KIDS tallies, MAP_SHARED */
	char apidir[PATH_MAX];	/* the API server's CA, certificate, token */
	char kubeconfig[PATH_MAX], kubeconfig2[PATH_MAX];	/* API_PORT, API_PORT2 */
	char apilog[PATH_MAX];
	char token[256], token2[256];	/* the users KUBE_USER and KUBE_USER2 */
	char tokfile[PATH_MAX];	/* the kubeconfig's tokenFile: rotated by rename, as the kubelet does */
	char tokfile2[PATH_MAX];	/* kubeconfig2's */
	const char *kubectl;	/* Debian's kubectl (scripts/deps.sh) */
	char control[PATH_MAX];	/* the API server's fault controls (a unix socket) */
};

extern struct kube_env E;

/* The daemons' and the server's logs, as TAP comments. */
void dump_log(void);

/* ---- the test API server and kubectl ---- */

/* The repository's FILE (a path from its top), found from build/kbackend. */
void repo_file(char *buf, size_t len, const char *file);
/* kubectl in the node netns against the test server; its stdout in *out (caller frees) when out is set. */
int kubectl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Write a manifest to the temp dir and `kubectl verb -f` it; fails the test when kubectl does. */
void kube(const char *verb, const char *name, const char *json);
char *gwclass(char *buf, size_t len, const char *name, const char *controller);
/* A Gateway of class cls with one TCP listener at addr:FE_PORT. */
char *gateway(char *buf, size_t len, const char *name, const char *cls, const char *addr);
/* A Backend with one IP endpoint; extra is spliced into spec (a field kbackend does not know, say). */
char *backend(char *buf, size_t len, const char *name, const char *ip, int port, const char *extra);
/* A TCPRoute on Gateway gw to Backend be. */
char *tcproute(char *buf, size_t len, const char *name, const char *gw, const char *be);
/* A TCPRoute on Gateway gw to port `port` of Service svc. */
char *tcproute_svc(char *buf, size_t len, const char *name, const char *gw, const char *svc, int port);
/* POST /request on the control socket (tests/kube/README.md, "Fault controls"), with body when set; 0 when it worked. */
int api_fault_body(const char *request, const char *body);
int api_fault(const char *fault);
/* GET /request on the control socket: the parsed answer (caller puts it), or NULL. */
struct json_object *api_get(const char *request);

/* kubectl get -o json of one object (caller puts it), or NULL. */
struct json_object *kget(const char *what);
/* The condition `type` of status.conditions (or of the route parent of our controllerName's), or NULL. */
struct json_object *kcond(struct json_object *obj, const char *type, bool parent);
/* Wait until `what`'s condition `type` has status want (and message msg, when set), read with kubectl. */
void wait_kcond(const char *what, const char *type, bool parent, const char *want, const char *msg);

/* ---- the daemons ---- */

struct json_object *ctl(const char *op, int timeout_ms);
/* The daemon in the node netns; its pid once it serves, or -1. */
pid_t daemon_spawn(void);
/* The second daemon, in node2 (its own cgroup, pins, socket, state; no sk_lookup); its pid once it serves, or -1. */
pid_t daemon2_spawn(bool no_status);
/* status.kubernetes (a new reference to the whole reply in *st). */
struct json_object *kube_status(struct json_object **st);
struct json_object *kind_status(struct json_object *k, const char *kind);
bool refused_has(struct json_object *k, const char *label);
/* status.kubernetes.kinds[Backend][key]. */
long backend_count(const char *key);

/* ---- clients: in the node netns and the test cgroup, counting on E.t ---- */

/* A client on tally idx to addr:FE_PORT (getpeername checked), `limit` connects (0: until stopped), pause_us between. */
void client_spawn(int idx, const char *addr, long limit, int pause_us);
/* `count` connects to addr by one fresh client on the last tally. */
struct e2e_sum connect_to(const char *addr, long count);
/* The same from node2, in daemon2's cgroup. */
struct e2e_sum connect_to2(const char *addr, long count);
/* Every one of 20 connects to FE_ADDR lands on endpoint ep (-1: every one is refused). */
bool steers_only(int ep);
/* Wait until FE_ADDR steers only to ep (or refuses, ep -1): the daemon saw the server's change. */
void wait_steers_within(int ep, long ms);
void wait_steers(int ep);
/*
 * What a fault must leave: the daemon synced, holding every object the
 * server holds, and `kbackend verify` (a from-scratch compile of the state,
 * and the maps read back) finding no difference.
 */
void assert_converged(void);

/* ---- lifecycle ---- */

int group_setup(void **state);
int group_teardown(void **state);
/* Each test starts with the first daemon serving, no second one, and no leftover invalid Backend of a failed test. */
int test_setup(void **state);

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

#endif /* KB_KUBE_ENV_H */
