// SPDX-License-Identifier: Apache-2.0
/* The state store's append-only log: per-object change records, committed a request at a time, and their replay. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "store_int.h"

/*
 * The log: one text line "kbackend-state-log F generation G\n", then records.
 * A record is a 24-byte header, little-endian: "KBST", crc32 of bytes 8.. of
 * the header and of the payload, payload length, type, 0, request number;
 * then the payload. put: "key\0file\0line\0" and the object's YAML; touch and
 * delete: "key\0"; commit: the request's record count (u32).
 */
#define LOG_KEY "kbackend-state-log "
#define LOG_FORMAT 1
#define REC_MAGIC "KBST"
#define REC_HDR 24
#define REC_MAX_PAYLOAD (64u << 20)

enum rec_type { REC_PUT = 1, REC_TOUCH = 2, REC_DELETE = 3, REC_COMMIT = 4 };

static const char *const rec_name[] = { "?", "put", "touch", "delete", "commit" };

struct rec {
	enum rec_type type;
	uint64_t seq;
	const char *payload;
	uint32_t len;
};

static uint32_t get32(const char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get64(const char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* ---- staging ------------------------------------------------------------------ */

static void stage_raw(struct kb_store *st, const void *p, size_t n)
{
	if (st->err || !n)
		return;
	if (st->len + n > st->cap) {
		size_t cap = st->cap ? st->cap : 4096;
		char *b;

		while (cap < st->len + n)
			cap *= 2;
		b = realloc(st->buf, cap);
		if (!b) {
			st->err = -ENOMEM;
			return;
		}
		st->buf = b;
		st->cap = cap;
	}
	memcpy(st->buf + st->len, p, n);
	st->len += n;
}

/* One record: header, then the payload from up to three parts. */
static void stage(struct kb_store *st, enum rec_type type, const void *a, size_t alen, const void *b, size_t blen)
{
	char hdr[REC_HDR] = REC_MAGIC;
	uint32_t len = htole32((uint32_t)(alen + blen)), crc;
	uint16_t t = htole16((uint16_t)type);
	uint64_t seq = htole64(st->seq + 1);

	if (alen + blen > REC_MAX_PAYLOAD) {
		st->err = -EFBIG;
		return;
	}
	memcpy(hdr + 8, &len, 4);
	memcpy(hdr + 12, &t, 2);
	memcpy(hdr + 16, &seq, 8);
	crc = (uint32_t)crc32(crc32(0, NULL, 0), (const Bytef *)hdr + 8, REC_HDR - 8);
	/* Not with a NULL buffer: zlib's crc32 answers that with its initial value. */
	if (alen)
		crc = (uint32_t)crc32(crc, a, (uInt)alen);
	if (blen)
		crc = (uint32_t)crc32(crc, b, (uInt)blen);
	crc = htole32(crc);
	memcpy(hdr + 4, &crc, 4);
	stage_raw(st, hdr, sizeof(hdr));
	stage_raw(st, a, alen);
	stage_raw(st, b, blen);
	if (type != REC_COMMIT)
		st->nrec++;
}

void kb_store_key(const struct kb_meta *o, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%s", kb_meta_kind(o), o->namespace ? o->namespace : "default",
		 o->name ? o->name : "");
}

void kb_store_put(struct kb_store *st, const struct kb_meta *o)
{
	char head[1024], key[512];
	int n;

	kb_store_key(o, key, sizeof(key));
	n = snprintf(head, sizeof(head), "%s%c%s%c%d%c", key, 0, o->loc.file ? o->loc.file : "-", 0, o->loc.line, 0);
	if (n < 0 || (size_t)n >= sizeof(head)) {
		st->err = -ENAMETOOLONG;
		return;
	}
	stage(st, REC_PUT, head, (size_t)n, o->src ? o->src : "", o->src ? o->src_len : 0);
}

static void stage_key(struct kb_store *st, enum rec_type type, const struct kb_meta *o)
{
	char key[512];

	kb_store_key(o, key, sizeof(key));
	stage(st, type, key, strlen(key) + 1, NULL, 0);
}

void kb_store_touch(struct kb_store *st, const struct kb_meta *o)
{
	stage_key(st, REC_TOUCH, o);
}

void kb_store_delete(struct kb_store *st, const struct kb_meta *o)
{
	stage_key(st, REC_DELETE, o);
}

void kb_store_abort(struct kb_store *st)
{
	st->len = 0;
	st->nrec = 0;
	st->err = 0;
}

/* ---- commit -------------------------------------------------------------------- */

/* A new log: its header and the first request, written whole to a temp file, then renamed over any old one. */
int st_start_log(struct kb_store *st)
{
	char path[4200], tmp[4300], hdr[128];
	int fd, err, n;

	err = st_mkdir_p(st->dir);
	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/%s", st->dir, KB_STATE_LOG);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	n = snprintf(hdr, sizeof(hdr), LOG_KEY "%d generation %" PRIu64 "\n", LOG_FORMAT, st->gen);
	err = st_write_all(fd, hdr, (size_t)n);
	if (!err)
		err = st_write_all(fd, st->buf, st->len);
	if (!err && fsync(fd))
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		close(fd);
		unlink(tmp);
		return err;
	}
	st_fsync_dir(st->dir);
	if (st->fd >= 0)
		close(st->fd);
	st->fd = fd;
	st->log_bytes = (uint64_t)n + st->len;
	st->new_log = false;
	st->cut = false;
	return 0;
}

