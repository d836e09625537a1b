/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's durable state: a YAML snapshot of the accepted objects plus an append-only log of per-object changes. */
#ifndef KB_STORE_H
#define KB_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "manifest/model.h"

#define KB_STATE_DIR_DEFAULT "/var/lib/kbackend"
#define KB_STATE_FILE "applied.yaml"	/* the snapshot: readable multi-document YAML */
#define KB_STATE_LOG "applied.log"	/* the changes since the snapshot */
/*
 * The snapshot's format, on its second line ("# kbackend-state-format: 3").
 * Format 3 names its generation, frames every object with its key and byte
 * count, and ends with "# kbackend-state-end: N objects, crc32 X" over every
 * byte before it. Formats 1 and 2 (one whole file per change, no log) are
 * read once and rewritten as format 3.
 */
#define KB_STATE_FORMAT 3

/*
 * An open state directory. The log holds requests: each is a run of put,
 * touch (move to the end, text unchanged) and delete records of one object
 * by (kind, namespace, name), closed by a commit record; every record is
 * length-prefixed and carries a crc32. A request counts only with its commit
 * record, and is acknowledged only after that record is on disk (fdatasync).
 * Compaction writes the whole state as a new snapshot (temp file, fsync,
 * rename) of the next generation and starts an empty log naming it.
 */
struct kb_store {
	char dir[4096];
	int fd;			/* the log, for writing; -1: not open yet */
	uint64_t gen;		/* the snapshot's generation; the log's header names it */
	uint64_t seq;		/* the last request number used in this log */
	uint64_t log_bytes;	/* the log's committed length: records past it are a torn tail */
	uint64_t snap_bytes;	/* the snapshot's size, for the compaction rule */
	bool new_log;		/* no usable log on disk: the next commit starts one */
	bool cut;		/* bytes past log_bytes on disk: cut them before appending */
	int from_format;	/* the snapshot's format as loaded (0: none) */
	/* The request being staged: its records, written at commit. */
	char *buf;
	size_t len, cap;
	uint32_t nrec;
	int err;		/* a staging failure (ENOMEM), reported by commit */
};

/* Path of the snapshot in dir, into buf. */
void kb_store_path(const char *dir, char *buf, size_t len);

/* An empty handle for dir; nothing is read or written yet. */
void kb_store_init(struct kb_store *st, const char *dir);
void kb_store_close(struct kb_store *st);

enum kb_store_result {
	KB_STORE_OK,		/* read, checked and parsed into m */
	KB_STORE_MISSING,	/* no snapshot and no log: an empty state */
	KB_STORE_BAD,		/* unreadable, not ours, from a newer kbackend, truncated or corrupt: why says which */
};

/*
 * Read the snapshot and replay the log's committed requests into m, in the
 * order the daemon held them. Writes nothing. A torn tail (a request cut
 * short, or never committed: the crash case) is not bad: it is left out and
 * note says so (else note is ""). On KB_STORE_BAD, why says what is wrong
 * (m is then not to be used).
 */
enum kb_store_result kb_store_load(struct kb_store *st, struct kb_model *m, char *why, size_t whylen, char *note,
				   size_t notelen);

/* Stage one change of the next request; nothing reaches the disk before kb_store_commit. */
void kb_store_put(struct kb_store *st, const struct kb_meta *o);	/* store o's text; it moves to the end */
void kb_store_touch(struct kb_store *st, const struct kb_meta *o);	/* same text, moved to the end */
void kb_store_delete(struct kb_store *st, const struct kb_meta *o);	/* by o's kind, namespace and name */

/*
 * Write the staged records and a commit record, and fdatasync: 0 once the
 * request is durable (nothing staged: 0 at once), or -errno with the log cut
 * back, so the request is not part of the state. The staging is cleared
 * either way.
 */
int kb_store_commit(struct kb_store *st);
/* Drop the staged records. */
void kb_store_abort(struct kb_store *st);

/* The log has outgrown the snapshot (and a floor): time to compact. */
bool kb_store_wants_compaction(const struct kb_store *st);
/* Would a commit of about `more` bytes of records make the log want compaction? (Then a snapshot is the cheaper commit.) */
bool kb_store_would_compact(const struct kb_store *st, uint64_t more);
/*
 * Write m, the whole state, as the next snapshot (temp file, fsync, rename,
 * fsync of the directory) and start an empty log. A crash in between leaves
 * the old log naming the old generation, which the load then ignores.
 * Anything staged is dropped. 0 or -errno.
 */
int kb_store_compact(struct kb_store *st, const struct kb_model *m);

/*
 * Rename a bad snapshot and log to applied.yaml.bad-<UTC time> and
 * applied.log.bad-<same time>; the first one's new path in out. 0 or -errno.
 */
int kb_store_set_aside(const char *dir, char *out, size_t len);

/* Remove temp files a compaction or a new log left when the process died before its rename. */
void kb_store_remove_temps(const char *dir);

/* "Kind/namespace/name": the store's key of an object, into buf. */
void kb_store_key(const struct kb_meta *o, char *buf, size_t len);

#endif /* KB_STORE_H */
