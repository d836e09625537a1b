// SPDX-License-Identifier: Apache-2.0
/* Unit tests for compile: apportionment, Envoy's priority load, and whole manifests into frontends and slot tables. */
#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "testutil.h"
#include "compile/compile.h"

/* ---- kb_apportion ----------------------------------------------------------------- */

/* Check the three promises: sum is exact, each count is floor or ceil of its quota, larger remainders win. */
static void check_apportion(const double *w, size_t n, __u32 nslots)
{
	__u32 *c = calloc(n, sizeof(*c));
	double sum = 0, min_up = 2, max_down = -1;
	__u64 total = 0;

	assert_non_null(c);
	for (size_t i = 0; i < n; i++)
		sum += w[i] > 0 ? w[i] : 0;
	kb_apportion(w, n, nslots, c);
	for (size_t i = 0; i < n; i++) {
		double exact = w[i] > 0 ? nslots * w[i] / sum : 0;
		double frac = exact - floor(exact);

		total += c[i];
		if (fabs((double)c[i] - exact) >= 1.0)
			fail_msg("weight %zu of %zu: %u slots, exact %.6f (nslots %u)", i, n, c[i], exact, nslots);
		if (w[i] <= 0)
			assert_int_equal(c[i], 0);
		else if (c[i] > floor(exact) + 1e-9)
			min_up = frac < min_up ? frac : min_up;
		else if (frac > 1e-9)
			max_down = frac > max_down ? frac : max_down;
	}
	assert_int_equal(total, sum > 0 ? nslots : 0);
	/* Largest remainder: nothing rounded down had a larger remainder than something rounded up. */
	if (max_down > min_up + 1e-9)
		fail_msg("remainder %.6f rounded down while %.6f rounded up", max_down, min_up);
	free(c);
}

static void test_apportion_vectors(void **state)
{
	static const double v9010[] = { 90, 10 };
	static const double v111[] = { 1, 1, 1 };
	static const double primes[] = { 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47 };
	static const double zero[] = { 3, 0, 5, 0, 1 };
	static const double tiny[] = { 1, 1e-6, 1e-3 };
	static const double one[] = { 42 };
	static const double shares[] = { 0.7 / 3, 0.7 / 3, 0.7 / 3, 0.3 };
	static const __u32 sizes[] = { 1, 3, 7, 100, 256, 257, 1000, 4096, 16384 };
	double ramp[20];

	for (size_t i = 0; i < 20; i++)
		ramp[i] = (double)(i + 1);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		check_apportion(v9010, 2, sizes[s]);
		check_apportion(v111, 3, sizes[s]);
		check_apportion(ramp, 20, sizes[s]);
		check_apportion(primes, 15, sizes[s]);
		check_apportion(zero, 5, sizes[s]);
		check_apportion(tiny, 3, sizes[s]);
		check_apportion(one, 1, sizes[s]);
		check_apportion(shares, 4, sizes[s]);
	}
}

static void test_apportion_known(void **state)
{
	static const double v111[] = { 1, 1, 1 };
	static const double v9010[] = { 0.9, 0.1 };
	static const double none[] = { 0, 0 };
	__u32 c[3] = { 9, 9, 9 };

	/* 256 / 3 = 85.33 each: the tie goes to the lowest index, so the table is deterministic. */
	kb_apportion(v111, 3, 256, c);
	assert_int_equal(c[0], 86);
	assert_int_equal(c[1], 85);
	assert_int_equal(c[2], 85);
	kb_apportion(v9010, 2, 256, c);
	assert_int_equal(c[0], 230);
	assert_int_equal(c[1], 26);
	c[0] = c[1] = 7;
	kb_apportion(none, 2, 256, c);
	assert_int_equal(c[0], 0);
	assert_int_equal(c[1], 0);
}

static void test_apportion_random(void **state)
{
	unsigned seed = 12345;
	double w[64];

	/* A fixed pseudo-random sweep: weights of very different magnitudes and sizes. */
	for (int round = 0; round < 400; round++) {
		size_t n = 1 + rand_r(&seed) % 64;
		__u32 nslots = 1 + rand_r(&seed) % 16384;

		for (size_t i = 0; i < n; i++)
			w[i] = rand_r(&seed) % 5 == 0 ? 0 : (double)(rand_r(&seed) % 1000000) / (1 + rand_r(&seed) % 1000);
		check_apportion(w, n, nslots);
	}
}

static void test_slot_count(void **state)
{
	assert_int_equal(kb_slot_count(0), 0);
	assert_int_equal(kb_slot_count(1), 256);
	assert_int_equal(kb_slot_count(4), 256);
	assert_int_equal(kb_slot_count(5), 512);
	assert_int_equal(kb_slot_count(100), 8192);
	assert_int_equal(kb_slot_count(256), 16384);
	assert_int_equal(kb_slot_count(1000), 16384);
	assert_int_equal(kb_slot_count((size_t)1 << 40), 16384);
	for (size_t n = 1; n < 2000; n++) {
		__u32 s = kb_slot_count(n);

		assert_true(s >= 256 && s <= 16384);
		assert_int_equal(s & (s - 1), 0);
	}
}

/* ---- kb_priority_load --------------------------------------------------------------- */

struct pl_case {
	const char *name;
	size_t n;
	size_t healthy[4], total[4];
	unsigned panic_pct;
	unsigned want[4];	/* percent */
	bool panic[4];
};

/*
 * Expected values worked by hand from Envoy's integer arithmetic
 * (health = min(100, 140 * healthy / total)); the first rows are the
 * "priority levels" table of Envoy's architecture overview.
 */
