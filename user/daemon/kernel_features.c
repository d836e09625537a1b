// SPDX-License-Identifier: Apache-2.0
/* The daemon's kernel feature probe: what the running kernel offers kbackend, what an absent feature costs, and whether the daemon can start. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "daemon/kernel_features.h"
#include "util.h"

/*
 * "since" is the mainline release; a distribution kernel may carry a feature
 * earlier (a backport), which is why the daemon probes instead of reading the
 * version. Required: a program of the sock_addr object needs it (the object
 * loads whole or not at all) or the daemon's pins do. The floor is
 * bpf_set_retval's 5.18; the optional features older than that can only be
 * absent on a kernel built without them.
 */
static const struct kb_feature_info infos[KB_FEAT_N] = {
	[KB_FEAT_KERNEL_BTF] = { "kernel_btf", "5.4", true,
				 "CO-RE: the programs read kernel structures at this kernel's offsets",
				 "no program loads" },
	[KB_FEAT_CGROUP_CONNECT] = { "cgroup_connect", "4.17", true,
				     "connect4/6 rewrite a connect to a frontend into one to an endpoint",
				     "nothing is steered" },
	[KB_FEAT_CGROUP_BIND] = { "cgroup_bind", "4.17", true, "bind4/6 refuse a bind to a frontend address",
				  "a process could bind a frontend address" },
	[KB_FEAT_CGROUP_SENDMSG] = { "cgroup_sendmsg", "4.18", true, "sendmsg4/6 steer unconnected UDP sends",
				     "unconnected UDP is not steered" },
	[KB_FEAT_CGROUP_RECVMSG] = { "cgroup_recvmsg", "5.2", true,
				     "recvmsg4/6 make a UDP reply come from the frontend",
				     "UDP replies show the endpoint's address" },
	[KB_FEAT_CGROUP_GETPEERNAME] = { "cgroup_getpeername", "5.8", true,
					 "getpeername4/6 show the frontend as a steered socket's peer",
					 "getpeername shows the endpoint" },
	[KB_FEAT_CGROUP_SOCK_RELEASE] = { "cgroup_sock_release", "5.9", true,
					  "sock_release drops a socket's records when it closes",
					  "sock_peers and udp_replies fill with dead sockets" },
	[KB_FEAT_CGROUP_LINK] = { "cgroup_link", "5.7", true,
				  "pinned cgroup links: steering outlives the daemon, an upgrade swaps programs atomically",
				  "steering stops with the daemon" },
	[KB_FEAT_SOCKET_COOKIE] = { "bpf_get_socket_cookie", "5.10", true,
				    "per-socket records keyed by cookie, in sock_addr and sock_release programs",
				    "no per-socket records" },
	[KB_FEAT_NETNS_COOKIE] = { "bpf_get_netns_cookie", "5.7", true,
				   "the client hash of a socket without a source address (hashing policies)",
				   "the sock_addr programs do not load" },
	[KB_FEAT_SET_RETVAL] = { "bpf_set_retval", "5.18", true,
				 "a refused connect fails with ECONNREFUSED, a refused bind with EADDRNOTAVAIL",
				 "the sock_addr programs do not load" },
	[KB_FEAT_RINGBUF] = { "ringbuf", "5.8", true, "health_events: sockops reports a run of failed connects",
			      "the maps (created by every object) do not load" },
	[KB_FEAT_SOCKHASH] = { "sockhash", "4.18", true, "the listener maps sk_lookup hands connections to",
			       "the maps (created by every object) do not load" },
	[KB_FEAT_SYSCALL_PROG] = { "syscall_program", "5.14", true,
				   "frontend_write rewrites a live frontend in place (a hash update would replace its "
				   "element under a connect)",
				   "the dataplane does not start" },
	[KB_FEAT_SOCKOPS] = { "sockops", "5.9", false,
			      "sockops with bpf_skc_to_tcp_sock: passive health and LeastRequest's connection counts",
			      "no passive ejection; LeastRequest sees no connection counts" },
	[KB_FEAT_SK_LOOKUP] = { "sk_lookup", "5.9", false,
				"sk_lookup with bpf_sk_assign on a netns link: inbound steering and `kbackend register`",
				"connections arriving for a frontend from other hosts are not steered" },
	[KB_FEAT_ITER_UDP] = { "iter_udp", "5.9", false, "the UDP socket iterator that finds steered sockets",
			       "UDP sockets to an ejected endpoint keep their peer until the application reconnects" },
	[KB_FEAT_SOCK_DESTROY] = { "bpf_sock_destroy", "6.5", false,
				   "the UDP iterator disconnects sockets steered to an ejected or removed endpoint",
				   "UDP sockets to an ejected endpoint keep their peer until the application reconnects" },
};

