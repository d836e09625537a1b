// SPDX-License-Identifier: Apache-2.0
/* The bridge thread: accepts on the bridge listeners, connects to sidecars and moves bytes both ways (copy or splice). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "bridge_int.h"
#include "util.h"
#include "validate/validate.h"

/*
 * Everything here runs on the bridge thread, and touches only the fields of
 * struct kb_bridge marked for it (and the graveyard, under b->mu). The memory
 * bound each connection keeps to is explained at the top of bridge.c.
 */

#define PUMP_BUDGET 16			/* chunks a connection moves before others get a turn */
#define CONNECT_RETRY_MS 1000		/* a sidecar whose backlog is full gets this long */
#define MAX_EVENTS 256
#define REFUSAL_LOG_MS 10000		/* a path's refusals are logged at most this often */

struct end {
	int type;			/* T_END */
	int fd;
	bool rd, wr;			/* edge-triggered readiness not yet used up */
	bool want_out;			/* EPOLLOUT is in the interest set (only while a write is blocked) */
	bool hup;			/* the peer half-closed (or worse): an EOF may wait behind the data */
	struct conn *c;
};

/* One direction: src -> dst. */
struct half {
	char *buf;			/* copy mode: bytes read and not yet written (the scratch, or a residue) */
	size_t off, len;
	int pipe[2];			/* splice mode: -1 when none is held */
	size_t inpipe;
	bool eof;			/* src said EOF */
	bool shut;			/* dst got shutdown(SHUT_WR) */
};

struct conn {
	struct end tcp, ux;
	struct half up, down;		/* up: client -> sidecar; down: sidecar -> client */
	struct conn *prev, *next;	/* live list */
	struct conn *link;		/* retry, ready or dead list */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	long retry_until;
	long active_ms;			/* the last time a byte moved (or the accept) */
	bool dead, queued;
};

/* ---- connections ---- */

static void half_init(struct half *h)
{
	memset(h, 0, sizeof(*h));
	h->pipe[0] = h->pipe[1] = -1;
}

static int pipe_get(struct kb_bridge *b, struct half *h)
{
	if (h->pipe[0] >= 0)
		return 0;
	if (b->npool) {
		b->npool--;
		atomic_store_explicit(&b->pooled_pipes, b->npool, memory_order_relaxed);
		h->pipe[0] = b->pool[b->npool][0];
		h->pipe[1] = b->pool[b->npool][1];
		return 0;
	}
	if (pipe2(h->pipe, O_NONBLOCK | O_CLOEXEC))
		return -errno;
	/* The pipe holds at most one chunk: splice() below never asks for more. */
	fcntl(h->pipe[0], F_SETPIPE_SZ, (int)b->chunk);
	return 0;
}

/* Give back an empty pipe; one that may hold bytes is closed. */
static void pipe_put(struct kb_bridge *b, struct half *h, bool empty)
{
	if (h->pipe[0] < 0)
		return;
	if (empty && b->npool < PIPE_POOL) {
		b->pool[b->npool][0] = h->pipe[0];
		b->pool[b->npool][1] = h->pipe[1];
		b->npool++;
		atomic_store_explicit(&b->pooled_pipes, b->npool, memory_order_relaxed);
	} else {
		close(h->pipe[0]);
		close(h->pipe[1]);
	}
	h->pipe[0] = h->pipe[1] = -1;
	h->inpipe = 0;
}

#define EV_BASE (EPOLLIN | EPOLLRDHUP | EPOLLET)

/*
 * dst cannot take more: wait for EPOLLOUT. It is in the interest set only
 * while a write is blocked, because a unix socket signals write space on
 * every read its peer makes: one spurious wakeup per request otherwise.
 */
static void end_blocked(struct kb_bridge *b, struct end *dst)
{
	struct epoll_event ev = { .events = EV_BASE | EPOLLOUT, .data.ptr = dst };

	dst->wr = false;
	if (!dst->want_out && !epoll_ctl(b->epfd, EPOLL_CTL_MOD, dst->fd, &ev))
		dst->want_out = true;
}

/* Shut dst for writing once src said EOF and everything before it is written. */
static void half_finish(struct half *h, struct end *dst)
{
	if (!h->shut) {
		shutdown(dst->fd, SHUT_WR);
		h->shut = true;
	}
}

/*
 * Write what the half holds. 0: all written or dst is full (dst->wr cleared);
 * -errno: dst failed.
 */
