// SPDX-License-Identifier: Apache-2.0
/* e2e: reads: `get` by name, label and field selector, and streamed replies read by a slow client while the daemon serves others. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"
#include "util.h"

/* The node, its endpoints and the daemon: e2e_node.h. */

#define NBULK 2000

/* Read exactly len bytes within 30 s, chunk bytes at a time with a pause of pause_ms between reads. */
static void read_exact(int fd, void *buf, size_t len, size_t chunk, int pause_ms)
{
	long deadline = kb_now_ms() + 30000;
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (kb_now_ms() > deadline)
			fail_msg("a streamed reply stalled after %zu of %zu bytes", got, len);
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = recv(fd, (char *)buf + got, len - got < chunk ? len - got : chunk, 0);
		if (n <= 0)
			fail_msg("the daemon closed a streamed reply after %zu of %zu bytes (%s)", got, len,
				 n < 0 ? strerror(errno) : "EOF");
		got += (size_t)n;
		if (pause_ms)
			e2e_sleep_ms(pause_ms);
	}
}

/* One frame: its body (caller frees, "" for an empty frame) and its length. */
static char *read_frame(int fd, size_t *len, size_t chunk, int pause_ms)
{
	unsigned char h[4];
	char *body;

	read_exact(fd, h, 4, 4, 0);
	*len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	assert_true(*len < KB_CTL_MAX_MSG);
	assert_non_null(body = calloc(1, *len + 1));
	read_exact(fd, body, *len, chunk, pause_ms);
	return body;
}

/* Names (metadata.name, or frontend address:port) of a `get ... -o json` document, as " a b c ". */
static void names_of(struct json_object *doc, char *buf, size_t len)
{
	struct json_object *items = json_object_is_type(doc, json_type_array) ? doc : e2e_jget(doc, "items");
	size_t n = 0;

	buf[0] = '\0';
	n += (size_t)snprintf(buf, len, " ");
	for (size_t i = 0; items && i < json_object_array_length(items) && n < len; i++) {
		struct json_object *it = json_object_array_get_idx(items, i), *md = e2e_jget(it, "metadata");

		if (md)
			n += (size_t)snprintf(buf + n, len - n, "%s/%s ", e2e_jstr(md, "namespace"), e2e_jstr(md, "name"));
		else
			n += (size_t)snprintf(buf + n, len - n, "%s:%lld ", e2e_jstr(it, "address"), (long long)e2e_jint(it, "port"));
	}
}

