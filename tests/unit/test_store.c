// SPDX-License-Identifier: Apache-2.0
/* Unit tests for the state store (store.c, store_log.c): snapshot and log round trips, a torn log tail is dropped, every bad state is recognised as bad, migration. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "store/store.h"

#define GW                                                                                              \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: eg\nspec:\n"      \
	"  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: 198.18.0.10\n"    \
	"  listeners:\n    - name: tcp\n      protocol: TCP\n      port: 80\n"
#define BE(name, addr)                                                                                  \
	"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: " name "\n"     \
	"spec:\n  endpoints:\n    - ip:\n        address: " addr "\n        port: 8080\n"
#define OBJS GW "---\n" BE("e1", "198.51.100.1") "---\n" BE("e2", "203.0.113.2")

static const char header[] = "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n";
static char dir[64], file[128], logf[128];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/kbt-store-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	kb_store_path(dir, file, sizeof(file));
	snprintf(logf, sizeof(logf), "%s/%s", dir, KB_STATE_LOG);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) ? -1 : 0;
}

/* The bytes of path (caller frees). */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf;

	assert_non_null(f);
	buf = calloc(1, 1 << 20);
	assert_non_null(buf);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	return buf;
}

static void put_file(const char *path, const char *buf, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* OBJS as a snapshot (a compaction of a fresh store); the snapshot's bytes (caller frees). */
static char *saved(size_t *len)
{
	struct kb_store st;
	struct kb_model m;

	tu_load(&m, OBJS);
	assert_int_equal(m.nerrors, 0);
	kb_store_init(&st, dir);
	assert_int_equal(kb_store_compact(&st, &m), 0);
	kb_store_close(&st);
	kb_model_free(&m);
	return slurp(file, len);
}

/* Load the store: the result, why and note, and the state as "key=src-length key=..." in keys. */
static enum kb_store_result load(char *why, size_t len, char *note, char *keys, size_t klen)
{
	struct kb_store st;
	struct kb_model m;
	enum kb_store_result r;
	char nbuf[1024];
	size_t n = 0;

	kb_model_init(&m);
	kb_store_init(&st, dir);
	r = kb_store_load(&st, &m, why, len, note ? note : nbuf, sizeof(nbuf));
	kb_store_close(&st);
	if (keys) {
		keys[0] = '\0';
		for (size_t i = 0; r == KB_STORE_OK && i < m.nobjects && n < klen; i++) {
			char key[512];

			kb_store_key(m.objects[i], key, sizeof(key));
			n += (size_t)snprintf(keys + n, klen - n, "%s%s=%zu", i ? " " : "", key, m.objects[i]->src_len);
		}
	}
	kb_model_free(&m);
	return r;
}

static void assert_bad(const char *needle)
{
	char why[1024];

	if (load(why, sizeof(why), NULL, NULL, 0) != KB_STORE_BAD)
		fail_msg("read as good, expected bad (%s)", needle);
	if (!strstr(why, needle))
		fail_msg("why \"%s\" does not say \"%s\"", why, needle);
}

static void test_snapshot_round_trip(void **state)
{
	char why[1024], keys[1024];
	size_t len;
	char *buf = saved(&len);

	assert_non_null(strstr(buf, "# kbackend-state-format: 3\n# kbackend-state-generation: 1\n"));
	assert_non_null(strstr(buf, "# kbackend-object: Backend/default/e1, "));
	assert_non_null(strstr(buf, "# kbackend-state-end: 3 objects, crc32 "));
	if (load(why, sizeof(why), NULL, keys, sizeof(keys)) != KB_STORE_OK)
		fail_msg("bad: %s", why);
	assert_string_equal(keys, "Gateway/default/eg=229 Backend/default/e1=156 Backend/default/e2=155");
	free(buf);
	unlink(file);
	unlink(logf);
	assert_int_equal(load(why, sizeof(why), NULL, NULL, 0), KB_STORE_MISSING);
}

/*
 * A fresh directory, then five requests, one commit each: put all three, a
 * changed e1 (it moves to the end), a touch of the Gateway (order only), a
 * delete of e2, and a put of e3 with a delete of e1 in one request. The
 * log's length after each commit goes to ends[1..5].
 */
static const char *const after[] = {
	"",
	"Gateway/default/eg=229 Backend/default/e1=156 Backend/default/e2=155",
	"Gateway/default/eg=229 Backend/default/e2=155 Backend/default/e1=156",
	"Backend/default/e2=155 Backend/default/e1=156 Gateway/default/eg=229",
	"Backend/default/e1=156 Gateway/default/eg=229",
	"Gateway/default/eg=229 Backend/default/e3=157",
};

static void write_requests(size_t ends[6])
{
	struct kb_store st;
	struct kb_model m, e1b, e3;

	tu_load(&m, OBJS);
	tu_load(&e1b, BE("e1", "198.51.100.9"));
	tu_load(&e3, BE("e3", "198.51.100.33"));
	kb_store_init(&st, dir);
	for (size_t i = 0; i < m.nobjects; i++)
		kb_store_put(&st, m.objects[i]);
	assert_int_equal(kb_store_commit(&st), 0);
	ends[1] = st.log_bytes;
	kb_store_put(&st, e1b.objects[0]);
	assert_int_equal(kb_store_commit(&st), 0);
	ends[2] = st.log_bytes;
	kb_store_touch(&st, m.objects[0]);
	assert_int_equal(kb_store_commit(&st), 0);
	ends[3] = st.log_bytes;
	kb_store_delete(&st, m.objects[2]);
	assert_int_equal(kb_store_commit(&st), 0);
	ends[4] = st.log_bytes;
	kb_store_put(&st, e3.objects[0]);
	kb_store_delete(&st, e1b.objects[0]);
	assert_int_equal(kb_store_commit(&st), 0);
	ends[5] = st.log_bytes;
	/* Nothing staged: no request, no bytes. */
	assert_int_equal(kb_store_commit(&st), 0);
	assert_int_equal(st.log_bytes, ends[5]);
	kb_store_close(&st);
	kb_model_free(&m);
	kb_model_free(&e1b);
	kb_model_free(&e3);
}

static void test_log_round_trip_and_order(void **state)
{
	char why[1024], keys[1024], *buf;
	size_t ends[6], len;
	struct stat sb;

	write_requests(ends);
	/* No snapshot yet: the log alone (generation 0) is the state. */
	assert_int_equal(stat(file, &sb), -1);
	buf = slurp(logf, &len);
	assert_int_equal(len, ends[5]);
	assert_true(!strncmp(buf, "kbackend-state-log 1 generation 0\n", 34));
	free(buf);
	assert_int_equal(load(why, sizeof(why), NULL, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, after[5]);
}

/* Cut the log at every byte after its header: never bad, always the state of the last whole commit, with a note. */
static void test_every_log_cut_is_a_torn_tail(void **state)
{
	char why[1024], keys[1024], note[1024];
	size_t ends[6], len, hdr;
	char *buf;

	write_requests(ends);
	buf = slurp(logf, &len);
	hdr = (size_t)(strchr(buf, '\n') + 1 - buf);
	for (size_t cut = hdr; cut <= len; cut++) {
		int k = 0;

		for (int i = 1; i <= 5; i++)
			if (ends[i] <= cut)
				k = i;
		put_file(logf, buf, cut);
		if (load(why, sizeof(why), note, keys, sizeof(keys)) != KB_STORE_OK)
			fail_msg("cut at %zu of %zu: bad (%s)", cut, len, why);
		if (strcmp(keys, after[k]))
			fail_msg("cut at %zu: state \"%s\", expected request %d's \"%s\"", cut, keys, k, after[k]);
		if ((cut == hdr || cut == ends[k]) != !note[0])
			fail_msg("cut at %zu: note \"%s\"", cut, note);
	}
	/* Zeros where the last request's blocks should be (a crash after the size grew): torn too. */
	memset(buf + ends[4], 0, len - ends[4]);
	put_file(logf, buf, len);
	assert_int_equal(load(why, sizeof(why), note, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, after[4]);
	assert_non_null(strstr(note, "dropped"));
	/* Cut inside the header: that is not a crash (the header is written whole and renamed in), it is bad. */
	for (size_t cut = 0; cut < hdr; cut++) {
		put_file(logf, buf, cut);
		assert_bad("truncated");
	}
	free(buf);
}

/* After a torn tail, the next commit goes after the last whole request, and the torn bytes are gone. */
static void test_commit_after_torn_tail(void **state)
{
	char why[1024], keys[1024], note[1024];
	size_t ends[6], len;
	struct kb_store st;
	struct kb_model m, e4;
	char *buf;

	write_requests(ends);
	buf = slurp(logf, &len);
	put_file(logf, buf, ends[4] + 30);
	free(buf);
	kb_model_init(&m);
	kb_store_init(&st, dir);
	assert_int_equal(kb_store_load(&st, &m, why, sizeof(why), note, sizeof(note)), KB_STORE_OK);
	assert_non_null(strstr(note, "dropped the last 30 byte(s)"));
	tu_load(&e4, BE("e4", "198.51.100.44"));
	kb_store_put(&st, e4.objects[0]);
	assert_int_equal(kb_store_commit(&st), 0);
	kb_store_close(&st);
	kb_model_free(&m);
	kb_model_free(&e4);
	assert_int_equal(load(why, sizeof(why), note, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, "Backend/default/e1=156 Gateway/default/eg=229 Backend/default/e4=157");
	assert_string_equal(note, "");
}

/* A damaged byte before later whole requests is corruption, not a torn tail; in the last request it is torn. */
static void test_damaged_log(void **state)
{
	char why[1024], keys[1024], note[1024];
	size_t ends[6], len;
	char *buf;

	write_requests(ends);
	buf = slurp(logf, &len);
	buf[ends[2] + 40] ^= 0x20;
	put_file(logf, buf, len);
	assert_bad("corrupt: a damaged record");
	buf[ends[2] + 40] ^= 0x20;
	buf[ends[4] + 40] ^= 0x20;
	put_file(logf, buf, len);
	assert_int_equal(load(why, sizeof(why), note, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, after[4]);
	assert_non_null(strstr(note, "dropped"));
	free(buf);
}

/* Kinds kbackend does not use are kept in the state as written (snapshot and log), and read back as the same kinds. */
static void test_round_trip_ignored_kinds(void **state)
{
	struct kb_store st;
	struct kb_model m;
	char why[1024], note[1024];

	tu_load(&m, OBJS "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: dg==}\n"
		    "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: HTTPRouteFilter\nmetadata: {name: f}\nspec: {}\n"
		    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\n");
	assert_int_equal(m.nerrors, 0);
	kb_store_init(&st, dir);
	assert_int_equal(kb_store_compact(&st, &m), 0);	/* the snapshot: all five */
	kb_store_put(&st, m.objects[4]);		/* the log: the filter again */
	assert_int_equal(kb_store_commit(&st), 0);
	kb_store_close(&st);
	kb_model_free(&m);
	kb_model_init(&m);
	kb_store_init(&st, dir);
	assert_int_equal(kb_store_load(&st, &m, why, sizeof(why), note, sizeof(note)), KB_STORE_OK);
	kb_store_close(&st);
	assert_int_equal(m.nerrors, 0);
	assert_int_equal(m.nobjects, 6);	/* a Secret and a ConfigMap of one name are two objects */
	assert_int_equal(m.objects[3]->kind, KB_KIND_FOREIGN);
	assert_string_equal(kb_meta_kind(m.objects[3]), "Secret");
	assert_string_equal(m.objects[3]->api_version, "v1");
	assert_string_equal(kb_meta_kind(m.objects[4]), "ConfigMap");
	assert_string_equal(kb_meta_kind(m.objects[5]), "HTTPRouteFilter");
	kb_model_free(&m);
}

/* Cut at any byte, document boundaries included: never read as a (smaller) good state. */
static void test_every_snapshot_cut_is_truncated(void **state)
{
	size_t len;
	char *buf = saved(&len);

	unlink(logf);
	for (size_t cut = 0; cut < len; cut++) {
		put_file(file, buf, cut);
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
	put_file(file, buf, len);
	assert_bad("corrupt");
	free(buf);
}

/* A format-2 file as kbackend wrote it before the log: header, format line, documents, end marker. */
static void put_format2(const char *objs)
{
	char buf[8192];
	int n = snprintf(buf, sizeof(buf), "%s# kbackend-state-format: 2\n---\n# from test.yaml:1\n%s", header, objs);
	uLong crc = crc32(crc32(0, NULL, 0), (const Bytef *)buf, (uInt)n);

	snprintf(buf + n, sizeof(buf) - (size_t)n, "# kbackend-state-end: 3 objects, crc32 %08lx\n", (unsigned long)crc);
	put_file(file, buf, strlen(buf));
}

static void test_future_garbage_legacy(void **state)
{
	char buf[8192], why[1024], keys[1024];
	size_t len;
	char *snap;

	snprintf(buf, sizeof(buf), "%s# kbackend-state-format: 4\n---\n%s", header, OBJS);
	put_file(file, buf, strlen(buf));
	assert_bad("newer");
	put_file(file, "\x7f" "ELF garbage: [\n", 15);
	assert_bad("not a kbackend state file");
	put_file(file, OBJS, strlen(OBJS));
	assert_bad("not a kbackend state file");
	snprintf(buf, sizeof(buf), "%s# something else\n---\n%s", header, OBJS);
	put_file(file, buf, strlen(buf));
	assert_bad("not a kbackend state file");
	/* The header alone: format 1's empty state, or a newer format cut after its first line. Taken as the latter. */
	put_file(file, header, strlen(header));
	assert_bad("truncated");

	/* The log: from a newer kbackend, garbage, or following a snapshot this directory does not hold. */
	unlink(file);
	put_file(logf, "kbackend-state-log 99 generation 0\n", 35);
	assert_bad("newer");
	put_file(logf, "\x7f" "ELF garbage: [\n", 15);
	assert_bad("not a kbackend state log");
	put_file(logf, "kbackend-state-log 1 generation 3\n", 34);
	assert_bad("snapshot is missing");

	/* Formats 1 and 2, as the daemon wrote them before the log: read, and a stale log beside them ignored. */
	snprintf(buf, sizeof(buf), "%s---\n%s", header, OBJS);
	put_file(file, buf, strlen(buf));
	assert_int_equal(load(why, sizeof(why), NULL, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, "Gateway/default/eg=229 Backend/default/e1=156 Backend/default/e2=155");
	put_format2(OBJS);
	assert_int_equal(load(why, sizeof(why), NULL, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, "Gateway/default/eg=229 Backend/default/e1=156 Backend/default/e2=155");
	/* Format 2 cut at a document boundary is still recognised. */
	snap = slurp(file, &len);
	put_file(file, snap, (size_t)(strstr(snap, "---\napiVersion: gateway.envoyproxy.io") - snap));
	assert_bad("truncated");
	free(snap);
}

/* Read once in format 2, rewritten as a format-3 snapshot with a fresh log; the stale log is left behind. */
static void test_migration(void **state)
{
	char why[1024], note[1024], keys[1024];
	struct kb_store st;
	struct kb_model m;
	size_t len;
	char *snap;

	put_format2(OBJS);
	put_file(logf, "kbackend-state-log 1 generation 0\n", 34);
	kb_model_init(&m);
	kb_store_init(&st, dir);
	assert_int_equal(kb_store_load(&st, &m, why, sizeof(why), note, sizeof(note)), KB_STORE_OK);
	assert_int_equal(st.from_format, 2);
	assert_int_equal(kb_store_compact(&st, &m), 0);
	kb_store_close(&st);
	kb_model_free(&m);
	snap = slurp(file, &len);
	assert_non_null(strstr(snap, "# kbackend-state-format: 3\n# kbackend-state-generation: 1\n"));
	free(snap);
	snap = slurp(logf, &len);
	assert_string_equal(snap, "kbackend-state-log 1 generation 1\n");
	free(snap);
	assert_int_equal(load(why, sizeof(why), NULL, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, "Gateway/default/eg=229 Backend/default/e1=156 Backend/default/e2=155");
}

/* A compaction cut short between the snapshot and the new log: the old log is already in the snapshot, ignored. */
static void test_stale_log_after_compaction(void **state)
{
	char why[1024], note[1024], keys[1024], *old;
	size_t ends[6], len;
	struct kb_store st;
	struct kb_model m;

	write_requests(ends);
	old = slurp(logf, &len);
	kb_model_init(&m);
	kb_store_init(&st, dir);
	assert_int_equal(kb_store_load(&st, &m, why, sizeof(why), note, sizeof(note)), KB_STORE_OK);
	assert_int_equal(kb_store_compact(&st, &m), 0);
	assert_false(kb_store_wants_compaction(&st));
	kb_store_close(&st);
	kb_model_free(&m);
	put_file(logf, old, len);
	free(old);
	assert_int_equal(load(why, sizeof(why), note, keys, sizeof(keys)), KB_STORE_OK);
	assert_string_equal(keys, after[5]);
	assert_non_null(strstr(note, "a compaction was cut short"));
}

static void test_unreadable_and_set_aside(void **state)
{
	char aside[256], aside2[256], lside[300];
	struct stat st;

	unlink(file);
	assert_int_equal(mkdir(file, 0700), 0);
	assert_bad("Is a directory");
	put_file(logf, "x", 1);
	assert_int_equal(kb_store_set_aside(dir, aside, sizeof(aside)), 0);
	assert_non_null(strstr(aside, "/applied.yaml.bad-"));
	assert_int_equal(stat(aside, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* The log went with it, under the same time. */
	snprintf(lside, sizeof(lside), "%s/%s.bad-%s", dir, KB_STATE_LOG, strstr(aside, ".bad-") + 5);
	assert_int_equal(stat(lside, &st), 0);
	assert_int_equal(stat(logf, &st), -1);
	/* A second one (in the same second, likely) does not replace the first. */
	put_file(file, "x", 1);
	assert_int_equal(kb_store_set_aside(dir, aside2, sizeof(aside2)), 0);
	assert_string_not_equal(aside, aside2);
	assert_int_equal(stat(aside, &st), 0);
	assert_int_equal(stat(aside2, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(file, &st), -1);
	/* A log alone: its new name is the one reported. */
	put_file(logf, "x", 1);
	assert_int_equal(kb_store_set_aside(dir, aside, sizeof(aside)), 0);
	assert_non_null(strstr(aside, "/applied.log.bad-"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_round_trip_and_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_log_cut_is_a_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_after_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_snapshot_cut_is_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_ignored_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_byte_is_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_garbage_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_log_after_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_and_set_aside, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
