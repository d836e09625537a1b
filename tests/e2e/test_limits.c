// SPDX-License-Identifier: Apache-2.0
/* e2e: the map sizes (--max-*): the maps get them, an apply over one is refused whole, a restart grows them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"

/* The node, its endpoints and the daemon: e2e_node.h. Small limits, so that a few objects reach each. */
static const char *const LIMITS[] = { "--max-frontends", "16", "--max-slots", "200", "--max-endpoints", "24",
				      "--max-tracked-sockets", "64", NULL };

/* max_entries of the pinned map name; -1 when it cannot be read. */
static long pinned_max(const char *name)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", E.env.bpffs, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -1;
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		info.max_entries = 0;
	close(fd);
	return info.max_entries ? (long)info.max_entries : -1;
}

/* Every pinned map named (NULL-terminated) has max_entries max. */
static void assert_pinned(long max, ...)
{
	const char *name;
	va_list ap;

	va_start(ap, max);
	while ((name = va_arg(ap, const char *)))
		if (pinned_max(name) != max)
			fail_msg("pinned %s holds %ld entries, not %ld", name, pinned_max(name), max);
	va_end(ap);
}

/* status -o json's limits.<key>: its used and max. */
static void status_limit(const char *key, long *used, long *max)
{
	struct json_object *st;
	int rc;

	st = CLI_JSON(&rc, "status");
	assert_int_equal(rc, 0);
	*used = e2e_jint(e2e_jget(e2e_jget(st, "limits"), key), "used");
	*max = e2e_jint(e2e_jget(e2e_jget(st, "limits"), key), "max");
	json_object_put(st);
}

/* status -o json's limits.<key> has this use and size (-1: not checked). */
static void assert_limit(const char *key, long want_used, long want_max)
{
	long used, max;

	status_limit(key, &used, &max);
	if ((want_used >= 0 && used != want_used) || (want_max >= 0 && max != want_max))
		fail_msg("status limits.%s: used %ld, max %ld; want %ld, %ld", key, used, max, want_used, want_max);
}

/*
 * The baseline (route weights w1/w2/0 over e1, e2) plus a Gateway "fan" at
 * 198.18.0.20 with n TCP listeners, each routed to the Backend "wide" of
 * nwide endpoints: n more frontends, n * nwide more slots and endpoints.
 */
static void yaml_fanout(char *buf, size_t len, int w1, int w2, int n, int nwide)
{
	const int w[NEPS] = { w1, w2, 0 };
	size_t k;

	yaml_all(buf, len, w, NULL);
	if (!n)
		return;
	k = strlen(buf);
	k += (size_t)snprintf(buf + k, len - k,
			      "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: wide\n"
			      "  namespace: default\nspec:\n  endpoints:\n");
	for (int i = 0; i < nwide; i++)
		k += (size_t)snprintf(buf + k, len - k, "    - ip:\n        address: 198.51.100.%d\n        port: 8080\n",
				      100 + i);
	k += (size_t)snprintf(buf + k, len - k,
			      "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: fan\n"
			      "  namespace: default\nspec:\n  gatewayClassName: eg\n  addresses:\n"
			      "    - type: IPAddress\n      value: 198.18.0.20\n  listeners:\n");
	for (int i = 0; i < n; i++)
		k += (size_t)snprintf(buf + k, len - k, "    - name: l%d\n      protocol: TCP\n      port: %d\n", i,
				      1000 + i);
	for (int i = 0; i < n; i++)
		k += (size_t)snprintf(buf + k, len - k,
				      "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n"
				      "  name: fan-%d\n  namespace: default\nspec:\n  parentRefs:\n    - name: fan\n"
				      "      sectionName: l%d\n  rules:\n    - backendRefs:\n"
				      "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: wide\n",
				      i, i);
	assert_true(k < len);
}

/* `apply --replace -f` of that set (the whole state); the reply (caller puts it) and the exit code in *rc. */
static struct json_object *apply_fanout(int *rc, int w1, int w2, int n, int nwide)
{
	static char yaml[131072];
	char path[PATH_MAX];

	yaml_fanout(yaml, sizeof(yaml), w1, w2, n, nwide);
	write_yaml(path, sizeof(path), "fanout.yaml", yaml);
	return CLI_JSON(rc, "apply", "--replace", "-f", path);
}