/* Append to the open log at its committed length; a failed append is cut off again. */
static int append_log(struct kb_store *st)
{
	char path[4200];
	size_t off = 0;
	int err = 0;

	if (st->fd < 0) {
		snprintf(path, sizeof(path), "%s/%s", st->dir, KB_STATE_LOG);
		st->fd = open(path, O_WRONLY | O_CLOEXEC);
		if (st->fd < 0)
			return -errno;
	}
	/* A torn tail from before a crash, or a failed append: the new records follow the last commit. */
	if (st->cut && ftruncate(st->fd, (off_t)st->log_bytes))
		return -errno;
	st->cut = false;
	while (off < st->len) {
		ssize_t w = pwrite(st->fd, st->buf + off, st->len - off, (off_t)(st->log_bytes + off));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			err = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (!err && fdatasync(st->fd))
		err = -errno;
	if (err) {
		st->cut = true;
		if (!ftruncate(st->fd, (off_t)st->log_bytes))
			st->cut = false;
		return err;
	}
	st->log_bytes += st->len;
	return 0;
}

int kb_store_commit(struct kb_store *st)
{
	uint32_t count = htole32(st->nrec);
	int err;

	if (!st->nrec && !st->err)
		return 0;
	stage(st, REC_COMMIT, &count, sizeof(count), NULL, 0);
	err = st->err;
	if (!err)
		err = st->new_log ? st_start_log(st) : append_log(st);
	/* The number is used up even when the write failed: a partial request left behind can never be committed later. */
	st->seq++;
	kb_store_abort(st);
	return err;
}

bool kb_store_would_compact(const struct kb_store *st, uint64_t more)
{
	/* Each compaction writes the snapshot once per its own size in changes: amortised, a change costs O(its size). */
	return st->log_bytes + more > (256u << 10) && st->log_bytes + more > st->snap_bytes;
}

bool kb_store_wants_compaction(const struct kb_store *st)
{
	return kb_store_would_compact(st, 0);
}

/* ---- replay -------------------------------------------------------------------- */

/* The record at off: 1 read, 0 incomplete (the file ends inside it), -1 not a valid record. */
static int read_rec(const char *buf, size_t len, size_t off, struct rec *r)
{
	uint32_t crc;

	if (len - off < REC_HDR)
		return memcmp(buf + off, REC_MAGIC, len - off < 4 ? len - off : 4) ? -1 : 0;
	if (memcmp(buf + off, REC_MAGIC, 4))
		return -1;
	r->len = get32(buf + off + 8);
	r->type = (enum rec_type)(get32(buf + off + 12) & 0xffff);
	r->seq = get64(buf + off + 16);
	r->payload = buf + off + REC_HDR;
	if (r->len > REC_MAX_PAYLOAD || r->type < REC_PUT || r->type > REC_COMMIT)
		return -1;
	if (len - off - REC_HDR < r->len)
		return 0;
	crc = (uint32_t)crc32(crc32(0, NULL, 0), (const Bytef *)buf + off + 8, REC_HDR - 8 + r->len);
	if (crc != get32(buf + off + 4))
		return -1;
	if (r->type == REC_COMMIT && r->len != 4)
		return -1;
	return 1;
}

/* Apply one committed record to t: 0, or -1 with why set. */
static int apply_rec(struct st_table *t, const struct rec *r, size_t off, char *why, size_t whylen)
{
	const char *key = r->payload, *end = r->payload + r->len, *file, *line, *src;

	if (!memchr(key, 0, r->len))
		goto bad;
	if (r->type == REC_TOUCH || r->type == REC_DELETE) {
		if ((r->type == REC_TOUCH ? st_table_touch : st_table_delete)(t, key)) {
			snprintf(why, whylen, "corrupt: a %s of %s at log offset %zu, which the state does not hold",
				 rec_name[r->type], key, off);
			return -1;
		}
		return 0;
	}
	file = key + strlen(key) + 1;
	if (file >= end || !memchr(file, 0, (size_t)(end - file)))
		goto bad;
	line = file + strlen(file) + 1;
	if (line >= end || !memchr(line, 0, (size_t)(end - line)))
		goto bad;
	src = line + strlen(line) + 1;
	st_table_put(t, key, file, atoi(line), src, (size_t)(end - src));
	return 0;
bad:
	snprintf(why, whylen, "corrupt: a malformed %s record at log offset %zu", rec_name[r->type], off);
	return -1;
}

/* Past the first bad record at off: a whole later request committed after it means the log was damaged, not torn. */
static bool later_commit(const char *buf, size_t len, size_t off, uint64_t last_seq)
{
	struct rec r;

	for (const char *p = buf + off; (p = memmem(p, len - (size_t)(p - buf), REC_MAGIC, 4)); p++)
		if (read_rec(buf, len, (size_t)(p - buf), &r) == 1 && r.type == REC_COMMIT && r.seq > last_seq + 1)
			return true;
	return false;
}

int st_log_replay(struct kb_store *st, struct st_table *t, const char *buf, size_t len, char *why, size_t whylen,
		  char *note, size_t notelen)
{
	size_t off, committed, *pend = NULL, npend = 0, cap = 0;
	uint64_t gen, last = 0, pseq = 0;
	int format, rc = 0, n = 0;
	struct rec r;

	if (sscanf(buf, LOG_KEY "%d generation %" SCNu64 "%n", &format, &gen, &n) != 2 || buf[n] != '\n') {
		snprintf(why, whylen, "%s", !memchr(buf, '\n', len) && !strncmp(buf, LOG_KEY, len < 19 ? len : 19)
						    ? "truncated: the log is cut inside its header"
						    : "not a kbackend state log (its first line is not the daemon's header)");
		return -1;
	}
	if (format > LOG_FORMAT) {
		snprintf(why, whylen, "written by a newer kbackend (state log format %d; this one reads format %d)", format,
			 LOG_FORMAT);
		return -1;
	}
	if (gen < st->gen) {
		/* Compaction wrote the next snapshot and stopped before the new log: the old one is in the snapshot. */
		snprintf(note, notelen, "ignored %s of generation %" PRIu64 ": snapshot generation %" PRIu64
			 " already holds it (a compaction was cut short)", KB_STATE_LOG, gen, st->gen);
		st->new_log = true;
		return 0;
	}
	if (gen > st->gen) {
		snprintf(why, whylen, "corrupt: %s follows snapshot generation %" PRIu64 ", but the snapshot is %s%" PRIu64,
			 KB_STATE_LOG, gen, st->gen ? "generation " : "missing: generation ", st->gen);
		return -1;
	}
	off = committed = (size_t)n + 1;
	for (;;) {
		int got = off < len ? read_rec(buf, len, off, &r) : 0;

		if (got <= 0)
			break;
		if (r.seq <= last || (npend && r.seq < pseq)) {
			snprintf(why, whylen, "corrupt: request %" PRIu64 " at log offset %zu after request %" PRIu64,
				 r.seq, off, npend && r.seq < pseq ? pseq : last);
			rc = -1;
			break;
		}
		if (npend && r.seq != pseq)
			npend = 0;	/* an earlier request that never committed (its write failed): not part of the state */
		if (r.type != REC_COMMIT) {
			if (npend == cap) {
				size_t *p = realloc(pend, (cap = cap ? cap * 2 : 64) * sizeof(*pend));

				if (!p) {
					snprintf(why, whylen, "unreadable: out of memory");
					rc = -1;
					break;
				}
				pend = p;
			}
			pend[npend++] = off;
			pseq = r.seq;
			off += REC_HDR + r.len;
			continue;
		}
		if (get32(r.payload) != npend || (npend && r.seq != pseq)) {
			snprintf(why, whylen, "corrupt: the commit of request %" PRIu64 " at log offset %zu counts %u "
				 "records, %zu precede it", r.seq, off, get32(r.payload), npend);
			rc = -1;
			break;
		}
		for (size_t i = 0; i < npend && !rc; i++) {
			struct rec pr;

			read_rec(buf, len, pend[i], &pr);
			rc = apply_rec(t, &pr, pend[i], why, whylen);
		}
		if (rc)
			break;
		npend = 0;
		last = r.seq;
		off += REC_HDR + r.len;
		committed = off;
	}
	free(pend);
	if (rc)
		return rc;
	if (off < len && later_commit(buf, len, off, last)) {
		snprintf(why, whylen, "corrupt: a damaged record at log offset %zu, before requests committed after it", off);
		return -1;
	}
	if (committed < len)
		snprintf(note, notelen, "dropped the last %zu byte(s) of %s/%s: a request (number %" PRIu64 ") that was "
			 "cut short or never committed, so never acknowledged; the state is the last committed request",
			 len - committed, st->dir, KB_STATE_LOG, last + 1);
	st->seq = last;
	st->log_bytes = committed;
	st->cut = committed < len;
	st->new_log = false;
	return 0;
}
