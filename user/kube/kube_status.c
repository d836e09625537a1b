// SPDX-License-Identifier: Apache-2.0
/*
 * Status back to the API, on its own thread: the loop says what status it
 * wants on each object (kube_status_want); the leader (kube_lease.c) reads
 * the latest object, merges its own conditions (routes: only the parents
 * with our controllerName), and writes through the status subresource with
 * the object's resourceVersion, retrying a 409 against the object read
 * again. A status equal to what the server holds is not written, and a
 * condition whose status did not change keeps its lastTransitionTime, so a
 * verdict that stays the same never makes a write (no loops with watchers).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"
#include "kube/kube_int.h"

#define CONFLICT_RETRIES 5

struct kube_status_writer {
	struct kb_kube_conf *conf;
	char controller[256];
	bool write;
	pthread_t thr;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool stop;
	struct json_object *want;	/* path -> desired (the latest) */
	struct json_object *dirty;	/* path -> null: to write when leading */
	struct kube_lease lease;
	CURL *conn;			/* kept: one connection for every GET and PUT, not a handshake each */
	unsigned long writes, conflicts, unchanged, errors;
	char last_error[256];
};

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
											       : "";
}

/* Our conditions, each keeping its lastTransitionTime when its status did not change. */
static struct json_object *merge_conds(struct json_object *old, struct json_object *want, int64_t gen, const char *now)
{
	struct json_object *out = json_object_new_array();

	for (size_t i = 0; want && i < json_object_array_length(want); i++) {
		struct json_object *w = json_object_array_get_idx(want, i), *c = json_object_new_object(), *prev = NULL;
		const char *ltt = now;

		for (size_t j = 0; old && j < json_object_array_length(old); j++) {
			struct json_object *o = json_object_array_get_idx(old, j);

			if (!strcmp(jstr(o, "type"), jstr(w, "type")))
				prev = o;
		}
		if (prev && !strcmp(jstr(prev, "status"), jstr(w, "status")) && *jstr(prev, "lastTransitionTime"))
			ltt = jstr(prev, "lastTransitionTime");
		json_object_object_add(c, "type", json_object_new_string(jstr(w, "type")));
		json_object_object_add(c, "status", json_object_new_string(jstr(w, "status")));
		json_object_object_add(c, "reason", json_object_new_string(jstr(w, "reason")));
		json_object_object_add(c, "message", json_object_new_string(jstr(w, "message")));
		json_object_object_add(c, "lastTransitionTime", json_object_new_string(ltt));
		if (gen > 0)
			json_object_object_add(c, "observedGeneration", json_object_new_int64(gen));
		json_object_array_add(out, c);
	}
	return out;
}

/* A parentRef's key as validate names a route's parent: namespace/name[/section]. */
static void parent_key(struct json_object *ref, const char *route_ns, char *buf, size_t len)
{
	const char *ns = *jstr(ref, "namespace") ? jstr(ref, "namespace") : route_ns;

	if (*jstr(ref, "sectionName"))
		snprintf(buf, len, "%s/%s/%s", ns, jstr(ref, "name"), jstr(ref, "sectionName"));
	else
		snprintf(buf, len, "%s/%s", ns, jstr(ref, "name"));
}

/* The object's status with ours merged in (a new object). */
static struct json_object *merged(struct kube_status_writer *w, struct json_object *obj, struct json_object *want)
{
	struct json_object *cur = NULL, *st = json_object_new_object(), *md = NULL, *v, *wp;
	int64_t gen = 0;
	char now[64];

