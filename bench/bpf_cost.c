// SPDX-License-Identifier: Apache-2.0
/* Per-connect cost of the connect4 program (bpf_stats ns/call) as the frontend table grows from 10 to 100,000. */
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>

#include <bpf/bpf.h>

#include "e2e.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8), all of it made here and removed on exit:
 *
 *   kbb-node-<pid>  198.51.100.254/24 203.0.113.254/24  ==veth==  kbb-be-<pid>
 *   (clients, no default route)            198.51.100.0/24 and 203.0.113.0/24 local, TCP :8080
 *
 * Frontends are 198.18.0.0/15 addresses, which the node netns cannot route:
 * a connect that succeeds was steered. The clients run in a cgroup made
 * here, which is the only place the programs attach.
 */
#define EP_PORT 8080
#define FE_PORT 80
#define NHOT 10
#define MAX_NS 16
#define MAX_REPS 64

struct bench {
	char cgroot[PATH_MAX];
	bool cgmounted;
	char cgroup[PATH_MAX];
	char pin[PATH_MAX];
	char node[64], be[64];
	bool netns_made;
	pid_t server;
	struct kb_dataplane *dp;
	int stats_fd;
	pid_t owner;	/* forked clients and servers must never tear down */
};

static struct bench B = { .stats_fd = -1 };

/* Options. */
static unsigned long opt_k = 20000;
static unsigned opt_reps = 5;
static __u32 opt_ns[MAX_NS] = { 10, 1000, 10000, 100000 };
static unsigned opt_nns = 4;
static bool opt_tcp;
static bool opt_cold = true;
static int opt_cpu;
static const char *opt_label = "";

static void cleanup(void)
{
	/* Idempotent, and safe from a signal handler's exit() or any failure path. */
	if (getpid() != B.owner)
		return;
	if (B.server > 0) {
		kill(B.server, SIGKILL);
		waitpid(B.server, NULL, 0);
		B.server = 0;
	}
	if (B.dp)
		B.dp->ops->close(B.dp);
	B.dp = NULL;
	if (B.pin[0])
		kb_dataplane_unload(B.pin);
	B.pin[0] = '\0';
	if (B.cgroup[0])
		e2e_cgroup_remove(B.cgroot, B.cgroup);
	B.cgroup[0] = '\0';
	e2e_cgroup2_release(B.cgroot, B.cgmounted);
	B.cgmounted = false;
	if (B.netns_made) {
		e2e_sh("ip netns del %s", B.node);
		e2e_sh("ip netns del %s", B.be);
		B.netns_made = false;
	}
	if (B.stats_fd >= 0)
		close(B.stats_fd);	/* bpf_stats go back off with the last enabling fd */
	B.stats_fd = -1;
}

static void on_signal(int sig)
{
	exit(128 + sig);	/* runs cleanup() through atexit */
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bpf_cost: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "kbbn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kbbb%d", (int)getpid());
	B.netns_made = true;
	if (e2e_sh("ip netns add %s", B.node) || e2e_sh("ip netns add %s", B.be))
		return -1;
	/* The veth is made inside the node netns: nothing touches the root namespace. */
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", B.node, vn, vb, B.be) ||
	    e2e_sh("ip -n %s link set lo up", B.node) || e2e_sh("ip -n %s link set lo up", B.be) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", B.node, vn) ||
	    e2e_sh("ip -n %s addr add 203.0.113.254/24 dev %s", B.node, vn) ||
	    e2e_sh("ip -n %s link set %s up", B.node, vn) || e2e_sh("ip -n %s link set %s up", B.be, vb) ||
	    /* Every endpoint address is local in the backend netns, so one listener serves them all. */
	    e2e_sh("ip -n %s route add local 198.51.100.0/24 dev lo", B.be) ||
	    e2e_sh("ip -n %s route add local 203.0.113.0/24 dev lo", B.be) ||
	    e2e_sh("ip -n %s route add 198.51.100.254/32 dev %s", B.be, vb) ||
	    e2e_sh("ip -n %s route add 203.0.113.254/32 dev %s", B.be, vb))
		return -1;
	/* The rule that keeps mistakes on this machine: no default route where the clients live. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", B.node))
		return -1;
	return 0;
}

/* TCP endpoint: accept and close, in the backend netns. */
static void server_main(int ready)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(EP_PORT) };
	int one = 1, fd;

	if (e2e_setns(B.be))
		_exit(1);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		_exit(1);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4096))
		_exit(2);
	if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	for (;;) {
		int c = accept(fd, NULL, NULL);

		if (c >= 0)
			close(c);
	}
}

