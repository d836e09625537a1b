// SPDX-License-Identifier: Apache-2.0
/* The state store's snapshot: a readable YAML file with a format line, framed objects and an end marker; loading, compaction, set-aside. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "manifest/manifest.h"
#include "store_int.h"

#define HEADER "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n"
#define FORMAT_KEY "# kbackend-state-format: "
#define GEN_KEY "# kbackend-state-generation: "
#define HINT "# Changes since this snapshot are in " KB_STATE_LOG "; `kbackend dump-state` prints both as YAML.\n"
#define OBJ_KEY "# kbackend-object: "
#define END_KEY "# kbackend-state-end: "

void kb_store_path(const char *dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", dir, KB_STATE_FILE);
}

void kb_store_init(struct kb_store *st, const char *dir)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	st->fd = -1;
	st->new_log = true;
}

void kb_store_close(struct kb_store *st)
{
	char dir[sizeof(st->dir)];

	if (st->fd >= 0)
		close(st->fd);
	free(st->buf);
	memcpy(dir, st->dir, sizeof(dir));
	kb_store_init(st, dir);
}

int st_mkdir_p(const char *dir)
{
	char tmp[4096];

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

int st_write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

void st_fsync_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
}

int st_read_file(const char *path, struct st_file *f, bool map, char *why, size_t whylen)
{
	struct stat st;
	size_t got = 0;
	char *b = NULL;
	int fd, err = 0;

	memset(f, 0, sizeof(*f));
	/* O_NONBLOCK: a FIFO put in its place must not hang the start. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
	} else if (S_ISDIR(st.st_mode)) {
		err = -EISDIR;
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "unreadable: %s is not a regular file", path);
		err = -EINVAL;
	} else if ((uint64_t)st.st_size > KB_STORE_MAX_BYTES) {
		snprintf(why, whylen, "unreadable: %s has %" PRIu64 " bytes, more than a state file can be", path,
			 (uint64_t)st.st_size);
		err = -EFBIG;
	} else if (map && st.st_size > 0 && st.st_size % sysconf(_SC_PAGESIZE)) {
		/*
		 * The page cache's own pages, not a copy: reading a 13 MB snapshot
		 * into fresh memory took a restart at 10,000 Backends some 100 ms
		 * of page faults. Only a file that is replaced by rename, never
		 * written in place, is mapped (a cut under us would be a SIGBUS),
		 * and only one that ends inside a page, so that a zero follows it.
		 */
		b = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (b != MAP_FAILED) {
			close(fd);
			f->buf = b;
			f->len = (size_t)st.st_size;
			f->mapped = true;
			return 0;
		}
		b = NULL;
	}
	if (!err && !(b = malloc((size_t)st.st_size + 1)))
		err = -ENOMEM;
	/* Read to EOF, not to st_size: the size is only a first guess for the buffer. */
	while (!err && got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		else if (n == 0)
			break;
		else
			got += (size_t)n;
	}
	close(fd);
	if (err) {
		free(b);
		if (!*why)
			snprintf(why, whylen, "unreadable: %s: %s", path, strerror(-err));
		return err;
	}
	b[got] = '\0';
	f->buf = b;
	f->len = got;
	return 0;
}

void st_file_free(struct st_file *f)
{
	if (f->mapped)
		munmap(f->buf, f->len);
	else
		free(f->buf);
	memset(f, 0, sizeof(*f));
}

/* ---- the table a load rebuilds ------------------------------------------------------ */

void st_table_init(struct st_table *t)
{
	memset(t, 0, sizeof(*t));
}

void st_table_free(struct st_table *t)
{
	kb_arena_free(&t->a);
	memset(t, 0, sizeof(*t));
}

void st_table_put(struct st_table *t, const char *key, const char *file, int line, const char *src, size_t len)
{
	struct st_entry *e;

	t->ix.a = &t->a;
	e = kb_smap_get(&t->ix, key);
	if (!e) {
		e = kb_alloc(&t->a, sizeof(*e));
		e->key = kb_strdup(&t->a, key);
		kb_smap_put(&t->ix, e->key, e);
		*KB_PUSH(&t->a, t->ents, t->n) = e;
	}
	e->file = file;
	e->line = line;
	e->src = src;
	e->len = len;
	e->order = ++t->order;
	e->live = true;
}

static struct st_entry *live(struct st_table *t, const char *key)
{
	struct st_entry *e;

