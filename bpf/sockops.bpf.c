// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* cgroup sockops program: the kernel's own view of each endpoint's connects (outcomes, open connections), for passive health and LeastRequest. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kbackend.h"
#include "compat.bpf.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETIMEDOUT 110

/* The socket's peer as an endpoint_* key; a v4-mapped IPv6 peer folds to AF_INET, as in connect4/6. */
static __always_inline void kb_peer_key(struct bpf_sock_ops *ctx, struct kb_endpoint_key *k)
{
	k->proto = KB_PROTO_TCP;
	/* remote_port holds the port in network order in its upper half. */
	k->port = bpf_htons((__u16)bpf_ntohl(ctx->remote_port));
	if (ctx->family == AF_INET) {
		k->family = AF_INET;
		k->ip[0] = ctx->remote_ip4;
		return;
	}
	k->family = AF_INET6;
	k->ip[0] = ctx->remote_ip6[0];
	k->ip[1] = ctx->remote_ip6[1];
	k->ip[2] = ctx->remote_ip6[2];
	k->ip[3] = ctx->remote_ip6[3];
	if (k->ip[0] == 0 && k->ip[1] == 0 && k->ip[2] == bpf_htonl(0xffff)) {
		k->ip[0] = k->ip[3];
		k->ip[2] = k->ip[3] = 0;
		k->family = AF_INET;
	}
}

static __always_inline int kb_sk_err(struct bpf_sock_ops *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct tcp_sock *tp;

	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	return BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_err);
}

/* A connect failed: count it, and report each run of `threshold` in a row. */
static __always_inline void kb_failed(struct bpf_sock_ops *ctx, struct kb_endpoint_key *key, struct kb_ep_load *load)
{
	struct kb_ep_outcomes *o = bpf_map_lookup_elem(&endpoint_outcomes, key);
	struct kb_health_event *ev;
	__u32 *threshold, n;
	int err = kb_sk_err(ctx);

	if (!err)
		return;	/* closed by the application before the handshake ended: no verdict */
	if (o) {
		if (err == ECONNREFUSED)
			o->refused++;
		else if (err == ETIMEDOUT)
			o->timed_out++;
		else
			o->failed++;
	}
	threshold = bpf_map_lookup_elem(&eject_thresholds, key);
	/* Racy on purpose: two CPUs failing at once may count one failure; health is not exact arithmetic. */
	n = load->consecutive_failures + 1;
	if (!threshold || !*threshold || n < *threshold) {
		load->consecutive_failures = n;
		return;
	}
	load->consecutive_failures = 0;
	ev = bpf_ringbuf_reserve(&health_events, sizeof(*ev), 0);
	if (!ev)
		return;
	ev->endpoint = *key;
	ev->failures = n;
	ev->last_err = err;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * Only sockets whose peer is a known endpoint (an endpoint_load entry, made by
 * health.c) ask for state callbacks, so other TCP traffic in the cgroup pays
 * one hash lookup at connect and nothing after.
 */
SEC("sockops")
int sockops_health(struct bpf_sock_ops *ctx)
{
	struct kb_endpoint_key key = {};
	struct kb_ep_outcomes *o;
	struct kb_ep_load *load;
	__u32 old, new;

	if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB && ctx->op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	kb_peer_key(ctx, &key);
	load = bpf_map_lookup_elem(&endpoint_load, &key);
	if (!load)
		return 1;
	if (ctx->op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	}
	old = ctx->args[0];
	new = ctx->args[1];
	if (old == BPF_TCP_SYN_SENT && new == BPF_TCP_ESTABLISHED) {
		o = bpf_map_lookup_elem(&endpoint_outcomes, &key);
		if (o)
			o->established++;
		if (load->consecutive_failures)
			load->consecutive_failures = 0;
		__sync_fetch_and_add(&load->active, 1);
	} else if (old == BPF_TCP_SYN_SENT && new == BPF_TCP_CLOSE) {
		kb_failed(ctx, &key, load);
	} else if (old == BPF_TCP_ESTABLISHED) {
		/* A connection leaves ESTABLISHED exactly once, whichever side closes. */
		__sync_fetch_and_add(&load->active, -1);
	}
	return 1;
}