static void setup(void)
{
	int p[2];
	char c;

	if (geteuid() != 0)
		die("needs root");
	B.owner = getpid();
	if (atexit(cleanup))
		die("atexit failed");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	if (e2e_cgroup2_root(B.cgroot, sizeof(B.cgroot), &B.cgmounted))
		die("no cgroup2 hierarchy");
	snprintf(B.cgroup, sizeof(B.cgroup), "%s/kbbench-%d", B.cgroot, (int)getpid());
	snprintf(B.pin, sizeof(B.pin), "/sys/fs/bpf/kbackend-bench-%d", (int)getpid());
	snprintf(B.node, sizeof(B.node), "kbb-node-%d", (int)getpid());
	snprintf(B.be, sizeof(B.be), "kbb-be-%d", (int)getpid());
	if (mkdir(B.cgroup, 0755))
		die("mkdir %s: %s", B.cgroup, strerror(errno));
	if (e2e_ensure_bpffs())
		die("cannot mount bpffs");
	if (topo_up())
		die("cannot build the netns topology (iproute2 with veth needed)");
	if (opt_tcp) {
		if (pipe(p))
			die("pipe: %s", strerror(errno));
		B.server = fork();
		if (B.server < 0)
			die("fork: %s", strerror(errno));
		if (B.server == 0) {
			close(p[0]);
			server_main(p[1]);
		}
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			die("backend listener did not start");
		close(p[0]);
	}
}

/* ---- frontends: N of them, each with 1 or 2 IP endpoints ---- */

struct fe_set {
	struct kb_cfrontend *fes;
	struct kb_cendpoint *eps;	/* 2 per frontend */
	__u32 *slots;			/* 2 per frontend */
	char (*addrs)[16];
	size_t n;
};

/* Frontend i: 198.18.0.0/15 + i + 1, port 80. Hot frontends are the first NHOT, present at every N. */
static __u32 fe_ip(size_t i)
{
	return htonl(0xc6120000u + (__u32)i + 1);	/* 198.18.0.0 */
}

static void fe_set_build(struct fe_set *s, size_t n, __u8 proto)
{
	s->n = n;
	s->fes = calloc(n, sizeof(*s->fes));
	s->eps = calloc(2 * n, sizeof(*s->eps));
	s->slots = calloc(2 * n, sizeof(*s->slots));
	s->addrs = calloc(n, sizeof(*s->addrs));
	if (!s->fes || !s->eps || !s->slots || !s->addrs)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		struct kb_cfrontend *fe = &s->fes[i];
		struct kb_cendpoint *ep = &s->eps[2 * i];
		__u32 nep = 1 + (__u32)(i & 1);

		fe->key.ip[0] = fe_ip(i);
		fe->key.port = htons(FE_PORT);
		fe->key.family = AF_INET;
		fe->key.proto = proto;
		inet_ntop(AF_INET, fe->key.ip, s->addrs[i], sizeof(s->addrs[i]));
		fe->address = s->addrs[i];
		fe->port = FE_PORT;
		fe->proto = proto;
		fe->lb = KB_LB_RANDOM;
		fe->eps = ep;
		fe->neps = nep;
		fe->slots = &s->slots[2 * i];
		fe->nslots = nep;
		/* 250 endpoints in each documentation net, shared between frontends as services share pods. */
		for (__u32 e = 0; e < nep; e++) {
			ep[e].type = KB_EP_IP;
			ep[e].address = "bench";
			ep[e].port = EP_PORT;
			ep[e].family = AF_INET;
			ep[e].ip[0] = htonl((e ? 0xcb007100u : 0xc6336400u) + 1 + (__u32)(i % 250));
			ep[e].healthy = true;
			ep[e].nslots = 1;
			fe->slots[e] = e;
		}
	}
}

static void program(struct fe_set *s, size_t n)
{
	struct kb_compiled c = { .fes = s->fes, .nfes = n };

	if (B.dp->ops->apply(B.dp, &c))
		die("apply of %zu frontends failed", n);
}

/* ---- bpf_stats of a pinned program ---- */

