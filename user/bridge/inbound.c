// SPDX-License-Identifier: Apache-2.0
/* Inbound steering: the sk_lookup program on the node's netns, its bridge listeners and registered sidecar listeners. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon/kernel_features.h"
#include "dataplane/dataplane.h"
#include "bridge/inbound.h"
#include "util.h"
#include "sk_lookup.skel.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

struct kb_inbound {
	struct sk_lookup_bpf *skel;
	struct bpf_link *link;
};

/* Reuse the pinned link if it serves this netns (an atomic program swap); else start afresh. 1: adopted. */
static int adopt_link(const char *path, struct bpf_program *prog, struct bpf_link **out)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);
	struct bpf_link *link;
	struct stat st;

	if (access(path, F_OK))
		return errno == ENOENT ? 0 : -errno;
	link = bpf_link__open(path);
	if (!link)
		return -errno;
	if (stat("/proc/thread-self/ns/net", &st) ||
	    bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) || info.type != BPF_LINK_TYPE_NETNS ||
	    info.netns.netns_ino != (__u32)st.st_ino || bpf_link__update_program(link, prog)) {
		kb_log_info("replacing pinned %s: it serves another network namespace", path);
		bpf_link_detach(bpf_link__fd(link));
		bpf_link__destroy(link);
		unlink(path);
		return 0;
	}
	*out = link;
	return 1;
}

int kb_inbound_open(const char *bpffs, struct kb_inbound **out)
{
	struct kb_inbound *in = calloc(1, sizeof(*in));
	char path[PATH_MAX];
	int err, nsfd = -1;

	*out = NULL;
	if (!in)
		return kb_fail(-ENOMEM, "allocate", "inbound steering");
	in->skel = sk_lookup_bpf__open_opts(kb_core_open_opts());
	if (!in->skel) {
		err = kb_fail(-errno, "open", "sk_lookup BPF object");
		goto out_free;
	}
	/* Every map is the dataplane's pinned one: same names, same sizes. */
	err = kb_dataplane_reuse_pins(in->skel->obj, bpffs);
	if (err) {
		err = kb_fail(err, "reuse the pinned maps for", "sk_lookup BPF object");
		goto out_destroy;
	}
	err = sk_lookup_bpf__load(in->skel);
	if (err) {
		err = kb_fail(err, "load", "sk_lookup BPF program");
		goto out_destroy;
	}
	snprintf(path, sizeof(path), "%s/links/sk_lookup_steer", bpffs);
	err = adopt_link(path, in->skel->progs.sk_lookup_steer, &in->link);
	if (err < 0) {
		err = kb_fail(err, "update pinned link", path);
		goto out_destroy;
	}
	if (!err) {
		nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (nsfd < 0) {
			err = kb_fail(-errno, "open", "/proc/thread-self/ns/net");
			goto out_destroy;
		}
		in->link = bpf_program__attach_netns(in->skel->progs.sk_lookup_steer, nsfd);
		close(nsfd);
		if (!in->link) {
			err = kb_fail(-errno, "attach", "sk_lookup_steer to the node's netns");
			goto out_destroy;
		}
		err = bpf_link__pin(in->link, path);
		if (err) {
			err = kb_fail(err, "pin", path);
			goto out_destroy;
		}
	}
	kb_log_debug("sk_lookup_steer attached to the daemon's netns, pinned as %s", path);
	*out = in;
	return 0;

out_destroy:
	kb_inbound_close(in);
	return err;
out_free:
	free(in);
	return err;
}

void kb_inbound_close(struct kb_inbound *in)
{
	if (!in)
		return;
	/* Closing a pinned link's fd leaves it attached. */
	bpf_link__destroy(in->link);
	sk_lookup_bpf__destroy(in->skel);
	free(in);
}

void kb_inbound_add_bridge(void *ctx, __u16 port, int fd)
{
	struct kb_inbound *in = ctx;
	__u32 key = htons(port);
	__u64 val = (__u64)fd;

	if (!in)
		return;
	if (bpf_map_update_elem(bpf_map__fd(in->skel->maps.bridge_listeners), &key, &val, BPF_ANY))
		kb_err("failed to add bridge listener 127.0.0.1:%u to bridge_listeners: %s", port, strerror(errno));
}

