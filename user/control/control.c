// SPDX-License-Identifier: Apache-2.0
/* The control socket's framing: one length-prefixed JSON request and one JSON reply per connection. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/control.h"
#include "util.h"

const char *kb_ctl_socket_path(const char *override)
{
	const char *env = getenv("KBACKEND_SOCKET");

	if (override)
		return override;
	return env && *env ? env : KB_SOCKET_DEFAULT;
}

int kb_ctl_write_frame(int fd, const char *buf, size_t len)
{
	return kb_ctl_write_frame_fd(fd, buf, len, -1);
}

int kb_ctl_write_frame_fd(int fd, const char *buf, size_t len, int pass_fd)
{
	unsigned char hdr[4] = { len >> 24, len >> 16, len >> 8, len };
	struct iovec iov[2] = { { hdr, 4 }, { (void *)buf, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	size_t total = len + 4;

	if (pass_fd >= 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	while (total) {
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);

		/* The descriptor rides with the first bytes only. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		total -= (size_t)n;
		/* Advance the iovecs past what was sent. */
		while (n > 0 && mh.msg_iovlen) {
			if ((size_t)n >= mh.msg_iov[0].iov_len) {
				n -= (ssize_t)mh.msg_iov[0].iov_len;
				mh.msg_iov++;
				mh.msg_iovlen--;
			} else {
				mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + n;
				mh.msg_iov[0].iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

char *kb_ctl_frame(const char *buf, size_t len, size_t *out_len)
{
	char *f = malloc(len + 4);

	if (!f)
		return NULL;
	f[0] = (char)(len >> 24);
	f[1] = (char)(len >> 16);
	f[2] = (char)(len >> 8);
	f[3] = (char)len;
	memcpy(f + 4, buf, len);
	*out_len = len + 4;
	return f;
}

void kb_frame_reset(struct kb_frame_reader *r)
{
	free(r->msg);
	for (int i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	memset(r, 0, sizeof(*r));
}

/* read() that also keeps descriptors passed with the bytes (closing any beyond the reader's room). */
static ssize_t frame_recv(int fd, struct kb_frame_reader *r, void *buf, size_t len)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

	if (n < 0) {
		/* Not a socket (a pipe in a test): plain read. */
		if (errno == ENOTSOCK)
			return read(fd, buf, len);
		return n;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int pfd;

			memcpy(&pfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (r->nfds < (int)(sizeof(r->fds) / sizeof(r->fds[0])))
				r->fds[r->nfds++] = pfd;
			else
				close(pfd);
		}
	}
	return n;
}

int kb_frame_read(int fd, struct kb_frame_reader *r)
{
	for (;;) {
		ssize_t n;

		if (r->got < 4) {
			n = frame_recv(fd, r, r->hdr + r->got, 4 - r->got);
		} else {
			if (!r->msg) {
				r->len = (size_t)r->hdr[0] << 24 | (size_t)r->hdr[1] << 16 | (size_t)r->hdr[2] << 8 |
					 r->hdr[3];
				if (r->len > KB_CTL_MAX_MSG)
					return -EMSGSIZE;
				r->msg = malloc(r->len + 1);
				if (!r->msg)
					return -ENOMEM;
			}
			if (r->got - 4 == r->len) {
				r->msg[r->len] = '\0';
				return 1;
			}
			n = frame_recv(fd, r, r->msg + (r->got - 4), r->len - (r->got - 4));
		}
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno == EINTR ? 0 : -errno;
		if (n == 0)
			return -EPIPE;
		r->got += (size_t)n;
	}
}

struct json_object *kb_ctl_call(const char *path, struct json_object *req, int timeout_ms)
{
	return kb_ctl_call_fd(path, req, -1, timeout_ms);
}

/*
 * A request's file contents travel after its JSON, raw: the frame is the JSON
 * text, a NUL, then each file's bytes in order, the file saying "bytes": N
 * where it said "content". JSON-escaping a 10 MB manifest and parsing it back
 * cost about a quarter of a second of a 10,000-Backend apply. req comes back
 * as it was.
 */
static char *request_frame(struct json_object *req, size_t *len)
{
	struct json_object *files = NULL, **moved = NULL;
	size_t n = 0, tail = 0, jlen, off;
	const char *js;
	char *buf = NULL;

	if (json_object_object_get_ex(req, "files", &files) && json_object_is_type(files, json_type_array))
		n = json_object_array_length(files);
	moved = calloc(n ? n : 1, sizeof(*moved));
	if (!moved)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(files, i), *c;

		if (!json_object_is_type(f, json_type_object) || !json_object_object_get_ex(f, "content", &c) ||
		    !json_object_is_type(c, json_type_string))
			continue;
		moved[i] = json_object_get(c);
		json_object_object_del(f, "content");
		json_object_object_add(f, "bytes", json_object_new_int64(json_object_get_string_len(c)));
		tail += (size_t)json_object_get_string_len(c);
	}
	js = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	jlen = strlen(js);
	*len = jlen + (tail ? 1 + tail : 0);
	if (*len > KB_CTL_MAX_MSG) {
		errno = EMSGSIZE;
		goto out;
	}
	buf = malloc(*len + 1);
	if (!buf)
		goto out;
	memcpy(buf, js, jlen + 1);
	off = jlen + 1;
	for (size_t i = 0; i < n; i++) {
		if (!moved[i])
			continue;
		memcpy(buf + off, json_object_get_string(moved[i]), (size_t)json_object_get_string_len(moved[i]));
		off += (size_t)json_object_get_string_len(moved[i]);
	}
out:
	/* Put the contents back: a caller may send the same request again. */
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(files, i);

		if (!moved[i])
			continue;
		json_object_object_del(f, "bytes");
		json_object_object_add(f, "content", moved[i]);
	}
	free(moved);
	return buf;
}

