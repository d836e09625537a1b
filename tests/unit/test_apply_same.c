// SPDX-License-Identifier: Apache-2.0
/* Unit tests for apply_same.c: a re-apply is recognised from its bytes only when libyaml would read the same objects. */
#include "testutil.h"
#include "change/apply_same.h"
#include "manifest/manifest.h"

#define BE(name, extra)                                                                                 \
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: " name "\n"     \
	"  annotations:\n    note: |\n      kept\n" extra "spec:\n  endpoints:\n    - ip:\n"            \
	"        address: 198.51.100.1\n        port: 8080\n"
#define STATE BE("a", "") "---\n" BE("b", "") "---\n" BE("c", "")

static struct json_object *files(const char *a, const char *b)
{
	struct json_object *arr = json_object_new_array();
	const char *text[2] = { a, b };

	for (int i = 0; i < 2 && text[i]; i++) {
		struct json_object *f = json_object_new_object();

		json_object_object_add(f, "name", json_object_new_string("t.yaml"));
		json_object_object_add(f, "content", json_object_new_string(text[i]));
		json_object_array_add(arr, f);
	}
	return arr;
}

static size_t same(const struct kb_model *m, const char *a, const char *b)
{
	struct json_object *f = files(a, b);
	size_t n = kb_same_text_tail(m, f);

	json_object_put(f);
	return n;
}

static void test_same_text(void **state)
{
	struct kb_model m;

	(void)state;
	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "s.yaml", STATE, strlen(STATE));
	assert_int_equal(m.nobjects, 3);
	/* The whole text, a leading "---", the last objects alone, split over two files. */
	assert_int_equal(same(&m, STATE, NULL), 3);
	assert_int_equal(same(&m, "---\n" STATE, NULL), 3);
	assert_int_equal(same(&m, BE("b", "") "---\n" BE("c", ""), NULL), 2);
	assert_int_equal(same(&m, BE("a", "") "---\n" BE("b", ""), BE("c", "")), 3);
	/* Anything else is parsed: one changed byte, another order, not the tail, an extra or missing document. */
	assert_int_equal(same(&m, BE("a", "") "---\n" BE("b", "") "---\n" BE("d", ""), NULL), 0);
	assert_int_equal(same(&m, BE("a", "") "---\n" BE("c", "") "---\n" BE("b", ""), NULL), 0);
	assert_int_equal(same(&m, BE("a", "") "---\n" BE("b", ""), NULL), 0);
	assert_int_equal(same(&m, STATE "---\n" BE("a", ""), NULL), 0);
	assert_int_equal(same(&m, BE("c", "") "\n", NULL), 0);
	/* A comment, a directive, "..." or "--- " at a boundary: not byte-equal, so parsed. */
	assert_int_equal(same(&m, STATE "# end\n", NULL), 0);
	assert_int_equal(same(&m, "%YAML 1.1\n---\n" STATE, NULL), 0);
	assert_int_equal(same(&m, BE("b", "") "...\n---\n" BE("c", ""), NULL), 0);
	assert_int_equal(same(&m, BE("b", "") "--- \n" BE("c", ""), NULL), 0);
	assert_int_equal(same(&m, "", NULL), 0);
	kb_model_free(&m);
}

/* A "---" line inside a block scalar cannot be cut there: it would end the document, so no stored text holds one. */
static void test_separator_in_scalar(void **state)
{
	static const char two[] = BE("a", "    more: |\n      x\n") "---\n" BE("b", "");
	struct kb_model m;

	(void)state;
	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "s.yaml", two, strlen(two));
	assert_int_equal(m.nobjects, 2);
	/* A request whose block scalar holds a column-0 "---" line is two documents to libyaml, and not the stored a. */
	assert_int_equal(same(&m, BE("a", "    more: |\n---\n") BE("b", ""), NULL), 0);
	assert_int_equal(same(&m, two, NULL), 2);
	kb_model_free(&m);
}

/* A List's items carry re-indented text: never taken as whole documents. */
static void test_list_items(void **state)
{
	static const char list[] = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				   "  kind: Backend\n  metadata:\n    name: a\n  spec:\n    endpoints:\n    - ip:\n"
				   "        address: 198.51.100.1\n        port: 8080\n";
	struct kb_model m;

	(void)state;
	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "s.yaml", list, strlen(list));
	assert_int_equal(m.nobjects, 1);
	assert_int_equal(same(&m, list, NULL), 0);
	assert_int_equal(same(&m, m.objects[0]->src, NULL), 0);
	kb_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_text),
		cmocka_unit_test(test_separator_in_scalar),
		cmocka_unit_test(test_list_items),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
