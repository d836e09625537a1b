// SPDX-License-Identifier: Apache-2.0
/* e2e: the daemon's control socket: bad requests and foreign uids, refused applies, stalled and surplus control clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"
#include "store/store.h"
#include "util.h"

/* The node, its endpoints and the daemon: e2e_node.h. */

/* ---- the control socket by hand ---- */

/* Read one reply frame within 10 s: 1 with *reply set, 0 when the daemon closed without one, -errno. */
static int ctl_read(int fd, struct json_object **reply)
{
	struct kb_frame_reader r = { 0 };
	long deadline = kb_now_ms() + 10000;
	int ret;

	*reply = NULL;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - kb_now_ms();
		int err;

		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		err = kb_frame_read(fd, &r);
		if (err == 0)
			continue;
		if (err == 1) {
			*reply = json_tokener_parse(r.msg);
			ret = *reply ? 1 : -EBADMSG;
		} else {
			ret = r.got == 0 && (err == -EPIPE || err == -ECONNRESET) ? 0 : err;
		}
		break;
	}
	kb_frame_reset(&r);
	return ret;
}

static void send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Send raw bytes, then read what comes back. Returns the reply (or NULL if the daemon just closed). */
static struct json_object *raw_exchange(const void *buf, size_t len, bool shut)
{
	struct json_object *reply;
	int fd = ctl_connect(), r;

	assert_true(fd >= 0);
	send_all(fd, buf, len);
	if (shut)
		shutdown(fd, SHUT_WR);
	r = ctl_read(fd, &reply);
	close(fd);
	assert_true(r >= 0);
	return reply;
}