static int prog_fd_of_link(const char *name)
{
	struct bpf_link_info li = { 0 };
	__u32 len = sizeof(li);
	char path[PATH_MAX];
	int lfd, pfd;

	snprintf(path, sizeof(path), "%s/links/%s", B.pin, name);
	lfd = bpf_obj_get(path);
	if (lfd < 0)
		return -1;
	if (bpf_obj_get_info_by_fd(lfd, &li, &len)) {
		close(lfd);
		return -1;
	}
	close(lfd);
	pfd = bpf_prog_get_fd_by_id(li.prog_id);
	return pfd;
}

struct pstat {
	__u64 ns, cnt;
};

static struct pstat prog_stats(int fd)
{
	struct bpf_prog_info pi = { 0 };
	__u32 len = sizeof(pi);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &pi, &len))
		return (struct pstat){ 0, 0 };
	return (struct pstat){ pi.run_time_ns, pi.run_cnt };
}

/* What holds the per-socket frontend record, read from the pinned map, for the report. */
static const char *peer_store(void)
{
	struct bpf_map_info mi = { 0 };
	__u32 len = sizeof(mi);
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/sock_peers", B.pin);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return "none";
	if (bpf_obj_get_info_by_fd(fd, &mi, &len))
		mi.type = 0;
	close(fd);
	switch (mi.type) {
	case BPF_MAP_TYPE_HASH:
		return mi.map_flags & BPF_F_NO_PREALLOC ? "hash-noprealloc" : "hash";
	case BPF_MAP_TYPE_LRU_HASH:
		return mi.map_flags & BPF_F_NO_COMMON_LRU ? "lru-percpu" : "lru";
	case BPF_MAP_TYPE_SK_STORAGE:
		return "sk_storage";
	default:
		return "other";
	}
}

/* ---- the client: K connects in the node netns, inside the cgroup, on one CPU ---- */

struct client_result {
	unsigned long ok, failed, peer_checked, peer_ok;
	__u64 wall_ns;	/* the whole loop, user-visible: includes kernel work outside BPF (storage frees) */
};

enum set { SET_HOT, SET_COLD, SET_MISS };
static const char *const set_names[] = { "hot", "cold", "miss" };

static void client_main(const struct fe_set *s, size_t n, enum set set, int out)
{
	struct client_result r = { 0 };
	struct timespec t0, t1;
	cpu_set_t cpus;

	if (e2e_cgroup_enter(B.cgroup, 0) || e2e_setns(B.node))
		_exit(1);
	CPU_ZERO(&cpus);
	CPU_SET(opt_cpu, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long i = 0; i < opt_k; i++) {
		/* Cold cycles through every frontend with a stride, so consecutive keys share no cache line. */
		size_t f = set == SET_COLD ? (size_t)((i * 7919u) % n) : (size_t)(i % NHOT);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(FE_PORT) };
		struct linger lg = { 1, 0 };
		int fd;

		sa.sin_addr.s_addr = fe_ip(f);
		if (set == SET_MISS) {
			/* Not a frontend: an endpoint addressed directly, which the programs must leave alone. */
			sa.sin_addr.s_addr = htonl(0xc6336400u + 1 + (__u32)(i % NHOT));
			sa.sin_port = htons(EP_PORT);
		}
		fd = socket(AF_INET, opt_tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		if (fd < 0)
			_exit(2);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			r.failed++;
		} else {
			r.ok++;
			/* A sample of getpeername checks that the frontend record was written. */
			if (i % 1000 == 0) {
				struct sockaddr_in peer;
				socklen_t pl = sizeof(peer);

				r.peer_checked++;
				if (!getpeername(fd, (struct sockaddr *)&peer, &pl) &&
				    peer.sin_addr.s_addr == sa.sin_addr.s_addr && peer.sin_port == sa.sin_port)
					r.peer_ok++;
			}
		}
		/* RST on close: no TIME_WAIT pile-up over hundreds of thousands of connects. */
		if (opt_tcp)
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r.wall_ns = (__u64)(t1.tv_sec - t0.tv_sec) * 1000000000ull + (__u64)t1.tv_nsec - (__u64)t0.tv_nsec;
	if (write(out, &r, sizeof(r)) != sizeof(r))
		_exit(3);
	_exit(0);
}

static struct client_result run_clients(const struct fe_set *s, size_t n, enum set set)
{
	struct client_result r = { 0 };
	int p[2], st;
	pid_t pid;

	if (pipe(p))
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(p[0]);
		client_main(s, n, set, p[1]);
	}
	close(p[1]);
	if (read(p[0], &r, sizeof(r)) != sizeof(r))
		r.failed = opt_k;
	close(p[0]);
	waitpid(pid, &st, 0);
	return r;
}

/* ---- measurement and report ---- */

