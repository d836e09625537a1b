// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* sk_lookup program: connections that arrive for a frontend address go to a registered listener or the unix bridge. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kbackend.h"
#include "compat.bpf.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KB_BRIDGE_TRIES 4	/* random slots tried for a unix endpoint before giving up */

/* Hand the connection to sk (a reference from a sockhash lookup, released here). */
static __always_inline int kb_assign(struct bpf_sk_lookup *ctx, struct bpf_sock *sk)
{
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return SK_PASS;
}

/*
 * Runs for every TCP connection that arrives in the node's netns (the
 * frontend addresses must be local there). In order: a listener a sidecar
 * registered for this frontend; else, when the frontend's selection holds
 * unix endpoints, the bridge listener of one of them, chosen by the slot
 * weights; else the kernel's own lookup (nothing listens there: a RST).
 */
SEC("sk_lookup")
int sk_lookup_steer(struct bpf_sk_lookup *ctx)
{
	struct kb_frontend_key key = {};
	struct kb_frontend *fe;
	struct bpf_sock *sk;
	union {
		__u64 raw;
		struct {
			__u32 base;
			__u32 n;
		};
	} run;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	key.proto = KB_PROTO_TCP;
	key.port = bpf_htons((__u16)ctx->local_port);	/* local_port is host order */
	key.family = (__u8)ctx->family;
	if (ctx->family == AF_INET) {
		key.ip[0] = ctx->local_ip4;
	} else if (ctx->family == AF_INET6) {
		key.ip[0] = ctx->local_ip6[0];
		key.ip[1] = ctx->local_ip6[1];
		key.ip[2] = ctx->local_ip6[2];
		key.ip[3] = ctx->local_ip6[3];
	} else {
		return SK_PASS;
	}

	sk = bpf_map_lookup_elem(&registered_listeners, &key);
	if (sk)
		return kb_assign(ctx, sk);

	fe = bpf_map_lookup_elem(&frontends, &key);
	if (!fe)
		return SK_PASS;
	run.raw = *(volatile __u64 *)&fe->slot_base;
	if (!run.n)
		return SK_PASS;
	for (int i = 0; i < KB_BRIDGE_TRIES; i++) {
		__u32 idx = run.base + bpf_get_prandom_u32() % run.n, port;
		struct kb_slot *slot = bpf_map_lookup_elem(&slots, &idx);

		if (!slot || slot->kind != KB_SLOT_BRIDGE || !slot->port)
			continue;
		port = slot->port;
		sk = bpf_map_lookup_elem(&bridge_listeners, &port);
		if (sk)
			return kb_assign(ctx, sk);
	}
	return SK_PASS;
}
