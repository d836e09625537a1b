// SPDX-License-Identifier: Apache-2.0
/* e2e: invariant 1 — every connect is answered by an endpoint of a configuration that was live while it ran. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <bpf/bpf.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8), made here and removed at the end:
 *
 *   kbt-snode-<pid>  198.51.100.254/24  ==veth==  kbt-sbe-<pid>  198.51.100.1/24, and
 *   (clients, no default route)                   198.51.100.64/26 local (AnyIP) on lo
 *
 * One TCP listener on 0.0.0.0:8081 in the backend answers each connection
 * with the address it was reached at, so every address of the /26 is an
 * endpoint that tells who answered.
 *
 * Generations: apply g gives frontend f (198.18.0.20 + f, port 80) the
 * endpoints of block (f, g mod NGEN): 198.51.100.(64 + f*24 + (g mod NGEN)*3 + i)
 * for i < n(g mod NGEN), n cycling 1, 2, 3 so runs change size. An answer thus
 * names its frontend and its generation (mod NGEN). Each apply is timed
 * (before, after); each connect records its frontend, the time before
 * connect() and the time connect() returned, and its answer. A connect is
 * right only when its answer belongs to its own frontend and to a generation
 * live at some instant of [before, returned]: generation g is live from
 * before(g) to after(g + 1). A run published before its slots were written, a
 * live run reused or overwritten, or a frontend left on a stale run all
 * answer from a generation (or a frontend) that was not live, or fail.
 * The slots map is small (2048), so after ~500 generations every new run is
 * a retired one, reused as soon as its grace period allows.
 *
 * A connect reads its slot within microseconds of reading its frontend, so
 * a run reused too early (or written in place) is almost never caught in
 * the act by an answer. The runs are therefore also checked as the maps
 * show them after every apply: every generation changes every table, so
 * each frontend must move to a new run, and a slot may be written again only
 * a grace period (ARCHITECTURE.md: 1 s) after the run holding it was retired.
 * Since a retirement happens after apply g started and a write before apply
 * g' returned, after(g') - before(g) < 1 s proves a slot was reused early.
 */
#define GRACE_NS 1000000000ull
#define EP_PORT 8081
#define NFE 2
#define NGEN 8
#define PER_GEN 3
#define MAX_GENS 200000
#define MAX_RECS 400000
#define NCLIENTS 2
#define MAX_SLOTS 2048

struct rec {
	__u64 t0, t1;	/* CLOCK_MONOTONIC ns: before connect(), after it returned */
	__s32 ans;	/* endpoint index (address - .64), -1 not an endpoint, -1000 - errno on failure */
	__u8 fe;
};

struct client_log {
	volatile int stop;
	volatile long n;
	struct rec r[MAX_RECS];
};

struct env {
	const char *skip;
	char cgroot[PATH_MAX];
	bool cgmounted;
	char cgroup[PATH_MAX];
	char pin[PATH_MAX];
	char node[64], be[64];
	bool netns_made;
	pid_t server;
	pid_t kids[NCLIENTS];
	struct client_log *logs[NCLIENTS];
	struct kb_dataplane *dp;
};

static struct env E;

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

/* Endpoints in generation class gm: 1, 2 or 3, so a changed table also changes size. */
static unsigned gen_width(unsigned gm)
{
	return 1 + gm % 3;
}

/* ---- backend: one wildcard listener, two workers ---- */

static void server_main(int ready)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(EP_PORT) };
	int one = 1, fd;

	if (e2e_setns(E.be))
		_exit(1);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1024))
		_exit(2);
	if (fork() == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	else if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	for (;;) {
		struct sockaddr_in me;
		socklen_t ml = sizeof(me);
		char msg[INET_ADDRSTRLEN];
		int c = accept(fd, NULL, NULL);

		if (c < 0)
			continue;
		if (!getsockname(c, (struct sockaddr *)&me, &ml) && inet_ntop(AF_INET, &me.sin_addr, msg, sizeof(msg)) &&
		    write(c, msg, strlen(msg)) < 0) {
			/* the client went away */
		}
		close(c);
	}
}

/* ---- setup and teardown ---- */

