// SPDX-License-Identifier: Apache-2.0
/*
 * The resolver against a real dnsmasq on 127.0.0.1 (a random high port): A
 * and AAAA with TTLs, every lookup family, TTL clamping, answer changes, a
 * server that dies and comes back, NXDOMAIN past the TTL, the SSRF guard on
 * answers, absolute names, and 1,000 names at once without blocking the loop.
 * Nothing leaves 127.0.0.0/8: dnsmasq has no upstream, and the answers are
 * only data. Fails when /usr/sbin/dnsmasq is missing (make deps installs it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "resolver/resolver.h"

#define DNSMASQ "/usr/sbin/dnsmasq"
#define MAX_ARGS 64

/* ---- a dnsmasq child ------------------------------------------------------------------- */

struct dns {
	pid_t pid;
	int port;
	char dir[64];
	char hosts[128];
	const char *args[MAX_ARGS];	/* extra arguments, kept for restarts */
	size_t nargs;
	bool no_local;			/* no --local=/test/: unknown .test names are REFUSED (no upstream) */
};

static pid_t live_children[8];

static void kill_all_children(void)
{
	for (size_t i = 0; i < sizeof(live_children) / sizeof(live_children[0]); i++)
		if (live_children[i] > 0) {
			kill(live_children[i], SIGKILL);
			waitpid(live_children[i], NULL, 0);
			live_children[i] = 0;
		}
}

static void track(pid_t pid, bool add)
{
	for (size_t i = 0; i < sizeof(live_children) / sizeof(live_children[0]); i++)
		if (add ? live_children[i] == 0 : live_children[i] == pid) {
			live_children[i] = add ? pid : 0;
			return;
		}
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A free UDP+TCP port on 127.0.0.1 (the kernel's pick; dnsmasq binds it right after). */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* True once something holds the UDP port (dnsmasq is up). */
static bool port_taken(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	bool taken;

	taken = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno == EADDRINUSE;
	close(fd);
	return taken;
}

static void write_hosts(struct dns *d, const char *text)
{
	char tmp[160];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", d->hosts);
	f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(tmp, 0644);
	assert_int_equal(rename(tmp, d->hosts), 0);
}

static void dns_start(struct dns *d)
{
	char port[32], hosts[160];
	const char *argv[MAX_ARGS + 16];
	size_t k = 0;
	pid_t pid;

	snprintf(port, sizeof(port), "--port=%d", d->port);
	snprintf(hosts, sizeof(hosts), "--addn-hosts=%s", d->hosts);
	argv[k++] = DNSMASQ;
	argv[k++] = "--keep-in-foreground";
	argv[k++] = "--conf-file=/dev/null";
	argv[k++] = "--no-resolv";
	argv[k++] = "--no-hosts";
	argv[k++] = "--pid-file";
	argv[k++] = "--listen-address=127.0.0.1";
	argv[k++] = "--bind-interfaces";
	if (!d->no_local)
		argv[k++] = "--local=/test/";	/* names under .test that no record names are NXDOMAIN */
	argv[k++] = port;
	argv[k++] = hosts;
	for (size_t i = 0; i < d->nargs; i++)
		argv[k++] = d->args[i];
	argv[k] = NULL;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* dies with the test, even on a crash */
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execv(DNSMASQ, (char *const *)argv);
		_exit(127);
	}
	d->pid = pid;
	track(pid, true);
	for (int i = 0; i < 200 && !port_taken(d->port); i++) {
		int st;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			track(pid, false);
			d->pid = 0;
			fail_msg("dnsmasq exited at start (status %d)", st);
		}
		usleep(10000);
	}
	assert_true(port_taken(d->port));
}

static void dns_stop(struct dns *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		track(d->pid, false);
		d->pid = 0;
	}
}

/* dnsmasq rereads the hosts file in its loop; callers wait for the answer they expect, bounded. */
static void dns_reload(struct dns *d)
{
	assert_true(d->pid > 0);
	assert_int_equal(kill(d->pid, SIGHUP), 0);
}

static void dns_arg(struct dns *d, const char *a)
{
	assert_true(d->nargs < MAX_ARGS);
	d->args[d->nargs++] = a;
}

/* ---- fixture ------------------------------------------------------------------------------ */

struct fx {
	struct dns dns;
	struct kb_resolver *r;
	struct kb_policy pol;
	char server[32];
	const char *servers[1];
	int64_t max_call_ms;	/* the slowest process/tick call seen */
	bool one_fd;		/* drive through kb_resolver_epoll_fd() as the daemon does */
};

/* `make deps` installs dnsmasq (dnsmasq-base): without it these tests fail rather than skip. */
static void need_dnsmasq(void)
{
	if (access(DNSMASQ, X_OK) != 0)
		fail_msg(DNSMASQ " is not installed (package dnsmasq-base; run `make deps`)");
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dns.dir, sizeof(f->dns.dir), "/tmp/kb-resolver-XXXXXX");
	if (!mkdtemp(f->dns.dir)) {
		free(f);
		return -1;
	}
	chmod(f->dns.dir, 0755);	/* dnsmasq may drop to nobody and must still read the hosts file */
	snprintf(f->dns.hosts, sizeof(f->dns.hosts), "%s/hosts", f->dns.dir);
	kb_policy_init(&f->pol);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char tmp[160];

	kb_resolver_free(f->r);
	dns_stop(&f->dns);
	kill_all_children();
	unlink(f->dns.hosts);
	snprintf(tmp, sizeof(tmp), "%s.tmp", f->dns.hosts);
	unlink(tmp);
	rmdir(f->dns.dir);
	free(f);
	return 0;
}