	kube_micro_time(now, sizeof(now));
	json_object_object_get_ex(obj, "status", &cur);
	if (json_object_object_get_ex(obj, "metadata", &md) && json_object_object_get_ex(md, "generation", &v))
		gen = json_object_get_int64(v);
	/* Copy what is not ours. */
	if (cur && json_object_is_type(cur, json_type_object)) {
		json_object_object_foreach(cur, k, val)
			if (strcmp(k, "conditions") && strcmp(k, "parents") && strcmp(k, "addresses"))
				json_object_object_add(st, k, json_object_get(val));
	}
	if (json_object_object_get_ex(want, "parents", &wp)) {
		struct json_object *parents = json_object_new_array(), *old = NULL, *spec, *refs = NULL;

		if (cur)
			json_object_object_get_ex(cur, "parents", &old);
		for (size_t i = 0; old && i < json_object_array_length(old); i++) {
			struct json_object *p = json_object_array_get_idx(old, i);

			if (strcmp(jstr(p, "controllerName"), w->controller))
				json_object_array_add(parents, json_object_get(p));	/* another controller's */
		}
		if (json_object_object_get_ex(obj, "spec", &spec))
			json_object_object_get_ex(spec, "parentRefs", &refs);
		for (size_t i = 0; refs && i < json_object_array_length(refs); i++) {
			struct json_object *ref = json_object_array_get_idx(refs, i), *mine = NULL, *prev = NULL, *e;
			char key[512], k2[512];

			parent_key(ref, jstr(md, "namespace"), key, sizeof(key));
			for (size_t j = 0; j < json_object_array_length(wp); j++)
				if (!strcmp(jstr(json_object_array_get_idx(wp, j), "parentRef"), key))
					mine = json_object_array_get_idx(wp, j);
			if (!mine)
				continue;
			for (size_t j = 0; old && j < json_object_array_length(old); j++) {
				struct json_object *p = json_object_array_get_idx(old, j), *pr;

				if (strcmp(jstr(p, "controllerName"), w->controller) || !json_object_object_get_ex(p, "parentRef", &pr))
					continue;
				parent_key(pr, jstr(md, "namespace"), k2, sizeof(k2));
				if (!strcmp(k2, key))
					prev = p;
			}
			e = json_object_new_object();
			json_object_object_add(e, "parentRef", json_object_get(ref));
			json_object_object_add(e, "controllerName", json_object_new_string(w->controller));
			json_object_object_add(e, "conditions",
					       merge_conds(prev ? json_object_object_get(prev, "conditions") : NULL,
							   json_object_object_get(mine, "conditions"), gen, now));
			json_object_array_add(parents, e);
		}
		json_object_object_add(st, "parents", parents);
	} else {
		json_object_object_add(st, "conditions",
				       merge_conds(cur ? json_object_object_get(cur, "conditions") : NULL,
						   json_object_object_get(want, "conditions"), gen, now));
	}
	if (json_object_object_get_ex(want, "addresses", &v))
		json_object_object_add(st, "addresses", json_object_get(v));
	return st;
}

/* Read the latest object, merge, write unless unchanged; retried on 409. */
static void write_one(struct kube_status_writer *w, const char *path, struct json_object *want)
{
	for (int attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
		struct json_object *obj, *st, *cur = NULL;
		char *out = NULL, spath[1024];
		long code = kb_kube_http_do(w->conf, &w->conn, "GET", path, NULL, NULL, &out, 10000);

		if (code == 404) {
			free(out);
			return;	/* gone: nothing to say */
		}
		obj = code == 200 ? json_tokener_parse(out) : NULL;
		free(out);
		if (!obj) {
			w->errors++;
			snprintf(w->last_error, sizeof(w->last_error), "GET %s: HTTP %ld", path, code);
			return;
		}
		st = merged(w, obj, want);
		json_object_object_get_ex(obj, "status", &cur);
		if (cur && json_object_equal(cur, st)) {
			w->unchanged++;
			json_object_put(st);
			json_object_put(obj);
			return;
		}
		json_object_object_add(obj, "status", st);
		snprintf(spath, sizeof(spath), "%s/status", path);
		code = kb_kube_http_do(w->conf, &w->conn, "PUT", spath, json_object_to_json_string(obj), "application/json", &out,
				       10000);
		free(out);
		json_object_put(obj);
		if (code == 200 || code == 201) {
			w->writes++;
			return;
		}
		if (code != 409) {
			w->errors++;
			snprintf(w->last_error, sizeof(w->last_error), "PUT %s: HTTP %ld", spath, code);
			kb_err("kubernetes: status of %s not written: HTTP %ld", path, code);
			return;
		}
		w->conflicts++;	/* the object changed since it was read: merge into the latest */
	}
	w->errors++;
	snprintf(w->last_error, sizeof(w->last_error), "%s: still conflicting after %d tries", path, CONFLICT_RETRIES);
}

