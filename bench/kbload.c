// SPDX-License-Identifier: Apache-2.0
/*
 * kbload: a small load tool for kbackend's demo and benchmarks.
 *
 *   kbload serve [--tcp ADDR:PORT]... [--udp ADDR:PORT]... [--unix PATH]... [--id TEXT] [--threads N] [--duration S]
 *   kbload crr|rr|stream|ids (--tcp ADDR:PORT | --udp ADDR:PORT | --unix PATH)
 *          [--duration S | --count N] [--concurrency C] [--size B] [--timeout-ms MS] [-q]
 *
 * serve   echoes every chunk it reads; with --id it answers every chunk with
 *         its id instead, padded with spaces to the chunk's length (so a 64 B
 *         request still gets a 64 B reply). --id @local answers with the local
 *         address:port that the client reached.
 * crr     a new TCP (or unix) connection per request: connect, send, receive, close.
 * rr      round trips on one connection per worker (TCP, unix or UDP).
 * stream  bulk bytes on one connection per worker; reports Gbit/s of echoed data.
 * ids     N requests, each on a new connection (a new socket for UDP); counts which id answered.
 *
 * Each client run prints one machine-readable line (key=value, space separated)
 * and, unless -q, one human line starting with '#'. Every client loop is bounded
 * by --count or --duration, and every socket has a timeout, so kbload stops by itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTEN 16
#define MAX_CONC 1024
#define MAX_IDS 64
#define ID_LEN 64
#define SRV_BUF 65536

enum kind { K_TCP, K_UDP, K_UNIX };

struct addr {
	enum kind kind;
	struct sockaddr_storage ss;
	socklen_t len;
	char text[128];
};

static atomic_bool g_stop;
static volatile sig_atomic_t g_signal;	/* the signal that stopped a client, re-raised at exit */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "kbload: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(2);
}

/* "1.2.3.4:80", "[2001:db8::1]:80" or a unix path. */
static void parse_addr(enum kind kind, const char *s, struct addr *a)
{
	char host[128];
	const char *colon;
	long port;
	char *end;

	memset(a, 0, sizeof(*a));
	a->kind = kind;
	snprintf(a->text, sizeof(a->text), "%s", s);
	if (kind == K_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;

		if (strlen(s) >= sizeof(un->sun_path))
			die("unix path too long: %s", s);
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s);
		a->len = sizeof(*un);
		return;
	}
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			die("bad address %s (want [V6]:PORT)", s);
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = 0;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			die("bad address %s (want ADDR:PORT)", s);
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
	}
	port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		die("bad port in %s", s);
	if (strchr(host, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			die("bad IPv6 address in %s", s);
		a->len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			die("bad IPv4 address in %s", s);
		a->len = sizeof(*in);
	}
}

static void sockaddr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "unix");
	}
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int family_of(const struct addr *a)
{
	return a->kind == K_UNIX ? AF_UNIX : a->ss.ss_family;
}

static int sock_type(const struct addr *a)
{
	return a->kind == K_UDP ? SOCK_DGRAM : SOCK_STREAM;
}

/* ------------------------------------------------------------------ server */

struct srv {
	struct addr listen[MAX_LISTEN];
	int fds[MAX_LISTEN];
	int n;
	const char *id;
	int threads;
	double duration;
};

struct conn {
	int fd;
	size_t off, len;
	char buf[SRV_BUF];
};

static struct srv S;

/* Fill out[0..n) with the reply to a chunk of n bytes: an echo, or the id padded with spaces. */
static void make_reply(int fd, const char *in, char *out, size_t n)
{
	char local[128];
	const char *id = S.id;
	size_t idlen;

	if (!id) {
		if (in != out)
			memcpy(out, in, n);
		return;
	}
	if (!strcmp(id, "@local")) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		memset(&ss, 0, sizeof(ss));
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		sockaddr_text(&ss, local, sizeof(local));
		id = local;
	}
	idlen = strlen(id);
	memset(out, ' ', n);
	memcpy(out, id, idlen < n ? idlen : n);
	if (n > idlen)
		out[n - 1] = '\n';
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Flush what is pending; returns -1 when the connection is gone, 1 when bytes remain. */
static int conn_flush(struct conn *c)
{
	while (c->off < c->len) {
		ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (w < 0)
			return errno == EAGAIN ? 1 : -1;
		c->off += (size_t)w;
	}
	c->off = c->len = 0;
	return 0;
}

