// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* UDP socket iterator: destroy the connected UDP sockets that were steered to an endpoint that is now ejected or removed, so applications reconnect. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "kbackend.h"
#include "compat.bpf.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* kfunc, 6.5+: aborts the socket (sk_err ECONNABORTED) and disconnects it. */
extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/*
 * Run by health.c through bpf_iter_create() in the daemon's network namespace.
 * A socket goes only when connect4/6 steered it (its sock_peers record) and
 * the endpoint it was steered to is in udp_destroy_targets: sockets that name
 * an endpoint address directly are none of kbackend's business.
 */
SEC("iter/udp")
int udp_destroy(struct bpf_iter__udp *ctx)
{
	struct sock_common *skc = (struct sock_common *)ctx->udp_sk;
	struct kb_peer *peer;
	__u64 cookie;

	if (!skc)
		return 0;
	cookie = BPF_CORE_READ(skc, skc_cookie.counter);
	if (!cookie)
		return 0;	/* never given a cookie: never steered */
	peer = bpf_map_lookup_elem(&sock_peers, &cookie);
	if (!peer)
		return 0;
	if (!bpf_map_lookup_elem(&udp_destroy_targets, &peer->endpoint))
		return 0;
	bpf_sock_destroy(skc);
	return 0;
}
