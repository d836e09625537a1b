// SPDX-License-Identifier: Apache-2.0
/* The daemon's event loop: epoll for fds, plus timers that modules register, so each module plugs in with a few lines. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon/loop.h"

#define MAX_EVENTS 64

/* One watched fd. Removed entries are only marked, and freed after the dispatch that may still see them. */
struct watch {
	int fd;
	kb_loop_fd_cb cb;
	void *ctx;
	struct watch *next;
	int dead;
};

struct timer {
	kb_loop_due_cb due;
	kb_loop_tick_cb tick;
	void *ctx;
	struct timer *next;
};

struct kb_loop {
	int epfd;
	struct watch *watches;
	struct timer *timers;
	int dispatching;
};

struct kb_loop *kb_loop_new(void)
{
	struct kb_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

static void reap(struct kb_loop *l)
{
	struct watch **pw = &l->watches;

	while (*pw) {
		struct watch *w = *pw;

		if (w->dead) {
			*pw = w->next;
			free(w);
		} else {
			pw = &w->next;
		}
	}
}

void kb_loop_free(struct kb_loop *l)
{
	if (!l)
		return;
	for (struct watch *w = l->watches; w; w = w->next)
		w->dead = 1;
	reap(l);
	for (struct timer *t = l->timers, *n; t; t = n) {
		n = t->next;
		free(t);
	}
	close(l->epfd);
	free(l);
}

static struct watch *find(struct kb_loop *l, int fd)
{
	for (struct watch *w = l->watches; w; w = w->next)
		if (w->fd == fd && !w->dead)
			return w;
	return NULL;
}

int kb_loop_add(struct kb_loop *l, int fd, uint32_t events, kb_loop_fd_cb cb, void *ctx)
{
	struct watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->cb = cb;
	w->ctx = ctx;
	ev.data.ptr = w;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(w);
		return err;
	}
	w->next = l->watches;
	l->watches = w;
	return 0;
}

int kb_loop_mod(struct kb_loop *l, int fd, uint32_t events)
{
	struct watch *w = find(l, fd);
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOENT;
	ev.data.ptr = w;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void kb_loop_del(struct kb_loop *l, int fd)
{
	struct watch *w = find(l, fd);

	if (!w)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = 1;
	if (!l->dispatching)
		reap(l);
}

int kb_loop_add_timer(struct kb_loop *l, kb_loop_due_cb due, kb_loop_tick_cb tick, void *ctx)
{
	struct timer *t = calloc(1, sizeof(*t)), **pt = &l->timers;

	if (!t)
		return -ENOMEM;
	t->due = due;
	t->tick = tick;
	t->ctx = ctx;
	while (*pt)	/* kept in registration order: ticks run in a known order */
		pt = &(*pt)->next;
	*pt = t;
	return 0;
}

void kb_loop_run_once(struct kb_loop *l, int max_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int timeout = max_ms, n;

	for (struct timer *t = l->timers; t; t = t->next) {
		int d = t->due ? t->due(t->ctx) : -1;

		if (d >= 0 && (timeout < 0 || d < timeout))
			timeout = d;
	}
	n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
	l->dispatching = 1;
	for (int i = 0; i < n; i++) {
		struct watch *w = evs[i].data.ptr;

		if (!w->dead)
			w->cb(w->ctx, w->fd, evs[i].events);
	}
	l->dispatching = 0;
	reap(l);
	for (struct timer *t = l->timers; t; t = t->next)
		if (t->tick)
			t->tick(t->ctx);
}
