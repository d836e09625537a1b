// SPDX-License-Identifier: Apache-2.0
/* Stage 4: load or adopt the sock_addr programs, attach and pin them, and read their counters (apply: dataplane_apply.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon/kernel_features.h"
#include "dataplane_int.h"
#include "util.h"

/* ---- errors and libbpf output ---- */

static int kb_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's own chatter is demoted one level: warnings show under -v, debug under -vv. */
	if (level == LIBBPF_DEBUG ? kb_verbosity < 2 : kb_verbosity < 1)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* ---- stats and close ---- */

static int kb_sum_stats(struct kb_bpf_dataplane *d, struct bpf_map *map, __u32 id, struct kb_conn_stats *out)
{
	struct kb_conn_stats *v = calloc((size_t)d->ncpus, sizeof(*v));
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(bpf_map__fd(map), &id, v)) {
		err = kb_fail(-errno, "read", bpf_map__name(map));
		goto out;
	}
	for (int c = 0; c < d->ncpus; c++) {
		out->connects += v[c].connects;
		out->refused += v[c].refused;
		out->established += v[c].established;
		out->failed += v[c].failed;
	}
out:
	free(v);
	return err;
}

/* The mirror's frontend of fe, or NULL when it is not programmed. */
static const struct kb_fe_state *kb_fe_of(const struct kb_bpf_dataplane *d, const struct kb_cfrontend *fe)
{
	size_t hole;
	long i = d->feix.cap ? kb_index_find(&d->feix, &fe->key, sizeof(fe->key), d->fes, sizeof(*d->fes), &hole) : -1;

	return i >= 0 ? &d->fes[i] : NULL;
}

/* The counters id of fe's endpoint ep, or false when it holds none. */
static bool kb_ep_id_of(const struct kb_fe_state *fs, const struct kb_cfrontend *fe, size_t ep, __u32 *id)
{
	struct kb_fe_ep e;
	long k;

	if (!fs || ep >= fe->neps)
		return false;
	kb_fe_ep_of(&fe->eps[ep], &e);
	k = kb_fe_ep_find(fs, &e, ep);
	if (k < 0 || fs->eps[k].id == UINT32_MAX)
		return false;
	*id = fs->eps[k].id;
	return true;
}

static int kb_bpf_frontend_stats(struct kb_dataplane *dp, const struct kb_cfrontend *fe, struct kb_conn_stats *out)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	const struct kb_fe_state *fs = kb_fe_of(d, fe);

	memset(out, 0, sizeof(*out));
	if (!fs)
		return -ENOENT;
	return kb_sum_stats(d, d->skel->maps.frontend_stats, fs->val.frontend_id, out);
}

static int kb_bpf_endpoint_stats(struct kb_dataplane *dp, const struct kb_cfrontend *fe, size_t ep,
				 struct kb_conn_stats *out)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	__u32 id;

	memset(out, 0, sizeof(*out));
	if (!kb_ep_id_of(kb_fe_of(d, fe), fe, ep, &id))
		return -ENOENT;
	return kb_sum_stats(d, d->skel->maps.endpoint_stats, id, out);
}

static int kb_count_chunk(void *ctx, void *keys, void *vals, __u32 n)
{
	*(__u64 *)ctx += n;
	return 0;
}

/* Entries in a hash map, counted KB_BATCH a call; ~0 when the map cannot be read. */
static __u64 kb_count_entries(struct bpf_map *map)
{
	__u64 n = 0;

	if (kb_map_batches(bpf_map__fd(map), bpf_map__key_size(map), bpf_map__value_size(map), kb_count_chunk, &n))
		return ~0ull;
	return n;
}

static void kb_bpf_usage(struct kb_dataplane *dp, bool sockets, struct kb_dataplane_usage *u)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;

	memset(u, 0, sizeof(*u));
	u->max_frontends = d->fe_ids.max < d->max_frontends ? d->fe_ids.max : d->max_frontends;
	u->max_slots = d->max_slots;
	u->max_endpoints = d->max_endpoints;
	u->max_sockets = d->max_peers;
	u->max_udp_senders = d->max_udp_senders;
	u->frontends = d->nfes;
	for (size_t i = 0; i < d->nfes; i++)
		u->slots += d->fes[i].val.nslots;
	u->endpoints = d->neps;
	u->sockets = sockets ? kb_count_entries(d->skel->maps.sock_peers) : ~0ull;
	u->udp_senders = sockets ? kb_count_entries(d->skel->maps.udp_replies) : ~0ull;
}

