/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API as a source (--kubernetes, --kubeconfig): a thread lists
 * and watches the Gateway API, Envoy Gateway and core kinds the way
 * client-go's reflector does, and hands batches of events to the loop, which
 * applies them through the change pipeline (kube_source.c).
 */
#ifndef KB_KUBE_H
#define KB_KUBE_H

#include <stdbool.h>
#include <json-c/json.h>

struct daemon;

#define KB_KUBE_CONTROLLER_DEFAULT "kbackend.io/gateway-controller"

struct kb_kube_opts {
	bool in_cluster;		/* --kubernetes */
	const char *kubeconfig;		/* --kubeconfig FILE */
	const char *controller_name;	/* --controller-name */
	bool no_status;			/* --no-status */
};

static inline bool kb_kube_enabled(const struct kb_kube_opts *o)
{
	return o->in_cluster || o->kubeconfig;
}

/* Read the configuration, start the thread and register with the loop. 0, or -errno with one error line logged. */
int kb_kube_start(struct daemon *d);
void kb_kube_stop(struct daemon *d);
/* For `status`: the source's server, sync and per-kind state; NULL when the source is off. */
struct json_object *kb_kube_status_json(const struct daemon *d);

#endif
