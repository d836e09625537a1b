// SPDX-License-Identifier: Apache-2.0
/* Tables for people: columns stay aligned whatever the cells hold, and no message is ever cut. */
#include <stdlib.h>

#include "testutil.h"
#include "render/render.h"
#include "render/table.h"

/* Print through fn into a string; the caller frees it. */
static char *capture(void (*fn)(FILE *, void *), void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, arg);
	fclose(f);
	return buf;
}

/* The offset of the header cell `name` (a whole word) in the first line of `out`. */
static size_t col_of(const char *out, const char *name)
{
	const char *nl = strchr(out, '\n'), *p = out;
	size_t n = strlen(name);

	while ((p = strstr(p, name)) && ((p > out && p[-1] != ' ') || (p[n] != ' ' && p[n] != '\n')))
		p += n;
	assert_non_null(p);
	assert_true(!nl || p < nl);
	return (size_t)(p - out);
}

/* The line starting with `start` (after any spaces) has `cell` at offset `col`. */
static void assert_cell(const char *out, const char *start, size_t col, const char *cell)
{
	for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		const char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) : strlen(l);

		if (strncmp(l, start, strlen(start)) != 0)
			continue;
		if (len < col + strlen(cell) || strncmp(l + col, cell, strlen(cell)) != 0 ||
		    (col && l[col - 1] != ' '))
			fail_msg("row \"%.*s\": expected \"%s\" at column %zu", (int)len, l, cell, col);
		return;
	}
	fail_msg("no row starts with \"%s\" in:\n%s", start, out);
}

static const char long_msg[] =
	"spec.endpoints[0].unix.path: unix socket /run/sidecars/very/long/path/that/goes/on/and/on/app.sock is "
	"not under an allowed sidecar directory; start kbackend with --unix-dir DIR";

static void print_objects(FILE *f, void *arg)
{
	kb_print_objects_table(f, arg, false);
}

static struct json_object *object(const char *kind, const char *ns, const char *name, const char *status,
				  const char *reason, const char *msg)
{
	struct json_object *o = json_object_new_object(), *md = json_object_new_object();
	struct json_object *st = json_object_new_object(), *conds = json_object_new_array();
	struct json_object *c = json_object_new_object();

	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(md, "namespace", json_object_new_string(ns));
	json_object_object_add(md, "name", json_object_new_string(name));
	json_object_object_add(o, "metadata", md);
	json_object_object_add(c, "type", json_object_new_string("Accepted"));
	json_object_object_add(c, "status", json_object_new_string(status));
	json_object_object_add(c, "reason", json_object_new_string(reason));
	json_object_object_add(c, "message", json_object_new_string(msg));
	json_object_array_add(conds, c);
	json_object_object_add(st, "conditions", conds);
	json_object_object_add(o, "status", st);
	return o;
}

/* Long names and long messages: every cell starts under its header, and the message is whole. */
static void test_objects_table_aligned_and_whole(void **state)
{
	struct json_object *list = json_object_new_object(), *items = json_object_new_array();
	const char *name = "a-backend-name-that-is-longer-than-its-column";
	char *out;

	(void)state;
	json_object_array_add(items, object("Backend", "default", "short", "True", "Accepted", "ok"));
	json_object_array_add(items, object("BackendTrafficPolicy", "a-long-namespace-name", name, "False",
					    "InvalidBackendReference", long_msg));
	json_object_object_add(list, "items", items);
	out = capture(print_objects, list);
	assert_cell(out, "Backend ", col_of(out, "NAME"), "short");
	assert_cell(out, "BackendTrafficPolicy", col_of(out, "NAMESPACE"), "a-long-namespace-name");
	assert_cell(out, "BackendTrafficPolicy", col_of(out, "NAME"), name);
	assert_cell(out, "BackendTrafficPolicy", col_of(out, "VERDICT"), "Refused");
	assert_cell(out, "BackendTrafficPolicy", col_of(out, "REASON"), "InvalidBackendReference");
	assert_cell(out, "BackendTrafficPolicy", col_of(out, "MESSAGE"), long_msg);
	assert_cell(out, "Backend ", col_of(out, "MESSAGE"), "ok");
	free(out);
	json_object_put(list);
}

static void print_endpoints(FILE *f, void *arg)
{
	kb_print_frontends_table(f, arg, KB_TABLE_ENDPOINTS, false);
}

