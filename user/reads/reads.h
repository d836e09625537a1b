/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's read side: selectors, an index over the accepted objects and the programmed frontends, and the rendering of one item. */
#ifndef KB_READS_H
#define KB_READS_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "manifest/model.h"
#include "render/table.h"
#include "util.h"

struct daemon;
struct kb_cfrontend;

/*
 * A label or field selector as kubectl writes one: requirements joined by
 * commas, each `key=value`, `key==value`, `key!=value`, and for labels also
 * `key` (present) and `!key` (absent). Every requirement must hold.
 */
enum kb_sel_op { KB_SEL_EQ, KB_SEL_NE, KB_SEL_EXISTS, KB_SEL_ABSENT };

#define KB_SEL_MAX 16

struct kb_selector {
	struct {
		char key[128];
		char val[256];
		enum kb_sel_op op;
	} req[KB_SEL_MAX];
	size_t n;
};

/* Parse s (NULL or "": matches everything); fields: no existence tests. 0, or -1 with why in err. */
int kb_selector_parse(const char *s, bool fields, struct kb_selector *sel, char *err, size_t errlen);
/* The value of label key on o, or NULL. */
const char *kb_meta_label_value(const struct kb_meta *o, const char *key);
bool kb_selector_match_labels(const struct kb_selector *sel, const struct kb_meta *o);

/*
 * One read request, resolved: which items, in which order. Built from a
 * request ({"what", "name", "namespace", "labelSelector", "fieldSelector"});
 * the items are indices into the daemon's objects or frontends, found through
 * the index when a name or an equality selects them, so that one object costs
 * a hash lookup, not a walk.
 */
/*
 * What a client that prints a table asked for instead of JSON items
 * ("rows" in the request): each item as the text rows it adds (reads_rows.c).
 * stats: the frontend's row of the frontends table, then its endpoint rows.
 */
enum kb_read_rows { KB_ROWS_NONE = 0, KB_ROWS_FRONTENDS, KB_ROWS_ENDPOINTS, KB_ROWS_STATS };

struct kb_read {
	bool frontends;		/* frontends/endpoints, else objects */
	enum kb_read_rows rows;
	size_t *idx;		/* d->state.objects[] or d->compiled.fes[] indices, in state order */
	size_t n, next;		/* items, and the next to render (streams) */
	unsigned long gen;	/* d->reads_gen when resolved: a change since ends a stream */
	bool whole;		/* "whole" in the request: every item rendered at once, so no change can cut it */
	/* Health is per endpoint address, shared by every frontend that uses it: read once per read. */
	struct kb_arena a;
	struct kb_smap health;	/* proto, family, ip, port (hex) -> health's JSON and table cells (reads.c) */
	/* The counters of items [pf_base, pf_base + pf_n), read in one batch (the dataplane's stats_many). */
	size_t pf_base, pf_n;
	struct kb_conn_stats *pf_fe, *pf_ep;
	bool *pf_fe_ok, *pf_ep_ok;
	size_t *pf_off;		/* item k's first endpoint in pf_ep */
	/* rows: the item's rows and their text. */
	struct kb_table rt_fe, rt;	/* frontend rows, endpoint rows */
	char *rtext;
	size_t rlen, rcap;
};

/* A request's string member, or NULL. */
const char *kb_req_str(struct json_object *req, const char *key);

/* Resolve req into r. NULL, or an error reply (unknown resource, bad selector). */
struct json_object *kb_read_resolve(struct daemon *d, struct json_object *req, struct kb_read *r);
/* Item i of r, as `get` prints it (an object with its status, or a frontend with counters and health). */
struct json_object *kb_read_item(struct daemon *d, struct kb_read *r, size_t i);
void kb_read_free(struct kb_read *r);
/* Item i's counters (e < 0: the frontend's, else its endpoint e's), read in batches; false: none. */
bool kb_read_stats(struct daemon *d, struct kb_read *r, size_t i, long e, struct kb_conn_stats *s);
/* Item i of a read with rows: its text, valid until the next call (*len bytes). NULL on ENOMEM. */
const char *kb_read_rows(struct daemon *d, struct kb_read *r, size_t i, size_t *len);
/* Health's JSON of one endpoint address, read once per read (a reference the caller owns), or NULL. */
struct json_object *kb_read_health(struct daemon *d, struct kb_read *r, const struct kb_cfrontend *fe,
				   const struct kb_cendpoint *ep);
/* The endpoint's HEALTH and OPEN cells (kb_health_cells of the JSON above, made once per address). */
void kb_read_health_cells(struct daemon *d, struct kb_read *r, const struct kb_cfrontend *fe,
			  const struct kb_cendpoint *ep, char *hc, size_t hlen, char *oc, size_t olen);

#endif /* KB_READS_H */
