// SPDX-License-Identifier: Apache-2.0
/* `kbackend register`: hand a sidecar's listening socket to the daemon, so sk_lookup steers a frontend's connections to it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control/control.h"
#include "ctl_int.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define LISTEN_FDS_START 3	/* systemd's socket activation hands its first socket over as fd 3 */

static int register_fail(bool json, const char *fmt, const char *a, const char *b)
{
	char buf[512];

	snprintf(buf, sizeof(buf), fmt, a, b);
	if (json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "error", json_object_new_string(buf));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
	} else {
		fprintf(stderr, "kbackend: register: %s\n", buf);
	}
	return 1;
}

/* A copy of fd `fd` of process pid (pidfd_getfd: needs ptrace rights over it, as root has). */
static int take_fd(long pid, int fd)
{
	int pfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0), got, err;

	if (pfd < 0)
		return -errno;
	got = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
	err = errno;
	close(pfd);
	return got < 0 ? -err : got;
}

int ctl_cmd_register(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "fd", required_argument, NULL, 'f' },
		{ "pid", required_argument, NULL, 'p' },
		{ "remove", no_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	long fd = LISTEN_FDS_START, pid = 0;
	bool remove = false, json = false;
	const char *sock = NULL, *fe;
	struct json_object *req, *reply, *v;
	char *end;
	int ch, pass = -1, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'f':
		case 'p':
			errno = 0;
			*(ch == 'f' ? &fd : &pid) = strtol(optarg, &end, 10);
			if (errno || *end || (ch == 'f' ? fd < 0 : pid <= 0))
				return ctl_usage_error("register", "--%s %s: expected a number", ch == 'f' ? "fd" : "pid",
						       optarg);
			break;
		case 'r':
			remove = true;
			break;
		case 's':
			sock = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json"))
				return ctl_usage_error("register", "-o %s: only json is supported", optarg);
			json = true;
			break;
		case 'h':
			printf("Usage: kbackend register ADDR:PORT [--fd N] [--pid PID] [--remove] [--socket PATH] [-o json]\n"
			       "  make a listening TCP socket the target of connections that arrive for a frontend.\n"
			       "  The socket is fd N (default 3, as systemd socket activation passes it) of this\n"
			       "  process, or of process PID with --pid. --remove forgets the frontend's socket.\n\n"
			       "EXAMPLES\n"
			       "  systemd-socket-activate -l 127.0.0.1:9000 kbackend register 198.18.0.20:80\n"
			       "  kbackend register 198.18.0.20:80 --pid $(pidof sidecar) --fd 5\n");
			return 0;
		default:
			return ctl_usage_error("register", "unknown option");
		}
	}
	if (optind != argc - 1)
		return ctl_usage_error("register", "expected one frontend ADDR:PORT");
	fe = argv[optind];
	if (!remove) {
		if (pid) {
			pass = take_fd(pid, (int)fd);
			if (pass < 0) {
				char what[64];

				snprintf(what, sizeof(what), "fd %ld of process %ld", fd, pid);
				return register_fail(json, "failed to take %s: %s", what, strerror(-pass));
			}
		} else {
			pass = (int)fd;
		}
	}
	req = json_object_new_object();
	json_object_object_add(req, "op", json_object_new_string(remove ? "unregister" : "register"));
	json_object_object_add(req, "frontend", json_object_new_string(fe));
	reply = kb_ctl_call_fd(kb_ctl_socket_path(sock), req, pass, CALL_TIMEOUT_MS);
	json_object_put(req);
	if (pid && pass >= 0)
		close(pass);
	if (!reply)
		return register_fail(json, "failed to reach the daemon: %s%s", strerror(errno), "");
	if (!json_object_object_get_ex(reply, "ok", &v) || !json_object_get_boolean(v)) {
		rc = register_fail(json, "%s%s",
				   json_object_object_get_ex(reply, "error", &v) ? json_object_get_string(v) : "refused",
				   "");
		json_object_put(reply);
		return rc;
	}
	if (json)
		printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY));
	else
		printf("%s %s\n", fe, remove ? "unregistered" : "registered");
	json_object_put(reply);
	return 0;
}
