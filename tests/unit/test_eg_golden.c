// SPDX-License-Identifier: Apache-2.0
/*
 * Runs the fixtures derived from Envoy Gateway's golden files and CRD tests
 * (tests/fixtures/eg) through manifest + validate, and compares every
 * condition they expect with kbackend's. Prints matched / deliberate /
 * mismatched; any mismatch fails. The fixture format is in
 * tests/fixtures/eg/README.md.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>

#include "docsutil.h"
#include "testutil.h"

enum line_kind { L_EXPECT, L_DIFFER };

/* One `# expect:` or `# differ NAME:` line of a fixture. */
struct want {
	enum line_kind lk;
	char difference[64];	/* differ: the README tag */
	int lineno;
	char kind[64], ns[128], name[256];
	char parent[320];	/* "ns/gw[/section]" or "" for any parent */
	bool invalid;		/* CRD-level refusal: the object is refused and a diagnostic holds text */
	char type[64], status[16], reason[128];
	char text[4096];	/* message (exact, or prefix when prefix) or diagnostic text */
	bool prefix;
};

struct fixture {
	char path[PATH_MAX];
	struct du_list sources;
	struct kb_policy pol;
	char *unix_dirs[8], *allow[8];
	char cluster_domain[128];
	struct want *wants;
	size_t nwants;
};

struct tally {
	size_t matched, deliberate, mismatched, fixtures;
	struct du_list names;	/* difference tags seen */
	size_t *name_counts;
	struct du_list sources;	/* every source line of every fixture */
};

static struct kb_model cur;
static bool cur_live;
static struct tally *cur_tally;	/* freed by the teardown when an assertion jumps out */

static void free_tally(struct tally *t)
{
	du_free(&t->names);
	du_free(&t->sources);
	free(t->name_counts);
	memset(t, 0, sizeof(*t));
}

