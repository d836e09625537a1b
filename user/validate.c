// SPDX-License-Identifier: Apache-2.0
/* Stage 2: validation (placeholder until it lands). */
#include <string.h>

#include "validate.h"

void kb_policy_init(struct kb_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->enable_backend = -1;
	p->cluster_domain = "cluster.local";
}

int kb_validate(struct kb_model *m, const struct kb_policy *p)
{
	return 0;
}

bool kb_object_refused(const struct kb_meta *obj)
{
	return false;
}

bool kb_parent_attaches(const struct kb_route *r, const struct kb_parent_ref *pr, const struct kb_gateway *g,
			const struct kb_listener *l)
{
	return false;
}

char *kb_parent_key(struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr)
{
	return kb_strdup(&m->arena, pr->name);
}

bool kb_ref_is_backend(const struct kb_backend_ref *ref)
{
	return ref->kind && strcmp(ref->kind, "Backend") == 0;
}