static const struct pl_case pl_cases[] = {
	{ "P0 100%", 2, { 10, 10 }, { 10, 10 }, 50, { 100, 0 } },
	{ "P0 80%", 2, { 8, 10 }, { 10, 10 }, 50, { 100, 0 } },
	{ "P0 5/7 (71.4%, 140*5/7 = 100)", 2, { 5, 10 }, { 7, 10 }, 50, { 100, 0 } },
	{ "P0 71%", 2, { 71, 10 }, { 100, 10 }, 50, { 99, 1 } },
	{ "P0 60%", 2, { 6, 10 }, { 10, 10 }, 50, { 84, 16 } },
	{ "P0 50%", 2, { 5, 10 }, { 10, 10 }, 50, { 70, 30 } },
	{ "P0 20%", 2, { 2, 10 }, { 10, 10 }, 50, { 28, 72 } },
	{ "P0 0%", 2, { 0, 10 }, { 10, 10 }, 50, { 0, 100 } },
	{ "P0 empty", 2, { 0, 3 }, { 0, 3 }, 50, { 0, 100 } },
	{ "3 levels 20/20/100", 3, { 2, 2, 10 }, { 10, 10, 10 }, 50, { 28, 28, 44 } },
	{ "3 levels 0/0/100", 3, { 0, 0, 4 }, { 4, 4, 4 }, 50, { 0, 0, 100 } },
	{ "3 levels 0/50/100", 3, { 0, 2, 1 }, { 4, 4, 1 }, 50, { 0, 70, 30 } },
	/* Normalized availability 28 < 100 and both levels under 50% healthy: total panic, split by hosts. */
	{ "total panic 10%/10%", 2, { 1, 1 }, { 10, 10 }, 50, { 50, 50 }, { true, true } },
	{ "total panic by host count", 2, { 0, 0 }, { 3, 1 }, 50, { 75, 25 }, { true, true } },
	{ "total panic 3 levels", 3, { 0, 0, 0 }, { 1, 1, 1 }, 50, { 34, 33, 33 }, { true, true, true } },
	/* NTA 98: P0 is in panic (20% < 50%) but P1 is not; loads stay health-based, remainder to P0. */
	{ "partial panic", 2, { 2, 5 }, { 10, 10 }, 50, { 29, 71 }, { true, false } },
	{ "one level 40%", 1, { 4 }, { 10 }, 50, { 100 }, { true } },
	{ "one level 50%", 1, { 5 }, { 10 }, 50, { 100 }, { false } },
	{ "nothing at all", 2, { 0, 0 }, { 0, 0 }, 50, { 100, 0 }, { true, true } },
	/* Threshold 0 disables panic: all to P0, which has nothing healthy to serve. */
	{ "threshold 0, all down", 2, { 0, 0 }, { 5, 5 }, 0, { 100, 0 } },
	{ "threshold 0, 10%/10%", 2, { 1, 1 }, { 10, 10 }, 0, { 50, 50 } },
	/* NTA 100 never panics, whatever the threshold. */
	{ "threshold 80, NTA 100", 2, { 7, 10 }, { 10, 10 }, 80, { 98, 2 } },
	{ "threshold 80, P0 alone 70%", 1, { 7 }, { 10 }, 80, { 100 }, { true } },
	{ "threshold above 100", 1, { 6 }, { 10 }, 250, { 100 }, { true } },
};

static void test_priority_load(void **state)
{
	for (size_t i = 0; i < sizeof(pl_cases) / sizeof(pl_cases[0]); i++) {
		const struct pl_case *t = &pl_cases[i];
		double load[4] = { -1, -1, -1, -1 }, sum = 0;
		bool panic[4] = { true, true, true, true };

		kb_priority_load(t->healthy, t->total, t->n, t->panic_pct, load, panic);
		for (size_t p = 0; p < t->n; p++) {
			sum += load[p];
			if (fabs(load[p] * 100 - t->want[p]) > 1e-9 || panic[p] != t->panic[p])
				fail_msg("%s: P%zu load %.4f panic %d, want %u%% panic %d", t->name, p, load[p], panic[p],
					 t->want[p], t->panic[p]);
		}
		assert_true(fabs(sum - 1.0) < 1e-9);
		/* Untouched beyond n. */
		for (size_t p = t->n; p < 4; p++)
			assert_true(load[p] == -1);
	}
}

/* ---- whole manifests ------------------------------------------------------------------ */

static const char *gw_yaml =
	"apiVersion: gateway.networking.k8s.io/v1\n"
	"kind: Gateway\n"
	"metadata: {name: eg, namespace: default}\n"
	"spec:\n"
	"  gatewayClassName: eg\n"
	"  addresses:\n"
	"    - type: IPAddress\n"
	"      value: 198.18.0.10\n"
	"  listeners:\n"
	"    - {name: tcp, protocol: TCP, port: 8080}\n"
	"---\n";

static const char *backend_ip(char *buf, size_t len, const char *name, const char *extra, int n, int first)
{
	size_t o = (size_t)snprintf(buf, len,
				    "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				    "kind: Backend\n"
				    "metadata: {name: %s, namespace: default}\n"
				    "spec:\n%s"
				    "  endpoints:\n",
				    name, extra);

	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(buf + o, len - o, "    - ip: {address: 198.51.100.%d, port: 3000}\n", first + i);
	snprintf(buf + o, len - o, "---\n");
	return buf;
}

/* A TCPRoute "r" on listener eg/tcp with refs "name:weight[:fallback]" separated by spaces. */
static const char *tcproute(char *buf, size_t len, const char *refs)
{
	char copy[256], *save = NULL;
	size_t o = (size_t)snprintf(buf, len,
				    "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
				    "kind: TCPRoute\n"
				    "metadata: {name: r, namespace: default}\n"
				    "spec:\n"
				    "  parentRefs: [{name: eg, sectionName: tcp}]\n"
				    "  rules:\n"
				    "    - backendRefs:\n");

	snprintf(copy, sizeof(copy), "%s", refs);
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		char *name = t, *w = strchr(t, ':'), *fb = NULL;

		if (w) {
			*w++ = '\0';
			fb = strchr(w, ':');
			if (fb)
				*fb++ = '\0';
		}
		o += (size_t)snprintf(buf + o, len - o,
				      "        - {group: gateway.envoyproxy.io, kind: Backend, name: %s%s%s%s}\n", name,
				      w ? ", weight: " : "", w ? w : "", fb ? ", fallback: true" : "");
	}
	snprintf(buf + o, len - o, "---\n");
	return buf;
}