/* `kbackend ARGS -o json` must succeed and name exactly `want` (" ns/name ... " or " addr:port ... "). */
#define EXPECT_GET(want, ...)                                                                          \
	do {                                                                                           \
		int _rc;                                                                               \
		char _got[4096];                                                                       \
		struct json_object *_doc = CLI_JSON(&_rc, "get", __VA_ARGS__, "-o", "json");           \
		if (_rc != 0 || !_doc)                                                                 \
			fail_msg("get %s: exit %d", #__VA_ARGS__, _rc);                                \
		names_of(_doc, _got, sizeof(_got));                                                    \
		json_object_put(_doc);                                                                 \
		if (strcmp(_got, (want)))                                                              \
			fail_msg("get %s: got [%s], expected [%s]", #__VA_ARGS__, _got, (want));       \
	} while (0)

/* Two more Backends (labelled), a second listener and route, so that frontends differ by Backend. */
static const char YAML_LABELLED[] =
	"apiVersion: gateway.networking.k8s.io/v1\n"
	"kind: Gateway\n"
	"metadata:\n  name: lab\n  namespace: team\n"
	"spec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: 198.18.0.20\n"
	"  listeners:\n    - name: a\n      protocol: TCP\n      port: 81\n    - name: b\n      protocol: TCP\n      port: 82\n"
	"---\n"
	"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: ra\n  namespace: team\n"
	"spec:\n  parentRefs:\n    - name: lab\n      sectionName: a\n  rules:\n    - backendRefs:\n"
	"        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: alpha\n"
	"---\n"
	"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: rb\n  namespace: team\n"
	"spec:\n  parentRefs:\n    - name: lab\n      sectionName: b\n  rules:\n    - backendRefs:\n"
	"        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: beta\n"
	"---\n"
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: alpha\n  namespace: team\n"
	"  labels:\n    tier: web\n    owner: ann\n"
	"spec:\n  endpoints:\n    - ip:\n        address: 198.51.100.1\n        port: 8080\n"
	"---\n"
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: beta\n  namespace: team\n"
	"  labels:\n    tier: db\n"
	"spec:\n  endpoints:\n    - ip:\n        address: 203.0.113.2\n        port: 8080\n";

/*
 * `get` forms that select: NAME, -l and --field-selector, for objects and for
 * frontends, each answering exactly the objects or frontends named, and a
 * bad selector refused with the reason.
 */
static void test_get_selects(void **state)
{
	char path[PATH_MAX], *out = NULL;
	struct json_object *reply;
	int rc;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	write_yaml(path, sizeof(path), "labelled.yaml", YAML_LABELLED);
	reply = CLI_JSON(&rc, "apply", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);

	/* Objects: by name, by label (equality, inequality, existence), by field. */
	EXPECT_GET(" team/alpha ", "backend", "alpha", "-n", "team");
	EXPECT_GET(" ", "backend", "alpha");	/* namespace default: not there */
	EXPECT_GET(" team/alpha ", "backends", "-A", "-l", "tier=web");
	EXPECT_GET(" team/beta ", "backends", "-n", "team", "-l", "tier!=web");
	EXPECT_GET(" team/alpha ", "backends", "-A", "-l", "owner");
	EXPECT_GET(" team/beta ", "backends", "-A", "-l", "!owner,tier");
	EXPECT_GET(" team/alpha ", "backends", "-A", "-l", "tier==web,owner=ann");
	EXPECT_GET(" ", "backends", "-A", "-l", "tier=web,owner=bob");
	EXPECT_GET(" team/beta ", "backends", "-A", "--field-selector", "metadata.name=beta");
	EXPECT_GET(" team/ra team/rb ", "routes", "-n", "team");
	EXPECT_GET(" team/rb ", "routes", "-A", "--field-selector", "metadata.namespace=team,metadata.name!=ra");
	{
		/* Labels are shown with the object. */
		struct json_object *doc = CLI_JSON(&rc, "get", "backend", "alpha", "-n", "team", "-o", "json");
		struct json_object *md = e2e_jget(json_object_array_get_idx(e2e_jget(doc, "items"), 0), "metadata");

		assert_int_equal(rc, 0);
		assert_string_equal(e2e_jstr(e2e_jget(md, "labels"), "owner"), "ann");
		json_object_put(doc);
	}

	/* Frontends: by ADDR:PORT, by their Backends' labels, by field, by their route's namespace. */
	EXPECT_GET(" 198.18.0.20:82 ", "endpoints", "198.18.0.20:82");
	EXPECT_GET(" 198.18.0.20:81 ", "endpoints", "-l", "tier=web");
	/* As in Kubernetes, a Backend without the label is "not equal": the default route's Backends too. */
	EXPECT_GET(" " FE_ADDR ":80 198.18.0.20:82 ", "frontends", "-l", "tier!=web");
	EXPECT_GET(" 198.18.0.20:82 ", "endpoints", "--field-selector", "backend=team/beta");
	EXPECT_GET(" 198.18.0.20:81 ", "endpoints", "--field-selector", "route=team/ra");
	EXPECT_GET(" 198.18.0.20:81 198.18.0.20:82 ", "endpoints", "--field-selector", "gateway=team/lab");
	EXPECT_GET(" " FE_ADDR ":80 ", "endpoints", "--field-selector", "port=80");
	EXPECT_GET(" 198.18.0.20:81 198.18.0.20:82 ", "endpoints", "-n", "team");
	EXPECT_GET(" " FE_ADDR ":80 198.18.0.20:81 198.18.0.20:82 ", "endpoints");
	EXPECT_GET(" ", "endpoints", "198.18.0.20:83");

	/* Refused, with the reason: an unknown field, a set-based requirement, -n with -A. */
	assert_int_equal(CLI(&out, "get", "endpoints", "--field-selector", "colour=red"), 1);
	free(out);
	assert_int_equal(CLI(&out, "get", "backends", "-l", "tier in (web)"), 1);
	free(out);
	assert_int_equal(CLI(&out, "get", "backends", "-n", "team", "-A"), 2);
	free(out);
	{
		struct json_object *req = json_object_new_object();

		json_object_object_add(req, "op", json_object_new_string("get"));
		json_object_object_add(req, "what", json_object_new_string("endpoints"));
		json_object_object_add(req, "fieldSelector", json_object_new_string("colour=red"));
		reply = kb_ctl_call(E.env.sock, req, 10000);
		json_object_put(req);
		assert_non_null(reply);
		assert_false(e2e_reply_ok(reply));
		assert_non_null(strstr(e2e_jstr(reply, "error"), "colour"));
		json_object_put(reply);
	}

	/* describe finds its frontends through the same selector. */
	assert_int_equal(CLI(&out, "describe", "backend", "beta", "-n", "team"), 0);
	assert_non_null(strstr(out, "Frontends:  1\n"));
	assert_non_null(strstr(out, "198.18.0.20:82/TCP"));
	free(out);

	reply = CLI_JSON(&rc, "delete", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);
}

/* Send a streamed `get backends -n bulk` by hand (whole: as the CLI's retry asks); the socket. */
static int stream_request_as(bool whole)
{
	const char *req = whole ? "{\"op\":\"get\",\"what\":\"backends\",\"namespace\":\"bulk\",\"stream\":true,\"whole\":true}"
				: "{\"op\":\"get\",\"what\":\"backends\",\"namespace\":\"bulk\",\"stream\":true}";
	int fd = ctl_connect();

	assert_true(fd >= 0);
	assert_int_equal(kb_ctl_write_frame(fd, req, strlen(req)), 0);
	return fd;
}

static int stream_request(void)
{
	return stream_request_as(false);
}

/*
 * A streamed reply larger than the socket buffer, read slowly (small reads
 * with pauses): it arrives whole, one item a frame, ended by an empty frame
 * and a trailer, while the daemon keeps answering other clients (status, a
 * whole `get` through the CLI). A change during a stream ends it with an
 * error that says to read again, and the CLI does so by itself, asking for a
 * "whole" read, which no change can cut.
 */
static void test_streamed_reply_slow_reader(void **state)
{
	char path[PATH_MAX], *body, *wmem;
	struct json_object *head, *it, *trailer, *reply;
	size_t len, total = 0, items = 0;
	int fd, rc, statuses = 0;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	apply_bulk(path, sizeof(path), NBULK, "one");

	fd = stream_request();
	body = read_frame(fd, &len, 64, 0);
	head = json_tokener_parse(body);
	free(body);
	if (!head || !e2e_reply_ok(head) || !json_object_get_boolean(e2e_jget(head, "stream")))
		fail_msg("a streamed get began with %s", head ? json_object_to_json_string(head) : "garbage");
	assert_int_equal(e2e_jint(head, "count"), NBULK);
	json_object_put(head);
	for (;;) {
		/* Slowly: 512 bytes a read, a pause every item, and every 100 items other clients are served. */
		body = read_frame(fd, &len, 512, items % 50 == 0 ? 5 : 0);
		total += len + 4;
		if (!len) {
			free(body);
			break;
		}
		it = json_tokener_parse(body);
		free(body);
		assert_non_null(it);
		assert_string_equal(e2e_jstr(it, "kind"), "Backend");
		json_object_put(it);
		if (++items % 100 == 0) {
			reply = ctl("status", 10000);
			if (!e2e_reply_ok(reply))
				fail_msg("status during a slow stream: %s", reply ? json_object_to_json_string(reply) : strerror(errno));
			json_object_put(reply);
			statuses++;
		}
		if (items == NBULK / 2) {
			/* Another reader meanwhile gets the whole list. */
			struct json_object *doc = CLI_JSON(&rc, "get", "backends", "-n", "bulk", "-o", "json");

			assert_int_equal(rc, 0);
			assert_int_equal(json_object_array_length(e2e_jget(doc, "items")), NBULK);
			json_object_put(doc);
		}
	}
	body = read_frame(fd, &len, 512, 0);
	trailer = json_tokener_parse(body);
	free(body);
	if (!trailer || !e2e_reply_ok(trailer))
		fail_msg("a streamed get ended with %s", trailer ? json_object_to_json_string(trailer) : "garbage");
	assert_int_equal(e2e_jint(trailer, "count"), NBULK);
	json_object_put(trailer);
	close(fd);
	assert_int_equal(items, NBULK);
	wmem = e2e_read_text("/proc/sys/net/core/wmem_default");
	assert_non_null(wmem);
	printf("# streamed %zu items, %zu bytes (socket buffer %ld), %d status answers meanwhile\n", items, total,
	       atol(wmem), statuses);
	assert_true(total > 2 * (size_t)atol(wmem));
	free(wmem);

	/* A change in the middle of a stream: the rest is not sent from a state the read did not start with. */
	fd = stream_request();
	body = read_frame(fd, &len, 4096, 0);
	free(body);
	apply_bulk(path, sizeof(path), NBULK, "two");
	for (items = 0;; items++) {
		body = read_frame(fd, &len, 65536, 0);
		free(body);
		if (!len)
			break;
	}
	body = read_frame(fd, &len, 4096, 0);
	trailer = json_tokener_parse(body);
	free(body);
	close(fd);
	assert_non_null(trailer);
	printf("# a stream cut by an apply after %zu items: %s\n", items, json_object_to_json_string(trailer));
	assert_false(e2e_reply_ok(trailer));
	assert_true(json_object_get_boolean(e2e_jget(trailer, "retry")));
	assert_true(items < NBULK);
	json_object_put(trailer);

	/*
	 * The CLI's retry asks for the read "whole": rendered in one turn of the daemon's loop, the
	 * same change in the middle cannot cut it, so a read completes under constant change (on a
	 * slow machine with many names resolving, every streamed read was cut, five times in a row).
	 */
	fd = stream_request_as(true);
	body = read_frame(fd, &len, 4096, 0);
	free(body);
	apply_bulk(path, sizeof(path), NBULK, "one");
	for (items = 0;; items++) {
		body = read_frame(fd, &len, 65536, 0);
		free(body);
		if (!len)
			break;
	}
	body = read_frame(fd, &len, 4096, 0);
	trailer = json_tokener_parse(body);
	free(body);
	close(fd);
	if (!trailer || !e2e_reply_ok(trailer) || items != NBULK)
		fail_msg("a whole read with an apply in its middle: %zu items, then %s", items,
			 trailer ? json_object_to_json_string(trailer) : "garbage");
	json_object_put(trailer);
	apply_bulk(path, sizeof(path), NBULK, "two");
	{
		/* The new state is what a read now shows: every item with the new label. */
		struct json_object *doc = CLI_JSON(&rc, "get", "backends", "-n", "bulk", "-l", "tag=two", "-o", "json");

		assert_int_equal(rc, 0);
		assert_int_equal(json_object_array_length(e2e_jget(doc, "items")), NBULK);
		json_object_put(doc);
	}
	reply = CLI_JSON(&rc, "delete", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);
}

static int group_setup(void **state)
{
	return node_setup("reads", 'r');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_get_selects, test_teardown),
		cmocka_unit_test_teardown(test_streamed_reply_slow_reader, test_teardown),
	};

	e2e_main_init("test_reads", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
