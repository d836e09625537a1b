// SPDX-License-Identifier: Apache-2.0
/* The kernel feature table: what the daemon says for an absent feature, when it refuses to start, its JSON, and docs/OPERATIONS.md's copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "daemon/kernel_features.h"
#include "testutil.h"

static void all_present(struct kb_features *f, const char *kernel)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < KB_FEAT_N; i++)
		f->present[i] = true;
	snprintf(f->kernel, sizeof(f->kernel), "%s", kernel);
}

/* kb_features_report's return, with what it wrote to stderr in log. */
static int report(const struct kb_features *f, char *log, size_t len)
{
	FILE *tmp = tmpfile();
	int saved = dup(2), n;
	size_t got;

	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	n = kb_features_report(f);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	got = fread(log, 1, len - 1, tmp);
	log[got] = '\0';
	fclose(tmp);
	return n;
}

static enum kb_feature by_name(const char *name)
{
	for (int i = 0; i < KB_FEAT_N; i++)
		if (!strcmp(kb_feature_info(i)->name, name))
			return i;
	fail_msg("no feature %s", name);
	return KB_FEAT_N;
}

/* A kernel with everything: nothing said, the daemon starts. */
static void test_all_present_says_nothing(void **state)
{
	struct kb_features f;
	char log[4096];

	all_present(&f, "6.18.0");
	assert_int_equal(report(&f, log, sizeof(log)), 0);
	assert_string_equal(log, "");
}

/* Debian 12's 6.1: bpf_sock_destroy absent is one line with its cost, and the daemon starts. */
static void test_optional_absent_logs_cost(void **state)
{
	struct kb_features f;
	char log[4096];

	all_present(&f, "6.1.0-57-amd64");
	f.present[KB_FEAT_SOCK_DESTROY] = false;
	assert_int_equal(report(&f, log, sizeof(log)), 0);
	assert_string_equal(log, "kbackend: bpf_sock_destroy absent (needs 6.5): UDP sockets to an ejected endpoint keep "
				 "their peer until the application reconnects\n");
}

/* A 5.15 kernel (no bpf_set_retval): the daemon refuses, naming the feature and its release. */
static void test_required_absent_refuses(void **state)
{
	struct kb_features f;
	char log[4096];

	all_present(&f, "5.15.0");
	f.present[KB_FEAT_SET_RETVAL] = false;
	f.present[KB_FEAT_SOCK_DESTROY] = false;
	f.present[KB_FEAT_ITER_UDP] = true;
	assert_int_equal(report(&f, log, sizeof(log)), 1);
	assert_non_null(strstr(log, "kbackend: kernel 5.15.0 lacks bpf_set_retval (Linux 5.18), which kbackend requires: "));
	assert_non_null(strstr(log, "bpf_sock_destroy absent (needs 6.5)"));
	f.present[KB_FEAT_KERNEL_BTF] = false;
	assert_int_equal(report(&f, log, sizeof(log)), 2);
}

/* Names are unique JSON keys; "since" is MAJOR.MINOR; the required ones all exist by 5.18, the floor the docs state. */
static void test_table(void **state)
{
	struct json_object *o = json_object_new_object(), *all;
	struct kb_features f;
	int top = 0;

	all_present(&f, "6.1.0");
	f.present[KB_FEAT_SOCK_DESTROY] = false;
	kb_features_json(&f, o);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "kernel")), "6.1.0");
	all = json_object_object_get(o, "features");
	assert_int_equal(json_object_object_length(all), KB_FEAT_N);
	for (int i = 0; i < KB_FEAT_N; i++) {
		const struct kb_feature_info *in = kb_feature_info(i);
		struct json_object *j = json_object_object_get(all, in->name);
		int maj, min;

		assert_int_equal(by_name(in->name), i);
		assert_non_null(j);
		assert_true(json_object_is_type(json_object_object_get(j, "present"), json_type_boolean));
		assert_int_equal(json_object_get_boolean(json_object_object_get(j, "present")), i != KB_FEAT_SOCK_DESTROY);
		assert_int_equal(json_object_get_boolean(json_object_object_get(j, "required")), in->required);
		assert_int_equal(sscanf(in->since, "%d.%d", &maj, &min), 2);
		assert_true(in->use[0] && in->without[0]);
		if (in->required && maj * 100 + min > top)
			top = maj * 100 + min;
	}
	assert_int_equal(top, 518);
	json_object_put(o);
}

/* docs/OPERATIONS.md has a row for each feature with its release and required/optional, as the binary has them. */
static void test_operations_table(void **state)
{
	char path[PATH_MAX], row[256];
	char *doc;
	FILE *fp;
	long len;

	if (!tu_find_path("docs/OPERATIONS.md", false, path, sizeof(path)))
		fail_msg("docs/OPERATIONS.md not found (run from the repository)");
	fp = fopen(path, "r");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	doc = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(doc, 1, (size_t)len, fp), (size_t)len);
	fclose(fp);
	for (int i = 0; i < KB_FEAT_N; i++) {
		const struct kb_feature_info *in = kb_feature_info(i);
		char *r, *end;

		snprintf(row, sizeof(row), "| `%s` | %s | ", in->name, in->since);
		r = strstr(doc, row);
		if (!r)
			fail_msg("docs/OPERATIONS.md has no row starting \"%s\"", row);
		end = strchr(r, '\n');
		assert_non_null(end);
		*end = '\0';
		if (!strstr(r, in->required ? "| required |" : "| optional |"))
			fail_msg("docs/OPERATIONS.md: %s should be %s", in->name, in->required ? "required" : "optional");
		*end = '\n';
	}
	free(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_present_says_nothing),
		cmocka_unit_test(test_optional_absent_logs_cost),
		cmocka_unit_test(test_required_absent_refuses),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_operations_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