/* Sum the per-CPU values of ids[i] (where ok[i]) into out[i]: one batch read of their id range when it is dense. */
static void kb_read_ids(struct kb_bpf_dataplane *d, struct bpf_map *map, const __u32 *ids, const bool *ok, size_t n,
			struct kb_conn_stats *out)
{
	struct kb_conn_stats *vals = NULL;
	__u32 lo = UINT32_MAX, hi = 0, count, in, next, *keys = NULL;
	size_t m = 0, span;
	int err = -1;

	memset(out, 0, n * sizeof(*out));
	for (size_t i = 0; i < n; i++)
		if (ok[i]) {
			lo = ids[i] < lo ? ids[i] : lo;
			hi = ids[i] > hi ? ids[i] : hi;
			m++;
		}
	if (!m)
		return;
	span = (size_t)(hi - lo) + 1;
	/* A sparse range would read more than it saves: then one lookup per id. */
	if (span <= 4 * m + 64) {
		vals = calloc(span * (size_t)d->ncpus, sizeof(*vals));
		keys = calloc(span, sizeof(*keys));
	}
	if (vals && keys) {
		count = (__u32)span;
		in = lo - 1;
		/* The batch starts after in_batch (an array's next key is key + 1): NULL starts at 0. */
		err = bpf_map_lookup_batch(bpf_map__fd(map), lo ? &in : NULL, &next, keys, vals, &count, NULL);
		if (err && errno == ENOENT)
			err = 0;	/* the end of the map: count holds what was read */
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = (size_t)(ids[i] - lo);

		if (!ok[i])
			continue;
		if (err || k >= count || keys[k] != ids[i]) {
			kb_sum_stats(d, map, ids[i], &out[i]);
			continue;
		}
		for (int c = 0; c < d->ncpus; c++) {
			const struct kb_conn_stats *v = &vals[k * (size_t)d->ncpus + (size_t)c];

			out[i].connects += v->connects;
			out[i].refused += v->refused;
			out[i].established += v->established;
			out[i].failed += v->failed;
		}
	}
	free(vals);
	free(keys);
}

static int kb_bpf_stats_many(struct kb_dataplane *dp, const struct kb_cfrontend *const *fes, size_t n,
			     struct kb_conn_stats *fe, bool *fe_ok, struct kb_conn_stats *ep, bool *ep_ok)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	size_t nep = 0, k = 0;
	__u32 *fe_ids, *ep_ids;

	for (size_t i = 0; i < n; i++)
		nep += fes[i]->neps;
	fe_ids = calloc(n + 1, sizeof(*fe_ids));
	ep_ids = calloc(nep + 1, sizeof(*ep_ids));
	if (!fe_ids || !ep_ids) {
		free(fe_ids);
		free(ep_ids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct kb_fe_state *fs = kb_fe_of(d, fes[i]);

		fe_ok[i] = fs != NULL;
		fe_ids[i] = fs ? fs->val.frontend_id : 0;
		for (size_t e = 0; e < fes[i]->neps; e++, k++) {
			ep_ids[k] = 0;
			ep_ok[k] = kb_ep_id_of(fs, fes[i], e, &ep_ids[k]);
		}
	}
	kb_read_ids(d, d->skel->maps.frontend_stats, fe_ids, fe_ok, n, fe);
	kb_read_ids(d, d->skel->maps.endpoint_stats, ep_ids, ep_ok, nep, ep);
	free(fe_ids);
	free(ep_ids);
	return 0;
}

static void kb_bpf_close(struct kb_dataplane *dp)
{
	struct kb_bpf_dataplane *d = (struct kb_bpf_dataplane *)dp;
	size_t i;

	if (!d)
		return;
	/* Closing a pinned link's fd leaves it attached: steering outlives us. */
	for (i = 0; i < d->nlinks; i++)
		bpf_link__destroy(d->links[i]);
	free(d->links);
	frontend_write_bpf__destroy(d->fw);
	sock_addr_bpf__destroy(d->skel);
	kb_mirror_free(d);
	free(d->free_runs.v);
	free(d->retired_runs.v);
	free(d->fe_ids.free);
	free(d->ep_ids.free);
	free(d);
}

