// SPDX-License-Identifier: Apache-2.0
/* The daemon's durable state: the accepted objects, as one readable multi-document YAML file with a format line and an end marker. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "manifest.h"
#include "store.h"

#define HEADER "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n"
#define FORMAT_KEY "# kbackend-state-format: "
#define END_KEY "# kbackend-state-end: "
#define MAX_STATE_BYTES (1024u << 20)	/* far above 20,000 objects; a bigger file is not ours */

void kb_store_path(const char *dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", dir, KB_STATE_FILE);
}

static int mkdir_p(const char *dir)
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

/* Writes that also run the checksum the end marker carries. */
struct out {
	int fd;
	uLong crc;
};

static int put(struct out *o, const char *buf, size_t len)
{
	o->crc = crc32(o->crc, (const Bytef *)buf, (uInt)len);
	while (len) {
		ssize_t n = write(o->fd, buf, len);

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

int kb_store_save(const char *dir, const struct kb_model *m)
{
	char path[4096], tmp[4200], hdr[512];
	struct out o = { .crc = crc32(0, NULL, 0) };
	size_t ndocs = 0;
	int dfd, err;

	err = mkdir_p(dir);
	if (err)
		return err;
	kb_store_path(dir, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (o.fd < 0)
		return -errno;
	snprintf(hdr, sizeof(hdr), HEADER FORMAT_KEY "%d\n", KB_STATE_FORMAT);
	err = put(&o, hdr, strlen(hdr));
	for (size_t i = 0; !err && i < m->nobjects; i++) {
		const struct kb_meta *obj = m->objects[i];

		if (!obj->src)
			continue;
		snprintf(hdr, sizeof(hdr), "---\n# from %s:%d\n", obj->loc.file ? obj->loc.file : "-", obj->loc.line);
		err = put(&o, hdr, strlen(hdr));
		if (!err)
			err = put(&o, obj->src, obj->src_len);
		if (!err && (obj->src_len == 0 || obj->src[obj->src_len - 1] != '\n'))
			err = put(&o, "\n", 1);
		ndocs++;
	}
	/* Last: a file cut short anywhere, even at a document boundary, has no end marker. */
	snprintf(hdr, sizeof(hdr), END_KEY "%zu objects, crc32 %08lx\n", ndocs, (unsigned long)o.crc);
	if (!err)
		err = put(&o, hdr, strlen(hdr));
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
	/* Make the rename itself durable. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* The whole file at path into *buf (NUL-terminated, caller frees). 0, or -errno / a reason in why. */
static int read_state(const char *path, char **buf, size_t *len, char *why, size_t whylen)
{
	struct stat st;
	size_t got = 0;
	char *b;
	int fd, err = 0;

	/* O_NONBLOCK: a FIFO put in its place must not hang the start. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
	} else if (S_ISDIR(st.st_mode)) {
		err = -EISDIR;
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "unreadable: not a regular file");
		err = -EINVAL;
	} else if ((uint64_t)st.st_size > MAX_STATE_BYTES) {
		snprintf(why, whylen, "unreadable: %" PRIu64 " bytes, more than a state file can be",
			 (uint64_t)st.st_size);
		err = -EFBIG;
	}
	if (err)
		goto out_close;
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		err = -ENOMEM;
		goto out_close;
	}
	/* Read to EOF, not to st_size: the size is only a first guess for the buffer. */
	for (;;) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			free(b);
			goto out_close;
		}
		if (n == 0 || got + (size_t)n == (size_t)st.st_size) {
			got += (size_t)n;
			break;
		}
		got += (size_t)n;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
out_close:
	close(fd);
	if (err && !*why)
		snprintf(why, whylen, "unreadable: %s", strerror(-err));
	return err;
}

/*
 * The checks before any YAML is parsed: ours (the header), a format this
 * binary reads, and for format 2 a whole file (the end marker, its count and
 * checksum). *body and *body_len get the YAML to parse; *ndocs the count the
 * end marker promises (-1: format 1 says nothing).
 */
static int check_state(const char *buf, size_t len, const char **body, size_t *body_len, long *ndocs, char *why,
		       size_t whylen)
{
	const char *p = buf + strlen(HEADER), *end;
	unsigned long crc, want;
	long format;
	size_t n;
	char *e;

	size_t rest;

	/* Cut inside the first two lines: a prefix of what the daemon writes. */
	if (len < strlen(HEADER FORMAT_KEY) && !memcmp(buf, HEADER FORMAT_KEY, len)) {
		snprintf(why, whylen, "truncated: %zu bytes, cut inside the header", len);
		return -EINVAL;
	}
	if (len < strlen(HEADER) || memcmp(buf, HEADER, strlen(HEADER))) {
		snprintf(why, whylen, "not a kbackend state file (its first line is not the daemon's header)");
		return -EINVAL;
	}
	*ndocs = -1;
	rest = len - strlen(HEADER);
	if (strncmp(p, FORMAT_KEY, strlen(FORMAT_KEY))) {
		/* Format 1 (before the format line) has documents right after the header, and no end marker. */
		if (rest && strncmp(p, "---\n", 4)) {
			snprintf(why, whylen, "not a kbackend state file (no format line after the header)");
			return -EINVAL;
		}
		*body = p;
		*body_len = rest;
		return 0;
	}
	format = strtol(p + strlen(FORMAT_KEY), &e, 10);
	if (e == p + strlen(FORMAT_KEY) || *e != '\n' || format < 1) {
		snprintf(why, whylen, "%s", *e ? "not a kbackend state file (a bad format line)"
					       : "truncated: cut inside the format line");
		return -EINVAL;
	}
	if (format > KB_STATE_FORMAT) {
		snprintf(why, whylen, "written by a newer kbackend (state format %ld; this one reads formats 1 to %d)",
			 format, KB_STATE_FORMAT);
		return -EPROTONOSUPPORT;
	}
	if (format == 1) {
		*body = e + 1;
		*body_len = len - (size_t)(*body - buf);
		return 0;
	}
	/* The end marker is the last line, and ends with the file's last byte. */
	if (len < 2 || buf[len - 1] != '\n') {
		snprintf(why, whylen, "truncated: the file does not end with the daemon's end marker");
		return -EINVAL;
	}
	for (end = buf + len - 1; end > buf && end[-1] != '\n'; end--)
		;
	if (strncmp(end, END_KEY, strlen(END_KEY)) ||
	    sscanf(end + strlen(END_KEY), "%zu objects, crc32 %lx", &n, &want) != 2) {
		snprintf(why, whylen, "truncated: the file does not end with the daemon's end marker");
		return -EINVAL;
	}
	crc = crc32(crc32(0, NULL, 0), (const Bytef *)buf, (uInt)(end - buf));
	if (crc != want) {
		snprintf(why, whylen, "corrupt: the checksum is %08lx, the end marker says %08lx", crc, want);
		return -EINVAL;
	}
	*body = e + 1;
	*body_len = (size_t)(end - (e + 1));
	*ndocs = (long)n;
	return 0;
}

enum kb_store_result kb_store_load(const char *dir, struct kb_model *m, char *why, size_t whylen)
{
	char path[4096], *buf = NULL;
	const char *body;
	size_t len = 0, body_len;
	long ndocs;
	int err;

	why[0] = '\0';
	kb_store_path(dir, path, sizeof(path));
	err = read_state(path, &buf, &len, why, whylen);
	if (err == -ENOENT) {
		why[0] = '\0';
		return KB_STORE_MISSING;
	}
	if (err)
		return KB_STORE_BAD;
	err = check_state(buf, len, &body, &body_len, &ndocs, why, whylen);
	if (!err) {
		kb_manifest_load_buffer(m, path, body, body_len);
		if (m->nerrors) {
			char d[512];

			kb_diag_format(&m->diags[0], d, sizeof(d));
			snprintf(why, whylen, "does not parse: %s", d);
			err = -EINVAL;
		} else if (ndocs >= 0 && (size_t)ndocs != m->nobjects) {
			snprintf(why, whylen, "corrupt: the end marker counts %ld objects, %zu parse", ndocs, m->nobjects);
			err = -EINVAL;
		}
	}
	free(buf);
	return err ? KB_STORE_BAD : KB_STORE_OK;
}

int kb_store_set_aside(const char *dir, char *out, size_t len)
{
	char path[4096], stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	kb_store_path(dir, path, sizeof(path));
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	/* Never over an earlier one: a second bad file in the same second gets a suffix. */
	for (int i = 0; i < 100; i++) {
		struct stat st;

		if (i)
			snprintf(out, len, "%s.bad-%s-%d", path, stamp, i);
		else
			snprintf(out, len, "%s.bad-%s", path, stamp);
		if (lstat(out, &st) && errno == ENOENT)
			return rename(path, out) ? -errno : 0;
	}
	return -EEXIST;
}
