// SPDX-License-Identifier: Apache-2.0
/* e2e: the daemon's stored state: `apply --replace` as the whole state, a bad state that must not stop steering, a torn log tail, migration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <zlib.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"
#include "store/store.h"

/* The node, its endpoints and the daemon: e2e_node.h. */

/* The baseline (weights 1/1/0) written to <tmp>/baseline.yaml; its path in path. */
static void write_baseline(char *path, size_t len)
{
	static const int w[NEPS] = { 1, 1, 0 };
	static char yaml[16384];

	yaml_all(yaml, sizeof(yaml), w, NULL);
	write_yaml(path, len, "baseline.yaml", yaml);
}

/* `kbackend apply --replace -f path`: fails the test unless accepted. */
static void replace_with(const char *path)
{
	struct json_object *reply;
	int rc;

	reply = CLI_JSON(&rc, "apply", "--replace", "-f", path);
	if (rc != 0 || !e2e_reply_ok(reply)) {
		dump_log();
		fail_msg("apply --replace -f %s: exit %d, %s", path, rc, json_object_to_json_string(reply));
	}
	json_object_put(reply);
}

static long status_objects(void)
{
	struct json_object *st = ctl("status", 5000);
	long n = e2e_jint(st, "objects");

	json_object_put(st);
	return n;
}

/* Lines of dump_frontends_map(): the frontends the pinned map holds. */
static int pinned_frontends(void)
{
	char *m = dump_frontends_map();
	int n = 0;

	for (char *p = m; *p; p++)
		n += *p == '\n';
	free(m);
	return n;
}

/* A Gateway with one TCP listener "tcp" at addr:port. */
static void yaml_gateway(char *buf, size_t len, const char *name, const char *addr, int port)
{
	snprintf(buf, len,
		 "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: %s\n  namespace: default\n"
		 "spec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: %s\n"
		 "  listeners:\n    - name: tcp\n      protocol: TCP\n      port: %d\n",
		 name, addr, port);
}

/* A Backend, a second Gateway (198.18.0.11:81) and a route to it: three objects and one frontend on top of the baseline. */
static void yaml_extra(char *buf, size_t len)
{
	char gw[1024];

	yaml_gateway(gw, sizeof(gw), "eg2", "198.18.0.11", 81);
	snprintf(buf, len,
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: extra\n"
		 "  namespace: default\nspec:\n  endpoints:\n    - ip:\n        address: 198.51.100.9\n"
		 "        port: 8080\n---\n%s---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: app2\n"
		 "  namespace: default\nspec:\n  parentRefs:\n    - name: eg2\n      sectionName: tcp\n  rules:\n"
		 "    - backendRefs:\n        - group: gateway.envoyproxy.io\n          kind: Backend\n"
		 "          name: extra\n",
		 gw);
}

/* ---- tests ---- */