/* Start dnsmasq with `hosts` as its hosts file, and a resolver pointed at it. */
static void start(struct fx *f, const char *hosts, struct kb_resolver_opts *o)
{
	struct kb_resolver_opts def = { 0 };
	char err[256];

	need_dnsmasq();
	f->dns.port = free_port();
	write_hosts(&f->dns, hosts);
	dns_start(&f->dns);
	if (!o)
		o = &def;
	snprintf(f->server, sizeof(f->server), "127.0.0.1:%d", f->dns.port);
	f->servers[0] = f->server;
	o->servers = f->servers;
	o->nservers = 1;
	o->set_search = true;	/* never the machine's search list */
	if (!o->policy)
		o->policy = &f->pol;
	if (!o->timeout_ms)
		o->timeout_ms = 300;
	if (!o->tries)
		o->tries = 1;
	f->r = kb_resolver_new(o, err, sizeof(err));
	if (!f->r)
		fail_msg("kb_resolver_new: %s", err);
}

static void timed(struct fx *f, int64_t t0)
{
	int64_t dt = now_ms() - t0;

	if (dt > f->max_call_ms)
		f->max_call_ms = dt;
}

/* Run the resolver's loop with poll() for up to ms, or until done(f) holds. */
static bool drive(struct fx *f, int ms, bool (*done)(struct fx *f, void *arg), void *arg)
{
	int64_t end = now_ms() + ms;

	for (;;) {
		struct pollfd p[16];
		size_t n;
		int64_t left = end - now_ms(), t0;
		int tmo;

		if (done && done(f, arg))
			return true;
		if (left <= 0)
			return false;
		if (f->one_fd) {
			struct pollfd one = { .fd = kb_resolver_epoll_fd(f->r), .events = POLLIN };

			tmo = kb_resolver_timeout_ms(f->r);
			if (tmo < 0 || tmo > left)
				tmo = (int)left;
			poll(&one, 1, tmo);
			t0 = now_ms();
			if (one.revents)
				kb_resolver_process(f->r);
			kb_resolver_tick(f->r);
			timed(f, t0);
			continue;
		}
		n = kb_resolver_fds(f->r, p, 16);
		assert_true(n <= 16);
		tmo = kb_resolver_timeout_ms(f->r);
		if (tmo < 0 || tmo > left)
			tmo = (int)left;
		if (tmo > 50)
			tmo = 50;
		poll(p, n, tmo);
		for (size_t i = 0; i < n; i++)
			if (p[i].revents) {
				t0 = now_ms();
				kb_resolver_process_fd(f->r, p[i].fd, (unsigned)p[i].revents);
				timed(f, t0);
			}
		t0 = now_ms();
		kb_resolver_tick(f->r);
		timed(f, t0);
	}
}

static bool idle(struct fx *f, void *arg)
{
	return kb_resolver_busy(f->r) == 0;
}

static void settle(struct fx *f)
{
	assert_true(drive(f, 5000, idle, NULL));
}

static void set1(struct fx *f, const char *host, enum kb_lookup_family fam, int64_t refresh_ms, bool respect)
{
	struct kb_resolver_name n = { host, fam, refresh_ms, respect };

	assert_int_equal(kb_resolver_set_names(f->r, &n, 1), 0);
}

/* The addresses of host as text, "a,b" (sorted as the resolver returns them). */
static const char *addrs(struct fx *f, const char *host, char *buf, size_t len)
{
	__u8 fam[16];
	__u32 ip[16][4];
	size_t n = kb_resolver_lookup(f->r, host, fam, ip, 16), k = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && k < len; i++) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(fam[i], ip[i], a, sizeof(a));
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? "," : "", a);
	}
	return buf;
}

#define assert_addrs(f, host, want)                                                       \
	do {                                                                              \
		char _b[512];                                                             \
		assert_string_equal(addrs((f), (host), _b, sizeof(_b)), (want));          \
	} while (0)

/* One field of a name's status. */
static struct json_object *st_get(struct fx *f, const char *host, const char *key, struct json_object **hold)
{
	struct json_object *o = kb_resolver_name_json(f->r, host), *v = NULL;

	assert_non_null(o);
	json_object_object_get_ex(o, key, &v);
	*hold = o;
	return v;
}

static int64_t st_int(struct fx *f, const char *host, const char *key)
{
	struct json_object *h, *v = st_get(f, host, key, &h);
	int64_t x;

	if (!v) {
		json_object_put(h);
		fail_msg("%s: %s is null", host, key);
	}
	x = json_object_get_int64(v);
	json_object_put(h);
	return x;
}

/* The string field, or "(null)"; copied into buf. */
static const char *st_str(struct fx *f, const char *host, const char *key, char *buf, size_t len)
{
	struct json_object *h, *v = st_get(f, host, key, &h);

	snprintf(buf, len, "%s", v ? json_object_get_string(v) : "(null)");
	json_object_put(h);
	return buf;
}