	t->ix.a = &t->a;
	e = kb_smap_get(&t->ix, key);
	return e && e->live ? e : NULL;
}

int st_table_touch(struct st_table *t, const char *key)
{
	struct st_entry *e = live(t, key);

	if (!e)
		return -ENOENT;
	e->order = ++t->order;
	return 0;
}

int st_table_delete(struct st_table *t, const char *key)
{
	struct st_entry *e = live(t, key);

	if (!e)
		return -ENOENT;
	e->live = false;
	return 0;
}

static int by_order(const void *a, const void *b)
{
	const struct st_entry *x = *(struct st_entry *const *)a, *y = *(struct st_entry *const *)b;

	return x->order < y->order ? -1 : x->order > y->order;
}

/* Entries [from, to) of the sorted table, in order, into m (empty at first): 0, or -1 with why set. */
struct st_range {
	const struct st_table *t;
	size_t from, to;
	struct kb_model m;
	char why[1024];
	int rc;
};

static void *range_to_model(void *arg)
{
	struct st_range *r = arg;
	struct kb_model *m = &r->m;
	char key[512], d[512];

	r->rc = 0;
	for (size_t i = r->from; i < r->to; i++) {
		const struct st_entry *e = r->t->ents[i];
		size_t before = m->nobjects;

		if (!e->live)
			continue;
		kb_manifest_load_buffer(m, e->file, e->src, e->len);
		if (m->nerrors) {
			kb_diag_format(&m->diags[0], d, sizeof(d));
			snprintf(r->why, sizeof(r->why), "does not parse: %s", d);
			r->rc = -1;
			break;
		}
		if (m->nobjects != before + 1) {
			snprintf(r->why, sizeof(r->why), "corrupt: the stored text of %s holds %zu objects", e->key,
				 m->nobjects - before);
			r->rc = -1;
			break;
		}
		kb_store_key(m->objects[before], key, sizeof(key));
		if (strcmp(key, e->key)) {
			snprintf(r->why, sizeof(r->why), "corrupt: the stored text of %s is %s", e->key, key);
			r->rc = -1;
			break;
		}
	}
	return NULL;
}

/*
 * Parse every live entry, in order, into m: 0, or -1 with why set (the
 * first entry that fails). At start the second half of the entries (by
 * bytes) is parsed on a thread of its own: a restart at 10,000 Backends
 * spent 40% of its time here.
 */
static int table_to_model(struct st_table *t, struct kb_model *m, char *why, size_t whylen)
{
	struct st_range a = { .t = t }, b = { .t = t };
	uint64_t total = 0, acc = 0;
	pthread_t th;
	bool threaded;

	if (t->n)
		qsort(t->ents, t->n, sizeof(*t->ents), by_order);
	for (size_t i = 0; i < t->n; i++)
		total += t->ents[i]->live ? t->ents[i]->len : 0;
	a.to = b.to = t->n;
	for (size_t i = 0; total >= (1u << 20) && i < t->n; i++) {
		acc += t->ents[i]->live ? t->ents[i]->len : 0;
		if (2 * acc >= total) {
			a.to = b.from = i + 1;
			break;
		}
	}
	kb_model_init(&a.m);
	kb_model_init(&b.m);
	threaded = b.from && b.from < t->n && !pthread_create(&th, NULL, range_to_model, &b);
	if (!threaded)
		a.to = t->n;
	range_to_model(&a);
	if (threaded)
		pthread_join(th, NULL);
	if (a.rc || (threaded && b.rc)) {
		snprintf(why, whylen, "%s", a.rc ? a.why : b.why);
		kb_model_free(&a.m);
		kb_model_free(&b.m);
		return -1;
	}
	kb_model_absorb(m, &a.m);
	kb_model_absorb(m, &b.m);
	return 0;
}

/* ---- the snapshot ------------------------------------------------------------------ */

/*
 * The checks before any YAML is parsed: ours (the header), a format this
 * binary reads, a whole file (format 2 and 3: the end marker and its
 * checksum). *body and *body_len get what follows the format line (format
 * 3: the generation line), *ndocs the count the end marker promises (-1:
 * format 1 says nothing).
 */
