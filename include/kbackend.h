/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structs shared by the BPF programs and user space: the contents of every map. */
#ifndef KBACKEND_H
#define KBACKEND_H

/*
 * Include after vmlinux.h (BPF side) or after <linux/types.h> (user side).
 * Fixed-width types only, explicit padding, no implicit holes, so that the
 * BTF the BPF object carries describes exactly what user space writes.
 *
 * Byte order: addresses are stored the way the sock_addr context holds them,
 * as network-order 32-bit words (ip[0] is the IPv4 address; ip[1..3] are zero
 * for IPv4). Ports are network order (__be16) everywhere in maps.
 */

#define KB_PIN_DIR_DEFAULT "/sys/fs/bpf/kbackend"

/*
 * Map sizes: the daemon's defaults (--max-frontends, --max-slots,
 * --max-endpoints, --max-tracked-sockets), sized for a typical node so that an
 * empty daemon holds little kernel memory; the flags raise them up to the
 * KB_MAX_*_LIMIT ceilings. The loader sets them before load.
 */
#define KB_MAX_FRONTENDS_DEFAULT (1u << 13)	/* frontends, frontend_addrs, frontend_stats, rr_cursors */
#define KB_MAX_SLOTS_DEFAULT (1u << 17)		/* slots */
#define KB_MAX_ENDPOINTS_DEFAULT (1u << 14)	/* endpoint_stats and the per-endpoint health maps */
#define KB_MAX_PEERS_DEFAULT (1u << 16)		/* sock_peers: live connected steered sockets */
#define KB_UDP_SENDERS_SHIFT 2			/* udp_replies holds a quarter of sock_peers: unconnected UDP senders */
#define KB_MAX_FRONTENDS_LIMIT (1u << 20)
#define KB_MAX_SLOTS_LIMIT (1u << 24)
#define KB_MAX_ENDPOINTS_LIMIT (1u << 20)
#define KB_MAX_PEERS_LIMIT (1u << 22)

/* Endpoints one unconnected UDP socket is answered from through frontends at a time (udp_replies). */
#define KB_UDP_REPLY_WAYS 4

/* Load-balancer types, as BackendTrafficPolicy loadBalancer.type names them. */
enum kb_lb {
	KB_LB_RANDOM = 0,
	KB_LB_ROUND_ROBIN = 1,
	KB_LB_LEAST_REQUEST = 2,
	KB_LB_CONSISTENT_HASH = 3,
};

/* What a slot steers to. */
enum kb_slot_kind {
	KB_SLOT_IP = 0,		/* rewrite the connect to ip:port */
	KB_SLOT_BRIDGE = 1,	/* unix sidecar: rewrite to the bridge listener */
};

enum kb_proto {
	KB_PROTO_TCP = 6,
	KB_PROTO_UDP = 17,
};

/* frontends: key. One per Gateway address x listener port x transport. */
struct kb_frontend_key {
	__u32 ip[4];		/* network order words; IPv4 in ip[0] */
	__be16 port;		/* network order */
	__u8 family;		/* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;		/* enum kb_proto */
};

/*
 * frontends: value. A frontend points at a run of slots in the slots array.
 * User space publishes a new selection by writing a fresh run of slots and then
 * storing slot_base and nslots in place as one 64-bit word (frontend_write.bpf.c),
 * so a connect sees the old run or the new run, never a mix (invariant 1). Old
 * runs are reused only after a grace period. 8-aligned: the run is one word.
 */
struct kb_frontend {
	__u32 slot_base;	/* first index in the slots array */
	__u32 nslots;		/* 0: no usable endpoint, refuse with ECONNREFUSED */
	__u32 frontend_id;	/* index into per-frontend per-CPU maps */
	__u8 lb;		/* enum kb_lb */
	__u8 flags;
	__u16 pad;
} __attribute__((aligned(8)));

/* frontend_write's input (BPF_PROG_RUN ctx): the value to store in place for a present key. */
struct kb_frontend_write {
	struct kb_frontend_key key;
	__u32 pad;
	struct kb_frontend val;
};

