/* SPDX-License-Identifier: Apache-2.0 */
/* Inside /metrics: the per-frontend families (metrics_traffic.c), written a piece at a time. */
#ifndef KB_METRICS_INT_H
#define KB_METRICS_INT_H

#include <stddef.h>

#include "reads/metrics.h"

struct daemon;
struct kb_mtraffic;

/* Read every counter (in batches) and health's view of each address. NULL on ENOMEM. */
struct kb_mtraffic *kb_mtraffic_new(struct daemon *d);
/* Append lines to o until it holds want bytes or the families end: 1 more to come, 0 done. */
int kb_mtraffic_fill(struct kb_mtraffic *t, struct daemon *d, struct kb_mout *o, size_t want);
void kb_mtraffic_free(struct kb_mtraffic *t);

#endif /* KB_METRICS_INT_H */
