// SPDX-License-Identifier: Apache-2.0
/*
 * The Kubernetes objects into the change pipeline, on the loop: the watch
 * thread's events are taken in batches; a list (the first sync, a relist)
 * makes the whole cache the desired state in one replace with per-object
 * acceptance; single events between lists are one scoped apply or delete of
 * the objects they name. A scoped change the pipeline refuses (an invalid
 * object, or one that makes another refused) falls back to the replace, so
 * that the refused object is set aside and the valid ones are programmed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon/daemon_int.h"
#include "kube/kube.h"
#include "kube/kube_int.h"
#include "manifest/manifest.h"
#include "render/render.h"
#include "util.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define WATCH_TIMEOUT_S 300	/* client-go's minimum watch timeout; the server ends a watch then and it is started again */

struct kb_kube {
	struct kb_kube_conf conf;
	struct kube_watcher *w;
	int efd;
	struct json_object *cache;	/* "Kind/ns/name" -> the object's JSON text (a json string) */
	struct json_object *refused;	/* "Kind/ns/name" -> its refusal ({object, conditions, diagnostics}) */
	struct json_object *apply;	/* this batch's objects to apply: key -> text */
	struct json_object *del;	/* this batch's objects to delete: key -> their last text */
	bool listed[KUBE_NKINDS + 1];
	bool synced;			/* every kind listed (or not served), and the first replace taken */
	bool full;			/* the next change is the whole cache */
	size_t foreign;			/* GatewayClasses and Gateways of other controllers, left out */
	struct kube_status_writer *sw;	/* NULL with --no-status */
	struct json_object *said;	/* path -> the status last wanted (with the text it judged), to skip the same again */
	unsigned long replaces, applies, deletes, errors;
	char last_error[512];
	time_t last_change;
};

static struct kb_kube *source(const struct daemon *d)
{
	return d->kube;
}

static struct json_object *file(const char *key, struct json_object *text)
{
	struct json_object *f = json_object_new_object();
	char name[512];

	snprintf(name, sizeof(name), KB_KUBE_FILE_PREFIX "%s", key);
	json_object_object_add(f, "name", json_object_new_string(name));
	json_object_object_add(f, "content", json_object_get(text));
	return f;
}

static bool reply_ok(struct json_object *reply)
{
	struct json_object *v;

	return json_object_object_get_ex(reply, "ok", &v) && json_object_get_boolean(v);
}

static void change_failed(struct kb_kube *k, const char *what, struct json_object *reply)
{
	struct json_object *v, *diags;
	const char *first = NULL;

	if (json_object_object_get_ex(reply, "diagnostics", &diags))
		for (size_t i = 0; i < json_object_array_length(diags) && !first; i++) {
			struct json_object *dg = json_object_array_get_idx(diags, i), *sev;

			if (json_object_object_get_ex(dg, "severity", &sev) && !strcmp(json_object_get_string(sev), "error"))
				first = kb_json_str(dg, "text");
		}
	snprintf(k->last_error, sizeof(k->last_error), "%s: %s%s%s", what,
		 json_object_object_get_ex(reply, "error", &v) ? json_object_get_string(v) : "refused",
		 first ? ": " : "", first ? first : "");
	k->errors++;
}

/* A string field of the object's JSON text (path: spec.x), or NULL. Returns a copy. */
static char *spec_field(struct json_object *text, const char *field)
{
	struct json_object *o = json_tokener_parse(json_object_get_string(text)), *spec, *v;
	char *out = NULL;

	if (o && json_object_object_get_ex(o, "spec", &spec) && json_object_object_get_ex(spec, field, &v) &&
	    json_object_is_type(v, json_type_string))
		out = strdup(json_object_get_string(v));
	json_object_put(o);
	return out;
}

/*
 * Which Gateways are ours: those whose GatewayClass has spec.controllerName
 * equal to --controller-name. Another controller's classes and Gateways (and
 * Gateways of a class not in the cluster) never reach the pipeline; a route
 * attached only to them programs nothing and is not refused (its parent is
 * "not found", as for a Gateway not applied yet).
 */
