// SPDX-License-Identifier: Apache-2.0
/* The control socket's server side: accept, check the peer, read one request, answer it without ever waiting on the peer. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/control.h"
#include "daemon/daemon_int.h"
#include "reads/reads.h"
#include "render/render.h"
#include "sources/watch.h"

/* A streamed reply is rendered in chunks of about this many bytes, each once the peer has taken the last. */
#define STREAM_CHUNK (256u << 10)
/* Free heap pages go back this long after the work that freed them (kb_daemon_trim_soon). */
#define TRIM_AFTER_MS 1000
/*
 * ... unless the daemon grew by less than this, or an eighth, since the last
 * return: a small change frees about what it took, and what went back would
 * fault in again at the next one (malloc_trim also walks the whole heap: 11 ms
 * at 100,000 frontends).
 */
#define TRIM_GROWTH (4l << 20)
/* A whole-list read this long churns enough of the heap to trim after. */
#define TRIM_ITEMS 1000

/* ---- read-only requests ------------------------------------------------------ */

static bool req_bool(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_get_boolean(v);
}

/*
 * `get`. With "stream": true the reply is a header frame, one frame per item
 * rendered as the peer takes them (client_flush), an empty frame and a trailer;
 * without, one frame holding every item (older clients, tests). A stream of
 * frontends with "rows" (frontends, endpoints or stats) carries each item as
 * the tab-separated table rows it prints as (reads_rows.c); its header says
 * "rows": true, which a daemon without rows never does.
 */
static struct json_object *do_get(struct daemon *d, struct json_object *req, struct kb_read **stream)
{
	struct json_object *r, *items;
	struct kb_read rd;

	r = kb_read_resolve(d, req, &rd);
	if (r)
		return r;
	r = json_object_new_object();
	json_object_object_add(r, "ok", json_object_new_boolean(1));
	if (req_bool(req, "stream")) {
		*stream = malloc(sizeof(rd));
		if (!*stream) {
			kb_read_free(&rd);
			json_object_put(r);
			return kb_ctl_error("out of memory");
		}
		rd.whole = req_bool(req, "whole");
		**stream = rd;
		json_object_object_add(r, "stream", json_object_new_boolean(1));
		json_object_object_add(r, "kind", json_object_new_string(rd.frontends ? "frontends" : "List"));
		if (rd.rows)
			json_object_object_add(r, "rows", json_object_new_boolean(1));
		json_object_object_add(r, "count", json_object_new_int64((int64_t)rd.n));
		return r;
	}
	items = json_object_new_array_ext((int)rd.n);
	for (size_t i = 0; i < rd.n; i++)
		json_object_array_add(items, kb_read_item(d, &rd, i));
	json_object_object_add(r, rd.frontends ? "frontends" : "items", items);
	kb_read_free(&rd);
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
	if (d->kube)
		json_object_object_add(r, "kubernetes", kb_kube_status_json(d));
	if (d->metrics_addr)
		json_object_object_add(r, "metricsAddr", json_object_new_string(d->metrics_addr));
	json_object_object_add(r, "bridge", kb_daemon_bridge_status(d));
	kb_features_json(&d->features, r);
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

static struct json_object *handle(struct daemon *d, struct kb_frame_reader *rd, struct kb_read **stream)
{
	const char *msg = rd->msg;
	struct json_object *req = json_tokener_parse(msg), *files = NULL, *reply;
	const char *op;

	if (!req || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return kb_ctl_error("malformed request: not a JSON object");
	}
	if (kb_ctl_request_contents(req, msg, rd->len)) {
		json_object_put(req);
		return kb_ctl_error("malformed request: the files' sizes do not match the bytes sent");
	}
	op = kb_req_str(req, "op");
	d->reply_all = req_bool(req, "all");
	json_object_object_get_ex(req, "files", &files);
	if (files && !json_object_is_type(files, json_type_array))
		reply = kb_ctl_error("malformed request: files must be an array");
	else if (!op)
		reply = kb_ctl_error("malformed request: no \"op\"");
	else if (strcmp(op, "apply") == 0)
		reply = kb_daemon_change(d, files, KB_CHANGE_APPLY, req_bool(req, "dryRun"), false);
	else if (strcmp(op, "replace") == 0)
		reply = kb_daemon_change(d, files, KB_CHANGE_REPLACE, req_bool(req, "dryRun"), false);
	else if (strcmp(op, "delete") == 0)
		reply = kb_daemon_change(d, files, KB_CHANGE_DELETE, req_bool(req, "dryRun"), false);
	else if (strcmp(op, "get") == 0)
		reply = do_get(d, req, stream);
	else if (strcmp(op, "register") == 0 || strcmp(op, "unregister") == 0)
		reply = kb_daemon_register(d, req, rd, strcmp(op, "register") == 0);
	else if (strcmp(op, "status") == 0)
		reply = do_status(d);
	else if (strcmp(op, "verify") == 0)
		reply = kb_daemon_verify(d);
	else if (strcmp(op, "unload") == 0) {
		d->stop = d->unload = true;
		reply = json_object_new_object();
		json_object_object_add(reply, "ok", json_object_new_boolean(1));
	} else
		reply = kb_ctl_error("unknown op \"%s\"", op);
	d->reply_all = false;
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
	if (c->rs) {
		kb_read_free(c->rs);
		free(c->rs);
		c->rs = NULL;
	}
	c->fd = -1;
}

void kb_daemon_trim_soon(struct daemon *d)
{
	if (!d->trim_at)
		d->trim_at = kb_now_ms() + TRIM_AFTER_MS;
}

/*
 * A change's parse and compile, or a long read, leave free chunks among what
 * outlives them; glibc gives back only the heap's top by itself, so at rest the
 * daemon would keep each peak (311 MiB after applying 10,000 Backends, with
 * 96 MiB in use). A second later (work in a burst is trimmed once), the free
 * pages go back.
 */
static void trim_if_due(struct daemon *d, long now)
{
	long rss, grew_by = d->rss_trimmed / 8 > TRIM_GROWTH ? d->rss_trimmed / 8 : TRIM_GROWTH;

	if (!d->trim_at || now < d->trim_at)
		return;
	d->trim_at = 0;
	rss = kb_rss_bytes();
	if (rss >= 0 && rss < d->rss_trimmed + grew_by) {
		kb_log_debug("kept free heap pages: %ld KiB resident, %ld KiB after the last return", rss >> 10,
			     d->rss_trimmed >> 10);
		return;
	}
	malloc_trim(0);
	d->rss_trimmed = kb_rss_bytes();
	kb_log_debug("returned free heap pages in %ld ms", kb_now_ms() - now);
}

/* Append one frame (4-byte length, then the bytes) to a growing buffer. 0 or -ENOMEM. */
static int buf_frame(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 4 > *cap) {
		size_t nc = (*len + n + 4) * 2;
		char *nb = realloc(*buf, nc);

		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = nc;
	}
	(*buf)[(*len)++] = (char)(n >> 24);
	(*buf)[(*len)++] = (char)(n >> 16);
	(*buf)[(*len)++] = (char)(n >> 8);
	(*buf)[(*len)++] = (char)n;
	memcpy(*buf + *len, s, n);
	*len += n;
	return 0;
}