#define assert_st(f, host, key, want)                                                     \
	do {                                                                              \
		char _b[512];                                                             \
		assert_string_equal(st_str((f), (host), (key), _b, sizeof(_b)), (want));  \
	} while (0)

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_a_and_aaaa_with_ttls(void **state)
{
	struct fx *f = *state;
	char b[512];
	int64_t left;

	dns_arg(&f->dns, "--host-record=r1.test,198.51.100.9,2001:db8:1::9,120");
	dns_arg(&f->dns, "--host-record=r1.test,198.51.100.8,2001:db8:1::8,90");
	start(f, "", NULL);
	set1(f, "r1.test", KB_LOOKUP_V4_AND_V6, 0, true);
	assert_addrs(f, "r1.test", "");	/* not answered yet */
	assert_st(f, "r1.test", "state", "pending");
	settle(f);
	assert_addrs(f, "r1.test", "198.51.100.8,198.51.100.9,2001:db8:1::8,2001:db8:1::9");
	assert_true(kb_resolver_changed(f->r));
	assert_false(kb_resolver_changed(f->r));
	assert_st(f, "r1.test", "state", "resolved");
	assert_int_equal(st_int(f, "r1.test", "ttl_s"), 90);	/* the smallest record TTL */
	left = st_int(f, "r1.test", "ttl_left_s");
	assert_true(left > 85 && left <= 90);
	assert_true(llabs(st_int(f, "r1.test", "last_refresh") - (int64_t)time(NULL)) <= 2);
	assert_st(f, "r1.test", "last_error", "(null)");
	assert_int_equal(st_int(f, "r1.test", "consecutive_failures"), 0);
	assert_true(st_int(f, "r1.test", "next_refresh_s") > 85);
	/* The whole status object holds the name with its families. */
	{
		struct json_object *all = kb_resolver_status_json(f->r), *n, *a;

		assert_true(json_object_object_get_ex(all, "r1.test", &n));
		assert_true(json_object_object_get_ex(n, "addresses", &a));
		assert_int_equal(json_object_array_length(a), 4);
		assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(a, 3), "family")),
				    "IPv6");
		json_object_put(all);
	}
	/* Unknown names are empty and have no status. */
	assert_addrs(f, "other.test", "");
	assert_null(kb_resolver_name_json(f->r, "other.test"));
	(void)b;
}

static void test_lookup_families(void **state)
{
	struct fx *f = *state;
	struct kb_resolver_name names[] = {
		{ "b4.test", KB_LOOKUP_V4, 0, true },
		{ "b6.test", KB_LOOKUP_V6, 0, true },
		{ "b4p.test", KB_LOOKUP_V4_PREFERRED, 0, true },
		{ "b6p.test", KB_LOOKUP_V6_PREFERRED, 0, true },
		{ "ball.test", KB_LOOKUP_V4_AND_V6, 0, true },
		{ "o6-4p.test", KB_LOOKUP_V4_PREFERRED, 0, true },	/* only AAAA: falls back to v6 */
		{ "o4-6p.test", KB_LOOKUP_V6_PREFERRED, 0, true },	/* only A: falls back to v4 */
		{ "o6-4.test", KB_LOOKUP_V4, 0, true },		/* only AAAA, IPv4 asked: NODATA */
		{ "o4-all.test", KB_LOOKUP_V4_AND_V6, 0, true },	/* AAAA NODATA is fine */
		{ "switch.test", KB_LOOKUP_V4, 0, true },
	};
	char b[64];

	dns_arg(&f->dns, "--host-record=b4.test,b6.test,b4p.test,b6p.test,ball.test,switch.test,198.51.100.1,2001:db8:1::1,60");
	dns_arg(&f->dns, "--host-record=o6-4p.test,o6-4.test,2001:db8:1::6,60");
	dns_arg(&f->dns, "--host-record=o4-6p.test,o4-all.test,203.0.113.4,60");
	start(f, "", NULL);
	assert_int_equal(kb_resolver_set_names(f->r, names, sizeof(names) / sizeof(names[0])), 0);
	settle(f);
	assert_addrs(f, "b4.test", "198.51.100.1");
	assert_addrs(f, "b6.test", "2001:db8:1::1");
	assert_addrs(f, "b4p.test", "198.51.100.1");
	assert_addrs(f, "b6p.test", "2001:db8:1::1");
	assert_addrs(f, "ball.test", "198.51.100.1,2001:db8:1::1");
	assert_addrs(f, "o6-4p.test", "2001:db8:1::6");
	assert_addrs(f, "o4-6p.test", "203.0.113.4");
	assert_addrs(f, "o6-4.test", "");
	assert_st(f, "o6-4.test", "last_error", "NODATA");
	assert_st(f, "o6-4.test", "state", "pending");
	assert_addrs(f, "o4-all.test", "203.0.113.4");
	assert_st(f, "o4-all.test", "last_error", "(null)");

	/* The lookup family comes from the policy: changing it re-asks at once. */
	assert_addrs(f, "switch.test", "198.51.100.1");
	names[9].family = KB_LOOKUP_V6;
	assert_int_equal(kb_resolver_set_names(f->r, names, sizeof(names) / sizeof(names[0])), 0);
	settle(f);
	assert_addrs(f, "switch.test", "2001:db8:1::1");
	assert_st(f, "switch.test", "lookupFamily", "IPv6");
	/* Unchanged names kept their answers and were not asked again. */
	assert_addrs(f, "b4.test", "198.51.100.1");
	assert_true(st_int(f, "b4.test", "next_refresh_s") > 50);

	/* The parser of BackendTrafficPolicy's values. */
	{
		enum kb_lookup_family x;

		assert_true(kb_lookup_family_parse(NULL, &x));
		assert_int_equal(x, KB_LOOKUP_V4_PREFERRED);
		assert_true(kb_lookup_family_parse("IPv4AndIPv6", &x));
		assert_int_equal(x, KB_LOOKUP_V4_AND_V6);
		assert_false(kb_lookup_family_parse("ipv4", &x));
		assert_string_equal(kb_lookup_family_name(KB_LOOKUP_V6_PREFERRED), "IPv6Preferred");
	}
	(void)b;
}

/* zero.test's TTL restarted: more than 2 s after *t0 (its clamped TTL) it still has time left. */
static bool ttl_restarted(struct fx *f, void *t0)
{
	return now_ms() - *(int64_t *)t0 > 2000 && st_int(f, "zero.test", "ttl_left_s") >= 1;
}

