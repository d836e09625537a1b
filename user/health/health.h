/* SPDX-License-Identifier: Apache-2.0 */
/* Endpoint health for the daemon: active probes, passive ejection from sockops' counters, and UDP socket teardown. */
#ifndef KB_HEALTH_H
#define KB_HEALTH_H

#include <stdbool.h>
#include <json-c/json.h>

#include "compile/compile.h"
#include "daemon/loop.h"

/* Envoy Gateway's defaults (api/v1alpha1/healthcheck_types.go). */
#define KB_HC_TIMEOUT_MS 1000
#define KB_HC_INTERVAL_MS 3000
#define KB_HC_UNHEALTHY_THRESHOLD 3
#define KB_HC_HEALTHY_THRESHOLD 1
#define KB_OD_INTERVAL_MS 3000
#define KB_OD_CONSECUTIVE 5
#define KB_OD_BASE_EJECTION_MS 30000
#define KB_OD_MAX_EJECTION_PCT 10
#define KB_OD_MAX_EJECTION_MS 300000	/* Envoy's max_ejection_time default: max(300 s, base) */

struct kb_health;

struct kb_health_opts {
	const char *bpffs;	/* where the dataplane pinned the maps; links go under <bpffs>/links */
	const char *cgroup;	/* cgroup v2 directory for the sockops program */
	struct kb_loop *loop;
	/* Health changed: recompile and swap. Called from a loop timer, never from inside a compile. */
	void (*changed)(void *ctx);
	void *ctx;
	/* The kernel has bpf_sock_destroy and iter/udp (the feature probe): load the UDP teardown iterator. */
	bool udp_destroy;
};

/*
 * Load the sockops program (pinned link <bpffs>/links/sockops_health) and
 * the UDP iterator, reusing the maps the dataplane pinned; each part that
 * the kernel refuses is logged and left out. The load touches only the
 * kernel and the pins, so it may run on another thread (the daemon's start
 * does it while the stored state compiles). Start registers the event ring
 * and the timers with the loop, on the loop's thread. Until synced, a health
 * says every endpoint is healthy. 0 or a negative errno (nothing usable).
 */
int kb_health_load(const struct kb_health_opts *opts, struct kb_health **out);
int kb_health_start(struct kb_health *h);
void kb_health_close(struct kb_health *h);

/* The programmed table changed: track its endpoints and their policies, drop the rest. */
void kb_health_sync(struct kb_health *h, const struct kb_compiled *c);
/*
 * The frontends old[i] were replaced in place by now[i] (the same keys), n
 * of them: track the endpoints they stopped or started naming, without
 * reading the rest of the table. 0, or nonzero (-EAGAIN when a health check
 * is involved, on either side or on an endpoint either side names; -ENOMEM):
 * call kb_health_sync with the whole table instead.
 */
int kb_health_update(struct kb_health *h, const struct kb_cfrontend *old, const struct kb_cfrontend *now, size_t n);

/* kb_compile_env.healthy: not ejected and not failing its active checks. */
bool kb_health_healthy(struct kb_health *h, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep);

/* The "health" object of one endpoint for `get endpoints`, or NULL when it is not tracked. */
struct json_object *kb_health_endpoint_json(struct kb_health *h, const struct kb_cfrontend *fe,
					    const struct kb_cendpoint *ep);

#endif /* KB_HEALTH_H */
