/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Every BPF map of kbackend, declared once; user space pins them under the bpffs dir by these names. */
#ifndef KB_MAPS_BPF_H
#define KB_MAPS_BPF_H

/*
 * Sizes here are defaults (include/kbackend.h); the loader sets them from the
 * daemon's --max-* flags before load. All maps carry BTF so `bpftool map dump`
 * shows fields. Hash maps that only user space inserts into are not
 * preallocated (BPF_F_NO_PREALLOC): an empty one costs its buckets, 16 bytes
 * an entry, and programs only look up or update values in place. The two that
 * connect and sendmsg insert into (sock_peers, udp_replies) stay preallocated:
 * an insert on the connect path then never allocates (see sock_peers).
 */

/* kb_frontend_key -> kb_frontend; writer: dataplane apply; reader: connect4/6, sendmsg4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KB_MAX_FRONTENDS_DEFAULT);
	__type(key, struct kb_frontend_key);
	__type(value, struct kb_frontend);
} frontends SEC(".maps");

/* slot index (__u32) -> kb_slot, runs owned by frontends; writer: dataplane apply; reader: connect4/6, sendmsg4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KB_MAX_SLOTS_DEFAULT);
	__type(key, __u32);
	__type(value, struct kb_slot);
} slots SEC(".maps");

/* frontend_id -> per-CPU kb_conn_stats; writer: connect4/6, sendmsg4/6 (zeroed by apply on id reuse); reader: stats. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KB_MAX_FRONTENDS_DEFAULT);
	__type(key, __u32);
	__type(value, struct kb_conn_stats);
} frontend_stats SEC(".maps");

/* endpoint_id -> per-CPU kb_conn_stats; writer: connect4/6, sendmsg4/6 (zeroed by apply on id reuse); reader: stats. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KB_MAX_ENDPOINTS_DEFAULT);
	__type(key, __u32);
	__type(value, struct kb_conn_stats);
} endpoint_stats SEC(".maps");

/* frontend_id -> per-CPU RoundRobin cursor (__u32, < nslots); writer and reader: connect4/6, sendmsg4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KB_MAX_FRONTENDS_DEFAULT);
	__type(key, __u32);
	__type(value, __u32);
} rr_cursors SEC(".maps");

/*
 * socket cookie (__u64) -> kb_peer; writer: connect4/6 (insert), sock_release (delete);
 * reader: getpeername4/6, recvmsg4/6 (a connected UDP socket's replies), udp_destroy.
 * A preallocated hash: an insert takes a per-CPU freelist and one bucket lock, no global lock, and
 * costs half of what an LRU insert with its evictions does (bench/bpf_cost.c). Entries live exactly
 * as long as their socket, since sock_release deletes them at close(); when the map is full the
 * connect still goes through and peer_drops counts the socket (getpeername then shows the endpoint).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KB_MAX_PEERS_DEFAULT);
	__type(key, __u64);
	__type(value, struct kb_peer);
} sock_peers SEC(".maps");

/*
 * socket cookie (__u64) -> kb_udp_replies, for unconnected UDP sockets only; writer: sendmsg4/6 (insert or
 * replace, only when the socket meets a new endpoint), sock_release (delete, UDP sockets); reader: recvmsg4/6.
 * Keyed by socket, so a reply is shown from a frontend only to a socket that sent to that frontend: a socket
 * that names the endpoint itself sees the endpoint (invariant 3), and two frontends sharing an endpoint
 * each get their own replies. Preallocated like sock_peers, and freed the same way (sock_release at close).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KB_MAX_PEERS_DEFAULT >> KB_UDP_SENDERS_SHIFT);
	__type(key, __u64);
	__type(value, struct kb_udp_replies);
} udp_replies SEC(".maps");

/*
 * key 0 -> per-CPU count (__u64) of steered connects and sends whose sock_peers or udp_replies record did
 * not fit (the map was full); writer: connect4/6, sendmsg4/6; reader: bpftool.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} peer_drops SEC(".maps");

/* kb_addr_key -> number of frontends on that address (__u32); writer: dataplane apply; reader: bind4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KB_MAX_FRONTENDS_DEFAULT);
	__type(key, struct kb_addr_key);
	__type(value, __u32);
} frontend_addrs SEC(".maps");

/* kb_endpoint_key (TCP) -> per-CPU kb_ep_outcomes; writer: sockops_health (entries made by health.c); reader: health.c. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KB_MAX_ENDPOINTS_DEFAULT);
	__type(key, struct kb_endpoint_key);
	__type(value, struct kb_ep_outcomes);
} endpoint_outcomes SEC(".maps");

/* kb_endpoint_key (TCP) -> kb_ep_load; writer: sockops_health (entries made by health.c); reader: connect4/6 (LeastRequest), health.c. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KB_MAX_ENDPOINTS_DEFAULT);
	__type(key, struct kb_endpoint_key);
	__type(value, struct kb_ep_load);
} endpoint_load SEC(".maps");

/* kb_endpoint_key (TCP) -> __u32 consecutive failed connects that make a health event; writer: health.c (passive policy); reader: sockops_health. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KB_MAX_ENDPOINTS_DEFAULT);
	__type(key, struct kb_endpoint_key);
	__type(value, __u32);
} eject_thresholds SEC(".maps");

/* ring of kb_health_event; writer: sockops_health; reader: health.c (wakes the daemon's loop). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} health_events SEC(".maps");

/* kb_endpoint_key (UDP) -> __u8; writer: health.c, filled just before it runs the iterator; reader: udp_destroy. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct kb_endpoint_key);
	__type(value, __u8);
} udp_destroy_targets SEC(".maps");

/*
 * Bridge listener port (__u32: network-order port, widened) -> listening TCP socket (value: socket cookie);
 * writer: bridge.c via inbound.c (one per unix path, in the daemon's netns); reader: sk_lookup_steer.
 * An entry goes away by itself when the daemon closes the listener.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} bridge_listeners SEC(".maps");

/*
 * kb_frontend_key -> listening socket a sidecar handed over with `kbackend register` (value: socket cookie);
 * writer: inbound.c (the register op); reader: sk_lookup_steer. It goes away when the sidecar closes it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, struct kb_frontend_key);
	__type(value, __u64);
} registered_listeners SEC(".maps");

#endif /* KB_MAPS_BPF_H */
