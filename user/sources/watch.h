/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --watch-dir DIR: the directory is the desired state. Its manifests are
 * applied at start (after the restore) and again on every change, as one
 * declarative replace: objects no longer in it are removed. Changes are seen
 * through inotify and debounced; a Kubernetes ConfigMap mount (files that are
 * symlinks into `..data`, itself a symlink swapped by rename) is read through
 * its symlinks, and dot-entries are never read as manifests. A bad file keeps
 * the last good state and shows the error in `status` (lastError) and the log.
 * An unreadable or missing DIR is an error too (the state stays); an existing
 * DIR with no manifests is the empty state. `kbackend apply/delete` still work
 * under --watch-dir, but the next change of DIR replaces what they did.
 */
#ifndef KB_WATCH_H
#define KB_WATCH_H

#include <json-c/json.h>

struct daemon;

#define KB_WATCH_DEBOUNCE_MS	200	/* quiet time after the last event before re-applying */
#define KB_WATCH_MAX_DELAY_MS	2000	/* events that never stop still re-apply this often */
#define KB_WATCH_REWATCH_MS	1000	/* retry period when DIR is gone (deleted or replaced) */

/* Watch d->watch_dir and schedule the first apply. 0, or -errno with one error line logged. */
int kb_watch_start(struct daemon *d);
void kb_watch_stop(struct daemon *d);

/* For `status`: {dir, files, reloads, lastReload, ok, lastError}; a new object, or NULL without --watch-dir. */
struct json_object *kb_watch_status_json(const struct daemon *d);

/* For metrics: whether the last read of the directory was applied (or unchanged), and reload counts. */
struct kb_watch_counters {
	unsigned long reloads;		/* applies of the directory that took effect */
	unsigned long errors;		/* reads or applies refused */
	int ok;				/* 1: serving the directory as it is now; 0: the last good state */
	long long last_reload;		/* unix time of the last reload that took effect; 0: none */
};
int kb_watch_counters(const struct daemon *d, struct kb_watch_counters *out);	/* -ENOENT without --watch-dir */

#endif /* KB_WATCH_H */