/* The quoted part of a line: from the first '"' to the last, with \n and \\ decoded. */
static bool quoted(const char *s, char *out, size_t len)
{
	const char *a = strchr(s, '"'), *b = strrchr(s, '"');
	size_t n = 0;

	if (!a || b == a)
		return false;
	for (const char *p = a + 1; p < b && n + 1 < len; p++) {
		if (*p == '\\' && p + 1 < b && (p[1] == 'n' || p[1] == '\\')) {
			out[n++] = p[1] == 'n' ? '\n' : '\\';
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	return true;
}

/* "KIND NS/NAME [parent=P] TYPE=STATUS REASON "MSG"" or "KIND NS/NAME invalid "TEXT"". */
static bool parse_want(const char *s, struct want *w, char *err, size_t errlen)
{
	char ref[400], tok[400], *slash, *eq;
	int off = 0, k;

	if (sscanf(s, "%63s %399s %n", w->kind, ref, &off) != 2 || !(slash = strchr(ref, '/'))) {
		snprintf(err, errlen, "want KIND NS/NAME first");
		return false;
	}
	*slash = '\0';
	snprintf(w->ns, sizeof(w->ns), "%s", ref);
	snprintf(w->name, sizeof(w->name), "%s", slash + 1);
	s += off;
	if (sscanf(s, "%399s %n", tok, &k) == 1 && strncmp(tok, "parent=", 7) == 0) {
		snprintf(w->parent, sizeof(w->parent), "%s", tok + 7);
		s += k;
	}
	if (sscanf(s, "%399s %n", tok, &k) != 1) {
		snprintf(err, errlen, "nothing after the object");
		return false;
	}
	if (!quoted(s, w->text, sizeof(w->text))) {
		snprintf(err, errlen, "no quoted message");
		return false;
	}
	if (strcmp(tok, "invalid") == 0) {
		w->invalid = true;
		return true;
	}
	eq = strchr(tok, '=');
	if (!eq || sscanf(s + k, "%127s", w->reason) != 1 || w->reason[0] == '"') {
		snprintf(err, errlen, "want TYPE=STATUS REASON \"MESSAGE\"");
		return false;
	}
	*eq = '\0';
	snprintf(w->type, sizeof(w->type), "%s", tok);
	snprintf(w->status, sizeof(w->status), "%s", eq + 1);
	if (strcmp(w->status, "True") && strcmp(w->status, "False") && strcmp(w->status, "Unknown")) {
		snprintf(err, errlen, "status %s is not True, False or Unknown", w->status);
		return false;
	}
	{
		size_t n = strlen(w->text);

		w->prefix = n >= 3 && strcmp(w->text + n - 3, "...") == 0;
		if (w->prefix)
			w->text[n - 3] = '\0';
	}
	return true;
}

static void add_policy(struct fixture *fx, const char *word, int lineno)
{
	struct kb_policy *p = &fx->pol;

	if (strcmp(word, "backend-disabled") == 0)
		p->enable_backend = 0;
	else if (strncmp(word, "unix-dir=", 9) == 0 && p->nunix_dirs < 8)
		p->unix_dirs[p->nunix_dirs++] = strdup(word + 9);
	else if (strncmp(word, "allow-endpoint=", 15) == 0 && p->nallow_cidrs < 8)
		p->allow_cidrs[p->nallow_cidrs++] = strdup(word + 15);
	else if (strncmp(word, "service-endpoints=", 18) == 0 && kb_svc_mode_parse(word + 18, &p->service_endpoints))
		;
	else if (strncmp(word, "cluster-domain=", 15) == 0) {
		snprintf(fx->cluster_domain, sizeof(fx->cluster_domain), "%s", word + 15);
		p->cluster_domain = fx->cluster_domain;
	} else
		fail_msg("%s:%d: unknown policy \"%s\"", fx->path, lineno, word);
}

/* Read the comment lines that drive the check; fails on a malformed one. */
static void read_fixture(struct fixture *fx)
{
	FILE *f = fopen(fx->path, "r");
	char line[8192], err[128];
	int lineno = 0;

	assert_non_null(f);
	kb_policy_init(&fx->pol);
	fx->pol.enable_backend = 1;
	fx->pol.unix_dirs = fx->unix_dirs;
	fx->pol.allow_cidrs = fx->allow;
	while (fgets(line, sizeof(line), f)) {
		char *s = line, *nl = strchr(line, '\n');
		struct want w = { 0 };

		lineno++;
		if (nl)
			*nl = '\0';
		if (strncmp(s, "# ", 2) != 0)
			continue;
		s += 2;
		if (strncmp(s, "source:", 7) == 0) {
			s += 7;
			while (isspace((unsigned char)*s))
				s++;
			du_add(&fx->sources, s, strlen(s));
		} else if (strncmp(s, "policy:", 7) == 0) {
			char word[256];
			int k;

			s += 7;
			while (sscanf(s, "%255s%n", word, &k) == 1) {
				add_policy(fx, word, lineno);
				s += k;
			}
		} else if (strncmp(s, "expect:", 7) == 0 || strncmp(s, "differ ", 7) == 0) {
			if (s[0] == 'd') {
				char *colon = strchr(s, ':');

				if (!colon || colon - (s + 7) >= (long)sizeof(w.difference) || colon == s + 7)
					fail_msg("%s:%d: want \"# differ NAME: ...\"", fx->path, lineno);
				w.lk = L_DIFFER;
				snprintf(w.difference, sizeof(w.difference), "%.*s", (int)(colon - (s + 7)), s + 7);
				s = colon + 1;
			} else {
				s += 7;
			}
			w.lineno = lineno;
			if (!parse_want(s, &w, err, sizeof(err)))
				fail_msg("%s:%d: %s", fx->path, lineno, err);
			fx->wants = realloc(fx->wants, (fx->nwants + 1) * sizeof(*fx->wants));
			fx->wants[fx->nwants++] = w;
		}
	}
	fclose(f);
	if (!fx->sources.n)
		fail_msg("%s: no \"# source:\" line", fx->path);
	if (!fx->nwants)
		fail_msg("%s: no \"# expect:\" or \"# differ\" line", fx->path);
}

static void free_fixture(struct fixture *fx)
{
	for (size_t i = 0; i < fx->pol.nunix_dirs; i++)
		free(fx->unix_dirs[i]);
	for (size_t i = 0; i < fx->pol.nallow_cidrs; i++)
		free(fx->allow[i]);
	du_free(&fx->sources);
	free(fx->wants);
}

static const struct kb_meta *find_object(const struct kb_model *m, const char *kind, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->nobjects; i++) {
		const struct kb_meta *o = m->objects[i];

		if (strcmp(kb_meta_kind(o), kind) == 0 && o->name && strcmp(o->name, name) == 0 &&
		    strcmp(o->namespace ? o->namespace : "default", ns) == 0)
			return o;
	}
	return NULL;
}

static bool cond_matches(const struct kb_condition *c, const struct want *w)
{
	if (strcmp(c->type, w->type) || strcmp(kb_cond_status_name(c->status), w->status) ||
	    strcmp(c->reason ? c->reason : "", w->reason))
		return false;
	if (!c->message)
		return !w->text[0];
	return w->prefix ? strncmp(c->message, w->text, strlen(w->text)) == 0 : strcmp(c->message, w->text) == 0;
}

/* Append what kbackend said about an object, for a mismatch report. */
static void said(struct kb_model *m, const struct kb_meta *o, char *buf, size_t len)
{
	size_t n;

	buf[0] = '\0';
	for (size_t i = 0; i < o->nconds; i++) {
		n = strlen(buf);
		snprintf(buf + n, len - n, "    %s=%s %s \"%s\"\n", o->conds[i].type,
			 kb_cond_status_name(o->conds[i].status), o->conds[i].reason,
			 o->conds[i].message ? o->conds[i].message : "");
	}
	for (size_t p = 0; p < o->nparents; p++)
		for (size_t i = 0; i < o->parents[p].nconds; i++) {
			const struct kb_condition *c = &o->parents[p].conds[i];

			n = strlen(buf);
			snprintf(buf + n, len - n, "    parent=%s %s=%s %s \"%s\"\n", o->parents[p].parent, c->type,
				 kb_cond_status_name(c->status), c->reason, c->message ? c->message : "");
		}
	n = strlen(buf);
	tu_object_diags(m, o, false, buf + n, len - n);
}

/* Does kbackend's verdict on the model hold what w wants? why gets the reason when not. */
static bool holds(struct kb_model *m, const struct want *w, char *why, size_t len)
{
	const struct kb_meta *o = find_object(m, w->kind, w->ns, w->name);
	char errs[16384];

	if (!o) {
		snprintf(why, len, "no %s %s/%s in the fixture as kbackend read it", w->kind, w->ns, w->name);
		return false;
	}
	if (w->invalid) {
		tu_object_diags(m, o, true, errs, sizeof(errs));
		if (kb_object_refused(o) && strstr(errs, w->text))
			return true;
	} else {
		for (size_t i = 0; i < o->nconds && !w->parent[0]; i++)
			if (cond_matches(&o->conds[i], w))
				return true;
		for (size_t p = 0; p < o->nparents; p++) {
			if (w->parent[0] && strcmp(o->parents[p].parent, w->parent) != 0)
				continue;
			for (size_t i = 0; i < o->parents[p].nconds; i++)
				if (cond_matches(&o->parents[p].conds[i], w))
					return true;
		}
	}
	said(m, o, errs, sizeof(errs));
	snprintf(why, len, "%s\n  kbackend says (%s):\n%s", w->invalid ? "not refused with that text" : "no such condition",
		 kb_object_refused(o) ? "refused" : "accepted", errs);
	return false;
}

static void count_difference(struct tally *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->names.n; i++)
		if (strcmp(t->names.v[i], name) == 0)
			break;
	if (i == t->names.n) {
		du_add(&t->names, name, strlen(name));
		t->name_counts = realloc(t->name_counts, t->names.n * sizeof(*t->name_counts));
		t->name_counts[i] = 0;
	}
	t->name_counts[i]++;
}