/* The same, which must be accepted. */
static void apply_ok(int w1, int w2, int n, int nwide)
{
	struct json_object *reply;
	int rc;

	reply = apply_fanout(&rc, w1, w2, n, nwide);
	if (rc != 0)
		fail_msg("apply of %d fan-out frontends: exit %d, %s", n, rc, json_object_to_json_string(reply));
	json_object_put(reply);
}

/* An apply over a limit: refused with want in its error, and neither the maps nor the daemon's counts moved. */
static void assert_refused(const char *what, int w1, int w2, int n, int nwide, const char *want)
{
	long used0[3], used1[3], max;
	static const char *const keys[] = { "frontends", "slots", "endpoints" };
	struct json_object *reply;
	char *map0, *map1;
	int rc;

	for (int i = 0; i < 3; i++)
		status_limit(keys[i], &used0[i], &max);
	map0 = dump_frontends_map();
	reply = apply_fanout(&rc, w1, w2, n, nwide);
	if (rc != 1 || e2e_reply_ok(reply) || !strstr(e2e_jstr(reply, "error"), want))
		fail_msg("%s: want a refusal saying \"%s\"; exit %d, %s", what, want, rc,
			 json_object_to_json_string(reply));
	json_object_put(reply);
	map1 = dump_frontends_map();
	if (strcmp(map0, map1))
		fail_msg("%s: the refused apply changed the maps:\n%s\nthen\n%s", what, map0, map1);
	free(map0);
	free(map1);
	for (int i = 0; i < 3; i++) {
		status_limit(keys[i], &used1[i], &max);
		if (used1[i] != used0[i])
			fail_msg("%s: %s used went from %ld to %ld", what, keys[i], used0[i], used1[i]);
	}
	print_message("# %s refused: %s\n", what, want);
}

/* ---- tests ---- */

/* The flags size the maps; each limit refuses the apply that would pass it, whole; one that reaches it exactly fits. */
static void test_apply_refused_at_each_limit(void **state)
{
	char *out = NULL;
	struct e2e_sum s;

	NEED_ENV();
	daemon_ensure();
	assert_pinned(16, "frontends", "frontend_stats", NULL);
	assert_pinned(200, "slots", NULL);
	assert_pinned(24, "endpoint_stats", "endpoint_load", NULL);
	assert_pinned(64, "sock_peers", NULL);
	assert_pinned(16, "udp_replies", NULL);

	apply_ok(1, 1, 0, 0);
	assert_limit("frontends", 1, 16);
	assert_limit("slots", 2, 200);
	assert_limit("trackedSockets", -1, 64);

	/* 1 + 16 frontends; 1/300 is inexact, so 256 slots; 1 + 13 frontends of 2 endpoints: 2 + 26 endpoints. */
	assert_refused("frontends", 1, 1, 16, 1,
		       "the applied set needs 17 frontends; the daemon was started with --max-frontends 16");
	assert_refused("slots", 1, 300, 0, 0,
		       "the applied set needs 256 slots; the daemon was started with --max-slots 200");
	assert_refused("endpoints", 1, 1, 13, 2,
		       "the applied set needs 28 endpoints (frontend and endpoint pairs); the daemon was started with "
		       "--max-endpoints 24");

	/* Exactly at a limit fits: 2 + 11 * 2 = 24 endpoints. */
	apply_ok(1, 1, 11, 2);
	assert_limit("endpoints", 24, -1);
	assert_limit("frontends", 12, -1);
	assert_int_equal(CLI(&out, "status"), 0);
	if (!strstr(out, "frontends 12/16, slots 24/200, endpoints 24/24"))
		fail_msg("status does not show the limits and their use:\n%s", out);
	free(out);
	s = connect_n(50, false);
	e2e_assert_no_failure(s);

	apply_ok(1, 1, 0, 0);
}

/* Start the daemon with flags (NULL-terminated) after killing it: 0 when it serves; the log's new text in *log (caller frees). */
static int restart_with(const char *const *flags, char **log)
{
	const char *const *keep = daemon_args;
	char *all;
	long off;
	int rc;

	daemon_kill();
	all = e2e_read_text(E.env.log);
	assert_non_null(all);
	off = (long)strlen(all);
	free(all);
	daemon_args = flags;
	rc = daemon_start();
	daemon_args = keep;
	all = e2e_read_text(E.env.log);
	assert_non_null(all);
	*log = strdup(all + ((long)strlen(all) > off ? off : (long)strlen(all)));
	free(all);
	return rc;
}