static const struct kb_dataplane_ops kb_bpf_ops = {
	.apply = kb_bpf_apply,
	.frontend_stats = kb_bpf_frontend_stats,
	.endpoint_stats = kb_bpf_endpoint_stats,
	.fits = kb_bpf_fits,
	.update = kb_bpf_update,
	.fits_update = kb_bpf_fits_update,
	.verify = kb_bpf_verify,
	.usage = kb_bpf_usage,
	.stats_many = kb_bpf_stats_many,
	.close = kb_bpf_close,
};

/* ---- open, attach, pin ---- */

static const char *const kb_retired_maps[] = { "udp_reverse" };

static int kb_mkdir(const char *path, mode_t mode)
{
	return mkdir(path, mode) && errno != EEXIST ? -errno : 0;
}

static int kb_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (kb_mkdir(buf, 0755))
			return -errno;
		*p = '/';
	}
	return kb_mkdir(buf, mode);
}

/* Mount bpffs on the pin directory's parent unless one serves there already, as Cilium's agent does. */
static int kb_ensure_bpffs(const char *dir)
{
	char parent[PATH_MAX], links[PATH_MAX];
	struct statfs sfs;
	char *slash;
	int err;

	if (snprintf(parent, sizeof(parent), "%s", dir) >= (int)sizeof(parent))
		return kb_fail(-ENAMETOOLONG, "use", dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return kb_fail(-EINVAL, "use pin directory", dir);
	*slash = '\0';
	if (statfs(parent, &sfs) || sfs.f_type != BPF_FS_MAGIC) {
		err = kb_mkdir_p(parent, 0755);
		if (err)
			return kb_fail(err, "create", parent);
		if (mount("bpf", parent, "bpf", 0, NULL))
			return kb_fail(-errno, "mount bpffs on", parent);
		kb_log_debug("mounted bpffs on %s", parent);
	}
	err = kb_mkdir(dir, 0700);
	if (err)
		return kb_fail(err, "create", dir);
	snprintf(links, sizeof(links), "%s/links", dir);
	err = kb_mkdir(links, 0700);
	if (err)
		return kb_fail(err, "create", links);
	return 0;
}

/*
 * Reuse the pinned link for prog: point it at the freshly loaded program
 * (an atomic replacement, no gap), or move it if it serves another cgroup.
 * Returns 1 when adopted, 0 when there is nothing usable to adopt.
 */
static int kb_adopt_link(const char *path, struct bpf_program *prog, __u64 cgid, struct bpf_link **out)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);
	struct bpf_link *link;
	int err;

	if (access(path, F_OK))
		return errno == ENOENT ? 0 : -errno;
	link = bpf_link__open(path);
	if (!link)
		return -errno;
	if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 && info.type == BPF_LINK_TYPE_CGROUP &&
	    info.cgroup.cgroup_id != cgid) {
		kb_log_info("moving %s to the configured cgroup", bpf_program__name(prog));
		bpf_link_detach(bpf_link__fd(link));
		bpf_link__destroy(link);
		unlink(path);
		return 0;
	}
	err = bpf_link__update_program(link, prog);
	if (err) {
		bpf_link__destroy(link);
		return err;
	}
	*out = link;
	return 1;
}

