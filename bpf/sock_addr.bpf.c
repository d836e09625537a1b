// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* cgroup sock_addr programs: steer connects and datagrams aimed at a frontend to an endpoint, and show the frontend back. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kbackend.h"
#include "compat.bpf.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The address a socket call names, in map-key form (v4-mapped IPv6 folded to AF_INET). */
struct kb_addr {
	__u32 ip[4];
	__u8 family;
};

/* murmur3's finaliser: spreads a 32-bit value over all bits, cheaply. */
static __always_inline __u32 kb_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline void kb_read_addr(struct bpf_sock_addr *ctx, bool v6, struct kb_addr *a)
{
	if (!v6) {
		a->ip[0] = ctx->user_ip4;
		a->ip[1] = a->ip[2] = a->ip[3] = 0;
		a->family = AF_INET;
		return;
	}
	a->ip[0] = ctx->user_ip6[0];
	a->ip[1] = ctx->user_ip6[1];
	a->ip[2] = ctx->user_ip6[2];
	a->ip[3] = ctx->user_ip6[3];
	a->family = AF_INET6;
	/* A dual-stack socket names an IPv4 frontend as ::ffff:a.b.c.d. */
	if (a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == bpf_htonl(0xffff)) {
		a->ip[0] = a->ip[3];
		a->ip[2] = a->ip[3] = 0;
		a->family = AF_INET;
	}
}

/* Write ip:port into the context; an IPv4 address goes v4-mapped into a v6 socket. */
static __always_inline int kb_write_addr(struct bpf_sock_addr *ctx, bool v6, __u8 family, const __u32 *ip,
					 __be16 port)
{
	if (!v6) {
		if (family != AF_INET)
			return -EAFNOSUPPORT;
		ctx->user_ip4 = ip[0];
	} else if (family == AF_INET6) {
		ctx->user_ip6[0] = ip[0];
		ctx->user_ip6[1] = ip[1];
		ctx->user_ip6[2] = ip[2];
		ctx->user_ip6[3] = ip[3];
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = ip[0];
	}
	ctx->user_port = port;
	return 0;
}

/*
 * ConsistentHash key: the client's source address when the socket is bound
 * (or sendmsg names one), else the network namespace cookie. At connect time
 * an unbound socket has no source yet (routing picks it later), and one netns
 * is one pod, i.e. one source IP, so the netns is the stable stand-in.
 */
static __always_inline __u32 kb_client_hash(struct bpf_sock_addr *ctx, bool v6, bool is_sendmsg)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 h = 0;
	__u64 c;

	if (is_sendmsg)
		h = v6 ? ctx->msg_src_ip6[0] ^ ctx->msg_src_ip6[1] ^ ctx->msg_src_ip6[2] ^ ctx->msg_src_ip6[3]
		       : ctx->msg_src_ip4;
	if (!h && sk)
		h = v6 ? sk->src_ip6[0] ^ sk->src_ip6[1] ^ sk->src_ip6[2] ^ sk->src_ip6[3] : sk->src_ip4;
	if (!h) {
		c = bpf_get_netns_cookie(ctx);
		h = (__u32)c ^ (__u32)(c >> 32);
	}
	return kb_mix32(h);
}

static __always_inline __u32 kb_pick(struct bpf_sock_addr *ctx, __u8 lb, __u32 fid, __u32 n, bool v6,
				     bool is_sendmsg)
{
	__u32 *cur, i;

	switch (lb) {
	case KB_LB_ROUND_ROBIN:
		/* Per-CPU cursor: no shared cache line, near round robin over all CPUs. */
		cur = bpf_map_lookup_elem(&rr_cursors, &fid);
		if (!cur)
			return bpf_get_prandom_u32() % n;
		i = *cur;
		if (i >= n)
			i = 0;
		*cur = i + 1;
		return i;
	case KB_LB_CONSISTENT_HASH:
		return kb_client_hash(ctx, v6, is_sendmsg) % n;
	default:	/* Random; LeastRequest comes here only through kb_least_request */
		return bpf_get_prandom_u32() % n;
	}
}

/* Open connections to a slot's endpoint, as sockops counts them; 0 when unknown (UDP, not yet seen). */
static __always_inline __s64 kb_slot_active(const struct kb_slot *s, __u8 proto)
{
	struct kb_endpoint_key k = {};
	struct kb_ep_load *l;

	__builtin_memcpy(k.ip, s->ip, sizeof(k.ip));
	k.port = s->port;
	k.family = s->family;
	k.proto = proto;
	l = bpf_map_lookup_elem(&endpoint_load, &k);
	return l && l->active > 0 ? l->active : 0;
}