static int check_snapshot(const char *buf, size_t len, int *format, const char **body, size_t *body_len, long *ndocs,
			  char *why, size_t whylen)
{
	const char *p = buf + strlen(HEADER), *end;
	unsigned long crc, want;
	size_t n, rest;
	long f;
	char *e;

	/* Cut inside the first two lines: a prefix of what the daemon writes. */
	if (len < strlen(HEADER FORMAT_KEY) && !memcmp(buf, HEADER FORMAT_KEY, len)) {
		snprintf(why, whylen, "truncated: %zu bytes, cut inside the header", len);
		return -1;
	}
	if (len < strlen(HEADER) || memcmp(buf, HEADER, strlen(HEADER))) {
		snprintf(why, whylen, "not a kbackend state file (its first line is not the daemon's header)");
		return -1;
	}
	*ndocs = -1;
	rest = len - strlen(HEADER);
	if (strncmp(p, FORMAT_KEY, strlen(FORMAT_KEY))) {
		/* Format 1 (before the format line) has documents right after the header, and no end marker. */
		if (rest && strncmp(p, "---\n", 4)) {
			snprintf(why, whylen, "not a kbackend state file (no format line after the header)");
			return -1;
		}
		*format = 1;
		*body = p;
		*body_len = rest;
		return 0;
	}
	f = strtol(p + strlen(FORMAT_KEY), &e, 10);
	if (e == p + strlen(FORMAT_KEY) || *e != '\n' || f < 1) {
		snprintf(why, whylen, "%s", *e ? "not a kbackend state file (a bad format line)"
					       : "truncated: cut inside the format line");
		return -1;
	}
	if (f > KB_STATE_FORMAT) {
		snprintf(why, whylen, "written by a newer kbackend (state format %ld; this one reads formats 1 to %d)", f,
			 KB_STATE_FORMAT);
		return -1;
	}
	*format = (int)f;
	*body = e + 1;
	*body_len = len - (size_t)(*body - buf);
	if (f == 1)
		return 0;
	/* The end marker is the last line, and ends with the file's last byte. */
	if (len < 2 || buf[len - 1] != '\n') {
		snprintf(why, whylen, "truncated: the file does not end with the daemon's end marker");
		return -1;
	}
	for (end = buf + len - 1; end > buf && end[-1] != '\n'; end--)
		;
	if (strncmp(end, END_KEY, strlen(END_KEY)) ||
	    sscanf(end + strlen(END_KEY), "%zu objects, crc32 %lx", &n, &want) != 2) {
		snprintf(why, whylen, "truncated: the file does not end with the daemon's end marker");
		return -1;
	}
	crc = crc32(crc32(0, NULL, 0), (const Bytef *)buf, (uInt)(end - buf));
	if (crc != want) {
		snprintf(why, whylen, "corrupt: the checksum is %08lx, the end marker says %08lx", crc, want);
		return -1;
	}
	*body_len = (size_t)(end - *body);
	*ndocs = (long)n;
	return 0;
}

/* Format 3's body: the generation, the hint, then "---", an object line and the object's bytes, per object. */
static int parse_v3(struct kb_store *st, struct st_table *t, const char *body, size_t len, long ndocs, char *why,
		    size_t whylen)
{
	const char *p = body, *end = body + len, *nl;
	long count = 0;
	int n = 0;

	if (sscanf(p, GEN_KEY "%" SCNu64 "%n", &st->gen, &n) != 1 || p[n] != '\n' ||
	    strncmp(p + n + 1, HINT, strlen(HINT)))
		goto bad;
	p += n + 1 + strlen(HINT);
	while (p < end) {
		char key[512], frame[4700], *file;
		size_t bytes;
		int line;

		if ((size_t)(end - p) < 4 + strlen(OBJ_KEY) || strncmp(p, "---\n" OBJ_KEY, 4 + strlen(OBJ_KEY)) ||
		    !(nl = memchr(p + 4, '\n', (size_t)(end - p - 4))))
			goto bad;
		n = 0;
		/* sscanf on a copy of the line: on the whole buffer it would measure all of it, every object. */
		if ((size_t)(nl - p) >= sizeof(frame))
			goto bad;
		memcpy(frame, p + 4 + strlen(OBJ_KEY), (size_t)(nl - p) - 4 - strlen(OBJ_KEY));
		frame[nl - p - 4 - strlen(OBJ_KEY)] = '\0';
		if (sscanf(frame, "%511[^,], %zu bytes, line %d of %n", key, &bytes, &line, &n) != 3 || !n ||
		    !frame[n] || bytes >= (size_t)(end - nl) || nl[1 + bytes] != '\n')
			goto bad;
		file = kb_strdup(&t->a, frame + n);
		st_table_put(t, key, file, line, nl + 1, bytes);
		count++;
		p = nl + 1 + bytes + 1;
	}
	if (count != ndocs) {
		snprintf(why, whylen, "corrupt: the end marker counts %ld objects, the snapshot frames %ld", ndocs, count);
		return -1;
	}
	return 0;
bad:
	snprintf(why, whylen, "corrupt: a malformed object frame at byte %zu of the snapshot's body", (size_t)(p - body));
	return -1;
}