/*
 * The next chunk of a streamed reply: items rendered until STREAM_CHUNK bytes
 * are queued, and after the last one an empty frame and the trailer. A change
 * of the state since the read began (the items it names are gone) ends the
 * stream with an error the client may retry. A "whole" read (the client's
 * retry) is one chunk: rendered in one turn of the loop, no change can come
 * between its items, so a read under constant change (names resolving, health
 * flapping) still completes. 1 queued, 0 nothing left, -1 out of memory.
 */
static int stream_refill(struct client *c)
{
	struct daemon *d = c->d;
	struct kb_read *rs = c->rs;
	size_t len = 0, cap = 0;
	char *buf = NULL;
	struct json_object *trailer = NULL;
	int err = 0;

	if (!rs)
		return 0;
	while (!err && rs->next < rs->n && (len < STREAM_CHUNK || rs->whole) && rs->gen == d->reads_gen) {
		struct json_object *it;
		const char *s;
		size_t n;

		/* Rows: the item's text rows (never empty: every frontend has a row), no JSON to build or parse. */
		if (rs->rows) {
			s = kb_read_rows(d, rs, rs->next++, &n);
			err = s ? buf_frame(&buf, &len, &cap, s, n) : -ENOMEM;
			continue;
		}
		it = kb_read_item(d, rs, rs->next++);
		s = json_object_to_json_string_ext(it, JSON_C_TO_STRING_PLAIN);
		err = buf_frame(&buf, &len, &cap, s, strlen(s));
		json_object_put(it);
	}
	if (!err && (rs->next == rs->n || rs->gen != d->reads_gen)) {
		const char *s;

		if (rs->gen == d->reads_gen) {
			trailer = json_object_new_object();
			json_object_object_add(trailer, "ok", json_object_new_boolean(1));
			json_object_object_add(trailer, "count", json_object_new_int64((int64_t)rs->n));
		} else {
			trailer = kb_ctl_error("the state changed during the read (an apply, or a DNS or health change); "
					       "read again");
			json_object_object_add(trailer, "retry", json_object_new_boolean(1));
		}
		s = json_object_to_json_string_ext(trailer, JSON_C_TO_STRING_PLAIN);
		err = buf_frame(&buf, &len, &cap, "", 0) ?: buf_frame(&buf, &len, &cap, s, strlen(s));
		json_object_put(trailer);
		if (rs->n >= TRIM_ITEMS)
			kb_daemon_trim_soon(d);
		kb_read_free(rs);
		free(rs);
		c->rs = NULL;
	}
	if (err) {
		free(buf);
		return -1;
	}
	free(c->out);
	c->out = buf;
	c->outlen = len;
	c->outoff = 0;
	/* The peer took the previous chunk: its deadline counts from now, so a slow reader is dropped, a long read is not. */
	c->deadline = kb_now_ms() + CLIENT_REPLY_MS;
	return len > 0;
}

/*
 * Write what the peer takes now; close once it is all written or the peer is
 * gone. A stream renders at most one more chunk per call, so one reader never
 * holds the loop for long: the next chunk waits for the next EPOLLOUT.
 */
static void client_flush(struct client *c)
{
	bool refilled = false;

	for (;;) {
		while (c->outoff < c->outlen) {
			ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (n <= 0)
				goto out_close;
			c->outoff += (size_t)n;
		}
		if (!c->rs || refilled)
			break;
		refilled = true;
		if (stream_refill(c) < 0) {
			kb_err("failed to stream a control reply: out of memory");
			goto out_close;
		}
	}
	if (c->rs || (refilled && c->outoff < c->outlen))
		return;
out_close:
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

	if (c->out || c->rs) {
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
		struct json_object *reply = handle(c->d, &c->rd, &c->rs);

		client_reply(c, reply);
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
	if (d->trim_at && (due < 0 || d->trim_at - now < due))
		due = d->trim_at - now < 0 ? 0 : d->trim_at - now;
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
		kb_log_info("dropped a control client that took %zu of %zu bytes of its reply%s in %d s", c->outoff,
			    c->outlen, c->rs ? "'s current chunk" : "", CLIENT_REPLY_MS / 1000);
		d->clients_dropped++;
		client_close(c);
	}
	trim_if_due(d, now);
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
