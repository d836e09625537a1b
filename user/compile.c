// SPDX-License-Identifier: Apache-2.0
/* Stage 3: compile (placeholder until it lands). */
#include <string.h>

#include "compile.h"

int kb_compile(struct kb_model *m, const struct kb_compile_env *env, struct kb_compiled *out)
{
	memset(out, 0, sizeof(*out));
	return 0;
}

void kb_compiled_free(struct kb_compiled *c)
{
	kb_arena_free(&c->arena);
}
