// SPDX-License-Identifier: Apache-2.0
/* e2e: kill -9 the daemon at random points of a stream of applies, 200 times: the stored state is the last acknowledged request (or the one in flight, if durable), the maps are its compile, and no connect fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <sys/inotify.h>

#include <json-c/json.h>
#include <zlib.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "store/store.h"
#include "util.h"

/*
 * 200 kills; fewer under KB_SCALE (e2e.h), at least 20: each kill is a daemon restart, seconds
 * long on an emulated CPU. Both outcomes of a kill (the request in flight durable or lost) come
 * about half the time each, so 20 kills see both (asserted) but for about 2 runs in a million.
 */
#define KILLS 200
#define MIN_KILLS 20
#define NREQ 6

/*
 * The stream: six requests that cycle, each leaving a different state S_j
 * on top of the baseline (the EnvoyGateway, Gateway eg, e1..e3 and the
 * route app that the clients use): a second Gateway gw2 with its route rc
 * and Backends x1, x2 come, change, go, and a replace with the baseline
 * ends the cycle. Multi-object requests make a torn request visible.
 */
#define GW2                                                                                              \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw2\n"             \
	"  namespace: default\nspec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n"    \
	"      value: 198.18.0.11\n  listeners:\n    - name: tcp\n      protocol: TCP\n      port: 81\n"
#define BACKEND(name, eps)                                                                               \
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: " name "\n"      \
	"  namespace: default\nspec:\n  endpoints:\n" eps
#define EP(addr) "    - ip:\n        address: " addr "\n        port: 8080\n"
#define REF(name) "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: " name "\n"
#define ROUTE(refs)                                                                                      \
	"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: rc\n"        \
	"  namespace: default\nspec:\n  parentRefs:\n    - name: gw2\n      sectionName: tcp\n"           \
	"  rules:\n    - backendRefs:\n" refs

static const char *const op[NREQ] = { "apply", "apply", "apply", "apply", "delete", "replace" };
static const char *yaml[NREQ] = {
	GW2 "---\n" BACKEND("x1", EP("198.51.100.1")) "---\n" ROUTE(REF("x1")),
	BACKEND("x1", EP("198.51.100.1") EP("203.0.113.2")),
	BACKEND("x2", EP("198.51.100.3")) "---\n" ROUTE(REF("x1") REF("x2")),
	BACKEND("x1", EP("198.51.100.1")),
	ROUTE(REF("x1") REF("x2")),
	NULL,	/* the baseline */
};
/* The names the state holds after each request, in the daemon's order. */
#define BASE "envoy-gateway eg e1 e2 e3 app"
static const char *const names_after[NREQ] = {
	BASE " gw2 x1 rc", BASE " gw2 rc x1", BASE " gw2 x1 x2 rc", BASE " gw2 x2 rc x1", BASE " gw2 x2 x1", BASE,
};

/* What the clean pass saw after each request: the stored state and the maps. */
static char *ref_state[NREQ], *ref_maps[NREQ];
/* The snapshot's generation at the last look: how many compactions the stream made. */
static uint64_t generation;

static struct json_object *request(int j)
{
	static char base[16384];
	const int w[NEPS] = { 1, 1, 0 };

	if (!yaml[j]) {
		yaml_all(base, sizeof(base), w, NULL);
		yaml[j] = base;
	}
	return e2e_files_req(op[j], "stream.yaml", yaml[j]);
}

/* The stored state as the daemon will read it: "Kind/ns/name:crc32-of-text" per object, in order; names into names. */
static char *stored_state(char *names, size_t nlen)
{
	size_t n = 0, cap = 1, w = 0;
	struct kb_store st;
	struct kb_model m;
	char key[512], *out;

	load_stored_state(&st, &m);
	generation = st.gen;
	kb_store_close(&st);
	cap += m.nobjects * 600;
	out = calloc(1, cap);
	assert_non_null(out);
	names[0] = '\0';
	for (size_t i = 0; i < m.nobjects; i++) {
		const struct kb_meta *o = m.objects[i];

		kb_store_key(o, key, sizeof(key));
		n += (size_t)snprintf(out + n, cap - n, "%s:%08lx ", key,
				      crc32(crc32(0, NULL, 0), (const Bytef *)o->src, (uInt)o->src_len));
		w += (size_t)snprintf(names + w, nlen - w, "%s%s", i ? " " : "", o->name);
	}
	kb_model_free(&m);
	return out;
}

