// SPDX-License-Identifier: Apache-2.0
/* The control socket's server side: accept, check the peer, read one request, answer it without ever waiting on the peer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "daemon_int.h"
#include "render.h"
#include "watch.h"

/* ---- read-only requests ------------------------------------------------------ */

static bool kind_matches(const char *what, enum kb_kind k)
{
	if (!what || strcmp(what, "all") == 0)
		return true;
	if (strcmp(what, "backends") == 0 || strcmp(what, "backend") == 0)
		return k == KB_KIND_BACKEND;
	if (strcmp(what, "gateways") == 0 || strcmp(what, "gateway") == 0)
		return k == KB_KIND_GATEWAY;
	if (strcmp(what, "routes") == 0 || strcmp(what, "route") == 0)
		return kb_kind_is_route(k);
	if (strcmp(what, "policies") == 0)
		return k == KB_KIND_BACKEND_TRAFFIC_POLICY;
	return false;
}

static const char *req_str(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static bool req_bool(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_get_boolean(v);
}

static struct json_object *stats_json(const struct kb_conn_stats *s)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "connects", json_object_new_int64((int64_t)s->connects));
	json_object_object_add(o, "refused", json_object_new_int64((int64_t)s->refused));
	json_object_object_add(o, "established", json_object_new_int64((int64_t)s->established));
	json_object_object_add(o, "failed", json_object_new_int64((int64_t)s->failed));
	return o;
}

/* Frontends as rendered by compile, with the kernel's per-CPU counters added. */
static struct json_object *frontends_with_stats(struct daemon *d)
{
	struct json_object *arr = kb_render_frontends(&d->compiled);

	kb_daemon_bridge_annotate(d, arr);	/* why a unix endpoint's connects were reset */

	for (size_t i = 0; i < d->compiled.nfes; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[i];
		struct json_object *jf = json_object_array_get_idx(arr, i), *eps, *locs;
		struct kb_conn_stats s = { 0 };

		if (d->dp->ops->frontend_stats && !d->dp->ops->frontend_stats(d->dp, fe, &s))
			json_object_object_add(jf, "stats", stats_json(&s));
		if (json_object_object_get_ex(jf, "localities", &locs))
			for (size_t l = 0; l < fe->nlocs; l++) {
				struct json_object *dns = json_object_new_object();

				/* Names that have no usable address yet: why, from the resolver. */
				for (size_t p = 0; p < fe->locs[l].npending; p++)
					json_object_object_add(dns, fe->locs[l].pending[p],
							       kb_resolver_name_json(d->resolver, fe->locs[l].pending[p]));
				json_object_object_add(json_object_array_get_idx(locs, l), "dns", dns);
			}
		if (!json_object_object_get_ex(jf, "endpoints", &eps))
			continue;
		for (size_t e = 0; e < fe->neps; e++) {
			struct json_object *je = json_object_array_get_idx(eps, e);

			memset(&s, 0, sizeof(s));
			if (d->dp->ops->endpoint_stats && !d->dp->ops->endpoint_stats(d->dp, fe, e, &s))
				json_object_object_add(je, "stats", stats_json(&s));
			if (fe->eps[e].fqdn)
				json_object_object_add(je, "dns", kb_resolver_name_json(d->resolver, fe->eps[e].fqdn));
			{
				struct json_object *jh = kb_health_endpoint_json(d->health, fe, &fe->eps[e]);

				if (jh)
					json_object_object_add(je, "health", jh);
			}
		}
	}
	return arr;
}

static struct json_object *do_get(struct daemon *d, struct json_object *req)
{
	const char *what = req_str(req, "what"), *ns = req_str(req, "namespace"), *name = req_str(req, "name");
	struct json_object *r = json_object_new_object(), *items = json_object_new_array();

