// SPDX-License-Identifier: Apache-2.0
/* The TCP->unix bridge: loopback listeners that steered connects reach, and a thread that moves their bytes to sidecars. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bridge_int.h"
#include "util.h"

/*
 * Design (docs/ARCHITECTURE.md, "The unix bridge"):
 *
 * One listener per unix path, on 127.0.0.1:P with the same P in the daemon's
 * netns and in every --bridge-netns; slots of kind KB_SLOT_BRIDGE carry that
 * address, so connect4/6 rewrite a connect to a unix endpoint exactly like an
 * IP one (and getpeername still shows the frontend). The main thread makes
 * and retires listeners (this file); one bridge thread (bridge_thread.c),
 * with its own epoll, accepts, connects to the sidecar (non-blocking) and
 * moves bytes, so a bulk transfer never delays the control socket.
 *
 * Memory bound B (--bridge-buffer) per connection and direction, counted as
 * the kernel counts it (skb truesize): the TCP socket's SO_RCVBUF and
 * SO_SNDBUF are B/4 each (the kernel doubles them: B/2), the unix socket's
 * SO_SNDBUF is B/8 (B/4), and the bridge holds at most one chunk of B/4 (a
 * user buffer or a pipe). Client->sidecar: B/2 + B/4 + B/4; sidecar->client:
 * B/4 + B/2 (the sidecar's own send buffer is the sidecar's). A chunk is read
 * only when the previous one is fully written, so nothing else accumulates,
 * whatever either peer does.
 */

#define CHUNK_MAX (256u << 10)		/* larger reads gain nothing measurable */
#define SWEEP_GRACE_MS 3000		/* a listener no frontend uses lives on this long */
#define LISTEN_BACKLOG 4096
/*
 * TCP keepalive on the client side: a peer that vanished without a FIN or a
 * reset (host gone, path cut) is found after about KA_IDLE + KA_INTVL * KA_CNT
 * seconds of silence (two minutes), and its connection closed with both fds.
 */
#define KA_IDLE 60
#define KA_INTVL 10
#define KA_CNT 6

/* A unix path's listeners, owned by the main thread. */
struct plisten {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	__u16 port;
	struct blisten *l[1 + KB_BRIDGE_MAX_NETNS];
	size_t nl;
	long last_used;
};

/* ---- options ---- */

bool kb_bridge_parse_mode(const char *s, enum kb_bridge_mode *out)
{
	if (!strcmp(s, "copy"))
		*out = KB_BRIDGE_COPY;
	else if (!strcmp(s, "splice"))
		*out = KB_BRIDGE_SPLICE;
	else
		return false;
	return true;
}

const char *kb_bridge_mode_name(enum kb_bridge_mode m)
{
	return m == KB_BRIDGE_SPLICE ? "splice" : "copy";
}

bool kb_bridge_parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	if (!strcmp(end, "") || !strcmp(end, "B"))
		;
	else if (!strcmp(end, "K") || !strcmp(end, "KiB") || !strcmp(end, "k"))
		v <<= 10;
	else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
		v <<= 20;
	else if (!strcmp(end, "G") || !strcmp(end, "GiB"))
		v <<= 30;
	else
		return false;
	if (v < (64u << 10) || v > (1ull << 31))
		return false;
	*out = (size_t)v;
	return true;
}

/* ---- the main thread: listeners ---- */

/* A listener on 127.0.0.1:port (0: any) in netns nsfd (-1: ours). fd or -errno. */
static int make_listener(struct kb_bridge *b, int nsfd, __u16 port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd, err = 0;

	if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET))
		return -errno;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	/* Inherited by every accepted socket: the bound holds from the first byte, window scale included. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b->tcp_rcv, sizeof(b->tcp_rcv));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b->tcp_snd, sizeof(b->tcp_snd));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &(int){ KA_IDLE }, sizeof(int));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &(int){ KA_INTVL }, sizeof(int));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &(int){ KA_CNT }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, LISTEN_BACKLOG)) {
		err = -errno;
		close(fd);
	}
out:
	if (nsfd >= 0 && setns(b->selfns, CLONE_NEWNET)) {
		/* Stuck in another netns: nothing this process does after it could be trusted. */
		kb_err("failed to return to the daemon's network namespace: %s", strerror(errno));
		abort();
	}
	return err ? err : fd;
}

static void retire(struct kb_bridge *b, struct plisten *p)
{
	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < p->nl; i++) {
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, p->l[i]->fd, NULL);
		p->l[i]->next = b->graveyard;
		b->graveyard = p->l[i];
	}
	pthread_mutex_unlock(&b->mu);
	p->nl = 0;
	eventfd_write(b->evfd, 1);
}

