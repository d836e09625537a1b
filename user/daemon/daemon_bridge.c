// SPDX-License-Identifier: Apache-2.0
/* The daemon's side of the unix bridge and of inbound steering: flags, start-up, the listener sweep, register. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/bridge.h"
#include "daemon_int.h"
#include "bridge/inbound.h"

int kb_daemon_bridge_opt(struct daemon *d, int ch, const char *arg)
{
	struct kb_bridge_opts *o = &d->bridge_opts;

	switch (ch) {
	case OPT_BRIDGE_NETNS:
		if (o->nnetns == KB_BRIDGE_MAX_NETNS) {
			fprintf(stderr, "kbackend: daemon: at most %d --bridge-netns\n", KB_BRIDGE_MAX_NETNS);
			return -1;
		}
		if (access(arg, R_OK)) {
			fprintf(stderr, "kbackend: daemon: --bridge-netns %s: %s\n", arg, strerror(errno));
			return -1;
		}
		o->netns[o->nnetns++] = arg;
		return 1;
	case OPT_BRIDGE_BUFFER:
		if (!kb_bridge_parse_size(arg, &o->buffer)) {
			fprintf(stderr, "kbackend: daemon: --bridge-buffer %s: expected a size from 64KiB to 2GiB, "
					"like 4MiB\n", arg);
			return -1;
		}
		return 1;
	case OPT_BRIDGE_MODE:
		if (!kb_bridge_parse_mode(arg, &o->mode)) {
			fprintf(stderr, "kbackend: daemon: --bridge-mode %s: expected copy or splice\n", arg);
			return -1;
		}
		return 1;
	case OPT_BRIDGE_IDLE_TIMEOUT: {
		int64_t ms;

		if (!kb_parse_duration_ms(arg, &ms) || ms < 0) {
			fprintf(stderr, "kbackend: daemon: --bridge-idle-timeout %s: expected a duration like 1h or 90s "
					"(0: never)\n", arg);
			return -1;
		}
		o->idle_ms = ms;
		o->idle_set = true;
		return 1;
	}
	case OPT_NO_INBOUND:
		d->no_inbound = true;
		return 1;
	default:
		return 0;
	}
}

/* Timer: about once a second, close the listeners of unix paths that no frontend uses any more. */
static int sweep_due(void *ctx)
{
	struct daemon *d = ctx;
	long left = d->bridge_sweep_at - kb_now_ms();

	return left < 0 ? 0 : (int)left;
}

static void sweep_tick(void *ctx)
{
	struct daemon *d = ctx;

	if (kb_now_ms() < d->bridge_sweep_at)
		return;
	d->bridge_sweep_at = kb_now_ms() + 1000;
	kb_bridge_sweep(d->bridge, &d->compiled);
}

/*
 * --unix-dir is the operator's own flag, so a link in it is trusted: each is
 * resolved once, here, and the bridge opens the directory it named at start.
 * Below it, nothing is followed (bridge_thread.c).
 */
static void resolve_unix_dirs(struct daemon *d)
{
	for (size_t i = 0; i < d->policy.nunix_dirs; i++) {
		char *r = realpath(d->policy.unix_dirs[i], NULL);

		if (!r) {
			kb_log_info("--unix-dir %s: %s; resolved at each connect until it exists", d->policy.unix_dirs[i],
				    strerror(errno));
			r = strdup(d->policy.unix_dirs[i]);
		}
		d->unix_real[i] = r;
	}
	d->bridge_opts.unix_dirs = d->policy.unix_dirs;
	d->bridge_opts.unix_real = d->unix_real;
	d->bridge_opts.nunix_dirs = d->policy.nunix_dirs;
	if (!d->bridge_opts.idle_set)
		d->bridge_opts.idle_ms = KB_BRIDGE_IDLE_DEFAULT_MS;
}

int kb_daemon_bridge_start(struct daemon *d)
{
	char why[256];

	resolve_unix_dirs(d);

	/* Inbound first: the bridge reports each listener it makes to it. */
	if (!d->no_inbound && kb_inbound_open(d->bpffs, &d->inbound))
		kb_err("failed to start inbound steering: connections from other hosts are not steered");
	d->bridge_opts.on_listen = d->inbound ? kb_inbound_add_bridge : NULL;
	d->bridge_opts.on_listen_ctx = d->inbound;
	d->bridge = kb_bridge_new(&d->bridge_opts, why, sizeof(why));
	if (!d->bridge) {
		kb_err("failed to start the unix bridge: %s; unix endpoints are refused", why);
		return -1;
	}
	d->bridge_sweep_at = kb_now_ms() + 1000;
	return kb_loop_add_timer(d->loop, sweep_due, sweep_tick, d);
}

