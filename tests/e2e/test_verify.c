// SPDX-License-Identifier: Apache-2.0
/* e2e: the apply's shadow never hides a change from the kernel maps, and verify reports what the maps hold that the compile does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <bpf/bpf.h>

#include "e2e.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * No traffic: the maps are read back with bpf(2) and compared. The programs
 * attach to a cgroup made here (no process joins it), pins live under a
 * directory named with the pid; both go at the end.
 */
#define NFE 64
#define NEP 4

static struct {
	const char *skip;
	char cgroot[PATH_MAX];
	bool cgmounted;
	char cgroup[PATH_MAX];
	char pin[PATH_MAX];
	struct kb_dataplane *dp;
	struct e2e_fe fe[NFE];
	char addr[NFE][32];
	char ep[NFE][NEP][32];
	const char *eps[NFE][NEP];
	struct kb_cfrontend cf[NFE];
	char diffs[4096];
	int ndiffs;
} E;

static int open_dp(void)
{
	struct kb_dataplane_opts o = { .bpffs = E.pin, .cgroup = E.cgroup, .max_frontends = 1024,
				       .max_slots = 8192, .max_endpoints = 4096 };

	return kb_dataplane_bpf_open(&o, &E.dp);
}

static int group_teardown(void **state)
{
	(void)state;
	if (E.dp)
		E.dp->ops->close(E.dp);
	E.dp = NULL;
	if (E.pin[0])
		kb_dataplane_unload(E.pin);
	E.pin[0] = '\0';
	if (E.cgroup[0])
		e2e_cgroup_remove(E.cgroot, E.cgroup);
	E.cgroup[0] = '\0';
	e2e_cgroup2_release(E.cgroot, E.cgmounted);
	E.cgmounted = false;
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	if (e2e_netns_check(E.cgroot, sizeof(E.cgroot), &E.cgmounted, &E.skip))
		goto fail;
	if (E.skip)
		return 0;
	snprintf(E.cgroup, sizeof(E.cgroup), "%s/kbt-verify-%d", E.cgroot, (int)getpid());
	snprintf(E.pin, sizeof(E.pin), "/sys/fs/bpf/kbackend-test-verify-%d", (int)getpid());
	if (mkdir(E.cgroup, 0755) || e2e_ensure_bpffs() || open_dp())
		goto fail;
	return 0;
fail:
	group_teardown(NULL);
	return -1;
}

#define NEED_ENV()                \
	do {                      \
		if (E.skip)       \
			skip();   \
	} while (0)

/* Generation g of frontend f (198.18.1.f:80/tcp): NEP endpoints 198.51.100.(f + i*64 + g) % 250 + 2. */
static void build(unsigned f, unsigned g)
{
	snprintf(E.addr[f], sizeof(E.addr[f]), "198.18.1.%u", f + 1);
	for (unsigned i = 0; i < NEP; i++) {
		snprintf(E.ep[f][i], sizeof(E.ep[f][i]), "198.51.100.%u", (f + i * 64 + g) % 250 + 2);
		E.eps[f][i] = E.ep[f][i];
	}
	e2e_fe_init(&E.fe[f], E.addr[f], 80, KB_PROTO_TCP, KB_LB_RANDOM, E.eps[f], NEP, 8080, false);
}

static struct kb_compiled compiled(size_t n)
{
	for (size_t i = 0; i < n; i++) {
		E.cf[i] = E.fe[i].fe;
		E.cf[i].eps = E.fe[i].eps;
		E.cf[i].slots = E.fe[i].slots;
	}
	return (struct kb_compiled){ .fes = E.cf, .nfes = n };
}

static int apply(size_t n)
{
	struct kb_compiled c = compiled(n);

	return E.dp->ops->apply(E.dp, &c);
}

static void on_diff(void *ctx, const char *text)
{
	size_t len = strlen(E.diffs);

	(void)ctx;
	E.ndiffs++;
	print_message("# verify: %s\n", text);
	snprintf(E.diffs + len, sizeof(E.diffs) - len, "%s\n", text);
}

static int verify(size_t n)
{
	struct kb_compiled c = compiled(n);
	int r;

	E.diffs[0] = '\0';
	E.ndiffs = 0;
	r = E.dp->ops->verify(E.dp, &c, on_diff, NULL);
	assert_int_equal(r, E.ndiffs);
	return r;
}

static int pinned(const char *name)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", E.pin, name);
	return bpf_obj_get(path);
}

/* The address of slot s of frontend f, as the kernel holds it. */
static void kernel_slot(unsigned f, __u32 s, char *buf, size_t len)
{
	int fefd = pinned("frontends"), slfd = pinned("slots");
	struct kb_frontend v;
	struct kb_slot sl;
	__u32 k;

	assert_true(fefd >= 0 && slfd >= 0);
	assert_int_equal(bpf_map_lookup_elem(fefd, &E.fe[f].fe.key, &v), 0);
	assert_true(s < v.nslots);
	k = v.slot_base + s;
	assert_int_equal(bpf_map_lookup_elem(slfd, &k, &sl), 0);
	inet_ntop(AF_INET, sl.ip, buf, (socklen_t)len);
	close(fefd);
	close(slfd);
}