/* At least *want good answers in all. */
static bool refreshed(struct fx *f, void *want)
{
	uint64_t r, e;

	kb_resolver_counters(f->r, &r, &e);
	return r >= *(uint64_t *)want;
}

static void test_ttl_clamped(void **state)
{
	struct fx *f = *state;
	struct kb_resolver_opts o = { .min_ttl_ms = 2000, .max_ttl_ms = 3000 };
	struct kb_resolver_name names[] = {
		{ "long.test", KB_LOOKUP_V4, 0, true },
		{ "zero.test", KB_LOOKUP_V4, 0, true },
		{ "fixed.test", KB_LOOKUP_V4, 1500, false },	/* respectDnsTtl false: every 1.5 s */
	};
	int64_t left, t0, next;
	uint64_t r0, e0;

	dns_arg(&f->dns, "--host-record=long.test,198.51.100.11,3600");
	/* hosts-file records get --local-ttl, 0 by default */
	start(f, "198.51.100.12 zero.test\n198.51.100.13 fixed.test\n", &o);
	assert_int_equal(kb_resolver_set_names(f->r, names, 3), 0);
	settle(f);
	t0 = now_ms();
	assert_int_equal(st_int(f, "long.test", "ttl_s"), 3600);
	left = st_int(f, "long.test", "ttl_left_s");
	assert_true(left >= 2 && left <= 3);	/* clamped to max 3 s */
	assert_true(st_int(f, "long.test", "next_refresh_s") <= 3);
	assert_int_equal(st_int(f, "zero.test", "ttl_s"), 0);
	left = st_int(f, "zero.test", "ttl_left_s");
	assert_true(left >= 1 && left <= 2);	/* raised to min 2 s */
	next = st_int(f, "fixed.test", "next_refresh_s");
	assert_true(next >= 1 && next <= 2);
	assert_true(kb_resolver_changed(f->r));	/* from the first answers */
	/*
	 * Refreshes follow the clamped TTL: zero.test is asked again after 2 s,
	 * and its TTL restarts (without a refresh it would be 0 by then).
	 */
	if (!drive(f, 6000, ttl_restarted, &t0))
		fail_msg("zero.test was not asked again within 6 s (ttl_left_s %lld)",
			 (long long)st_int(f, "zero.test", "ttl_left_s"));
	print_message("# zero.test re-asked; TTL restarted %lld ms after the first answer\n", (long long)(now_ms() - t0));
	assert_st(f, "zero.test", "state", "resolved");
	assert_addrs(f, "zero.test", "198.51.100.12");
	/* Identical answers are no change: two more refreshes (of any name), and nothing changed. */
	kb_resolver_counters(f->r, &r0, &e0);
	r0 += 2;
	assert_true(drive(f, 6000, refreshed, &r0));
	kb_resolver_counters(f->r, &r0, &e0);
	assert_int_equal(e0, 0);
	assert_false(kb_resolver_changed(f->r));
}

static bool has_addr(struct fx *f, void *want)
{
	char b[512];

	return strcmp(addrs(f, "chg.test", b, sizeof(b)), want) == 0;
}

static void test_answer_change_after_ttl(void **state)
{
	struct fx *f = *state;
	struct kb_resolver_opts o = { .min_ttl_ms = 1000 };

	dns_arg(&f->dns, "--local-ttl=1");
	start(f, "198.51.100.20 chg.test\n", &o);
	set1(f, "chg.test", KB_LOOKUP_V4_PREFERRED, 0, true);
	settle(f);
	assert_addrs(f, "chg.test", "198.51.100.20");
	assert_int_equal(st_int(f, "chg.test", "ttl_s"), 1);
	assert_true(kb_resolver_changed(f->r));
	write_hosts(&f->dns, "198.51.100.21 chg.test\n198.51.100.22 chg.test\n");
	dns_reload(&f->dns);
	assert_true(drive(f, 4000, has_addr, "198.51.100.21,198.51.100.22"));
	assert_true(kb_resolver_changed(f->r));
	assert_false(kb_resolver_changed(f->r));
}

static bool state_is(struct fx *f, void *arg)
{
	char b[64];
	const char *const *w = arg;	/* { host, state } */

	return strcmp(st_str(f, w[0], "state", b, sizeof(b)), w[1]) == 0;
}

static bool failed_twice(struct fx *f, void *host)
{
	return st_int(f, host, "consecutive_failures") >= 2;
}