const struct kb_feature_info *kb_feature_info(enum kb_feature f)
{
	return &infos[f];
}

/* r0 = 1; exit: the smallest program every attach type accepts. 1 when it loads, else -errno. */
static int load_probe_flags(enum bpf_prog_type type, enum bpf_attach_type attach, __u32 flags)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = attach, .prog_flags = flags);
	int fd = bpf_prog_load(type, NULL, "GPL", insns, sizeof(insns) / sizeof(insns[0]), &opts);

	if (fd < 0)
		return -errno;
	close(fd);
	return 1;
}

static int load_probe(enum bpf_prog_type type, enum bpf_attach_type attach)
{
	return load_probe_flags(type, attach, 0);
}

static bool helper(enum bpf_prog_type type, enum bpf_func_id id)
{
	return libbpf_probe_bpf_helper(type, id, NULL) == 1;
}

/* The enum of vmlinux BTF named enum_name has a value named value. */
static bool btf_enum_has(const struct btf *btf, const char *enum_name, const char *value)
{
	__s32 id = btf ? btf__find_by_name_kind(btf, enum_name, BTF_KIND_ENUM) : -ENOENT;
	const struct btf_type *t = id > 0 ? btf__type_by_id(btf, id) : NULL;
	const struct btf_enum *e = t ? btf_enum(t) : NULL;

	for (int i = 0; t && i < btf_vlen(t); i++)
		if (!strcmp(btf__name_by_offset(btf, e[i].name_off), value))
			return true;
	return false;
}

static bool btf_func(const struct btf *btf, const char *name)
{
	return btf && btf__find_by_name_kind(btf, name, BTF_KIND_FUNC) > 0;
}

/*
 * The kernel's BTF, copied once into a memfd. Every object that libbpf loads
 * parses the kernel's BTF for its CO-RE relocations, and reading
 * /sys/kernel/btf/vmlinux costs a syscall per 4 KiB page (5 MB here): from
 * memory each parse takes half as long, which a restart feels four times.
 */
static char btf_copy[64];

const char *kb_kernel_btf_path(void)
{
	return btf_copy[0] ? btf_copy : NULL;
}

const struct bpf_object_open_opts *kb_core_open_opts(void)
{
	static struct bpf_object_open_opts opts;

	opts.sz = sizeof(opts);
	opts.btf_custom_path = kb_kernel_btf_path();
	return &opts;
}

