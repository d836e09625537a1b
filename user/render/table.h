/* SPDX-License-Identifier: Apache-2.0 */
/* Text tables for people: every column as wide as its widest cell, so rows stay aligned whatever they hold. */
#ifndef KB_TABLE_H
#define KB_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Cells live back to back in one buffer (text), row after row, each
 * NUL-terminated; every use walks them in order, so there is no offset per
 * cell (a table of 100,000 rows is its text and nothing more). Column widths
 * are kept as rows arrive, so printing is one pass.
 */
struct kb_table {
	size_t ncols;
	size_t ncells;
	char *text;		/* every cell, NUL-terminated, ncols a row */
	size_t len, cap;
	size_t *width;		/* per column: the widest cell so far */
	bool oom;		/* an allocation failed: rows were dropped */
};

void kb_table_init(struct kb_table *t, size_t ncols);
/* Append one row of exactly ncols cells (NULL is printed as an empty cell). The first row is the header. */
void kb_table_add(struct kb_table *t, ...);
/* The same from an array of ncols cells. */
void kb_table_addv(struct kb_table *t, const char *const *cells);
/* Rows as kb_table_rows_text writes them (cells split by tabs, rows ended by newlines), split in place. false: malformed. */
bool kb_table_add_rows(struct kb_table *t, char *s, size_t len);
/* Append rows [from, nrows) to *buf as tab-separated lines (a tab or newline inside a cell becomes a space). false: ENOMEM. */
bool kb_table_rows_text(const struct kb_table *t, size_t from, char **buf, size_t *len, size_t *cap);
size_t kb_table_rows(const struct kb_table *t);
/*
 * Print every row; each column but the last is padded to its widest cell and
 * followed by two spaces. The last column is never padded or cut, so a long
 * message is always printed whole.
 */
void kb_table_print(FILE *f, const struct kb_table *t);
/* Drop the rows after the first `keep` (the header: 1), keeping the memory for reuse. */
void kb_table_truncate(struct kb_table *t, size_t keep);
void kb_table_free(struct kb_table *t);

#endif /* KB_TABLE_H */