struct meas {
	double ns[MAX_REPS];		/* connect4 ns/call, one per repetition */
	double rel_ns[MAX_REPS];	/* sock_release ns/call, when that program exists */
	unsigned n;
};

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double t[MAX_REPS];

	if (!n)
		return 0;
	memcpy(t, v, n * sizeof(*t));
	qsort(t, n, sizeof(*t), dbl_cmp);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static void measure(const struct fe_set *s, size_t n, enum set set, unsigned rep, int c4, int rel,
		    struct meas *m, const char *store)
{
	struct pstat a = prog_stats(c4), ra = prog_stats(rel), b, rb;
	struct client_result r = run_clients(s, n, set);
	double ns, rns = 0;

	b = prog_stats(c4);
	rb = prog_stats(rel);
	if (r.failed || r.peer_ok != r.peer_checked)
		die("n=%zu %s: %lu of %lu connects failed, getpeername showed the destination %lu of %lu times", n,
		    set_names[set], r.failed, opt_k, r.peer_ok, r.peer_checked);
	if (b.cnt <= a.cnt)
		die("connect4 did not run (bpf_stats off?)");
	ns = (double)(b.ns - a.ns) / (double)(b.cnt - a.cnt);
	if (rb.cnt > ra.cnt)
		rns = (double)(rb.ns - ra.ns) / (double)(rb.cnt - ra.cnt);
	m->ns[m->n] = ns;
	m->rel_ns[m->n++] = rns;
	printf("bpf_cost label=%s store=%s proto=%s set=%s n=%zu rep=%u calls=%llu connect4_ns=%.1f "
	       "sock_release_ns=%.1f loop_ns=%.0f\n",
	       opt_label[0] ? opt_label : "-", store, opt_tcp ? "tcp" : "udp", set_names[set], n, rep,
	       (unsigned long long)(b.cnt - a.cnt), ns, rns, (double)r.wall_ns / (double)opt_k);
	fflush(stdout);
}

static void print_median(const char *store, enum set set, unsigned i, const struct meas *m)
{
	double v = median(m[i].ns, m[i].n), v0 = median(m[0].ns, m[0].n);

	printf("bpf_cost_median label=%s store=%s proto=%s set=%s n=%u reps=%u connect4_ns=%.1f ratio=%.3f "
	       "sock_release_ns=%.1f\n",
	       opt_label[0] ? opt_label : "-", store, opt_tcp ? "tcp" : "udp", set_names[set], opt_ns[i], m[i].n, v,
	       v / v0, median(m[i].rel_ns, m[i].n));
}

/* Medians per N; ratios are against the first N given (10 by default). */
static void report(const struct meas *hot, const struct meas *cold, const struct meas *miss, const char *store)
{
	printf("\nconnect4 ns/call, median of %u (bpf_stats); ratio against N=%u\n", opt_reps, opt_ns[0]);
	printf("%-8s %9s %7s %9s %7s %9s %7s %11s %11s\n", "N", "hot", "ratio", "cold", "ratio", "miss", "ratio",
	       "rel(hot)", "rel(miss)");
	for (unsigned i = 0; i < opt_nns; i++) {
		double h = median(hot[i].ns, hot[i].n), h0 = median(hot[0].ns, hot[0].n);
		double c = median(cold[i].ns, cold[i].n), c0 = median(cold[0].ns, cold[0].n);
		double m = median(miss[i].ns, miss[i].n), m0 = median(miss[0].ns, miss[0].n);

		printf("%-8u %9.1f %7.3f ", opt_ns[i], h, h / h0);
		if (opt_cold)
			printf("%9.1f %7.3f ", c, c / c0);
		else
			printf("%9s %7s ", "-", "-");
		printf("%9.1f %7.3f %11.1f %11.1f\n", m, m / m0, median(hot[i].rel_ns, hot[i].n),
		       median(miss[i].rel_ns, miss[i].n));
	}
	printf("hot: %d fixed frontends (the algorithmic cost); cold: cycles through all N frontends (cache\n"
	       "misses, not algorithmic cost); miss: destinations that are no frontend (the fast path out);\n"
	       "rel: the sock_release program at close(), per call (0: none attached).\n",
	       NHOT);
	for (unsigned i = 0; i < opt_nns; i++) {
		print_median(store, SET_HOT, i, hot);
		if (opt_cold)
			print_median(store, SET_COLD, i, cold);
		print_median(store, SET_MISS, i, miss);
	}
}

