// SPDX-License-Identifier: Apache-2.0
/*
 * Leader election as client-go's leaderelection with a Lease lock: only the
 * holder of the Lease in the daemon's namespace writes status. 15 s lease,
 * renewed every 2 s, given up when no renew succeeded for 10 s; another
 * holder's lease is taken over once its record did not change for 15 s on
 * our own clock (clocks across nodes are never compared).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "util.h"
#include "kube/kube_int.h"

void kube_micro_time(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char s[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", s, (long)tv.tv_usec);
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
											       : "";
}

/* Write the lease record as ours (a create when rv is NULL); true when the server took it. */
static bool write_ours(struct kube_lease *l, struct json_object *lease, bool create, bool acquire)
{
	struct json_object *spec, *md;
	char now[64], path[512], *out = NULL;
	long code;

	kube_micro_time(now, sizeof(now));
	if (!json_object_object_get_ex(lease, "spec", &spec) || !json_object_is_type(spec, json_type_object)) {
		spec = json_object_new_object();
		json_object_object_add(lease, "spec", spec);
	}
	json_object_object_add(spec, "holderIdentity", json_object_new_string(l->identity));
	json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int(KUBE_LEASE_DURATION_S));
	json_object_object_add(spec, "renewTime", json_object_new_string(now));
	if (acquire) {
		struct json_object *t;
		int n = json_object_object_get_ex(spec, "leaseTransitions", &t) ? json_object_get_int(t) : 0;

		json_object_object_add(spec, "acquireTime", json_object_new_string(now));
		json_object_object_add(spec, "leaseTransitions", json_object_new_int(create ? 0 : n + 1));
	}
	if (create) {
		json_object_object_add(lease, "apiVersion", json_object_new_string("coordination.k8s.io/v1"));
		json_object_object_add(lease, "kind", json_object_new_string("Lease"));
		md = json_object_new_object();
		json_object_object_add(md, "name", json_object_new_string(KUBE_LEASE_NAME));
		json_object_object_add(md, "namespace", json_object_new_string(l->conf->namespace));
		json_object_object_add(lease, "metadata", md);
		snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases", l->conf->namespace);
	} else {
		snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", l->conf->namespace,
			 KUBE_LEASE_NAME);
	}
	code = kb_kube_http_do(l->conf, &l->conn, create ? "POST" : "PUT", path, json_object_to_json_string(lease),
			       "application/json", &out, 5000);
	if (code != 200 && code != 201)
		snprintf(l->last_error, sizeof(l->last_error), "lease %s: HTTP %ld", create ? "create" : "update", code);
	free(out);
	return code == 200 || code == 201;
}

bool kube_lease_tick(struct kube_lease *l)
{
	struct json_object *lease = NULL, *spec;
	char path[512], *out = NULL, rec[512];
	long now = kb_now_ms(), code;
	bool was = l->leader, ok = false;

	snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", l->conf->namespace,
		 KUBE_LEASE_NAME);
	code = kb_kube_http_do(l->conf, &l->conn, "GET", path, NULL, NULL, &out, 5000);
	if (code == 404) {
		lease = json_object_new_object();
		ok = write_ours(l, lease, true, true);
	} else if (code == 200 && (lease = json_tokener_parse(out)) && json_object_object_get_ex(lease, "spec", &spec)) {
		const char *holder = jstr(spec, "holderIdentity");

		snprintf(l->holder, sizeof(l->holder), "%s", holder);
		if (!strcmp(holder, l->identity)) {
			ok = write_ours(l, lease, false, false);
		} else {
			snprintf(rec, sizeof(rec), "%s|%s", holder, jstr(spec, "renewTime"));
			if (strcmp(rec, l->observed)) {
				snprintf(l->observed, sizeof(l->observed), "%s", rec);
				l->observed_at = now;
			}
			/* Expired on our clock (or held by nobody): take it over, optimistically (a 409 loses the race). */
			if (!*holder || now - l->observed_at > KUBE_LEASE_DURATION_S * 1000L)
				ok = write_ours(l, lease, false, true);
		}
	} else {
		snprintf(l->last_error, sizeof(l->last_error), "lease get: HTTP %ld", code);
	}
	if (ok) {
		l->last_renew = now;
		l->leader = true;
		snprintf(l->holder, sizeof(l->holder), "%s", l->identity);
		l->last_error[0] = '\0';
	} else if (l->leader && now - l->last_renew > KUBE_LEASE_RENEW_DEADLINE_MS) {
		l->leader = false;	/* could not renew within the deadline: another may take it now */
	} else if (l->leader && code == 200 && strcmp(l->holder, l->identity)) {
		l->leader = false;	/* someone else holds it */
	}
	if (l->leader != was) {
		if (l->leader)
			l->transitions++;
		kb_log_info("kubernetes: %s the status writer (Lease %s/%s)", l->leader ? "became" : "is no longer",
			    l->conf->namespace, KUBE_LEASE_NAME);
	}
	json_object_put(lease);
	free(out);
	return l->leader;
}
