/* SPDX-License-Identifier: Apache-2.0 */
/* The TCP->unix bridge: loopback listeners that steered connects reach, and a thread that moves their bytes to sidecars. */
#ifndef KB_BRIDGE_H
#define KB_BRIDGE_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compile/compile.h"

#define KB_BRIDGE_BUFFER_DEFAULT (4u << 20)	/* --bridge-buffer: bytes in flight per connection and direction */
#define KB_BRIDGE_MAX_NETNS 16
#define KB_BRIDGE_IDLE_DEFAULT_MS (3600L * 1000)	/* --bridge-idle-timeout */

enum kb_bridge_mode {
	KB_BRIDGE_COPY = 0,	/* recv()/send() through a bounded buffer */
	KB_BRIDGE_SPLICE = 1,	/* splice(2) through a pipe, no copy to user space */
};

struct kb_bridge_opts {
	const char *netns[KB_BRIDGE_MAX_NETNS];	/* --bridge-netns: more namespaces to listen in */
	size_t nnetns;
	size_t buffer;				/* --bridge-buffer; 0: the default */
	enum kb_bridge_mode mode;		/* --bridge-mode */
	long idle_ms;				/* --bridge-idle-timeout: close after this long with no byte moved; 0: never */
	bool idle_set;				/* the flag was given (else the default) */
	/* --unix-dir as given (what Backend paths are matched against) and each one resolved at start (opened at connect). */
	char *const *unix_dirs;
	char *const *unix_real;
	size_t nunix_dirs;
	/* A listener was made in the daemon's own netns (for sk_lookup); port is host order. */
	void (*on_listen)(void *ctx, __u16 port, int fd);
	void *on_listen_ctx;
};

/* Counters, for `status`. */
struct kb_bridge_stats {
	uint64_t accepted;	/* connections accepted */
	uint64_t refused;	/* reset because the sidecar refused or was absent, or its path was unsafe */
	uint64_t idle_closed;	/* closed by --bridge-idle-timeout */
	uint64_t active;	/* connections open now */
	uint64_t pooled_pipes;	/* empty pipes kept for reuse (splice mode): two fds each, no connection */
	uint64_t bytes_up;	/* client -> sidecar */
	uint64_t bytes_down;	/* sidecar -> client */
	size_t listeners;	/* unix paths served */
};

struct kb_bridge;

/* Open the --bridge-netns paths and start the bridge thread. NULL with why filled on failure. */
struct kb_bridge *kb_bridge_new(const struct kb_bridge_opts *o, char *why, size_t len);
/* Stop the thread, reset every open connection, close every listener. */
void kb_bridge_free(struct kb_bridge *b);

/*
 * kb_compile_env.bridge: the address a connect to the unix sidecar at path is
 * steered to (127.0.0.1:port in every bridged netns), made on first use. 0, or
 * -errno (the endpoint is then programmed as unreachable).
 */
int kb_bridge_listener(void *ctx, const char *path, __u32 ip[4], __u16 *port);

/* Close the listeners of paths that c has not used for a few seconds. Cheap; call it about once a second. */
void kb_bridge_sweep(struct kb_bridge *b, const struct kb_compiled *c);

void kb_bridge_get_stats(struct kb_bridge *b, struct kb_bridge_stats *out);

/* Why connects to the sidecar at path were last reset, and how many were: false when none was. */
bool kb_bridge_path_refusal(struct kb_bridge *b, const char *path, char *why, size_t len, uint64_t *count,
			    long *ago_ms);

/* "copy" or "splice"; false on anything else. */
bool kb_bridge_parse_mode(const char *s, enum kb_bridge_mode *out);
const char *kb_bridge_mode_name(enum kb_bridge_mode m);
/* "4MiB", "65536", "512KiB", "1M"; false on bad input or < 64 KiB. */
bool kb_bridge_parse_size(const char *s, size_t *out);

#endif /* KB_BRIDGE_H */