static void *serve_stream_thread(void *arg)
{
	struct epoll_event evs[64], ev;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	(void)arg;

	if (ep < 0)
		return NULL;
	for (int i = 0; i < S.n; i++) {
		if (S.listen[i].kind == K_UDP)
			continue;
		ev.events = EPOLLIN | EPOLLEXCLUSIVE;
		ev.data.ptr = NULL;
		ev.data.u64 = (uint64_t)i;	/* small numbers are listeners, pointers are connections */
		epoll_ctl(ep, EPOLL_CTL_ADD, S.fds[i], &ev);
	}
	while (!atomic_load(&g_stop)) {
		int n = epoll_wait(ep, evs, 64, 200);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 < MAX_LISTEN) {
				int lfd = S.fds[evs[i].data.u64];

				for (int k = 0; k < 64; k++) {
					int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					struct conn *c;

					if (cfd < 0)
						break;
					c = malloc(sizeof(*c));
					if (!c) {
						close(cfd);
						continue;
					}
					c->fd = cfd;
					c->off = c->len = 0;
					if (family_of(&S.listen[evs[i].data.u64]) != AF_UNIX) {
						int one = 1;

						setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					}
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev)) {
						close(cfd);
						free(c);
					}
				}
				continue;
			}
			struct conn *c = evs[i].data.ptr;

			if (c->len) {	/* waiting to flush */
				int r = conn_flush(c);

				if (r < 0) {
					conn_close(ep, c);
				} else if (r == 0) {
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
				continue;
			}
			ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);

			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				conn_close(ep, c);
				continue;
			}
			if (r < 0)
				continue;
			make_reply(c->fd, c->buf, c->buf, (size_t)r);
			c->off = 0;
			c->len = (size_t)r;
			int f = conn_flush(c);

			if (f < 0) {
				conn_close(ep, c);
			} else if (f > 0) {
				ev.events = EPOLLOUT;
				ev.data.ptr = c;
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			}
		}
	}
	close(ep);
	return NULL;
}

static void *serve_udp_thread(void *arg)
{
	int fd = *(int *)arg;
	char in[SRV_BUF], out[SRV_BUF];

	set_timeouts(fd, 200);
	while (!atomic_load(&g_stop)) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		ssize_t r = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&peer, &pl);

		if (r < 0)
			continue;
		make_reply(fd, in, out, (size_t)r);
		sendto(fd, out, (size_t)r, 0, (struct sockaddr *)&peer, pl);
	}
	return NULL;
}

static void on_signal(int sig)
{
	g_signal = sig;
	atomic_store(&g_stop, true);
}