static int add_path(struct kb_bridge *b, const char *path, struct plisten **out)
{
	int fds[1 + KB_BRIDGE_MAX_NETNS];
	struct plisten *p;
	__u16 port = 0;
	int err = 0;
	size_t n = 0;

	if (strlen(path) >= sizeof(p->path))
		return -ENAMETOOLONG;
	if (b->nls == b->capls) {
		size_t cap = b->capls ? b->capls * 2 : 16;
		struct plisten *v = realloc(b->ls, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		b->ls = v;
		b->capls = cap;
	}
	/* The same port in every netns, so one slot serves clients wherever they are. */
	for (int attempt = 0; attempt < 32; attempt++) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);

		n = 0;
		err = make_listener(b, -1, 0);
		if (err < 0)
			return err;
		fds[n++] = err;
		getsockname(fds[0], (struct sockaddr *)&sa, &sl);
		port = ntohs(sa.sin_port);
		err = 0;
		for (size_t i = 0; i < b->o.nnetns && !err; i++) {
			int fd = make_listener(b, b->nsfd[i], port);

			if (fd < 0)
				err = fd;
			else
				fds[n++] = fd;
		}
		if (!err)
			break;
		while (n)
			close(fds[--n]);
		if (err != -EADDRINUSE)
			return err;
	}
	if (err)
		return err;
	p = &b->ls[b->nls];
	memset(p, 0, sizeof(*p));
	snprintf(p->path, sizeof(p->path), "%s", path);
	p->port = port;
	p->last_used = kb_now_ms();
	for (size_t i = 0; i < n; i++) {
		struct blisten *l = calloc(1, sizeof(*l));
		struct epoll_event ev = { .events = EPOLLIN };

		if (!l) {
			err = -ENOMEM;
			break;
		}
		l->type = T_LISTEN;
		l->fd = fds[i];
		snprintf(l->path, sizeof(l->path), "%s", path);
		ev.data.ptr = l;
		p->l[p->nl++] = l;
		if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, l->fd, &ev)) {
			err = -errno;
			break;
		}
	}
	if (err) {
		for (size_t i = p->nl; i < n; i++)
			close(fds[i]);
		retire(b, p);
		return err;
	}
	b->nls++;
	if (b->o.on_listen)
		b->o.on_listen(b->o.on_listen_ctx, port, fds[0]);
	kb_log_debug("bridge: %s served on 127.0.0.1:%u in %zu netns", path, port, n);
	*out = p;
	return 0;
}

int kb_bridge_listener(void *ctx, const char *path, __u32 ip[4], __u16 *port)
{
	struct kb_bridge *b = ctx;
	struct plisten *p = NULL;
	int err;

	for (size_t i = 0; i < b->nls && !p; i++)
		if (!strcmp(b->ls[i].path, path))
			p = &b->ls[i];
	if (!p) {
		err = add_path(b, path, &p);
		if (err) {
			kb_err("failed to make a bridge listener for %s: %s", path, strerror(-err));
			return err;
		}
	}
	p->last_used = kb_now_ms();
	memset(ip, 0, 4 * sizeof(*ip));
	ip[0] = htonl(INADDR_LOOPBACK);
	*port = p->port;
	return 0;
}

static void forget_refusal(struct kb_bridge *b, const char *path)
{
	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < b->nrefusals; i++)
		if (!strcmp(b->refusals[i].path, path)) {
			b->refusals[i] = b->refusals[--b->nrefusals];
			break;
		}
	pthread_mutex_unlock(&b->mu);
}

bool kb_bridge_path_refusal(struct kb_bridge *b, const char *path, char *why, size_t len, uint64_t *count,
			    long *ago_ms)
{
	bool found = false;

	if (!b)
		return false;
	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < b->nrefusals && !found; i++)
		if (!strcmp(b->refusals[i].path, path)) {
			snprintf(why, len, "%s", b->refusals[i].why);
			*count = b->refusals[i].count;
			*ago_ms = kb_now_ms() - b->refusals[i].at_ms;
			found = true;
		}
	pthread_mutex_unlock(&b->mu);
	return found;
}

void kb_bridge_sweep(struct kb_bridge *b, const struct kb_compiled *c)
{
	long now = kb_now_ms();
	size_t j = 0;

	for (size_t i = 0; i < b->nls; i++) {
		struct plisten *p = &b->ls[i];
		bool used = false;

		for (size_t f = 0; c && f < c->nfes && !used; f++)
			for (size_t e = 0; e < c->fes[f].neps && !used; e++)
				used = c->fes[f].eps[e].type == KB_EP_UNIX && c->fes[f].eps[e].address &&
				       !strcmp(c->fes[f].eps[e].address, p->path);
		if (used)
			p->last_used = now;
		if (!used && now - p->last_used > SWEEP_GRACE_MS) {
			kb_log_debug("bridge: %s no longer used; listener closed", p->path);
			retire(b, p);
			forget_refusal(b, p->path);
			continue;
		}
		b->ls[j++] = *p;
	}
	b->nls = j;
}