/* Formats 1 and 2: one YAML stream, parsed whole; the log (if any) predates it and is ignored. */
static int parse_legacy(const char *path, const char *body, size_t len, long ndocs, struct kb_model *m, char *why,
			size_t whylen)
{
	char d[512];

	kb_manifest_load_buffer(m, path, body, len);
	if (m->nerrors) {
		kb_diag_format(&m->diags[0], d, sizeof(d));
		snprintf(why, whylen, "does not parse: %s", d);
		return -1;
	}
	if (ndocs >= 0 && (size_t)ndocs != m->nobjects) {
		snprintf(why, whylen, "corrupt: the end marker counts %ld objects, %zu parse", ndocs, m->nobjects);
		return -1;
	}
	return 0;
}

enum kb_store_result kb_store_load(struct kb_store *st, struct kb_model *m, char *why, size_t whylen, char *note,
				   size_t notelen)
{
	char path[4200], lpath[4200], lwhy[1024] = "";
	struct st_file snap, log;
	size_t body_len;
	int serr, lerr, format = 0, rc = 0;
	struct st_table t;
	const char *body;
	long ndocs;

	why[0] = note[0] = '\0';
	kb_store_close(st);
	kb_store_path(st->dir, path, sizeof(path));
	snprintf(lpath, sizeof(lpath), "%s/%s", st->dir, KB_STATE_LOG);
	/* The snapshot is only ever replaced by rename; the log is cut in place (kb_store's cut), so it is read. */
	serr = st_read_file(path, &snap, true, why, whylen);
	lerr = st_read_file(lpath, &log, false, lwhy, sizeof(lwhy));
	if (serr == -ENOENT && lerr == -ENOENT) {
		why[0] = '\0';
		return KB_STORE_MISSING;
	}
	if ((serr && serr != -ENOENT) || (lerr && lerr != -ENOENT)) {
		if (!serr || serr == -ENOENT)
			snprintf(why, whylen, "%s", lwhy);
		rc = -1;
		goto out;
	}
	st_table_init(&t);
	if (!serr) {
		rc = check_snapshot(snap.buf, snap.len, &format, &body, &body_len, &ndocs, why, whylen);
		st->from_format = format;
		st->snap_bytes = snap.len;
		if (!rc && format < 3) {
			rc = parse_legacy(path, body, body_len, ndocs, m, why, whylen);
			goto out_table;
		}
		if (!rc)
			rc = parse_v3(st, &t, body, body_len, ndocs, why, whylen);
	}
	if (!rc && !lerr)
		rc = st_log_replay(st, &t, log.buf, log.len, why, whylen, note, notelen);
	if (!rc)
		rc = table_to_model(&t, m, why, whylen);
out_table:
	st_table_free(&t);
out:
	st_file_free(&snap);
	st_file_free(&log);
	return rc ? KB_STORE_BAD : KB_STORE_OK;
}

/* ---- compaction -------------------------------------------------------------------- */

/* Writes that also run the checksum the end marker carries. */
struct out {
	int fd;
	uLong crc;
	uint64_t bytes;
	/* Writes go out in 64 KiB pieces, not three per object (60,000 write calls for 20,000 objects). */
	char *buf;
	size_t nbuf, cap;
};

static int flush(struct out *o)
{
	int err = o->nbuf ? st_write_all(o->fd, o->buf, o->nbuf) : 0;

	o->nbuf = 0;
	return err;
}

static int put(struct out *o, const char *buf, size_t len)
{
	o->crc = crc32(o->crc, (const Bytef *)buf, (uInt)len);
	o->bytes += len;
	if (o->nbuf + len > o->cap) {
		int err = flush(o);

		if (err)
			return err;
		if (len > o->cap)
			return st_write_all(o->fd, buf, len);
	}
	memcpy(o->buf + o->nbuf, buf, len);
	o->nbuf += len;
	return 0;
}

