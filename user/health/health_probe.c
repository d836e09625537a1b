// SPDX-License-Identifier: Apache-2.0
/* Active health checks (healthCheck.active): non-blocking TCP connects and HTTP status probes in the daemon's loop. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health_int.h"
#include "util.h"

void hl_probe_close(struct kb_health *h, struct hep *e)
{
	if (e->fd >= 0) {
		kb_loop_del(h->loop, e->fd);
		close(e->fd);
	}
	e->fd = -1;
	e->phase = PROBE_IDLE;
	e->rlen = 0;
}

static void probe_done(struct kb_health *h, struct hep *e, bool ok, const char *why)
{
	bool was = hep_healthy(e);

	hl_probe_close(h, e);
	e->probes++;
	if (ok) {
		e->fails = 0;
		e->oks++;
		e->last_error[0] = '\0';
		if (e->down && e->oks >= e->healthy_th) {
			e->down = false;
			kb_log_info("health: %s:%u passes its checks again", e->addr, e->port);
		}
	} else {
		e->probe_failures++;
		e->oks = 0;
		e->fails++;
		snprintf(e->last_error, sizeof(e->last_error), "%s", why);
		if (!e->down && e->fails >= e->unhealthy_th) {
			e->down = true;
			kb_log_info("health: %s:%u failed %u checks in a row (%s)", e->addr, e->port, e->fails, why);
		}
	}
	hl_set_dirty(h, e, was);
}

static bool status_expected(const struct hep *e, int status)
{
	if (!e->nstatuses)
		return status == 200;	/* Envoy Gateway: 200 only, by default */
	for (size_t i = 0; i < e->nstatuses; i++)
		if (e->statuses[i] == status)
			return true;
	return false;
}

static void probe_send(struct kb_health *h, struct hep *e)
{
	char req[1024], host[INET6_ADDRSTRLEN + 16];
	int n;

	if (e->key.family == AF_INET6)
		snprintf(host, sizeof(host), "[%s]:%u", e->addr, e->port);
	else
		snprintf(host, sizeof(host), "%s:%u", e->addr, e->port);
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kbackend-health\r\nConnection: close\r\n\r\n",
		     e->method, e->path, host);
	if (n <= 0 || n >= (int)sizeof(req) || send(e->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		probe_done(h, e, false, "send failed");
		return;
	}
	e->phase = PROBE_READING;
	kb_loop_mod(h->loop, e->fd, EPOLLIN);
}

static void on_probe(void *ctx, int fd, uint32_t events)
{
	struct hep *e = ctx;
	struct kb_health *h = e->h;
	int err = 0, status;
	socklen_t len = sizeof(err);
	ssize_t n;
	char *eol;

	if (e->phase == PROBE_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
			probe_done(h, e, false, strerror(err ? err : errno));
			return;
		}
		if (!e->http) {
			probe_done(h, e, true, NULL);
			return;
		}
		probe_send(h, e);
		return;
	}
	n = recv(fd, e->rbuf + e->rlen, sizeof(e->rbuf) - 1 - e->rlen, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			probe_done(h, e, false, strerror(errno));
		return;
	}
	e->rlen += (size_t)n;
	e->rbuf[e->rlen] = '\0';
	eol = strstr(e->rbuf, "\r\n");
	if (!eol && n > 0 && e->rlen < sizeof(e->rbuf) - 1)
		return;	/* the status line is not complete yet */
	if (sscanf(e->rbuf, "HTTP/%*d.%*d %d", &status) != 1) {
		probe_done(h, e, false, "no HTTP status line");
		return;
	}
	if (status_expected(e, status)) {
		probe_done(h, e, true, NULL);
	} else {
		char why[32];

		snprintf(why, sizeof(why), "HTTP status %d", status);
		probe_done(h, e, false, why);
	}
}

/* Non-blocking connect from the daemon's network namespace; the loop reports the outcome. */
static void probe_start(struct kb_health *h, struct hep *e, long now)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(e->port) };
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(e->port) };
	struct sockaddr *sa = (struct sockaddr *)&s4;
	socklen_t sl = sizeof(s4);
	int fd;

	e->next_probe = now + e->interval_ms;
	e->deadline = now + e->timeout_ms;
	if (e->key.family == AF_INET6) {
		memcpy(&s6.sin6_addr, e->key.ip, 16);
		sa = (struct sockaddr *)&s6;
		sl = sizeof(s6);
	} else {
		memcpy(&s4.sin_addr, &e->key.ip[0], 4);
	}
	fd = socket(e->key.family == AF_INET6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		probe_done(h, e, false, strerror(errno));
		return;
	}
	e->fd = fd;
	e->phase = PROBE_CONNECTING;
	if (connect(fd, sa, sl) && errno != EINPROGRESS) {
		probe_done(h, e, false, strerror(errno));
		return;
	}
	if (kb_loop_add(h->loop, fd, EPOLLOUT, on_probe, e)) {
		probe_done(h, e, false, "event loop full");
		return;
	}
}

void hl_probe_tick(struct kb_health *h, struct hep *e, long now)
{
	if (e->active && e->phase == PROBE_IDLE && now >= e->next_probe)
		probe_start(h, e, now);
	else if (e->active && e->phase != PROBE_IDLE && now >= e->deadline)
		probe_done(h, e, false, "timed out");
}
