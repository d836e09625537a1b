/* SPDX-License-Identifier: Apache-2.0 */
/* Inbound steering: the sk_lookup program on the node's netns, its bridge listeners and registered sidecar listeners. */
#ifndef KB_INBOUND_H
#define KB_INBOUND_H

#include <linux/types.h>
#include <stddef.h>

#include "../include/kbackend.h"

struct kb_inbound;

/*
 * Load sk_lookup_steer on the maps the dataplane pinned under bpffs (open the
 * dataplane first), attach it to the calling thread's netns, and pin its link
 * as <bpffs>/links/sk_lookup_steer (adopting a pinned one). 0 or -errno,
 * with one error line logged.
 */
int kb_inbound_open(const char *bpffs, struct kb_inbound **out);
/* Release handles; the pinned link keeps steering (registered listeners keep working). */
void kb_inbound_close(struct kb_inbound *in);

/* kb_bridge_opts.on_listen: the bridge listener for port becomes a target for frontends with unix endpoints. */
void kb_inbound_add_bridge(void *ctx, __u16 port, int fd);

/* "198.18.0.10:80" or "[2001:db8:f::10]:80" into a TCP frontend key. 0 or -EINVAL. */
int kb_inbound_parse_frontend(const char *s, struct kb_frontend_key *key);

/*
 * Make the listening TCP socket fd the target for connections to frontend
 * (`kbackend register`). The map holds the socket until its owner closes it;
 * the caller closes fd. 0, or -errno with why filled.
 */
int kb_inbound_register(struct kb_inbound *in, const char *frontend, int fd, char *why, size_t len);
/* Forget the listener registered for frontend. 0, or -errno with why filled. */
int kb_inbound_unregister(struct kb_inbound *in, const char *frontend, char *why, size_t len);

#endif /* KB_INBOUND_H */