static int group_teardown(void **state)
{
	/* Idempotent: a failed setup and the signal handler run it too. */
	e2e_kids_kill(E.kids, NCLIENTS);
	for (int i = 0; i < NCLIENTS; i++) {
		if (E.logs[i])
			munmap(E.logs[i], sizeof(*E.logs[i]));
		E.logs[i] = NULL;
	}
	e2e_kill_group(&E.server);
	if (E.dp)
		E.dp->ops->close(E.dp);
	E.dp = NULL;
	if (E.pin[0])
		kb_dataplane_unload(E.pin);
	E.pin[0] = '\0';
	e2e_cgroups_release(E.cgroot, E.cgroup, &E.cgmounted);
	e2e_netns_del(&E.netns_made, E.node, E.be, (const char *)NULL);
	return 0;
}

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "kbsn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kbsb%d", (int)getpid());
	E.netns_made = true;	/* teardown deletes both names, made or not */
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be) ||
	    e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vb, E.be) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.be) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 198.51.100.1/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s route add local 198.51.100.64/26 dev lo", E.be) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.be, vb))
		return -1;
	/* The rule that keeps mistakes on this machine: no default route where the clients are. */
	return e2e_sh("ip -n %s route show default | grep -q .", E.node) ? 0 : -1;
}

static int group_setup(void **state)
{
	struct kb_dataplane_opts o = { .max_frontends = 64, .max_slots = MAX_SLOTS };
	int p[2];
	char c;

	if (e2e_netns_check(E.cgroot, sizeof(E.cgroot), &E.cgmounted, &E.skip)) {
		group_teardown(NULL);
		return -1;
	}
	if (E.skip)
		return 0;
	snprintf(E.cgroup, sizeof(E.cgroup), "%s/kbt-swap-%d", E.cgroot, (int)getpid());
	snprintf(E.pin, sizeof(E.pin), "/sys/fs/bpf/kbt-swap-%d", (int)getpid());
	snprintf(E.node, sizeof(E.node), "kbt-snode-%d", (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-sbe-%d", (int)getpid());
	if (mkdir(E.cgroup, 0755) || e2e_ensure_bpffs() || topo_up() || pipe(p)) {
		fprintf(stderr, "# test_swap: setup failed (cgroup, bpffs or netns)\n");
		group_teardown(NULL);
		return -1;
	}
	E.server = fork();
	if (E.server == 0) {
		e2e_child_init();
		setpgid(0, 0);
		close(p[0]);
		server_main(p[1]);
		_exit(0);
	}
	if (E.server > 0)
		setpgid(E.server, E.server);
	close(p[1]);
	if (E.server < 0 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		fprintf(stderr, "# test_swap: the backend server did not start\n");
		group_teardown(NULL);
		return -1;
	}
	close(p[0]);
	o.bpffs = E.pin;
	o.cgroup = E.cgroup;
	if (kb_dataplane_bpf_open(&o, &E.dp)) {
		group_teardown(NULL);
		return -1;
	}
	return 0;
}

/* ---- generations ---- */

struct gen_fe {
	struct kb_cfrontend fe;
	struct kb_cendpoint eps[PER_GEN];
	__u32 slots[PER_GEN];
	char addr[16], ep_addr[PER_GEN][16];
};

static void gen_build(struct gen_fe *g, unsigned f, unsigned gen)
{
	unsigned gm = gen % NGEN, n = gen_width(gm);
	struct kb_cfrontend *fe = &g->fe;

	memset(g, 0, sizeof(*g));
	snprintf(g->addr, sizeof(g->addr), "198.18.0.%u", 20 + f);
	fe->address = g->addr;
	fe->port = 80;
	fe->proto = KB_PROTO_TCP;
	fe->lb = KB_LB_RANDOM;
	inet_pton(AF_INET, g->addr, fe->key.ip);
	fe->key.port = htons(80);
	fe->key.family = AF_INET;
	fe->key.proto = KB_PROTO_TCP;
	fe->eps = g->eps;
	fe->neps = n;
	fe->slots = g->slots;
	fe->nslots = n;
	for (unsigned i = 0; i < n; i++) {
		struct kb_cendpoint *ep = &g->eps[i];

		snprintf(g->ep_addr[i], sizeof(g->ep_addr[i]), "198.51.100.%u", 64 + f * NGEN * PER_GEN + gm * PER_GEN + i);
		ep->type = KB_EP_IP;
		ep->address = g->ep_addr[i];
		ep->port = EP_PORT;
		ep->family = AF_INET;
		inet_pton(AF_INET, g->ep_addr[i], ep->ip);
		ep->healthy = true;
		ep->nslots = 1;
		g->slots[i] = i;
	}
}

static int gen_apply(unsigned gen)
{
	struct gen_fe g[NFE];
	struct kb_cfrontend cf[NFE];
	struct kb_compiled c = { .fes = cf, .nfes = NFE };

	for (unsigned f = 0; f < NFE; f++) {
		gen_build(&g[f], f, gen);
		cf[f] = g[f].fe;
	}
	return E.dp->ops->apply(E.dp, &c);
}

/* ---- clients ---- */

static void client_main(struct client_log *log, int id)
{
	cpu_set_t cpus;

	if (e2e_cgroup_enter(E.cgroup, 0) || e2e_setns(E.node))
		_exit(1);
	/* Spread over the CPUs, so connects run while the applier writes. */
	CPU_ZERO(&cpus);
	CPU_SET(id % 2, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	for (long i = 0; !log->stop && i < MAX_RECS; i++) {
		struct rec *r = &log->r[i];
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };
		struct timeval tv = { 2, 0 };
		struct linger lg = { 1, 0 };
		char buf[INET_ADDRSTRLEN] = "";
		__u32 ip;
		ssize_t n;
		int fd;

		r->fe = (__u8)((i + id) % NFE);
		sa.sin_addr.s_addr = htonl(0xc6120014u + r->fe);	/* 198.18.0.20 + fe */
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		r->t0 = now_ns();
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			r->t1 = now_ns();
			r->ans = -1000 - errno;
		} else {
			r->t1 = now_ns();
			n = read(fd, buf, sizeof(buf) - 1);
			if (n <= 0) {
				r->ans = -1000 - (n < 0 ? errno : EPIPE);
			} else {
				buf[n] = '\0';
				r->ans = -1;
				if (inet_pton(AF_INET, buf, &ip) == 1 && (ntohl(ip) & 0xffffffc0u) == 0xc6336440u)
					r->ans = (__s32)(ntohl(ip) & 0x3f);
			}
		}
		/* RST on close: no TIME_WAIT pile-up over tens of thousands of connects. */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		log->n = i + 1;
	}
	_exit(0);
}

static long clients_total(void)
{
	long n = 0;

	for (int i = 0; i < NCLIENTS; i++)
		n += E.logs[i]->n;
	return n;
}

/* ---- the check ---- */

static __u64 *ga, *gb;	/* apply g started at ga[g] and returned at gb[g] */
static unsigned ngens;

/* Is answer ans, for frontend fe, an endpoint of a generation live at some instant of [t0, t1]? */
static bool answer_live(const struct rec *r)
{
	unsigned f = (unsigned)r->ans / (NGEN * PER_GEN), gm = ((unsigned)r->ans / PER_GEN) % NGEN;
	unsigned idx = (unsigned)r->ans % PER_GEN, lo = 0, hi = ngens;

	if (f != r->fe || idx >= gen_width(gm))
		return false;
	/* The first generation still live at t0: its successor had not returned yet. */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (mid + 1 < ngens && gb[mid + 1] < r->t0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (unsigned g = lo; g < ngens && ga[g] <= r->t1; g++)
		if (g % NGEN == gm)
			return true;
	return false;
}

/* The runs as the maps show them: the frontends' current runs and when each slot was last retired. */
struct runs {
	int fefd;
	struct kb_frontend_key key[NFE];
	struct kb_frontend cur[NFE];
	__u64 retired[MAX_SLOTS];	/* before(g) of the apply that retired the slot's run; 0: never */
	bool used[MAX_SLOTS];
	unsigned reused, early;
	char first_early[192];
};

/* After apply g returned: read each frontend's run, retire its old run, check the new one. */
static void runs_after_apply(struct runs *R, unsigned g)
{
	for (unsigned f = 0; f < NFE; f++) {
		struct kb_frontend v, *o = &R->cur[f];

		assert_int_equal(bpf_map_lookup_elem(R->fefd, &R->key[f], &v), 0);
		assert_true(v.nslots && v.slot_base <= MAX_SLOTS - v.nslots);
		if (g > 0)
			for (__u32 s = o->slot_base; s < o->slot_base + o->nslots; s++)
				R->retired[s] = ga[g];
		for (__u32 s = v.slot_base; s < v.slot_base + v.nslots; s++) {
			if (R->used[s])
				R->reused++;
			R->used[s] = true;
			if (R->retired[s] && gb[g] - R->retired[s] < GRACE_NS && !R->early++)
				snprintf(R->first_early, sizeof(R->first_early),
					 "generation %u wrote slot %u of frontend %u at most %llu us after its run was "
					 "retired",
					 g, s, f, (unsigned long long)((gb[g] - R->retired[s]) / 1000));
		}
		*o = v;
	}
}

static void test_connect_sees_a_live_generation(void **state)
{
	static struct runs R;
	long checked = 0, failed = 0, stray = 0, total, deadline, want_reused, want_connects, bound_ms;
	char first_fail[256] = "", first_stray[256] = "";
	struct gen_fe g0;

	if (E.skip)
		skip();
	ga = calloc(MAX_GENS, sizeof(*ga));
	gb = calloc(MAX_GENS, sizeof(*gb));
	assert_true(ga && gb);
	memset(&R, 0, sizeof(R));
	{
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/frontends", E.pin);
		R.fefd = bpf_obj_get(path);
		assert_true(R.fefd >= 0);
	}
	for (unsigned f = 0; f < NFE; f++) {
		gen_build(&g0, f, 0);
		R.key[f] = g0.fe.key;
	}
	ga[0] = now_ns();
	assert_int_equal(gen_apply(0), 0);
	gb[0] = now_ns();
	runs_after_apply(&R, 0);
	ngens = 1;
	for (int i = 0; i < NCLIENTS; i++) {
		E.logs[i] = mmap(NULL, sizeof(*E.logs[i]), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		assert_true(E.logs[i] != MAP_FAILED);
		E.kids[i] = fork();
		assert_true(E.kids[i] >= 0);
		if (E.kids[i] == 0) {
			e2e_child_init();
			client_main(E.logs[i], i);
		}
	}
	/*
	 * Apply generation after generation until runs have been reused many
	 * times and the clients have made enough connects; bounded, and the
	 * bound is a failure that says which condition was not reached. Under
	 * KB_SCALE (e2e.h; an emulated CPU applies and connects several times
	 * slower) the counts shrink and the bound grows: the bound is there to
	 * end a run that stopped making progress, not to time it. The reuse
	 * target stays above a quarter of the slots, so that every frontend has
	 * moved onto retired runs many times over.
	 */
	want_reused = e2e_scaled(2 * MAX_SLOTS, MAX_SLOTS / 4);
	want_connects = e2e_scaled(20000, 2000);
	bound_ms = e2e_scaled_ms(60000);
	deadline = kb_now_ms() + bound_ms;
	while (ngens < MAX_GENS && kb_now_ms() < deadline) {
		if (R.reused >= want_reused && clients_total() >= want_connects)
			break;
		ga[ngens] = now_ns();
		if (gen_apply(ngens))
			fail_msg("apply of generation %u failed", ngens);
		gb[ngens] = now_ns();
		runs_after_apply(&R, ngens);
		ngens++;
	}
	for (int i = 0; i < NCLIENTS; i++)
		E.logs[i]->stop = 1;
	for (int i = 0; i < NCLIENTS; i++)
		assert_int_equal(e2e_kid_wait(&E.kids[i], NULL, kb_now_ms() + 10000), 0);
	close(R.fefd);
	total = clients_total();

	for (int i = 0; i < NCLIENTS; i++) {
		for (long k = 0; k < E.logs[i]->n; k++) {
			const struct rec *r = &E.logs[i]->r[k];

			if (r->t0 < gb[0])
				continue;
			checked++;
			if (r->ans <= -1000) {
				if (!failed++)
					snprintf(first_fail, sizeof(first_fail), "connect %ld to frontend %u failed: %s", k,
						 r->fe, strerror(-1000 - r->ans));
			} else if (r->ans < 0 || !answer_live(r)) {
				if (!stray++)
					snprintf(first_stray, sizeof(first_stray),
						 "connect %ld to frontend %u at +%llu us answered by 198.51.100.%d, no live "
						 "generation's endpoint",
						 k, r->fe, (unsigned long long)((r->t0 - gb[0]) / 1000), 64 + r->ans);
			}
		}
	}
	printf("# swap: %u generations, %u slot writes into reused slots (%u early), %ld connects checked, "
	       "%ld failed, %ld stray\n",
	       ngens, R.reused, R.early, checked, failed, stray);
	free(ga);
	free(gb);
	ga = gb = NULL;
	if (failed)
		printf("# first failure: %s\n", first_fail);
	if (stray)
		printf("# first stray: %s\n", first_stray);
	if (R.early)
		printf("# first early reuse: %s\n", R.first_early);
	if (failed || stray || R.early)
		fail_msg("%ld connects failed, %ld answered by no live generation's endpoint, %u slots reused early",
			 failed, stray, R.early);
	if (R.reused < want_reused || total < want_connects)
		fail_msg("not exercised within %ld s: %u reused slots written (want %ld), %ld connects (want %ld)",
			 bound_ms / 1000, R.reused, want_reused, total, want_connects);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_sees_a_live_generation),
	};

	e2e_main_init("test_swap", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