static int copy_flush(struct kb_bridge *b, struct half *h, struct end *dst, _Atomic uint64_t *count)
{
	while (h->len) {
		ssize_t n;

		if (!dst->wr)
			return 0;
		n = send(dst->fd, h->buf + h->off, h->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				end_blocked(b, dst);
				return 0;
			}
			return -errno;
		}
		h->off += (size_t)n;
		h->len -= (size_t)n;
		atomic_fetch_add_explicit(count, (uint64_t)n, memory_order_relaxed);
	}
	return 0;
}

/* Returns 1 when the budget ran out with work left, 0 when waiting on readiness, -errno on failure. */
static int pump_copy(struct kb_bridge *b, struct half *h, struct end *src, struct end *dst,
		     _Atomic uint64_t *count)
{
	for (int budget = PUMP_BUDGET;; budget--) {
		ssize_t n;
		int err;

		if (h->len) {
			err = copy_flush(b, h, dst, count);
			if (err)
				return err;
			if (h->len)
				return 0;
			free(h->buf);	/* only a residue is ever held here */
			h->buf = NULL;
			h->off = 0;
		}
		if (h->eof) {
			half_finish(h, dst);
			return 0;
		}
		if (!src->rd)
			return 0;
		if (!budget)
			return 1;
		n = recv(src->fd, b->scratch, b->chunk, MSG_DONTWAIT);
		if (n == 0) {
			h->eof = true;
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				src->rd = false;
				return 0;
			}
			return -errno;
		}
		/*
		 * A short read took all there was: the next arrival raises a new
		 * edge, so no recv() just to hear EAGAIN (one syscall a message).
		 * Not once the peer half-closed: its EOF may sit behind this data,
		 * and no edge would come for it.
		 */
		if ((size_t)n < b->chunk && !src->hup)
			src->rd = false;
		/* Straight from the thread's scratch buffer; only what dst cannot take now is kept. */
		h->buf = b->scratch;
		h->off = 0;
		h->len = (size_t)n;
		err = copy_flush(b, h, dst, count);
		if (err) {
			h->buf = NULL;
			h->len = 0;
			return err;
		}
		if (h->len) {
			char *keep = malloc(h->len);

			if (!keep) {
				h->buf = NULL;
				h->len = 0;
				return -ENOMEM;
			}
			memcpy(keep, b->scratch + h->off, h->len);
			h->buf = keep;
			h->off = 0;
			return 0;
		}
		h->buf = NULL;
		h->off = 0;
	}
}

static int pump_splice(struct kb_bridge *b, struct half *h, struct end *src, struct end *dst,
		       _Atomic uint64_t *count)
{
	for (int budget = PUMP_BUDGET;; budget--) {
		ssize_t n;
		int err;

		while (h->inpipe) {
			if (!dst->wr)
				return 0;
			n = splice(h->pipe[0], NULL, dst->fd, NULL, h->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					end_blocked(b, dst);
					return 0;
				}
				return -errno;
			}
			h->inpipe -= (size_t)n;
			atomic_fetch_add_explicit(count, (uint64_t)n, memory_order_relaxed);
		}
		pipe_put(b, h, true);
		if (h->eof) {
			half_finish(h, dst);
			return 0;
		}
		if (!src->rd)
			return 0;
		if (!budget)
			return 1;
		err = pipe_get(b, h);
		if (err)
			return err;
		n = splice(src->fd, NULL, h->pipe[1], NULL, b->chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0) {
			h->eof = true;
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {	/* the pipe is empty here: the socket is */
				src->rd = false;
				return 0;
			}
			return -errno;
		}
		/* No short-read shortcut here: a full pipe also ends a splice early. */
		h->inpipe = (size_t)n;
	}
}

static int pump_half(struct kb_bridge *b, struct half *h, struct end *src, struct end *dst, _Atomic uint64_t *count)
{
	return b->o.mode == KB_BRIDGE_SPLICE ? pump_splice(b, h, src, dst, count) : pump_copy(b, h, src, dst, count);
}

static void half_free(struct kb_bridge *b, struct half *h)
{
	if (h->buf != b->scratch)
		free(h->buf);
	h->buf = NULL;
	pipe_put(b, h, h->inpipe == 0);
}