/*
 * LeastRequest: power of two choices. Two random slots of the run (so weights
 * still count: an endpoint with more slots is drawn more often), and the one
 * whose endpoint holds fewer open connections wins; a tie keeps the first.
 * Reads only: the counts are written by sockops, outside the connect path.
 */
static __always_inline __u32 kb_least_request(__u32 base, __u32 n, __u8 proto)
{
	__u32 a = bpf_get_prandom_u32() % n, b, ia, ib;
	struct kb_slot *sa, *sb;

	if (n < 2 || proto != KB_PROTO_TCP)
		return a;
	b = bpf_get_prandom_u32() % n;
	ia = base + a;
	ib = base + b;
	sa = bpf_map_lookup_elem(&slots, &ia);
	sb = bpf_map_lookup_elem(&slots, &ib);
	if (!sa || !sb)
		return a;
	return kb_slot_active(sb, proto) < kb_slot_active(sa, proto) ? b : a;
}

_Static_assert(sizeof(struct kb_endpoint_key) == 20 && sizeof(struct kb_frontend_key) == 20,
	       "kb_key_eq compares endpoint and frontend keys as five words");

/* Two 20-byte keys (kb_endpoint_key or kb_frontend_key) are the same: no memcmp in BPF. */
static __always_inline bool kb_key_eq(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

static __always_inline void kb_count_peer_drop(void)
{
	__u32 zero = 0;
	__u64 *drops = bpf_map_lookup_elem(&peer_drops, &zero);

	if (drops)
		(*drops)++;
}

static __always_inline void kb_peer_of(struct kb_peer *peer, const struct kb_frontend_key *key,
				       const struct kb_slot *slot)
{
	peer->frontend = *key;
	__builtin_memcpy(peer->endpoint.ip, slot->ip, sizeof(peer->endpoint.ip));
	peer->endpoint.port = slot->port;
	peer->endpoint.family = slot->family;
	peer->endpoint.proto = key->proto;
}

/*
 * Remember the frontend for getpeername(), keyed by the socket cookie (never
 * reused); sock_release deletes the record at close(). When it cannot be
 * written (map full), any older record of this socket goes too, so that a
 * reconnected UDP socket never shows its previous frontend, and peer_drops
 * counts the miss: the connect itself is not refused over a display detail.
 */
static __always_inline void kb_remember_peer(struct bpf_sock_addr *ctx, const struct kb_frontend_key *key,
					     const struct kb_slot *slot)
{
	struct kb_peer peer = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);

	kb_peer_of(&peer, key, slot);
	if (!bpf_map_update_elem(&sock_peers, &cookie, &peer, BPF_ANY))
		return;
	bpf_map_delete_elem(&sock_peers, &cookie);
	kb_count_peer_drop();
}

/*
 * An unconnected UDP send was steered: remember (this socket, endpoint) ->
 * frontend, so that recvmsg shows the frontend to this socket only. A socket
 * that keeps sending to endpoints it already has pays one lookup; a new
 * endpoint rewrites the socket's whole value in one update (readers see the
 * old or the new table). Two threads adding endpoints to one socket at the
 * same moment may lose one entry: that endpoint's reply then shows its own
 * address, the same as when more than KB_UDP_REPLY_WAYS endpoints are in use.
 */
static __always_inline void kb_remember_reply(struct bpf_sock_addr *ctx, const struct kb_frontend_key *key,
					      const struct kb_slot *slot)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct kb_udp_replies *cur, nv = {};
	struct kb_peer peer = {};
	__u32 i, w = KB_UDP_REPLY_WAYS;

	kb_peer_of(&peer, key, slot);
	cur = bpf_map_lookup_elem(&udp_replies, &cookie);
	if (cur) {
		nv = *cur;
		for (i = 0; i < KB_UDP_REPLY_WAYS; i++) {
			if (kb_key_eq(&nv.ent[i].endpoint, &peer.endpoint)) {
				if (kb_key_eq(&nv.ent[i].frontend, key))
					return;	/* known: nothing to write */
				w = i;	/* the same endpoint through another frontend: the newest wins */
				break;
			}
		}
		for (i = 0; w == KB_UDP_REPLY_WAYS && i < KB_UDP_REPLY_WAYS; i++)
			if (!nv.ent[i].endpoint.family)
				w = i;
		if (w == KB_UDP_REPLY_WAYS)
			w = nv.next++ % KB_UDP_REPLY_WAYS;
	} else {
		w = 0;
	}
	if (w >= KB_UDP_REPLY_WAYS)
		return;	/* for the verifier */
	nv.ent[w] = peer;
	if (bpf_map_update_elem(&udp_replies, &cookie, &nv, BPF_ANY))
		kb_count_peer_drop();
}