static void test_server_down_keeps_answer_and_recovers(void **state)
{
	struct fx *f = *state;
	struct kb_resolver_opts o = { .min_ttl_ms = 1000, .retry_base_ms = 200 };
	const char *stale[] = { "up.test", "stale" }, *resolved[] = { "up.test", "resolved" };
	const char *tmo_pending[] = { "slow.test", "pending" };
	char b[128];

	f->one_fd = true;	/* sockets close and reopen here: the inner epoll must follow */
	dns_arg(&f->dns, "--local-ttl=1");
	dns_arg(&f->dns, "--server=/slow.test/127.0.0.1#1");	/* an upstream that never answers */
	start(f, "198.51.100.30 up.test\n", &o);
	set1(f, "up.test", KB_LOOKUP_V4, 0, true);
	settle(f);
	assert_addrs(f, "up.test", "198.51.100.30");

	dns_stop(&f->dns);
	assert_true(drive(f, 4000, state_is, stale));
	assert_addrs(f, "up.test", "198.51.100.30");	/* the last good answer stays */
	st_str(f, "up.test", "last_error", b, sizeof(b));
	assert_true(strcmp(b, "connection refused") == 0 || strcmp(b, "timeout") == 0);
	/* Retried with backoff (200 ms, then 400 ms). */
	if (!drive(f, 4000, failed_twice, "up.test"))
		fail_msg("up.test: %lld consecutive failure(s) after 4 s", (long long)st_int(f, "up.test", "consecutive_failures"));
	assert_addrs(f, "up.test", "198.51.100.30");
	assert_true(kb_resolver_changed(f->r));	/* the first answer only */
	assert_false(kb_resolver_changed(f->r));

	/* Back on the same port: the next retry (backoff capped at the 1 s TTL) succeeds. */
	dns_start(&f->dns);
	assert_true(drive(f, 4000, state_is, resolved));
	assert_int_equal(st_int(f, "up.test", "consecutive_failures"), 0);
	assert_addrs(f, "up.test", "198.51.100.30");
	assert_false(kb_resolver_changed(f->r));
	assert_string_not_equal(st_str(f, "up.test", "last_error", b, sizeof(b)), "(null)");	/* still shown, with its time */
	assert_true(st_int(f, "up.test", "last_error_time") > 0);

	/* A server that takes the query and never answers: a timeout. */
	set1(f, "slow.test", KB_LOOKUP_V4, 0, true);
	settle(f);
	assert_true(drive(f, 100, state_is, tmo_pending));
	assert_st(f, "slow.test", "last_error", "timeout");
	assert_addrs(f, "slow.test", "");
	/* up.test left the set: it is gone. */
	assert_null(kb_resolver_name_json(f->r, "up.test"));
	assert_addrs(f, "up.test", "");
}

static bool is_empty(struct fx *f, void *host)
{
	return kb_resolver_lookup(f->r, host, (__u8[1]){ 0 }, (__u32[1][4]){ { 0 } }, 1) == 0;
}

static bool nxdomain_seen(struct fx *f, void *host)
{
	char b[64];

	return strcmp(st_str(f, host, "last_error", b, sizeof(b)), "NXDOMAIN") == 0;
}

static void test_nxdomain_empties_after_ttl(void **state)
{
	struct fx *f = *state;
	struct kb_resolver_opts o = { .min_ttl_ms = 1000, .retry_base_ms = 200 };
	const char *resolved[] = { "gone.test", "resolved" };
	char b[64];
	int64_t t0;

	f->one_fd = true;
	dns_arg(&f->dns, "--local-ttl=3");
	start(f, "198.51.100.40 gone.test\n", &o);
	/* Not respecting the TTL: asked every second, so NXDOMAIN arrives before the 3 s TTL ends. */
	set1(f, "gone.test", KB_LOOKUP_V4, 1000, false);
	settle(f);
	t0 = now_ms();
	assert_addrs(f, "gone.test", "198.51.100.40");
	assert_true(kb_resolver_changed(f->r));
	write_hosts(&f->dns, "");
	dns_reload(&f->dns);

	/* The next refresh (1 s) sees NXDOMAIN; the answer is kept while its 3 s TTL lasts. */
	if (!drive(f, 2900 - (int)(now_ms() - t0), nxdomain_seen, "gone.test"))
		fail_msg("gone.test: no NXDOMAIN within its 3 s TTL (last_error \"%s\")",
			 st_str(f, "gone.test", "last_error", b, sizeof(b)));
	assert_st(f, "gone.test", "state", "stale");
	assert_addrs(f, "gone.test", "198.51.100.40");	/* within the TTL: kept */
	assert_false(kb_resolver_changed(f->r));

	assert_true(drive(f, 3000, is_empty, "gone.test"));
	assert_true(now_ms() - t0 >= 2900);	/* not before the TTL ran out */
	assert_st(f, "gone.test", "state", "expired");
	assert_true(kb_resolver_changed(f->r));

	/* The record comes back: retries (capped at the refresh rate) pick it up. */
	write_hosts(&f->dns, "198.51.100.41 gone.test\n");
	dns_reload(&f->dns);
	assert_true(drive(f, 3000, state_is, resolved));
	assert_addrs(f, "gone.test", "198.51.100.41");
	assert_true(kb_resolver_changed(f->r));
}

