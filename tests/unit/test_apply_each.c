// SPDX-License-Identifier: Apache-2.0
/* Unit tests for apply_each.c: per-object acceptance sets aside what is refused, and what was refused because of it, and keeps the rest. */
#include "testutil.h"
#include "change/apply_each.h"
#include "manifest/manifest.h"

#define GW                                                                                              \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: eg\n"              \
	"  namespace: default\nspec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n"     \
	"      value: 198.18.0.10\n  listeners:\n    - name: a\n      protocol: TCP\n      port: 80\n"  \
	"    - name: b\n      protocol: TCP\n      port: 81\n"
#define BE(name, port)                                                                                  \
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: " name "\n"     \
	"  namespace: default\nspec:\n  endpoints:\n    - ip:\n        address: 198.51.100.1\n"          \
	"        port: " port "\n"
#define ROUTE(name, section, backend)                                                                   \
	"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: " name "\n" \
	"  namespace: default\nspec:\n  parentRefs:\n    - name: eg\n      sectionName: " section "\n"  \
	"  rules:\n    - backendRefs:\n        - group: gateway.envoyproxy.io\n          kind: Backend\n" \
	"          name: " backend "\n"

static struct json_object *files(const char *text)
{
	struct json_object *arr = json_object_new_array(), *f = json_object_new_object();

	json_object_object_add(f, "name", json_object_new_string("dir/all.yaml"));
	json_object_object_add(f, "content", json_object_new_string(text));
	json_object_array_add(arr, f);
	return arr;
}

/* Parse, judge, and accept per object: the kept model in *m, the set-aside objects' labels joined by ",". */
static int each(const char *text, struct kb_model *m, char *labels, size_t len, struct json_object **refused)
{
	struct json_object *f = files(text);
	struct kb_policy p;
	int n;

	kb_policy_init(&p);
	p.enable_backend = 1;
	kb_model_init(m);
	assert_int_equal(kb_change_load_files(m, f), 0);
	kb_validate(m, &p);
	*refused = json_object_new_array();
	n = kb_change_each(m, f, &p, *refused);
	labels[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(*refused); i++) {
		struct json_object *o = json_object_array_get_idx(*refused, i), *v;

		assert_true(json_object_object_get_ex(o, "object", &v));
		snprintf(labels + strlen(labels), len - strlen(labels), "%s%s", i ? "," : "", json_object_get_string(v));
	}
	json_object_put(f);
	return n;
}

static bool has(const struct kb_model *m, const char *name)
{
	for (size_t i = 0; i < m->nobjects; i++)
		if (!strcmp(m->objects[i]->name, name))
			return true;
	return false;
}

/* A bad Backend goes, the route that names it goes in the next round, everything else stays and is judged clean. */
static void test_sets_aside_and_cascades(void **state)
{
	struct json_object *refused, *st, *diags;
	char labels[512];
	struct kb_model m;

	(void)state;
	assert_int_equal(each(GW "---\n" BE("good", "8080") "---\n" BE("bad", "99999") "---\n" ROUTE("r1", "a", "good")
				 "---\n" ROUTE("r2", "b", "bad"),
			      &m, labels, sizeof(labels), &refused),
			 2);
	assert_string_equal(labels, "Backend default/bad,TCPRoute default/r2");
	assert_int_equal(m.nobjects, 3);
	assert_true(has(&m, "eg") && has(&m, "good") && has(&m, "r1"));
	assert_false(has(&m, "bad") || has(&m, "r2"));
	assert_int_equal(m.nerrors, 0);
	for (size_t i = 0; i < m.nobjects; i++)
		assert_false(kb_object_refused(m.objects[i]));
	/* The Backend's entry carries its own diagnostic, with the line in the original file. */
	assert_true(json_object_object_get_ex(json_object_array_get_idx(refused, 0), "status", &st));
	assert_true(json_object_object_get_ex(st, "diagnostics", &diags));
	assert_int_equal(json_object_array_length(diags), 1);
	assert_non_null(strstr(json_object_get_string(json_object_object_get(json_object_array_get_idx(diags, 0), "text")),
			       "dir/all.yaml:"));
	json_object_put(refused);
	kb_model_free(&m);
}

/* Nothing refused: nothing set aside, the model untouched. */
static void test_all_good(void **state)
{
	struct json_object *refused;
	char labels[512];
	struct kb_model m;

	(void)state;
	assert_int_equal(each(GW "---\n" BE("good", "8080") "---\n" ROUTE("r1", "a", "good"), &m, labels, sizeof(labels),
			      &refused),
			 0);
	assert_string_equal(labels, "");
	assert_int_equal(m.nobjects, 3);
	json_object_put(refused);
	kb_model_free(&m);
}

/* A file that is not YAML names no object: the caller refuses the whole request. */
static void test_not_yaml_refuses_whole(void **state)
{
	struct json_object *refused;
	char labels[512];
	struct kb_model m;

	(void)state;
	assert_int_equal(each(BE("good", "8080") "---\nkind: Backend\nmetadata: [name\n", &m, labels, sizeof(labels),
			      &refused),
			 -1);
	json_object_put(refused);
	kb_model_free(&m);
}

/* An object defined twice goes whole (both copies), the others stay. */
static void test_defined_twice(void **state)
{
	struct json_object *refused;
	char labels[512];
	struct kb_model m;

	(void)state;
	/* kb_daemon_change reports the duplicate (index_objects); here the same Backend twice, one of them bad. */
	assert_int_equal(each(BE("good", "8080") "---\n" BE("x", "8080") "---\n" BE("x", "99999"), &m, labels,
			      sizeof(labels), &refused),
			 1);
	assert_string_equal(labels, "Backend default/x");
	assert_int_equal(m.nobjects, 1);
	assert_true(has(&m, "good"));
	json_object_put(refused);
	kb_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sets_aside_and_cascades),
		cmocka_unit_test(test_all_good),
		cmocka_unit_test(test_not_yaml_refuses_whole),
		cmocka_unit_test(test_defined_twice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
