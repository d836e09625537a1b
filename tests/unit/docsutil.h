/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the tests that hold docs and deploy files to the code: run the binary, read files, list options. */
#ifndef KB_DOCSUTIL_H
#define KB_DOCSUTIL_H

#include <glob.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Tests run from the repository root (tests/run.sh); the build directory is $OUT, as in run.sh. */
static inline const char *du_out(void)
{
	const char *o = getenv("OUT");

	return o && *o ? o : "build";
}

struct du_list {
	char **v;
	size_t n;
};

static inline bool du_has(const struct du_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

static inline void du_add(struct du_list *l, const char *s, size_t len)
{
	char *c = strndup(s, len);

	if (du_has(l, c)) {
		free(c);
		return;
	}
	l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = c;
}

static inline void du_free(struct du_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static inline char *du_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t r;

	while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, r, m);
	fclose(m);
	fclose(f);
	return buf;
}

/* Run a shell command; its stdout (and stderr with 2>&1 in cmd), and the exit status in *rc. */
static inline char *du_run(const char *cmd, int *rc)
{
	FILE *p = popen(cmd, "r");
	char *buf = NULL;
	size_t len = 0;
	char chunk[4096];
	size_t r;
	int st;

	if (!p)
		return NULL;
	FILE *m = open_memstream(&buf, &len);

	while ((r = fread(chunk, 1, sizeof(chunk), p)) > 0)
		fwrite(chunk, 1, r, m);
	fclose(m);
	st = pclose(p);
	if (rc)
		*rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return buf;
}

/* Add every `{ "name", x_argument` row found in text: the long options of a getopt table. */
static inline void du_scan_options(const char *text, struct du_list *out)
{
	regex_t re;
	regmatch_t mt[2];
	const char *p = text;

	if (regcomp(&re, "\\{[ \t]*\"([a-z0-9][a-z0-9-]*)\",[ \t]*(no|required|optional)_argument", REG_EXTENDED))
		return;
	while (!regexec(&re, p, 2, mt, 0)) {
		du_add(out, p + mt[1].rm_so, (size_t)(mt[1].rm_eo - mt[1].rm_so));
		p += mt[0].rm_eo;
	}
	regfree(&re);
}

/* Every long option defined anywhere in user/ (the daemon's, the CLI's, each command's own table). */
static inline void du_all_options(struct du_list *out)
{
	glob_t g;

	if (glob("user/{,*/}*.[ch]", GLOB_BRACE, NULL, &g))
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char *t = du_read_file(g.gl_pathv[i]);

		if (t)
			du_scan_options(t, out);
		free(t);
	}
	globfree(&g);
}

/*
 * The daemon's own flags: the rows of `longopts[]` in user/daemon/daemon.c, with any
 * KB_..._LONGOPTS macro in it expanded from its #define in a header of user/.
 * Returns false (with why) when the table cannot be found.
 */
static inline bool du_daemon_options(struct du_list *out, char *why, size_t whylen)
{
	char *src = du_read_file("user/daemon/daemon.c"), *start, *end;
	regex_t re;
	regmatch_t mt[1];

	if (!src) {
		snprintf(why, whylen, "cannot read user/daemon/daemon.c");
		return false;
	}
	start = strstr(src, "longopts[] = {");
	end = start ? strstr(start, "{ 0 }") : NULL;
	if (!start || !end) {
		snprintf(why, whylen, "no `longopts[] = { ... { 0 } }` table in user/daemon/daemon.c: update tests/unit/docsutil.h");
		free(src);
		return false;
	}
	*end = '\0';
	du_scan_options(start, out);
	regcomp(&re, "KB_[A-Z0-9_]*LONGOPTS", REG_EXTENDED);
	for (const char *p = start; !regexec(&re, p, 1, mt, 0); p += mt[0].rm_eo) {
		char name[128], def[160];
		glob_t g;

		snprintf(name, sizeof(name), "%.*s", (int)(mt[0].rm_eo - mt[0].rm_so), p + mt[0].rm_so);
		snprintf(def, sizeof(def), "#define %s", name);
		if (glob("user/{,*/}*.h", GLOB_BRACE, NULL, &g))
			continue;
		for (size_t i = 0; i < g.gl_pathc; i++) {
			char *h = du_read_file(g.gl_pathv[i]), *d = h ? strstr(h, def) : NULL;

			if (d) {
				/* The macro's body: up to the first line that does not end in a backslash. */
				char *e = d;

				while ((e = strchr(e, '\n')) && e > d && e[-1] == '\\')
					e++;
				if (e)
					*e = '\0';
				du_scan_options(d, out);
			}
			free(h);
		}
		globfree(&g);
	}
	regfree(&re);
	free(src);
	return true;
}

#endif /* KB_DOCSUTIL_H */
