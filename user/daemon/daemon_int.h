/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the daemon (daemon*.c, apply.c, serve.c): its state, shared by the start-up, the change pipeline and the server. */
#ifndef KB_DAEMON_INT_H
#define KB_DAEMON_INT_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>
#include <json-c/json.h>

#include "bridge/bridge.h"
#include "change/state_index.h"
#include "change/table_index.h"
#include "compile/compile.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "health/health.h"
#include "kube/kube.h"
#include "daemon/kernel_features.h"
#include "daemon/loop.h"
#include "manifest/model.h"
#include "resolver/resolver.h"
#include "store/store.h"
#include "validate/validate.h"

#define MAX_CLIENTS KB_CTL_MAX_CLIENTS
#define CLIENT_DEADLINE_MS 5000		/* a client must send its whole request within this */
#define CLIENT_REPLY_MS 10000		/* and take its whole reply within this, or be dropped */
#define MAX_FLAG_LIST 64
#define MAX_NODE_ADDRS 256
#define RESTORE_DNS_WAIT_MS 5000	/* longest a restart waits for FQDN answers before programming */

struct daemon;
struct kb_read;
struct kb_reads_index;

struct client {
	int fd;
	long deadline;
	struct kb_frame_reader rd;
	struct daemon *d;
	/* The reply (header and body), written as the peer takes it; NULL while the request is read. */
	char *out;
	size_t outlen, outoff;
	/* A streamed reply: the items still to render, a chunk at a time as the peer takes them; NULL: none. */
	struct kb_read *rs;
};

struct daemon {
	/* Flags. */
	struct kb_policy policy;
	char *unix_dirs[MAX_FLAG_LIST];
	char *allow[MAX_FLAG_LIST];
	const char *config;
	const char *state_dir;
	const char *cgroup;
	const char *bpffs;
	const char *socket;
	const char *dns_servers[MAX_FLAG_LIST];
	size_t ndns_servers;
	int64_t dns_min_ttl_ms, dns_max_ttl_ms;
	const char *watch_dir;		/* --watch-dir: the directory is the desired state (watch.c) */
	const char *metrics_addr;	/* --metrics-addr: Prometheus /metrics (metrics.c) */
	struct kb_kube_opts kube_opts;	/* --kubernetes, --kubeconfig, --controller-name, --no-status (user/kube/) */
	struct kb_dataplane_opts dp_opts;	/* --bpffs, --cgroup and the map sizes: --max-frontends, --max-slots, --max-endpoints, --max-tracked-sockets */
	struct kb_bridge_opts bridge_opts;	/* --bridge-netns, --bridge-buffer, --bridge-mode (daemon_bridge.c) */
	char *unix_real[MAX_FLAG_LIST];	/* each --unix-dir resolved once at start (daemon_bridge.c) */
	bool no_inbound;		/* --no-inbound: no sk_lookup program on the node's netns */
	/* The node's own addresses, read from the daemon's netns: refused as endpoints unless allowed. */
	char *node_addrs[MAX_NODE_ADDRS];
	struct kb_arena node_arena;
	/* Running state. */
	struct kb_bridge *bridge;	/* the unix bridge: listeners and the byte-moving thread */
	struct kb_inbound *inbound;	/* sk_lookup_steer and its listener maps */
	long bridge_sweep_at;
	struct kb_loop *loop;
	struct kb_dataplane *dp;
	struct kb_resolver *resolver;	/* FQDN endpoints; its answers feed every compile */
	struct kb_features features;	/* what the kernel offers, probed at start (status shows it) */
	struct kb_health *health;	/* endpoint health; feeds every compile (NULL: all healthy) */
	long restore_deadline;		/* restored state waits for DNS until then; 0: not waiting */
	struct kb_model state;		/* the accepted objects, validated */
	struct kb_store store;		/* their durable copy under --state-dir: snapshot and log */
	bool store_diverged;		/* the store holds objects `state` does not (a refused restore): rewrite it whole */
	struct kb_compiled compiled;	/* what the maps hold */
	/* The incremental change (apply.c, apply_scope.c). */
	struct kb_state_ix six;		/* over state: objects by key, routes by Gateway and Backend, diagnostics (state_index.c) */
	struct kb_table_ix tix;		/* over compiled: frontends by Gateway, those with DNS names (table_index.c) */
	size_t garbage;			/* superseded objects and frontends still held in state's and compiled's memory */
	unsigned long node_hash;	/* of the node addresses the state was judged with */
	unsigned long changes_scoped, changes_whole;
	size_t last_judged, last_compiled;	/* objects judged and frontends compiled by the last change */
	const char *last_whole_why;	/* why the last change took the whole pipeline (static), or NULL */
	int lfd, sigfd;
	dev_t sock_dev;			/* the control socket's file, as bound: removed at exit only if still ours */
	ino_t sock_ino;
	struct kb_watch *watch;
	struct kb_kube *kube;		/* the Kubernetes source (kube_source.c), or NULL */
	struct kb_metrics *metrics;
	struct client clients[MAX_CLIENTS];
	struct kb_reads_index *reads;	/* reads.c: objects and frontends by name, label and reference */
	unsigned long reads_gen;	/* bumped by every change of state or compiled (kb_daemon_reads_changed) */
	long trim_at;			/* kb_now_ms() at which free heap pages go back to the system; 0: none due */
	long rss_trimmed;		/* resident bytes after the last return of free heap pages */
	struct kb_restore_read *restore_read;	/* daemon_state.c: the stored state being read at start, or NULL */
	unsigned long clients_refused;	/* over the limit: answered `too many clients` */
	unsigned long clients_dropped;	/* did not take their reply in time */
	/* The state file at start (daemon_state.c): what was wrong with it, and what the pins serve that no stored object accounts for. */
	char state_path[4096];
	char state_problem[1024];
	char state_aside[4200];
	struct kb_frontend_key *unaccounted;	/* sorted; any: degraded */
	size_t nunaccounted;
	bool stop, unload;
	bool reply_all;			/* the request being served asked for every object in a change's reply */
	time_t started;
	/* Apply bookkeeping, shown by `status`. */
	unsigned long applies, apply_errors;
	time_t last_apply;
	char last_error[1024];
};

