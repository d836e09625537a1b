// SPDX-License-Identifier: Apache-2.0
/* The man page and the bash completion against the command table: `kbackend help`, and the getopt tables in user/. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "docsutil.h"

struct cmd {
	char *name, *summary, *usage;	/* usage: "kbackend NAME ARGS", as `kbackend help NAME` prints it */
};

static struct cmd cmds[64];
static size_t ncmds;
static struct du_list man_lines;	/* the man page, one unescaped source line each */
static char man_path[512];

static void rtrim(char *s)
{
	size_t n = strlen(s);

	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/* roff source to the text it shows: font changes and zero-width escapes dropped, \- and \e undone. */
static char *unroff(const char *s, size_t len)
{
	char *o = malloc(len + 1), *w = o;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len) {
			char c = s[i + 1];

			if (c == 'f' && i + 2 < len) {
				i += 2;
			} else if (c == '&') {
				i += 1;
			} else if (c == '-') {
				*w++ = '-';
				i += 1;
			} else if (c == 'e') {
				*w++ = '\\';
				i += 1;
			} else {
				*w++ = s[i];
			}
			continue;
		}
		*w++ = s[i];
	}
	*w = '\0';
	rtrim(o);
	return o;
}

static int setup(void **state)
{
	char cmd[1024], *help, *line, *save = NULL, *man;
	bool in_cmds = false;
	int rc;

	snprintf(cmd, sizeof(cmd), "%s/kbackend help", du_out());
	help = du_run(cmd, &rc);
	if (!help || rc != 0) {
		fprintf(stderr, "# cannot run %s (build it with make)\n", cmd);
		return -1;
	}
	for (line = strtok_r(help, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, "Commands:") == 0) {
			in_cmds = true;
			continue;
		}
		if (!in_cmds)
			continue;
		if (strncmp(line, "  ", 2) != 0 || line[2] == ' ')
			break;
		char *p = line + 2, *e = p;

		while (*e && *e != ' ')
			e++;
		cmds[ncmds].name = strndup(p, (size_t)(e - p));
		while (*e == ' ')
			e++;
		cmds[ncmds].summary = strdup(e);
		rtrim(cmds[ncmds].summary);
		ncmds++;
	}
	free(help);
	for (size_t i = 0; i < ncmds; i++) {
		char *out;

		snprintf(cmd, sizeof(cmd), "%s/kbackend help %s", du_out(), cmds[i].name);
		out = du_run(cmd, &rc);
		if (!out || rc != 0 || strncmp(out, "Usage: ", 7) != 0) {
			fprintf(stderr, "# `%s` failed\n", cmd);
			free(out);
			return -1;
		}
		*strchrnul(out, '\n') = '\0';
		rtrim(out);
		cmds[i].usage = strdup(out + 7);
		free(out);
	}
	snprintf(man_path, sizeof(man_path), "%s/kbackend.1", du_out());
	man = du_read_file(man_path);
	if (!man) {
		fprintf(stderr, "# cannot read %s (make generates it)\n", man_path);
		return -1;
	}
	for (char *p = man; *p;) {
		char *e = strchrnul(p, '\n');
		char *u = unroff(p, (size_t)(e - p));

		/* Kept in order, duplicates included: sections are found by position. */
		man_lines.v = realloc(man_lines.v, (man_lines.n + 1) * sizeof(char *));
		man_lines.v[man_lines.n++] = u;
		p = *e ? e + 1 : e;
	}
	free(man);
	return ncmds ? 0 : -1;
}

static int teardown(void **state)
{
	for (size_t i = 0; i < ncmds; i++) {
		free(cmds[i].name);
		free(cmds[i].summary);
		free(cmds[i].usage);
	}
	du_free(&man_lines);
	return 0;
}

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < ncmds; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

/* Every command of `kbackend help` is in the man page's SYNOPSIS with its exact usage line, and in COMMANDS with its summary. */
static void test_man_has_every_command(void **state)
{
	for (size_t i = 0; i < ncmds; i++) {
		if (!du_has(&man_lines, cmds[i].usage))
			fail_msg("%s: the usage line of `kbackend help %s` is not in the man page:\n  %s", man_path,
				 cmds[i].name, cmds[i].usage);
		if (!du_has(&man_lines, cmds[i].summary))
			fail_msg("%s: the summary of `%s` is not in the man page: %s", man_path, cmds[i].name,
				 cmds[i].summary);
	}
	/* And the man page names no command that help does not. */
	for (size_t i = 0; i < man_lines.n; i++) {
		char name[64];

		if (sscanf(man_lines.v[i], "kbackend %63[a-z-]", name) == 1 && i > 0 &&
		    strcmp(man_lines.v[i - 1], ".ti -4n") == 0 && !find_cmd(name))
			fail_msg("%s: the man page's SYNOPSIS has `%s`, which `kbackend help` does not list", man_path, name);
	}
}

