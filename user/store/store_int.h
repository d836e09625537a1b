/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the state store's snapshot (store.c) and log (store_log.c) halves. */
#ifndef KB_STORE_INT_H
#define KB_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util.h"

#define KB_STORE_MAX_BYTES (1024u << 20)	/* far above 20,000 objects; a bigger file is not ours */

/* One stored object while a load rebuilds the state: its key, where it came from, and its text. */
struct st_entry {
	const char *key;
	const char *file;
	int line;
	const char *src;	/* points into the snapshot's or the log's buffer */
	size_t len;
	uint64_t order;		/* the last put or touch: the daemon's object order */
	bool live;
};

/* The state being rebuilt: entries by key, in the order they were first seen. */
struct st_table {
	struct kb_arena a;
	struct kb_smap ix;
	struct st_entry **ents;
	size_t n;
	uint64_t order;
};

void st_table_init(struct st_table *t);
void st_table_free(struct st_table *t);
/* Set key's text (and move it to the end). */
void st_table_put(struct st_table *t, const char *key, const char *file, int line, const char *src, size_t len);
/* Move key to the end / remove it: 0, or -ENOENT when the state does not hold it. */
int st_table_touch(struct st_table *t, const char *key);
int st_table_delete(struct st_table *t, const char *key);

/* A whole file as read: buf is NUL-terminated, len long; mapped (read-only) or malloc'ed. */
struct st_file {
	char *buf;
	size_t len;
	bool mapped;
};

/*
 * The whole regular file at path into f (free with st_file_free): 0, or
 * -errno with why set. map: the file may be mapped rather than copied
 * (only for a file that is never written in place).
 */
int st_read_file(const char *path, struct st_file *f, bool map, char *why, size_t whylen);
void st_file_free(struct st_file *f);
/* Every byte, retrying short writes: 0 or -errno. */
int st_write_all(int fd, const char *buf, size_t len);
/* Make renames in dir durable. */
void st_fsync_dir(const char *dir);
int st_mkdir_p(const char *dir);

/* store_log.c: a new log naming st->gen, holding the staged records (if any), by temp file and rename. 0 or -errno. */
int st_start_log(struct kb_store *st);
/* store_log.c: check the log's header and replay its committed requests into t (see store.h for the rules). */
int st_log_replay(struct kb_store *st, struct st_table *t, const char *buf, size_t len, char *why, size_t whylen,
		  char *note, size_t notelen);

#endif /* KB_STORE_INT_H */
