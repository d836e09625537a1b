// SPDX-License-Identifier: Apache-2.0
/* The daemon's answer to a client that prints a table: each frontend as its text rows, made from the state without a JSON tree. */
#include <stdio.h>
#include <string.h>

#include "daemon/daemon_int.h"
#include "reads/reads.h"
#include "render/render.h"

/*
 * A frontend as JSON, parsed back by the CLI only to become table rows, cost
 * both sides about 10 µs per endpoint (100,000 endpoints: a second each). The
 * rows come from the same functions the CLI uses on a JSON item (render_table.c),
 * fed here from the compiled frontend, the batched counters and health's cells.
 */

/* t emptied for the next item, its memory kept (made on first use). */
static struct kb_table *scratch(struct kb_table *t, size_t ncols)
{
	if (t->ncols != ncols) {
		kb_table_free(t);
		kb_table_init(t, ncols);
	}
	kb_table_truncate(t, 0);
	return t;
}

static void endpoint_rows(struct daemon *d, struct kb_read *r, size_t i, const char *front)
{
	const struct kb_cfrontend *fe = &d->compiled.fes[r->idx[i]];
	const char *proto = kb_proto_name(fe->proto);

	scratch(&r->rt, 11);
	if (!fe->neps)
		kb_ep_none_row(&r->rt, front, proto);
	for (size_t e = 0; e < fe->neps; e++) {
		const struct kb_cendpoint *ep = &fe->eps[e];
		struct kb_conn_stats s = { 0 };
		char where[300], hc[64], oc[96];
		long long connects;
		struct kb_ep_cells c = {
			.front = e ? "" : front, .proto = e ? "" : proto, .backend = ep->backend ? ep->backend : "",
			.where = where, .health = hc, .open = oc, .prio = ep->priority,
			.weight = (long long)fe->locs[ep->locality].weight, .slots = (long long)ep->nslots,
			.share_pct = kb_share_pct(ep->share),
		};

		kb_hostport(where, sizeof(where), ep->type == KB_EP_UNIX, ep->address ? ep->address : "", ep->port);
		kb_read_health_cells(d, r, fe, ep, hc, sizeof(hc), oc, sizeof(oc));
		if (kb_read_stats(d, r, i, (long)e, &s)) {
			connects = (long long)s.connects;
			c.connects = &connects;
		}
		kb_ep_row(&r->rt, &c, false);
	}
	for (size_t l = 0; l < fe->nlocs; l++)
		for (size_t p = 0; p < fe->locs[l].npending; p++)
			kb_unresolved_row(&r->rt, fe->locs[l].backend ? fe->locs[l].backend : "", fe->locs[l].priority,
					  (long long)fe->locs[l].weight, fe->locs[l].pending[p], false);
}

const char *kb_read_rows(struct daemon *d, struct kb_read *r, size_t i, size_t *len)
{
	const struct kb_cfrontend *fe = &d->compiled.fes[r->idx[i]];
	struct kb_conn_stats s = { 0 };
	long long cs[2];
	char front[80];

	r->rlen = 0;
	kb_hostport(front, sizeof(front), false, fe->address ? fe->address : "", fe->port);
	/* A stats item holds both kinds of row: the frontend's first. */
	if (r->rows != KB_ROWS_ENDPOINTS) {
		bool have = kb_read_stats(d, r, i, -1, &s);

		cs[0] = (long long)s.connects;
		cs[1] = (long long)s.refused;
		kb_fe_row(scratch(&r->rt_fe, 8), front, kb_proto_name(fe->proto), kb_lb_name(fe->lb),
			  fe->route ? fe->route : "", fe->neps, (long long)fe->nslots, have ? cs : NULL);
		if (r->rt_fe.oom || !kb_table_rows_text(&r->rt_fe, 0, &r->rtext, &r->rlen, &r->rcap))
			return NULL;
	}
	if (r->rows != KB_ROWS_FRONTENDS) {
		endpoint_rows(d, r, i, front);
		if (r->rt.oom || !kb_table_rows_text(&r->rt, 0, &r->rtext, &r->rlen, &r->rcap))
			return NULL;
	}
	*len = r->rlen;
	return r->rtext ? r->rtext : "";
}