static void assert_refused_reply(struct json_object *reply, const char *needle)
{
	if (!reply)
		fail_msg("no reply");
	if (e2e_reply_ok(reply) || !*e2e_jstr(reply, "error"))
		fail_msg("expected an error reply, got %s", json_object_to_json_string(reply));
	if (needle && !strstr(e2e_jstr(reply, "error"), needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e2e_jstr(reply, "error"), needle);
	json_object_put(reply);
}

static void assert_serves(long objects)
{
	struct json_object *st = ctl("status", 5000);

	if (!e2e_reply_ok(st))
		fail_msg("daemon stopped serving: %s", st ? json_object_to_json_string(st) : strerror(errno));
	assert_int_equal(e2e_jint(st, "objects"), objects);
	json_object_put(st);
	assert_true(waitpid(E.daemon, NULL, WNOHANG) == 0);
}

/*
 * As uid/gid 65534: a status call through kb_ctl_call (raw: connect and read
 * whatever the daemon says unasked). "E<errno>" or the reply's JSON in out.
 */
static void call_as_nobody(bool raw, char *out, size_t len)
{
	int p[2];
	pid_t pid;
	ssize_t n;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct json_object *r = NULL;
		char res[1024];

		e2e_child_init();
		close(p[0]);
		alarm(20);
		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(1);
		if (raw) {
			int fd = ctl_connect(), got = fd < 0 ? fd : ctl_read(fd, &r);

			errno = got < 0 ? -got : EPIPE;
		} else {
			r = ctl("status", 10000);
		}
		if (r)
			snprintf(res, sizeof(res), "%s", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
		else
			snprintf(res, sizeof(res), "E%d", errno);
		if (write(p[1], res, strlen(res)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], out, len - 1);
	out[n > 0 ? n : 0] = '\0';
	close(p[0]);
	waitpid(pid, NULL, 0);
}

/* ---- tests ---- */

/* Refused applies (SSRF, YAML syntax, partly valid) change nothing: maps, get, stored state, traffic. */
static void test_refused_apply_changes_nothing(void **state)
{
	static const char yaml_broken[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e4\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints: [ { ip: { address: 198.51.100.4, port: 8080 }\n"
		"    - broken: [\n";
	static const char yaml_partly[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e4\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip:\n"
		"        address: 198.51.100.4\n"
		"        port: 8080\n"
		"---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e2\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip:\n"
		"        address: 169.254.169.254\n"
		"        port: 80\n";
	/* The node's own address (its veth in the node netns): refused by the SSRF guard's node rule. */
	static const char yaml_node[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e5\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip:\n"
		"        address: 198.51.100.254\n"
		"        port: 8080\n";
	static char loopback[16384];
	const int w[NEPS] = { 1, 1, 0 };
	const char *files[4] = { loopback, yaml_broken, yaml_partly, yaml_node };
	char path[PATH_MAX + 32], statefile[PATH_MAX + 32], *map0, *map1, *get0, *get1, *fe0, *fe1, *state0, *state1;
	struct json_object *st, *reply;
	long errors0, applies0;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	yaml_all(loopback, sizeof(loopback), w, "127.0.0.1");

	st = ctl("status", 5000);
	errors0 = e2e_jint(st, "applyErrors");
	applies0 = e2e_jint(st, "applies");
	json_object_put(st);
	/* The log: a refused change appends nothing to it. */
	snprintf(statefile, sizeof(statefile), "%s/%s", E.env.state, KB_STATE_LOG);
	map0 = dump_frontends_map();
	assert_non_null(strchr(map0, '\n'));
	assert_int_equal(CLI(&get0, "get", "all", "-A", "-o", "json"), 0);
	assert_int_equal(CLI(&fe0, "get", "frontends", "-o", "json"), 0);
	state0 = e2e_read_text(statefile);
	assert_non_null(state0);

	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/refused-%d.yaml", E.env.tmp, i);
		assert_int_equal(e2e_write_file(path, files[i]), 0);
		reply = CLI_JSON(&rc, "apply", "-f", path);
		if (rc != 1 || e2e_reply_ok(reply))
			fail_msg("refused apply %d: exit %d, %s", i, rc, json_object_to_json_string(reply));
		if (i == 3 && !strstr(json_object_to_json_string(reply), "node"))
			fail_msg("node address: the refusal does not say why: %s", json_object_to_json_string(reply));
		json_object_put(reply);
	}

	map1 = dump_frontends_map();
	assert_int_equal(CLI(&get1, "get", "all", "-A", "-o", "json"), 0);
	assert_int_equal(CLI(&fe1, "get", "frontends", "-o", "json"), 0);
	state1 = e2e_read_text(statefile);
	assert_string_equal(map0, map1);
	assert_string_equal(get0, get1);
	assert_string_equal(fe0, fe1);
	assert_non_null(state1);
	assert_string_equal(state0, state1);
	assert_null(strstr(get1, "\"e4\""));
	free(map0);
	free(map1);
	free(get0);
	free(get1);
	free(fe0);
	free(fe1);
	free(state0);
	free(state1);

	st = ctl("status", 5000);
	assert_int_equal(e2e_jint(st, "applyErrors"), errors0 + 4);
	assert_int_equal(e2e_jint(st, "applies"), applies0);
	json_object_put(st);

	s = connect_n(100, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 100);
}

/* A file that mixes in kinds kbackend does not use applies: they are stored as written, shown Ignored, and deleted. */
static void test_mixed_kinds_apply(void **state)
{
	static const char yaml[] =
		"apiVersion: v1\nkind: Secret\nmetadata: {name: mixed, namespace: default}\ndata: {k: dg==}\n"
		"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: mixed}\ndata: {k: v}\n"
		"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: HTTPRouteFilter\nmetadata: {name: mixed}\nspec: {}\n"
		"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: mixed}\n"
		"spec:\n  endpoints:\n    - ip: {address: 203.0.113.9, port: 8080}\n";
	char path[PATH_MAX + 32], *saved, *get;
	struct json_object *reply;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	write_yaml(path, sizeof(path), "mixed.yaml", yaml);
	reply = CLI_JSON(&rc, "apply", "-f", path);
	if (rc != 0 || !e2e_reply_ok(reply))
		fail_msg("mixed apply: exit %d, %s", rc, json_object_to_json_string(reply));
	json_object_put(reply);
	/* The stored state (snapshot and log) as the operator reads it. */
	assert_int_equal(CLI(&saved, "dump-state", "--state-dir", E.env.state), 0);
	assert_non_null(strstr(saved, "kind: Secret\n"));
	assert_non_null(strstr(saved, "kind: HTTPRouteFilter\n"));
	free(saved);
	assert_int_equal(CLI(&get, "get", "all", "-o", "json"), 0);
	assert_non_null(strstr(get, "kbackend does not use Secret (v1): the object is read and ignored"));
	assert_non_null(strstr(get, "kbackend does not use ConfigMap (v1): the object is read and ignored"));
	free(get);

	reply = CLI_JSON(&rc, "delete", "-f", path);
	if (rc != 0 || !e2e_reply_ok(reply))
		fail_msg("mixed delete: exit %d, %s", rc, json_object_to_json_string(reply));
	json_object_put(reply);
	assert_int_equal(CLI(&saved, "dump-state", "--state-dir", E.env.state), 0);
	assert_non_null(strstr(saved, "kind: Backend\n"));
	assert_null(strstr(saved, "kind: Secret\n"));
	free(saved);
	s = connect_n(20, false);
	e2e_assert_no_failure(s);
}

/* How many times needle occurs in the file at path. */
static int count_in_file(const char *path, const char *needle)
{
	char line[4096];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/*
 * 150 objects: the table reply counts the plainly Accepted ones instead of
 * listing them, -o json lists all; a re-apply of the same text is not parsed.
 */
static void test_large_apply_reply(void **state)
{
	static const char unparsed[] = "unchanged text, not parsed";
	char path[PATH_MAX + 32], *out, *yaml, *p;
	struct json_object *reply, *items;
	size_t cap = 150 * 256;
	int rc, seen;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	p = yaml = malloc(cap);
	assert_non_null(yaml);
	for (int i = 0; i < 150; i++)
		p += snprintf(p, cap - (size_t)(p - yaml),
			      "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: big-%d\n"
			      "spec:\n  endpoints:\n    - ip:\n        address: 203.0.113.%d\n        port: 8080\n",
			      i, 1 + i % 200);
	write_yaml(path, sizeof(path), "large.yaml", yaml);
	free(yaml);
	assert_int_equal(CLI(&out, "apply", "-f", path), 0);
	if (!strstr(out, "150 object(s): 150 accepted, 0 refused, 0 other; the 150 accepted are not listed") ||
	    strstr(out, "big-7 "))
		fail_msg("a 150-object apply's table: %s", out);
	free(out);
	seen = count_in_file(E.env.log, unparsed);
	/* The same text again: recognised from its bytes (and still answered briefly). */
	assert_int_equal(CLI(&out, "apply", "-f", path), 0);
	assert_non_null(strstr(out, "150 object(s): 150 accepted"));
	free(out);
	assert_int_equal(count_in_file(E.env.log, unparsed), seen + 1);
	reply = CLI_JSON(&rc, "apply", "-f", path);
	items = e2e_jget(e2e_jget(reply, "objects"), "items");
	if (rc != 0 || !items || json_object_array_length(items) != 150 || e2e_jget(reply, "summary"))
		fail_msg("-o json of a 150-object apply lists every object: %s", json_object_to_json_string(reply));
	json_object_put(reply);
	reply = CLI_JSON(&rc, "delete", "-f", path);
	if (rc != 0 || !e2e_reply_ok(reply))
		fail_msg("delete of the 150: exit %d, %s", rc, json_object_to_json_string(reply));
	json_object_put(reply);
}

/* A pinned map of the daemon's dataplane, opened by path. */
static int daemon_map(const char *name)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", E.env.bpffs, name);
	return bpf_obj_get(path);
}

/* The verify op: no difference on the state the daemon programmed; a slot written behind its back is named. */
static void test_verify_op(void **state)
{
	struct json_object *reply, *diffs;
	struct kb_frontend_key key = { .port = htons(FE_PORT), .family = AF_INET, .proto = KB_PROTO_TCP };
	struct kb_frontend v;
	struct kb_slot sl, was;
	int fefd, slfd;
	__u32 k;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	reply = ctl("verify", 10000);
	assert_true(e2e_reply_ok(reply));
	diffs = e2e_jget(reply, "differences");
	if (!diffs || json_object_array_length(diffs) != 0 || e2e_jint(reply, "frontends") < 1)
		fail_msg("verify on a programmed state: %s", json_object_to_json_string(reply));
	json_object_put(reply);

	inet_pton(AF_INET, FE_ADDR, key.ip);
	fefd = daemon_map("frontends");
	slfd = daemon_map("slots");
	assert_true(fefd >= 0 && slfd >= 0);
	assert_int_equal(bpf_map_lookup_elem(fefd, &key, &v), 0);
	assert_true(v.nslots > 0);
	k = v.slot_base;
	assert_int_equal(bpf_map_lookup_elem(slfd, &k, &sl), 0);
	was = sl;
	inet_pton(AF_INET, "198.51.100.250", sl.ip);
	assert_int_equal(bpf_map_update_elem(slfd, &k, &sl, BPF_ANY), 0);
	reply = ctl("verify", 10000);
	diffs = e2e_jget(reply, "differences");
	if (e2e_reply_ok(reply) || !diffs || json_object_array_length(diffs) < 1 ||
	    !strstr(json_object_get_string(json_object_array_get_idx(diffs, 0)),
		    "maps: " FE_ADDR ":80/tcp: slot 0 is 198.51.100.250:8080, the compile says "))
		fail_msg("verify after a slot was overwritten: %s", json_object_to_json_string(reply));
	json_object_put(reply);
	/* Put it back for the tests after this one: the daemon's shadow still holds the slot it wrote. */
	assert_int_equal(bpf_map_update_elem(slfd, &k, &was, BPF_ANY), 0);
	close(fefd);
	close(slfd);
	reply = ctl("verify", 10000);
	diffs = e2e_jget(reply, "differences");
	assert_true(e2e_reply_ok(reply) && diffs && json_object_array_length(diffs) == 0);
	json_object_put(reply);
}

/* Garbage, non-JSON, oversized, truncated and foreign-uid requests: each is answered or dropped, and the daemon serves on. */
static void test_bad_control_requests(void **state)
{
	static const unsigned char garbage[] = "GET / HTTP/1.1\r\nHost: kbackend\r\n\r\n\xff\xfe\x00\x01garbage";
	static const unsigned char binary[] = { 0, 0, 0, 12, 0xff, 0xfe, 0, 1, '{', 'o', 'p', 0, 0x80, 0xc3, '(', '}' };
	static const unsigned char oversized[] = { 0x04, 0x00, 0x00, 0x01, '{' };	/* 64 MiB + 1 */
	static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xff };
	static const unsigned char empty[] = { 0, 0, 0, 0 };
	unsigned char trunc[14] = { 0, 0, 0, 100, '{', '"', 'o', 'p', '"', ':', '"', 's', 't', 'a' };
	struct json_object *st, *reply;
	char out[1024], out2[1024], want[32];
	long objects;
	int fd, slow;

	NEED_ENV();
	daemon_ensure();
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	objects = e2e_jint(st, "objects");
	json_object_put(st);

	/* Garbage bytes (its first four read as a length far over the limit). */
	reply = raw_exchange(garbage, sizeof(garbage) - 1, true);
	if (reply)
		assert_refused_reply(reply, NULL);
	assert_serves(objects);

	/* A well-formed frame whose body is binary, not JSON. */
	assert_refused_reply(raw_exchange(binary, sizeof(binary), false), "malformed");
	assert_serves(objects);

	/* JSON, but not a request. */
	{
		const char *bodies[] = { "[1,2,3]", "{\"op\":42}", "{\"op\":\"reboot\"}", "{\"op\":\"apply\",\"files\":7}",
					 "{\"op\":\"apply\",\"files\":[{\"name\":1}]}", "\"status\"" };

		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			fd = ctl_connect();
			assert_true(fd >= 0);
			assert_int_equal(kb_ctl_write_frame(fd, bodies[i], strlen(bodies[i])), 0);
			assert_true(ctl_read(fd, &reply) == 1);
			close(fd);
			assert_refused_reply(reply, NULL);
			assert_serves(objects);
		}
	}

	/* The files' bytes after the JSON (the CLI's form), not adding up: more claimed than sent, a negative size, a string size. */
	{
		static const char short_tail[] = "{\"op\":\"apply\",\"files\":[{\"name\":\"a.yaml\",\"bytes\":100}]}\0kind: x\n";
		static const char neg[] = "{\"op\":\"apply\",\"files\":[{\"name\":\"a.yaml\",\"bytes\":-1}]}\0";
		static const char str[] = "{\"op\":\"apply\",\"files\":[{\"name\":\"a.yaml\",\"bytes\":\"2\"}]}\0ab";
		const char *bodies[] = { short_tail, neg, str };
		size_t lens[] = { sizeof(short_tail) - 1, sizeof(neg) - 1, sizeof(str) - 1 };

		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			fd = ctl_connect();
			assert_true(fd >= 0);
			assert_int_equal(kb_ctl_write_frame(fd, bodies[i], lens[i]), 0);
			assert_true(ctl_read(fd, &reply) == 1);
			close(fd);
			assert_refused_reply(reply, "sizes do not match");
			assert_serves(objects);
		}
	}

	/* A zero-length frame. */
	assert_refused_reply(raw_exchange(empty, sizeof(empty), false), "malformed");
	assert_serves(objects);

	/* Length headers over the 64 MiB limit are refused unread. */
	assert_refused_reply(raw_exchange(oversized, sizeof(oversized), false), "too large");
	assert_serves(objects);
	assert_refused_reply(raw_exchange(huge, sizeof(huge), false), "too large");
	assert_serves(objects);

	/* Truncated: the header says 100 bytes, 10 come, then the client goes away. */
	fd = ctl_connect();
	assert_true(fd >= 0);
	send_all(fd, trunc, sizeof(trunc));
	close(fd);
	assert_serves(objects);

	/* A client that stalls mid-frame does not hold up the others. */
	slow = ctl_connect();
	assert_true(slow >= 0);
	send_all(slow, trunc, 2);
	{
		long t0 = kb_now_ms();

		assert_serves(objects);
		assert_true(kb_now_ms() - t0 < 2000);
	}
	close(slow);
	assert_serves(objects);

	/* Another uid: the 0600 socket (in a 0700 directory) refuses it, or the daemon does. */
	call_as_nobody(false, out, sizeof(out));
	snprintf(want, sizeof(want), "E%d", EACCES);
	if (strcmp(out, want)) {
		reply = json_tokener_parse(out);
		if (!reply)
			fail_msg("uid 65534: unexpected result %s", out);
		assert_refused_reply(reply, "permission");
	}
	assert_serves(objects);

	/* Opened up by hand: the daemon's own peer check refuses the uid. */
	assert_int_equal(chmod(E.env.tmp, 0711), 0);
	assert_int_equal(chmod(E.env.sock, 0666), 0);
	call_as_nobody(true, out, sizeof(out));
	call_as_nobody(false, out2, sizeof(out2));
	chmod(E.env.sock, 0600);
	chmod(E.env.tmp, 0700);
	reply = json_tokener_parse(out);
	if (!reply)
		fail_msg("uid 65534 through a 0666 socket: expected the daemon's refusal, got %s", out);
	assert_refused_reply(reply, "permission");
	/* The same refusal reaches a client that sent its request first (as the CLI does). */
	reply = json_tokener_parse(out2);
	if (!reply)
		fail_msg("uid 65534 through a 0666 socket, kb_ctl_call: expected the daemon's refusal, got %s", out2);
	assert_refused_reply(reply, "permission");
	assert_serves(objects);

	/* Still steering. */
	{
		struct e2e_sum s = connect_n(20, false);

		e2e_assert_no_failure(s);
		assert_int_equal(s.total_ok, 20);
	}
}

/* Stalled control clients: their fds, closed after the test even when it fails. */
#define STALL_BIG 40
#define STALL_IDLE 10
static int stall_fds[KB_CTL_MAX_CLIENTS + STALL_BIG + STALL_IDLE + 1];
static int nstall_fds;

static int stall_teardown(void **state)
{
	for (int i = 0; i < nstall_fds; i++)
		close(stall_fds[i]);
	nstall_fds = 0;
	return test_teardown(state);
}

static int stall_connect(void)
{
	int fd = ctl_connect();

	assert_true(fd >= 0);
	assert_true(nstall_fds < (int)(sizeof(stall_fds) / sizeof(stall_fds[0])));
	stall_fds[nstall_fds++] = fd;
	return fd;
}

static void stall_close_all(void)
{
	for (int i = 0; i < nstall_fds; i++)
		close(stall_fds[i]);
	nstall_fds = 0;
}

/* Wait until every fd of fds[0..n-1] shows events, bounded; how many did. */
static int wait_events(const int *fds, int n, short events, long timeout_ms)
{
	long deadline = kb_now_ms() + timeout_ms;
	int ready;

	for (;;) {
		ready = 0;
		for (int i = 0; i < n; i++) {
			struct pollfd p = { .fd = fds[i], .events = events };

			ready += poll(&p, 1, 0) == 1 && (p.revents & events);
		}
		if (ready == n || kb_now_ms() > deadline)
			return ready;
		e2e_sleep_ms(20);
	}
}

static long control_clients(const char *what)
{
	struct json_object *st = ctl("status", 5000);
	long n = e2e_jint(e2e_jget(st, "controlClients"), what);

	json_object_put(st);
	return n;
}

/*
 * Control clients that send a request with a large reply and never read, or
 * send nothing, or half a frame, do not hold up the daemon: status answers
 * within 100 ms, a reader that reads gets the whole large reply, the stalled
 * ones are dropped after the deadline, and a client over the limit is told
 * `too many clients`.
 */
static void test_stalled_control_clients(void **state)
{
	static const char req[] = "{\"op\":\"get\",\"what\":\"backends\"}";
	unsigned char half[] = { 0, 0, 0, 40, '{', '"', 'o', 'p' };
	int nbig = 2000, big[STALL_BIG], rc, fd, got;
	char path[PATH_MAX], *out = NULL;
	long ms[5], worst = 0, t0;
	struct json_object *reply, *items;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	/* 2,000 Backends that nothing routes to: `get backends` answers with megabytes. */
	apply_bulk(path, sizeof(path), nbig, NULL);

	/* For comparison in the output: status with no other client. */
	for (int i = 0; i < 5; i++) {
		t0 = kb_now_ms();
		json_object_put(ctl("status", 30000));
		ms[i] = kb_now_ms() - t0;
	}
	printf("# status alone: %ld %ld %ld %ld %ld ms\n", ms[0], ms[1], ms[2], ms[3], ms[4]);

	/* The stalled: 40 send a request with a large reply and never read; 5 send nothing; 5 half a frame. */
	for (int i = 0; i < STALL_BIG; i++) {
		big[i] = stall_connect();
		assert_int_equal(kb_ctl_write_frame(big[i], req, strlen(req)), 0);
	}
	for (int i = 0; i < STALL_IDLE; i++) {
		fd = stall_connect();
		if (i % 2)
			send_all(fd, half, sizeof(half));
	}
	/* Each large reply has begun to arrive: the daemon has taken every request. */
	got = wait_events(big, STALL_BIG, POLLIN, 30000);
	printf("# %d of %d stalled clients have the start of their reply\n", got, STALL_BIG);

	/* status answers at once (the bound: 100 ms), in-process so that only the request is timed. */
	for (int i = 0; i < 5; i++) {
		t0 = kb_now_ms();
		reply = ctl("status", 30000);
		ms[i] = kb_now_ms() - t0;
		if (!e2e_reply_ok(reply))
			fail_msg("status with stalled clients: %s", reply ? json_object_to_json_string(reply) : strerror(errno));
		json_object_put(reply);
		worst = ms[i] > worst ? ms[i] : worst;
	}
	printf("# status with %d stalled clients: %ld %ld %ld %ld %ld ms\n", STALL_BIG + STALL_IDLE, ms[0], ms[1], ms[2],
	       ms[3], ms[4]);
	if (worst >= 100)
		fail_msg("status took %ld ms with stalled clients (bound: 100 ms)", worst);
	assert_int_equal(got, STALL_BIG);
	assert_int_equal(CLI(&out, "status"), 0);
	free(out);

	/* A reader that reads gets the whole large reply meanwhile. */
	reply = CLI_JSON(&rc, "get", "backends", "-n", "bulk");
	assert_int_equal(rc, 0);
	assert_non_null(items = e2e_jget(reply, "items"));
	assert_int_equal(json_object_array_length(items), nbig);
	{
		/* Large: more than twice what a socket buffer holds, so that a peer that does not read stalls a writer. */
		char *wmem = e2e_read_text("/proc/sys/net/core/wmem_default");
		size_t n = strlen(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));

		assert_non_null(wmem);
		printf("# get backends: %zu bytes (socket buffer %ld)\n", n, atol(wmem));
		assert_true(n > 2 * (size_t)atol(wmem));
		free(wmem);
	}
	json_object_put(reply);

	/* After the deadline the daemon drops the stalled readers (their reply cut short) and the idle ones. */
	t0 = kb_now_ms();
	got = wait_events(big, STALL_BIG, POLLRDHUP, 60000);
	printf("# %d stalled readers dropped after %ld ms\n", got, kb_now_ms() - t0);
	assert_int_equal(got, STALL_BIG);
	{
		struct json_object *r = NULL;

		/* What one of them can still read is a partial frame, then EOF: not a reply. */
		assert_true(ctl_read(big[0], &r) < 0 || r == NULL);
		json_object_put(r);
	}
	assert_true(control_clients("dropped") >= STALL_BIG);
	stall_close_all();
	for (t0 = kb_now_ms(); control_clients("connected") != 1 && kb_now_ms() - t0 < 30000;)
		e2e_sleep_ms(20);
	assert_int_equal(control_clients("connected"), 1);

	/* Every slot held by a half frame: one more client is told why it is not served. */
	for (int i = 0; i < KB_CTL_MAX_CLIENTS; i++)
		send_all(stall_connect(), half, sizeof(half));
	fd = ctl_connect();
	assert_true(fd >= 0);
	assert_int_equal(kb_ctl_write_frame(fd, "{\"op\":\"status\"}", 15), 0);
	rc = ctl_read(fd, &reply);
	close(fd);
	if (rc != 1)
		fail_msg("a client over the limit got no reply (%d: %s)", rc, rc < 0 ? strerror(-rc) : "closed");
	assert_refused_reply(reply, "too many clients");
	stall_close_all();
	for (t0 = kb_now_ms(); !daemon_serves() && kb_now_ms() - t0 < 30000;)
		e2e_sleep_ms(20);
	assert_true(control_clients("refused") >= 1);

	/* Back to the baseline. */
	reply = CLI_JSON(&rc, "delete", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);
	{
		struct e2e_sum s = connect_n(20, false);

		e2e_assert_no_failure(s);
	}
}

static int group_setup(void **state)
{
	return node_setup("control", 'c');
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_refused_apply_changes_nothing, test_teardown),
		cmocka_unit_test_teardown(test_mixed_kinds_apply, test_teardown),
		cmocka_unit_test_teardown(test_large_apply_reply, test_teardown),
		cmocka_unit_test_teardown(test_bad_control_requests, test_teardown),
		cmocka_unit_test_teardown(test_verify_op, test_teardown),
		cmocka_unit_test_teardown(test_stalled_control_clients, stall_teardown),
	};

	e2e_main_init("test_control", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