static void test_ssrf_filters_answers(void **state)
{
	struct fx *f = *state;
	char *allow[] = { "127.0.0.2/32" }, *node[] = { "203.0.113.5" };
	struct kb_resolver_name names[] = {
		{ "meta.test", KB_LOOKUP_V4, 0, true },
		{ "lo.test", KB_LOOKUP_V4_PREFERRED, 0, true },
		{ "lo6.test", KB_LOOKUP_V6, 0, true },
		{ "mixed.test", KB_LOOKUP_V4, 0, true },
		{ "node.test", KB_LOOKUP_V4, 0, true },
		{ "allowed.test", KB_LOOKUP_V4, 0, true },
		{ "pref.test", KB_LOOKUP_V4_PREFERRED, 0, true },
		{ "mapped.test", KB_LOOKUP_V6, 0, true },
		{ "127.0.0.1", KB_LOOKUP_V4, 0, true },
		{ "198.51.100.77", KB_LOOKUP_V6, 0, true },
	};
	struct json_object *h, *ref;
	const char *why;
	char b[64];

	f->pol.allow_cidrs = allow;
	f->pol.nallow_cidrs = 1;
	f->pol.node_addrs = node;
	f->pol.nnode_addrs = 1;
	dns_arg(&f->dns, "--host-record=meta.test,169.254.169.254,60");
	dns_arg(&f->dns, "--host-record=lo.test,127.0.0.1,60");
	dns_arg(&f->dns, "--host-record=lo6.test,::1,60");
	dns_arg(&f->dns, "--host-record=mixed.test,198.51.100.50,60");
	dns_arg(&f->dns, "--host-record=mixed.test,127.0.0.1,60");
	dns_arg(&f->dns, "--host-record=node.test,203.0.113.5,60");
	dns_arg(&f->dns, "--host-record=allowed.test,127.0.0.2,60");
	dns_arg(&f->dns, "--host-record=pref.test,127.0.0.1,2001:db8:1::5,60");
	dns_arg(&f->dns, "--host-record=mapped.test,::ffff:169.254.169.254,60");
	start(f, "", NULL);
	assert_int_equal(kb_resolver_set_names(f->r, names, sizeof(names) / sizeof(names[0])), 0);
	/* IP literals resolve to themselves at once, judged like the rest. */
	assert_addrs(f, "198.51.100.77", "198.51.100.77");
	assert_addrs(f, "127.0.0.1", "");
	assert_st(f, "198.51.100.77", "state", "literal");
	settle(f);

	assert_addrs(f, "meta.test", "");
	ref = st_get(f, "meta.test", "refused", &h);
	assert_int_equal(json_object_array_length(ref), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "address")),
			    "169.254.169.254");
	why = json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "reason"));
	assert_non_null(strstr(why, "link-local (169.254.0.0/16), refused by kbackend's SSRF guard"));
	assert_non_null(strstr(why, "--allow-endpoint 169.254.169.254/32"));
	json_object_put(h);
	assert_st(f, "meta.test", "state", "refused");	/* a good answer, with nothing usable */
	assert_st(f, "meta.test", "last_error", "(null)");
	{
		char b2[256];

		assert_non_null(strstr(st_str(f, "meta.test", "reason", b2, sizeof(b2)),
				       "no usable address: 1 answered address refused by the SSRF guard"));
	}

	assert_addrs(f, "lo.test", "");	/* IPv4Preferred: A refused, no AAAA */
	ref = st_get(f, "lo.test", "refused", &h);
	assert_non_null(strstr(json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "reason")),
			       "loopback (127.0.0.0/8)"));
	json_object_put(h);
	assert_addrs(f, "lo6.test", "");
	ref = st_get(f, "lo6.test", "refused", &h);
	assert_non_null(strstr(json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "reason")),
			       "::1 is loopback (::1/128)"));
	json_object_put(h);
	assert_addrs(f, "mixed.test", "198.51.100.50");
	ref = st_get(f, "mixed.test", "refused", &h);
	assert_int_equal(json_object_array_length(ref), 1);
	json_object_put(h);
	assert_addrs(f, "node.test", "");
	ref = st_get(f, "node.test", "refused", &h);
	assert_non_null(strstr(json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "reason")),
			       "an address of this node"));
	json_object_put(h);
	assert_addrs(f, "allowed.test", "127.0.0.2");	/* --allow-endpoint wins */
	/* IPv4Preferred with only a refused A: the AAAA is used, and the refused A is still reported. */
	assert_addrs(f, "pref.test", "2001:db8:1::5");
	ref = st_get(f, "pref.test", "refused", &h);
	assert_int_equal(json_object_array_length(ref), 1);
	json_object_put(h);
	/* A v4-mapped AAAA is judged as the IPv4 address it reaches. */
	assert_addrs(f, "mapped.test", "");
	ref = st_get(f, "127.0.0.1", "refused", &h);
	assert_int_equal(json_object_array_length(ref), 1);
	json_object_put(h);

	/* The shared guard itself. */
	{
		unsigned char a4[4] = { 198, 51, 100, 1 }, lo[4] = { 127, 0, 0, 1 }, m6[16] = { [10] = 0xff, [11] = 0xff, 127, 0, 0, 1 };
		char why2[256];

		assert_true(kb_policy_allows_ip(&f->pol, AF_INET, a4, why2, sizeof(why2)));
		assert_string_equal(why2, "");
		assert_false(kb_policy_allows_ip(NULL, AF_INET, lo, why2, sizeof(why2)));
		assert_string_equal(why2,
				    "127.0.0.1 is loopback (127.0.0.0/8), refused by kbackend's SSRF guard; allow it with --allow-endpoint 127.0.0.1/32");
		assert_false(kb_policy_allows_ip(NULL, AF_INET6, m6, why2, sizeof(why2)));
		assert_non_null(strstr(why2, "loopback (127.0.0.0/8)"));
	}
	(void)b;
}

/* The answer of one record type in the last round ("NOERROR", "REFUSED", ...), from last_answers. */
static const char *last_answer(struct fx *f, const char *host, const char *type, char *buf, size_t len)
{
	struct json_object *h, *v = st_get(f, host, "last_answers", &h), *t = NULL;

	snprintf(buf, len, "%s", v && json_object_object_get_ex(v, type, &t) && t ? json_object_get_string(t) : "(null)");
	json_object_put(h);
	return buf;
}

/*
 * One family answers only addresses the SSRF guard refuses, the other fails
 * with a server error (a second dnsmasq with no upstream answers REFUSED):
 * the name shows what was answered (the refused address, with its reason),
 * why nothing is programmed (state "refused"), and the other family's error
 * as the rcode it was.
 */