static int long_cmp(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

/* Send request j; true when acknowledged, false when the daemon is gone. Anything else fails the test. */
static bool send_request(int j)
{
	struct json_object *req = request(j), *reply = kb_ctl_call(E.env.sock, req, 30000);
	bool ok = reply && e2e_reply_ok(reply);

	json_object_put(req);
	if (reply && !ok)
		fail_msg("request %d refused: %s", j, json_object_to_json_string(reply));
	json_object_put(reply);
	return ok;
}

/* The killer: after a random delay, or at the n-th write the daemon makes in the state directory. */
struct killer {
	pid_t pid;
	int ifd;		/* inotify on the state directory */
	long delay_us;		/* > 0: time mode */
	int events;		/* event mode: kill at this many */
};

static void *killer_run(void *arg)
{
	struct killer *k = arg;
	char buf[4096] __attribute__((aligned(8)));
	long deadline = kb_now_ms() + 2000;
	int seen = 0;

	if (k->delay_us > 0) {
		usleep((useconds_t)k->delay_us);
	} else {
		while (seen < k->events && kb_now_ms() < deadline) {
			struct pollfd p = { .fd = k->ifd, .events = POLLIN };
			ssize_t n;

			if (poll(&p, 1, 10) <= 0)
				continue;
			n = read(k->ifd, buf, sizeof(buf));
			for (char *e = buf; n > 0 && e < buf + n; e += sizeof(struct inotify_event) +
								     ((struct inotify_event *)e)->len)
				seen++;
		}
	}
	kill(k->pid, SIGKILL);
	return NULL;
}

static void drain(int ifd)
{
	char buf[4096] __attribute__((aligned(8)));

	while (read(ifd, buf, sizeof(buf)) > 0)
		;
}

/* Which S_j the stored state is: acked, or the request in flight (-1: none); fails on anything else. */
static int which_state(int acked, int inflight, int kill_no)
{
	char names[1024], *now = stored_state(names, sizeof(names));
	int got = -1;

	if (!strcmp(now, ref_state[acked]))
		got = acked;
	else if (inflight >= 0 && !strcmp(now, ref_state[inflight]))
		got = inflight;
	if (got < 0)
		fail_msg("kill %d: the stored state is neither the last acknowledged request %d (%s) nor the one in "
			 "flight %d (%s): it holds %s", kill_no, acked, names_after[acked], inflight,
			 inflight >= 0 ? names_after[inflight] : "none", names);
	free(now);
	return got;
}

static void test_kill9_during_applies(void **state)
{
	int idx = NREQ - 1, ifd, durable_inflight = 0, lost_inflight = 0, idle = 0;
	const int kills = (int)e2e_scaled(KILLS, MIN_KILLS);
	long restart_ms[KILLS], applies = 0;
	struct e2e_sum s;
	char names[1024];

	NEED_ENV();
	daemon_ensure();
	srandom((unsigned)getpid());
	/* The clean pass: each request once, the stored state and the maps it leaves as the reference. */
	assert_true(send_request(NREQ - 1));
	for (int j = 0; j < NREQ; j++) {
		assert_true(send_request(j));
		ref_state[j] = stored_state(names, sizeof(names));
		if (strcmp(names, names_after[j]))
			fail_msg("after request %d the store holds \"%s\", expected \"%s\"", j, names, names_after[j]);
		ref_maps[j] = dump_frontends_map_as(true);
	}
	for (int j = 1; j < NREQ; j++)
		assert_string_not_equal(ref_state[j], ref_state[j - 1]);

	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(ifd >= 0);
	assert_true(inotify_add_watch(ifd, E.env.state, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) >= 0);
	/* One client, paced (a connect every 0.5 ms or so), connecting to the baseline's frontend throughout. */
	client_spawn(0, 0, false);
	__atomic_store_n(&E.t[0].pause_us, 500, __ATOMIC_RELAXED);
	assert_true(clients_reach(1, 10, 10000));
	for (int kill_no = 0; kill_no < kills; kill_no++) {
		struct killer k = { .pid = E.daemon, .ifd = ifd };
		int acked = idx, inflight = -1;
		pthread_t th;
		char *maps;
		long t0;

		/* Half of the kills after a random time (anywhere in a request), half at a random write of the store. */
		if (random() % 2)
			k.delay_us = 1 + random() % 30000;
		else
			k.events = 1 + (int)(random() % 6);
		drain(ifd);
		assert_int_equal(pthread_create(&th, NULL, killer_run, &k), 0);
		for (;;) {
			inflight = (idx + 1) % NREQ;
			if (!send_request(inflight))
				break;
			idx = inflight;
			applies++;
		}
		pthread_join(th, NULL);
		daemon_kill();
		if (idx == acked)
			idle++;
		acked = idx;
		idx = which_state(acked, inflight, kill_no);
		if (idx == inflight)
			durable_inflight++;
		else
			lost_inflight++;

		t0 = kb_now_ms();
		if (daemon_start()) {
			dump_log();
			fail_msg("kill %d: the daemon did not restart", kill_no);
		}
		restart_ms[kill_no] = kb_now_ms() - t0;
		maps = dump_frontends_map_as(true);
		if (strcmp(maps, ref_maps[idx]))
			fail_msg("kill %d: the maps after the restart are not the compile of state %d (%s):\n%s\nexpected:\n%s",
				 kill_no, idx, names_after[idx], maps, ref_maps[idx]);
		free(maps);
	}
	clients_stop(false);
	s = clients_sum(1);
	qsort(restart_ms, (size_t)kills, sizeof(long), long_cmp);
	printf("# %d kills, %ld acknowledged requests; the request in flight was durable %d times, not %d times "
	       "(%d kills before any request was acknowledged)\n", kills, applies, durable_inflight, lost_inflight, idle);
	printf("# restart to serving: median %ld ms, max %ld ms; snapshot generation %llu (compactions); clients: "
	       "%ld connects, %ld failed\n", restart_ms[kills / 2], restart_ms[kills - 1],
	       (unsigned long long)generation, s.total_ok, s.fail);
	e2e_assert_no_failure(s);
	assert_true(durable_inflight > 0 && lost_inflight > 0);
	close(ifd);
	for (int j = 0; j < NREQ; j++) {
		free(ref_state[j]);
		free(ref_maps[j]);
	}
}

static int group_setup(void **state)
{
	return node_setup("crash", 'k');
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_kill9_during_applies, test_teardown),
	};

	e2e_main_init("test_crash", group_teardown, 600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