/* apply.c: the change pipeline. */
struct kb_compile_env kb_daemon_compile_env(struct daemon *d);
/* What a change does with the request's objects. */
enum kb_change {
	KB_CHANGE_APPLY = 0,	/* add or update them; other stored objects stay */
	KB_CHANGE_DELETE = 1,	/* remove them (each must exist) */
	KB_CHANGE_REPLACE = 2,	/* they become the whole state: stored objects not among them are removed */
};
/*
 * Apply, delete or replace with the request's files ([{name, content}]) as one
 * change; returns the reply. each (a replace only): per-object acceptance, for
 * a source that delivers objects one by one: refused objects are set aside
 * (the reply's refusedObjects) and the others programmed. Without it a
 * refused object refuses the whole request (the CLI).
 */
struct json_object *kb_daemon_change(struct daemon *d, struct json_object *files, enum kb_change mode, bool dry_run,
				     bool each);
/* Recompile the stored state with the current DNS answers and health, and swap what changed. */
void kb_daemon_recompile(struct daemon *d);
/* The state and table were replaced whole (restore, a whole change): their indexes are rebuilt. */
void kb_daemon_state_reset(struct daemon *d);
/* Endpoint health changed: recompile the frontends whose endpoints' health moved. */
void kb_daemon_health_changed(struct daemon *d);
/* DNS answers changed: recompile the frontends that use the changed names (all of them if unlisted). */
void kb_daemon_dns_changed(struct daemon *d);
/* Tell the resolver which names the programmed frontends need. */
void kb_daemon_update_names(struct daemon *d);
/* Re-read the node's own addresses into the SSRF policy (before every validation). */
void kb_daemon_read_node_addrs(struct daemon *d);
/* Register the resolver's fd and timer with the loop; recompiles when an answer changes. */
int kb_daemon_dns_start(struct daemon *d);