static struct json_object *our_classes(const struct daemon *d, struct kb_kube *k)
{
	struct json_object *ours = json_object_new_object();

	json_object_object_foreach(k->cache, key, text) {
		char *cn;

		if (strncmp(key, "GatewayClass/", 13))
			continue;
		cn = spec_field(text, "controllerName");
		if (cn && !strcmp(cn, d->kube_opts.controller_name))
			json_object_object_add(ours, key + 13, NULL);
		free(cn);
	}
	return ours;
}

static bool is_ours(struct json_object *ours, const char *key, struct json_object *text)
{
	char *cls;
	bool yes;

	if (!strncmp(key, "GatewayClass/", 13))
		return json_object_object_get_ex(ours, key + 13, NULL);
	if (strncmp(key, "Gateway/", 8))
		return true;
	cls = spec_field(text, "gatewayClassName");
	yes = cls && json_object_object_get_ex(ours, cls, NULL);
	free(cls);
	return yes;
}

/* The whole cache as the state, each object judged on its own; the refused ones are kept for status. */
static void replace_all(struct daemon *d, struct kb_kube *k)
{
	struct json_object *files = json_object_new_array(), *reply, *v, *ours = our_classes(d, k);
	size_t n = 0, foreign = 0;

	json_object_object_foreach(k->cache, key, text) {
		if (!is_ours(ours, key, text)) {
			foreign++;
			continue;
		}
		json_object_array_add(files, file(key, text));
		n++;
	}
	json_object_put(ours);
	k->foreign = foreign;
	reply = kb_daemon_change(d, files, KB_CHANGE_REPLACE, false, true);
	if (reply_ok(reply)) {
		json_object_put(k->refused);
		k->refused = json_object_new_object();
		if (json_object_object_get_ex(reply, "refusedObjects", &v))
			for (size_t i = 0; i < json_object_array_length(v); i++) {
				struct json_object *r = json_object_array_get_idx(v, i), *st, *diags;
				struct json_object *src = NULL;
				const char *fname = json_object_object_get_ex(r, "status", &src) &&
							    json_object_object_get_ex(src, "source", &src)
						    ? kb_json_str(src, "file") : NULL;
				const char *key = fname && !strncmp(fname, KB_KUBE_FILE_PREFIX, strlen(KB_KUBE_FILE_PREFIX))
							  ? fname + strlen(KB_KUBE_FILE_PREFIX) : kb_json_str(r, "object");

				json_object_object_add(k->refused, key ? key : "?", json_object_get(r));
				kb_err("kubernetes: %s refused, not programmed", key ? key : "?");
				if (json_object_object_get_ex(r, "status", &st) && json_object_object_get_ex(st, "diagnostics", &diags))
					for (size_t j = 0; j < json_object_array_length(diags); j++)
						kb_err("  %s", kb_json_str(json_object_array_get_idx(diags, j), "text"));
			}
		k->replaces++;
		k->last_error[0] = '\0';
		k->last_change = time(NULL);
		kb_log_info("kubernetes: %zu object(s) are the state: %zu stored, %zu frontend(s), %d refused", n,
			    d->state.nobjects, d->compiled.nfes, json_object_object_length(k->refused));
	} else {
		change_failed(k, "replace", reply);
		kb_err("kubernetes: %s; keeping the last good state", k->last_error);
	}
	json_object_put(reply);
	json_object_put(files);
}

/* A batch of single events as one scoped change each way; false: refused, the caller replaces instead. */
static bool scoped(struct daemon *d, struct kb_kube *k, struct json_object *batch, enum kb_change mode)
{
	struct json_object *files = json_object_new_array(), *reply;
	bool ok;

	json_object_object_foreach(batch, key, text) {
		/* A refused object is not stored: its delete is the replace's (others it made refused may now pass). */
		if (mode == KB_CHANGE_DELETE && json_object_object_get_ex(k->refused, key, NULL)) {
			json_object_put(files);
			return false;
		}
		json_object_array_add(files, file(key, text));
	}
	if (!json_object_array_length(files)) {
		json_object_put(files);
		return true;
	}
	reply = kb_daemon_change(d, files, mode, false, false);
	ok = reply_ok(reply);
	if (ok) {
		json_object_object_foreach(batch, key2, text2) {
			(void)text2;
			json_object_object_del(k->refused, key2);	/* now accepted (or gone) */
		}
		if (mode == KB_CHANGE_APPLY)
			k->applies++;
		else
			k->deletes++;
		k->last_change = time(NULL);
	} else {
		kb_log_info("kubernetes: the scoped %s of %zu object(s) was refused; judging every object on its own",
			    mode == KB_CHANGE_APPLY ? "apply" : "delete", json_object_array_length(files));
	}
	json_object_put(reply);
	json_object_put(files);
	return ok;
}

