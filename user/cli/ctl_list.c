// SPDX-License-Identifier: Apache-2.0
/* The CLI's output of a streamed list: each item becomes table rows or JSON/YAML text as it arrives, so no whole document is held. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_int.h"

void ctl_list_init(struct ctl_list *l, const struct opts *o, enum ctl_list_kind kind)
{
	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->out = o->out;
	/* Text goes to memory first: a read that must be retried leaves nothing half printed. */
	l->f = open_memstream(&l->buf, &l->len);
	if (ctl_machine_output(o)) {
		if (l->out == KB_OUT_YAML) {
			l->yaml = l->f ? kb_yaml_stream_begin(l->f, kind == CTL_LIST_OBJECTS) : NULL;
		} else if (l->f) {
			fputs(kind == CTL_LIST_OBJECTS ? "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": ["
						       : "[",
			      l->f);
		}
		l->machine = true;
		return;
	}
	if (kind == CTL_LIST_OBJECTS) {
		kb_obj_table_init(&l->ot, false);
		return;
	}
	kb_fe_table_init(&l->ft, kind == CTL_LIST_ENDPOINTS ? KB_TABLE_ENDPOINTS : KB_TABLE_FRONTENDS,
			 o->out == KB_OUT_WIDE);
	/* stats: the frontends and, below them, their endpoints. */
	if (kind == CTL_LIST_STATS)
		kb_fe_table_init(&l->ft2, KB_TABLE_ENDPOINTS, false);
}

int ctl_list_item(void *ctx, struct json_object *item)
{
	struct ctl_list *l = ctx;

	if (!l->f)
		return -1;
	l->n++;
	if (l->yaml)
		return kb_yaml_stream_item(l->yaml, item);
	if (l->machine) {
		fputs(l->n > 1 ? ",\n" : "\n", l->f);
		fputs(json_object_to_json_string_ext(item, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
								   JSON_C_TO_STRING_NOSLASHESCAPE),
		      l->f);
		return ferror(l->f) ? -1 : 0;
	}
	if (l->kind == CTL_LIST_OBJECTS) {
		kb_obj_table_add(&l->ot, item);
		return 0;
	}
	kb_fe_table_add(&l->ft, item);
	if (l->kind == CTL_LIST_STATS)
		kb_fe_table_add(&l->ft2, item);
	return 0;
}

void ctl_list_ask_rows(const struct ctl_list *l, struct json_object *req)
{
	static const char *const rows[] = { [CTL_LIST_FRONTENDS] = "frontends", [CTL_LIST_ENDPOINTS] = "endpoints",
					    [CTL_LIST_STATS] = "stats" };

	/* -o wide's endpoints add the FQDN and unix-socket tables, which only a JSON item has the makings of. */
	if (l->machine || l->kind == CTL_LIST_OBJECTS || (l->kind == CTL_LIST_ENDPOINTS && l->ft.wide))
		return;
	json_object_object_add(req, "rows", json_object_new_string(rows[l->kind]));
}

int ctl_list_rows(void *ctx, char *text, size_t len)
{
	struct ctl_list *l = ctx;
	char *nl = memchr(text, '\n', len);
	size_t first = nl ? (size_t)(nl - text) + 1 : len;

	if (!l->f || l->machine || l->kind == CTL_LIST_OBJECTS)
		return -1;
	l->n++;
	/* stats: the frontend's row, then its endpoints' rows. */
	if (l->kind == CTL_LIST_STATS)
		return kb_table_add_rows(&l->ft.t, text, first) && kb_table_add_rows(&l->ft2.t, text + first, len - first)
			       ? 0 : -1;
	return kb_table_add_rows(&l->ft.t, text, len) ? 0 : -1;
}

/* Free everything; the text written so far is dropped. */
void ctl_list_discard(struct ctl_list *l)
{
	if (l->yaml)
		kb_yaml_stream_end(l->yaml);
	if (!l->machine) {
		if (l->kind == CTL_LIST_OBJECTS)
			kb_table_free(&l->ot.t);
		else
			kb_fe_table_free(&l->ft);
		if (l->kind == CTL_LIST_STATS)
			kb_fe_table_free(&l->ft2);
	}
	if (l->f)
		fclose(l->f);
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

int ctl_list_print(struct ctl_list *l, FILE *out)
{
	int err = 0;

	if (!l->f)
		err = -1;
	else if (l->yaml)
		err = kb_yaml_stream_end(l->yaml);
	else if (l->machine)
		fputs(l->n ? (l->kind == CTL_LIST_OBJECTS ? "\n  ]\n}\n" : "\n]\n") : (l->kind == CTL_LIST_OBJECTS ? "]\n}\n" : "]\n"),
		      l->f);
	else if (l->kind == CTL_LIST_OBJECTS) {
		/*
		 * The read is whole by now, so nothing can be half printed: a
		 * table goes straight out, not through a copy in memory (11 MB at
		 * 100,000 endpoints, whose growth was a third of the CLI's time).
		 */
		kb_obj_table_print(out, &l->ot);
		err = ferror(out) ? -1 : 0;
	} else {
		kb_fe_table_print(out, &l->ft);
		kb_fe_table_free(&l->ft);
		if (l->kind == CTL_LIST_STATS) {
			fputc('\n', out);
			kb_fe_table_print(out, &l->ft2);
			kb_fe_table_free(&l->ft2);
		}
		err = ferror(out) ? -1 : 0;
	}
	l->yaml = NULL;
	l->machine = true;	/* the tables are printed and freed: nothing left for discard but the text */
	if (l->f && fflush(l->f) == 0 && l->len)
		err |= fwrite(l->buf, 1, l->len, out) == l->len ? 0 : -1;
	ctl_list_discard(l);
	return err;
}