static void load_model(struct kb_model *m, const char *yaml, bool validate, char **unix_dirs, size_t nunix)
{
	char diags[16384];

	tu_load(m, yaml);
	if (m->nerrors)
		fail_msg("parse errors:\n%s", tu_diags(m, diags, sizeof(diags)));
	if (validate) {
		struct kb_policy p;

		kb_policy_init(&p);
		p.enable_backend = 1;
		p.unix_dirs = unix_dirs;
		p.nunix_dirs = nunix;
		kb_validate(m, &p);
		if (m->nerrors)
			fail_msg("validation errors:\n%s", tu_diags(m, diags, sizeof(diags)));
	}
}

static void compile_yaml(struct kb_model *m, struct kb_compiled *c, const char *yaml, const struct kb_compile_env *env)
{
	load_model(m, yaml, true, NULL, 0);
	assert_int_equal(kb_compile(m, env, c), 0);
}

/* The table is consistent with eps[], and each endpoint is within one slot of its share. */
static void check_table(const struct kb_cfrontend *fe)
{
	__u32 *seen = calloc(fe->neps ? fe->neps : 1, sizeof(*seen));
	double sum = 0;
	__u64 held = 0;

	assert_non_null(seen);
	for (size_t i = 0; i < fe->neps; i++)
		sum += fe->eps[i].share;
	for (__u32 s = 0; s < fe->nslots; s++) {
		assert_true(fe->slots[s] < fe->neps);
		assert_true(fe->eps[fe->slots[s]].share > 0);
		seen[fe->slots[s]]++;
	}
	for (size_t i = 0; i < fe->neps; i++) {
		double exact = sum > 0 ? fe->eps[i].share / sum * fe->nslots : 0;

		assert_int_equal(seen[i], fe->eps[i].nslots);
		held += fe->eps[i].nslots;
		if (fabs(fe->eps[i].nslots - exact) >= 1.0)
			fail_msg("endpoint %zu (%s): %u slots, exact %.3f", i, fe->eps[i].address, fe->eps[i].nslots,
				 exact);
	}
	assert_int_equal(held, fe->nslots);
	free(seen);
}

/* Every prefix of the table holds each endpoint close to its share: the layout interleaves. */
static void check_interleaved(const struct kb_cfrontend *fe)
{
	__u32 *cnt = calloc(fe->neps ? fe->neps : 1, sizeof(*cnt));

	assert_non_null(cnt);
	for (__u32 t = 0; t < fe->nslots; t++) {
		cnt[fe->slots[t]]++;
		for (size_t i = 0; i < fe->neps; i++) {
			double ideal = (double)fe->eps[i].nslots * (t + 1) / fe->nslots;

			if (fabs(cnt[i] - ideal) > 1.0 + (double)fe->eps[i].nslots * fe->neps / fe->nslots)
				fail_msg("prefix %u: endpoint %zu has %u, ideal %.2f", t + 1, i, cnt[i], ideal);
		}
	}
	free(cnt);
}

static const struct kb_cfrontend *only_fe(const struct kb_compiled *c)
{
	assert_int_equal(c->nfes, 1);
	return &c->fes[0];
}