/* ---- the status each object should carry (kube_status.c writes it) ---- */

static size_t kind_index(const char *key)
{
	for (size_t i = 0; i < kube_nkinds; i++) {
		size_t n = strlen(kube_kinds[i].kind);

		if (!strncmp(key, kube_kinds[i].kind, n) && key[n] == '/')
			return i;
	}
	return kube_nkinds;
}

/* The object's path on the server: /apis/GROUP/VERSION[/namespaces/NS]/PLURAL/NAME. */
static void object_path(size_t ki, const char *version, const char *key, char *buf, size_t len)
{
	const struct kube_kind *kk = &kube_kinds[ki];
	const char *rest = key + strlen(kk->kind) + 1, *slash = strchr(rest, '/');
	char gv[128];

	if (*kk->group)
		snprintf(gv, sizeof(gv), "/apis/%s/%s", kk->group, version);
	else
		snprintf(gv, sizeof(gv), "/api/%s", version);
	if (kk->cluster_scoped || !slash)
		snprintf(buf, len, "%s/%s/%s", gv, kk->plural, rest);
	else
		snprintf(buf, len, "%s/namespaces/%.*s/%s/%s", gv, (int)(slash - rest), rest, kk->plural, slash + 1);
}

static struct json_object *cond(const char *type, const char *status, const char *reason, const char *msg)
{
	struct json_object *c = json_object_new_object();

	json_object_object_add(c, "type", json_object_new_string(type));
	json_object_object_add(c, "status", json_object_new_string(status));
	json_object_object_add(c, "reason", json_object_new_string(reason));
	json_object_object_add(c, "message", json_object_new_string(msg));
	return c;
}

/*
 * What kbackend says of an object, as `kbackend validate` says it (rendered:
 * its kb_render_object form): the conditions, a route's per parent; a
 * GatewayClass of ours is Accepted; a Gateway is also Programmed (with the
 * addresses kbackend programs) when it is Accepted. NULL: a kind without status from us.
 */
static struct json_object *desired(size_t ki, struct json_object *rendered, const struct kb_meta *o)
{
	struct json_object *st, *v, *d;
	const char *kind = kube_kinds[ki].kind;

	if (!kube_kinds[ki].status)
		return NULL;
	if (!json_object_object_get_ex(rendered, "status", &st))
		return NULL;
	d = json_object_new_object();
	if (!strcmp(kind, "GatewayClass")) {
		struct json_object *cs = json_object_new_array();

		json_object_array_add(cs, cond("Accepted", "True", "Accepted", "Valid GatewayClass"));
		json_object_object_add(d, "conditions", cs);
		return d;
	}
	if (json_object_object_get_ex(st, "parents", &v)) {
		json_object_object_add(d, "parents", json_object_get(v));
		return d;
	}
	if (!json_object_object_get_ex(st, "conditions", &v))
		v = NULL;
	if (!strcmp(kind, "Gateway")) {
		struct json_object *cs = json_object_new_array(), *addrs = json_object_new_array();
		bool accepted = false;

		for (size_t i = 0; v && i < json_object_array_length(v); i++) {
			struct json_object *c = json_object_array_get_idx(v, i);

			json_object_array_add(cs, json_object_get(c));
			if (!strcmp(kb_json_str(c, "type"), "Accepted") && !strcmp(kb_json_str(c, "status"), "True"))
				accepted = true;
		}
		json_object_array_add(cs, accepted ? cond("Programmed", "True", "Programmed", "Address assigned to the Gateway")
						   : cond("Programmed", "False", "Invalid", "The Gateway is not accepted"));
		json_object_object_add(d, "conditions", cs);
		if (accepted && o && o->kind == KB_KIND_GATEWAY) {
			const struct kb_gateway *g = (const struct kb_gateway *)o;

			for (size_t i = 0; i < g->naddresses; i++) {
				struct json_object *a = json_object_new_object();

				json_object_object_add(a, "type", json_object_new_string(g->addresses[i].type ? g->addresses[i].type : "IPAddress"));
				json_object_object_add(a, "value", json_object_new_string(g->addresses[i].value ? g->addresses[i].value : ""));
				json_object_array_add(addrs, a);
			}
		}
		json_object_object_add(d, "addresses", addrs);
		return d;
	}
	json_object_object_add(d, "conditions", v ? json_object_get(v) : json_object_new_array());
	return d;
}

