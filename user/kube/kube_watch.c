// SPDX-License-Identifier: Apache-2.0
/*
 * The reflector, as client-go's: per kind, discovery of the served version,
 * a paginated list, then a watch from the list's resourceVersion with
 * bookmarks; 410 Gone or an ERROR event relists, any other failure retries
 * with exponential backoff and jitter, a silent watch is cut at its timeout
 * plus a margin. Every kind runs on one thread in one curl multi handle; the
 * objects go to the loop as events (kube_source.c), never touching the state.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"
#include "kube/kube_int.h"

const struct kube_kind kube_kinds[KUBE_NKINDS] = {
	{ "GatewayClass", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "gatewayclasses", true, true },
	{ "Gateway", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "gateways", false, true },
	{ "HTTPRoute", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "httproutes", false, true },
	{ "GRPCRoute", "gateway.networking.k8s.io", { "v1", "v1alpha2" }, "grpcroutes", false, true },
	{ "TLSRoute", "gateway.networking.k8s.io", { "v1alpha2", "v1alpha3", "v1" }, "tlsroutes", false, true },
	{ "TCPRoute", "gateway.networking.k8s.io", { "v1alpha2" }, "tcproutes", false, true },
	{ "UDPRoute", "gateway.networking.k8s.io", { "v1alpha2" }, "udproutes", false, true },
	{ "ReferenceGrant", "gateway.networking.k8s.io", { "v1beta1", "v1" }, "referencegrants", false, false },
	{ "Backend", "gateway.envoyproxy.io", { "v1alpha1" }, "backends", false, true },
	{ "BackendTrafficPolicy", "gateway.envoyproxy.io", { "v1alpha1" }, "backendtrafficpolicies", false, false },
	{ "Service", "", { "v1" }, "services", false, false },
	{ "EndpointSlice", "discovery.k8s.io", { "v1" }, "endpointslices", false, false },
	{ "ServiceImport", "multicluster.x-k8s.io", { "v1alpha1" }, "serviceimports", false, false },
	{ "Namespace", "", { "v1" }, "namespaces", true, false },
};
const size_t kube_nkinds = KUBE_NKINDS;

#define REDISCOVER_MS 60000	/* a kind not served is looked for again this often (its CRD may be installed later) */

enum phase { PH_WAIT, PH_DISCOVER, PH_LIST, PH_WATCH };

struct reflector {
	struct kube_watcher *w;
	size_t kind;
	enum phase phase, next;		/* next: what PH_WAIT starts when due */
	long due;
	long backoff_ms;
	size_t vi;			/* the version discovery is asking about */
	CURL *h;
	struct curl_slist *hdrs;
	char *buf;			/* the body (discovery, list) or the current watch line */
	size_t n, cap;
	bool overflow;			/* the watch line being read is too long: skipped to its end */
	bool relist;			/* the watch saw 410 or an ERROR event: list again */
	char rv[64];
	char *cont;			/* the list's continue token */
	struct kube_event *items, **itail;	/* the list so far */
	long watch_started;
};

struct kube_watcher {
	struct kb_kube_conf *conf;
	int notify_fd;
	int watch_timeout_s;
	pthread_t thr;
	CURLM *multi;
	atomic_bool stop;
	pthread_mutex_t lock;
	struct kube_event *head, **tail;	/* handed to the loop */
	struct kube_event *pending, **ptail;	/* this round's, pushed together */
	struct kube_kind_state st[KUBE_NKINDS];
	struct reflector r[KUBE_NKINDS];
};

void kube_event_free(struct kube_event *e)
{
	while (e) {
		struct kube_event *next = e->next;

		kube_event_free(e->items);
		free(e->key);
		free(e->content);
		free(e);
		e = next;
	}
}

static void push(struct kube_watcher *w, struct kube_event *e)
{
	e->next = NULL;
	*w->ptail = e;
	w->ptail = &e->next;
}