static void copy_kernel_btf(void)
{
	static char buf[1 << 16];
	int in, out;
	ssize_t n = 0;

	if (btf_copy[0])
		return;
	in = open("/sys/kernel/btf/vmlinux", O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return;
	out = memfd_create("kbackend-vmlinux-btf", MFD_CLOEXEC);
	while (out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			n = -1;
	close(in);
	if (out >= 0 && n == 0)
		snprintf(btf_copy, sizeof(btf_copy), "/proc/self/fd/%d", out);
	else if (out >= 0)
		close(out);
}

/* The kernel's BTF, from the copy when there is one; NULL when the kernel has none. */
static struct btf *kernel_btf(void)
{
	struct btf *btf;

	copy_kernel_btf();
	btf = btf_copy[0] ? btf__parse_raw(btf_copy) : NULL;
	return btf ? btf : btf__load_vmlinux_btf();
}

int kb_features_probe(struct kb_features *f)
{
	static const struct {
		enum kb_feature feat;
		enum bpf_prog_type type;
		enum bpf_attach_type attach;
	} hooks[] = {
		{ KB_FEAT_CGROUP_CONNECT, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT },
		{ KB_FEAT_CGROUP_BIND, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_BIND },
		{ KB_FEAT_CGROUP_SENDMSG, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG },
		{ KB_FEAT_CGROUP_RECVMSG, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_RECVMSG },
		{ KB_FEAT_CGROUP_GETPEERNAME, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME },
		{ KB_FEAT_CGROUP_SOCK_RELEASE, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_RELEASE },
	};
	struct utsname u;
	struct btf *btf;
	int r;

	memset(f, 0, sizeof(*f));
	if (!uname(&u))
		snprintf(f->kernel, sizeof(f->kernel), "%s", u.release);
	/* connect4 is the oldest hook used: refused here means no probe can answer. */
	r = load_probe(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT);
	if (r == -EPERM || r == -EACCES)
		return r;
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++)
		f->present[hooks[i].feat] = load_probe(hooks[i].type, hooks[i].attach) == 1;

	btf = kernel_btf();
	f->present[KB_FEAT_KERNEL_BTF] = btf != NULL;
	f->present[KB_FEAT_CGROUP_LINK] = btf_enum_has(btf, "bpf_link_type", "BPF_LINK_TYPE_CGROUP");
	/* sock_release is a cgroup sock program; sock_addr programs have had the cookie since 4.20. */
	f->present[KB_FEAT_SOCKET_COOKIE] = helper(BPF_PROG_TYPE_CGROUP_SOCK, BPF_FUNC_get_socket_cookie) &&
					    helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_socket_cookie);
	f->present[KB_FEAT_NETNS_COOKIE] = helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie);
	f->present[KB_FEAT_SET_RETVAL] = helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_set_retval);
	f->present[KB_FEAT_RINGBUF] = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) == 1;
	f->present[KB_FEAT_SOCKHASH] = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SOCKHASH, NULL) == 1;
	/* Syscall programs are sleepable (libbpf loads SEC("syscall") so). */
	f->present[KB_FEAT_SYSCALL_PROG] = load_probe_flags(BPF_PROG_TYPE_SYSCALL, 0, BPF_F_SLEEPABLE) == 1;
	f->present[KB_FEAT_SOCKOPS] = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, NULL) == 1 &&
				      helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_skc_to_tcp_sock);
	f->present[KB_FEAT_SK_LOOKUP] = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, NULL) == 1 &&
					helper(BPF_PROG_TYPE_SK_LOOKUP, BPF_FUNC_sk_assign) &&
					btf_enum_has(btf, "bpf_link_type", "BPF_LINK_TYPE_NETNS");
	/* libbpf resolves SEC("iter/udp") to the kernel function bpf_iter_udp, as done here. */
	f->present[KB_FEAT_ITER_UDP] = btf_func(btf, "bpf_iter_udp") &&
				       btf_enum_has(btf, "bpf_link_type", "BPF_LINK_TYPE_ITER");
	/* A kfunc is known by its BTF; the iterator is what may call it. */
	f->present[KB_FEAT_SOCK_DESTROY] = f->present[KB_FEAT_ITER_UDP] && btf_func(btf, "bpf_sock_destroy");
	btf__free(btf);
	return 0;
}

int kb_features_report(const struct kb_features *f)
{
	int missing = 0;

	for (int i = 0; i < KB_FEAT_N; i++) {
		if (f->present[i])
			continue;
		if (infos[i].required) {
			kb_err("kernel %s lacks %s (Linux %s), which kbackend requires: %s", f->kernel, infos[i].name,
			       infos[i].since, infos[i].without);
			missing++;
		} else {
			kb_log_info("%s absent (needs %s): %s", infos[i].name, infos[i].since, infos[i].without);
		}
	}
	return missing;
}

void kb_features_json(const struct kb_features *f, struct json_object *obj)
{
	struct json_object *all = json_object_new_object();

	for (int i = 0; i < KB_FEAT_N; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "present", json_object_new_boolean(f->present[i]));
		json_object_object_add(o, "required", json_object_new_boolean(infos[i].required));
		json_object_object_add(o, "since", json_object_new_string(infos[i].since));
		json_object_object_add(all, infos[i].name, o);
	}
	json_object_object_add(obj, "kernel", json_object_new_string(f->kernel));
	json_object_object_add(obj, "features", all);
}
