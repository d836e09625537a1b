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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct daemon;
struct kb_metrics_scrape;

/* "198.51.100.7:9464", "[2001:db8::1]:9464" (IP literals only; port 0 picks one). 0 or -EINVAL. */
int kb_metrics_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Listen on d->metrics_addr and serve from d->loop. 0, or -errno with one error line logged. */
int kb_metrics_start(struct daemon *d);
void kb_metrics_stop(struct daemon *d);

/*
 * One scrape: the exposition text written a piece at a time (a few dozen KiB
 * each, as the HTTP connection takes them), never whole. NULL on ENOMEM.
 */
struct kb_metrics_scrape *kb_metrics_scrape_new(struct daemon *d);
/*
 * The next bytes of the text, at most max, at buf: their count, 0 at the end,
 * -1 on ENOMEM or when the state changed during the scrape (the per-frontend
 * families are read from the compiled state, which a change replaces: the
 * scrape fails rather than mix two states; the next one sees the new state).
 */
long kb_metrics_scrape_read(struct kb_metrics_scrape *s, char *buf, size_t max);
void kb_metrics_scrape_free(struct kb_metrics_scrape *s);

/* Where the writers append: a growing buffer (oom: something was dropped). */
struct kb_mout {
	char *b;
	size_t len, cap;
	bool oom;
	double last_f;		/* the last value kb_metrics_f64 wrote, and its text (most repeat) */
	char last_ftext[32];
};

/* Writers. type is "counter" or "gauge"; labels are (name, value) string pairs ending with NULL. */
void kb_metrics_family(struct kb_mout *o, const char *name, const char *type, const char *help);
void kb_metrics_u64(struct kb_mout *o, const char *name, uint64_t v, ...) __attribute__((sentinel));
void kb_metrics_f64(struct kb_mout *o, const char *name, double v, ...) __attribute__((sentinel));

#endif /* KB_METRICS_H */
