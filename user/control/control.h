/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket's framing: one length-prefixed JSON request and one JSON reply per connection. */
#ifndef KB_CONTROL_H
#define KB_CONTROL_H

#include <stddef.h>
#include <json-c/json.h>

#define KB_SOCKET_DEFAULT "/run/kbackend/kbackend.sock"
/* Large enough for 10,000 Backends in one apply; anything bigger is refused unread. */
#define KB_CTL_MAX_MSG (64u << 20)
/* Control connections served at once; one more is answered `too many clients` and closed. */
#define KB_CTL_MAX_CLIENTS 64

/* The socket path: $KBACKEND_SOCKET, else the default. */
const char *kb_ctl_socket_path(const char *override);

/* Client: send req, wait for the reply (timeout_ms, 0 = none). Returns the reply or NULL with errno set. */
struct json_object *kb_ctl_call(const char *path, struct json_object *req, int timeout_ms);

/* As kb_ctl_call, passing pass_fd (a descriptor, e.g. a listening socket) along with the request. */
struct json_object *kb_ctl_call_fd(const char *path, struct json_object *req, int pass_fd, int timeout_ms);

/*
 * A read whose reply may be large: the request is sent with "stream": true,
 * and on_item(ctx, item) is called for every item as its frame arrives (item
 * is freed after the call; a nonzero return stops the read). A daemon that
 * answers in one frame (an older one, or a refusal) has the items of its
 * "frontends" or "items" array passed the same way. timeout_ms bounds the wait
 * for each frame, not the whole read. Returns the last word: the trailer
 * ({"ok": true, "count": N} or an error, with "retry": true when the state
 * changed during the read) or the one-frame reply; NULL with errno set.
 * A request with "rows" may be answered with text rows instead of items (the
 * header says "rows": true): each item's rows are passed to on_rows (its text
 * may be changed in place).
 */
struct json_object *kb_ctl_call_stream(const char *path, struct json_object *req, int timeout_ms,
				       int (*on_item)(void *ctx, struct json_object *item),
				       int (*on_rows)(void *ctx, char *text, size_t len), void *ctx);

/* Both sides: write one frame (4-byte big-endian length, then the bytes). 0 or -errno. */
int kb_ctl_write_frame(int fd, const char *buf, size_t len);
/* The same, with pass_fd (>= 0) sent as SCM_RIGHTS along with the first bytes. */
int kb_ctl_write_frame_fd(int fd, const char *buf, size_t len, int pass_fd);

/* One frame (the 4-byte length, then buf) in a new buffer of *out_len bytes, for a nonblocking writer; NULL when out of memory. */
char *kb_ctl_frame(const char *buf, size_t len, size_t *out_len);

/*
 * Server-side incremental reader for one connection. Feed it until it returns
 * 1 (a whole frame is in msg/len), 0 (need more), or -errno (-EMSGSIZE for an
 * oversized frame, -EPIPE for a peer that closed mid-frame).
 */
struct kb_frame_reader {
	unsigned char hdr[4];
	size_t got;		/* bytes of header + body read so far */
	size_t len;		/* body length, valid once got >= 4 */
	char *msg;		/* body, NUL-terminated once complete */
	int fds[4];		/* descriptors passed with the request (SCM_RIGHTS), nfds of them; reset closes them */
	int nfds;
};

int kb_frame_read(int fd, struct kb_frame_reader *r);
void kb_frame_reset(struct kb_frame_reader *r);

/*
 * Daemon side: a request frame msg (len bytes, NUL-terminated JSON first) may
 * carry its files' contents raw after the JSON's NUL (each file {"name",
 * "bytes": N}); they are put back as each file's "content". 0, or -EINVAL when
 * the sizes do not add up.
 */
int kb_ctl_request_contents(struct json_object *req, const char *msg, size_t len);

/* A reply {"ok": false, "error": msg}. */
struct json_object *kb_ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* KB_CONTROL_H */