	json_object_object_add(r, "ok", json_object_new_boolean(1));
	if (what && (strcmp(what, "frontends") == 0 || strcmp(what, "endpoints") == 0)) {
		json_object_object_add(r, "frontends", frontends_with_stats(d));
		json_object_put(items);
		return r;
	}
	if (!what || !(kind_matches(what, KB_KIND_BACKEND) || kind_matches(what, KB_KIND_GATEWAY) ||
		       kind_matches(what, KB_KIND_HTTPROUTE) || kind_matches(what, KB_KIND_BACKEND_TRAFFIC_POLICY))) {
		json_object_put(r);
		json_object_put(items);
		return kb_ctl_error("unknown resource \"%s\": expected backends, gateways, routes, policies, "
				    "frontends or endpoints", what ? what : "");
	}
	for (size_t i = 0; i < d->state.nobjects; i++) {
		const struct kb_meta *o = d->state.objects[i];

		if (!kind_matches(what, o->kind))
			continue;
		if (ns && strcmp(ns, o->namespace ? o->namespace : "default") != 0)
			continue;
		if (name && strcmp(name, o->name) != 0)
			continue;
		json_object_array_add(items, kb_render_object(o));
	}
	json_object_object_add(r, "items", items);
	return r;
}

static void add_limit(struct json_object *r, const char *key, const char *flag, __u64 used, __u32 max)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "flag", json_object_new_string(flag));
	json_object_object_add(o, "max", json_object_new_int64(max));
	if (used != ~0ull)
		json_object_object_add(o, "used", json_object_new_int64((int64_t)used));
	json_object_object_add(r, key, o);
}

/* status's "limits": the map sizes the daemon runs with (its --max-* flags, or the pinned sizes) and their use. */
static struct json_object *limits_json(struct daemon *d)
{
	struct json_object *r = json_object_new_object();
	struct kb_dataplane_usage u;

	if (!d->dp->ops->usage)
		return r;
	d->dp->ops->usage(d->dp, true, &u);
	add_limit(r, "frontends", "--max-frontends", u.frontends, u.max_frontends);
	add_limit(r, "slots", "--max-slots", u.slots, u.max_slots);
	add_limit(r, "endpoints", "--max-endpoints", u.endpoints, u.max_endpoints);
	add_limit(r, "trackedSockets", "--max-tracked-sockets", u.sockets, u.max_sockets);
	add_limit(r, "udpSenders", "--max-tracked-sockets", u.udp_senders, u.max_udp_senders);
	return r;
}

static struct json_object *do_status(struct daemon *d)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(1));
	json_object_object_add(r, "pid", json_object_new_int(getpid()));
	json_object_object_add(r, "uptimeSeconds", json_object_new_int64(time(NULL) - d->started));
	json_object_object_add(r, "bpffs", json_object_new_string(d->bpffs));
	json_object_object_add(r, "cgroup", json_object_new_string(d->cgroup));
	json_object_object_add(r, "stateDir", json_object_new_string(d->state_dir));
	/* Degraded: the stored state was not restored and the pins serve frontends no stored object accounts for. */
	json_object_object_add(r, "degraded", json_object_new_boolean(d->nunaccounted > 0));
	json_object_object_add(r, "stateFile", kb_daemon_state_json(d));
	json_object_object_add(r, "objects", json_object_new_int64((int64_t)d->state.nobjects));
	json_object_object_add(r, "frontends", json_object_new_int64((int64_t)d->compiled.nfes));
	json_object_object_add(r, "limits", limits_json(d));
	json_object_object_add(r, "applies", json_object_new_int64((int64_t)d->applies));
	json_object_object_add(r, "applyErrors", json_object_new_int64((int64_t)d->apply_errors));
	json_object_object_add(r, "lastApply", json_object_new_int64(d->last_apply));
	if (d->last_error[0])
		json_object_object_add(r, "lastError", json_object_new_string(d->last_error));
	if (d->watch)
		json_object_object_add(r, "watch", kb_watch_status_json(d));
	if (d->metrics_addr)
		json_object_object_add(r, "metricsAddr", json_object_new_string(d->metrics_addr));
	json_object_object_add(r, "bridge", kb_daemon_bridge_status(d));
	{
		struct json_object *cc = json_object_new_object();
		int n = 0;

		for (int i = 0; i < MAX_CLIENTS; i++)
			n += d->clients[i].fd >= 0;
		json_object_object_add(cc, "connected", json_object_new_int(n));
		json_object_object_add(cc, "limit", json_object_new_int(MAX_CLIENTS));
		json_object_object_add(cc, "refused", json_object_new_int64((int64_t)d->clients_refused));
		json_object_object_add(cc, "dropped", json_object_new_int64((int64_t)d->clients_dropped));
		json_object_object_add(r, "controlClients", cc);
	}
	return r;
}

static struct json_object *handle(struct daemon *d, struct kb_frame_reader *rd)
{
	const char *msg = rd->msg;
	struct json_object *req = json_tokener_parse(msg), *files = NULL, *reply;
	const char *op;