/* Mismatch details go to the TAP log, except for the runner's self-check, whose mismatches are planted. */
#define report(quiet, ...)                    \
	do {                                  \
		if (!(quiet))                 \
			print_message(__VA_ARGS__); \
	} while (0)

static void run_fixture(const char *path, bool quiet, struct tally *t)
{
	struct fixture fx = { 0 };
	struct kb_model *m = &cur;
	char why[32768];

	snprintf(fx.path, sizeof(fx.path), "%s", path);
	read_fixture(&fx);
	for (size_t i = 0; i < fx.sources.n; i++)
		du_add(&t->sources, fx.sources.v[i], strlen(fx.sources.v[i]));
	kb_model_init(m);
	cur_live = true;
	if (kb_manifest_load_path(m, path) != 0 && !m->nobjects) {
		tu_diags(m, why, sizeof(why));
		report(quiet, "# MISMATCH %s does not load:\n%s", path, why);
		t->mismatched += fx.nwants;
	} else {
		kb_validate(m, &fx.pol);
		for (size_t i = 0; i < fx.nwants; i++) {
			const struct want *w = &fx.wants[i];

			if (!holds(m, w, why, sizeof(why))) {
				report(quiet, "# MISMATCH %s:%d: %s %s/%s: %s\n", path, w->lineno, w->kind, w->ns, w->name,
					      why);
				t->mismatched++;
			} else if (w->lk == L_DIFFER) {
				t->deliberate++;
				count_difference(t, w->difference);
			} else {
				t->matched++;
			}
		}
		/* Every object is judged by some line, so a new document cannot slip through. */
		for (size_t i = 0; i < m->nobjects; i++) {
			const struct kb_meta *o = m->objects[i];
			bool judged = false;

			for (size_t k = 0; k < fx.nwants && !judged; k++)
				judged = strcmp(fx.wants[k].kind, kb_meta_kind(o)) == 0 && o->name &&
					 strcmp(fx.wants[k].name, o->name) == 0;
			if (!judged) {
				report(quiet, "# MISMATCH %s: %s %s is unjudged (no expect or differ line)\n", path,
					      kb_meta_kind(o), o->name ? o->name : "(unnamed)");
				t->mismatched++;
			}
		}
	}
	kb_model_free(m);
	cur_live = false;
	free_fixture(&fx);
	t->fixtures++;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sources that must be covered: tests/fixtures/eg/coverage.txt, one per line, '#' comments. */
static void check_coverage(const char *dir, const struct tally *t)
{
	char path[PATH_MAX], *text, *save = NULL;
	size_t missing = 0, listed = 0;

	snprintf(path, sizeof(path), "%s/coverage.txt", dir);
	text = du_read_file(path);
	if (!text)
		fail_msg("%s cannot be read", path);
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (l[0] == '#' || !l[0])
			continue;
		listed++;
		if (!du_has(&t->sources, l)) {
			print_message("# UNCOVERED %s (no fixture names it in \"# source:\")\n", l);
			missing++;
		}
	}
	free(text);
	print_message("# eg coverage: %zu of %zu sources have a fixture\n", listed - missing, listed);
	assert_true(listed > 0);
	assert_int_equal(missing, 0);
}

