// SPDX-License-Identifier: Apache-2.0
/* Unit tests for a large stream read in two halves at once (manifest.c): the result is what one pass gives. */
#include <stdlib.h>

#include "testutil.h"

/* Document k: a Backend "b-k" of exactly 10 lines, so its first line is 10k + 1 (11k + 1 with the "---" lines). */
#define DOC_FMT                                                                                           \
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: b-%06d\n"         \
	"  namespace: default\nspec:\n  endpoints:\n    - ip:\n        address: 198.51.100.1\n"          \
	"        port: %s\n"
#define NDOCS 6000	/* about 1.5 MB: over the size that is read in halves */

/* NDOCS documents; document bad (if >= 0) gets port "oops" (a located error) or, with syntax, a broken line after it. */
static char *stream(int bad, bool syntax, size_t *len)
{
	size_t cap = (size_t)NDOCS * 256, n = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	for (int k = 0; k < NDOCS; k++) {
		if (k)
			n += (size_t)snprintf(s + n, cap - n, "---\n");
		n += (size_t)snprintf(s + n, cap - n, DOC_FMT, k, k == bad && !syntax ? "oops" : "8080");
		if (k == bad && syntax)
			n += (size_t)snprintf(s + n, cap - n, "  bad: [unclosed\n");
	}
	*len = n;
	return s;
}

static void test_halves_read_as_one(void **state)
{
	struct kb_model m;
	size_t len;
	char *s = stream(-1, false, &len);

	(void)state;
	assert_true(len > (1u << 20));
	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_buffer(&m, "big.yaml", s, len), 0);
	assert_int_equal(m.nobjects, NDOCS);
	assert_int_equal(m.nbackends, NDOCS);
	assert_int_equal(m.nerrors, 0);
	for (int k = 0; k < NDOCS; k++) {
		char name[32];

		snprintf(name, sizeof(name), "b-%06d", k);
		assert_string_equal(m.objects[k]->name, name);
		assert_int_equal(m.objects[k]->loc.line, 11 * k + 1);
		assert_int_equal(m.objects[k]->doc_index, k);
		assert_non_null(strstr(m.objects[k]->src, name));
	}
	kb_model_free(&m);
	free(s);
}

/* An error in the second half is located in the file, not in the half. */
static void test_error_line_in_second_half(void **state)
{
	char text[512];
	struct kb_model m;
	size_t len;
	int bad = NDOCS - 10;
	char *s = stream(bad, false, &len);

	(void)state;
	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "big.yaml", s, len);
	assert_int_equal(m.nobjects, NDOCS);
	assert_true(m.nerrors > 0);
	kb_diag_format(&m.diags[0], text, sizeof(text));
	snprintf(s, 64, "big.yaml:%d:", 11 * bad + 10);
	if (!strstr(text, s))
		fail_msg("%s is not at %s", text, s);
	kb_model_free(&m);
	free(s);
}

/* A syntax error stops the stream: nothing after it, from either half. */
static void test_syntax_error_stops(void **state)
{
	int bads[] = { 10, NDOCS - 10 };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct kb_model m;
		size_t len;
		char *s = stream(bads[i], true, &len);

		kb_model_init(&m);
		kb_manifest_load_buffer(&m, "big.yaml", s, len);
		assert_true(m.nerrors > 0);
		assert_true(m.nobjects <= (size_t)bads[i]);
		assert_true(m.nobjects + 1 >= (size_t)bads[i]);
		kb_model_free(&m);
		free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_halves_read_as_one),
		cmocka_unit_test(test_error_line_in_second_half),
		cmocka_unit_test(test_syntax_error_stops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
