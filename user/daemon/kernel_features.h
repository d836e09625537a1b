/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel features kbackend can use, probed at daemon start the way `bpftool feature probe` does. */
#ifndef KB_KERNEL_FEATURES_H
#define KB_KERNEL_FEATURES_H

#include <stdbool.h>

struct json_object;
struct bpf_object_open_opts;

/* In the order `kbackend status` lists them; docs/OPERATIONS.md has the same table. */
enum kb_feature {
	KB_FEAT_KERNEL_BTF,
	KB_FEAT_CGROUP_CONNECT,
	KB_FEAT_CGROUP_BIND,
	KB_FEAT_CGROUP_SENDMSG,
	KB_FEAT_CGROUP_RECVMSG,
	KB_FEAT_CGROUP_GETPEERNAME,
	KB_FEAT_CGROUP_SOCK_RELEASE,
	KB_FEAT_CGROUP_LINK,
	KB_FEAT_SOCKET_COOKIE,
	KB_FEAT_NETNS_COOKIE,
	KB_FEAT_SET_RETVAL,
	KB_FEAT_RINGBUF,
	KB_FEAT_SOCKHASH,
	KB_FEAT_SYSCALL_PROG,
	KB_FEAT_SOCKOPS,
	KB_FEAT_SK_LOOKUP,
	KB_FEAT_ITER_UDP,
	KB_FEAT_SOCK_DESTROY,
	KB_FEAT_N,
};

struct kb_feature_info {
	const char *name;	/* the key in `status -o json` */
	const char *since;	/* the mainline release that added it */
	bool required;		/* the daemon refuses to start without it */
	const char *use;	/* what kbackend uses it for */
	const char *without;	/* what is lost without it */
};

struct kb_features {
	bool present[KB_FEAT_N];
	char kernel[65];	/* uname -r */
};

const struct kb_feature_info *kb_feature_info(enum kb_feature f);

/*
 * Probe each feature on the running kernel: tiny programs loaded with the
 * program type, attach type or helper in question, map creations, and
 * vmlinux BTF lookups for kfuncs, iterators and link kinds. 0, or -errno
 * when no program loads at all (not permitted: no probe can answer).
 */
int kb_features_probe(struct kb_features *f);

/*
 * A path to the kernel's BTF copied into memory by kb_features_probe, for
 * bpf_object_open_opts.btf_custom_path of the objects whose only use of it
 * is CO-RE relocation; NULL before the probe or when the kernel has none.
 */
const char *kb_kernel_btf_path(void);
/* Open options with that path (the main thread's; not for objects that call kfuncs or attach to kernel functions). */
const struct bpf_object_open_opts *kb_core_open_opts(void);

/*
 * One log line per absent feature with what that costs; the number of
 * absent required features (then the daemon refuses to start).
 */
int kb_features_report(const struct kb_features *f);

/* {"kernel": release, "features": {name: {"present", "required", "since"}}} members added to obj. */
void kb_features_json(const struct kb_features *f, struct json_object *obj);

#endif /* KB_KERNEL_FEATURES_H */