/* The --flags in option headings (the line after each .TP). */
static void man_flags(struct du_list *out, const char *section_only)
{
	const char *section = "";

	for (size_t i = 0; i + 1 < man_lines.n; i++) {
		const char *l = man_lines.v[i];

		if (strncmp(l, ".SH ", 4) == 0)
			section = l + 4;
		if (strcmp(l, ".TP") != 0 || (section_only && !strstr(section, section_only)))
			continue;
		for (const char *p = man_lines.v[i + 1]; (p = strstr(p, "--"));) {
			size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");

			if (n)
				du_add(out, p + 2, n);
			p += 2 + n;
		}
	}
}

/* Every long option of every getopt table in user/ is described, and every described option exists. */
static void test_man_documents_every_option(void **state)
{
	struct du_list all = { 0 }, daemon = { 0 }, documented = { 0 }, daemon_doc = { 0 };
	char why[256];

	du_all_options(&all);
	assert_true(all.n > 10);
	if (!du_daemon_options(&daemon, why, sizeof(why)))
		fail_msg("%s", why);
	man_flags(&documented, NULL);
	/* A daemon flag must be under DAEMON, POLICY or COMMON OPTIONS. */
	man_flags(&daemon_doc, "DAEMON OPTIONS");
	man_flags(&daemon_doc, "POLICY OPTIONS");
	man_flags(&daemon_doc, "COMMON OPTIONS");
	for (size_t i = 0; i < daemon.n; i++)
		if (!du_has(&daemon_doc, daemon.v[i]))
			fail_msg("daemon flag --%s is undocumented: add a row to opts[] in user/cli/manpage.c", daemon.v[i]);
	for (size_t i = 0; i < all.n; i++)
		if (!du_has(&documented, all.v[i]))
			fail_msg("option --%s (defined in user/) is undocumented: add a row to opts[] in user/cli/manpage.c",
				 all.v[i]);
	for (size_t i = 0; i < documented.n; i++)
		if (!du_has(&all, documented.v[i]))
			fail_msg("the man page documents --%s, which no getopt table in user/ defines", documented.v[i]);
	print_message("# %zu options (%zu of the daemon) documented\n", all.n, daemon.n);
	du_free(&all);
	du_free(&daemon);
	du_free(&documented);
	du_free(&daemon_doc);
}

/* groff renders it without a warning. `make deps` installs groff, so a missing one is a failure, not a skip. */
static void test_man_renders_cleanly(void **state)
{
	char cmd[1024], *out;
	int rc;

	out = du_run("command -v groff", &rc);
	free(out);
	if (rc != 0)
		fail_msg("groff is not installed (package groff-base; run `make deps`)");
	snprintf(cmd, sizeof(cmd), "groff -man -ww -z %s 2>&1", man_path);
	out = du_run(cmd, &rc);
	if (rc != 0 || (out && *out))
		fail_msg("groff warns about %s:\n%s", man_path, out ? out : "");
	free(out);
}