void kb_daemon_bridge_stop(struct daemon *d)
{
	kb_bridge_free(d->bridge);
	d->bridge = NULL;
	kb_inbound_close(d->inbound);
	d->inbound = NULL;
	for (size_t i = 0; i < MAX_FLAG_LIST; i++) {
		free(d->unix_real[i]);
		d->unix_real[i] = NULL;
	}
}

void kb_daemon_bridge_annotate(struct daemon *d, const struct kb_cfrontend *fe, struct json_object *jf)
{
	struct json_object *eps;

	if (!json_object_object_get_ex(jf, "endpoints", &eps))
		return;
	for (size_t e = 0; e < fe->neps && e < json_object_array_length(eps); e++) {
		struct json_object *jb;
		char why[256];
		uint64_t n;
		long ago;

		if (fe->eps[e].type != KB_EP_UNIX || !fe->eps[e].address ||
		    !kb_bridge_path_refusal(d->bridge, fe->eps[e].address, why, sizeof(why), &n, &ago))
			continue;
		jb = json_object_new_object();
		json_object_object_add(jb, "refused", json_object_new_int64((int64_t)n));
		json_object_object_add(jb, "lastRefusal", json_object_new_string(why));
		json_object_object_add(jb, "lastRefusalSecondsAgo", json_object_new_int64(ago / 1000));
		json_object_object_add(json_object_array_get_idx(eps, e), "bridge", jb);
	}
}

struct json_object *kb_daemon_register(struct daemon *d, struct json_object *req, struct kb_frame_reader *rd,
				       bool reg)
{
	struct json_object *v, *r;
	const char *fe = json_object_object_get_ex(req, "frontend", &v) ? json_object_get_string(v) : NULL;
	char why[256];
	int err;

	if (!fe)
		return kb_ctl_error("malformed request: no \"frontend\"");
	if (reg)
		err = kb_inbound_register(d->inbound, fe, rd->nfds ? rd->fds[0] : -1, why, sizeof(why));
	else
		err = kb_inbound_unregister(d->inbound, fe, why, sizeof(why));
	/* The map holds its own reference; ours (and any extra) close with the request. */
	if (err)
		return kb_ctl_error("%s %s: %s", reg ? "register" : "unregister", fe, why);
	r = json_object_new_object();
	json_object_object_add(r, "ok", json_object_new_boolean(1));
	json_object_object_add(r, "frontend", json_object_new_string(fe));
	return r;
}

struct json_object *kb_daemon_bridge_status(struct daemon *d)
{
	struct json_object *o = json_object_new_object();
	struct kb_bridge_stats s;

	kb_bridge_get_stats(d->bridge, &s);
	json_object_object_add(o, "running", json_object_new_boolean(d->bridge != NULL));
	json_object_object_add(o, "mode", json_object_new_string(kb_bridge_mode_name(d->bridge_opts.mode)));
	json_object_object_add(o, "bufferBytes", json_object_new_int64((int64_t)(d->bridge_opts.buffer
										 ? d->bridge_opts.buffer
										 : KB_BRIDGE_BUFFER_DEFAULT)));
	json_object_object_add(o, "listeners", json_object_new_int64((int64_t)s.listeners));
	json_object_object_add(o, "accepted", json_object_new_int64((int64_t)s.accepted));
	json_object_object_add(o, "refused", json_object_new_int64((int64_t)s.refused));
	json_object_object_add(o, "idleClosed", json_object_new_int64((int64_t)s.idle_closed));
	json_object_object_add(o, "idleTimeoutSeconds", json_object_new_int64(d->bridge_opts.idle_ms / 1000));
	json_object_object_add(o, "active", json_object_new_int64((int64_t)s.active));
	json_object_object_add(o, "pooledPipes", json_object_new_int64((int64_t)s.pooled_pipes));
	json_object_object_add(o, "bytesUp", json_object_new_int64((int64_t)s.bytes_up));
	json_object_object_add(o, "bytesDown", json_object_new_int64((int64_t)s.bytes_down));
	json_object_object_add(o, "inbound", json_object_new_boolean(d->inbound != NULL));
	return o;
}