/*
 * Many frontends, one endpoint of one of them changes: the kernel map shows
 * the change and verify finds the maps equal to the compile. Then the same
 * after a restart that adopts the pins: the adopted shadow does not claim
 * the kernel holds the new state before it is written.
 */
static void test_shadow_hides_no_change(void **state)
{
	char got[64];

	(void)state;
	NEED_ENV();
	for (unsigned f = 0; f < NFE; f++)
		build(f, 0);
	assert_int_equal(apply(NFE), 0);
	assert_int_equal(verify(NFE), 0);
	assert_int_equal(apply(NFE), 0);	/* unchanged: nothing to write */
	assert_int_equal(verify(NFE), 0);

	/* One endpoint of frontend 37 moves. */
	snprintf(E.ep[37][2], sizeof(E.ep[37][2]), "203.0.113.77");
	inet_pton(AF_INET, E.ep[37][2], E.fe[37].eps[2].ip);
	assert_int_equal(apply(NFE), 0);
	kernel_slot(37, 2, got, sizeof(got));
	assert_string_equal(got, "203.0.113.77");
	assert_int_equal(verify(NFE), 0);

	/* Restart: adopt the pins, then change the same frontend back and another one. */
	E.dp->ops->close(E.dp);
	E.dp = NULL;
	assert_int_equal(open_dp(), 0);
	assert_int_equal(verify(NFE), 0);
	build(37, 0);
	build(5, 1);
	assert_int_equal(apply(NFE), 0);
	kernel_slot(37, 2, got, sizeof(got));
	assert_string_equal(got, E.ep[37][2]);
	kernel_slot(5, 0, got, sizeof(got));
	assert_string_equal(got, E.ep[5][0]);
	assert_int_equal(verify(NFE), 0);

	/* Frontends that go are deleted, and verify sees none left over. */
	assert_int_equal(apply(NFE / 2), 0);
	assert_int_equal(verify(NFE / 2), 0);
	assert_int_equal(apply(NFE), 0);
	assert_int_equal(verify(NFE), 0);
}

/* A slot, a frontend and a frontend address written behind the dataplane's back: verify names each one. */
static void test_verify_reports_kernel_differences(void **state)
{
	int fefd, slfd, afd;
	struct kb_frontend v;
	struct kb_slot sl;
	struct kb_frontend_key extra;
	__u32 k;

	(void)state;
	NEED_ENV();
	for (unsigned f = 0; f < NFE; f++)
		build(f, 3);
	assert_int_equal(apply(NFE), 0);
	assert_int_equal(verify(NFE), 0);

	fefd = pinned("frontends");
	slfd = pinned("slots");
	afd = pinned("frontend_addrs");
	assert_true(fefd >= 0 && slfd >= 0 && afd >= 0);

	/* Slot 1 of frontend 9 now steers to another address. */
	assert_int_equal(bpf_map_lookup_elem(fefd, &E.fe[9].fe.key, &v), 0);
	k = v.slot_base + 1;
	assert_int_equal(bpf_map_lookup_elem(slfd, &k, &sl), 0);
	inet_pton(AF_INET, "198.51.100.250", sl.ip);
	assert_int_equal(bpf_map_update_elem(slfd, &k, &sl, BPF_ANY), 0);
	assert_true(verify(NFE) >= 1);
	{
		char want[160];

		snprintf(want, sizeof(want), "198.18.1.10:80/tcp: slot 1 is 198.51.100.250:8080, the compile says %s:8080",
			 E.ep[9][1]);
		assert_non_null(strstr(E.diffs, want));
	}

	/* A frontend the compile does not have. */
	extra = E.fe[0].fe.key;
	extra.port = htons(81);
	{
		struct kb_frontend refuse = { .frontend_id = 1000 };	/* no run, an id no frontend holds */

		assert_int_equal(bpf_map_update_elem(fefd, &extra, &refuse, BPF_ANY), 0);
	}
	assert_true(verify(NFE) >= 2);
	assert_non_null(strstr(E.diffs, "198.18.1.1:81/tcp: in the maps but not in the compile"));

	/* A frontend of the compile gone from the maps. */
	assert_int_equal(bpf_map_delete_elem(fefd, &E.fe[20].fe.key), 0);
	verify(NFE);
	assert_non_null(strstr(E.diffs, "198.18.1.21:80/tcp: in the compile but not in the maps"));

	/* The next apply after a restart repairs what adoption read from the maps. */
	E.dp->ops->close(E.dp);
	E.dp = NULL;
	assert_int_equal(open_dp(), 0);
	assert_int_equal(apply(NFE), 0);
	verify(NFE);
	assert_int_equal(E.ndiffs, 0);
	close(fefd);
	close(slfd);
	close(afd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shadow_hides_no_change),
		cmocka_unit_test(test_verify_reports_kernel_differences),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