/* Tell the writer what changed; an object judged the same, from the same text, as last time is not said again. */
static void want(struct kb_kube *k, const struct kube_kind_state *st, const char *key, struct json_object *rendered,
		 const struct kb_meta *o, struct json_object *seen)
{
	size_t ki = kind_index(key);
	struct json_object *d, *text;
	char path[1024], *sig;

	if (ki == kube_nkinds || !json_object_object_get_ex(k->cache, key, &text))
		return;
	object_path(ki, st[ki].version, key, path, sizeof(path));
	json_object_object_add(seen, path, NULL);
	d = desired(ki, rendered, o);
	if (!d)
		return;
	if (asprintf(&sig, "%p %s", (void *)text, json_object_to_json_string(d)) < 0) {
		json_object_put(d);
		return;
	}
	if (json_object_object_get_ex(k->said, path, &text) && !strcmp(json_object_get_string(text), sig)) {
		json_object_put(d);
	} else {
		json_object_object_add(k->said, path, json_object_new_string(sig));
		kube_status_want(k->sw, path, d);
	}
	free(sig);
}

/*
 * After a whole change every object is looked at; after scoped ones only the
 * objects they named (only: keys applied; gone: keys deleted), so that one
 * event among 10,000 objects renders one status, not 10,000.
 */
static void plan_status(struct daemon *d, struct kb_kube *k, struct json_object *only, struct json_object *gone_keys)
{
	struct kube_kind_state st[KUBE_NKINDS];
	struct json_object *seen, *gone;
	size_t pl = strlen(KB_KUBE_FILE_PREFIX);

	if (!k->sw)
		return;
	kube_watcher_snapshot(k->w, st);
	seen = json_object_new_object();
	for (size_t i = 0; i < d->state.nobjects; i++) {
		const struct kb_meta *o = d->state.objects[i];
		struct json_object *r;

		if (!o->loc.file || strncmp(o->loc.file, KB_KUBE_FILE_PREFIX, pl) ||
		    (only && !json_object_object_get_ex(only, o->loc.file + pl, NULL)))
			continue;
		r = kb_render_object(o);
		want(k, st, o->loc.file + pl, r, o, seen);
		json_object_put(r);
	}
	gone = json_object_new_array();
	if (only) {
		json_object_object_foreach(gone_keys, key, text) {
			size_t ki = kind_index(key);
			char path[1024];

			(void)text;
			if (ki == kube_nkinds)
				continue;
			object_path(ki, st[ki].version, key, path, sizeof(path));
			json_object_array_add(gone, json_object_new_string(path));
		}
	} else {
		json_object_object_foreach(k->refused, key, r)
			want(k, st, key, r, NULL, seen);
		json_object_object_foreach(k->said, path, sig) {
			(void)sig;
			if (!json_object_object_get_ex(seen, path, NULL))
				json_object_array_add(gone, json_object_new_string(path));
		}
	}
	for (size_t i = 0; i < json_object_array_length(gone); i++) {
		const char *p = json_object_get_string(json_object_array_get_idx(gone, i));

		kube_status_forget(k->sw, p);
		json_object_object_del(k->said, p);
	}
	json_object_put(gone);
	json_object_put(seen);
}

