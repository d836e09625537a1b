// SPDX-License-Identifier: Apache-2.0
/* Text tables for people: every column as wide as its widest cell, so rows stay aligned whatever they hold. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "render/table.h"

void kb_table_init(struct kb_table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->width = calloc(ncols ? ncols : 1, sizeof(*t->width));
	t->oom = !t->width;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return true;
	while (n < need)
		n *= 2;
	if (!(q = realloc(*p, n * elem)))
		return false;
	*p = q;
	*cap = n;
	return true;
}

/* Append one cell of n bytes (the caller has checked the room for the offsets). */
static bool put_cell(struct kb_table *t, const char *s, size_t n)
{
	size_t c = t->ncells % t->ncols;

	if (!grow((void **)&t->text, &t->cap, t->len + n + 1, 1))
		return false;
	memcpy(t->text + t->len, s, n);
	t->text[t->len + n] = '\0';
	t->off[t->ncells++] = t->len;
	t->len += n + 1;
	if (n > t->width[c])
		t->width[c] = n;
	return true;
}

void kb_table_addv(struct kb_table *t, const char *const *cells)
{
	size_t start = t->ncells, len = t->len;

	if (t->oom || !grow((void **)&t->off, &t->offcap, t->ncells + t->ncols, sizeof(*t->off))) {
		t->oom = true;
		return;
	}
	for (size_t c = 0; c < t->ncols; c++)
		if (!put_cell(t, cells[c] ? cells[c] : "", cells[c] ? strlen(cells[c]) : 0)) {
			t->ncells = start;	/* never half a row */
			t->len = len;
			t->oom = true;
			return;
		}
}

void kb_table_add(struct kb_table *t, ...)
{
	const char *cells[32];
	va_list ap;

	va_start(ap, t);
	for (size_t c = 0; c < t->ncols && c < sizeof(cells) / sizeof(cells[0]); c++)
		cells[c] = va_arg(ap, const char *);
	va_end(ap);
	kb_table_addv(t, cells);
}

bool kb_table_add_rows(struct kb_table *t, char *s, size_t len)
{
	char *end = s + len;

	if (t->ncols > 32)
		return false;
	while (s < end) {
		char *nl = memchr(s, '\n', (size_t)(end - s)), *save = s;
		const char *cells[32];

		if (!nl)
			return false;
		*nl = '\0';
		/* strsep, not strtok: empty cells are cells. */
		for (size_t c = 0; c < t->ncols; c++)
			cells[c] = save ? strsep(&save, "\t") : NULL;
		kb_table_addv(t, cells);
		s = nl + 1;
	}
	return !t->oom;
}

size_t kb_table_rows(const struct kb_table *t)
{
	return t->ncols ? t->ncells / t->ncols : 0;
}

bool kb_table_rows_text(const struct kb_table *t, size_t from, char **buf, size_t *len, size_t *cap)
{
	for (size_t r = from; r < kb_table_rows(t); r++)
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->text + t->off[r * t->ncols + c];
			size_t n = strlen(s);

			if (!grow((void **)buf, cap, *len + n + 1, 1))
				return false;
			for (size_t k = 0; k < n; k++)
				(*buf)[*len + k] = s[k] == '\t' || s[k] == '\n' ? ' ' : s[k];
			*len += n;
			(*buf)[(*len)++] = c + 1 < t->ncols ? '\t' : '\n';
		}
	return true;
}

void kb_table_print(FILE *f, const struct kb_table *t)
{
	char *line = NULL;
	size_t cap = 0, last = t->ncols ? t->ncols - 1 : 0;

	/* One line is put together in memory and written with one call: 100,000 rows stay cheap. */
	for (size_t r = 0; r < kb_table_rows(t); r++) {
		const size_t *off = &t->off[r * t->ncols];
		size_t end = last, n = 0, need = 1;

		/* Trailing empty cells print nothing, so no line ends in spaces. */
		while (end > 0 && !t->text[off[end]])
			end--;
		for (size_t c = 0; c < end; c++)
			need += t->width[c] + 2;
		need += strlen(t->text + off[end]);
		if (!grow((void **)&line, &cap, need, 1))
			break;
		for (size_t c = 0; c <= end; c++) {
			const char *s = t->text + off[c];
			size_t k = strlen(s);

			memcpy(line + n, s, k);
			n += k;
			if (c < end) {
				memset(line + n, ' ', t->width[c] - k + 2);
				n += t->width[c] - k + 2;
			}
		}
		line[n++] = '\n';
		fwrite(line, 1, n, f);
	}
	free(line);
}

void kb_table_truncate(struct kb_table *t, size_t keep)
{
	if (kb_table_rows(t) > keep) {
		t->ncells = keep * t->ncols;
		t->len = t->ncells ? t->off[t->ncells - 1] + strlen(t->text + t->off[t->ncells - 1]) + 1 : 0;
	}
}

void kb_table_free(struct kb_table *t)
{
	free(t->text);
	free(t->off);
	free(t->width);
	memset(t, 0, sizeof(*t));
}
