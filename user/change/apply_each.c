// SPDX-License-Identifier: Apache-2.0
/* Per-object acceptance: the objects a source delivers are judged each on its own, the way Envoy Gateway does. */
#include <errno.h>
#include <string.h>

#include "manifest/manifest.h"
#include "render/render.h"
#include "util.h"
#include "change/apply_each.h"

int kb_change_load_files(struct kb_model *m, struct json_object *files)
{
	size_t n = files ? json_object_array_length(files) : 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(files, i), *jn, *jc;

		if (!json_object_object_get_ex(f, "name", &jn) || !json_object_object_get_ex(f, "content", &jc) ||
		    !json_object_is_type(jc, json_type_string))
			return -EINVAL;
		kb_manifest_load_buffer(m, json_object_get_string(jn), json_object_get_string(jc),
					(size_t)json_object_get_string_len(jc));
	}
	return 0;
}

/* The refused object as a source reports it: where it is, its conditions, and the errors that name it (all: m's rendered diagnostics). */
static struct json_object *refusal(const struct kb_model *m, struct json_object *all, const struct kb_meta *o,
				   const char *label)
{
	struct json_object *r = kb_render_object(o), *st, *diags = json_object_new_array();

	json_object_object_add(r, "object", json_object_new_string(label));
	for (size_t i = 0; i < m->ndiags; i++)
		if (m->diags[i].object && !strcmp(m->diags[i].object, label))
			json_object_array_add(diags, json_object_get(json_object_array_get_idx(all, i)));
	if (json_object_object_get_ex(r, "status", &st))
		json_object_object_add(st, "diagnostics", diags);
	else
		json_object_put(diags);
	return r;
}

int kb_change_each(struct kb_model *next, struct json_object *files, const struct kb_policy *policy,
		   struct json_object *refused)
{
	struct kb_arena a = { 0 };
	struct kb_smap drop = { .a = &a };
	int total = 0;

	for (;;) {
		struct kb_smap erred = { .a = &a };	/* labels an error diagnostic names, this round */
		struct json_object *all;
		struct kb_model m;
		int added = 0;

		for (size_t i = 0; i < next->ndiags; i++) {
			if (next->diags[i].sev != KB_SEV_ERROR)
				continue;
			if (!next->diags[i].object) {
				/* An error that names no object (the file is not YAML) cannot be set aside alone. */
				kb_arena_free(&a);
				return -1;
			}
			kb_smap_put(&erred, next->diags[i].object, &erred);
		}
		all = kb_render_diags(next);
		for (size_t i = 0; i < next->nobjects; i++) {
			const struct kb_meta *o = next->objects[i];
			char *label = kb_meta_label_in(&a, o);

			if ((!kb_object_refused(o) && !kb_smap_get(&erred, label)) || kb_smap_get(&drop, label))
				continue;
			kb_smap_put(&drop, label, (void *)label);
			json_object_array_add(refused, refusal(next, all, o, label));
			added++;
		}
		json_object_put(all);
		if (!added)
			break;
		total += added;
		/*
		 * Parsed again rather than pruned: the kept objects come out unjudged,
		 * with their own line numbers, and nothing of the refused ones' verdicts
		 * lingers in them (a route that named a refused Backend is judged
		 * without it, and may be set aside in the next round).
		 */
		kb_model_init(&m);
		kb_change_load_files(&m, files);
		{
			struct kb_model kept;

			kb_model_init(&kept);
			kb_arena_absorb(&kept.arena, &m.arena);
			for (size_t i = 0; i < m.nobjects; i++)
				if (!kb_smap_get(&drop, kb_meta_label_in(&a, m.objects[i])))
					kb_model_add_object(&kept, m.objects[i]);
			for (size_t i = 0; i < m.ndiags; i++) {
				const struct kb_diag *dg = &m.diags[i];

				if (dg->object && kb_smap_get(&drop, dg->object))
					continue;
				*KB_PUSH(&kept.views, kept.diags, kept.ndiags) = *dg;
				kept.nerrors += dg->sev == KB_SEV_ERROR;
			}
			kb_model_free(&m);
			kb_model_free(next);
			*next = kept;
		}
		kb_validate(next, policy);
	}
	kb_arena_free(&a);
	return total;
}
