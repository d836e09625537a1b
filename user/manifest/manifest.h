/* SPDX-License-Identifier: Apache-2.0 */
/* Stage 1: YAML manifests (files, directories, stdin) into the model, with located errors. */
#ifndef KB_MANIFEST_H
#define KB_MANIFEST_H

#include <stddef.h>

#include "manifest/model.h"

/*
 * Parse a file, a directory (its *.yaml and *.yml files, sorted by name,
 * not recursive) or "-" (stdin) into m. Problems become diagnostics in
 * m->diags; an object with an error in its document is still added when its
 * kind is known, so later stages can report on it, but m->nerrors > 0 means
 * the input must not be applied. Returns 0, or -1 when a path can't be read
 * (that is also recorded as a diagnostic).
 */
int kb_manifest_load_path(struct kb_model *m, const char *path);

/*
 * The files kb_manifest_load_path(path) reads, in order, allocated in a:
 * "-" is itself (stdin); a directory is its *.yaml and *.yml entries that
 * are regular files (or can't be stat'ed, so reading them reports why),
 * sorted by name, not recursive, as "DIR/NAME" without a doubled slash;
 * anything else (a file, a pipe) is itself. Returns 0, or -errno when path
 * can't be stat'ed or a directory can't be opened. An empty directory gives
 * 0 with *nfiles 0; callers report "no *.yaml or *.yml files in DIR".
 */
int kb_manifest_list_files(const char *path, struct kb_arena *a, char ***files, size_t *nfiles);

/* Parse one in-memory YAML stream; `name` is the file name used in messages. */
/* The name of a file made of one object from the Kubernetes API (user/kube/): its unknown fields are warnings, not errors. */
#define KB_KUBE_FILE_PREFIX "kubernetes:"
int kb_manifest_load_buffer(struct kb_model *m, const char *name, const char *buf, size_t len);

/*
 * Parse obj->src again into the empty model m, keeping every field's
 * location on the object (kb_meta.fields), relative to the text: line 1 is
 * its first. Returns that object, or NULL when the text yields no single
 * object. For kb_meta_loc, which re-derives a location only when a message
 * needs one instead of every object keeping them.
 */
const struct kb_meta *kb_manifest_reread(struct kb_model *m, const struct kb_meta *obj);

#endif /* KB_MANIFEST_H */