int kb_inbound_parse_frontend(const char *s, struct kb_frontend_key *key)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h = s;
	size_t hl;
	char *end;
	long port;

	memset(key, 0, sizeof(*key));
	colon = strrchr(s, ':');
	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 2 || s[hl - 1] != ']')
			return -EINVAL;
		h = s + 1;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || port < 1 || port > 65535)
		return -EINVAL;
	if (inet_pton(AF_INET, host, &key->ip[0]) == 1)
		key->family = AF_INET;
	else if (s[0] == '[' && inet_pton(AF_INET6, host, key->ip) == 1)
		key->family = AF_INET6;
	else
		return -EINVAL;
	key->port = htons((__u16)port);
	key->proto = KB_PROTO_TCP;
	return 0;
}

static int sockopt_int(int fd, int level, int name, int *v)
{
	socklen_t len = sizeof(*v);

	return getsockopt(fd, level, name, v, &len) ? -errno : 0;
}

int kb_inbound_register(struct kb_inbound *in, const char *frontend, int fd, char *why, size_t len)
{
	struct kb_frontend_key key;
	int type = 0, listening = 0, domain = 0, v6only = 0, own;
	__u64 cookie = 0, ours = 0, val = (__u64)fd;
	socklen_t cl = sizeof(cookie);

	if (!in) {
		snprintf(why, len, "inbound steering is off in this daemon");
		return -EOPNOTSUPP;
	}
	if (kb_inbound_parse_frontend(frontend, &key)) {
		snprintf(why, len, "frontend \"%s\": expected ADDR:PORT or [ADDR]:PORT", frontend);
		return -EINVAL;
	}
	if (fd < 0) {
		snprintf(why, len, "no listening socket was passed (SCM_RIGHTS)");
		return -EBADF;
	}
	if (sockopt_int(fd, SOL_SOCKET, SO_TYPE, &type) || sockopt_int(fd, SOL_SOCKET, SO_DOMAIN, &domain) ||
	    sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening) || type != SOCK_STREAM ||
	    (domain != AF_INET && domain != AF_INET6) || !listening) {
		snprintf(why, len, "the passed fd is not a listening TCP socket");
		return -EINVAL;
	}
	if (domain == AF_INET && key.family == AF_INET6) {
		snprintf(why, len, "an IPv4 socket cannot take connections for the IPv6 frontend %s", frontend);
		return -EAFNOSUPPORT;
	}
	if (domain == AF_INET6 && key.family == AF_INET && !sockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only) &&
	    v6only) {
		snprintf(why, len, "an IPV6_V6ONLY socket cannot take connections for the IPv4 frontend %s", frontend);
		return -EAFNOSUPPORT;
	}
	/* sk_lookup only assigns sockets of its own netns: the daemon's. */
	own = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (own >= 0) {
		socklen_t ol = sizeof(ours);

		if (!getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &cl) &&
		    !getsockopt(own, SOL_SOCKET, SO_NETNS_COOKIE, &ours, &ol) && cookie != ours) {
			close(own);
			snprintf(why, len, "the listening socket lives in another network namespace than the daemon");
			return -EXDEV;
		}
		close(own);
	}
	if (bpf_map_update_elem(bpf_map__fd(in->skel->maps.registered_listeners), &key, &val, BPF_ANY)) {
		int err = -errno;

		snprintf(why, len, "registered_listeners update: %s", strerror(-err));
		return err;
	}
	kb_log_info("registered a listener for %s", frontend);
	return 0;
}

int kb_inbound_unregister(struct kb_inbound *in, const char *frontend, char *why, size_t len)
{
	struct kb_frontend_key key;

	if (!in) {
		snprintf(why, len, "inbound steering is off in this daemon");
		return -EOPNOTSUPP;
	}
	if (kb_inbound_parse_frontend(frontend, &key)) {
		snprintf(why, len, "frontend \"%s\": expected ADDR:PORT or [ADDR]:PORT", frontend);
		return -EINVAL;
	}
	if (bpf_map_delete_elem(bpf_map__fd(in->skel->maps.registered_listeners), &key)) {
		int err = -errno;

		snprintf(why, len, "%s", err == -ENOENT ? "nothing is registered for that frontend" : strerror(-err));
		return err;
	}
	kb_log_info("unregistered the listener for %s", frontend);
	return 0;
}