/*
 * Steer a connect or sendmsg whose destination is a frontend. Returns 1 to let
 * the call go on (rewritten or untouched) or 0 to refuse it, errno set.
 */
static __always_inline int kb_steer(struct bpf_sock_addr *ctx, bool v6, bool is_sendmsg)
{
	struct kb_frontend_key key = {};
	struct kb_frontend *fe;
	struct kb_conn_stats *fs, *es;
	struct kb_slot *slot;
	struct kb_addr a;
	union {
		__u64 raw;
		struct {
			__u32 base;
			__u32 n;
		};
	} run;
	__u32 fid, idx;
	__u8 lb;

	if (ctx->type == SOCK_STREAM)
		key.proto = KB_PROTO_TCP;
	else if (ctx->type == SOCK_DGRAM)
		key.proto = KB_PROTO_UDP;
	else
		return 1;
	kb_read_addr(ctx, v6, &a);
	__builtin_memcpy(key.ip, a.ip, sizeof(key.ip));
	key.family = a.family;
	key.port = (__be16)ctx->user_port;

	fe = bpf_map_lookup_elem(&frontends, &key);
	if (!fe)
		return 1;	/* invariant 3: not a frontend, untouched */

	/* One 64-bit load, so slot_base and nslots always belong together. */
	run.raw = *(volatile __u64 *)&fe->slot_base;
	fid = fe->frontend_id;
	lb = fe->lb;

	fs = bpf_map_lookup_elem(&frontend_stats, &fid);
	if (run.n == 0)
		goto refuse;
	idx = run.base + (lb == KB_LB_LEAST_REQUEST ? kb_least_request(run.base, run.n, key.proto)
						       : kb_pick(ctx, lb, fid, run.n, v6, is_sendmsg));
	slot = bpf_map_lookup_elem(&slots, &idx);
	if (!slot)
		goto refuse;
	/*
	 * A unix sidecar: the slot holds its bridge listener, 127.0.0.1:port in
	 * every bridged netns, and is rewritten to like an IP endpoint. The
	 * bridge is TCP only; port 0 means the daemon has no listener for it.
	 */
	if (slot->kind == KB_SLOT_BRIDGE) {
		if (!slot->port || key.proto != KB_PROTO_TCP)
			goto refuse;
	} else if (slot->kind != KB_SLOT_IP) {
		goto refuse;
	}
	if (kb_write_addr(ctx, v6, slot->family, slot->ip, slot->port)) {
		if (fs)
			fs->refused++;
		return kb_refuse(EAFNOSUPPORT);
	}

	if (fs)
		fs->connects++;
	es = bpf_map_lookup_elem(&endpoint_stats, &slot->endpoint_id);
	if (es)
		es->connects++;

	if (!is_sendmsg)
		kb_remember_peer(ctx, &key, slot);
	else
		kb_remember_reply(ctx, &key, slot);
	return 1;

refuse:
	if (fs)
		fs->refused++;
	return kb_refuse(ECONNREFUSED);
}

/* getpeername(): show the frontend while the socket's peer is still the endpoint it was steered to. */
static __always_inline int kb_peername(struct bpf_sock_addr *ctx, bool v6)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct kb_peer *p;
	struct kb_addr a;

	p = bpf_map_lookup_elem(&sock_peers, &cookie);
	if (!p)
		return 1;
	kb_read_addr(ctx, v6, &a);
	if (a.family != p->endpoint.family || a.ip[0] != p->endpoint.ip[0] || a.ip[1] != p->endpoint.ip[1] ||
	    a.ip[2] != p->endpoint.ip[2] || a.ip[3] != p->endpoint.ip[3] ||
	    (__be16)ctx->user_port != p->endpoint.port)
		return 1;
	kb_write_addr(ctx, v6, p->frontend.family, p->frontend.ip, p->frontend.port);
	return 1;
}

/*
 * The socket's cookie if it has one, else 0, without making one: only a
 * socket that was steered (connect4/6, sendmsg4/6 made its cookie) can have
 * a record. A CO-RE probe read of the kernel's context (its sk), as in
 * sock_release, keeps an unsteered socket's recvmsg to two loads.
 */
static __always_inline __u64 kb_cookie_if_any(struct bpf_sock_addr *ctx)
{
	return BPF_CORE_READ((struct bpf_sock_addr_kern *)ctx, sk, __sk_common.skc_cookie.counter);
}

