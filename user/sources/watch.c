// SPDX-License-Identifier: Apache-2.0
/* --watch-dir: the directory is the desired state; inotify, a debounce, and one declarative replace per change. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon_int.h"
#include "manifest/manifest.h"
#include "render/render.h"
#include "util.h"
#include "sources/watch.h"

#define WATCH_MASK                                                                                      \
	(IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB | \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define WATCH_MAX_FILE (16u << 20)	/* a manifest larger than this is refused, not read */

struct kb_watch {
	const char *dir;
	int ifd, wd;			/* wd < 0: DIR is not watched (gone); retried at rewatch_at */
	long rewatch_at;
	long due;			/* re-read DIR at this time (monotonic ms); 0: nothing pending */
	long first_event;		/* first event since the last re-read: caps the debounce */
	bool ok;			/* the last read was applied (or was unchanged) */
	bool applied;			/* hash is that of a state applied from DIR */
	uint64_t hash;			/* of the file names and contents last applied */
	size_t nfiles;
	unsigned long reloads, errors;
	time_t last_reload;
	char last_error[512];
	struct json_object *refused;	/* the last applied read's objects set aside (refusedObjects), or NULL */
};

/* ---- reading the directory -------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

/* The whole file, through symlinks. 0 or -errno. */
static int read_whole(const char *path, char **out, size_t *len)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

	if (!buf || fd < 0) {
		err = !buf ? -ENOMEM : -errno;
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb = cap >= WATCH_MAX_FILE ? NULL : realloc(buf, cap * 2);

			if (!nb) {
				err = cap >= WATCH_MAX_FILE ? -EFBIG : -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	buf = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

/* A refused read or apply: the last good state stays; status and the log say why. */
static void watch_failed(struct daemon *d, struct kb_watch *w, bool counted, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void watch_failed(struct daemon *d, struct kb_watch *w, bool counted, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->last_error, sizeof(w->last_error), fmt, ap);
	va_end(ap);
	w->ok = false;
	w->errors++;
	if (!counted)
		d->apply_errors++;	/* kb_daemon_change counts the refusals it makes itself */
	snprintf(d->last_error, sizeof(d->last_error), "watch-dir %s: %s", w->dir, w->last_error);
	kb_err("watch-dir %s: %s; keeping the last good state", w->dir, w->last_error);
}

/* Each object set aside, with every error that names it: the log says what to fix. */
static void log_refused(const struct kb_watch *w)
{
	for (size_t i = 0; w->refused && i < json_object_array_length(w->refused); i++) {
		struct json_object *o = json_object_array_get_idx(w->refused, i), *st, *diags;
		size_t nd = 0;

		if (json_object_object_get_ex(o, "status", &st) && json_object_object_get_ex(st, "diagnostics", &diags))
			nd = json_object_array_length(diags);
		kb_err("watch-dir %s: %s refused, not programmed", w->dir, kb_json_str(o, "object"));
		for (size_t k = 0; k < nd; k++)
			kb_err("  %s", kb_json_str(json_object_array_get_idx(diags, k), "text"));
	}
}

/* Read DIR's manifests (dot-entries skipped) and make them the whole state, in one change. */
static void reload(struct daemon *d, struct kb_watch *w)
{
	struct json_object *files = json_object_new_array(), *reply = NULL, *v, *diags;
	uint64_t h = 14695981039346656037ULL;
	struct kb_arena a = { 0 };
	size_t n = 0, nfiles = 0;
	char **paths = NULL;
	int err;

	err = kb_manifest_list_files(w->dir, &a, &paths, &n);
	if (err < 0) {
		watch_failed(d, w, false, "cannot read the directory: %s", strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(paths[i], '/');
		struct json_object *f;
		char *buf;
		size_t len;

		base = base ? base + 1 : paths[i];
		if (base[0] == '.')
			continue;	/* ConfigMap internals (..data, ..2026_...) and hidden files */
		err = read_whole(paths[i], &buf, &len);
		if (err == -ENOENT)
			continue;	/* gone since the listing, or a key's symlink left dangling by a ConfigMap swap */
		if (err) {
			watch_failed(d, w, false, "cannot read %s: %s", paths[i], strerror(-err));
			goto out;
		}
		f = json_object_new_object();
		json_object_object_add(f, "name", json_object_new_string(paths[i]));
		json_object_object_add(f, "content", json_object_new_string_len(buf, (int)len));
		json_object_array_add(files, f);
		h = fnv(h, paths[i], strlen(paths[i]) + 1);
		h = fnv(h, &len, sizeof(len));
		h = fnv(h, buf, len);
		free(buf);
		nfiles++;
	}
	if (w->ok && w->applied && h == w->hash) {
		kb_log_debug("watch-dir %s: unchanged", w->dir);
		goto out;
	}
	/* Per-object acceptance, as Envoy Gateway judges a cluster: a refused object is set aside, the others programmed. */
	reply = kb_daemon_change(d, files, KB_CHANGE_REPLACE, false, true);
	if (json_object_object_get_ex(reply, "ok", &v) && json_object_get_boolean(v)) {
		json_object_put(w->refused);
		w->refused = json_object_object_get_ex(reply, "refusedObjects", &v) ? json_object_get(v) : NULL;
		log_refused(w);
		w->ok = w->applied = true;
		w->hash = h;
		w->nfiles = nfiles;
		w->reloads++;
		w->last_reload = time(NULL);
		w->last_error[0] = '\0';
		kb_log_info("watch-dir %s: applied %zu file(s): %zu object(s), %zu frontend(s), %zu refused", w->dir,
			    nfiles, d->state.nobjects, d->compiled.nfes,
			    w->refused ? json_object_array_length(w->refused) : 0);
		goto out;
	}
	/* Refused: name the first error in status; every error goes to the log. */
	{
		const char *first = NULL;

		if (json_object_object_get_ex(reply, "diagnostics", &diags))
			for (size_t i = 0; i < json_object_array_length(diags); i++) {
				struct json_object *dg = json_object_array_get_idx(diags, i), *sev, *text;

				if (!json_object_object_get_ex(dg, "severity", &sev) ||
				    strcmp(json_object_get_string(sev), "error") != 0 ||
				    !json_object_object_get_ex(dg, "text", &text))
					continue;
				kb_err("%s", json_object_get_string(text));
				if (!first)
					first = json_object_get_string(text);
			}
		watch_failed(d, w, true, "%s%s%s",
			     json_object_object_get_ex(reply, "error", &v) ? json_object_get_string(v) : "refused",
			     first ? ": " : "", first ? first : "");
	}
out:
	json_object_put(reply);
	json_object_put(files);
	kb_arena_free(&a);
}

/* ---- inotify and the debounce ----------------------------------------------------- */

static int add_watch(struct kb_watch *w)
{
	w->wd = inotify_add_watch(w->ifd, w->dir, WATCH_MASK);
	return w->wd < 0 ? -errno : 0;
}

static void lose_watch(struct kb_watch *w, const char *why)
{
	if (w->wd >= 0)
		inotify_rm_watch(w->ifd, w->wd);
	w->wd = -1;
	w->rewatch_at = kb_now_ms() + KB_WATCH_REWATCH_MS;
	kb_log_info("watch-dir %s: %s; watching for it to come back", w->dir, why);
}

static void schedule(struct kb_watch *w)
{
	long now = kb_now_ms();

	if (!w->first_event)
		w->first_event = now;
	w->due = now + KB_WATCH_DEBOUNCE_MS;
	if (w->due > w->first_event + KB_WATCH_MAX_DELAY_MS)
		w->due = w->first_event + KB_WATCH_MAX_DELAY_MS;
}

static void on_inotify(void *ctx, int fd, uint32_t events)
{
	struct daemon *d = ctx;
	struct kb_watch *w = d->watch;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			if (ev->wd != w->wd && !(ev->mask & IN_Q_OVERFLOW))
				continue;	/* a watch already given up */
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
				lose_watch(w, ev->mask & IN_MOVE_SELF ? "moved away" : "removed");
			/* Any entry, dot-entries included: the ConfigMap swap is a rename onto ..data. */
			changed = true;
		}
	}
	if (changed)
		schedule(w);
}

static int watch_due(void *ctx)
{
	struct daemon *d = ctx;
	struct kb_watch *w = d->watch;
	long now = kb_now_ms(), t = -1;

	if (!w)
		return -1;
	if (w->wd < 0)
		t = w->rewatch_at;
	if (w->due && (t < 0 || w->due < t))
		t = w->due;
	if (t < 0)
		return -1;
	if (d->restore_deadline && t < now + 50)
		t = now + 50;	/* the restore waits for DNS first; poll gently until it is done */
	return t <= now ? 0 : (int)(t - now);
}

static void watch_tick(void *ctx)
{
	struct daemon *d = ctx;
	struct kb_watch *w = d->watch;
	long now = kb_now_ms();

	if (!w)
		return;
	if (w->wd < 0 && now >= w->rewatch_at) {
		if (add_watch(w) == 0) {
			kb_log_info("watch-dir %s: watching again", w->dir);
			schedule(w);
		} else {
			w->rewatch_at = now + KB_WATCH_REWATCH_MS;
		}
	}
	if (w->due && now >= w->due && !d->restore_deadline) {
		w->due = 0;
		w->first_event = 0;
		reload(d, w);
	}
}

int kb_watch_start(struct daemon *d)
{
	struct kb_watch *w;
	struct stat st;
	int err;

	if (!d->watch_dir)
		return 0;
	if (stat(d->watch_dir, &st)) {
		err = -errno;
		kb_err("failed to watch %s: %s", d->watch_dir, strerror(-err));
		return err;
	}
	if (!S_ISDIR(st.st_mode)) {
		kb_err("failed to watch %s: not a directory", d->watch_dir);
		return -ENOTDIR;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->dir = d->watch_dir;
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0 || add_watch(w)) {
		err = -errno;
		kb_err("failed to watch %s: %s", d->watch_dir, strerror(-err));
		if (w->ifd >= 0)
			close(w->ifd);
		free(w);
		return err;
	}
	err = kb_loop_add(d->loop, w->ifd, EPOLLIN, on_inotify, d);
	if (!err)
		err = kb_loop_add_timer(d->loop, watch_due, watch_tick, d);
	if (err) {
		kb_err("failed to watch %s: %s", d->watch_dir, strerror(-err));
		kb_loop_del(d->loop, w->ifd);
		close(w->ifd);
		free(w);
		return err;
	}
	w->ok = true;
	w->due = kb_now_ms();	/* the first apply: on the first turn of the loop, once the restore is done */
	d->watch = w;
	kb_log_info("watching %s: its manifests are the desired state", w->dir);
	return 0;
}

void kb_watch_stop(struct daemon *d)
{
	struct kb_watch *w = d->watch;

	if (!w)
		return;
	kb_loop_del(d->loop, w->ifd);
	close(w->ifd);
	json_object_put(w->refused);
	free(w);
	d->watch = NULL;	/* the timer stays registered, and does nothing from now on */
}

struct json_object *kb_watch_status_json(const struct daemon *d)
{
	const struct kb_watch *w = d->watch;
	struct json_object *o;

	if (!w)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "dir", json_object_new_string(w->dir));
	json_object_object_add(o, "watching", json_object_new_boolean(w->wd >= 0));
	json_object_object_add(o, "files", json_object_new_int64((int64_t)w->nfiles));
	json_object_object_add(o, "reloads", json_object_new_int64((int64_t)w->reloads));
	json_object_object_add(o, "errors", json_object_new_int64((int64_t)w->errors));
	json_object_object_add(o, "lastReload", json_object_new_int64(w->last_reload));
	json_object_object_add(o, "ok", json_object_new_boolean(w->ok));
	if (w->last_error[0])
		json_object_object_add(o, "lastError", json_object_new_string(w->last_error));
	json_object_object_add(o, "refused", json_object_new_int64(w->refused ? (int64_t)json_object_array_length(w->refused) : 0));
	if (w->refused)
		json_object_object_add(o, "refusedObjects", json_object_get(w->refused));
	return o;
}

int kb_watch_counters(const struct daemon *d, struct kb_watch_counters *out)
{
	const struct kb_watch *w = d->watch;

	memset(out, 0, sizeof(*out));
	if (!w)
		return -ENOENT;
	out->reloads = w->reloads;
	out->errors = w->errors;
	out->ok = w->ok;
	out->last_reload = (long long)w->last_reload;
	return 0;
}
