/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to bridge*.c: the bridge's state, shared by the main thread (bridge.c) and the bridge thread (bridge_thread.c). */
#ifndef KB_BRIDGE_INT_H
#define KB_BRIDGE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include "bridge/bridge.h"

/* Not part of the bridge's interface (bridge.h). The design is described at the top of bridge.c. */

#define PIPE_POOL 8			/* empty pipes kept for reuse (splice mode) */

/* What an epoll event's data.ptr points at: its first int says which. */
enum { T_EVENT = 1, T_LISTEN, T_END };

struct blisten {
	int type;			/* T_LISTEN; first, as in every epoll tag */
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct blisten *next;		/* graveyard */
};

/* A unix path whose connects were refused: why, for `get endpoints` (under b->mu). */
struct brefusal {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char why[256];
	uint64_t count, unlogged;
	long at_ms, logged_ms;
};

struct conn;				/* bridge_thread.c */
struct plisten;				/* bridge.c */

struct kb_bridge {
	struct kb_bridge_opts o;
	int nsfd[KB_BRIDGE_MAX_NETNS];
	int selfns;
	int epfd, evfd;
	pthread_t th;
	bool started;
	atomic_bool stop;
	int tcp_rcv, tcp_snd, ux_snd;
	size_t chunk;

	/* Main thread. */
	struct plisten *ls;
	size_t nls, capls;

	/* Handed from the main thread to the bridge thread. */
	pthread_mutex_t mu;
	struct blisten *graveyard;
	struct brefusal *refusals;	/* written by the bridge thread, read by the main thread */
	size_t nrefusals, caprefusals;

	/* Bridge thread only. */
	char *scratch;
	int pool[PIPE_POOL][2];
	size_t npool;
	struct conn *live, *retry, *ready, *dead;
	int reserve_fd;

	_Atomic uint64_t accepted, refused, active, bytes_up, bytes_down, idle_closed;
	_Atomic uint64_t pooled_pipes;	/* npool, for status: pooled pipes hold fds with no connection */
};

/* bridge_thread.c: the bridge thread's body (pthread_create); it runs until b->stop. */
void *kb_bridge_thread(void *arg);

#endif /* KB_BRIDGE_INT_H */