static void *run(void *arg)
{
	struct kube_status_writer *w = arg;
	long next_lease = 0;

	while (!atomic_load(&w->stop)) {
		long now = kb_now_ms();
		struct timespec ts;

		if (now >= next_lease) {
			bool was = w->lease.leader;
			struct kube_lease l;

			/* On a copy: `status` reads the lease under the lock while the tick waits on the network. */
			pthread_mutex_lock(&w->lock);
			l = w->lease;
			pthread_mutex_unlock(&w->lock);
			kube_lease_tick(&l);
			pthread_mutex_lock(&w->lock);
			w->lease = l;
			pthread_mutex_unlock(&w->lock);
			next_lease = now + KUBE_LEASE_RETRY_MS;
			if (w->lease.leader && !was) {
				/* Newly leading: everything wanted is checked against the server once. */
				pthread_mutex_lock(&w->lock);
				json_object_object_foreach(w->want, p, d) {
					(void)d;
					json_object_object_add(w->dirty, p, NULL);
				}
				pthread_mutex_unlock(&w->lock);
			}
		}
		while (w->lease.leader && w->write && !atomic_load(&w->stop) && kb_now_ms() < next_lease) {
			struct json_object *want = NULL;
			char *path = NULL;

			pthread_mutex_lock(&w->lock);
			{
				struct lh_entry *e = json_object_get_object(w->dirty)->head;

				if (e) {
					path = strdup((const char *)lh_entry_k(e));
					json_object_object_del(w->dirty, path);
					if (json_object_object_get_ex(w->want, path, &want))
						json_object_get(want);
				}
			}
			pthread_mutex_unlock(&w->lock);
			if (!path)
				break;
			if (want)
				write_one(w, path, want);
			json_object_put(want);
			free(path);
		}
		pthread_mutex_lock(&w->lock);
		if (!atomic_load(&w->stop) && !(w->lease.leader && json_object_object_length(w->dirty))) {
			long wait = next_lease - kb_now_ms();

			clock_gettime(CLOCK_REALTIME, &ts);
			wait = wait < 0 ? 0 : wait;
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		pthread_mutex_unlock(&w->lock);
	}
	return NULL;
}

struct kube_status_writer *kube_status_start(struct kb_kube_conf *c, const char *controller, bool write)
{
	struct kube_status_writer *w = calloc(1, sizeof(*w));
	const char *id = getenv("POD_NAME");
	char host[128] = "";

	if (!w)
		return NULL;
	w->conf = c;
	w->write = write;
	snprintf(w->controller, sizeof(w->controller), "%s", controller);
	w->want = json_object_new_object();
	w->dirty = json_object_new_object();
	w->lease.conf = c;
	if (!id || !*id)
		id = getenv("NODE_NAME");
	gethostname(host, sizeof(host) - 1);
	/* A pod's or node's name is unique in the cluster; a bare host name gets the pid (two daemons on one host in tests). */
	if (id && *id)
		snprintf(w->lease.identity, sizeof(w->lease.identity), "%s", id);
	else
		snprintf(w->lease.identity, sizeof(w->lease.identity), "%s_%d", host, (int)getpid());
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (pthread_create(&w->thr, NULL, run, w)) {
		json_object_put(w->want);
		json_object_put(w->dirty);
		free(w);
		return NULL;
	}
	return w;
}

void kube_status_stop(struct kube_status_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	atomic_store(&w->stop, true);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thr, NULL);
	if (w->conn)
		curl_easy_cleanup(w->conn);
	if (w->lease.conn)
		curl_easy_cleanup(w->lease.conn);
	json_object_put(w->want);
	json_object_put(w->dirty);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

void kube_status_want(struct kube_status_writer *w, const char *path, struct json_object *desired)
{
	pthread_mutex_lock(&w->lock);
	json_object_object_add(w->want, path, desired);
	json_object_object_add(w->dirty, path, NULL);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void kube_status_forget(struct kube_status_writer *w, const char *path)
{
	pthread_mutex_lock(&w->lock);
	json_object_object_del(w->want, path);
	json_object_object_del(w->dirty, path);
	pthread_mutex_unlock(&w->lock);
}

struct json_object *kube_status_json(struct kube_status_writer *w)
{
	struct json_object *o = json_object_new_object();

	pthread_mutex_lock(&w->lock);
	json_object_object_add(o, "leader", json_object_new_boolean(w->lease.leader));
	json_object_object_add(o, "identity", json_object_new_string(w->lease.identity));
	json_object_object_add(o, "holder", json_object_new_string(w->lease.holder));
	json_object_object_add(o, "writes", json_object_new_int64((int64_t)w->writes));
	json_object_object_add(o, "conflicts", json_object_new_int64((int64_t)w->conflicts));
	json_object_object_add(o, "unchanged", json_object_new_int64((int64_t)w->unchanged));
	json_object_object_add(o, "errors", json_object_new_int64((int64_t)w->errors));
	json_object_object_add(o, "pending", json_object_new_int64(json_object_object_length(w->dirty)));
	if (w->last_error[0])
		json_object_object_add(o, "lastError", json_object_new_string(w->last_error));
	if (w->lease.last_error[0])
		json_object_object_add(o, "leaseError", json_object_new_string(w->lease.last_error));
	pthread_mutex_unlock(&w->lock);
	return o;
}