	if (!req || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return kb_ctl_error("malformed request: not a JSON object");
	}
	op = req_str(req, "op");
	json_object_object_get_ex(req, "files", &files);
	if (files && !json_object_is_type(files, json_type_array))
		reply = kb_ctl_error("malformed request: files must be an array");
	else if (!op)
		reply = kb_ctl_error("malformed request: no \"op\"");
	else if (strcmp(op, "apply") == 0)
		reply = kb_daemon_change(d, files, KB_CHANGE_APPLY, req_bool(req, "dryRun"));
	else if (strcmp(op, "replace") == 0)
		reply = kb_daemon_change(d, files, KB_CHANGE_REPLACE, req_bool(req, "dryRun"));
	else if (strcmp(op, "delete") == 0)
		reply = kb_daemon_change(d, files, KB_CHANGE_DELETE, req_bool(req, "dryRun"));
	else if (strcmp(op, "get") == 0)
		reply = do_get(d, req);
	else if (strcmp(op, "register") == 0 || strcmp(op, "unregister") == 0)
		reply = kb_daemon_register(d, req, rd, strcmp(op, "register") == 0);
	else if (strcmp(op, "status") == 0)
		reply = do_status(d);
	else if (strcmp(op, "unload") == 0) {
		d->stop = d->unload = true;
		reply = json_object_new_object();
		json_object_object_add(reply, "ok", json_object_new_boolean(1));
	} else
		reply = kb_ctl_error("unknown op \"%s\"", op);
	json_object_put(req);
	return reply;
}

/* ---- the control socket --------------------------------------------------------- */

/*
 * Every socket is nonblocking and the loop never waits on a peer: a reply is
 * kept with its client and written as the peer takes it (EPOLLOUT), and a
 * peer that has not taken it by its deadline is dropped.
 */

static void on_client(void *ctx, int fd, uint32_t events);

static void client_close(struct client *c)
{
	kb_loop_del(c->d->loop, c->fd);
	close(c->fd);
	kb_frame_reset(&c->rd);
	free(c->out);
	c->out = NULL;
	c->fd = -1;
}

/* Write what the peer takes now; close once it is all written or the peer is gone. */
static void client_flush(struct client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break;
		c->outoff += (size_t)n;
	}
	client_close(c);
}

/* Queue the reply (taking it) and write as much as the peer takes now; the rest goes on EPOLLOUT. */
static void client_reply(struct client *c, struct json_object *reply)
{
	const char *s = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);
	int err;

	kb_frame_reset(&c->rd);
	c->out = kb_ctl_frame(s, len, &c->outlen);
	json_object_put(reply);
	if (!c->out) {
		kb_err("failed to answer a control request: out of memory for %zu bytes", len);
		client_close(c);
		return;
	}
	c->outoff = 0;
	c->deadline = kb_now_ms() + CLIENT_REPLY_MS;
	/* Watched for EPOLLOUT only from now: a second request on the connection is not read. */
	err = kb_loop_mod(c->d->loop, c->fd, EPOLLOUT);
	if (err == -ENOENT)
		err = kb_loop_add(c->d->loop, c->fd, EPOLLOUT, on_client, c);
	if (err) {
		kb_err("failed to watch a control client: %s", strerror(-err));
		client_close(c);
		return;
	}
	client_flush(c);
}