static void test_refused_answer_other_family_fails(void **state)
{
	struct fx *f = *state;
	struct dns up = { .no_local = true };
	char fwd[64], b[256];
	struct kb_resolver_name names[] = {
		{ "pref.ref.test", KB_LOOKUP_V4_PREFERRED, 0, true },	/* A refused, then AAAA REFUSED */
		{ "both.ref.test", KB_LOOKUP_V4_AND_V6, 0, true },	/* A refused, AAAA REFUSED at once */
		{ "v6p.ref.test", KB_LOOKUP_V6_PREFERRED, 0, true },	/* AAAA refused, then A REFUSED */
	};
	struct json_object *h, *ref;

	need_dnsmasq();
	up.port = free_port();
	snprintf(up.hosts, sizeof(up.hosts), "%s", f->dns.hosts);
	write_hosts(&f->dns, "");
	dns_start(&up);
	/* The record types with no local record go to the upstream, which refuses them. */
	snprintf(fwd, sizeof(fwd), "--server=/ref.test/127.0.0.1#%d", up.port);
	dns_arg(&f->dns, fwd);
	dns_arg(&f->dns, "--host-record=pref.ref.test,both.ref.test,169.254.169.254,60");
	dns_arg(&f->dns, "--host-record=v6p.ref.test,fe80::7,60");
	start(f, "", NULL);
	assert_int_equal(kb_resolver_set_names(f->r, names, 3), 0);
	settle(f);
	for (size_t i = 0; i < 3; i++) {
		const char *host = names[i].host, *bad = i < 2 ? "169.254.169.254" : "fe80::7";
		const char *good_t = i < 2 ? "A" : "AAAA", *bad_t = i < 2 ? "AAAA" : "A";

		assert_addrs(f, host, "");
		print_message("# %s: state %s, last_error %s, %s %s, %s %s\n", host, st_str(f, host, "state", b, 64),
			      st_str(f, host, "last_error", b + 64, 64), good_t, last_answer(f, host, good_t, b + 128, 64),
			      bad_t, last_answer(f, host, bad_t, b + 192, 64));
		assert_st(f, host, "state", "refused");
		assert_st(f, host, "last_error", "REFUSED");
		assert_string_equal(last_answer(f, host, good_t, b, sizeof(b)), "NOERROR");
		assert_string_equal(last_answer(f, host, bad_t, b, sizeof(b)), "REFUSED");
		ref = st_get(f, host, "refused", &h);
		assert_int_equal(json_object_array_length(ref), 1);
		assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "address")),
				    bad);
		assert_non_null(strstr(json_object_get_string(json_object_object_get(json_object_array_get_idx(ref, 0), "reason")),
				       "refused by kbackend's SSRF guard"));
		json_object_put(h);
		st_str(f, host, "reason", b, sizeof(b));
		assert_non_null(strstr(b, "no usable address"));
		assert_non_null(strstr(b, "REFUSED"));
	}
	/*
	 * With two servers (the same one twice) c-ares keeps its failover and
	 * cannot tell REFUSED from a refused connection: the text says so.
	 */
	{
		const char *two[] = { f->server, f->server };
		struct kb_resolver_opts o2 = { .servers = two, .nservers = 2, .set_search = true, .policy = &f->pol,
					       .timeout_ms = 300, .tries = 1 };
		struct kb_resolver *one = f->r;
		char err[256];

		f->r = kb_resolver_new(&o2, err, sizeof(err));
		if (!f->r)
			fail_msg("kb_resolver_new: %s", err);
		set1(f, "pref.ref.test", KB_LOOKUP_V4_PREFERRED, 0, true);
		settle(f);
		assert_st(f, "pref.ref.test", "state", "refused");
		assert_st(f, "pref.ref.test", "last_error", "no server answered (connection refused, REFUSED or SERVFAIL)");
		kb_resolver_free(f->r);
		f->r = one;
	}
	dns_stop(&up);
}

static void test_absolute_names_skip_search(void **state)
{
	struct fx *f = *state;
	const char *search[] = { "test" };
	struct kb_resolver_opts o = { .search = search, .nsearch = 1 };
	struct kb_resolver_name names[] = {
		{ "short", KB_LOOKUP_V4, 0, true },	/* relative: short.test via the search list */
		{ "short.", KB_LOOKUP_V4, 0, true },	/* absolute: "short" at the root, which has no answer */
		{ "abs.test.", KB_LOOKUP_V4, 0, true },
	};
	char b[64];

	dns_arg(&f->dns, "--host-record=short.test,198.51.100.60,60");
	dns_arg(&f->dns, "--host-record=abs.test,198.51.100.61,60");
	start(f, "", &o);
	/* start() sets set_search; it keeps our list. */
	assert_int_equal(kb_resolver_set_names(f->r, names, 3), 0);
	settle(f);
	assert_addrs(f, "short", "198.51.100.60");
	assert_addrs(f, "short.", "");
	assert_string_not_equal(st_str(f, "short.", "last_error", b, sizeof(b)), "(null)");
	assert_addrs(f, "abs.test.", "198.51.100.61");
	assert_addrs(f, "ABS.Test.", "198.51.100.61");	/* names are case-insensitive */
}

static void test_bad_servers_refused(void **state)
{
	const char *bad[] = { "not-an-ip", "127.0.0.1:0", "127.0.0.1:70000", "[::1", "[::1]x", "" };
	const char *good[] = { "127.0.0.1", "127.0.0.1:5353", "[::1]:5353", "::1", "[::1]" };
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kb_resolver_opts o = { .servers = &bad[i], .nservers = 1 };

		assert_null(kb_resolver_new(&o, err, sizeof(err)));
		assert_non_null(strstr(err, "--dns-server"));
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct kb_resolver_opts o = { .servers = &good[i], .nservers = 1 };
		struct kb_resolver *r = kb_resolver_new(&o, err, sizeof(err));

		if (!r)
			fail_msg("%s: %s", good[i], err);
		kb_resolver_free(r);
	}
}

/* ---- 1,000 names through epoll, with sock_cb ---------------------------------------------- */

struct ep {
	int epfd;
	int nfds;
	int max_fds;
};