void kb_bridge_get_stats(struct kb_bridge *b, struct kb_bridge_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!b)
		return;
	out->accepted = atomic_load(&b->accepted);
	out->refused = atomic_load(&b->refused);
	out->active = atomic_load(&b->active);
	out->bytes_up = atomic_load(&b->bytes_up);
	out->bytes_down = atomic_load(&b->bytes_down);
	out->idle_closed = atomic_load(&b->idle_closed);
	out->pooled_pipes = atomic_load(&b->pooled_pipes);
	out->listeners = b->nls;
}

/* ---- life cycle ---- */

struct kb_bridge *kb_bridge_new(const struct kb_bridge_opts *o, char *why, size_t len)
{
	struct kb_bridge *b = calloc(1, sizeof(*b));
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t all, old;
	struct rlimit rl;
	size_t buf;

	if (!b) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	b->o = *o;
	b->epfd = b->evfd = b->selfns = b->reserve_fd = -1;
	for (size_t i = 0; i < KB_BRIDGE_MAX_NETNS; i++)
		b->nsfd[i] = -1;
	pthread_mutex_init(&b->mu, NULL);
	buf = o->buffer ? o->buffer : KB_BRIDGE_BUFFER_DEFAULT;
	b->o.buffer = buf;
	b->tcp_rcv = b->tcp_snd = (int)(buf / 4);
	b->ux_snd = (int)(buf / 8);
	b->chunk = buf / 4 < CHUNK_MAX ? buf / 4 : CHUNK_MAX;

	/* Two fds a connection (four while splicing): lift the soft limit to the hard one. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	b->selfns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (b->selfns < 0) {
		snprintf(why, len, "open /proc/thread-self/ns/net: %s", strerror(errno));
		goto fail;
	}
	for (size_t i = 0; i < o->nnetns; i++) {
		b->nsfd[i] = open(o->netns[i], O_RDONLY | O_CLOEXEC);
		if (b->nsfd[i] < 0) {
			snprintf(why, len, "--bridge-netns %s: %s", o->netns[i], strerror(errno));
			goto fail;
		}
	}
	b->scratch = malloc(b->chunk);
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	b->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!b->scratch || b->epfd < 0 || b->evfd < 0) {
		snprintf(why, len, "bridge set-up: %s", strerror(errno));
		goto fail;
	}
	{
		static int evtag = T_EVENT;

		ev.data.ptr = &evtag;
		if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev)) {
			snprintf(why, len, "bridge epoll: %s", strerror(errno));
			goto fail;
		}
	}
	/* The daemon's signals go to its signalfd, never to this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	errno = pthread_create(&b->th, NULL, kb_bridge_thread, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (errno) {
		snprintf(why, len, "bridge thread: %s", strerror(errno));
		goto fail;
	}
	b->started = true;
	return b;
fail:
	kb_bridge_free(b);
	return NULL;
}

void kb_bridge_free(struct kb_bridge *b)
{
	if (!b)
		return;
	if (b->started) {
		atomic_store(&b->stop, true);
		for (size_t i = 0; i < b->nls; i++)
			retire(b, &b->ls[i]);
		b->nls = 0;
		eventfd_write(b->evfd, 1);
		pthread_join(b->th, NULL);
	}
	for (size_t i = 0; i < b->nls; i++)
		for (size_t k = 0; k < b->ls[i].nl; k++) {
			close(b->ls[i].l[k]->fd);
			free(b->ls[i].l[k]);
		}
	for (struct blisten *g = b->graveyard, *n; g; g = n) {
		n = g->next;
		close(g->fd);
		free(g);
	}
	while (b->npool) {
		b->npool--;
		close(b->pool[b->npool][0]);
		close(b->pool[b->npool][1]);
	}
	for (size_t i = 0; i < KB_BRIDGE_MAX_NETNS; i++)
		if (b->nsfd[i] >= 0)
			close(b->nsfd[i]);
	if (b->selfns >= 0)
		close(b->selfns);
	if (b->epfd >= 0)
		close(b->epfd);
	if (b->evfd >= 0)
		close(b->evfd);
	if (b->reserve_fd >= 0)
		close(b->reserve_fd);
	free(b->scratch);
	free(b->ls);
	free(b->refusals);
	pthread_mutex_destroy(&b->mu);
	free(b);
}
