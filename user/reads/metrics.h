/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --metrics-addr ADDR:PORT: Prometheus text format at /metrics, served by
 * libmicrohttpd from the daemon's own event loop (MHD_USE_EPOLL without an
 * internal thread: its epoll fd sits in kb_loop), so every scrape runs on the
 * daemon's thread and reads its state without locks.
 *
 * Other modules add their families through the writers below from a section
 * listed in metrics.c (see "sections"): one kb_metrics_family() line, then
 * every sample of that family.
 */
#ifndef KB_METRICS_H
#define KB_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

struct daemon;

/* "198.51.100.7:9464", "[2001:db8::1]:9464" (IP literals only; port 0 picks one). 0 or -EINVAL. */
int kb_metrics_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Listen on d->metrics_addr and serve from d->loop. 0, or -errno with one error line logged. */
int kb_metrics_start(struct daemon *d);
void kb_metrics_stop(struct daemon *d);

/* The exposition text of the daemon now: a malloc'd, NUL-terminated string (NULL on ENOMEM). */
char *kb_metrics_render(struct daemon *d, size_t *len);

/* Writers. type is "counter" or "gauge"; labels are (name, value) string pairs ending with NULL. */
void kb_metrics_family(FILE *f, const char *name, const char *type, const char *help);
void kb_metrics_u64(FILE *f, const char *name, uint64_t v, ...) __attribute__((sentinel));
void kb_metrics_f64(FILE *f, const char *name, double v, ...) __attribute__((sentinel));

#endif /* KB_METRICS_H */