int kb_dataplane_bpf_open(const struct kb_dataplane_opts *opts, struct kb_dataplane **out)
{
	const char *pin = opts->bpffs ? opts->bpffs : KB_PIN_DIR_DEFAULT;
	struct kb_bpf_dataplane *d;
	struct bpf_program *prog;
	struct bpf_map *map;
	char path[PATH_MAX];
	bool adopted = false;
	struct stat st;
	int err, cgfd = -1;

	libbpf_set_print(kb_libbpf_print);
	*out = NULL;
	if (!opts->cgroup)
		return kb_fail(-EINVAL, "open", "dataplane: no cgroup given");

	d = calloc(1, sizeof(*d));
	if (!d)
		return kb_fail(-ENOMEM, "allocate", "dataplane");
	d->dp.ops = &kb_bpf_ops;
	d->max_frontends = opts->max_frontends ? opts->max_frontends : KB_MAX_FRONTENDS_DEFAULT;
	d->max_slots = opts->max_slots ? opts->max_slots : KB_MAX_SLOTS_DEFAULT;
	d->max_endpoints = opts->max_endpoints ? opts->max_endpoints : KB_MAX_ENDPOINTS_DEFAULT;
	d->max_peers = opts->max_sockets ? opts->max_sockets : KB_MAX_PEERS_DEFAULT;
	d->ncpus = libbpf_num_possible_cpus();
	if (d->ncpus <= 0) {
		err = kb_fail(d->ncpus ? d->ncpus : -EINVAL, "count", "possible CPUs");
		goto out_free;
	}

	cgfd = open(opts->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0 || fstat(cgfd, &st)) {
		err = kb_fail(-errno, "open cgroup", opts->cgroup);
		goto out_free;
	}
	err = kb_ensure_bpffs(pin);
	if (err)
		goto out_close_cg;

	/*
	 * Maps an older kbackend pinned and this one no longer has: udp_reverse
	 * (endpoint -> frontend, replaced by the per-socket udp_replies). The
	 * pinned recvmsg programs keep their own reference until their links
	 * point at the new programs, so removing the pin first drops nothing.
	 */
	for (size_t i = 0; i < sizeof(kb_retired_maps) / sizeof(kb_retired_maps[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", pin, kb_retired_maps[i]);
		if (!unlink(path))
			kb_log_info("removed pinned %s: this version does not use it", kb_retired_maps[i]);
	}

	d->skel = sock_addr_bpf__open_opts(kb_core_open_opts());
	if (!d->skel) {
		err = kb_fail(-errno, "open", "sock_addr BPF object");
		goto out_close_cg;
	}

	err = kb_pinned_sizes(d, opts, pin);
	if (err)
		goto out_destroy;
	/* Sizes: a pinned map keeps its own (and its flags), so that it can be reused as it is. */
	bpf_object__for_each_map(map, d->skel->obj) {
		const char *name = bpf_map__name(map);
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info), max;
		int fd;

		if (bpf_map__is_internal(map))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin, name);
		fd = bpf_obj_get(path);
		if (fd >= 0 && map == d->skel->maps.sock_peers && !bpf_obj_get_info_by_fd(fd, &info, &len) &&
		    info.type != bpf_map__type(map)) {
			/*
			 * Pinned by an older kbackend with another kind of map (an
			 * LRU). libbpf cannot reuse it, and its records only serve
			 * getpeername of live sockets, so it is dropped rather than
			 * block the upgrade: those sockets then show their endpoint.
			 */
			kb_log_info("replacing pinned %s: its map type changed", name);
			close(fd);
			unlink(path);
			fd = -1;
		}
		memset(&info, 0, sizeof(info));
		if (fd >= 0 && kb_map_resized(d, map)) {
			/* Grown (kb_pinned_sizes): a fresh map, filled from the pin and pinned in its place after the swap. */
			close(fd);
			bpf_map__set_max_entries(map, kb_map_size(d, map, NULL));
			adopted = true;
			continue;
		}
		if (fd >= 0) {
			/* An older kbackend's maps were all preallocated: keep theirs. */
			if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
				bpf_map__set_max_entries(map, info.max_entries);
				bpf_map__set_map_flags(map, info.map_flags);
			}
			close(fd);
			adopted = true;
		} else if ((max = kb_map_size(d, map, NULL))) {
			bpf_map__set_max_entries(map, max);
		}
		/* libbpf reuses a compatible pinned map, or pins the new one at load. */
		err = bpf_map__set_pin_path(map, path);
		if (err) {
			err = kb_fail(err, "set pin path for", name);
			goto out_destroy;
		}
	}
	d->max_frontends = bpf_map__max_entries(d->skel->maps.frontends);
	d->max_slots = bpf_map__max_entries(d->skel->maps.slots);
	d->max_endpoints = bpf_map__max_entries(d->skel->maps.endpoint_stats);
	d->max_peers = bpf_map__max_entries(d->skel->maps.sock_peers);
	d->max_udp_senders = bpf_map__max_entries(d->skel->maps.udp_replies);
	d->fe_ids.max = bpf_map__max_entries(d->skel->maps.frontend_stats);
	if (d->fe_ids.max > d->max_frontends)
		d->fe_ids.max = d->max_frontends;
	d->ep_ids.max = d->max_endpoints;

	err = sock_addr_bpf__load(d->skel);
	if (err) {
		err = kb_fail(err, "load", "sock_addr BPF programs");
		goto out_destroy;
	}

	err = kb_resize_copy(d, pin);
	if (err)
		goto out_destroy;
	/* The in-place writer shares every map the programs were loaded with (maps.bpf.h declares them once). */
	d->fw = frontend_write_bpf__open();
	err = d->fw ? 0 : -errno;
	bpf_object__for_each_map(map, d->fw ? d->fw->obj : NULL) {
		struct bpf_map *live = bpf_object__find_map_by_name(d->skel->obj, bpf_map__name(map));

		if (err || bpf_map__is_internal(map))
			continue;
		err = live ? bpf_map__reuse_fd(map, bpf_map__fd(live)) : -ENOENT;
	}
	err = err ?: frontend_write_bpf__load(d->fw);
	if (err) {
		err = kb_fail(err, "load", "frontend_write BPF program");
		goto out_destroy;
	}
	if (adopted) {
		err = kb_adopt_state(d);
		if (err) {
			err = kb_fail(err, "adopt", "pinned maps");
			goto out_destroy;
		}
	} else {
		err = kb_runs_push(&d->free_runs, 0, d->max_slots, 0);
		if (err)
			goto out_destroy;
	}

	bpf_object__for_each_program(prog, d->skel->obj) {
		const char *name = bpf_program__name(prog);
		struct bpf_link *link = NULL, **links;

		links = realloc(d->links, (d->nlinks + 1) * sizeof(*links));
		if (!links) {
			err = kb_fail(-ENOMEM, "allocate", "links");
			goto out_destroy;
		}
		d->links = links;
		snprintf(path, sizeof(path), "%s/links/%s", pin, name);
		err = kb_adopt_link(path, prog, (__u64)st.st_ino, &link);
		if (err < 0) {
			err = kb_fail(err, "update pinned link", path);
			goto out_destroy;
		}
		if (!err) {
			link = bpf_program__attach_cgroup(prog, cgfd);
			if (!link) {
				err = kb_fail(-errno, "attach", name);
				goto out_destroy;
			}
			err = bpf_link__pin(link, path);
			if (err) {
				bpf_link__destroy(link);
				err = kb_fail(err, "pin", path);
				goto out_destroy;
			}
		}
		d->links[d->nlinks++] = link;
	}
	/* Every link now runs programs that use the grown maps: they take the old ones' pins. */
	err = kb_resize_repin(d, pin);
	if (err)
		goto out_destroy;
	close(cgfd);
	kb_log_debug("sock_addr programs %s on %s, pinned under %s", adopted ? "adopted" : "attached",
		     opts->cgroup, pin);
	*out = &d->dp;
	return 0;