/* Every deliberate difference a fixture names is a tagged bullet of README's differences section. */
static void check_readme(const struct tally *t)
{
	char path[PATH_MAX], tag[96], *readme, *sec, *end;
	size_t missing = 0;

	if (!tu_find_path("README.md", false, path, sizeof(path)))
		fail_msg("README.md not found (run from the repository)");
	readme = du_read_file(path);
	assert_non_null(readme);
	sec = strstr(readme, "## What kbackend does differently from Envoy Gateway");
	if (!sec)
		fail_msg("README.md has no section \"What kbackend does differently from Envoy Gateway\"");
	end = strstr(sec + 3, "\n## ");
	if (end)
		*end = '\0';
	for (size_t i = 0; i < t->names.n; i++) {
		snprintf(tag, sizeof(tag), "`%s`", t->names.v[i]);
		if (!strstr(sec, tag)) {
			print_message("# README.md's differences section does not name %s\n", tag);
			missing++;
		}
	}
	free(readme);
	assert_int_equal(missing, 0);
}

static void test_eg_fixtures(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX + 256], line[4096];
	static struct tally t;
	struct du_list files = { 0 };
	struct dirent *de;
	DIR *d;
	size_t n;

	cur_tally = &t;
	if (!tu_find_dir("tests/fixtures/eg", dir, sizeof(dir)))
		fail_msg("tests/fixtures/eg not found (run from the repository)");
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n > 5 && strcmp(de->d_name + n - 5, ".yaml") == 0)
			du_add(&files, de->d_name, n);
	}
	closedir(d);
	if (files.n)
		qsort(files.v, files.n, sizeof(*files.v), cmp_str);
	for (size_t i = 0; i < files.n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files.v[i]);
		run_fixture(path, false, &t);
	}
	du_free(&files);

	n = (size_t)snprintf(line, sizeof(line), "eg fixtures: %zu files, %zu matched, %zu deliberate", t.fixtures,
			     t.matched, t.deliberate);
	for (size_t i = 0; i < t.names.n && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s x%zu", i ? ", " : " (", t.names.v[i],
				      t.name_counts[i]);
	if (t.names.n && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, ")");
	if (n < sizeof(line))
		snprintf(line + n, sizeof(line) - n, ", %zu mismatched", t.mismatched);
	print_message("# %s\n", line);

	check_coverage(dir, &t);
	check_readme(&t);
	assert_true(t.matched > 0);
	assert_int_equal(t.mismatched, 0);
	free_tally(&t);
	cur_tally = NULL;
}