/* This round's events go to the loop together: one wake-up, and the loop coalesces them into one change. */
static void flush(struct kube_watcher *w)
{
	uint64_t one = 1;

	if (!w->pending)
		return;
	pthread_mutex_lock(&w->lock);
	*w->tail = w->pending;
	w->tail = w->ptail;
	pthread_mutex_unlock(&w->lock);
	w->pending = NULL;
	w->ptail = &w->pending;
	if (write(w->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kb_err("kubernetes: failed to wake the loop: %s", strerror(errno));
}

static void set_error(struct reflector *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct reflector *r, const char *fmt, ...)
{
	struct kube_kind_state *st = &r->w->st[r->kind];
	va_list ap;

	pthread_mutex_lock(&r->w->lock);
	va_start(ap, fmt);
	vsnprintf(st->last_error, sizeof(st->last_error), fmt, ap);
	va_end(ap);
	st->errors++;
	pthread_mutex_unlock(&r->w->lock);
	kb_err("kubernetes: %s: %s", kube_kinds[r->kind].kind, st->last_error);
}

static void backoff(struct reflector *r, enum phase next)
{
	long j = r->backoff_ms * (random() % 1000) / 1000;	/* jitter: up to the backoff again, as client-go's factor 1.0 */
	long wait = r->backoff_ms + j > KUBE_BACKOFF_MAX_MS ? KUBE_BACKOFF_MAX_MS : r->backoff_ms + j;

	r->phase = PH_WAIT;
	r->next = next;
	r->due = kb_now_ms() + wait;
	r->backoff_ms = r->backoff_ms * 2 > KUBE_BACKOFF_MAX_MS ? KUBE_BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void now_do(struct reflector *r, enum phase next)
{
	r->phase = PH_WAIT;
	r->next = next;
	r->due = kb_now_ms();
}

/* /apis/group/version or /api/v1, and the kind's collection under it. */
static void base_path(const struct reflector *r, const char *version, char *out, size_t len)
{
	const struct kube_kind *k = &kube_kinds[r->kind];

	if (*k->group)
		snprintf(out, len, "/apis/%s/%s", k->group, version);
	else
		snprintf(out, len, "/api/%s", version);
}

/* ---- turning API objects into events ---- */

/*
 * The object as the change pipeline reads it: apiVersion and kind set (list
 * items lack them), managedFields, resourceVersion and status dropped (the server's, not the
 * desired state), printed as JSON without `\/` (YAML has no such escape).
 */
static struct kube_event *object_event(struct reflector *r, enum kube_ev_type type, struct json_object *o)
{
	struct kube_watcher *w = r->w;
	const struct kube_kind *k = &kube_kinds[r->kind];
	struct json_object *md, *v;
	const char *name, *ns = NULL, *text;
	struct kube_event *e;
	char av[96];

	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "metadata", &md) ||
	    !json_object_object_get_ex(md, "name", &v) || !json_object_is_type(v, json_type_string)) {
		pthread_mutex_lock(&w->lock);
		w->st[r->kind].refused++;
		pthread_mutex_unlock(&w->lock);
		kb_err("kubernetes: %s: an object without metadata.name refused", k->kind);
		return NULL;
	}
	name = json_object_get_string(v);
	if (!k->cluster_scoped && json_object_object_get_ex(md, "namespace", &v))
		ns = json_object_get_string(v);
	if (json_object_object_get_ex(md, "resourceVersion", &v))
		snprintf(r->rv, sizeof(r->rv), "%s", json_object_get_string(v));
	e = calloc(1, sizeof(*e));
	e->type = type;
	e->kind = r->kind;
	if (asprintf(&e->key, "%s/%s%s%s", k->kind, ns ? ns : "", ns ? "/" : "", name) < 0)
		e->key = NULL;
	if (type == KUBE_EV_DELETED)
		return e;
	json_object_object_del(md, "managedFields");
	/* Every write bumps it, status writes too: kept out, a status-only change leaves the text the same. */
	json_object_object_del(md, "resourceVersion");
	json_object_object_del(o, "status");
	snprintf(av, sizeof(av), "%s%s%s", k->group, *k->group ? "/" : "", w->st[r->kind].version);
	json_object_object_add(o, "apiVersion", json_object_new_string(av));
	json_object_object_add(o, "kind", json_object_new_string(k->kind));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (strlen(text) > KUBE_MAX_OBJECT) {
		pthread_mutex_lock(&w->lock);
		w->st[r->kind].refused++;
		pthread_mutex_unlock(&w->lock);
		kb_err("kubernetes: %s refused: %zu bytes, over the limit of %u; the state keeps its last version", e->key,
		       strlen(text), KUBE_MAX_OBJECT);
		kube_event_free(e);
		return NULL;
	}
	e->content = strdup(text);
	return e;
}

static void count_event(struct kube_watcher *w, size_t kind, bool bookmark)
{
	pthread_mutex_lock(&w->lock);
	snprintf(w->st[kind].rv, sizeof(w->st[kind].rv), "%s", w->r[kind].rv);
	w->st[kind].last_event = time(NULL);
	if (bookmark)
		w->st[kind].bookmarks++;
	else
		w->st[kind].events++;
	pthread_mutex_unlock(&w->lock);
}

/* One line of a watch stream: {"type": ..., "object": ...}. False: stop the stream (relist). */
static bool watch_line(struct reflector *r, const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *ev, *jt, *obj;
	const char *type;
	bool go_on = true;

	ev = json_tokener_parse_ex(tok, line, (int)len);
	if (!ev || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_object_get_ex(ev, "type", &jt) || !json_object_object_get_ex(ev, "object", &obj)) {
		pthread_mutex_lock(&r->w->lock);
		r->w->st[r->kind].refused++;
		pthread_mutex_unlock(&r->w->lock);
		kb_err("kubernetes: %s: a malformed watch event (%zu bytes) refused", kube_kinds[r->kind].kind, len);
		goto out;
	}
	type = json_object_get_string(jt);
	if (!strcmp(type, "BOOKMARK")) {
		struct json_object *md, *v;

		if (json_object_object_get_ex(obj, "metadata", &md) && json_object_object_get_ex(md, "resourceVersion", &v))
			snprintf(r->rv, sizeof(r->rv), "%s", json_object_get_string(v));
		count_event(r->w, r->kind, true);
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") || !strcmp(type, "DELETED")) {
		struct kube_event *e = object_event(r, !strcmp(type, "DELETED") ? KUBE_EV_DELETED
						    : !strcmp(type, "ADDED")   ? KUBE_EV_ADDED
									       : KUBE_EV_MODIFIED, obj);

		if (e)
			push(r->w, e);
		count_event(r->w, r->kind, false);
	} else {
		struct json_object *code;

		/* ERROR: a Status; 410 Gone (the resourceVersion is compacted away) or anything else, list again. */
		set_error(r, "watch ERROR event (%s): relisting",
			  json_object_object_get_ex(obj, "code", &code) ? json_object_get_string(code) : "no code");
		r->relist = true;
		go_on = false;
	}
out:
	json_object_put(ev);
	json_tokener_free(tok);
	return go_on;
}

static size_t on_data(char *data, size_t sz, size_t nmemb, void *ctx)
{
	struct reflector *r = ctx;
	size_t n = sz * nmemb;
	long code = 0;

	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
	if (r->phase != PH_WATCH || code != 200) {
		/* A whole body (discovery, list, an error's Status), bounded. */
		if (r->n + n > 64u * KUBE_MAX_OBJECT)
			return 0;
		if (r->n + n + 1 > r->cap) {
			size_t cap = (r->n + n + 1) * 2;
			char *nb = realloc(r->buf, cap);

			if (!nb)
				return 0;
			r->buf = nb;
			r->cap = cap;
		}
		memcpy(r->buf + r->n, data, n);
		r->n += n;
		r->buf[r->n] = '\0';
		return n;
	}
	for (size_t i = 0; i < n;) {
		char *nl = memchr(data + i, '\n', n - i);
		size_t take = nl ? (size_t)(nl - (data + i)) : n - i;

		if (!r->overflow && r->n + take > KUBE_MAX_OBJECT + 65536) {
			/* Too long to be an object kbackend takes: refused, read past. */
			pthread_mutex_lock(&r->w->lock);
			r->w->st[r->kind].refused++;
			pthread_mutex_unlock(&r->w->lock);
			kb_err("kubernetes: %s: a watch event over %u bytes refused", kube_kinds[r->kind].kind,
			       KUBE_MAX_OBJECT);
			r->overflow = true;
			r->n = 0;
		}
		if (!r->overflow) {
			if (r->n + take + 1 > r->cap) {
				size_t cap = (r->n + take + 1) * 2;
				char *nb = realloc(r->buf, cap);

				if (!nb)
					return 0;
				r->buf = nb;
				r->cap = cap;
			}
			memcpy(r->buf + r->n, data + i, take);
			r->n += take;
		}
		i += take;
		if (!nl)
			break;
		i++;
		if (!r->overflow && r->n && !watch_line(r, r->buf, r->n)) {
			r->n = 0;
			return 0;	/* relist: the transfer is cut */
		}
		r->n = 0;
		r->overflow = false;
	}
	return n;
}

static void start(struct reflector *r, enum phase ph)
{
	struct kube_watcher *w = r->w;
	const struct kube_kind *k = &kube_kinds[r->kind];
	char path[1024], base[256];

	r->phase = ph;
	r->n = 0;
	r->overflow = false;
	r->relist = false;
	if (ph == PH_DISCOVER) {
		base_path(r, k->versions[r->vi], path, sizeof(path));
	} else {
		char *esc = NULL;

		base_path(r, w->st[r->kind].version, base, sizeof(base));
		if (ph == PH_LIST) {
			if (r->cont)
				esc = curl_easy_escape(NULL, r->cont, 0);
			snprintf(path, sizeof(path), "%s/%s?limit=%d%s%s", base, k->plural, KUBE_LIST_LIMIT,
				 esc ? "&continue=" : "", esc ? esc : "");
		} else {
			esc = curl_easy_escape(NULL, r->rv, 0);
			snprintf(path, sizeof(path), "%s/%s?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d",
				 base, k->plural, esc, w->watch_timeout_s);
			r->watch_started = kb_now_ms();
		}
		curl_free(esc);
	}
	r->h = kb_kube_http_handle(w->conf, path, &r->hdrs);
	if (!r->h) {
		backoff(r, ph);
		return;
	}
	curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
	/* A list or discovery that hangs, or a watch silent past its timeout, is cut and retried. */
	curl_easy_setopt(r->h, CURLOPT_TIMEOUT_MS,
			 ph == PH_WATCH ? (long)(w->watch_timeout_s + KUBE_WATCH_MARGIN_S) * 1000L : 60000L);
	curl_multi_add_handle(w->multi, r->h);
}

/* The kind is served at version vi: list it. */
static void discovered(struct reflector *r, bool served)
{
	struct kube_watcher *w = r->w;
	struct kube_kind_state *st = &w->st[r->kind];
	bool was = st->discovered && st->served;

	pthread_mutex_lock(&w->lock);
	st->discovered = true;
	st->served = served;
	if (served)
		snprintf(st->version, sizeof(st->version), "%s", kube_kinds[r->kind].versions[r->vi]);
	pthread_mutex_unlock(&w->lock);
	if (served) {
		kb_log_info("kubernetes: %s served as %s%s%s", kube_kinds[r->kind].kind, kube_kinds[r->kind].group,
			    *kube_kinds[r->kind].group ? "/" : "", st->version);
		free(r->cont);
		r->cont = NULL;
		now_do(r, PH_LIST);
		return;
	}
	if (!was && !st->synced) {
		struct kube_event *e = calloc(1, sizeof(*e));

		kb_log_info("kubernetes: %s is not served by the API server: skipped", kube_kinds[r->kind].kind);
		e->type = KUBE_EV_SKIPPED;
		e->kind = r->kind;
		push(w, e);
		pthread_mutex_lock(&w->lock);
		st->synced = true;	/* nothing to wait for */
		pthread_mutex_unlock(&w->lock);
	}
	r->vi = 0;
	r->phase = PH_WAIT;
	r->next = PH_DISCOVER;
	r->due = kb_now_ms() + REDISCOVER_MS;
}

static bool has_resource(struct json_object *doc, const char *plural)
{
	struct json_object *res, *v;

	if (!json_object_object_get_ex(doc, "resources", &res) || !json_object_is_type(res, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(res); i++)
		if (json_object_object_get_ex(json_object_array_get_idx(res, i), "name", &v) &&
		    !strcmp(json_object_get_string(v), plural))
			return true;
	return false;
}

/* One page of the list: its items join the list; the last page hands the whole list to the loop. */
static void list_page(struct reflector *r, struct json_object *doc)
{
	struct kube_watcher *w = r->w;
	struct json_object *items, *md, *v;
	char rv[64] = "";

	if (!json_object_object_get_ex(doc, "items", &items) || !json_object_is_type(items, json_type_array) ||
	    !json_object_object_get_ex(doc, "metadata", &md)) {
		set_error(r, "list: not a list");
		goto fail;
	}
	if (json_object_object_get_ex(md, "resourceVersion", &v))
		snprintf(rv, sizeof(rv), "%s", json_object_get_string(v));
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct kube_event *e = object_event(r, KUBE_EV_ADDED, json_object_array_get_idx(items, i));

		if (!e)
			continue;
		*r->itail = e;
		r->itail = &e->next;
	}
	free(r->cont);
	r->cont = json_object_object_get_ex(md, "continue", &v) && *json_object_get_string(v)
			  ? strdup(json_object_get_string(v)) : NULL;
	if (r->cont) {
		now_do(r, PH_LIST);
		return;
	}
	{
		struct kube_event *e = calloc(1, sizeof(*e));
		struct kube_kind_state *st = &w->st[r->kind];
		size_t n = 0;

		for (struct kube_event *i = r->items; i; i = i->next)
			n++;
		e->type = KUBE_EV_LIST;
		e->kind = r->kind;
		e->items = r->items;
		r->items = NULL;
		r->itail = &r->items;
		push(w, e);
		snprintf(r->rv, sizeof(r->rv), "%s", rv);
		pthread_mutex_lock(&w->lock);
		if (st->synced && st->served)
			st->relists++;
		st->synced = true;
		snprintf(st->rv, sizeof(st->rv), "%s", rv);
		st->last_event = time(NULL);
		pthread_mutex_unlock(&w->lock);
		kb_log_info("kubernetes: %s listed: %zu object(s) at resourceVersion %s", kube_kinds[r->kind].kind, n, rv);
	}
	r->backoff_ms = KUBE_BACKOFF_MIN_MS;
	now_do(r, PH_WATCH);
	return;
fail:
	kube_event_free(r->items);
	r->items = NULL;
	r->itail = &r->items;
	free(r->cont);
	r->cont = NULL;
	backoff(r, PH_LIST);
}

static void done(struct reflector *r, CURLcode rc)
{
	enum phase ph = r->phase;
	struct json_object *doc = NULL;
	long code = 0;

	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(r->w->multi, r->h);
	curl_easy_cleanup(r->h);
	curl_slist_free_all(r->hdrs);
	r->h = NULL;
	r->hdrs = NULL;
	if (ph == PH_WATCH && code == 200) {
		if (r->relist) {
			/* An ERROR event: list again at once (the backoff still grows if this repeats). */
			r->cont = NULL;
			now_do(r, PH_LIST);
		} else if (rc == CURLE_OK || rc == CURLE_OPERATION_TIMEDOUT) {
			/* The server closed at timeoutSeconds, or the watch went silent: watch again from the last resourceVersion. */
			if (rc == CURLE_OPERATION_TIMEDOUT)
				kb_log_info("kubernetes: %s: the watch went silent; restarted", kube_kinds[r->kind].kind);
			if (kb_now_ms() - r->watch_started > 1000)
				r->backoff_ms = KUBE_BACKOFF_MIN_MS;
			now_do(r, PH_WATCH);
			if (kb_now_ms() - r->watch_started < 1000)
				backoff(r, PH_WATCH);	/* a server that closes at once is not hammered */
		} else {
			set_error(r, "watch: %s", curl_easy_strerror(rc));
			backoff(r, PH_WATCH);
		}
		return;
	}
	if (rc != CURLE_OK) {
		set_error(r, "%s: %s", ph == PH_DISCOVER ? "discovery" : ph == PH_LIST ? "list" : "watch",
			  curl_easy_strerror(rc));
		if (ph == PH_LIST) {
			kube_event_free(r->items);
			r->items = NULL;
			r->itail = &r->items;
		}
		backoff(r, ph);
		return;
	}
	if (code == 410 && ph != PH_DISCOVER) {
		/* Gone: the resourceVersion (or a list's continue token) was compacted away. List from scratch. */
		kb_log_info("kubernetes: %s: 410 Gone; relisting", kube_kinds[r->kind].kind);
		kube_event_free(r->items);
		r->items = NULL;
		r->itail = &r->items;
		free(r->cont);
		r->cont = NULL;
		now_do(r, PH_LIST);
		return;
	}
	if (ph == PH_DISCOVER && code == 404) {
		if (r->vi + 1 < 4 && kube_kinds[r->kind].versions[r->vi + 1]) {
			r->vi++;
			now_do(r, PH_DISCOVER);
		} else {
			discovered(r, false);
		}
		return;
	}
	if (code != 200) {
		set_error(r, "%s: HTTP %ld%s%.200s", ph == PH_DISCOVER ? "discovery" : ph == PH_LIST ? "list" : "watch",
			  code, r->n ? ": " : "", r->n ? r->buf : "");
		if (ph == PH_LIST) {
			kube_event_free(r->items);
			r->items = NULL;
			r->itail = &r->items;
		}
		backoff(r, ph == PH_WATCH ? PH_WATCH : ph);
		return;
	}
	doc = r->n ? json_tokener_parse(r->buf) : NULL;
	if (!doc) {
		set_error(r, "%s: malformed JSON (%zu bytes)", ph == PH_DISCOVER ? "discovery" : "list", r->n);
		if (ph == PH_LIST) {
			kube_event_free(r->items);
			r->items = NULL;
			r->itail = &r->items;
		}
		backoff(r, ph);
		return;
	}
	if (ph == PH_DISCOVER) {
		if (has_resource(doc, kube_kinds[r->kind].plural)) {
			discovered(r, true);
		} else if (r->vi + 1 < 4 && kube_kinds[r->kind].versions[r->vi + 1]) {
			r->vi++;
			now_do(r, PH_DISCOVER);
		} else {
			discovered(r, false);
		}
	} else {
		list_page(r, doc);
	}
	json_object_put(doc);
}

static void *run(void *arg)
{
	struct kube_watcher *w = arg;

	while (!atomic_load(&w->stop)) {
		long now = kb_now_ms(), wait = 1000;
		struct CURLMsg *m;
		int running, left;

		for (size_t i = 0; i < kube_nkinds; i++) {
			struct reflector *r = &w->r[i];

			if (r->phase == PH_WAIT && r->due <= now)
				start(r, r->next);
			if (r->phase == PH_WAIT && r->due - now < wait)
				wait = r->due - now;
		}
		curl_multi_perform(w->multi, &running);
		while ((m = curl_multi_info_read(w->multi, &left)))
			if (m->msg == CURLMSG_DONE) {
				struct reflector *r;
				CURLcode rc = m->data.result;

				curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
				done(r, rc);
				wait = 0;
			}
		flush(w);
		if (wait > 0)
			curl_multi_poll(w->multi, NULL, 0, (int)wait, NULL);
	}
	for (size_t i = 0; i < kube_nkinds; i++) {
		struct reflector *r = &w->r[i];

		if (r->h) {
			curl_multi_remove_handle(w->multi, r->h);
			curl_easy_cleanup(r->h);
			curl_slist_free_all(r->hdrs);
		}
		kube_event_free(r->items);
		free(r->buf);
		free(r->cont);
	}
	kube_event_free(w->pending);
	return NULL;
}

struct kube_watcher *kube_watcher_start(struct kb_kube_conf *c, int notify_fd, int watch_timeout_s)
{
	struct kube_watcher *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->conf = c;
	w->notify_fd = notify_fd;
	w->watch_timeout_s = watch_timeout_s;
	w->tail = &w->head;
	w->ptail = &w->pending;
	pthread_mutex_init(&w->lock, NULL);
	w->multi = curl_multi_init();
	for (size_t i = 0; i < kube_nkinds; i++) {
		struct reflector *r = &w->r[i];

		r->w = w;
		r->kind = i;
		r->itail = &r->items;
		r->backoff_ms = KUBE_BACKOFF_MIN_MS;
		now_do(r, PH_DISCOVER);
	}
	if (!w->multi || pthread_create(&w->thr, NULL, run, w)) {
		if (w->multi)
			curl_multi_cleanup(w->multi);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return NULL;
	}
	return w;
}

void kube_watcher_stop(struct kube_watcher *w)
{
	if (!w)
		return;
	atomic_store(&w->stop, true);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thr, NULL);
	curl_multi_cleanup(w->multi);
	kube_event_free(w->head);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

struct kube_event *kube_watcher_take(struct kube_watcher *w)
{
	struct kube_event *e;

	pthread_mutex_lock(&w->lock);
	e = w->head;
	w->head = NULL;
	w->tail = &w->head;
	pthread_mutex_unlock(&w->lock);
	return e;
}

void kube_watcher_snapshot(struct kube_watcher *w, struct kube_kind_state *out)
{
	pthread_mutex_lock(&w->lock);
	memcpy(out, w->st, sizeof(w->st));
	pthread_mutex_unlock(&w->lock);
}