static void usage(int rc)
{
	fprintf(rc ? stderr : stdout,
		"usage: bpf_cost [-k CONNECTS] [-r REPS] [-n N,N,...] [--tcp] [--no-cold] [--cpu C] [--label L]\n"
		"  Programs N frontends (1-2 endpoints each) through the dataplane, then times connect4 with\n"
		"  bpf_stats over CONNECTS connect()+close() to 10 fixed hot frontends (and, unless --no-cold,\n"
		"  cycling through all N). Repetitions interleave the N values. Needs root; makes and removes\n"
		"  its own netns, cgroup and pins. Defaults: -k 20000 -r 5 -n 10,1000,10000,100000, UDP.\n");
	exit(rc);
}

static void parse_ns(const char *arg)
{
	char *dup = strdup(arg), *tok, *save = NULL;

	opt_nns = 0;
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long v = strtoul(tok, NULL, 10);

		if (opt_nns == MAX_NS || v < NHOT || v > 130000)
			usage(2);
		opt_ns[opt_nns++] = (__u32)v;
	}
	free(dup);
	if (!opt_nns)
		usage(2);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "tcp", no_argument, NULL, 't' },   { "no-cold", no_argument, NULL, 'C' },
		{ "cpu", required_argument, NULL, 'c' }, { "label", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },  { 0 },
	};
	struct meas hot[MAX_NS] = { 0 }, cold[MAX_NS] = { 0 }, miss[MAX_NS] = { 0 };
	struct fe_set s;
	__u32 maxn = 0;
	const char *store;
	int o, c4, rel;

	while ((o = getopt_long(argc, argv, "k:r:n:h", lopts, NULL)) != -1) {
		switch (o) {
		case 'k':
			opt_k = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			opt_reps = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			parse_ns(optarg);
			break;
		case 't':
			opt_tcp = true;
			break;
		case 'C':
			opt_cold = false;
			break;
		case 'c':
			opt_cpu = atoi(optarg);
			break;
		case 'l':
			opt_label = optarg;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (!opt_k || !opt_reps || opt_reps > MAX_REPS)
		usage(2);
	if (getenv("KB_VERBOSE"))
		kb_verbosity = atoi(getenv("KB_VERBOSE"));
	for (unsigned i = 0; i < opt_nns; i++)
		if (opt_ns[i] > maxn)
			maxn = opt_ns[i];

	setup();
	{
		/* Room for the largest table twice over: a shrink and regrow never waits for retired runs. */
		struct kb_dataplane_opts dopts = { .bpffs = B.pin, .cgroup = B.cgroup, .max_frontends = maxn + 64,
						   .max_endpoints = 4 * maxn + 64,
						   .max_slots = 6 * maxn + 64 };

		if (kb_dataplane_bpf_open(&dopts, &B.dp))
			die("cannot open the dataplane");
	}
	B.stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (B.stats_fd < 0)
		die("cannot enable bpf_stats: %s", strerror(errno));
	c4 = prog_fd_of_link("connect4");
	if (c4 < 0)
		die("no connect4 link pinned");
	rel = prog_fd_of_link("sock_release");	/* absent unless the peer store needs it */
	store = peer_store();
	fe_set_build(&s, maxn, opt_tcp ? KB_PROTO_TCP : KB_PROTO_UDP);

	printf("# bpf_cost: store=%s proto=%s connects=%lu reps=%u cpu=%d kernel bpf_stats (run_time_ns/run_cnt)\n",
	       store, opt_tcp ? "tcp" : "udp", opt_k, opt_reps, opt_cpu);
	/* Warm-up, not counted: first touches of maps, page cache, slab. */
	program(&s, opt_ns[0]);
	run_clients(&s, opt_ns[0], SET_HOT);

	for (unsigned r = 0; r < opt_reps; r++) {
		/* Each repetition starts at another N, so drift over time spreads over every N. */
		for (unsigned j = 0; j < opt_nns; j++) {
			unsigned i = (j + r) % opt_nns;

			program(&s, opt_ns[i]);
			measure(&s, opt_ns[i], SET_HOT, r, c4, rel, &hot[i], store);
			if (opt_cold)
				measure(&s, opt_ns[i], SET_COLD, r, c4, rel, &cold[i], store);
			measure(&s, opt_ns[i], SET_MISS, r, c4, rel, &miss[i], store);
		}
	}

	report(hot, cold, miss, store);
	close(c4);
	if (rel >= 0)
		close(rel);
	return 0;
}