/* COMPREPLY of the bash completion for `kbackend WORDS...` (NULL-terminated; the last word is being completed). */
static void complete(struct du_list *out, ...)
{
	char cmd[2048], words[512] = "", *res, *save = NULL;
	const char *w;
	int rc, nwords = 0;
	va_list ap;

	va_start(ap, out);
	while ((w = va_arg(ap, const char *))) {
		size_t n = strlen(words);

		snprintf(words + n, sizeof(words) - n, " \"%s\"", w);
		nwords++;
	}
	va_end(ap);
	snprintf(cmd, sizeof(cmd),
		 "bash -c 'source scripts/completion/kbackend.bash && COMP_WORDS=(kbackend%s) && COMP_CWORD=%d && "
		 "_kbackend && printf \"%%s\\n\" \"${COMPREPLY[@]}\"' 2>&1",
		 words, nwords);
	res = du_run(cmd, &rc);
	assert_non_null(res);
	if (rc != 0)
		fail_msg("completion failed for `kbackend%s`:\n%s", words, res);
	for (char *l = strtok_r(res, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		du_add(out, l, strlen(l));
	free(res);
}

static void test_completion_lists_every_command(void **state)
{
	struct du_list got = { 0 };

	complete(&got, "", NULL);
	for (size_t i = 0; i < ncmds; i++)
		if (!du_has(&got, cmds[i].name))
			fail_msg("scripts/completion/kbackend.bash does not complete the command `%s`", cmds[i].name);
	for (size_t i = 0; i < got.n; i++)
		if (got.v[i][0] != '-' && !find_cmd(got.v[i]))
			fail_msg("scripts/completion/kbackend.bash completes `%s`, which is no command", got.v[i]);
	du_free(&got);
	/* help completes command names too. */
	complete(&got, "help", "", NULL);
	for (size_t i = 0; i < ncmds; i++)
		assert_true(du_has(&got, cmds[i].name));
	du_free(&got);
}

/* Every flag of every usage line completes after `kbackend CMD -`. */
static void test_completion_has_every_flag(void **state)
{
	regex_t re;

	assert_int_equal(regcomp(&re, "(^|[ [|])(--?[A-Za-z][A-Za-z0-9-]*)", REG_EXTENDED), 0);
	for (size_t i = 0; i < ncmds; i++) {
		struct du_list got = { 0 };
		regmatch_t m[3];
		/* Only the arguments, after "kbackend NAME". */
		const char *p = cmds[i].usage + strlen("kbackend ") + strlen(cmds[i].name);

		complete(&got, cmds[i].name, "-", NULL);
		while (!regexec(&re, p, 3, m, 0)) {
			char flag[64];

			snprintf(flag, sizeof(flag), "%.*s", (int)(m[2].rm_eo - m[2].rm_so), p + m[2].rm_so);
			if (!du_has(&got, flag))
				fail_msg("scripts/completion/kbackend.bash: `kbackend %s -<TAB>` does not offer %s (from `%s`)",
					 cmds[i].name, flag, cmds[i].usage);
			p += m[0].rm_eo;
		}
		du_free(&got);
	}
	regfree(&re);
}

/* Split "a|b|c" (up to a space or ']') into l. */
static void split_alts(struct du_list *l, const char *s)
{
	while (*s && *s != ' ' && *s != ']') {
		size_t n = strcspn(s, "| ]");

		du_add(l, s, n);
		s += n;
		if (*s == '|')
			s++;
	}
}

static void assert_same(const struct du_list *want, const struct du_list *got, const char *what)
{
	for (size_t i = 0; i < want->n; i++)
		if (!du_has(got, want->v[i]))
			fail_msg("%s: the completion lacks `%s`", what, want->v[i]);
	for (size_t i = 0; i < got->n; i++)
		if (!du_has(want, got->v[i]))
			fail_msg("%s: the completion offers `%s`, which the usage line does not have", what, got->v[i]);
}

/* get's resources, describe's kind and every command's -o values are the usage line's. */
static void test_completion_values(void **state)
{
	const struct cmd *get = find_cmd("get"), *describe = find_cmd("describe");
	struct du_list want = { 0 }, got = { 0 };

	assert_non_null(get);
	split_alts(&want, get->usage + strlen("kbackend get "));
	assert_true(du_has(&want, "backends") && du_has(&want, "endpoints"));
	complete(&got, "get", "", NULL);
	assert_same(&want, &got, "kbackend get <TAB>");
	du_free(&want);
	du_free(&got);
	if (describe) {
		split_alts(&want, describe->usage + strlen("kbackend describe "));
		complete(&got, "describe", "", NULL);
		assert_same(&want, &got, "kbackend describe <TAB>");
		du_free(&want);
		du_free(&got);
	}
	for (size_t i = 0; i < ncmds; i++) {
		const char *o = strstr(cmds[i].usage, "[-o ");
		char what[128];

		if (!o)
			continue;
		split_alts(&want, o + 4);
		snprintf(what, sizeof(what), "kbackend %s -o <TAB>", cmds[i].name);
		complete(&got, cmds[i].name, "-o", "", NULL);
		assert_same(&want, &got, what);
		du_free(&want);
		du_free(&got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_man_has_every_command),
		cmocka_unit_test(test_man_documents_every_option),
		cmocka_unit_test(test_man_renders_cleanly),
		cmocka_unit_test(test_completion_lists_every_command),
		cmocka_unit_test(test_completion_has_every_flag),
		cmocka_unit_test(test_completion_values),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