/* An unresolved FQDN row and a long endpoint keep the HEALTH, SHARE% and SLOTS columns. */
static void test_endpoints_table_aligned(void **state)
{
	const char *doc =
		"[{\"address\":\"198.18.0.10\",\"port\":80,\"protocol\":\"TCP\",\"loadBalancer\":\"Random\",\"slots\":2,"
		" \"endpoints\":[{\"backend\":\"default/app\",\"type\":\"IP\",\"address\":\"198.51.100.2\",\"port\":8080,"
		"  \"priority\":0,\"weight\":1,\"healthy\":true,\"slots\":1,\"sharePercent\":50.0},"
		" {\"backend\":\"default/sidecar\",\"type\":\"Unix\","
		"  \"address\":\"/run/kbackend/sidecars/a-sidecar-with-a-long-socket-name.sock\","
		"  \"priority\":0,\"weight\":1,\"healthy\":true,\"slots\":1,\"sharePercent\":50.0}],"
		" \"localities\":[{\"backend\":\"default/api\",\"weight\":1,\"priority\":1,"
		"  \"unresolved\":[\"api.example.internal:443\"]}]}]";
	struct json_object *fes = json_tokener_parse(doc);
	char *out;

	(void)state;
	assert_non_null(fes);
	out = capture(print_endpoints, fes);
	assert_cell(out, "198.18.0.10:80", col_of(out, "HEALTH"), "healthy");
	assert_cell(out, "198.18.0.10:80", col_of(out, "SHARE%"), "50.00");
	assert_cell(out, " ", col_of(out, "ENDPOINT"), "unix:/run/kbackend/sidecars/a-sidecar-with-a-long-socket-name.sock");
	assert_cell(out, " ", col_of(out, "HEALTH"), "healthy");
	assert_cell(out, " ", col_of(out, "SLOTS"), "1");
	/* The unresolved name is the last row. */
	{
		const char *last = strstr(out, "api.example.internal:443");

		assert_non_null(last);
		while (last > out && last[-1] != '\n')
			last--;
		assert_cell(last, " ", col_of(out, "ENDPOINT"), "api.example.internal:443");
		assert_cell(last, " ", col_of(out, "HEALTH"), "unresolved");
		assert_cell(last, " ", col_of(out, "SHARE%"), "0.00");
		assert_cell(last, " ", col_of(out, "SLOTS"), "0");
	}
	free(out);
	json_object_put(fes);
}

static void print_table(FILE *f, void *arg)
{
	kb_table_print(f, arg);
}

/*
 * Rows as the daemon sends them (kb_table_rows_text) and as the CLI reads
 * them back (kb_table_add_rows) make the same table: empty and trailing empty
 * cells, a tab or newline inside a cell (a space on the wire), and lines with
 * too few or too many cells (missing ones empty, extra ones dropped).
 */
static void test_table_rows_round_trip(void **state)
{
	struct kb_table a, b, c;
	char *buf = NULL, *pa, *pb, odd[] = "x\ty\nfirst\tsecond\tthird\tfourth\n", bad[] = "no newline";
	size_t len = 0, cap = 0;

	(void)state;
	kb_table_init(&a, 3);
	kb_table_add(&a, "ONE", "TWO", "THREE");
	kb_table_add(&a, "198.18.0.10:80", "", "last");
	kb_table_add(&a, "", "middle", NULL);
	kb_table_add(&a, "a much longer first cell", "b", "c");
	assert_true(kb_table_rows_text(&a, 1, &buf, &len, &cap));
	assert_int_equal(len, strlen("198.18.0.10:80\t\tlast\n\tmiddle\t\na much longer first cell\tb\tc\n"));
	kb_table_init(&b, 3);
	kb_table_add(&b, "ONE", "TWO", "THREE");
	assert_true(kb_table_add_rows(&b, buf, len));
	assert_int_equal(kb_table_rows(&b), 4);
	pa = capture(print_table, &a);
	pb = capture(print_table, &b);
	assert_string_equal(pa, pb);
	free(pa);
	free(pb);

	/* A cell holding a tab or a newline travels as a space; odd lines keep the column count. */
	kb_table_truncate(&a, 1);
	assert_int_equal(kb_table_rows(&a), 1);
	kb_table_add(&a, "tab\there", "new\nline", "z");
	len = 0;
	assert_true(kb_table_rows_text(&a, 1, &buf, &len, &cap));
	assert_int_equal(len, strlen("tab here\tnew line\tz\n"));
	assert_memory_equal(buf, "tab here\tnew line\tz\n", len);
	kb_table_init(&c, 3);
	assert_true(kb_table_add_rows(&c, buf, len));
	assert_true(kb_table_add_rows(&c, odd, strlen(odd)));
	assert_false(kb_table_add_rows(&c, bad, strlen(bad)));
	assert_int_equal(kb_table_rows(&c), 3);
	pa = capture(print_table, &c);
	assert_string_equal(pa, "tab here  new line  z\n"
				"x         y\n"
				"first     second    third\n");
	free(pa);
	free(buf);
	kb_table_free(&a);
	kb_table_free(&b);
	kb_table_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects_table_aligned_and_whole),
		cmocka_unit_test(test_endpoints_table_aligned),
		cmocka_unit_test(test_table_rows_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