/* Close both sides; rst: the client gets a reset rather than an EOF (something failed). */
static void conn_close(struct kb_bridge *b, struct conn *c, bool rst)
{
	if (c->dead)
		return;
	c->dead = true;
	if (rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->tcp.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	/* Closing an fd also takes it out of the epoll set (neither is ever dup'ed). */
	close(c->tcp.fd);
	if (c->ux.fd >= 0)
		close(c->ux.fd);
	half_free(b, &c->up);
	half_free(b, &c->down);
	if (c->prev)
		c->prev->next = c->next;
	else if (b->live == c)
		b->live = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	/* Freed after the batch: later events of this batch may still name it. */
	if (!c->queued) {
		c->link = b->dead;
		b->dead = c;
	}
	atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
}

static void conn_pump(struct kb_bridge *b, struct conn *c)
{
	int up, down;

	uint64_t moved;

	if (c->dead)
		return;
	/* Only this thread adds to them: a change means this connection moved bytes. */
	moved = atomic_load_explicit(&b->bytes_up, memory_order_relaxed) +
		atomic_load_explicit(&b->bytes_down, memory_order_relaxed);
	up = pump_half(b, &c->up, &c->tcp, &c->ux, &b->bytes_up);
	down = up < 0 ? 0 : pump_half(b, &c->down, &c->ux, &c->tcp, &b->bytes_down);
	if (moved != atomic_load_explicit(&b->bytes_up, memory_order_relaxed) +
			     atomic_load_explicit(&b->bytes_down, memory_order_relaxed))
		c->active_ms = kb_now_ms();
	if (up < 0 || down < 0) {
		kb_log_debug("bridge %s: %s", c->path, strerror(-(up < 0 ? up : down)));
		conn_close(b, c, true);
		return;
	}
	if (c->up.shut && c->down.shut) {
		conn_close(b, c, false);
		return;
	}
	if ((up > 0 || down > 0) && !c->queued) {
		c->queued = true;
		c->link = b->ready;
		b->ready = c;
	}
}

/* Why a connect to a sidecar failed, in words for the log and `get endpoints`. */
static const char *refusal_text(int err)
{
	switch (err) {
	case ELOOP:
		return "a component of the path is a symbolic link; links under --unix-dir are never followed";
	case EXDEV:
		return "the path leaves its --unix-dir";
	case ENOTSOCK:
		return "the path is not a socket";
	case ENOENT:
		return "no such socket (is the sidecar running?)";
	case ECONNREFUSED:
		return "no sidecar listens on the socket";
	case EAGAIN:
		return "the sidecar's listen backlog stayed full";
	case ENOSYS:
		return "the kernel has no openat2(), which a safe connect needs";
	default:
		return strerror(err);
	}
}

/* Keep why path was refused for `get endpoints`; log it, at most once per REFUSAL_LOG_MS for each path. */
static void note_refusal(struct kb_bridge *b, const char *path, int err)
{
	struct brefusal *r = NULL;
	long now = kb_now_ms();
	uint64_t quiet = 0;
	bool log = false;

	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < b->nrefusals && !r; i++)
		if (!strcmp(b->refusals[i].path, path))
			r = &b->refusals[i];
	if (!r && b->nrefusals == b->caprefusals) {
		size_t cap = b->caprefusals ? b->caprefusals * 2 : 8;
		struct brefusal *v = realloc(b->refusals, cap * sizeof(*v));

		if (v) {
			b->refusals = v;
			b->caprefusals = cap;
		}
	}
	if (!r && b->nrefusals < b->caprefusals) {
		r = &b->refusals[b->nrefusals++];
		memset(r, 0, sizeof(*r));
		snprintf(r->path, sizeof(r->path), "%s", path);
		r->logged_ms = now - REFUSAL_LOG_MS;
	}
	if (r) {
		snprintf(r->why, sizeof(r->why), "%s", refusal_text(err));
		r->count++;
		r->at_ms = now;
		if (now - r->logged_ms >= REFUSAL_LOG_MS) {
			log = true;
			quiet = r->unlogged;
			r->unlogged = 0;
			r->logged_ms = now;
		} else {
			r->unlogged++;
		}
	}
	pthread_mutex_unlock(&b->mu);
	if (log)
		kb_log_info("bridge: connect to sidecar %s refused: %s; client reset (%llu more since the last report)",
			    path, refusal_text(err), (unsigned long long)quiet);
}

