/* SPDX-License-Identifier: Apache-2.0 */
/* kbackend(1), generated from the command table so that it cannot drift from `kbackend help`. */
#ifndef KB_MANPAGE_H
#define KB_MANPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct kb_cmd_doc {
	const char *name;
	const char *usage;	/* arguments after the command name, as `kbackend help NAME` prints them */
	const char *summary;
};

/* ctl.c: the i-th row of the command table; false past its end. */
bool kb_ctl_command(size_t i, struct kb_cmd_doc *out);

/* Write the man page (roff, man macros) to f: `kbackend help --man`. */
void kb_man_write(FILE *f, const char *version);

#endif /* KB_MANPAGE_H */