/* `apply --replace`: the request is the whole state; objects it does not name go, from the store and the maps; all or nothing. */
static void test_replace_removes_unnamed(void **state)
{
	char base[PATH_MAX], extra[PATH_MAX], bad[PATH_MAX], *map0, *map1;
	static char yaml[32768];
	struct json_object *reply, *fes, *req;
	long objects;
	int rc;

	NEED_ENV();
	daemon_ensure();
	write_baseline(base, sizeof(base));
	replace_with(base);
	objects = status_objects();
	assert_int_equal(pinned_frontends(), 1);
	yaml_extra(yaml, sizeof(yaml));
	write_yaml(extra, sizeof(extra), "extra.yaml", yaml);
	reply = CLI_JSON(&rc, "apply", "-f", extra);
	assert_int_equal(rc, 0);
	json_object_put(reply);
	assert_int_equal(status_objects(), objects + 3);
	assert_int_equal(pinned_frontends(), 2);

	/* A dry run computes the request alone: one frontend, where a merging dry run shows two. */
	reply = CLI_JSON(&rc, "apply", "--replace", "--dry-run", "-f", base);
	assert_int_equal(rc, 0);
	assert_true(e2e_reply_ok(reply));
	assert_non_null(fes = e2e_jget(reply, "frontends"));
	assert_int_equal(json_object_array_length(fes), 1);
	json_object_put(reply);
	reply = CLI_JSON(&rc, "apply", "--dry-run", "-f", base);
	assert_int_equal(rc, 0);
	assert_int_equal(json_object_array_length(e2e_jget(reply, "frontends")), 2);
	json_object_put(reply);
	assert_int_equal(status_objects(), objects + 3);

	/* All or nothing: a replace with one refused object changes nothing. */
	map0 = e2e_read_text(base);
	assert_non_null(map0);
	snprintf(yaml, sizeof(yaml), "%s---\n%s", map0,
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: meta\n"
		 "  namespace: default\nspec:\n  endpoints:\n    - ip:\n        address: 169.254.169.254\n"
		 "        port: 80\n");
	free(map0);
	write_yaml(bad, sizeof(bad), "replace-refused.yaml", yaml);
	map0 = dump_frontends_map();
	reply = CLI_JSON(&rc, "apply", "--replace", "-f", bad);
	if (rc != 1 || e2e_reply_ok(reply))
		fail_msg("a replace with a refused object: exit %d, %s", rc, json_object_to_json_string(reply));
	json_object_put(reply);
	map1 = dump_frontends_map();
	assert_string_equal(map0, map1);
	free(map0);
	free(map1);
	assert_int_equal(status_objects(), objects + 3);

	/* The replace: the extra objects and their frontend are gone, the baseline serves on. */
	replace_with(base);
	assert_int_equal(status_objects(), objects);
	assert_int_equal(pinned_frontends(), 1);
	{
		char names[512];

		get_names("backends", names, sizeof(names));
		assert_null(strstr(names, " extra "));
		get_names("gateways", names, sizeof(names));
		assert_null(strstr(names, " eg2 "));
	}

	/* The op on the control socket, as test_health.c sends it: the baseline and the extra objects. */
	{
		char *b = e2e_read_text(base), *x = e2e_read_text(extra);

		assert_true(b && x);
		snprintf(yaml, sizeof(yaml), "%s---\n%s", b, x);
		free(b);
		free(x);
	}
	req = e2e_files_req("replace", "both.yaml", yaml);
	reply = kb_ctl_call(E.env.sock, req, 30000);
	json_object_put(req);
	if (!e2e_reply_ok(reply))
		fail_msg("op replace: %s", reply ? json_object_to_json_string(reply) : strerror(errno));
	json_object_put(reply);
	assert_int_equal(status_objects(), objects + 3);
	assert_int_equal(pinned_frontends(), 2);
	replace_with(base);
	assert_int_equal(status_objects(), objects);
	{
		struct e2e_sum s = connect_n(50, false);

		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);
	}
}

/* Entries named <file>.bad-* in the state dir: their count, the first one's path in path. */
static int state_aside(const char *file, char *path, size_t len)
{
	char names[1024], prefix[64];
	int n;

	snprintf(prefix, sizeof(prefix), "%s.bad-", file);
	n = dir_entries(E.env.state, prefix, names, sizeof(names));
	path[0] = '\0';
	if (n > 0)
		snprintf(path, len, "%s/%.*s", E.env.state, (int)strcspn(names, " "), names);
	return n < 0 ? 0 : n;
}

/* With the daemon stopped: fold the log into a snapshot, as the daemon's compaction does, so the snapshot holds the objects. */
static void compact_state(void)
{
	struct kb_store st;
	struct kb_model m;

	load_stored_state(&st, &m);
	assert_int_equal(kb_store_compact(&st, &m), 0);
	kb_store_close(&st);
	kb_model_free(&m);
}

enum bad_state { BAD_TRUNCATED, BAD_GARBAGE, BAD_FUTURE, BAD_UNREADABLE };

/* Which file each kind damages: the snapshot (compacted first, so it holds the objects) or the log. */
static const char *const bad_file[] = { KB_STATE_FILE, KB_STATE_LOG, KB_STATE_FILE, KB_STATE_LOG };

/* Damage the stored state as kind says; what the damaged file holds afterwards (NULL: not a file). */
static char *damage_state(enum bad_state kind, const char *file)
{
	char *text, *p, *body;
	static char buf[65536];

	if (kind == BAD_TRUNCATED || kind == BAD_FUTURE)
		compact_state();
	text = e2e_read_text(file);
	assert_non_null(text);
	switch (kind) {
	case BAD_TRUNCATED:
		/* Cut at the last document boundary: still valid YAML, but the route is gone. */
		p = strstr(text, "\n---\n");
		for (char *q = p; q; q = strstr(q + 1, "\n---\n"))
			p = q;
		assert_non_null(p);
		p[1] = '\0';
		break;
	case BAD_GARBAGE:
		snprintf(buf, sizeof(buf), "\x7f" "ELF\x02\x01 not: [a state file\n\xff\xfe{{{\n");
		free(text);
		text = strdup(buf);
		break;
	case BAD_FUTURE:
		/* A newer kbackend's file: the same documents under a format number this one does not know. */
		for (body = text; *body == '#';)
			body = strchr(body, '\n') ? strchr(body, '\n') + 1 : body + strlen(body);
		snprintf(buf, sizeof(buf), "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n"
					   "# kbackend-state-format: 99\n%s", body);
		free(text);
		text = strdup(buf);
		break;
	case BAD_UNREADABLE:
		/* A directory where the file should be: open() works, read() fails with EISDIR, even for root. */
		free(text);
		assert_int_equal(unlink(file), 0);
		assert_int_equal(mkdir(file, 0700), 0);
		return NULL;
	}
	assert_int_equal(e2e_write_file(file, text), 0);
	return text;
}

