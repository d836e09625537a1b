/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's durable state: the accepted objects, as one readable multi-document YAML file. */
#ifndef KB_STORE_H
#define KB_STORE_H

#include "model.h"

#define KB_STATE_DIR_DEFAULT "/var/lib/kbackend"
#define KB_STATE_FILE "applied.yaml"

/* Path of the state file in dir, into buf. */
void kb_store_path(const char *dir, char *buf, size_t len);

/*
 * Write every object of m (its source text) to dir/applied.yaml through a
 * temp file, fsync and rename, so a crash leaves the old or the new state.
 * 0 or -errno.
 */
int kb_store_save(const char *dir, const struct kb_model *m);

/* Load dir/applied.yaml into m. A missing file is an empty state: returns 0. -errno on I/O errors. */
int kb_store_load(const char *dir, struct kb_model *m);

#endif /* KB_STORE_H */