/*
 * recvmsg() on UDP: a reply appears to come from the frontend only when this
 * socket sent to that frontend and was steered to the replying endpoint
 * (udp_replies for unconnected sends, sock_peers for a connected socket).
 * Anything else, such as a socket that named the endpoint itself, is untouched.
 */
static __always_inline int kb_recvmsg(struct bpf_sock_addr *ctx, bool v6)
{
	struct kb_endpoint_key src = {};
	struct kb_udp_replies *r;
	struct kb_peer *p;
	struct kb_addr a;
	__u64 cookie = kb_cookie_if_any(ctx);
	__u32 i;

	if (!cookie)
		return 1;	/* invariant 3: never steered, untouched */
	kb_read_addr(ctx, v6, &a);
	__builtin_memcpy(src.ip, a.ip, sizeof(src.ip));
	src.family = a.family;
	src.port = (__be16)ctx->user_port;
	src.proto = KB_PROTO_UDP;
	r = bpf_map_lookup_elem(&udp_replies, &cookie);
	if (r) {
		for (i = 0; i < KB_UDP_REPLY_WAYS; i++) {
			if (kb_key_eq(&r->ent[i].endpoint, &src)) {
				kb_write_addr(ctx, v6, r->ent[i].frontend.family, r->ent[i].frontend.ip,
					      r->ent[i].frontend.port);
				return 1;
			}
		}
	}
	p = bpf_map_lookup_elem(&sock_peers, &cookie);
	if (p && kb_key_eq(&p->endpoint, &src))
		kb_write_addr(ctx, v6, p->frontend.family, p->frontend.ip, p->frontend.port);
	return 1;
}

/* bind() to a frontend address is refused: the address belongs to the steering. */
static __always_inline int kb_bind(struct bpf_sock_addr *ctx, bool v6)
{
	struct kb_addr_key key = {};
	struct kb_addr a;

	kb_read_addr(ctx, v6, &a);
	__builtin_memcpy(key.ip, a.ip, sizeof(key.ip));
	key.family = a.family;
	if (bpf_map_lookup_elem(&frontend_addrs, &key))
		return kb_refuse(EADDRNOTAVAIL);
	return 1;
}

/*
 * close() of an inet socket in the cgroup: drop its sock_peers and
 * udp_replies records, so the maps hold live sockets only. The context of a
 * cgroup sock program is the kernel's struct sock, and a socket without a
 * cookie was never recorded
 * (recording makes the cookie): an unsteered socket leaves without making one
 * or taking a bucket lock (about 110 ns against 300 ns, bench/bpf_cost.c).
 * A CO-RE probe read rather than bpf_rdonly_cast (50 ns cheaper, 6.2+) keeps
 * older kernels. The kernel skips this hook for its own sockets (sk_kern_sock):
 * a record made for one (a cifs mount to a frontend) stays until unload.
 * Defined before connect4 so that libbpf attaches it first: no steered socket
 * can close before its cleanup exists.
 */
SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	__u64 cookie;

	if (!BPF_CORE_READ((struct sock *)ctx, __sk_common.skc_cookie.counter))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	if (ctx->type != SOCK_DGRAM) {
		bpf_map_delete_elem(&sock_peers, &cookie);
		return 1;
	}
	/*
	 * A UDP socket has a record in one map or the other (or in both, if it
	 * sent unconnected and then connected): a lookup, lock-free, is cheaper
	 * than a delete that misses, which still takes the bucket lock.
	 */
	if (bpf_map_lookup_elem(&sock_peers, &cookie))
		bpf_map_delete_elem(&sock_peers, &cookie);
	if (bpf_map_lookup_elem(&udp_replies, &cookie))
		bpf_map_delete_elem(&udp_replies, &cookie);
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return kb_steer(ctx, false, false);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return kb_steer(ctx, true, false);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return kb_steer(ctx, false, true);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return kb_steer(ctx, true, true);
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	return kb_recvmsg(ctx, false);
}

SEC("cgroup/recvmsg6")
int recvmsg6(struct bpf_sock_addr *ctx)
{
	return kb_recvmsg(ctx, true);
}

SEC("cgroup/getpeername4")
int getpeername4(struct bpf_sock_addr *ctx)
{
	return kb_peername(ctx, false);
}

SEC("cgroup/getpeername6")
int getpeername6(struct bpf_sock_addr *ctx)
{
	return kb_peername(ctx, true);
}

SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
	return kb_bind(ctx, false);
}

SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
	return kb_bind(ctx, true);
}