out_destroy:
	kb_bpf_close(&d->dp);
	close(cgfd);
	return err;
out_close_cg:
	close(cgfd);
out_free:
	free(d);
	return err;
}

/* Remove every pin in dir; links are detached first, since a live process may still hold their fds. */
static int kb_unpin_dir(const char *dir, bool links)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *dp;
	int err = 0;

	dp = opendir(dir);
	if (!dp)
		return errno == ENOENT ? 0 : kb_fail(-errno, "open", dir);
	while ((e = readdir(dp))) {
		if (e->d_name[0] == '.' || (!links && !strcmp(e->d_name, "links")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (links) {
			int fd = bpf_obj_get(path);

			if (fd >= 0) {
				bpf_link_detach(fd);
				close(fd);
			}
		}
		if (unlink(path) && errno != ENOENT && !err)
			err = kb_fail(-errno, "unpin", path);
	}
	closedir(dp);
	if (rmdir(dir) && errno != ENOENT && !err)
		err = kb_fail(-errno, "remove", dir);
	return err;
}

int kb_dataplane_unload(const char *bpffs)
{
	char links[PATH_MAX];
	int err, err2;

	if (!bpffs)
		bpffs = KB_PIN_DIR_DEFAULT;
	snprintf(links, sizeof(links), "%s/links", bpffs);
	err = kb_unpin_dir(links, true);
	err2 = kb_unpin_dir(bpffs, false);
	return err ? err : err2;
}

/* Point every map of obj at the dataplane's pin of the same name (they all come from bpf/maps.bpf.h). */
int kb_dataplane_reuse_pins(struct bpf_object *obj, const char *bpffs)
{
	struct bpf_map *map;
	char path[PATH_MAX];

	bpf_object__for_each_map(map, obj) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		int fd, err;

		if (bpf_map__is_internal(map))
			continue;
		snprintf(path, sizeof(path), "%s/%s", bpffs, bpf_map__name(map));
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
				bpf_map__set_max_entries(map, info.max_entries);
				bpf_map__set_map_flags(map, info.map_flags);
			}
			close(fd);
		}
		err = bpf_map__set_pin_path(map, path);
		if (err)
			return err;
	}
	return 0;
}
