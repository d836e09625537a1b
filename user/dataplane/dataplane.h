/* SPDX-License-Identifier: Apache-2.0 */
/* Stage 4: the kernel side. Loads or adopts the BPF programs and writes compiled frontends into maps. */
#ifndef KB_DATAPLANE_H
#define KB_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>

#include "compile/compile.h"

struct kb_dataplane_opts {
	const char *bpffs;	/* pin directory, default KB_PIN_DIR_DEFAULT */
	const char *cgroup;	/* cgroup v2 directory to attach sock_addr/sockops programs to */
	/*
	 * Map sizes (the daemon's --max-* flags); 0: the default (KB_MAX_*_DEFAULT),
	 * or the size of the pinned maps when there are any. A larger size than the
	 * pinned map's grows it while it steers; a smaller one, or another
	 * max_sockets, is refused (user/dataplane/dataplane_resize.c).
	 */
	__u32 max_frontends;	/* frontends, frontend_addrs, frontend_stats, rr_cursors */
	__u32 max_slots;	/* slots */
	__u32 max_endpoints;	/* distinct (frontend, endpoint) pairs: endpoint_stats; endpoint health maps */
	__u32 max_sockets;	/* live steered sockets: sock_peers (udp_replies: a quarter) */
};

/* The sizes a dataplane runs with and what the programmed state uses of them, for status and metrics. */
struct kb_dataplane_usage {
	__u32 max_frontends, max_slots, max_endpoints, max_sockets, max_udp_senders;
	__u64 frontends, slots, endpoints, sockets, udp_senders;	/* sockets, udp_senders: ~0 when not counted */
};

struct kb_dataplane;

/* Called by verify once per difference, with one human-readable line (no newline). */
typedef void (*kb_verify_diff_fn)(void *ctx, const char *text);

/*
 * The one interface the daemon writes through. The real implementation
 * (kb_dataplane_bpf) talks to the kernel; unit tests inject a fake.
 */
struct kb_dataplane_ops {
	/* Program every frontend of c, atomically per frontend, and remove frontends not in c. */
	int (*apply)(struct kb_dataplane *dp, const struct kb_compiled *c);
	/*
	 * Counters summed over CPUs for a programmed frontend, and for its endpoint
	 * fe->eps[ep]. The dataplane maps them to its own stable ids. 0 or -ENOENT.
	 */
	int (*frontend_stats)(struct kb_dataplane *dp, const struct kb_cfrontend *fe, struct kb_conn_stats *out);
	int (*endpoint_stats)(struct kb_dataplane *dp, const struct kb_cfrontend *fe, size_t ep,
			      struct kb_conn_stats *out);
	/*
	 * Whether c fits the map sizes, checked before anything is written (NULL:
	 * always fits). 0, or -ENOSPC with why naming the flag and the numbers.
	 */
	int (*fits)(struct kb_dataplane *dp, const struct kb_compiled *c, char *why, size_t len);
	/*
	 * Reprogram frontends that are programmed already: fes[i] replaces the
	 * frontend of its key, the others stay as they are (a scoped change,
	 * whose Gateways keep their frontend keys). -ENOENT, with nothing
	 * written, when one of the keys is not programmed (or is given twice):
	 * apply the whole table instead. Another error is handled as apply's.
	 * Optional (NULL: apply the whole table). fits_update is fits for it.
	 */
	int (*update)(struct kb_dataplane *dp, const struct kb_cfrontend *fes, size_t n);
	int (*fits_update)(struct kb_dataplane *dp, const struct kb_cfrontend *fes, size_t n, char *why, size_t len);
	/* The sizes and their use (NULL: unknown). sockets: whether to count the live-socket maps too (a walk). */
	void (*usage)(struct kb_dataplane *dp, bool sockets, struct kb_dataplane_usage *out);
	/*
	 * The same counters for many frontends in a few system calls (the per-CPU
	 * arrays are read in id ranges with bpf_map_lookup_batch): fe[i] for
	 * fes[i], and ep[off + e] for its endpoint e, off counting the endpoints of
	 * fes[0..i). *_ok: the counter exists, as the calls above answer 0.
	 * Optional (NULL: call the ones above). 0 or -errno.
	 */
	int (*stats_many)(struct kb_dataplane *dp, const struct kb_cfrontend *const *fes, size_t n,
			  struct kb_conn_stats *fe, bool *fe_ok, struct kb_conn_stats *ep, bool *ep_ok);
	/*
	 * Read the frontends, slots and frontend_addrs maps back from the kernel
	 * (not the apply's shadow) and compare them with what c programs, as the
	 * data path sees them: every frontend of c present with its lb, flags and
	 * the endpoint address of each slot in order; slot runs inside the map and
	 * not shared; endpoint ids consistent within a frontend; no frontend or
	 * frontend address in the maps that c does not have. diff(ctx, line) is
	 * called once per difference, e.g. "198.18.0.1:10000/tcp: slot 3 is
	 * 198.51.100.2:8080, the compile says 198.51.100.3:8080". Returns the
	 * number of differences (0: the kernel holds exactly c), or -errno when
	 * the maps cannot be read. Optional (NULL: not supported).
	 */
	int (*verify)(struct kb_dataplane *dp, const struct kb_compiled *c, kb_verify_diff_fn diff, void *ctx);
	/* Release user-space handles; pins and links stay, so steering survives the process. */
	void (*close)(struct kb_dataplane *dp);
};

struct kb_dataplane {
	const struct kb_dataplane_ops *ops;
};

/*
 * Load the BPF objects, or adopt the pinned ones that already serve, attach
 * them to opts->cgroup, and pin maps, programs and links under opts->bpffs
 * (mounting bpffs there if needed). Returns 0 or a negative errno, with one
 * error line already logged.
 */
int kb_dataplane_bpf_open(const struct kb_dataplane_opts *opts, struct kb_dataplane **out);

/*
 * For the loaders of the other BPF objects (health, inbound): point every
 * map of obj at the dataplane's pin of the same name and size, so that all
 * objects share one instance of each map declared in bpf/maps.bpf.h. Call
 * between open and load. 0 or a negative errno.
 */
struct bpf_object;
int kb_dataplane_reuse_pins(struct bpf_object *obj, const char *bpffs);

/* Detach everything pinned under bpffs and remove the pins. Safe when nothing is pinned. */
int kb_dataplane_unload(const char *bpffs);
/* The keys of the frontends map pinned under bpffs, in batches (malloc'ed, *n long): 0 or -errno. */
int kb_dataplane_pinned_keys(const char *bpffs, struct kb_frontend_key **keys, size_t *n);

#endif /* KB_DATAPLANE_H */