/* The runner itself can fail: a wrong expectation, a wrong prefix and an unjudged object each count. */
static void test_runner_catches_mismatch(void **state)
{
	static const char fixture[] =
		"# source: runner self-check\n"
		"# expect: Backend default/lo Accepted=False Invalid \"The Backend was not accepted: IP address "
		"127.0.0.1 in the loopback range is only supported when using the Host infrastructure\"\n"
		"# expect: Backend default/lo Accepted=False Invalid \"The Backend was not accepted: IP...\"\n"
		"# expect: Backend default/lo Accepted=True Accepted \"The Backend was accepted\"\n"
		"# expect: Backend default/lo Accepted=False Invalid \"The Backend was accepted...\"\n"
		"# expect: Backend default/lo invalid \"in the loopback range\"\n"
		"# expect: Backend default/lo invalid \"no such text\"\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: lo}\n"
		"spec: {endpoints: [{ip: {address: 127.0.0.1, port: 80}}]}\n---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: unjudged}\n"
		"spec: {endpoints: [{ip: {address: 198.51.100.7, port: 80}}]}\n";
	char path[] = "/tmp/kbackend-eg-selfcheck-XXXXXX.yaml";
	struct tally t = { 0 };
	size_t matched, mismatched;
	int fd = mkstemps(path, 5);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, fixture, sizeof(fixture) - 1), (ssize_t)(sizeof(fixture) - 1));
	close(fd);
	run_fixture(path, true, &t);
	unlink(path);
	matched = t.matched;
	mismatched = t.mismatched;
	/* free_tally clears the counts: read them first. */
	free_tally(&t);
	assert_int_equal(matched, 3);
	assert_int_equal(mismatched, 4);
}

static int teardown(void **state)
{
	if (cur_live)
		kb_model_free(&cur);
	cur_live = false;
	if (cur_tally)
		free_tally(cur_tally);
	cur_tally = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_runner_catches_mismatch, teardown),
		cmocka_unit_test_teardown(test_eg_fixtures, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