/*
 * A truncated, garbage, future-format or unreadable snapshot or log: after a
 * restart the pinned frontend still serves, status says the state is
 * degraded, an apply that would drop the frontend is refused with the way
 * out, the bad files are kept aside, and a replace recovers.
 */
static void test_bad_state_file_keeps_serving(void **state)
{
	static const char *const kinds[] = { "truncated snapshot", "garbage log", "future snapshot", "unreadable log" };
	static const char *const problem[] = { "truncated", "not a kbackend state log", "newer", "Is a directory" };
	char file[PATH_MAX], base[PATH_MAX], other[PATH_MAX], aside[PATH_MAX], yaml[1024], *bad, *out;
	struct json_object *st, *sf, *reply, *unacc;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	write_baseline(base, sizeof(base));
	/* A Gateway that no route uses, accepted on its own: an apply that names only it. */
	yaml_gateway(yaml, sizeof(yaml), "other", "198.18.0.12", 82);
	write_yaml(other, sizeof(other), "other.yaml", yaml);
	for (int k = BAD_TRUNCATED; k <= BAD_UNREADABLE; k++) {
		printf("# bad state: %s\n", kinds[k]);
		snprintf(file, sizeof(file), "%s/%s", E.env.state, bad_file[k]);
		daemon_ensure();
		apply_weights(1, 1, 0);
		s = connect_n(20, false);
		e2e_assert_no_failure(s);
		daemon_kill();
		e2e_sh("rm -rf '%s'/*.bad-*", E.env.state);
		bad = damage_state(k, file);
		if (daemon_start()) {
			dump_log();
			fail_msg("%s: the daemon did not start", kinds[k]);
		}

		/* The pinned frontend still serves, on both endpoints it had. */
		s = connect_n(50, false);
		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);

		/* An apply that names only another object would drop the frontend: refused, with the way out. */
		reply = CLI_JSON(&rc, "apply", "-f", other);
		if (rc != 1 || e2e_reply_ok(reply) || !strstr(e2e_jstr(reply, "error"), "--replace") ||
		    !strstr(e2e_jstr(reply, "error"), "unload") || !strstr(e2e_jstr(reply, "error"), FE_ADDR)) {
			s = connect_n(20, false);
			fail_msg("%s: apply of another object: exit %d, %s; then %ld of 20 connections failed (%s)",
				 kinds[k], rc, json_object_to_json_string(reply), s.fail, strerror(s.first_err));
		}
		json_object_put(reply);
		s = connect_n(50, false);
		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);

		/* status says so, in JSON and in the table. */
		st = CLI_JSON(&rc, "status");
		assert_int_equal(rc, 0);
		if (!e2e_jget(st, "degraded") || !json_object_get_boolean(e2e_jget(st, "degraded")))
			fail_msg("%s: status is not degraded: %s", kinds[k], json_object_to_json_string(st));
		sf = e2e_jget(st, "stateFile");
		if (!strstr(e2e_jstr(sf, "problem"), problem[k]))
			fail_msg("%s: the problem does not say \"%s\": %s", kinds[k], problem[k],
				 json_object_to_json_string(st));
		unacc = e2e_jget(sf, "unaccountedFrontends");
		assert_non_null(unacc);
		assert_int_equal(json_object_array_length(unacc), 1);
		assert_string_equal(json_object_get_string(json_object_array_get_idx(unacc, 0)), FE_ADDR ":80/TCP");
		json_object_put(st);
		assert_int_equal(CLI(&out, "status"), 0);
		if (!strstr(out, "DEGRADED") || !strstr(out, "--replace"))
			fail_msg("%s: `kbackend status` does not say it: %s", kinds[k], out);
		free(out);

		/* Kept aside, as it was, and the other file of the state with it. */
		assert_int_equal(state_aside(bad_file[k], aside, sizeof(aside)), 1);
		if (!strcmp(bad_file[k], KB_STATE_FILE))
			assert_int_equal(state_aside(KB_STATE_LOG, file, sizeof(file)), 1);
		if (bad) {
			char *kept = e2e_read_text(aside);

			assert_non_null(kept);
			assert_string_equal(kept, bad);
			free(kept);
		} else {
			struct stat sb;

			assert_int_equal(stat(aside, &sb), 0);
			assert_true(S_ISDIR(sb.st_mode));
		}
		free(bad);

		if (k == BAD_GARBAGE) {
			/* Restarted again (no state now): still degraded, still serving, nothing new set aside. */
			daemon_kill();
			if (daemon_start())
				fail_msg("%s: the daemon did not restart", kinds[k]);
			st = ctl("status", 5000);
			if (!json_object_get_boolean(e2e_jget(st, "degraded")) ||
			    !strstr(e2e_jstr(e2e_jget(st, "stateFile"), "problem"), aside))
				fail_msg("second restart: not degraded, or the bad file is not named: %s",
					 json_object_to_json_string(st));
			json_object_put(st);
			assert_int_equal(state_aside(bad_file[k], aside, sizeof(aside)), 1);
			s = connect_n(50, false);
			e2e_assert_no_failure(s);
		}

		/* The way out: state the whole set. */
		replace_with(base);
		st = ctl("status", 5000);
		if (json_object_get_boolean(e2e_jget(st, "degraded")))
			fail_msg("%s: still degraded after a replace: %s", kinds[k], json_object_to_json_string(st));
		json_object_put(st);
		s = connect_n(50, false);
		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);
	}
	e2e_sh("rm -rf '%s'/*.bad-*", E.env.state);
}