static void test_weights_90_10(void **state)
{
	char y[8192], b1[1024], b2[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;
	struct in_addr want;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 1, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 1, 2), tcproute(r, sizeof(r), "a:90 b:10"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);

	inet_pton(AF_INET, "198.18.0.10", &want);
	assert_int_equal(fe->key.ip[0], want.s_addr);
	assert_int_equal(fe->key.ip[1] | fe->key.ip[2] | fe->key.ip[3], 0);
	assert_int_equal(fe->key.port, htons(8080));
	assert_int_equal(fe->key.family, AF_INET);
	assert_int_equal(fe->key.proto, KB_PROTO_TCP);
	assert_int_equal(fe->port, 8080);
	assert_string_equal(fe->address, "198.18.0.10");
	assert_string_equal(fe->gateway, "default/eg");
	assert_string_equal(fe->listener, "tcp");
	assert_string_equal(fe->route, "TCPRoute default/r");
	assert_int_equal(fe->lb, KB_LB_RANDOM);

	assert_int_equal(fe->nlocs, 2);
	assert_int_equal(fe->neps, 2);
	assert_int_equal(fe->nlevels, 1);
	assert_true(fabs(fe->levels[0].load - 1.0) < 1e-9);
	assert_string_equal(fe->eps[0].backend, "default/a");
	assert_string_equal(fe->eps[0].address, "198.51.100.1");
	assert_int_equal(fe->eps[0].port, 3000);
	assert_int_equal(fe->eps[0].type, KB_EP_IP);
	inet_pton(AF_INET, "198.51.100.1", &want);
	assert_int_equal(fe->eps[0].ip[0], want.s_addr);
	assert_true(fabs(fe->eps[0].share - 0.9) < 1e-9);
	assert_true(fabs(fe->eps[1].share - 0.1) < 1e-9);
	/* 90/10 is exact in 10 slots. */
	assert_int_equal(fe->nslots, 10);
	assert_int_equal(fe->eps[0].nslots, 9);
	assert_int_equal(fe->eps[1].nslots, 1);
	check_table(fe);
	check_interleaved(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_equal_weights_unequal_sizes(void **state)
{
	char y[8192], b1[1024], b2[1024], b3[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 1, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 2, 10), backend_ip(b3, sizeof(b3), "c", "", 3, 20),
		 tcproute(r, sizeof(r), "a b c"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->neps, 6);
	assert_int_equal(fe->nslots, 18);	/* 1/3, 1/6 and 1/9 are exact in 18 slots */
	/* Each ref is a locality of weight 1; its endpoints split the locality's third. */
	assert_true(fabs(fe->eps[0].share - 1.0 / 3) < 1e-9);
	for (size_t i = 1; i < 3; i++)
		assert_true(fabs(fe->eps[i].share - 1.0 / 6) < 1e-9);
	for (size_t i = 3; i < 6; i++)
		assert_true(fabs(fe->eps[i].share - 1.0 / 9) < 1e-9);
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(fe->eps[i].locality, i == 0 ? 0 : i < 3 ? 1 : 2);
	check_table(fe);
	check_interleaved(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_weight_zero(void **state)
{
	char y[8192], b1[1024], b2[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 2, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 1, 9), tcproute(r, sizeof(r), "a:0 b:3"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->neps, 3);
	assert_int_equal(fe->locs[0].weight, 0);
	assert_int_equal(fe->eps[0].nslots, 0);
	assert_int_equal(fe->eps[1].nslots, 0);
	assert_int_equal(fe->eps[2].nslots, fe->nslots);
	assert_int_equal(fe->nslots, 1);
	/* The weight-0 locality is not part of the level's health. */
	assert_int_equal(fe->levels[0].nendpoints, 1);
	check_table(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static bool unhealthy_backend_a(void *ctx, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	return strcmp(ep->backend, "default/a") != 0;
}

/* Endpoint 198.51.100.1 is down; everything else is up. */
static bool first_a_down(void *ctx, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	return strcmp(ep->address, "198.51.100.1") != 0;
}

static void fallback_yaml(char *y, size_t len)
{
	char b1[1024], b2[1024], r[1024];

	snprintf(y, len, "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 2, 1),
		 backend_ip(b2, sizeof(b2), "b", "  fallback: true\n", 1, 50), tcproute(r, sizeof(r), "a b"));
}

static void test_fallback_bool_idle(void **state)
{
	char y[8192];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	fallback_yaml(y, sizeof(y));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->nlevels, 2);
	assert_int_equal(fe->locs[1].priority, 1);
	assert_int_equal(fe->eps[2].priority, 1);
	assert_true(fabs(fe->levels[0].load - 1.0) < 1e-9);
	assert_true(fe->levels[1].load == 0);
	assert_false(fe->levels[0].panic);
	assert_true(fe->eps[2].share == 0);
	assert_int_equal(fe->eps[2].nslots, 0);
	assert_int_equal(fe->nslots, 2);	/* two equal endpoints carry traffic */
	assert_int_equal(fe->eps[0].nslots, 1);
	check_table(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_fallback_bool_takes_over(void **state)
{
	struct kb_compile_env env = { .healthy = unhealthy_backend_a };
	char y[8192];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	fallback_yaml(y, sizeof(y));
	compile_yaml(&m, &c, y, &env);
	fe = only_fe(&c);
	assert_int_equal(fe->levels[0].nhealthy, 0);
	assert_int_equal(fe->levels[0].nendpoints, 2);
	assert_true(fe->levels[0].load == 0);
	assert_true(fabs(fe->levels[1].load - 1.0) < 1e-9);
	assert_false(fe->eps[0].healthy);
	assert_true(fe->eps[2].healthy);
	assert_int_equal(fe->eps[0].nslots + fe->eps[1].nslots, 0);
	assert_int_equal(fe->eps[2].nslots, fe->nslots);
	assert_int_equal(fe->nslots, 1);
	check_table(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_fallback_bool_spill(void **state)
{
	struct kb_compile_env env = { .healthy = first_a_down };
	char y[8192];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	/* P0 half healthy: 140 * 1/2 = 70% stays, 30% spills to the fallback. */
	fallback_yaml(y, sizeof(y));
	compile_yaml(&m, &c, y, &env);
	fe = only_fe(&c);
	assert_true(fabs(fe->levels[0].load - 0.7) < 1e-9);
	assert_true(fabs(fe->levels[1].load - 0.3) < 1e-9);
	assert_true(fe->eps[0].share == 0);
	assert_true(fabs(fe->eps[1].share - 0.7) < 1e-9);
	assert_true(fabs(fe->eps[2].share - 0.3) < 1e-9);
	assert_int_equal(fe->nslots, 10);
	assert_int_equal(fe->eps[1].nslots, 7);
	assert_int_equal(fe->eps[2].nslots, 3);
	check_table(fe);
	check_interleaved(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* The policy-style flag on the backendRef itself also makes a priority-1 locality. */
static void test_fallback_on_ref(void **state)
{
	char y[8192], b1[1024], b2[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 1, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 1, 2), tcproute(r, sizeof(r), "a:1 b:1:fb"));
	load_model(&m, y, false, NULL, 0);
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	fe = only_fe(&c);
	assert_int_equal(fe->locs[0].priority, 0);
	assert_int_equal(fe->locs[1].priority, 1);
	assert_int_equal(fe->eps[0].nslots, fe->nslots);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static const char *seed_backend(char *buf, size_t len, const char *name, const char *fb, int ip)
{
	return snprintf(buf, len,
			"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
			"kind: Backend\n"
			"metadata: {name: %s, namespace: default}\n"
			"spec:\n"
			"  endpoints:\n"
			"    - ip: 198.51.100.%d\n"
			"      port: 3000\n"
			"%s%s%s"
			"---\n",
			name, ip, fb ? "  fallback:\n    backendRef:\n      name: " : "", fb ? fb : "", fb ? "\n" : ""),
	       buf;
}

static bool only_c_up(void *ctx, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	return strcmp(ep->backend, "default/c") == 0;
}

static void test_seed_chain(void **state)
{
	struct kb_compile_env env = { .healthy = only_c_up };
	char y[8192], ba[1024], bb[1024], bc[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s%s%s", gw_yaml, seed_backend(ba, sizeof(ba), "a", "b", 1),
		 seed_backend(bb, sizeof(bb), "b", "c", 2), seed_backend(bc, sizeof(bc), "c", NULL, 3),
		 tcproute(r, sizeof(r), "a"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->nlocs, 3);
	assert_int_equal(fe->nlevels, 3);
	for (unsigned p = 0; p < 3; p++) {
		assert_int_equal(fe->locs[p].priority, p);
		assert_int_equal(fe->locs[p].weight, 1);
		assert_int_equal(fe->eps[p].priority, p);
	}
	assert_string_equal(fe->locs[1].backend, "default/b");
	assert_string_equal(fe->locs[2].backend, "default/c");
	assert_int_equal(fe->eps[0].nslots, fe->nslots);
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* a and b down: the third level takes everything. */
	compile_yaml(&m, &c, y, &env);
	fe = only_fe(&c);
	assert_true(fe->levels[0].load == 0 && fe->levels[1].load == 0);
	assert_true(fabs(fe->levels[2].load - 1.0) < 1e-9);
	assert_string_equal(fe->eps[2].address, "198.51.100.3");
	assert_int_equal(fe->eps[2].nslots, fe->nslots);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* A cycle (validate refuses it; compile must still end) and a fallback that is already a direct ref. */
static void test_seed_chain_cycle_dedup(void **state)
{
	char y[8192], ba[1024], bb[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, seed_backend(ba, sizeof(ba), "a", "b", 1),
		 seed_backend(bb, sizeof(bb), "b", "a", 2), tcproute(r, sizeof(r), "a"));
	load_model(&m, y, false, NULL, 0);
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	fe = only_fe(&c);
	assert_int_equal(fe->nlocs, 2);
	assert_int_equal(fe->locs[1].priority, 1);
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* Route lists a and b; a's fallback b is already a P0 locality and is not added again. */
	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, seed_backend(ba, sizeof(ba), "a", "b", 1),
		 seed_backend(bb, sizeof(bb), "b", NULL, 2), tcproute(r, sizeof(r), "a b"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->nlocs, 2);
	assert_int_equal(fe->nlevels, 1);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static size_t fake_resolve(void *ctx, const char *host, __u8 *family, __u32 (*ip)[4], size_t max)
{
	char *seen = ctx;

	if (seen)
		snprintf(seen + strlen(seen), 512 - strlen(seen), "%s;", host);
	if (strcmp(host, "api.example.test") != 0 || max < 2)
		return 0;
	family[0] = AF_INET;
	inet_pton(AF_INET, "203.0.113.5", &ip[0][0]);
	family[1] = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:1::5", ip[1]);
	return 2;
}

static void test_fqdn_resolve(void **state)
{
	static const char *yaml_b =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata: {name: a, namespace: default}\n"
		"spec:\n"
		"  endpoints:\n"
		"    - fqdn: {hostname: api.example.test, port: 443}\n"
		"    - fqdn: {hostname: later.example.test, port: 443}\n"
		"---\n";
	char seen[512] = "";
	struct kb_compile_env env = { .resolve = fake_resolve, .ctx = seen };
	char y[8192], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;
	unsigned char v6[16];

	snprintf(y, sizeof(y), "%s%s%s", gw_yaml, yaml_b, tcproute(r, sizeof(r), "a"));
	compile_yaml(&m, &c, y, &env);
	fe = only_fe(&c);
	assert_string_equal(seen, "api.example.test;later.example.test;");
	/* An IPv4 frontend keeps only the IPv4 answer: IPv4 sockets cannot reach an IPv6 endpoint. */
	assert_int_equal(fe->key.family, AF_INET);
	assert_int_equal(fe->neps, 1);
	assert_int_equal(fe->eps[0].type, KB_EP_FQDN);
	assert_string_equal(fe->eps[0].fqdn, "api.example.test");
	assert_string_equal(fe->eps[0].address, "203.0.113.5");
	assert_int_equal(fe->eps[0].family, AF_INET);
	assert_int_equal(fe->eps[0].port, 443);
	(void)v6;
	assert_int_equal(fe->locs[0].nendpoints, 1);
	assert_int_equal(fe->locs[0].npending, 1);
	assert_string_equal(fe->locs[0].pending[0], "later.example.test");
	assert_true(fabs(fe->eps[0].share - 1.0) < 1e-9);
	check_table(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* No resolver at all: the locality is pending and the frontend refuses. */
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->neps, 0);
	assert_int_equal(fe->locs[0].npending, 2);
	assert_int_equal(fe->nslots, 0);
	assert_null(fe->slots);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/*
 * A Service ref resolves as <name>.<ns>.svc.<cluster domain>, a ServiceImport
 * (multicluster.x-k8s.io) as <name>.<ns>.svc.<clusterset domain>: set
 * through the env, and by default.
 */
static void check_dns_ref(const char *ref, bool import, const char *set_host, const char *default_host)
{
	char seen[512] = "", y[8192], want[300];
	struct kb_compile_env env = { .resolve = fake_resolve, .ctx = seen };
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	if (import)
		env.clusterset_domain = "fleet.internal";
	else
		env.cluster_domain = "corp.internal";
	snprintf(y, sizeof(y),
		 "%sapiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: r, namespace: default}\n"
		 "spec:\n  parentRefs: [{name: eg}]\n  rules:\n    - backendRefs: [%s]\n", gw_yaml, ref);
	compile_yaml(&m, &c, y, &env);
	fe = only_fe(&c);
	snprintf(want, sizeof(want), "%s;", set_host);
	assert_string_equal(seen, want);
	assert_int_equal(fe->nlocs, 1);
	assert_string_equal(fe->locs[0].backend, "default/web");
	assert_int_equal(fe->locs[0].npending, 1);
	assert_string_equal(fe->locs[0].pending[0], set_host);
	kb_compiled_free(&c);
	kb_model_free(&m);

	seen[0] = '\0';
	env.cluster_domain = env.clusterset_domain = NULL;
	compile_yaml(&m, &c, y, &env);
	snprintf(want, sizeof(want), "%s;", default_host);
	assert_string_equal(seen, want);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_service_ref(void **state)
{
	char seen[512] = "", y[8192];
	struct kb_compile_env env = { .resolve = fake_resolve, .ctx = seen, .service_endpoints = KB_SVC_DNS };
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	check_dns_ref("{name: web, port: 8080}", false, "web.default.svc.corp.internal", "web.default.svc.cluster.local");

	/* --service-endpoints=dns: the Service's own object (and its EndpointSlice) is read, and DNS still resolves it. */
	snprintf(y, sizeof(y),
		 "%sapiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: r, namespace: default}\n"
		 "spec:\n  parentRefs: [{name: eg}]\n  rules:\n    - backendRefs: [{name: web, port: 8080}]\n"
		 "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
		 "spec: {clusterIP: 198.18.0.20, ports: [{port: 8080}]}\n"
		 "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\n"
		 "addressType: IPv4\nendpoints: [{addresses: [198.51.100.7]}]\nports: [{port: 8080}]\n",
		 gw_yaml);
	compile_yaml(&m, &c, y, &env);
	assert_int_equal(m.nservices, 1);
	assert_int_equal(m.nslices, 1);
	assert_string_equal(seen, "web.default.svc.cluster.local;");
	fe = only_fe(&c);
	assert_int_equal(fe->locs[0].npending, 1);
	assert_string_equal(fe->locs[0].pending[0], "web.default.svc.cluster.local");
	kb_compiled_free(&c);

	/* The default (auto): the Service is in the set, so its slice's endpoint is steered to, and nothing is resolved. */
	seen[0] = '\0';
	env.service_endpoints = KB_SVC_AUTO;
	assert_int_equal(kb_compile(&m, &env, &c), 0);
	fe = only_fe(&c);
	assert_string_equal(seen, "");
	assert_int_equal(fe->neps, 1);
	assert_string_equal(fe->eps[0].address, "198.51.100.7");
	assert_int_equal(fe->eps[0].port, 8080);
	assert_int_equal(fe->locs[0].npending, 0);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_service_import_ref(void **state)
{
	check_dns_ref("{group: multicluster.x-k8s.io, kind: ServiceImport, name: web, port: 8080}", true,
		      "web.default.svc.fleet.internal", "web.default.svc.clusterset.local");
}

/*
 * A parentRef without sectionName reaches every listener of its Gateway, but
 * only those whose allowedRoutes admit the route get its backends: listener b
 * admits its own namespace only (the default), and c carries another kind.
 */
static void test_allowed_routes_compile(void **state)
{
	static const char *yaml =
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg, namespace: infra}\n"
		"spec:\n  addresses: [{value: 198.18.0.10}]\n  listeners:\n"
		"    - {name: a, protocol: TCP, port: 9001, allowedRoutes: {namespaces: {from: All}}}\n"
		"    - {name: b, protocol: TCP, port: 9002}\n"
		"    - {name: c, protocol: TCP, port: 9003, allowedRoutes: {namespaces: {from: All}, kinds: [{kind: UDPRoute}]}}\n"
		"---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: r, namespace: app}\n"
		"spec:\n  parentRefs: [{name: eg, namespace: infra}]\n  rules:\n    - backendRefs: [{name: web, port: 80}]\n";
	struct kb_model m;
	struct kb_compiled c;
	size_t with_route = 0;

	compile_yaml(&m, &c, yaml, NULL);
	assert_int_equal(c.nfes, 3);
	for (size_t i = 0; i < c.nfes; i++) {
		const struct kb_cfrontend *fe = &c.fes[i];

		if (fe->port == 9001) {
			assert_string_equal(fe->route, "TCPRoute app/r");
			assert_int_equal(fe->nlocs, 1);
		} else {
			assert_null(fe->route);
			assert_int_equal(fe->nlocs, 0);
		}
		with_route += fe->route != NULL;
	}
	assert_int_equal(with_route, 1);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_ipv6_udp_and_order(void **state)
{
	static const char *yaml =
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: eg, namespace: default}\n"
		"spec:\n"
		"  gatewayClassName: eg\n"
		"  addresses:\n"
		"    - value: 198.18.0.20\n"
		"    - {type: Hostname, value: gw.example.test}\n"
		"    - {type: IPAddress, value: '2001:db8:f::10'}\n"
		"  listeners:\n"
		"    - {name: dns, protocol: UDP, port: 53}\n"
		"    - {name: web, protocol: HTTP, port: 80}\n"
		"---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata: {name: dns, namespace: default}\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip: {address: '2001:db8:1::53', port: 5353}\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		"kind: UDPRoute\n"
		"metadata: {name: u, namespace: default}\n"
		"spec:\n"
		"  parentRefs: [{name: eg, sectionName: dns}]\n"
		"  rules:\n"
		"    - backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: dns}]\n";
	struct kb_model m;
	struct kb_compiled c;
	unsigned char v6[16];
	struct in_addr v4;

	compile_yaml(&m, &c, yaml, NULL);
	/* Addresses in order (the Hostname one skipped), listeners in order within each. */
	assert_int_equal(c.nfes, 4);
	assert_string_equal(c.fes[0].address, "198.18.0.20");
	assert_string_equal(c.fes[0].listener, "dns");
	assert_string_equal(c.fes[1].address, "198.18.0.20");
	assert_string_equal(c.fes[1].listener, "web");
	assert_string_equal(c.fes[2].address, "2001:db8:f::10");
	assert_string_equal(c.fes[2].listener, "dns");
	assert_string_equal(c.fes[3].listener, "web");

	inet_pton(AF_INET, "198.18.0.20", &v4);
	assert_int_equal(c.fes[0].key.ip[0], v4.s_addr);
	assert_int_equal(c.fes[0].key.proto, KB_PROTO_UDP);
	assert_int_equal(c.fes[0].proto, KB_PROTO_UDP);
	assert_int_equal(c.fes[0].key.port, htons(53));
	assert_int_equal(c.fes[1].key.proto, KB_PROTO_TCP);

	inet_pton(AF_INET6, "2001:db8:f::10", v6);
	assert_memory_equal(c.fes[2].key.ip, v6, 16);
	assert_int_equal(c.fes[2].key.family, AF_INET6);
	assert_int_equal(c.fes[2].key.proto, KB_PROTO_UDP);
	assert_int_equal(c.fes[2].key.port, htons(53));

	/*
	 * The UDP listeners carry the UDPRoute; the HTTP listeners have no route
	 * and refuse. The IPv6-only endpoint serves the IPv6 frontend only: an
	 * IPv4 socket cannot connect to it, so the IPv4 frontend refuses.
	 */
	assert_int_equal(c.fes[0].neps, 0);
	assert_int_equal(c.fes[0].nslots, 0);
	for (size_t i = 1; i < 4; i++) {
		bool udp = i % 2 == 0;

		assert_int_equal(c.fes[i].nslots, udp ? 1 : 0);
		if (udp) {
			assert_string_equal(c.fes[i].route, "UDPRoute default/u");
			assert_int_equal(c.fes[i].eps[0].family, AF_INET6);
			assert_int_equal(c.fes[i].eps[0].port, 5353);
			inet_pton(AF_INET6, "2001:db8:1::53", v6);
			assert_memory_equal(c.fes[i].eps[0].ip, v6, 16);
		} else {
			assert_null(c.fes[i].route);
			assert_int_equal(c.fes[i].nlocs, 0);
			assert_int_equal(c.fes[i].neps, 0);
			assert_null(c.fes[i].slots);
		}
	}
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_lb_policy(void **state)
{
	static const char *yaml_more =
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: eg2, namespace: default}\n"
		"spec:\n"
		"  gatewayClassName: eg\n"
		"  addresses: [{value: 198.18.0.11}]\n"
		"  listeners:\n"
		"    - {name: a, protocol: TCP, port: 1}\n"
		"    - {name: b, protocol: TCP, port: 2}\n"
		"---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: BackendTrafficPolicy\n"
		"metadata: {name: p-route, namespace: default}\n"
		"spec:\n"
		"  targetRefs: [{group: gateway.networking.k8s.io, kind: TCPRoute, name: r}]\n"
		"  loadBalancer: {type: RoundRobin}\n"
		"  healthCheck:\n"
		"    panicThreshold: 0\n"
		"---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: BackendTrafficPolicy\n"
		"metadata: {name: p-gw, namespace: default}\n"
		"spec:\n"
		"  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: eg2}]\n"
		"  loadBalancer: {type: LeastRequest}\n"
		"---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: BackendTrafficPolicy\n"
		"metadata: {name: p-section, namespace: default}\n"
		"spec:\n"
		"  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: eg2, sectionName: b}]\n"
		"  loadBalancer:\n"
		"    type: ConsistentHash\n"
		"    consistentHash: {type: SourceIP}\n"
		"---\n";
	struct kb_compile_env env = { .healthy = unhealthy_backend_a };
	char y[8192], b1[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, yaml_more, backend_ip(b1, sizeof(b1), "a", "", 2, 1),
		 tcproute(r, sizeof(r), "a"));
	compile_yaml(&m, &c, y, &env);
	assert_int_equal(c.nfes, 3);
	assert_int_equal(c.fes[0].lb, KB_LB_ROUND_ROBIN);
	assert_int_equal(c.fes[1].lb, KB_LB_LEAST_REQUEST);
	assert_int_equal(c.fes[2].lb, KB_LB_CONSISTENT_HASH);
	/* panicThreshold 0 from the route's policy: all down, no panic, nothing to serve. */
	assert_false(c.fes[0].levels[0].panic);
	assert_int_equal(c.fes[0].nslots, 0);
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* Without the policy's threshold, the default 50% panics and serves every endpoint. */
	snprintf(y, sizeof(y), "%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 2, 1),
		 tcproute(r, sizeof(r), "a"));
	compile_yaml(&m, &c, y, &env);
	assert_true(c.fes[0].levels[0].panic);
	assert_int_equal(c.fes[0].nslots, 2);
	assert_int_equal(c.fes[0].eps[0].nslots, 1);
	assert_int_equal(c.fes[0].eps[1].nslots, 1);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_unix_endpoint(void **state)
{
	static const char *yaml_b =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata: {name: a, namespace: default}\n"
		"spec:\n"
		"  endpoints:\n"
		"    - unix: {path: /run/sidecars/app.sock}\n"
		"    - ip: {address: 198.51.100.7, port: 80}\n"
		"---\n";
	char *dirs[] = { "/run/sidecars" };
	char y[8192], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s", gw_yaml, yaml_b, tcproute(r, sizeof(r), "a"));
	load_model(&m, y, true, dirs, 1);
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	fe = only_fe(&c);
	assert_int_equal(fe->neps, 2);
	assert_int_equal(fe->eps[0].type, KB_EP_UNIX);
	assert_int_equal(fe->eps[0].family, AF_UNIX);
	assert_int_equal(fe->eps[0].port, 0);
	assert_string_equal(fe->eps[0].address, "/run/sidecars/app.sock");
	assert_int_equal(fe->eps[0].nslots, 1);
	assert_int_equal(fe->nslots, 2);
	check_table(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static void test_duplicate_frontend(void **state)
{
	static const char *yaml_gw2 =
		"apiVersion: gateway.networking.k8s.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: other, namespace: default}\n"
		"spec:\n"
		"  gatewayClassName: eg\n"
		"  addresses: [{value: 198.18.0.10}]\n"
		"  listeners: [{name: dup, protocol: TCP, port: 8080}, {name: udp, protocol: UDP, port: 8080}]\n"
		"---\n";
	char y[8192], b1[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	size_t nd;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, yaml_gw2, backend_ip(b1, sizeof(b1), "a", "", 1, 1),
		 tcproute(r, sizeof(r), "a"));
	load_model(&m, y, false, NULL, 0);
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	/* Same address, port and transport: the first Gateway keeps it; UDP on the same port is distinct. */
	assert_int_equal(c.nfes, 2);
	assert_string_equal(c.fes[0].gateway, "default/eg");
	assert_int_equal(c.fes[0].nslots, 1);
	assert_string_equal(c.fes[1].listener, "udp");
	tu_assert_diag(&m, "already served by Gateway default/eg listener tcp");
	kb_compiled_free(&c);
	/* A recompile of the same model (health changed) does not repeat the warning. */
	nd = m.ndiags;
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	assert_int_equal(m.ndiags, nd);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* A route that validate refused for its parent (its Backend is refused) steers nothing: the listener refuses. */
static void test_refused_route(void **state)
{
	static const char *yaml_b =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata: {name: a, namespace: default}\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip: {address: 127.0.0.1, port: 3000}\n"
		"---\n";
	struct kb_policy p;
	char y[8192], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s", gw_yaml, yaml_b, tcproute(r, sizeof(r), "a"));
	tu_load(&m, y);
	assert_int_equal(m.nerrors, 0);
	kb_policy_init(&p);
	p.enable_backend = 1;
	kb_validate(&m, &p);
	assert_true(m.nerrors > 0);	/* loopback is refused */
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	fe = only_fe(&c);
	assert_null(fe->route);
	assert_int_equal(fe->nlocs, 0);
	assert_int_equal(fe->nslots, 0);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* One parent refusing a route (no such listener) does not stop the parent that accepted it. */
static void test_route_two_parents(void **state)
{
	static const char *yaml_r =
		"apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		"kind: TCPRoute\n"
		"metadata: {name: r, namespace: default}\n"
		"spec:\n"
		"  parentRefs: [{name: eg, sectionName: nope}, {name: eg, sectionName: tcp}]\n"
		"  rules:\n"
		"    - backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: a}]\n";
	struct kb_policy p;
	char y[8192], b1[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 1, 1), yaml_r);
	tu_load(&m, y);
	assert_int_equal(m.nerrors, 0);
	kb_policy_init(&p);
	p.enable_backend = 1;
	kb_validate(&m, &p);
	assert_true(kb_object_refused(&m.routes[0]->meta));	/* by the "nope" parent only */
	assert_int_equal(kb_compile(&m, NULL, &c), 0);
	fe = only_fe(&c);
	assert_string_equal(fe->route, "TCPRoute default/r");
	assert_int_equal(fe->nslots, 1);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static bool all_down(void *ctx, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	return false;
}

/*
 * A level in panic serves all of its hosts alike, whatever the locality
 * weights: Envoy's hostSourceToUse returns AllHosts before it picks a
 * locality. Here 90/10 over 1 + 3 endpoints becomes 1/4 each.
 */
static void test_panic_uses_all_hosts(void **state)
{
	struct kb_compile_env env = { .healthy = all_down };
	char y[8192], b1[1024], b2[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 1, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 3, 10), tcproute(r, sizeof(r), "a:90 b:10"));
	compile_yaml(&m, &c, y, &env);
	fe = only_fe(&c);
	assert_true(fe->levels[0].panic);
	assert_true(fabs(fe->levels[0].load - 1.0) < 1e-9);
	for (size_t i = 0; i < 4; i++) {
		assert_true(fabs(fe->eps[i].share - 0.25) < 1e-9);
		assert_int_equal(fe->eps[i].nslots, 1);
	}
	check_table(fe);
	check_interleaved(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* No small exact table: the bounded power-of-two size, each endpoint within one slot. */
static void test_inexact_table(void **state)
{
	char y[8192], b1[1024], b2[1024], b3[1024], r[1024];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	/* 1/301 needs 301 slots; two endpoints are bounded by 256. */
	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 1, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 1, 2), tcproute(r, sizeof(r), "a:1 b:300"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->nslots, 256);
	assert_int_equal(fe->eps[0].nslots, 1);	/* 0.85 */
	assert_int_equal(fe->eps[1].nslots, 255);
	check_table(fe);
	check_interleaved(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* Weights 1:1:1 over 7, 11 and 13 endpoints need 3003 slots; 31 endpoints are bounded by 2048. */
	snprintf(y, sizeof(y), "%s%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 7, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 11, 20), backend_ip(b3, sizeof(b3), "c", "", 13, 40),
		 tcproute(r, sizeof(r), "a b c"));
	compile_yaml(&m, &c, y, NULL);
	fe = only_fe(&c);
	assert_int_equal(fe->neps, 31);
	assert_int_equal(fe->nslots, 2048);
	check_table(fe);
	check_interleaved(fe);
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* Two compiles of the same input give the same table, slot for slot. */
static void test_deterministic(void **state)
{
	char y[8192], b1[1024], b2[1024], r[1024];
	struct kb_model m1, m2;
	struct kb_compiled c1, c2;

	snprintf(y, sizeof(y), "%s%s%s%s", gw_yaml, backend_ip(b1, sizeof(b1), "a", "", 3, 1),
		 backend_ip(b2, sizeof(b2), "b", "", 4, 10), tcproute(r, sizeof(r), "a:7 b:3"));
	compile_yaml(&m1, &c1, y, NULL);
	compile_yaml(&m2, &c2, y, NULL);
	assert_int_equal(c1.fes[0].nslots, c2.fes[0].nslots);
	assert_memory_equal(c1.fes[0].slots, c2.fes[0].slots, c1.fes[0].nslots * sizeof(__u32));
	check_table(&c1.fes[0]);
	check_interleaved(&c1.fes[0]);
	kb_compiled_free(&c1);
	kb_compiled_free(&c2);
	kb_model_free(&m1);
	kb_model_free(&m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apportion_vectors),
		cmocka_unit_test(test_apportion_known),
		cmocka_unit_test(test_apportion_random),
		cmocka_unit_test(test_slot_count),
		cmocka_unit_test(test_priority_load),
		cmocka_unit_test(test_weights_90_10),
		cmocka_unit_test(test_equal_weights_unequal_sizes),
		cmocka_unit_test(test_weight_zero),
		cmocka_unit_test(test_fallback_bool_idle),
		cmocka_unit_test(test_fallback_bool_takes_over),
		cmocka_unit_test(test_fallback_bool_spill),
		cmocka_unit_test(test_fallback_on_ref),
		cmocka_unit_test(test_seed_chain),
		cmocka_unit_test(test_seed_chain_cycle_dedup),
		cmocka_unit_test(test_fqdn_resolve),
		cmocka_unit_test(test_service_ref),
		cmocka_unit_test(test_service_import_ref),
		cmocka_unit_test(test_allowed_routes_compile),
		cmocka_unit_test(test_ipv6_udp_and_order),
		cmocka_unit_test(test_lb_policy),
		cmocka_unit_test(test_unix_endpoint),
		cmocka_unit_test(test_duplicate_frontend),
		cmocka_unit_test(test_refused_route),
		cmocka_unit_test(test_route_two_parents),
		cmocka_unit_test(test_panic_uses_all_hosts),
		cmocka_unit_test(test_inexact_table),
		cmocka_unit_test(test_deterministic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
