// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the state file (store.c): round trip, and every way a file can be bad is recognised as bad. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "store.h"

#define OBJS                                                                                            \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: eg\nspec:\n"      \
	"  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: 198.18.0.10\n"    \
	"  listeners:\n    - name: tcp\n      protocol: TCP\n      port: 80\n"                         \
	"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: e1\n"      \
	"spec:\n  endpoints:\n    - ip:\n        address: 198.51.100.1\n        port: 8080\n"         \
	"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: e2\n"      \
	"spec:\n  endpoints:\n    - ip:\n        address: 203.0.113.2\n        port: 8080\n"

static char dir[64], file[128];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/kbt-store-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	kb_store_path(dir, file, sizeof(file));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) ? -1 : 0;
}

/* The saved file's bytes (caller frees). */
static char *saved(size_t *len)
{
	struct kb_model m;
	FILE *f;
	char *buf;

	tu_load(&m, OBJS);
	assert_int_equal(m.nerrors, 0);
	assert_int_equal(kb_store_save(dir, &m), 0);
	kb_model_free(&m);
	f = fopen(file, "r");
	assert_non_null(f);
	buf = calloc(1, 65536);
	assert_non_null(buf);
	*len = fread(buf, 1, 65535, f);
	fclose(f);
	return buf;
}

static void put_file(const char *buf, size_t len)
{
	FILE *f = fopen(file, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Load the file: the result, and why in why. */
static enum kb_store_result load(char *why, size_t len, size_t *nobjects)
{
	struct kb_model m;
	enum kb_store_result r;

	kb_model_init(&m);
	r = kb_store_load(dir, &m, why, len);
	if (nobjects)
		*nobjects = m.nobjects;
	kb_model_free(&m);
	return r;
}

static void assert_bad(const char *needle)
{
	char why[1024];

	if (load(why, sizeof(why), NULL) != KB_STORE_BAD)
		fail_msg("read as good, expected bad (%s)", needle);
	if (!strstr(why, needle))
		fail_msg("why \"%s\" does not say \"%s\"", why, needle);
}

static void test_round_trip(void **state)
{
	char why[1024];
	size_t len, n = 0;
	char *buf = saved(&len);

	assert_non_null(strstr(buf, "# kbackend-state-format: 2\n"));
	assert_non_null(strstr(buf, "# kbackend-state-end: 3 objects, crc32 "));
	assert_int_equal(load(why, sizeof(why), &n), KB_STORE_OK);
	assert_int_equal(n, 3);
	free(buf);
	unlink(file);
	assert_int_equal(load(why, sizeof(why), &n), KB_STORE_MISSING);
	assert_int_equal(n, 0);
}

/* Kinds kbackend does not use are kept in the state file as written, and read back as the same kinds. */
static void test_round_trip_ignored_kinds(void **state)
{
	struct kb_model m;
	char why[1024];

	tu_load(&m, OBJS "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: dg==}\n"
		    "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: HTTPRouteFilter\nmetadata: {name: f}\nspec: {}\n");
	assert_int_equal(m.nerrors, 0);
	assert_int_equal(kb_store_save(dir, &m), 0);
	kb_model_free(&m);
	kb_model_init(&m);
	assert_int_equal(kb_store_load(dir, &m, why, sizeof(why)), KB_STORE_OK);
	assert_int_equal(m.nerrors, 0);
	assert_int_equal(m.nobjects, 5);
	assert_int_equal(m.objects[3]->kind, KB_KIND_FOREIGN);
	assert_string_equal(kb_meta_kind(m.objects[3]), "Secret");
	assert_string_equal(m.objects[3]->api_version, "v1");
	assert_string_equal(kb_meta_kind(m.objects[4]), "HTTPRouteFilter");
	kb_model_free(&m);
}

/* Cut at any byte, document boundaries included: never read as a (smaller) good state. */
static void test_every_cut_is_truncated(void **state)
{
	size_t len;
	char *buf = saved(&len);

	for (size_t cut = 0; cut < len; cut++) {
		put_file(buf, cut);
		assert_bad("truncated");
	}
	free(buf);
}

static void test_changed_byte_is_corrupt(void **state)
{
	size_t len;
	char *buf = saved(&len), *p = strstr(buf, "198.51.100.1");

	assert_non_null(p);
	p[10] = '7';	/* 198.51.100.7: still a valid document */
	put_file(buf, len);
	assert_bad("corrupt");
	free(buf);
}

static void test_future_garbage_legacy(void **state)
{
	static const char header[] = "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n";
	char buf[8192], why[1024];
	size_t n = 0;

	snprintf(buf, sizeof(buf), "%s# kbackend-state-format: 3\n---\n%s", header, OBJS);
	put_file(buf, strlen(buf));
	assert_bad("newer");
	put_file("\x7f" "ELF garbage: [\n", 15);
	assert_bad("not a kbackend state file");
	put_file(OBJS, strlen(OBJS));
	assert_bad("not a kbackend state file");
	snprintf(buf, sizeof(buf), "%s# something else\n---\n%s", header, OBJS);
	put_file(buf, strlen(buf));
	assert_bad("not a kbackend state file");
	/* Format 1, as the daemon wrote it before the format line: read, unchecked. */
	snprintf(buf, sizeof(buf), "%s---\n%s", header, OBJS);
	put_file(buf, strlen(buf));
	assert_int_equal(load(why, sizeof(why), &n), KB_STORE_OK);
	assert_int_equal(n, 3);
	/* The header alone: format 1's empty state, or format 2 cut after its first line. Taken as the latter. */
	put_file(header, strlen(header));
	assert_bad("truncated");
}

static void test_unreadable_and_set_aside(void **state)
{
	char aside[256], aside2[256];
	struct stat st;

	unlink(file);
	assert_int_equal(mkdir(file, 0700), 0);
	assert_bad("Is a directory");
	assert_int_equal(kb_store_set_aside(dir, aside, sizeof(aside)), 0);
	assert_non_null(strstr(aside, "/applied.yaml.bad-"));
	assert_int_equal(stat(aside, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* A second one (in the same second, likely) does not replace the first. */
	put_file("x", 1);
	assert_int_equal(kb_store_set_aside(dir, aside2, sizeof(aside2)), 0);
	assert_string_not_equal(aside, aside2);
	assert_int_equal(stat(aside, &st), 0);
	assert_int_equal(stat(aside2, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(file, &st), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_ignored_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_cut_is_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_byte_is_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_garbage_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_and_set_aside, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
