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

/* Append one cell of n bytes. */
static bool put_cell(struct kb_table *t, const char *s, size_t n)
{
	size_t c = t->ncells % t->ncols;

	if (!grow((void **)&t->text, &t->cap, t->len + n + 1, 1))
		return false;
	memcpy(t->text + t->len, s, n);
	t->text[t->len + n] = '\0';
	t->ncells++;
	t->len += n + 1;
	if (n > t->width[c])
		t->width[c] = n;
	return true;
}

void kb_table_addv(struct kb_table *t, const char *const *cells)
{
	size_t start = t->ncells, len = t->len;

	if (t->oom)
		return;
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

/* One line of exactly ncols tab-separated cells (n bytes, its newline excluded): copied whole, tabs become NULs. */
static bool add_line(struct kb_table *t, const char *s, size_t n)
{
	char *p, *end;
	size_t c = 0;

	if (t->oom || !grow((void **)&t->text, &t->cap, t->len + n + 1, 1)) {
		t->oom = true;
		return false;
	}
	p = t->text + t->len;
	memcpy(p, s, n);
	p[n] = '\0';
	end = p + n;
	for (;;) {
		char *tab = memchr(p, '\t', (size_t)(end - p));
		size_t w = (size_t)((tab ? tab : end) - p);

		if (w > t->width[c])
			t->width[c] = w;
		if (!tab)
			break;
		*tab = '\0';
		p = tab + 1;
		c++;
	}
	t->ncells += t->ncols;
	t->len += n + 1;
	return true;
}

bool kb_table_add_rows(struct kb_table *t, char *s, size_t len)
{
	char *end = s + len;

	if (t->ncols > 32)
		return false;
	while (s < end) {
		char *nl = memchr(s, '\n', (size_t)(end - s)), *save = s;
		const char *cells[32];
		size_t tabs = 0;

		if (!nl)
			return false;
		for (char *p = s; (p = memchr(p, '\t', (size_t)(nl - p))); p++)
			tabs++;
		if (tabs + 1 == t->ncols) {
			if (!add_line(t, s, (size_t)(nl - s)))
				return false;
			s = nl + 1;
			continue;
		}
		/* Another count of cells: missing ones are empty, extra ones dropped (strsep: empty cells are cells). */
		*nl = '\0';
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

/* The cells of the row at *pos, into cell[] (ncols of them, at most 32); *pos moves to the next row. */
static void row_cells(const struct kb_table *t, size_t *pos, const char **cell, size_t *clen)
{
	for (size_t c = 0; c < t->ncols; c++) {
		cell[c] = t->text + *pos;
		clen[c] = strlen(cell[c]);
		*pos += clen[c] + 1;
	}
}

/* Where row r starts in text (a walk: only used for the first rows). */
static size_t row_start(const struct kb_table *t, size_t r)
{
	size_t pos = 0;

	for (size_t k = 0; k < r * t->ncols; k++)
		pos += strlen(t->text + pos) + 1;
	return pos;
}

bool kb_table_rows_text(const struct kb_table *t, size_t from, char **buf, size_t *len, size_t *cap)
{
	size_t pos = row_start(t, from);

	if (t->ncols > 32)
		return false;
	for (size_t r = from; r < kb_table_rows(t); r++) {
		const char *cell[32];
		size_t clen[32];

		row_cells(t, &pos, cell, clen);
		for (size_t c = 0; c < t->ncols; c++) {
			if (!grow((void **)buf, cap, *len + clen[c] + 1, 1))
				return false;
			for (size_t k = 0; k < clen[c]; k++)
				(*buf)[*len + k] = cell[c][k] == '\t' || cell[c][k] == '\n' ? ' ' : cell[c][k];
			*len += clen[c];
			(*buf)[(*len)++] = c + 1 < t->ncols ? '\t' : '\n';
		}
	}
	return true;
}

void kb_table_print(FILE *f, const struct kb_table *t)
{
	char *line = NULL;
	size_t cap = 0, last = t->ncols ? t->ncols - 1 : 0, pos = 0;

	if (t->ncols > 32)
		return;
	/* One line is put together in memory and written with one call: 100,000 rows stay cheap. */
	for (size_t r = 0; r < kb_table_rows(t); r++) {
		const char *cell[32];
		size_t clen[32], end = last, n = 0, need = 1;

		row_cells(t, &pos, cell, clen);
		/* Trailing empty cells print nothing, so no line ends in spaces. */
		while (end > 0 && !clen[end])
			end--;
		for (size_t c = 0; c < end; c++)
			need += t->width[c] + 2;
		need += clen[end];
		if (!grow((void **)&line, &cap, need, 1))
			break;
		for (size_t c = 0; c <= end; c++) {
			memcpy(line + n, cell[c], clen[c]);
			n += clen[c];
			if (c < end) {
				memset(line + n, ' ', t->width[c] - clen[c] + 2);
				n += t->width[c] - clen[c] + 2;
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
		t->len = row_start(t, keep);
		t->ncells = keep * t->ncols;
	}
}

void kb_table_free(struct kb_table *t)
{
	free(t->text);
	free(t->width);
	memset(t, 0, sizeof(*t));
}