static void ep_sock(void *ctx, int fd, bool rd, bool wr)
{
	struct ep *e = ctx;
	struct epoll_event ev = { .events = (rd ? EPOLLIN : 0) | (wr ? EPOLLOUT : 0), .data.fd = fd };

	if (!rd && !wr) {
		epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
		e->nfds--;
	} else if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT) {
		epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
		e->nfds++;
		if (e->nfds > e->max_fds)
			e->max_fds = e->nfds;
	}
}

static bool ep_drive(struct fx *f, struct ep *e, int ms)
{
	int64_t end = now_ms() + ms;

	while (kb_resolver_busy(f->r)) {
		struct epoll_event evs[16];
		int64_t left = end - now_ms(), t0;
		int tmo = kb_resolver_timeout_ms(f->r), n;

		if (left <= 0)
			return false;
		if (tmo < 0 || tmo > left)
			tmo = (int)left;
		n = epoll_wait(e->epfd, evs, 16, tmo);
		for (int i = 0; i < n; i++) {
			t0 = now_ms();
			kb_resolver_process_fd(f->r, evs[i].data.fd, evs[i].events);
			timed(f, t0);
		}
		t0 = now_ms();
		kb_resolver_tick(f->r);
		timed(f, t0);
	}
	return true;
}

#define NBIG 1000

static void test_thousand_names_never_block(void **state)
{
	struct fx *f = *state;
	struct ep e = { .epfd = epoll_create1(EPOLL_CLOEXEC) };
	struct kb_resolver_opts o = { .sock_cb = ep_sock, .sock_ctx = &e, .timeout_ms = 1000, .tries = 3 };
	static struct kb_resolver_name names[2 * NBIG];
	static char hostbuf[2 * NBIG][32];
	size_t hosts_len = 0, resolved = 0;
	char *hosts = malloc(NBIG * 2 * 40 + 1);
	int64_t t0, dt;

	assert_non_null(hosts);
	assert_true(e.epfd >= 0);
	hosts[0] = '\0';
	for (int i = 0; i < 2 * NBIG; i++) {
		/* n0..n1499 exist (so the second set has 500 old and 500 new names); n1500.. do not. */
		snprintf(hostbuf[i], sizeof(hostbuf[i]), "n%04d.test", i);
		if (i < 1500)
			hosts_len += (size_t)sprintf(hosts + hosts_len, "%s.%d %s\n", i % 2 ? "198.51.100" : "203.0.113",
						     1 + i % 250, hostbuf[i]);
		names[i] = (struct kb_resolver_name){ hostbuf[i], i % 3 == 0 ? KB_LOOKUP_V4_AND_V6 : KB_LOOKUP_V4_PREFERRED,
						      0, true };
	}
	dns_arg(&f->dns, "--local-ttl=60");
	start(f, hosts, &o);
	free(hosts);

	t0 = now_ms();
	assert_int_equal(kb_resolver_set_names(f->r, names, NBIG), 0);
	dt = now_ms() - t0;
	/*
	 * Never blocks: a call that waited for the network would last at least
	 * one query timeout (1 s here), so that is the bound; the calls measured
	 * here are CPU only (tens of ms, more under ASan on a loaded machine).
	 */
	if (dt >= o.timeout_ms)
		fail_msg("set_names of %d names took %lld ms", NBIG, (long long)dt);
	assert_true(kb_resolver_busy(f->r) == NBIG);
	/* Halfway, the desired set moves: 500 names stay, 500 go (some in flight), 500 come. */
	ep_drive(f, &e, 30);
	assert_int_equal(kb_resolver_set_names(f->r, names + NBIG / 2, NBIG), 0);
	if (!ep_drive(f, &e, 10000))
		fail_msg("1,000 names not resolved within 10 s (%zu busy)", kb_resolver_busy(f->r));
	dt = now_ms() - t0;
	for (int i = NBIG / 2; i < NBIG / 2 + NBIG; i++) {
		char b[128], want[64];

		snprintf(want, sizeof(want), "%s.%d", i % 2 ? "198.51.100" : "203.0.113", 1 + i % 250);
		addrs(f, hostbuf[i], b, sizeof(b));
		if (strcmp(b, want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", hostbuf[i], b, want);
		resolved++;
	}
	for (int i = 0; i < NBIG / 2; i++)
		assert_null(kb_resolver_name_json(f->r, hostbuf[i]));
	assert_int_equal(resolved, NBIG);
	print_message("# 1,000 names (1,500 asked) in %lld ms; slowest process/tick call %lld ms; %d sockets at most\n",
		      (long long)dt, (long long)f->max_call_ms, e.max_fds);
	if (f->max_call_ms >= o.timeout_ms)
		fail_msg("a process/tick call took %lld ms", (long long)f->max_call_ms);
	assert_true(dt < 10000);
	{
		struct json_object *all = kb_resolver_status_json(f->r);

		assert_int_equal(json_object_object_length(all), NBIG);
		json_object_put(all);
	}
	kb_resolver_free(f->r);	/* closes its sockets through sock_cb */
	f->r = NULL;
	assert_int_equal(e.nfds, 0);
	close(e.epfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_a_and_aaaa_with_ttls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_families, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_clamped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_change_after_ttl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_down_keeps_answer_and_recovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nxdomain_empties_after_ttl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ssrf_filters_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_answer_other_family_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absolute_names_skip_search, setup, teardown),
		cmocka_unit_test(test_bad_servers_refused),
		cmocka_unit_test_setup_teardown(test_thousand_names_never_block, setup, teardown),
	};

	atexit(kill_all_children);
	return cmocka_run_group_tests_name("resolver", tests, NULL, NULL);
}