static int cmd_serve(void)
{
	pthread_t th[64];
	int nth = 0;
	int one = 1;
	bool stream = false;
	double end;

	if (!S.n)
		die("%s", "serve needs --tcp, --udp or --unix");
	for (int i = 0; i < S.n; i++) {
		struct addr *a = &S.listen[i];
		int fd = socket(family_of(a), sock_type(a) | SOCK_CLOEXEC | (a->kind == K_UDP ? 0 : SOCK_NONBLOCK), 0);

		if (fd < 0)
			die("socket: %s", strerror(errno));
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (a->kind == K_UNIX)
			unlink(((struct sockaddr_un *)&a->ss)->sun_path);
		if (a->ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		/* IP_FREEBIND: the demo may start a server before its address is up. */
		if (a->kind != K_UNIX)
			setsockopt(fd, a->ss.ss_family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP,
				   a->ss.ss_family == AF_INET6 ? IPV6_FREEBIND : IP_FREEBIND, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&a->ss, a->len))
			die("bind %s failed", a->text);
		if (a->kind != K_UDP) {
			if (listen(fd, 4096))
				die("listen %s failed", a->text);
			stream = true;
		}
		S.fds[i] = fd;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < S.n && nth < 64; i++)
		if (S.listen[i].kind == K_UDP && !pthread_create(&th[nth], NULL, serve_udp_thread, &S.fds[i]))
			nth++;
	for (int i = 0; stream && i < S.threads && nth < 64; i++)
		if (!pthread_create(&th[nth], NULL, serve_stream_thread, NULL))
			nth++;
	fprintf(stderr, "kbload: serving");
	for (int i = 0; i < S.n; i++)
		fprintf(stderr, " %s/%s", S.listen[i].kind == K_UDP ? "udp" : S.listen[i].kind == K_UNIX ? "unix" : "tcp",
			S.listen[i].text);
	fprintf(stderr, " (%s)\n", S.id ? S.id : "echo");
	end = S.duration > 0 ? now_s() + S.duration : 0;
	while (!atomic_load(&g_stop)) {
		usleep(100000);
		if (end && now_s() >= end)
			atomic_store(&g_stop, true);
	}
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < S.n; i++) {
		close(S.fds[i]);
		if (S.listen[i].kind == K_UNIX)
			unlink(((struct sockaddr_un *)&S.listen[i].ss)->sun_path);
	}
	return 0;
}

/* ------------------------------------------------------------------ histogram */

/* Log-linear: 64 linear sub-buckets per power of two, about 1.5 % resolution. */
#define SUBB 64
#define SUBB_BITS 6
#define NBUCKETS (SUBB * 60)

struct hist {
	uint64_t b[NBUCKETS];
	uint64_t n, max;
};

