// SPDX-License-Identifier: Apache-2.0
/* The map sizes (--max-* flags): which map each sizes, the pinned sizes at start, and growing pinned maps without a gap in steering. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "dataplane_int.h"
#include "util.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524	/* the kernel's, which libc does not name */
#endif

static const char *const kb_limit_flag[] = { "--max-frontends", "--max-slots", "--max-endpoints",
					     "--max-tracked-sockets" };

/* The limit (KB_LIMIT_*) that sizes map, or -1 for the maps of a fixed size. */
static int kb_map_limit(const struct kb_bpf_dataplane *d, const struct bpf_map *map)
{
	const struct sock_addr_bpf *s = d->skel;

	if (map == s->maps.frontends || map == s->maps.frontend_addrs || map == s->maps.frontend_stats ||
	    map == s->maps.rr_cursors)
		return KB_LIMIT_FRONTENDS;
	if (map == s->maps.slots)
		return KB_LIMIT_SLOTS;
	if (map == s->maps.endpoint_stats || map == s->maps.endpoint_outcomes || map == s->maps.endpoint_load ||
	    map == s->maps.eject_thresholds)
		return KB_LIMIT_ENDPOINTS;
	if (map == s->maps.sock_peers || map == s->maps.udp_replies)
		return KB_LIMIT_SOCKETS;
	return -1;
}

__u32 kb_map_size(const struct kb_bpf_dataplane *d, const struct bpf_map *map, const char **flag)
{
	const __u32 max[] = { d->max_frontends, d->max_slots, d->max_endpoints, d->max_peers };
	int l = kb_map_limit(d, map);

	if (flag)
		*flag = l >= 0 ? kb_limit_flag[l] : NULL;
	if (l < 0)
		return 0;
	if (map == d->skel->maps.udp_replies)
		return max[l] >> KB_UDP_SENDERS_SHIFT ?: 1;
	return max[l];
}

bool kb_map_resized(const struct kb_bpf_dataplane *d, const struct bpf_map *map)
{
	int l = kb_map_limit(d, map);

	return l >= 0 && (d->resize & (1u << l));
}

/*
 * Pinned maps serve connects while the daemon restarts, and the programs
 * hold them by reference, so they are never resized in place. A restart
 * without a --max-* flag keeps the pinned size. One that asks for more gets
 * new maps, filled from the pinned ones before any program uses them, and the
 * pinned links then move to programs that use the new maps, one atomic link
 * update per hook, so connects are steered throughout. Shrinking is refused:
 * slot runs and ids keep their places, which a smaller map may not have. So
 * is any change of --max-tracked-sockets (see below).
 */
int kb_pinned_sizes(struct kb_bpf_dataplane *d, const struct kb_dataplane_opts *opts, const char *pin)
{
	const struct sock_addr_bpf *s = d->skel;
	struct bpf_map *const primary[] = { s->maps.frontends, s->maps.slots, s->maps.endpoint_stats,
					    s->maps.sock_peers };
	const __u32 asked[] = { opts->max_frontends, opts->max_slots, opts->max_endpoints, opts->max_sockets };
	__u32 *const limit[] = { &d->max_frontends, &d->max_slots, &d->max_endpoints, &d->max_peers };
	char path[PATH_MAX];

	for (int l = 0; l < 4; l++) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		const char *flag = kb_limit_flag[l];
		int fd, err;

		snprintf(path, sizeof(path), "%s/%s", pin, bpf_map__name(primary[l]));
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		err = bpf_obj_get_info_by_fd(fd, &info, &len) ? -errno : 0;
		close(fd);
		if (err)
			return kb_fail(err, "read", path);
		if (info.type != bpf_map__type(primary[l]))
			continue;	/* replaced at open (an older sock_peers) */
		if (l == KB_LIMIT_SOCKETS && asked[l] && asked[l] != info.max_entries) {
			/*
			 * connect4/6 insert into sock_peers, and getpeername and
			 * recvmsg read it: while the links move one hook at a time,
			 * a copy would miss what the old programs insert, and a new
			 * socket could show its endpoint. So this one is not copied.
			 */
			kb_err("failed to start with %s %u: the maps pinned under %s were made with %s %u, and the "
			       "steering programs insert into them on every connect, so they cannot be copied while "
			       "they steer; start with %s %u (or without the flag), or run `kbackend unload --bpffs %s` "
			       "first (connects to frontends are then not steered until this daemon has restored its "
			       "state)", flag, asked[l], pin, flag, info.max_entries, flag, info.max_entries, pin);
			return -EEXIST;
		}
		if (asked[l] && asked[l] < info.max_entries) {
			kb_err("failed to start with %s %u: the maps pinned under %s were made with %s %u, and a "
			       "restart can grow pinned maps but not shrink them (entries keep their places); start "
			       "with %s %u or more (or without the flag), or run `kbackend unload --bpffs %s` first "
			       "(connects to frontends are then not steered until this daemon has restored its state)",
			       flag, asked[l], pin, flag, info.max_entries, flag, info.max_entries, pin);
			return -EEXIST;
		}
		if (asked[l] > info.max_entries) {
			kb_log_info("growing the maps of %s from %u to %u: new maps, filled from the pinned ones", flag,
				    info.max_entries, asked[l]);
			d->resize |= 1u << l;
			*limit[l] = asked[l];
			continue;
		}
		if (!asked[l] && *limit[l] != info.max_entries)
			kb_log_info("using %s %u, the size of the pinned %s map", flag, info.max_entries,
				    bpf_map__name(primary[l]));
		*limit[l] = info.max_entries;
	}
	return 0;
}