/* A file name on one line: control characters (a newline would break the frame) become '?'. */
static void one_line(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	if (!src || !*src)
		src = "-";
	for (; src[i] && i + 1 < len; i++)
		dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
	dst[i] = '\0';
}

int kb_store_compact(struct kb_store *st, const struct kb_model *m)
{
	char path[4200], tmp[4300], hdr[6000], key[512], file[4096], wbuf[65536];
	struct out o = { .crc = crc32(0, NULL, 0), .buf = wbuf, .cap = sizeof(wbuf) };
	size_t ndocs = 0;
	int err, n;

	kb_store_abort(st);
	err = st_mkdir_p(st->dir);
	if (err)
		return err;
	kb_store_path(st->dir, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (o.fd < 0)
		return -errno;
	n = snprintf(hdr, sizeof(hdr), HEADER FORMAT_KEY "%d\n" GEN_KEY "%" PRIu64 "\n" HINT, KB_STATE_FORMAT,
		     st->gen + 1);
	err = put(&o, hdr, (size_t)n);
	for (size_t i = 0; !err && i < m->nobjects; i++) {
		const struct kb_meta *obj = m->objects[i];

		if (!obj->src)
			continue;
		kb_store_key(obj, key, sizeof(key));
		one_line(file, sizeof(file), obj->loc.file);
		n = snprintf(hdr, sizeof(hdr), "---\n" OBJ_KEY "%s, %zu bytes, line %d of %s\n", key, obj->src_len,
			     obj->loc.line, file);
		err = put(&o, hdr, (size_t)n);
		if (!err)
			err = put(&o, obj->src, obj->src_len);
		if (!err)
			err = put(&o, "\n", 1);
		ndocs++;
	}
	/* Last: a file cut short anywhere, even at a document boundary, has no end marker. */
	n = snprintf(hdr, sizeof(hdr), END_KEY "%zu objects, crc32 %08lx\n", ndocs, (unsigned long)o.crc);
	if (!err)
		err = put(&o, hdr, (size_t)n);
	if (!err)
		err = flush(&o);
	if (!err && fsync(o.fd))
		err = -errno;
	if (close(o.fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	st_fsync_dir(st->dir);
	/* The old log names the old generation from now on, so a load ignores it; an empty one replaces it. */
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
	st->gen++;
	st->snap_bytes = o.bytes;
	st->log_bytes = 0;
	st->seq = 0;
	st->new_log = true;
	st->cut = false;
	st->from_format = KB_STATE_FORMAT;
	/* Not needed for the state to be whole (the next commit would start it), but it keeps the directory tidy. */
	return st_start_log(st);
}

void kb_store_remove_temps(const char *dir)
{
	static const char *const prefixes[] = { KB_STATE_FILE ".tmp.", KB_STATE_LOG ".tmp." };
	char path[4400];
	struct dirent *e;
	DIR *dh = opendir(dir);

	if (!dh)
		return;
	while ((e = readdir(dh)))
		for (size_t i = 0; i < 2; i++)
			if (!strncmp(e->d_name, prefixes[i], strlen(prefixes[i]))) {
				snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
				unlink(path);
			}
	closedir(dh);
}

/* ---- a bad state ------------------------------------------------------------------- */

int kb_store_set_aside(const char *dir, char *out, size_t len)
{
	char path[4200], lpath[4200], lout[4300], stamp[32];
	time_t now = time(NULL);
	struct stat st;
	bool snap, log;
	struct tm tm;

	kb_store_path(dir, path, sizeof(path));
	snprintf(lpath, sizeof(lpath), "%s/%s", dir, KB_STATE_LOG);
	snap = !lstat(path, &st);
	log = !lstat(lpath, &st);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	/* Never over an earlier one: a second bad state in the same second gets a suffix. */
	for (int i = 0; i < 100; i++) {
		char sfx[16] = "";

		if (i)
			snprintf(sfx, sizeof(sfx), "-%d", i);
		snprintf(out, len, "%s.bad-%s%s", path, stamp, sfx);
		snprintf(lout, sizeof(lout), "%s.bad-%s%s", lpath, stamp, sfx);
		if ((lstat(out, &st) && errno == ENOENT) && (lstat(lout, &st) && errno == ENOENT)) {
			if (snap && rename(path, out))
				return -errno;
			if (log && rename(lpath, lout))
				return -errno;
			if (!snap)
				snprintf(out, len, "%s", lout);
			st_fsync_dir(dir);
			return 0;
		}
	}
	return -EEXIST;
}