/*
 * Could the batch make a set-aside object valid again? When it changes the
 * object itself, or an object its errors name (the Backend a route could not
 * find, the route that holds a listener it wanted): then every object is
 * judged again. An over-match only costs a whole judgement; the others stay
 * scoped changes while objects are set aside.
 */
static bool touches_refused(struct kb_kube *k, struct json_object *batch)
{
	if (!json_object_object_length(k->refused))
		return false;
	json_object_object_foreach(batch, key, text) {
		const char *slash = strchr(key, '/');

		(void)text;
		if (json_object_object_get_ex(k->refused, key, NULL) || !slash)
			return true;
		json_object_object_foreach(k->refused, rkey, r) {
			struct json_object *st, *diags;

			(void)rkey;
			if (json_object_object_get_ex(r, "status", &st) && json_object_object_get_ex(st, "diagnostics", &diags) &&
			    strstr(json_object_to_json_string_ext(diags, JSON_C_TO_STRING_NOSLASHESCAPE), slash + 1))
				return true;
		}
	}
	return false;
}

/* Apply what the batch gathered, once every kind is listed and the restore is done. */
static void settle(struct daemon *d, struct kb_kube *k)
{
	bool full = k->full;

	if (d->restore_deadline)
		return;
	for (size_t i = 0; i < kube_nkinds; i++)
		if (!k->listed[i])
			return;	/* the first sync waits for every kind: a partial cache would delete the rest */
	if (!k->synced) {
		k->synced = true;
		full = true;
		kb_log_info("kubernetes: every kind listed: synced");
	}
	if (!full && (touches_refused(k, k->apply) || touches_refused(k, k->del)))
		full = true;
	if (!full && json_object_object_length(k->apply) && !scoped(d, k, k->apply, KB_CHANGE_APPLY))
		full = true;
	if (!full && json_object_object_length(k->del) && !scoped(d, k, k->del, KB_CHANGE_DELETE))
		full = true;
	if (full)
		replace_all(d, k);
	k->full = false;
	plan_status(d, k, full ? NULL : k->apply, k->del);
	json_object_put(k->apply);
	json_object_put(k->del);
	k->apply = json_object_new_object();
	k->del = json_object_new_object();
}

/* A kind's whole list: the cache's objects of that kind become the list's (those gone from it are deleted). */
static void take_list(struct kb_kube *k, struct kube_event *e)
{
	const char *kind = kube_kinds[e->kind].kind;
	size_t kl = strlen(kind);
	struct json_object *gone = json_object_new_array();

	json_object_object_foreach(k->cache, key, text) {
		(void)text;
		if (!strncmp(key, kind, kl) && key[kl] == '/')
			json_object_array_add(gone, json_object_new_string(key));
	}
	for (size_t i = 0; i < json_object_array_length(gone); i++)
		json_object_object_del(k->cache, json_object_get_string(json_object_array_get_idx(gone, i)));
	json_object_put(gone);
	for (struct kube_event *i = e->items; i; i = i->next)
		if (i->key && i->content)
			json_object_object_add(k->cache, i->key, json_object_new_string(i->content));
	k->listed[e->kind] = true;
	k->full = true;
}

