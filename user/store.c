// SPDX-License-Identifier: Apache-2.0
/* The daemon's durable state: the accepted objects, as one readable multi-document YAML file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest.h"
#include "store.h"

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

static int write_all(int fd, const char *buf, size_t len)
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

int kb_store_save(const char *dir, const struct kb_model *m)
{
	char path[4096], tmp[4200], hdr[512];
	int fd, dfd, err;

	err = mkdir_p(dir);
	if (err)
		return err;
	kb_store_path(dir, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	err = write_all(fd, "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n", 76);
	for (size_t i = 0; !err && i < m->nobjects; i++) {
		const struct kb_meta *o = m->objects[i];

		if (!o->src)
			continue;
		snprintf(hdr, sizeof(hdr), "---\n# from %s:%d\n", o->loc.file ? o->loc.file : "-", o->loc.line);
		err = write_all(fd, hdr, strlen(hdr));
		if (!err)
			err = write_all(fd, o->src, o->src_len);
		if (!err && (o->src_len == 0 || o->src[o->src_len - 1] != '\n'))
			err = write_all(fd, "\n", 1);
	}
	if (!err && fsync(fd))
		err = -errno;
	if (close(fd) && !err)
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

int kb_store_load(const char *dir, struct kb_model *m)
{
	char path[4096];

	kb_store_path(dir, path, sizeof(path));
	if (access(path, F_OK) && errno == ENOENT)
		return 0;
	return kb_manifest_load_path(m, path) < 0 ? -EIO : 0;
}