static void conn_refuse(struct kb_bridge *b, struct conn *c, int err)
{
	note_refusal(b, c->path, err);
	atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
	conn_close(b, c, true);
}

/*
 * The sidecar socket at c->path as an O_PATH fd, reached from its --unix-dir
 * without following any link and without leaving the directory: one
 * openat2() resolves it, so nothing can be swapped between a check and the
 * use. fd or -errno.
 */
static int sidecar_open(struct kb_bridge *b, const char *path)
{
	struct open_how how = { .flags = O_PATH | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	size_t n;
	int i = kb_unix_dir_of(b->o.unix_dirs, b->o.nunix_dirs, path, &n), dfd, fd, err = 0;
	const char *rel;
	struct stat st;

	if (i < 0)
		return -EXDEV;
	dfd = open(b->o.unix_real[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	for (rel = path + n; *rel == '/'; rel++)
		;
	fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
	if (fd < 0)
		err = -errno;
	close(dfd);
	if (err)
		return err;
	if (fstat(fd, &st) || !S_ISSOCK(st.st_mode)) {
		close(fd);
		return -ENOTSOCK;
	}
	return fd;
}

/* Connect to the sidecar. 1: retry later (its backlog is full); 0: bridging; -errno: refused (c is closed). */
static int conn_connect(struct kb_bridge *b, struct conn *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EV_BASE };
	int sfd = sidecar_open(b, c->path), err = 0;

	if (sfd < 0) {
		conn_refuse(b, c, -sfd);
		return sfd;
	}
	/* Through the fd's magic link: the socket inode just checked, whatever the path names now. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", sfd);
	if (connect(c->ux.fd, (struct sockaddr *)&sa, sizeof(sa)))
		err = errno;
	close(sfd);
	if (err) {
		if (err == EAGAIN || err == EINTR)
			return 1;
		conn_refuse(b, c, err);
		return -err;
	}
	ev.data.ptr = &c->tcp;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->tcp.fd, &ev)) {
		conn_refuse(b, c, errno);
		return -1;
	}
	ev.data.ptr = &c->ux;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->ux.fd, &ev)) {
		conn_refuse(b, c, errno);
		return -1;
	}
	/*
	 * Adding an fd to an edge-triggered set reports what is already
	 * readable, so no recv() is tried now just to hear EAGAIN.
	 */
	c->tcp.wr = c->ux.wr = true;
	return 0;
}

static void conn_new(struct kb_bridge *b, int fd, const char *path)
{
	struct conn *c = calloc(1, sizeof(*c));

	atomic_fetch_add_explicit(&b->accepted, 1, memory_order_relaxed);
	if (c)
		c->ux.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!c || c->ux.fd < 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		free(c);
		atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
	c->tcp.type = c->ux.type = T_END;
	c->tcp.fd = fd;
	c->tcp.c = c->ux.c = c;
	half_init(&c->up);
	half_init(&c->down);
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->active_ms = kb_now_ms();
	/* A unix stream's in-flight bytes are charged to the sender: only SO_SNDBUF bounds ours. */
	setsockopt(c->ux.fd, SOL_SOCKET, SO_SNDBUF, &b->ux_snd, sizeof(b->ux_snd));
	c->next = b->live;
	if (b->live)
		b->live->prev = c;
	b->live = c;
	if (conn_connect(b, c) == 1) {
		c->retry_until = kb_now_ms() + CONNECT_RETRY_MS;
		c->queued = true;
		c->link = b->retry;
		b->retry = c;
	}
}

static void on_accept(struct kb_bridge *b, struct blisten *l)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if ((errno == EMFILE || errno == ENFILE) && b->reserve_fd >= 0) {
				/* Out of fds: take the connection with the reserve and reset it, rather than spin. */
				struct linger lg = { .l_onoff = 1, .l_linger = 0 };

				close(b->reserve_fd);
				fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0) {
					setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
					close(fd);
					atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
				}
				b->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				kb_log_info("bridge: out of file descriptors; a connection to %s was reset", l->path);
			}
			return;
		}
		conn_new(b, fd, l->path);
	}
}