static void on_events(void *ctx, int fd, uint32_t events)
{
	struct daemon *d = ctx;
	struct kb_kube *k = source(d);
	struct kube_event *list;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	list = kube_watcher_take(k->w);
	for (struct kube_event *e = list; e; e = e->next) {
		struct json_object *prev;

		switch (e->type) {
		case KUBE_EV_LIST:
			take_list(k, e);
			break;
		case KUBE_EV_SKIPPED:
			k->listed[e->kind] = true;
			break;
		case KUBE_EV_ADDED:
		case KUBE_EV_MODIFIED:
			if (!e->key || !e->content)
				break;
			/* The same text (a write of its status, ours included): nothing to judge again. */
			if (json_object_object_get_ex(k->cache, e->key, &prev) && !strcmp(json_object_get_string(prev), e->content))
				break;
			json_object_object_add(k->cache, e->key, json_object_new_string(e->content));
			json_object_object_del(k->del, e->key);
			if (e->kind == KUBE_KIND_GATEWAYCLASS || e->kind == KUBE_KIND_GATEWAY)
				k->full = true;	/* a GatewayClass or Gateway may change which Gateways are ours */
			json_object_object_add(k->apply, e->key, json_object_new_string(e->content));
			break;
		case KUBE_EV_DELETED:
			if (!e->key || !json_object_object_get_ex(k->cache, e->key, &prev))
				break;
			json_object_object_del(k->apply, e->key);
			json_object_object_add(k->del, e->key, json_object_get(prev));
			if (e->kind == KUBE_KIND_GATEWAYCLASS || e->kind == KUBE_KIND_GATEWAY)
				k->full = true;
			json_object_object_del(k->cache, e->key);
			break;
		}
	}
	kube_event_free(list);
	settle(d, k);
}

/* The restore waits for DNS: whatever arrived meanwhile is applied once it is done. */
static int kube_due(void *ctx)
{
	struct daemon *d = ctx;
	struct kb_kube *k = source(d);

	if (!k || !d->restore_deadline)
		return -1;
	return 50;
}

static void kube_tick(void *ctx)
{
	struct daemon *d = ctx;
	struct kb_kube *k = source(d);

	if (k && !d->restore_deadline && (k->full || json_object_object_length(k->apply) ||
					  json_object_object_length(k->del) || !k->synced))
		settle(d, k);
}