/*
 * verify.c: the whole pipeline from scratch on the stored objects, compared
 * with what the changes built and with the maps read back from the kernel.
 */
struct json_object *kb_daemon_verify(struct daemon *d);

/* daemon_state.c: the stored state at start, and the degraded mode when it cannot be trusted. */
/*
 * Restore --state-dir at start and program it (after DNS has answered, when
 * FQDNs are in it). A file that cannot be trusted is set aside, nothing is
 * programmed, and the pinned frontends become unaccounted for. Runs while
 * the health programs load (d->health is NULL: every endpoint healthy, as a
 * health not yet synced says); the caller syncs health with the result.
 */
void kb_daemon_restore(struct daemon *d);
/* Start reading the stored state on a thread (kb_daemon_restore takes it), so that it overlaps the programs' loading. */
void kb_daemon_restore_begin(struct daemon *d);
/* True (why set) when next lacks a pinned frontend that no stored object accounts for: verb ("apply") is refused. */
bool kb_daemon_would_drop(struct daemon *d, const struct kb_compiled *next, const char *verb, char *why, size_t len);
/* A change took effect (or the restore did): whatever the pins serve is now accounted for. */
void kb_daemon_accounted(struct daemon *d);
/* status's "stateFile": path, format, and when something is wrong, the problem, the set-aside copy and the unaccounted frontends. */
struct json_object *kb_daemon_state_json(struct daemon *d);

/* daemon_bridge.c: the unix bridge and inbound steering. */
enum { OPT_BRIDGE_NETNS = 512, OPT_BRIDGE_BUFFER, OPT_BRIDGE_MODE, OPT_NO_INBOUND, OPT_BRIDGE_IDLE_TIMEOUT };
#define KB_BRIDGE_LONGOPTS                                                      \
	{ "bridge-netns", required_argument, NULL, OPT_BRIDGE_NETNS },          \
	{ "bridge-buffer", required_argument, NULL, OPT_BRIDGE_BUFFER },        \
	{ "bridge-mode", required_argument, NULL, OPT_BRIDGE_MODE },            \
	{ "bridge-idle-timeout", required_argument, NULL, OPT_BRIDGE_IDLE_TIMEOUT }, \
	{ "no-inbound", no_argument, NULL, OPT_NO_INBOUND }
/* A --bridge-* or --no-inbound flag (getopt's ch, optarg); 1 taken, 0 not ours, -1 bad value (message printed). */
int kb_daemon_bridge_opt(struct daemon *d, int ch, const char *arg);
/* Start the bridge thread and attach sk_lookup_steer; after the dataplane is open, before the restore. */
int kb_daemon_bridge_start(struct daemon *d);
void kb_daemon_bridge_stop(struct daemon *d);
/* The register / unregister ops: a listening socket passed with the request becomes a frontend's target. */
struct json_object *kb_daemon_register(struct daemon *d, struct json_object *req, struct kb_frame_reader *rd,
				       bool reg);
/* The bridge's counters for `status`. */
struct json_object *kb_daemon_bridge_status(struct daemon *d);
/* Add "bridge" (why connects were reset) to the unix endpoints of one frontend of `get endpoints` (jf: kb_render_frontend). */
void kb_daemon_bridge_annotate(struct daemon *d, const struct kb_cfrontend *fe, struct json_object *jf);

/* reads.c: the read side's index. */
/* The accepted objects or the programmed frontends changed: the index is rebuilt on the next read, and a streamed read in progress ends. */
void kb_daemon_reads_changed(struct daemon *d);
/* After work that churned the heap (a change, a whole-list read, a scrape): malloc_trim in a second, from the loop. */
void kb_daemon_trim_soon(struct daemon *d);
/* Free the index (daemon exit). */
void kb_daemon_reads_free(struct daemon *d);

/* serve.c: the control socket. */
int kb_serve_start(struct daemon *d);
void kb_serve_stop(struct daemon *d);
/* Remove the socket file, unless another daemon (an upgrade) has bound its own there since. */
void kb_serve_unlink(struct daemon *d);

#endif /* KB_DAEMON_INT_H */