int kb_ctl_request_contents(struct json_object *req, const char *msg, size_t len)
{
	struct json_object *files;
	size_t off = strlen(msg) + 1;

	if (!json_object_object_get_ex(req, "files", &files) || !json_object_is_type(files, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(files); i++) {
		struct json_object *f = json_object_array_get_idx(files, i), *b;
		int64_t n;

		if (!json_object_is_type(f, json_type_object) || !json_object_object_get_ex(f, "bytes", &b))
			continue;
		n = json_object_get_int64(b);
		if (!json_object_is_type(b, json_type_int) || n < 0 || off > len || (uint64_t)n > len - off)
			return -EINVAL;
		json_object_object_add(f, "content", json_object_new_string_len(msg + off, (int)n));
		off += (size_t)n;
	}
	return 0;
}

/* Connect to path and send req (with pass_fd, if >= 0). The socket, or -1 with errno set. */
static int call_send(const char *path, struct json_object *req, int pass_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *s;
	size_t len;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out_close;
	s = request_frame(req, &len);
	if (!s)
		goto out_close;
	err = kb_ctl_write_frame_fd(fd, s, len, pass_fd);
	free((char *)s);
	/* A daemon that refuses this peer answers without reading and closes: its reply is still readable. */
	if (err && err != -EPIPE && err != -ECONNRESET) {
		errno = -err;
		goto out_close;
	}
	return fd;
out_close:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* Read the next whole frame into r (reset first), waiting at most timeout_ms (0: no bound). 0 or -1 with errno. */
static int call_frame(int fd, struct kb_frame_reader *r, int timeout_ms)
{
	long deadline = timeout_ms ? kb_now_ms() + timeout_ms : 0;

	kb_frame_reset(r);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = deadline ? (int)(deadline - kb_now_ms()) : -1, err;

		if (deadline && left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&p, 1, left) < 0 && errno != EINTR)
			return -1;
		err = kb_frame_read(fd, r);
		if (err < 0) {
			errno = -err == EPIPE ? ECONNRESET : -err;
			return -1;
		}
		if (err == 1)
			return 0;
	}
}