/* One over the limit: a short answer that fits the empty socket buffer of a fresh connection, then close. */
static void refuse_busy(struct daemon *d, int fd)
{
	struct json_object *e = kb_ctl_error("too many clients: %d control connections are open; try again", MAX_CLIENTS);
	const char *s = json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN);
	size_t len;
	char *f = kb_ctl_frame(s, strlen(s), &len);

	if (f && send(fd, f, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		kb_log_debug("could not tell a control client over the limit: %s", strerror(errno));
	free(f);
	json_object_put(e);
	close(fd);
	if (d->clients_refused++ == 0)
		kb_log_info("a control client over the limit (%d) was refused; `kbackend status` counts them", MAX_CLIENTS);
}

static int listen_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		kb_err("failed to create control socket %s: path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0700);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	/* Created 0600 from the start: no window in which another user could connect. */
	mode_t old = umask(0177);

	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		int err = -errno;

		umask(old);
		kb_err("failed to listen on %s: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	umask(old);
	chmod(path, 0600);
	return fd;
}

static void on_accept(void *ctx, int lfd, uint32_t events)
{
	struct daemon *d = ctx;

	for (;;) {
		struct ucred cred = { .uid = (uid_t)-1 };
		socklen_t len = sizeof(cred);
		struct client *c = NULL;
		int err, fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		for (int i = 0; i < MAX_CLIENTS && !c; i++)
			if (d->clients[i].fd < 0)
				c = &d->clients[i];
		if (!c) {
			refuse_busy(d, fd);
			continue;
		}
		c->fd = fd;
		c->d = d;
		c->deadline = kb_now_ms() + CLIENT_DEADLINE_MS;
		memset(&c->rd, 0, sizeof(c->rd));
		/* The socket is 0600, and peer credentials are checked too, in case its mode was changed. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || (cred.uid != 0 && cred.uid != geteuid())) {
			kb_log_info("refused control connection from uid %u", (unsigned)cred.uid);
			client_reply(c, kb_ctl_error("permission denied: uid %u may not use the control socket",
						     (unsigned)cred.uid));
			continue;
		}
		err = kb_loop_add(d->loop, fd, EPOLLIN, on_client, c);
		if (err) {
			kb_err("failed to watch a control client: %s", strerror(-err));
			client_close(c);
		}
	}
}

static void on_client(void *ctx, int fd, uint32_t events)
{
	struct client *c = ctx;
	int r;

	if (c->out) {
		client_flush(c);
		return;
	}
	r = kb_frame_read(fd, &c->rd);
	if (r == 0)
		return;
	if (r == -EMSGSIZE) {
		kb_log_info("refused an oversized control message (%zu bytes)", c->rd.len);
		client_reply(c, kb_ctl_error("message too large: %zu bytes (limit %u)", c->rd.len, KB_CTL_MAX_MSG));
	} else if (r < 0) {
		/* A truncated message: the client went away mid-frame. Nothing to answer. */
		client_close(c);
	} else {
		client_reply(c, handle(c->d, &c->rd));
	}
}

/* Timer: the earliest client deadline. */
static int clients_due(void *ctx)
{
	struct daemon *d = ctx;
	long now = kb_now_ms(), due = -1;

	for (int i = 0; i < MAX_CLIENTS; i++)
		if (d->clients[i].fd >= 0 && (due < 0 || d->clients[i].deadline - now < due))
			due = d->clients[i].deadline - now < 0 ? 0 : d->clients[i].deadline - now;
	return (int)due;
}

/* A client that has not sent a whole request in time gets an error; one that has not taken its reply is dropped. */
static void clients_expire(void *ctx)
{
	struct daemon *d = ctx;
	long now = kb_now_ms();

	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &d->clients[i];

		if (c->fd < 0 || now <= c->deadline)
			continue;
		if (!c->out) {
			client_reply(c, kb_ctl_error("timed out waiting for a complete request"));
			continue;
		}
		kb_log_info("dropped a control client that took %zu of its %zu-byte reply in %d s", c->outoff,
			    c->outlen, CLIENT_REPLY_MS / 1000);
		d->clients_dropped++;
		client_close(c);
	}
}

int kb_serve_start(struct daemon *d)
{
	struct stat st;

	for (int i = 0; i < MAX_CLIENTS; i++)
		d->clients[i].fd = -1;
	d->lfd = listen_socket(d->socket);
	if (d->lfd < 0)
		return d->lfd;
	if (!stat(d->socket, &st)) {
		d->sock_dev = st.st_dev;
		d->sock_ino = st.st_ino;
	}
	kb_loop_add(d->loop, d->lfd, EPOLLIN, on_accept, d);
	return kb_loop_add_timer(d->loop, clients_due, clients_expire, d);
}

void kb_serve_unlink(struct daemon *d)
{
	struct stat st;

	/* A daemon started over ours (an upgrade) has bound a new socket at the path: that one stays. */
	if (d->lfd >= 0 && !stat(d->socket, &st) && st.st_dev == d->sock_dev && st.st_ino == d->sock_ino)
		unlink(d->socket);
}

void kb_serve_stop(struct daemon *d)
{
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (d->clients[i].fd >= 0)
			client_close(&d->clients[i]);
	if (d->lfd >= 0) {
		kb_loop_del(d->loop, d->lfd);
		close(d->lfd);
	}
}