/* The size of a file, 0 when it is not there. */
static long file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) ? 0 : (long)sb.st_size;
}

/*
 * A crash in the middle of writing a request leaves a torn log tail: that
 * is the expected case, not a bad state. The restart drops the request (it
 * was never acknowledged), says so in the log, restores the state before it
 * and is not degraded.
 */
static void test_torn_log_tail_is_dropped(void **state)
{
	char log[PATH_MAX], other[PATH_MAX], yaml[1024], names[512], *text;
	struct json_object *st, *reply;
	long before, after;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	snprintf(log, sizeof(log), "%s/%s", E.env.state, KB_STATE_LOG);
	daemon_ensure();
	apply_weights(1, 1, 0);
	before = file_size(log);
	assert_true(before > 0);
	yaml_gateway(yaml, sizeof(yaml), "torn", "198.18.0.13", 83);
	write_yaml(other, sizeof(other), "torn.yaml", yaml);
	reply = CLI_JSON(&rc, "apply", "-f", other);
	assert_int_equal(rc, 0);
	json_object_put(reply);
	after = file_size(log);
	assert_true(after > before);
	get_names("gateways", names, sizeof(names));
	assert_non_null(strstr(names, " torn "));
	daemon_kill();
	/* As if the daemon had died halfway through writing that request. */
	assert_int_equal(truncate(log, before + (after - before) / 2), 0);
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not start after a torn log tail");
	}
	st = ctl("status", 5000);
	if (json_object_get_boolean(e2e_jget(st, "degraded")))
		fail_msg("a torn tail made the state degraded: %s", json_object_to_json_string(st));
	json_object_put(st);
	get_names("gateways", names, sizeof(names));
	assert_null(strstr(names, " torn "));
	assert_non_null(strstr(names, " eg "));
	text = e2e_read_text(E.env.log);
	assert_non_null(text);
	if (!strstr(text, "dropped the last"))
		fail_msg("the daemon's log does not say that it dropped the torn request");
	free(text);
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 50);
	/* The next request goes after the last whole one. */
	reply = CLI_JSON(&rc, "apply", "-f", other);
	assert_int_equal(rc, 0);
	json_object_put(reply);
	daemon_kill();
	if (daemon_start())
		fail_msg("the daemon did not restart");
	get_names("gateways", names, sizeof(names));
	assert_non_null(strstr(names, " torn "));
}

/*
 * A state directory from before the log (format 2, one whole file): read
 * once and rewritten as a snapshot and a log; `kbackend dump-state` prints
 * what it holds.
 */
