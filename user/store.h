/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's durable state: the accepted objects, as one readable multi-document YAML file. */
#ifndef KB_STORE_H
#define KB_STORE_H

#include "model.h"

#define KB_STATE_DIR_DEFAULT "/var/lib/kbackend"
#define KB_STATE_FILE "applied.yaml"
/*
 * The file's format, on its second line ("# kbackend-state-format: 2").
 * Format 2 ends with "# kbackend-state-end: N objects, crc32 X" over every
 * byte before it, so a file cut short, even at a document boundary, is
 * recognised. Format 1 (no format line) is read without that check.
 */
#define KB_STATE_FORMAT 2

/* Path of the state file in dir, into buf. */
void kb_store_path(const char *dir, char *buf, size_t len);

/*
 * Write every object of m (its source text) to dir/applied.yaml through a
 * temp file, fsync and rename, so a crash leaves the old or the new state.
 * 0 or -errno.
 */
int kb_store_save(const char *dir, const struct kb_model *m);

enum kb_store_result {
	KB_STORE_OK,		/* read, checked and parsed into m */
	KB_STORE_MISSING,	/* no file: an empty state */
	KB_STORE_BAD,		/* unreadable, not ours, from a newer kbackend, truncated or corrupt: why says which */
};

/* Load dir/applied.yaml into m; on KB_STORE_BAD, why says what is wrong with it (m is then not to be used). */
enum kb_store_result kb_store_load(const char *dir, struct kb_model *m, char *why, size_t whylen);

/* Rename a bad dir/applied.yaml to applied.yaml.bad-<UTC time>, its new path in out. 0 or -errno. */
int kb_store_set_aside(const char *dir, char *out, size_t len);

#endif /* KB_STORE_H */
