/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's event loop: epoll for fds, plus timers that modules register, so each module plugs in with a few lines. */
#ifndef KB_LOOP_H
#define KB_LOOP_H

#include <stdint.h>

struct kb_loop;

/* An fd is ready: events are EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP bits. */
typedef void (*kb_loop_fd_cb)(void *ctx, int fd, uint32_t events);
/* Milliseconds until this timer wants to run; -1 for none. */
typedef int (*kb_loop_due_cb)(void *ctx);
/* Run a timer's work; called every iteration, so it must be cheap when nothing is due. */
typedef void (*kb_loop_tick_cb)(void *ctx);

struct kb_loop *kb_loop_new(void);
void kb_loop_free(struct kb_loop *l);

/* Watch fd; a callback may add or remove any fd, its own included. 0 or -errno. */
int kb_loop_add(struct kb_loop *l, int fd, uint32_t events, kb_loop_fd_cb cb, void *ctx);
int kb_loop_mod(struct kb_loop *l, int fd, uint32_t events);
/* Stop watching fd (before closing it). Safe for an fd that is not watched. */
void kb_loop_del(struct kb_loop *l, int fd);

/* A timer: due() says when, tick() runs (every iteration, after the fd callbacks). */
int kb_loop_add_timer(struct kb_loop *l, kb_loop_due_cb due, kb_loop_tick_cb tick, void *ctx);

/* Wait at most max_ms (and no longer than the earliest timer), dispatch, run the timers. */
void kb_loop_run_once(struct kb_loop *l, int max_ms);

#endif /* KB_LOOP_H */