static void test_migration_from_format2(void **state)
{
	char file[PATH_MAX], dump[PATH_MAX], names[512], *text, *out;
	static char yaml[32768], buf[40000];
	const int w[NEPS] = { 1, 1, 0 };
	struct json_object *st;
	struct e2e_sum s;
	uLong crc;
	int n;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	daemon_kill();
	e2e_sh("rm -rf '%s'/*", E.env.state);
	kb_store_path(E.env.state, file, sizeof(file));
	yaml_all(yaml, sizeof(yaml), w, NULL);
	n = snprintf(buf, sizeof(buf), "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n"
				       "# kbackend-state-format: 2\n---\n# from config.yaml:1\n%s", yaml);
	crc = crc32(crc32(0, NULL, 0), (const Bytef *)buf, (uInt)n);
	snprintf(buf + n, sizeof(buf) - (size_t)n, "# kbackend-state-end: 6 objects, crc32 %08lx\n", (unsigned long)crc);
	assert_int_equal(e2e_write_file(file, buf), 0);
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not start from a format-2 state");
	}
	st = ctl("status", 5000);
	if (json_object_get_boolean(e2e_jget(st, "degraded")) || e2e_jint(st, "objects") != 6)
		fail_msg("a format-2 state was not restored: %s", json_object_to_json_string(st));
	json_object_put(st);
	text = e2e_read_text(file);
	assert_non_null(text);
	assert_non_null(strstr(text, "# kbackend-state-format: 3\n"));
	free(text);
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 50);
	get_names("backends", names, sizeof(names));
	assert_non_null(strstr(names, " e2 "));

	/* The operator's view: every stored object as YAML, which `apply --replace` takes back. */
	assert_int_equal(CLI(&out, "dump-state", "--state-dir", E.env.state), 0);
	if (!strstr(out, "# Backend/default/e2, applied from ") || !strstr(out, "kind: TCPRoute") ||
	    !strstr(out, "kind: EnvoyGateway"))
		fail_msg("dump-state: %s", out);
	write_yaml(dump, sizeof(dump), "dump.yaml", out);
	free(out);
	replace_with(dump);
	st = ctl("status", 5000);
	assert_int_equal(e2e_jint(st, "objects"), 6);
	json_object_put(st);
}

/*
 * A scoped change whose own text makes the log want compaction (one large
 * Backend on a small state) is logged and the whole state compacted after
 * it: the change's model holds only its scope, never a state to snapshot.
 */
static void test_large_scoped_change_keeps_the_state(void **state)
{
	static char yaml[400 << 10];
	char path[PATH_MAX], names[512];
	struct json_object *reply, *st;
	struct e2e_sum s;
	long before, scoped;
	int rc, n;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	before = status_objects();
	st = CLI_JSON(&rc, "verify", "-o", "json");
	scoped = e2e_jint(st, "scopedChanges");
	json_object_put(st);
	n = snprintf(yaml, sizeof(yaml),
		     "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: big\n"
		     "  namespace: default\n  annotations:\n    note: \"");
	memset(yaml + n, 'x', 300 << 10);
	n += 300 << 10;
	snprintf(yaml + n, sizeof(yaml) - (size_t)n,
		 "\"\nspec:\n  endpoints:\n    - ip:\n        address: 198.51.100.9\n        port: 8080\n");
	write_yaml(path, sizeof(path), "big.yaml", yaml);
	reply = CLI_JSON(&rc, "apply", "-f", path);
	if (rc != 0 || !e2e_reply_ok(reply))
		fail_msg("apply -f big.yaml: exit %d, %s", rc, json_object_to_json_string(reply));
	json_object_put(reply);
	st = CLI_JSON(&rc, "verify", "-o", "json");
	if (rc != 0 || e2e_jint(st, "scopedChanges") != scoped + 1)
		fail_msg("the large Backend was not a scoped change: %s", json_object_to_json_string(st));
	json_object_put(st);
	daemon_kill();
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not restart");
	}
	if (status_objects() != before + 1) {
		dump_log();
		fail_msg("after a restart the state holds %ld object(s), %ld expected", status_objects(), before + 1);
	}
	get_names("backends", names, sizeof(names));
	assert_non_null(strstr(names, " big "));
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 50);
}

static int group_setup(void **state)
{
	return node_setup("state", 's');
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_replace_removes_unnamed, test_teardown),
		cmocka_unit_test_teardown(test_bad_state_file_keeps_serving, test_teardown),
		cmocka_unit_test_teardown(test_torn_log_tail_is_dropped, test_teardown),
		cmocka_unit_test_teardown(test_migration_from_format2, test_teardown),
		cmocka_unit_test_teardown(test_large_scoped_change_keeps_the_state, test_teardown),
	};

	e2e_main_init("test_state", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