/* Bytes of one value as the syscalls see it: per-CPU maps carry one 8-byte aligned copy per CPU. */
static size_t kb_value_bytes(const struct kb_bpf_dataplane *d, const struct bpf_map *map)
{
	size_t v = bpf_map__value_size(map);
	enum bpf_map_type t = bpf_map__type(map);

	if (t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH)
		return ((v + 7) & ~(size_t)7) * (size_t)d->ncpus;
	return v;
}

/* One entry a call: the fallback where the kernel has no batch calls for the map type. */
static int kb_copy_each(int fd, int to, size_t ksz, size_t vsz)
{
	char *key = malloc(ksz), *prev = malloc(ksz), *val = malloc(vsz);
	bool first = true;
	int err = 0;

	if (!key || !prev || !val) {
		err = -ENOMEM;
		goto out;
	}
	while (!bpf_map_get_next_key(fd, first ? NULL : prev, key)) {
		memcpy(prev, key, ksz);
		first = false;
		if (bpf_map_lookup_elem(fd, key, val))
			continue;
		if (bpf_map_update_elem(to, key, val, BPF_ANY)) {
			err = -errno;
			break;
		}
	}
out:
	free(key);
	free(prev);
	free(val);
	return err;
}

int kb_map_batches(int fd, size_t ksz, size_t vsz, int (*chunk)(void *ctx, void *keys, void *vals, __u32 n),
		   void *ctx)
{
	char *keys = malloc(KB_BATCH * ksz), *vals = malloc(KB_BATCH * vsz);
	__u64 in = 0, out = 0;	/* batch positions: a __u32 for arrays and hashes */
	bool first = true;
	int err = 0;

	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		__u32 count = KB_BATCH;
		int end = bpf_map_lookup_batch(fd, first ? NULL : &in, &out, keys, vals, &count, NULL) ? -errno : 0;

		if (end && end != -ENOENT) {
			err = end;
			break;
		}
		if (count && (err = chunk(ctx, keys, vals, count)))
			break;
		if (end)
			break;
		in = out;
		first = false;
	}
out:
	free(keys);
	free(vals);
	return err;
}

static int kb_update_chunk(void *ctx, void *keys, void *vals, __u32 n)
{
	return bpf_map_update_batch(*(int *)ctx, keys, vals, &n, NULL) ? -errno : 0;
}

/*
 * Every entry of the map at fd into map. Only the daemon writes these maps'
 * entries, except counters (stats, rr_cursors, endpoint_load and outcomes),
 * which lose what the old programs count between this copy and the link
 * update: a few connects' worth, once per resize.
 */
static int kb_copy_entries(const struct kb_bpf_dataplane *d, int fd, struct bpf_map *map)
{
	size_t ksz = bpf_map__key_size(map), vsz = kb_value_bytes(d, map);
	int to = bpf_map__fd(map);
	int err = kb_map_batches(fd, ksz, vsz, kb_update_chunk, &to);

	/* No batch calls for this map type (before 5.6): one entry a call. */
	return err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUPP ? kb_copy_each(fd, to, ksz, vsz) : err;
}

int kb_resize_copy(struct kb_bpf_dataplane *d, const char *pin)
{
	char path[PATH_MAX];
	struct bpf_map *map;

	if (!d->resize)
		return 0;
	bpf_object__for_each_map(map, d->skel->obj) {
		int fd, err;

		if (bpf_map__is_internal(map) || !kb_map_resized(d, map))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin, bpf_map__name(map));
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;	/* nothing pinned: a new map of this version */
		err = kb_copy_entries(d, fd, map);
		close(fd);
		if (err)
			return kb_fail(err, "copy into the grown map", bpf_map__name(map));
	}
	return 0;
}

int kb_resize_repin(struct kb_bpf_dataplane *d, const char *pin)
{
	char path[PATH_MAX];
	struct bpf_map *map;

	if (!d->resize)
		return 0;
	bpf_object__for_each_map(map, d->skel->obj) {
		int err;

		if (bpf_map__is_internal(map) || !kb_map_resized(d, map))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin, bpf_map__name(map));
		/* No program uses the old map any more; the daemon's other objects open the pins after this. */
		if (unlink(path) && errno != ENOENT)
			return kb_fail(-errno, "unpin the old", path);
		err = bpf_map__pin(map, path);
		if (err)
			return kb_fail(err, "pin the grown map at", path);
	}
	kb_log_info("grown maps pinned under %s", pin);
	return 0;
}