/*
 * A restart with larger --max-frontends, --max-slots and --max-endpoints
 * grows the pinned maps: new maps, filled from the pinned ones, and the links
 * moved to programs that use them, while clients connect in a loop (checking
 * getpeername too) and not one connect fails. Shrinking, and any change of
 * --max-tracked-sockets, is refused with the flag, the sizes and the way out.
 */
static void test_restart_with_other_limits(void **state)
{
	static const char *const bigger[] = { "--max-frontends", "32", "--max-slots", "400", "--max-endpoints", "48",
					      NULL };
	static const char *const sockets[] = { "--max-tracked-sockets", "128", NULL };
	char *log, *map0, *map1;
	struct e2e_sum s;

	NEED_ENV();
	daemon_ensure();
	apply_ok(1, 1, 0, 0);
	map0 = dump_frontends_map();
	clients_start(2, 0, true);
	assert_true(clients_reach(2, 50, 10000));

	/* Grow. */
	if (restart_with(bigger, &log)) {
		dump_log();
		fail_msg("a restart with larger limits did not start:\n%s", log);
	}
	free(log);
	assert_pinned(32, "frontends", "frontend_addrs", "frontend_stats", "rr_cursors", NULL);
	assert_pinned(400, "slots", NULL);
	assert_pinned(48, "endpoint_stats", "endpoint_load", "endpoint_outcomes", NULL);
	assert_pinned(64, "sock_peers", NULL);
	map1 = dump_frontends_map();
	if (strcmp(map0, map1))
		fail_msg("the grown maps do not hold what the pinned ones held:\n%s\nthen\n%s", map0, map1);
	free(map0);
	free(map1);
	assert_limit("frontends", 1, 32);
	assert_limit("endpoints", 2, 48);
	assert_true(clients_reach(2, clients_sum(2).total_ok + 50, 10000));
	print_message("# grown to --max-frontends 32 --max-slots 400 --max-endpoints 48 with clients connecting\n");

	/* Shrink: refused; the pinned programs go on steering. */
	if (!restart_with(LIMITS, &log))
		fail_msg("a restart with --max-frontends 16 over maps pinned at 32 was not refused");
	if (!strstr(log, "failed to start with --max-frontends 16: the maps pinned under") ||
	    !strstr(log, "were made with --max-frontends 32") || !strstr(log, "not shrink") ||
	    !strstr(log, "kbackend unload --bpffs"))
		fail_msg("the refusal does not name the flag, the sizes and the way out:\n%s", log);
	print_message("# %s", strstr(log, "kbackend: failed to start"));
	free(log);
	/* Tracked sockets: refused either way. */
	if (!restart_with(sockets, &log))
		fail_msg("a restart with --max-tracked-sockets 128 over sock_peers pinned at 64 was not refused");
	if (!strstr(log, "failed to start with --max-tracked-sockets 128") ||
	    !strstr(log, "were made with --max-tracked-sockets 64"))
		fail_msg("the refusal does not name the flag and the sizes:\n%s", log);
	free(log);
	assert_pinned(32, "frontends", NULL);
	assert_pinned(64, "sock_peers", NULL);

	/* Without the flags: the pinned sizes; and the grown maps take a larger apply. */
	assert_int_equal(restart_with(NULL, &log), 0);
	free(log);
	assert_limit("frontends", -1, 32);
	apply_ok(1, 1, 20, 1);
	assert_limit("frontends", 21, -1);

	/* Steering went on through all of it: more answers after the restarts, and not one failure. */
	assert_true(clients_reach(2, clients_sum(2).total_ok + 50, 10000));
	assert_int_equal(clients_stop(false), 0);
	s = clients_sum(2);
	e2e_assert_no_failure(s);
	print_message("# %ld connects (getpeername checked) through the grow and the refused restarts, none failed\n",
		      s.total_ok);
}

static int group_setup(void **state)
{
	daemon_args = LIMITS;
	return node_setup("limits", 'l');
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_apply_refused_at_each_limit, test_teardown),
		cmocka_unit_test_teardown(test_restart_with_other_limits, test_teardown),
	};

	e2e_main_init("test_limits", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
