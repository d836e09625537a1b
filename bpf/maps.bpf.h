/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Every BPF map of kbackend, declared once; user space pins them under the bpffs dir by these names. */
#ifndef KB_MAPS_BPF_H
#define KB_MAPS_BPF_H

/*
 * Sizes here are defaults (include/kbackend.h); the loader sets them from its
 * options before load. All maps carry BTF so `bpftool map dump` shows fields.
 */

/* kb_frontend_key -> kb_frontend; writer: dataplane apply; reader: connect4/6, sendmsg4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
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

/* kb_endpoint_key (UDP endpoint) -> kb_frontend_key; writer: dataplane apply; reader: recvmsg4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KB_MAX_ENDPOINTS_DEFAULT);
	__type(key, struct kb_endpoint_key);
	__type(value, struct kb_frontend_key);
} udp_reverse SEC(".maps");

/*
 * socket cookie (__u64) -> kb_peer; writer: connect4/6; reader: getpeername4/6.
 * Per-CPU LRU lists (BPF_F_NO_COMMON_LRU) so that no global lock sits in connect.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, KB_MAX_PEERS_DEFAULT);
	__type(key, __u64);
	__type(value, struct kb_peer);
} sock_peers SEC(".maps");

/* kb_addr_key -> number of frontends on that address (__u32); writer: dataplane apply; reader: bind4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KB_MAX_FRONTENDS_DEFAULT);
	__type(key, struct kb_addr_key);
	__type(value, __u32);
} frontend_addrs SEC(".maps");

#endif /* KB_MAPS_BPF_H */