/* slots: value. The weighted selection table, already spilled over priorities. */
struct kb_slot {
	__u32 ip[4];		/* endpoint address, network order words */
	__be16 port;		/* endpoint port, network order */
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 kind;		/* enum kb_slot_kind */
	__u32 endpoint_id;	/* index into per-endpoint per-CPU maps */
};

/* endpoint_stats / frontend_stats: per-CPU value. */
struct kb_conn_stats {
	__u64 connects;		/* connects steered */
	__u64 refused;		/* connects refused: no usable endpoint */
	__u64 established;	/* sockops: handshake completed */
	__u64 failed;		/* sockops: refused or timed out */
};

/*
 * An endpoint address: the key of the per-endpoint health maps, and the
 * source a reply datagram shows. Same 20-byte layout as kb_frontend_key
 * (the programs compare both as five words). IPv4-mapped IPv6 addresses are
 * stored as AF_INET.
 */
struct kb_endpoint_key {
	__u32 ip[4];		/* network order words; IPv4 in ip[0] */
	__be16 port;		/* network order */
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 proto;		/* enum kb_proto */
};

/*
 * endpoint_outcomes: per-CPU value, keyed by kb_endpoint_key (proto TCP).
 * sockops counts how each connect to a known endpoint ended; health.c sums
 * the CPUs for `get endpoints` and passive health.
 */
struct kb_ep_outcomes {
	__u64 established;	/* SYN_SENT -> ESTABLISHED */
	__u64 refused;		/* SYN_SENT -> CLOSE, sk_err ECONNREFUSED (a RST answered the SYN) */
	__u64 timed_out;	/* SYN_SENT -> CLOSE, sk_err ETIMEDOUT (the SYN retries ran out) */
	__u64 failed;		/* SYN_SENT -> CLOSE with another error (EHOSTUNREACH, ...) */
};

/*
 * endpoint_load: value, keyed by kb_endpoint_key (proto TCP). Shared, not
 * per-CPU: connect4/6 reads `active` for LeastRequest, so it must be one
 * number. Only sockops writes it (atomic adds on establish and close, never in
 * the connect path); user space inserts a zeroed entry and never rewrites it.
 */
struct kb_ep_load {
	__s64 active;			/* established connections open now; may dip below 0 for
					   connections that predate the entry: readers clamp at 0 */
	__u32 consecutive_failures;	/* failed connects since the last established one */
	__u32 pad;
};

/*
 * health_events: ring buffer record. sockops writes one each time an
 * endpoint's run of consecutive failed connects reaches its eject_thresholds
 * value, and restarts the run, so each record means "N in a row".
 */
struct kb_health_event {
	struct kb_endpoint_key endpoint;
	__u32 failures;		/* the threshold that was reached */
	__s32 last_err;		/* sk_err of the last failure: 111 refused, 110 timed out */
};

/*
 * sock_peers: value, keyed by socket cookie (__u64). Written by connect4/6
 * when they steer, read by getpeername4/6 and recvmsg4/6, which restore the
 * frontend only while the socket's peer is still that endpoint (a UDP socket
 * may reconnect). Also the entry type of kb_udp_replies.
 */
struct kb_peer {
	struct kb_frontend_key frontend;
	struct kb_endpoint_key endpoint;
};

/*
 * udp_replies: value, keyed by socket cookie (__u64). The endpoints an
 * unconnected UDP socket has sent to through a frontend, each with that
 * frontend: sendmsg4/6 write it, recvmsg4/6 show the frontend as the source
 * of a reply only when the socket has an entry for the replying endpoint.
 * An entry whose endpoint.family is 0 is empty. With all ways in use a new
 * endpoint replaces entry `next % KB_UDP_REPLY_WAYS`, and `next` moves on.
 */
struct kb_udp_replies {
	struct kb_peer ent[KB_UDP_REPLY_WAYS];
	__u32 next;
	__u32 pad;
};

/* frontend_addrs: key. A frontend address without port; bind() to it is refused. */
struct kb_addr_key {
	__u32 ip[4];		/* network order words; IPv4 in ip[0] */
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 pad[3];
};

#endif /* KBACKEND_H */
