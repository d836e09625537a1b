/* SPDX-License-Identifier: Apache-2.0 */
/* Stage 4: the kernel side. Loads or adopts the BPF programs and writes compiled frontends into maps. */
#ifndef KB_DATAPLANE_H
#define KB_DATAPLANE_H

#include <stdbool.h>

#include "compile.h"

struct kb_dataplane_opts {
	const char *bpffs;	/* pin directory, default KB_PIN_DIR_DEFAULT */
	const char *cgroup;	/* cgroup v2 directory to attach sock_addr/sockops programs to */
	__u32 max_frontends;	/* map sizes; 0: defaults (KB_MAX_*_DEFAULT); pinned maps keep theirs */
	__u32 max_slots;
	__u32 max_endpoints;	/* distinct endpoints (endpoint_stats) */
};

struct kb_dataplane;

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
	 * The same counters for many frontends in a few system calls (the per-CPU
	 * arrays are read in id ranges with bpf_map_lookup_batch): fe[i] for
	 * fes[i], and ep[off + e] for its endpoint e, off counting the endpoints of
	 * fes[0..i). *_ok: the counter exists, as the calls above answer 0.
	 * Optional (NULL: call the ones above). 0 or -errno.
	 */
	int (*stats_many)(struct kb_dataplane *dp, const struct kb_cfrontend *const *fes, size_t n,
			  struct kb_conn_stats *fe, bool *fe_ok, struct kb_conn_stats *ep, bool *ep_ok);
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

#endif /* KB_DATAPLANE_H */