static int bucket_of(uint64_t v)
{
	int msb, shift;

	if (v < SUBB)
		return (int)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - SUBB_BITS;
	int idx = (shift + 1) * SUBB + (int)((v >> shift) - SUBB);

	return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

static uint64_t bucket_value(int idx)
{
	int shift;

	if (idx < SUBB)
		return (uint64_t)idx;
	shift = idx / SUBB - 1;
	return ((uint64_t)(SUBB + idx % SUBB) << shift) + ((1ull << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->b[bucket_of(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
	for (int i = 0; i < NBUCKETS; i++)
		into->b[i] += h->b[i];
	into->n += h->n;
	if (h->max > into->max)
		into->max = h->max;
}

static double hist_pct_us(const struct hist *h, double p)
{
	uint64_t want, seen = 0;

	if (!h->n)
		return 0;
	want = (uint64_t)(p / 100.0 * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	for (int i = 0; i < NBUCKETS; i++) {
		seen += h->b[i];
		if (seen > want) {
			uint64_t v = bucket_value(i);

			return (double)(v < h->max ? v : h->max) / 1000.0;
		}
	}
	return (double)h->max / 1000.0;
}

/* ------------------------------------------------------------------ clients */

enum mode { M_CRR, M_RR, M_STREAM, M_IDS };

struct cfg {
	enum mode mode;
	const char *mode_name;
	struct addr target;
	bool have_target;
	double duration;
	long count;
	int conc;
	size_t size;
	int timeout_ms;
	bool quiet;
};

struct idcount {
	char id[ID_LEN];
	uint64_t n;
};

struct worker {
	pthread_t th;
	int idx;
	struct hist h;
	uint64_t ops, errors, bytes;
	double end;	/* when this worker stopped, in now_s() time */
	struct idcount ids[MAX_IDS];
	int nids;
	char lasterr[128];
};

static struct cfg C;
static atomic_long g_issued;	/* requests claimed by workers, for --count */
static double g_end;		/* deadline in now_s() time, for --duration and as a safety cap */

static bool claim(void)
{
	if (atomic_load(&g_stop))
		return false;
	if (C.count > 0 && atomic_fetch_add(&g_issued, 1) >= C.count)
		return false;
	return true;
}

static int connect_new(struct worker *w)
{
	int fd = socket(family_of(&C.target), sock_type(&C.target) | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(w->lasterr, sizeof(w->lasterr), "socket: %s", strerror(errno));
		return -1;
	}
	set_timeouts(fd, C.timeout_ms);
	if (C.target.kind == K_TCP) {
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(fd, (struct sockaddr *)&C.target.ss, C.target.len)) {
		snprintf(w->lasterr, sizeof(w->lasterr), "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Receive exactly n bytes on a stream socket, or one datagram on UDP. */
static ssize_t recv_reply(int fd, char *buf, size_t n)
{
	size_t got = 0;

	if (C.target.kind == K_UDP)
		return recv(fd, buf, n, 0);
	while (got < n) {
		ssize_t r = recv(fd, buf + got, n - got, 0);

		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static void note_err(struct worker *w, const char *what)
{
	w->errors++;
	if (!w->lasterr[0] || strncmp(w->lasterr, "connect", 7))
		snprintf(w->lasterr, sizeof(w->lasterr), "%s: %s", what, errno ? strerror(errno) : "short reply");
	/* Failing fast must not spin: back off a little. */
	usleep(1000);
}

static void count_id(struct worker *w, const char *reply, ssize_t n)
{
	char id[ID_LEN];
	size_t len = 0;

	for (ssize_t i = 0; i < n && len < sizeof(id) - 1; i++) {
		char ch = reply[i];

		if (ch == '\n' || ch == '\0')
			break;
		id[len++] = (ch == ' ' || ch == '=' || ch < 0x21 || ch > 0x7e) ? '_' : ch;
	}
	while (len && id[len - 1] == '_')
		len--;
	id[len] = 0;
	if (!len)
		strcpy(id, "(empty)");
	for (int i = 0; i < w->nids; i++)
		if (!strcmp(w->ids[i].id, id)) {
			w->ids[i].n++;
			return;
		}
	if (w->nids < MAX_IDS) {
		snprintf(w->ids[w->nids].id, ID_LEN, "%s", id);
		w->ids[w->nids++].n = 1;
	}
}

static void *client_thread(void *arg)
{
	struct worker *w = arg;
	char *out = calloc(1, C.size), *in = calloc(1, C.size);
	int fd = -1;

	if (!out || !in)
		goto done;
	memset(out, 'q', C.size);
	if (C.mode == M_RR) {
		fd = connect_new(w);
		if (fd < 0) {
			w->errors++;
			goto done;
		}
	}
	while (claim()) {
		uint64_t t0 = now_ns();

		errno = 0;
		if (C.mode == M_CRR || C.mode == M_IDS) {
			fd = connect_new(w);
			if (fd < 0) {
				note_err(w, "connect");
				continue;
			}
		}
		if (send_all(fd, out, C.size)) {
			note_err(w, "send");
		} else {
			ssize_t r = recv_reply(fd, in, C.size);

			if (r <= 0) {
				note_err(w, "recv");
			} else {
				hist_add(&w->h, now_ns() - t0);
				w->ops++;
				w->bytes += (uint64_t)r;
				if (C.mode == M_IDS)
					count_id(w, in, r);
			}
		}
		if (C.mode == M_CRR || C.mode == M_IDS) {
			close(fd);
			fd = -1;
		} else if (w->errors && C.target.kind != K_UDP && w->errors > w->ops / 2 + 10) {
			break;	/* the connection is broken */
		}
	}
done:
	w->end = now_s();
	if (fd >= 0)
		close(fd);
	free(out);
	free(in);
	return NULL;
}

/* stream: one writer and one reader per connection; the reader counts echoed bytes. */
struct stream_conn {
	struct worker *w;
	int fd;
	atomic_ullong rx;
};

static void *stream_writer(void *arg)
{
	struct stream_conn *sc = arg;
	char *buf = malloc(C.size);

	if (!buf)
		return NULL;
	memset(buf, 's', C.size);
	while (claim()) {
		if (send_all(sc->fd, buf, C.size)) {
			if (!atomic_load(&g_stop))
				note_err(sc->w, "send");
			break;
		}
	}
	shutdown(sc->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static void *stream_reader(void *arg)
{
	struct stream_conn *sc = arg;
	char *buf = malloc(SRV_BUF);

	if (!buf)
		return NULL;
	for (;;) {
		ssize_t r = recv(sc->fd, buf, SRV_BUF, 0);

		if (r <= 0)
			break;
		atomic_fetch_add(&sc->rx, (unsigned long long)r);
	}
	free(buf);
	return NULL;
}

static void print_result(struct worker *ws, double elapsed, double rx_bytes)
{
	struct hist *h = calloc(1, sizeof(*h));
	struct idcount ids[MAX_IDS];
	int nids = 0;
	uint64_t ops = 0, errors = 0;
	const char *proto = C.target.kind == K_UDP ? "udp" : C.target.kind == K_UNIX ? "unix" : "tcp";
	const char *lasterr = "";

	if (!h)
		return;
	for (int i = 0; i < C.conc; i++) {
		hist_merge(h, &ws[i].h);
		ops += ws[i].ops;
		errors += ws[i].errors;
		if (ws[i].lasterr[0])
			lasterr = ws[i].lasterr;
		for (int k = 0; k < ws[i].nids; k++) {
			int j;

			for (j = 0; j < nids; j++)
				if (!strcmp(ids[j].id, ws[i].ids[k].id))
					break;
			if (j == nids) {
				if (nids == MAX_IDS)
					continue;
				ids[nids] = ws[i].ids[k];
				ids[nids++].n = 0;
			}
			ids[j].n += ws[i].ids[k].n;
		}
	}
	if (C.mode == M_STREAM) {
		double gbps = elapsed > 0 ? rx_bytes * 8 / elapsed / 1e9 : 0;

		printf("mode=stream proto=%s target=%s conc=%d size=%zu elapsed_s=%.3f bytes=%.0f errors=%llu gbps=%.3f\n",
		       proto, C.target.text, C.conc, C.size, elapsed, rx_bytes, (unsigned long long)errors, gbps);
		if (!C.quiet)
			printf("# stream %s %s conc %d: %.2f Gbit/s echoed over %.1f s, %llu errors\n", proto,
			       C.target.text, C.conc, gbps, elapsed, (unsigned long long)errors);
	} else {
		double rate = elapsed > 0 ? (double)ops / elapsed : 0;

		printf("mode=%s proto=%s target=%s conc=%d size=%zu elapsed_s=%.3f ops=%llu errors=%llu rate=%.1f "
		       "p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f",
		       C.mode_name, proto, C.target.text, C.conc, C.size, elapsed, (unsigned long long)ops,
		       (unsigned long long)errors, rate, hist_pct_us(h, 50), hist_pct_us(h, 90), hist_pct_us(h, 99),
		       (double)h->max / 1000.0);
		for (int j = 0; j < nids; j++)
			printf(" id:%s=%llu", ids[j].id, (unsigned long long)ids[j].n);
		printf("\n");
		if (!C.quiet) {
			printf("# %s %s %s conc %d: %.1f req/s, p50 %.1f us, p90 %.1f us, p99 %.1f us, %llu ok, %llu errors\n",
			       C.mode_name, proto, C.target.text, C.conc, rate, hist_pct_us(h, 50), hist_pct_us(h, 90),
			       hist_pct_us(h, 99), (unsigned long long)ops, (unsigned long long)errors);
			for (int j = 0; j < nids; j++) {
				double share = ops ? 100.0 * (double)ids[j].n / (double)ops : 0;
				char bar[41];
				int nb = (int)(share / 2.5 + 0.5);

				memset(bar, '#', (size_t)nb);
				bar[nb] = 0;
				printf("#   %-24s %7llu  %5.1f%%  %s\n", ids[j].id, (unsigned long long)ids[j].n, share, bar);
			}
		}
	}
	if (errors && lasterr[0] && !C.quiet)
		printf("# last error: %s\n", lasterr);
	free(h);
}

static int cmd_client(void)
{
	struct worker *ws = calloc((size_t)C.conc, sizeof(*ws));
	struct stream_conn *scs = NULL;
	pthread_t *rd = NULL, *wr = NULL;
	double t0, elapsed, rx = 0;
	uint64_t ops = 0;
	int rc;

	if (!ws)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	t0 = now_s();
	/* --duration ends the run; with --count only, a generous cap still ends it. */
	g_end = t0 + (C.duration > 0 ? C.duration : 300);
	if (C.mode == M_STREAM) {
		scs = calloc((size_t)C.conc, sizeof(*scs));
		rd = calloc((size_t)C.conc, sizeof(*rd));
		wr = calloc((size_t)C.conc, sizeof(*wr));
		if (!scs || !rd || !wr)
			return 1;
		for (int i = 0; i < C.conc; i++) {
			scs[i].w = &ws[i];
			scs[i].fd = connect_new(&ws[i]);
			if (scs[i].fd < 0) {
				ws[i].errors++;
				continue;
			}
			pthread_create(&rd[i], NULL, stream_reader, &scs[i]);
			pthread_create(&wr[i], NULL, stream_writer, &scs[i]);
		}
	} else {
		for (int i = 0; i < C.conc; i++) {
			ws[i].idx = i;
			if (pthread_create(&ws[i].th, NULL, client_thread, &ws[i]))
				return 1;
		}
	}
	/* Wait for the deadline, or for --count to be used up. */
	while (now_s() < g_end && !atomic_load(&g_stop)) {
		usleep(C.duration > 0 && C.duration < 1 ? 2000 : 10000);
		if (C.count > 0 && atomic_load(&g_issued) >= C.count)
			break;
	}
	if (C.mode == M_STREAM) {
		for (int i = 0; i < C.conc; i++)
			rx += (double)atomic_load(&scs[i].rx);
		elapsed = now_s() - t0;
	}
	atomic_store(&g_stop, true);
	if (C.mode == M_STREAM) {
		for (int i = 0; i < C.conc; i++) {
			if (scs[i].fd < 0)
				continue;
			pthread_join(wr[i], NULL);
			pthread_join(rd[i], NULL);
			close(scs[i].fd);
		}
	} else {
		double last = t0;

		for (int i = 0; i < C.conc; i++) {
			pthread_join(ws[i].th, NULL);
			if (ws[i].end > last)
				last = ws[i].end;
		}
		elapsed = last - t0;
	}
	print_result(ws, elapsed, rx);
	for (int i = 0; i < C.conc; i++)
		ops += ws[i].ops;
	rc = (C.mode == M_STREAM ? rx > 0 : ops > 0) ? 0 : 1;	/* stream counts bytes, not ops */
	free(ws);
	free(scs);
	free(rd);
	free(wr);
	if (g_signal) {
		/* Die of the signal after reporting, so a calling shell sees the Ctrl-C too. */
		fflush(stdout);
		signal(g_signal, SIG_DFL);
		raise(g_signal);
	}
	return rc;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage:\n"
		"  kbload serve [--tcp ADDR:PORT]... [--udp ADDR:PORT]... [--unix PATH]... [--id TEXT|@local]\n"
		"               [--threads N] [--duration S]\n"
		"  kbload crr|rr|stream|ids (--tcp ADDR:PORT | --udp ADDR:PORT | --unix PATH)\n"
		"               [--duration S | --count N] [--concurrency C] [--size BYTES] [--timeout-ms MS] [-q]\n"
		"\n"
		"serve echoes each chunk, or answers it with --id padded to the chunk's length.\n"
		"crr: new connection per request; rr: round trips on one connection (TCP, unix, UDP);\n"
		"stream: bulk echoed bytes (Gbit/s); ids: count which server id answered each new connection.\n"
		"ADDR is IPv4 or [IPv6]. Prints one key=value line per run and a '#' human line.\n");
}

static double parse_num(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (*end || v < 0)
		die("bad number for %s", what);
	return v;
}

int main(int argc, char **argv)
{
	const char *cmd;
	bool serve;

	if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	serve = !strcmp(cmd, "serve");
	S.threads = 2;
	C.conc = 1;
	C.timeout_ms = 2000;
	C.mode_name = cmd;
	if (!strcmp(cmd, "crr"))
		C.mode = M_CRR;
	else if (!strcmp(cmd, "rr"))
		C.mode = M_RR;
	else if (!strcmp(cmd, "stream"))
		C.mode = M_STREAM;
	else if (!strcmp(cmd, "ids"))
		C.mode = M_IDS;
	else if (!serve) {
		usage(stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		enum kind k;

		if (!strcmp(o, "-q")) {
			C.quiet = true;
			continue;
		}
		if (!v)
			die("%s needs a value", o);
		i++;
		if (!strcmp(o, "--tcp") || !strcmp(o, "--udp") || !strcmp(o, "--unix")) {
			k = o[2] == 't' ? K_TCP : o[3] == 'd' ? K_UDP : K_UNIX;
			if (serve) {
				if (S.n == MAX_LISTEN)
					die("%s", "too many listeners");
				parse_addr(k, v, &S.listen[S.n++]);
			} else {
				if (C.have_target)
					die("%s", "one target only");
				parse_addr(k, v, &C.target);
				C.have_target = true;
			}
		} else if (!strcmp(o, "--id")) {
			if (strlen(v) >= ID_LEN)
				die("id too long: %s", v);
			S.id = v;
		} else if (!strcmp(o, "--threads")) {
			S.threads = (int)parse_num(v, o);
			if (S.threads < 1 || S.threads > 32)
				die("--threads must be 1..32, not %s", v);
		} else if (!strcmp(o, "--duration")) {
			C.duration = S.duration = parse_num(v, o);
		} else if (!strcmp(o, "--count")) {
			C.count = (long)parse_num(v, o);
		} else if (!strcmp(o, "--concurrency") || !strcmp(o, "-c")) {
			C.conc = (int)parse_num(v, o);
			if (C.conc < 1 || C.conc > MAX_CONC)
				die("--concurrency must be 1..1024, not %s", v);
		} else if (!strcmp(o, "--size")) {
			C.size = (size_t)parse_num(v, o);
			if (C.size < 1 || C.size > SRV_BUF)
				die("--size must be 1..65536, not %s", v);
		} else if (!strcmp(o, "--timeout-ms")) {
			C.timeout_ms = (int)parse_num(v, o);
			if (C.timeout_ms < 1)
				die("bad --timeout-ms %s", v);
		} else {
			die("unknown option %s", o);
		}
	}
	if (serve)
		return cmd_serve();
	if (!C.have_target)
		die("%s", "a target is needed: --tcp, --udp or --unix");
	if (C.mode == M_CRR && C.target.kind == K_UDP)
		die("%s", "crr needs a stream target (--tcp or --unix); use rr or ids for UDP");
	if (C.mode == M_STREAM && C.target.kind == K_UDP)
		die("%s", "stream needs --tcp or --unix");
	if (!C.size)
		C.size = C.mode == M_STREAM ? SRV_BUF : 64;
	if (C.duration <= 0 && C.count <= 0)
		C.duration = C.mode == M_IDS ? 0 : 5;
	if (C.mode == M_IDS && C.duration <= 0 && C.count <= 0)
		C.count = 1000;
	return cmd_client();
}