/* One frame's JSON; tok (NULL: a fresh one) is reused across a stream's frames, which saves its setup per item. */
static struct json_object *frame_json(const struct kb_frame_reader *r, struct json_tokener *tok)
{
	struct json_object *o;

	if (!tok) {
		o = json_tokener_parse(r->msg);
	} else {
		json_tokener_reset(tok);
		o = json_tokener_parse_ex(tok, r->msg, (int)r->len);
		if (o && json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(o);
			o = NULL;
		}
	}
	if (!o)
		errno = EBADMSG;
	return o;
}

struct json_object *kb_ctl_call_fd(const char *path, struct json_object *req, int pass_fd, int timeout_ms)
{
	struct kb_frame_reader r = { 0 };
	struct json_object *reply = NULL;
	int fd = call_send(path, req, pass_fd), err;

	if (fd < 0)
		return NULL;
	if (!call_frame(fd, &r, timeout_ms))
		reply = frame_json(&r, NULL);
	err = errno;
	kb_frame_reset(&r);
	close(fd);
	errno = err;
	return reply;
}

/* A one-frame reply's items, passed to on_item one by one (the reply keeps them). */
static int feed_whole(struct json_object *reply, int (*on_item)(void *, struct json_object *), void *ctx)
{
	struct json_object *arr = NULL;

	if (!json_object_object_get_ex(reply, "frontends", &arr))
		json_object_object_get_ex(reply, "items", &arr);
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (on_item(ctx, json_object_array_get_idx(arr, i)))
			return -1;
	return 0;
}

struct json_object *kb_ctl_call_stream(const char *path, struct json_object *req, int timeout_ms,
				       int (*on_item)(void *ctx, struct json_object *item),
				       int (*on_rows)(void *ctx, char *text, size_t len), void *ctx)
{
	struct kb_frame_reader r = { 0 };
	struct json_object *head = NULL, *last = NULL, *v;
	struct json_tokener *tok = json_tokener_new();
	bool rows;
	int fd, err;

	if (!tok)
		return NULL;
	json_object_object_add(req, "stream", json_object_new_boolean(1));
	fd = call_send(path, req, -1);
	if (fd < 0) {
		json_tokener_free(tok);
		return NULL;
	}
	if (call_frame(fd, &r, timeout_ms) || !(head = frame_json(&r, NULL)))
		goto out;
	if (!json_object_object_get_ex(head, "stream", &v) || !json_object_get_boolean(v)) {
		/* One frame: an older daemon, or a refusal. */
		if (feed_whole(head, on_item, ctx)) {
			errno = ECANCELED;
			goto out;
		}
		last = json_object_get(head);
		goto out;
	}
	rows = json_object_object_get_ex(head, "rows", &v) && json_object_get_boolean(v);
	if (rows && !on_rows) {
		errno = EBADMSG;
		goto out;
	}
	for (;;) {
		struct json_object *it;

		if (call_frame(fd, &r, timeout_ms))
			goto out;
		if (!r.len)
			break;	/* the end of the items; the trailer follows */
		if (rows) {
			err = on_rows(ctx, r.msg, r.len);
		} else {
			if (!(it = frame_json(&r, tok)))
				goto out;
			err = on_item(ctx, it);
			json_object_put(it);
		}
		if (err) {
			errno = ECANCELED;
			goto out;
		}
	}
	if (!call_frame(fd, &r, timeout_ms))
		last = frame_json(&r, NULL);
out:
	err = errno;
	json_tokener_free(tok);
	json_object_put(head);
	kb_frame_reset(&r);
	close(fd);
	errno = err;
	return last;
}

struct json_object *kb_ctl_error(const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(buf));
	return o;
}