int kb_kube_start(struct daemon *d)
{
	struct kb_kube *k;
	char why[1024];
	int err;

	if (!kb_kube_enabled(&d->kube_opts))
		return 0;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->efd = -1;
	err = d->kube_opts.kubeconfig ? kb_kube_conf_kubeconfig(&k->conf, d->kube_opts.kubeconfig, why, sizeof(why))
				      : kb_kube_conf_in_cluster(&k->conf, getenv("KBACKEND_SA_DIR") ?: SA_DIR, why,
								sizeof(why));
	if (err) {
		kb_err("failed to configure the Kubernetes source: %s", why);
		kb_kube_conf_free(&k->conf);
		free(k);
		return -EINVAL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	k->cache = json_object_new_object();
	k->refused = json_object_new_object();
	k->apply = json_object_new_object();
	k->del = json_object_new_object();
	k->said = json_object_new_object();
	k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (k->efd < 0 || kb_loop_add(d->loop, k->efd, EPOLLIN, on_events, d) ||
	    kb_loop_add_timer(d->loop, kube_due, kube_tick, d)) {
		kb_err("failed to start the Kubernetes source: %s", strerror(errno));
		goto fail;
	}
	d->kube = k;
	{
		const char *t = getenv("KBACKEND_KUBE_WATCH_TIMEOUT");	/* tests: short watches */
		int ts = t ? atoi(t) : 0;

		k->w = kube_watcher_start(&k->conf, k->efd, ts > 0 ? ts : WATCH_TIMEOUT_S + (int)(random() % WATCH_TIMEOUT_S));
	}
	if (k->w && !d->kube_opts.no_status) {
		k->sw = kube_status_start(&k->conf, d->kube_opts.controller_name, true);
		if (!k->sw)
			kb_err("failed to start the Kubernetes status writer: no status is written");
	}
	if (!k->w) {
		kb_err("failed to start the Kubernetes watch thread");
		d->kube = NULL;
		goto fail;
	}
	kb_log_info("kubernetes: watching %s from %s, as controller %s%s", k->conf.server, k->conf.origin,
		    d->kube_opts.controller_name, d->kube_opts.no_status ? " (no status written)" : "");
	return 0;
fail:
	if (k->efd >= 0) {
		kb_loop_del(d->loop, k->efd);
		close(k->efd);
	}
	json_object_put(k->cache);
	json_object_put(k->refused);
	json_object_put(k->apply);
	json_object_put(k->del);
	json_object_put(k->said);
	kb_kube_conf_free(&k->conf);
	free(k);
	return -EIO;
}

void kb_kube_stop(struct daemon *d)
{
	struct kb_kube *k = source(d);

	if (!k)
		return;
	kube_status_stop(k->sw);
	kube_watcher_stop(k->w);
	kb_loop_del(d->loop, k->efd);
	json_object_put(k->said);
	close(k->efd);
	json_object_put(k->cache);
	json_object_put(k->refused);
	json_object_put(k->apply);
	json_object_put(k->del);
	kb_kube_conf_free(&k->conf);
	free(k);
	d->kube = NULL;	/* the timer stays registered and does nothing from now on */
	curl_global_cleanup();
}

struct json_object *kb_kube_status_json(const struct daemon *d)
{
	struct kb_kube *k = source(d);
	struct kube_kind_state st[KUBE_NKINDS];
	struct json_object *o, *kinds, *refused;

	if (!k)
		return NULL;
	kube_watcher_snapshot(k->w, st);
	o = json_object_new_object();
	json_object_object_add(o, "server", json_object_new_string(k->conf.server));
	json_object_object_add(o, "config", json_object_new_string(k->conf.origin));
	json_object_object_add(o, "controllerName", json_object_new_string(d->kube_opts.controller_name));
	json_object_object_add(o, "writesStatus", json_object_new_boolean(!d->kube_opts.no_status));
	json_object_object_add(o, "namespace", json_object_new_string(k->conf.namespace ? k->conf.namespace : ""));
	if (k->sw)
		json_object_object_add(o, "statusWriter", kube_status_json(k->sw));
	json_object_object_add(o, "synced", json_object_new_boolean(k->synced));
	json_object_object_add(o, "objects", json_object_new_int64(json_object_object_length(k->cache)));
	json_object_object_add(o, "otherControllers", json_object_new_int64((int64_t)k->foreign));
	json_object_object_add(o, "replaces", json_object_new_int64((int64_t)k->replaces));
	json_object_object_add(o, "applies", json_object_new_int64((int64_t)k->applies));
	json_object_object_add(o, "deletes", json_object_new_int64((int64_t)k->deletes));
	json_object_object_add(o, "errors", json_object_new_int64((int64_t)k->errors));
	json_object_object_add(o, "lastChange", json_object_new_int64(k->last_change));
	if (k->last_error[0])
		json_object_object_add(o, "lastError", json_object_new_string(k->last_error));
	kinds = json_object_new_array();
	for (size_t i = 0; i < kube_nkinds; i++) {
		struct json_object *j = json_object_new_object();

		json_object_object_add(j, "kind", json_object_new_string(kube_kinds[i].kind));
		json_object_object_add(j, "group", json_object_new_string(kube_kinds[i].group));
		json_object_object_add(j, "version", json_object_new_string(st[i].version));
		json_object_object_add(j, "served", st[i].discovered ? json_object_new_boolean(st[i].served) : NULL);
		json_object_object_add(j, "synced", json_object_new_boolean(st[i].synced));
		json_object_object_add(j, "resourceVersion", json_object_new_string(st[i].rv));
		json_object_object_add(j, "lastEvent", json_object_new_int64(st[i].last_event));
		json_object_object_add(j, "events", json_object_new_int64((int64_t)st[i].events));
		json_object_object_add(j, "bookmarks", json_object_new_int64((int64_t)st[i].bookmarks));
		json_object_object_add(j, "relists", json_object_new_int64((int64_t)st[i].relists));
		json_object_object_add(j, "errors", json_object_new_int64((int64_t)st[i].errors));
		json_object_object_add(j, "refused", json_object_new_int64((int64_t)st[i].refused));
		if (st[i].last_error[0])
			json_object_object_add(j, "lastError", json_object_new_string(st[i].last_error));
		json_object_array_add(kinds, j);
	}
	json_object_object_add(o, "kinds", kinds);
	refused = json_object_new_array();
	json_object_object_foreach(k->refused, key, r) {
		(void)key;
		json_object_array_add(refused, json_object_get(r));
	}
	json_object_object_add(o, "refused", json_object_new_int64((int64_t)json_object_array_length(refused)));
	json_object_object_add(o, "refusedObjects", refused);
	return o;
}
