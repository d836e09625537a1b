// SPDX-License-Identifier: Apache-2.0
/* Text tables for people: every column as wide as its widest cell, so rows stay aligned whatever they hold. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

void kb_table_init(struct kb_table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
}

void kb_table_add(struct kb_table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	for (size_t c = 0; c < t->ncols; c++) {
		const char *s = va_arg(ap, const char *);

		*KB_PUSH(&t->arena, t->cells, t->ncells) = kb_strdup(&t->arena, s ? s : "");
	}
	va_end(ap);
}

void kb_table_print(FILE *f, const struct kb_table *t)
{
	size_t nrows = t->ncols ? t->ncells / t->ncols : 0, *width = calloc(t->ncols, sizeof(*width));

	if (!width)
		return;
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c + 1 < t->ncols; c++) {
			size_t n = strlen(t->cells[r * t->ncols + c]);

			if (n > width[c])
				width[c] = n;
		}
	for (size_t r = 0; r < nrows; r++) {
		char *const *row = &t->cells[r * t->ncols];
		size_t last = t->ncols - 1;

		/* Trailing empty cells print nothing, so no line ends in spaces. */
		while (last > 0 && !*row[last])
			last--;
		for (size_t c = 0; c < last; c++)
			fprintf(f, "%-*s  ", (int)width[c], row[c]);
		fprintf(f, "%s\n", row[last]);
	}
	free(width);
}

void kb_table_free(struct kb_table *t)
{
	kb_arena_free(&t->arena);
	memset(t, 0, sizeof(*t));
}