/* Sidecars whose backlog was full: try again, or give up and reset. */
static void run_retries(struct kb_bridge *b)
{
	struct conn *list = b->retry, *c, *again = NULL;
	long now = kb_now_ms();

	b->retry = NULL;
	while ((c = list)) {
		list = c->link;
		c->queued = false;
		if (c->dead) {
			c->link = b->dead;
			b->dead = c;
			continue;
		}
		if (conn_connect(b, c) == 1) {
			if (now >= c->retry_until) {
				conn_refuse(b, c, EAGAIN);
				continue;
			}
			c->queued = true;
			c->link = again;
			again = c;
		}
	}
	b->retry = again;
}

/* Connections that used up their budget get another turn. */
static void run_ready(struct kb_bridge *b)
{
	struct conn *list = b->ready, *c;

	b->ready = NULL;
	while ((c = list)) {
		list = c->link;
		c->queued = false;
		if (c->dead) {
			c->link = b->dead;
			b->dead = c;
			continue;
		}
		conn_pump(b, c);
	}
}

/* --bridge-idle-timeout: a connection that moved no byte either way for that long is closed (both fds). */
static void close_idle(struct kb_bridge *b)
{
	long now = kb_now_ms();

	for (struct conn *c = b->live, *nx; c; c = nx) {
		nx = c->next;
		if (now - c->active_ms >= b->o.idle_ms) {
			kb_log_debug("bridge %s: idle for %ld ms; closed", c->path, now - c->active_ms);
			atomic_fetch_add_explicit(&b->idle_closed, 1, memory_order_relaxed);
			conn_close(b, c, false);
		}
	}
}

static void reap(struct kb_bridge *b)
{
	struct blisten *g, *n;
	struct conn *c;

	pthread_mutex_lock(&b->mu);
	g = b->graveyard;
	b->graveyard = NULL;
	pthread_mutex_unlock(&b->mu);
	for (; g; g = n) {
		n = g->next;
		close(g->fd);
		free(g);
	}
	while ((c = b->dead)) {
		b->dead = c->link;
		free(c);
	}
}

void *kb_bridge_thread(void *arg)
{
	struct kb_bridge *b = arg;
	struct epoll_event evs[MAX_EVENTS];
	/* Idle connections are looked for this often: an idle one lives at most 1.5 times the timeout. */
	long idle_every = b->o.idle_ms > 0 && b->o.idle_ms / 2 < 1000 ? b->o.idle_ms / 2 : 1000;
	long idle_at = kb_now_ms() + idle_every;

	while (!atomic_load(&b->stop)) {
		int timeout = b->ready ? 0 : b->retry ? 5 : (int)idle_every;
		int n = epoll_wait(b->epfd, evs, MAX_EVENTS, timeout);

		for (int i = 0; i < n; i++) {
			int *type = evs[i].data.ptr;
			uint64_t v;

			if (*type == T_EVENT) {
				if (read(b->evfd, &v, sizeof(v)) < 0)
					{ /* nothing pending */ }
			} else if (*type == T_LISTEN) {
				on_accept(b, evs[i].data.ptr);
			} else {
				struct end *e = evs[i].data.ptr;

				if (e->c->dead)
					continue;
				/*
				 * A reset peer: notice it even when this side has nothing
				 * to move now (the other side may be stalled forever).
				 */
				if (evs[i].events & EPOLLERR) {
					int soerr = 0;
					socklen_t sl = sizeof(soerr);

					if (!getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && soerr) {
						kb_log_debug("bridge %s: %s", e->c->path, strerror(soerr));
						conn_close(b, e->c, true);
						continue;
					}
				}
				if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					e->rd = true;
				if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					e->hup = true;
				if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
					e->wr = true;
				if ((evs[i].events & EPOLLOUT) && e->want_out) {
					struct epoll_event ev = { .events = EV_BASE, .data.ptr = e };

					if (!epoll_ctl(b->epfd, EPOLL_CTL_MOD, e->fd, &ev))
						e->want_out = false;
				}
				conn_pump(b, e->c);
			}
		}
		run_ready(b);
		if (b->retry)
			run_retries(b);
		if (b->o.idle_ms > 0 && kb_now_ms() >= idle_at) {
			close_idle(b);
			idle_at = kb_now_ms() + idle_every;
		}
		reap(b);
	}
	/* Stopping: every open connection is reset, every queued one freed. */
	while (b->live)
		conn_close(b, b->live, true);
	run_ready(b);
	for (struct conn *c = b->retry, *nx; c; c = nx) {
		nx = c->link;
		free(c);
	}
	b->retry = NULL;
	reap(b);
	return NULL;
}
