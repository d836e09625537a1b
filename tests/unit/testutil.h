/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka unit tests: build a model from YAML text and inspect it. */
#ifndef KB_TESTUTIL_H
#define KB_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "manifest.h"
#include "model.h"
#include "validate.h"

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

#endif /* KB_TESTUTIL_H */
