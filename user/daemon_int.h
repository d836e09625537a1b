/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the daemon (daemon.c, apply.c, serve.c): its state, shared by the start-up, the change pipeline and the server. */
#ifndef KB_DAEMON_INT_H
#define KB_DAEMON_INT_H

#include <stdbool.h>
#include <time.h>
#include <json-c/json.h>

#include "compile.h"
#include "control.h"
#include "dataplane.h"
#include "loop.h"
#include "model.h"
#include "resolver.h"
#include "validate.h"

#define MAX_CLIENTS 64
#define CLIENT_DEADLINE_MS 5000		/* a client must send its whole request within this */
#define MAX_FLAG_LIST 64
#define RESTORE_DNS_WAIT_MS 5000	/* longest a restart waits for FQDN answers before programming */

struct daemon;

struct client {
	int fd;
	long deadline;
	struct kb_frame_reader rd;
	struct daemon *d;
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
	/* Running state. */
	struct kb_loop *loop;
	struct kb_dataplane *dp;
	struct kb_resolver *resolver;	/* FQDN endpoints; its answers feed every compile */
	long restore_deadline;		/* restored state waits for DNS until then; 0: not waiting */
	struct kb_model state;		/* the accepted objects, validated */
	struct kb_compiled compiled;	/* what the maps hold */
	int lfd, sigfd;
	struct client clients[MAX_CLIENTS];
	bool stop, unload;
	time_t started;
	/* Apply bookkeeping, shown by `status`. */
	unsigned long applies, apply_errors;
	time_t last_apply;
	char last_error[512];
};

/* apply.c: the change pipeline. */
struct kb_compile_env kb_daemon_compile_env(struct daemon *d);
/* Apply or delete the request's files ([{name, content}]) as one change; returns the reply. */
struct json_object *kb_daemon_change(struct daemon *d, struct json_object *files, bool del, bool dry_run);
/* Recompile the stored state with the current DNS answers and health, and swap what changed. */
void kb_daemon_recompile(struct daemon *d);
/* Tell the resolver which names the programmed frontends need. */
void kb_daemon_update_names(struct daemon *d);
/* Restore --state-dir at start and program it (after DNS has answered, when FQDNs are in it). */
void kb_daemon_restore(struct daemon *d);
/* Register the resolver's fd and timer with the loop; recompiles when an answer changes. */
int kb_daemon_dns_start(struct daemon *d);

/* serve.c: the control socket. */
int kb_serve_start(struct daemon *d);
void kb_serve_stop(struct daemon *d);

#endif /* KB_DAEMON_INT_H */
