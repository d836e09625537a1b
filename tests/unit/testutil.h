/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka unit tests: build a model from YAML text and inspect it. */
#ifndef KB_TESTUTIL_H
#define KB_TESTUTIL_H

#include <limits.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "manifest/manifest.h"
#include "manifest/model.h"
#include "validate/validate.h"

/* Parse `yaml` as file "test.yaml" into a fresh model. */
static inline void tu_load(struct kb_model *m, const char *yaml)
{
	kb_model_init(m);
	kb_manifest_load_buffer(m, "test.yaml", yaml, strlen(yaml));
}

/* All diagnostics, formatted, one per line, into buf. */
static inline const char *tu_diags(const struct kb_model *m, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < m->ndiags && n < len; i++) {
		kb_diag_format(&m->diags[i], buf + n, len - n);
		n = strlen(buf);
		if (n + 1 < len) {
			buf[n++] = '\n';
			buf[n] = '\0';
		}
	}
	return buf;
}

/* Assert that some diagnostic's formatted text contains `needle`. */
#define tu_assert_diag(m, needle)                                                        \
	do {                                                                             \
		char _b[16384];                                                          \
		tu_diags((m), _b, sizeof(_b));                                           \
		if (!strstr(_b, (needle)))                                               \
			fail_msg("no diagnostic contains \"%s\"; got:\n%s", (needle), _b); \
	} while (0)

/* Diagnostics of one object (errors only, or all), formatted, one per line, for checks and failure messages. */
static inline void tu_object_diags(struct kb_model *m, const struct kb_meta *o, bool errors_only, char *buf, size_t len)
{
	const char *label = kb_meta_label(m, o);
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < m->ndiags && n + 2 < len; i++) {
		if (!m->diags[i].object || strcmp(m->diags[i].object, label) != 0)
			continue;
		if (errors_only && m->diags[i].sev != KB_SEV_ERROR)
			continue;
		kb_diag_format(&m->diags[i], buf + n, len - n - 1);
		n = strlen(buf);
		buf[n++] = '\n';
		buf[n] = '\0';
	}
}

/*
 * A file or directory of the repository (rel), found from the cwd (make,
 * run.sh) or two levels above the test binary (build/tests/..).
 */
static inline bool tu_find_path(const char *rel, bool want_dir, char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n;
	struct stat st;

	if (stat(rel, &st) == 0 && !!S_ISDIR(st.st_mode) == want_dir) {
		snprintf(out, len, "%s", rel);
		return true;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(out, len, "%s/../../%s", exe, rel);
	return stat(out, &st) == 0 && !!S_ISDIR(st.st_mode) == want_dir;
}

#define tu_find_dir(rel, out, len) tu_find_path((rel), true, (out), (len))

#endif /* KB_TESTUTIL_H */
