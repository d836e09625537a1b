// SPDX-License-Identifier: Apache-2.0
/* kbackend daemon: the single writer of the maps. Applies changes atomically and serves the control socket. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "compile.h"
#include "control.h"
#include "daemon.h"
#include "dataplane.h"
#include "manifest.h"
#include "render.h"
#include "resolver.h"
#include "store.h"
#include "validate.h"

#define MAX_CLIENTS 64
#define CLIENT_DEADLINE_MS 5000	/* a client must send its whole request within this */
#define MAX_FLAG_LIST 64
#define RESTORE_DNS_WAIT_MS 5000	/* longest a restart waits for FQDN answers before programming */

struct client {
	int fd;
	long deadline;
	struct kb_frame_reader rd;
};

struct daemon {
	/* Flags. */
	struct kb_policy policy;
	char *unix_dirs[MAX_FLAG_LIST];
	char *allow[MAX_FLAG_LIST];
	const char *config;
	const char *state_dir;
	const char *cgroup;
	const char *bpffs;
	const char *socket;
	const char *dns_servers[MAX_FLAG_LIST];
	size_t ndns_servers;
	int64_t dns_min_ttl_ms, dns_max_ttl_ms;
	/* Running state. */
	struct kb_dataplane *dp;
	struct kb_resolver *resolver;	/* FQDN endpoints; its answers feed every compile */
	int resolver_tag;		/* epoll tag of the resolver's fd */
	long restore_deadline;		/* restored state waits for DNS until then; 0: not waiting */
	struct kb_model state;		/* the accepted objects, validated */
	struct kb_compiled compiled;	/* what the maps hold */
	int lfd, epfd, sigfd;
	struct client clients[MAX_CLIENTS];
	bool stop, unload;
	time_t started;
	/* Apply bookkeeping, shown by `status`. */
	unsigned long applies, apply_errors;
	time_t last_apply;
	char last_error[512];
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What every compile may ask of the world: the resolver's current answers. */
static struct kb_compile_env compile_env(struct daemon *d)
{
	return (struct kb_compile_env){
		.resolve = kb_resolver_lookup,
		.ctx = d->resolver,
		.cluster_domain = d->policy.cluster_domain,
	};
}

static void add_name(struct kb_arena *a, struct kb_resolver_name **names, size_t *n, const char *host,
		     const struct kb_btp *p)
{
	struct kb_resolver_name *rn;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i].host, host) == 0)
			return;
	rn = KB_PUSH(a, *names, *n);
	rn->host = host;
	rn->family = KB_LOOKUP_V4_PREFERRED;
	if (p && p->lookup_family)
		kb_lookup_family_parse(p->lookup_family, &rn->family);
	rn->refresh_ms = p && p->dns_refresh_ms > 0 ? p->dns_refresh_ms : 0;
	rn->respect_ttl = !p || p->respect_dns_ttl != 0;
}

/*
 * Tell the resolver which names the programmed frontends need, with the DNS
 * settings of the BackendTrafficPolicy that applies to each. New names are
 * asked at once; their answers arrive as a `changed` and a recompile.
 */
static void update_names(struct daemon *d)
{
	struct kb_resolver_name *names = NULL;
	struct kb_arena a = { 0 };
	size_t n = 0;

	for (size_t i = 0; i < d->compiled.nfes; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[i];

		for (size_t e = 0; e < fe->neps; e++)
			if (fe->eps[e].fqdn)
				add_name(&a, &names, &n, fe->eps[e].fqdn, fe->policy);
		for (size_t l = 0; l < fe->nlocs; l++)
			for (size_t p = 0; p < fe->locs[l].npending; p++)
				add_name(&a, &names, &n, fe->locs[l].pending[p], fe->policy);
	}
	if (kb_resolver_set_names(d->resolver, names, n))
		kb_err("failed to update the resolver's names: out of memory");
	kb_arena_free(&a);
}

/*
 * A DNS answer changed: recompile the stored state with the new answers and
 * swap. Unchanged frontends are not rewritten by the dataplane; a changed one
 * flips to its new selection in one map update.
 */
static void recompile(struct daemon *d)
{
	struct kb_compile_env env = compile_env(d);
	struct kb_compiled c = { 0 };
	int err;

	if (kb_compile(&d->state, &env, &c)) {
		kb_err("failed to recompile after a DNS change; keeping the current selection");
		kb_compiled_free(&c);
		return;
	}
	err = d->dp->ops->apply(d->dp, &c);
	if (err) {
		kb_err("failed to program a DNS change: %s; keeping the current selection", strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		kb_compiled_free(&c);
		return;
	}
	kb_compiled_free(&d->compiled);
	d->compiled = c;
	kb_log_debug("recompiled after a DNS change: %zu frontend(s)", c.nfes);
	update_names(d);
}

/* ---- applying changes ------------------------------------------------------ */

static bool same_object(const struct kb_meta *a, const struct kb_meta *b)
{
	return a->kind == b->kind && a->name && b->name && strcmp(a->name, b->name) == 0 &&
	       strcmp(a->namespace ? a->namespace : "default", b->namespace ? b->namespace : "default") == 0;
}

static const struct kb_meta *find_same(const struct kb_model *m, const struct kb_meta *o)
{
	for (size_t i = 0; i < m->nobjects; i++)
		if (same_object(m->objects[i], o))
			return m->objects[i];
	return NULL;
}

/* Parse the request's files ([{name, content}]) into m. */
static int load_request_files(struct kb_model *m, struct json_object *files)
{
	size_t n = files ? json_object_array_length(files) : 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(files, i), *jn, *jc;

		if (!json_object_object_get_ex(f, "name", &jn) || !json_object_object_get_ex(f, "content", &jc) ||
		    !json_object_is_type(jc, json_type_string))
			return -EINVAL;
		kb_manifest_load_buffer(m, json_object_get_string(jn), json_object_get_string(jc),
					(size_t)json_object_get_string_len(jc));
	}
	return 0;
}

/* Report objects that a single request defines twice: kubectl would silently keep the last one. */
static void check_duplicates(struct kb_model *m)
{
	for (size_t i = 0; i < m->nobjects; i++)
		for (size_t j = 0; j < i; j++)
			if (same_object(m->objects[i], m->objects[j])) {
				kb_diag_add(m, KB_SEV_ERROR, m->objects[i], "metadata.name",
					    "defined twice in one apply (first at %s:%d)", m->objects[j]->loc.file,
					    m->objects[j]->loc.line);
				break;
			}
}

static struct json_object *change_reply(struct kb_model *m, struct kb_compiled *c, bool ok, bool dry_run,
					const char *error)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(ok));
	if (dry_run)
		json_object_object_add(r, "dryRun", json_object_new_boolean(1));
	if (error)
		json_object_object_add(r, "error", json_object_new_string(error));
	json_object_object_add(r, "objects", kb_render_objects(m, NULL));
	json_object_object_add(r, "diagnostics", kb_render_diags(m));
	if (c)
		json_object_object_add(r, "frontends", kb_render_frontends(c));
	return r;
}

/*
 * Apply or delete: build the whole new desired state from the stored objects
 * and the request, validate and compile it, and only then touch the kernel.
 * Anything refused leaves the maps and the stored state exactly as they were.
 */
static struct json_object *do_change(struct daemon *d, struct json_object *files, bool del, bool dry_run)
{
	struct kb_model in, next;
	struct kb_compiled c = { 0 };
	struct json_object *reply;
	char why[512];
	int refused, err;

	kb_model_init(&in);
	kb_model_init(&next);
	if (load_request_files(&in, files)) {
		reply = kb_ctl_error("malformed request: files must be [{name, content}]");
		goto out;
	}
	check_duplicates(&in);
	if (in.nerrors) {
		snprintf(why, sizeof(why), "%zu error(s) in the input; nothing was changed", in.nerrors);
		reply = change_reply(&in, NULL, false, false, why);
		goto out_count;
	}
	if (del) {
		for (size_t i = 0; i < in.nobjects; i++)
			if (!find_same(&d->state, in.objects[i]))
				kb_diag_add(&in, KB_SEV_ERROR, in.objects[i], NULL, "not found: nothing to delete");
		if (in.nerrors) {
			reply = change_reply(&in, NULL, false, false, "delete refused; nothing was changed");
			goto out_count;
		}
	}
	/* The next state: stored objects not named by the request, then the request's objects. */
	for (size_t i = 0; i < d->state.nobjects; i++) {
		const struct kb_meta *o = d->state.objects[i];

		if (!find_same(&in, o) && o->src)
			kb_manifest_load_buffer(&next, o->loc.file, o->src, o->src_len);
	}
	if (!del)
		load_request_files(&next, files);
	refused = kb_validate(&next, &d->policy);
	if (refused || next.nerrors) {
		snprintf(why, sizeof(why), "%s refused: %d object(s) refused; nothing was changed",
			 del ? "delete" : "apply", refused);
		reply = change_reply(&next, NULL, false, false, why);
		goto out_count;
	}
	{
		struct kb_compile_env env = compile_env(d);

		err = kb_compile(&next, &env, &c);
	}
	if (err) {
		reply = change_reply(&next, NULL, false, false, "compile failed; nothing was changed");
		goto out_count;
	}
	if (dry_run) {
		reply = change_reply(&next, &c, true, true, NULL);
		goto out;
	}
	err = d->dp->ops->apply(d->dp, &c);
	if (err) {
		snprintf(why, sizeof(why), "failed to program the maps: %s; the previous state is kept",
			 strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		reply = change_reply(&next, NULL, false, false, why);
		goto out_count;
	}
	err = kb_store_save(d->state_dir, &next);
	if (err) {
		snprintf(why, sizeof(why), "failed to save state in %s: %s; the previous state is restored",
			 d->state_dir, strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		reply = change_reply(&next, NULL, false, false, why);
		goto out_count;
	}
	/* Commit: the new model and table replace the old ones. */
	kb_model_free(&d->state);
	kb_compiled_free(&d->compiled);
	d->state = next;
	d->compiled = c;
	kb_model_init(&next);
	memset(&c, 0, sizeof(c));
	d->applies++;
	d->last_apply = time(NULL);
	d->last_error[0] = '\0';
	kb_log_info("%s: %zu object(s) in the request, %zu stored, %zu frontend(s) programmed",
		    del ? "deleted" : "applied", in.nobjects, d->state.nobjects, d->compiled.nfes);
	update_names(d);
	reply = change_reply(&d->state, &d->compiled, true, false, NULL);
	goto out;
out_count:
	d->apply_errors++;
	{
		struct json_object *e;

		if (json_object_object_get_ex(reply, "error", &e))
			snprintf(d->last_error, sizeof(d->last_error), "%s", json_object_get_string(e));
		kb_log_info("%s refused: %s", del ? "delete" : "apply", d->last_error);
	}
out:
	kb_compiled_free(&c);
	kb_model_free(&next);
	kb_model_free(&in);
	return reply;
}

/* ---- read-only requests ------------------------------------------------------ */

static bool kind_matches(const char *what, enum kb_kind k)
{
	if (!what || strcmp(what, "all") == 0)
		return true;
	if (strcmp(what, "backends") == 0 || strcmp(what, "backend") == 0)
		return k == KB_KIND_BACKEND;
	if (strcmp(what, "gateways") == 0 || strcmp(what, "gateway") == 0)
		return k == KB_KIND_GATEWAY;
	if (strcmp(what, "routes") == 0 || strcmp(what, "route") == 0)
		return kb_kind_is_route(k);
	if (strcmp(what, "policies") == 0)
		return k == KB_KIND_BACKEND_TRAFFIC_POLICY;
	return false;
}

static const char *req_str(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static bool req_bool(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_get_boolean(v);
}

static struct json_object *stats_json(const struct kb_conn_stats *s)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "connects", json_object_new_int64((int64_t)s->connects));
	json_object_object_add(o, "refused", json_object_new_int64((int64_t)s->refused));
	json_object_object_add(o, "established", json_object_new_int64((int64_t)s->established));
	json_object_object_add(o, "failed", json_object_new_int64((int64_t)s->failed));
	return o;
}

/* Frontends as rendered by compile, with the kernel's per-CPU counters added. */
static struct json_object *frontends_with_stats(struct daemon *d)
{
	struct json_object *arr = kb_render_frontends(&d->compiled);

	for (size_t i = 0; i < d->compiled.nfes; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[i];
		struct json_object *jf = json_object_array_get_idx(arr, i), *eps, *locs;
		struct kb_conn_stats s = { 0 };

		if (d->dp->ops->frontend_stats && !d->dp->ops->frontend_stats(d->dp, fe, &s))
			json_object_object_add(jf, "stats", stats_json(&s));
		if (json_object_object_get_ex(jf, "localities", &locs))
			for (size_t l = 0; l < fe->nlocs; l++) {
				struct json_object *dns = json_object_new_object();

				/* Names that have no usable address yet: why, from the resolver. */
				for (size_t p = 0; p < fe->locs[l].npending; p++)
					json_object_object_add(dns, fe->locs[l].pending[p],
							       kb_resolver_name_json(d->resolver, fe->locs[l].pending[p]));
				json_object_object_add(json_object_array_get_idx(locs, l), "dns", dns);
			}
		if (!json_object_object_get_ex(jf, "endpoints", &eps))
			continue;
		for (size_t e = 0; e < fe->neps; e++) {
			struct json_object *je = json_object_array_get_idx(eps, e);

			memset(&s, 0, sizeof(s));
			if (d->dp->ops->endpoint_stats && !d->dp->ops->endpoint_stats(d->dp, fe, e, &s))
				json_object_object_add(je, "stats", stats_json(&s));
			if (fe->eps[e].fqdn)
				json_object_object_add(je, "dns", kb_resolver_name_json(d->resolver, fe->eps[e].fqdn));
		}
	}
	return arr;
}

static struct json_object *do_get(struct daemon *d, struct json_object *req)
{
	const char *what = req_str(req, "what"), *ns = req_str(req, "namespace"), *name = req_str(req, "name");
	struct json_object *r = json_object_new_object(), *items = json_object_new_array();

	json_object_object_add(r, "ok", json_object_new_boolean(1));
	if (what && (strcmp(what, "frontends") == 0 || strcmp(what, "endpoints") == 0)) {
		json_object_object_add(r, "frontends", frontends_with_stats(d));
		json_object_put(items);
		return r;
	}
	if (!what || !(kind_matches(what, KB_KIND_BACKEND) || kind_matches(what, KB_KIND_GATEWAY) ||
		       kind_matches(what, KB_KIND_HTTPROUTE) || kind_matches(what, KB_KIND_BACKEND_TRAFFIC_POLICY))) {
		json_object_put(r);
		json_object_put(items);
		return kb_ctl_error("unknown resource \"%s\": expected backends, gateways, routes, policies, "
				    "frontends or endpoints", what ? what : "");
	}
	for (size_t i = 0; i < d->state.nobjects; i++) {
		const struct kb_meta *o = d->state.objects[i];

		if (!kind_matches(what, o->kind))
			continue;
		if (ns && strcmp(ns, o->namespace ? o->namespace : "default") != 0)
			continue;
		if (name && strcmp(name, o->name) != 0)
			continue;
		json_object_array_add(items, kb_render_object(o));
	}
	json_object_object_add(r, "items", items);
	return r;
}

static struct json_object *do_status(struct daemon *d)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(1));
	json_object_object_add(r, "pid", json_object_new_int(getpid()));
	json_object_object_add(r, "uptimeSeconds", json_object_new_int64(time(NULL) - d->started));
	json_object_object_add(r, "bpffs", json_object_new_string(d->bpffs));
	json_object_object_add(r, "cgroup", json_object_new_string(d->cgroup));
	json_object_object_add(r, "stateDir", json_object_new_string(d->state_dir));
	json_object_object_add(r, "objects", json_object_new_int64((int64_t)d->state.nobjects));
	json_object_object_add(r, "frontends", json_object_new_int64((int64_t)d->compiled.nfes));
	json_object_object_add(r, "applies", json_object_new_int64((int64_t)d->applies));
	json_object_object_add(r, "applyErrors", json_object_new_int64((int64_t)d->apply_errors));
	json_object_object_add(r, "lastApply", json_object_new_int64(d->last_apply));
	if (d->last_error[0])
		json_object_object_add(r, "lastError", json_object_new_string(d->last_error));
	return r;
}

static struct json_object *handle(struct daemon *d, const char *msg)
{
	struct json_object *req = json_tokener_parse(msg), *files = NULL, *reply;
	const char *op;

	if (!req || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return kb_ctl_error("malformed request: not a JSON object");
	}
	op = req_str(req, "op");
	json_object_object_get_ex(req, "files", &files);
	if (files && !json_object_is_type(files, json_type_array))
		reply = kb_ctl_error("malformed request: files must be an array");
	else if (!op)
		reply = kb_ctl_error("malformed request: no \"op\"");
	else if (strcmp(op, "apply") == 0)
		reply = do_change(d, files, false, req_bool(req, "dryRun"));
	else if (strcmp(op, "delete") == 0)
		reply = do_change(d, files, true, req_bool(req, "dryRun"));
	else if (strcmp(op, "get") == 0)
		reply = do_get(d, req);
	else if (strcmp(op, "status") == 0)
		reply = do_status(d);
	else if (strcmp(op, "unload") == 0) {
		d->stop = d->unload = true;
		reply = json_object_new_object();
		json_object_object_add(reply, "ok", json_object_new_boolean(1));
	} else
		reply = kb_ctl_error("unknown op \"%s\"", op);
	json_object_put(req);
	return reply;
}

/* ---- the control socket --------------------------------------------------------- */

static void reply_and_close(struct client *c, struct json_object *reply)
{
	const char *s = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
	struct timeval tv = { .tv_sec = 2 };
	int fl = fcntl(c->fd, F_GETFL);

	/* Replies go out blocking but bounded, so a client that stops reading can't stall the loop for long. */
	fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	kb_ctl_write_frame(c->fd, s, strlen(s));
	json_object_put(reply);
	close(c->fd);
	kb_frame_reset(&c->rd);
	c->fd = -1;
}

static int listen_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		kb_err("failed to create control socket %s: path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0700);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	/* Created 0600 from the start: no window in which another user could connect. */
	mode_t old = umask(0177);

	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		int err = -errno;

		umask(old);
		kb_err("failed to listen on %s: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	umask(old);
	chmod(path, 0600);
	return fd;
}

static void accept_clients(struct daemon *d)
{
	for (;;) {
		struct ucred cred = { .uid = (uid_t)-1 };
		socklen_t len = sizeof(cred);
		struct client *c = NULL;
		int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		for (int i = 0; i < MAX_CLIENTS && !c; i++)
			if (d->clients[i].fd < 0)
				c = &d->clients[i];
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->deadline = now_ms() + CLIENT_DEADLINE_MS;
		memset(&c->rd, 0, sizeof(c->rd));
		/* The socket is 0600, and peer credentials are checked too, in case its mode was changed. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || (cred.uid != 0 && cred.uid != geteuid())) {
			kb_log_info("refused control connection from uid %u", (unsigned)cred.uid);
			reply_and_close(c, kb_ctl_error("permission denied: uid %u may not use the control socket",
							(unsigned)cred.uid));
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}

static void serve_client(struct daemon *d, struct client *c)
{
	int r = kb_frame_read(c->fd, &c->rd);

	if (r == 0)
		return;
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (r == -EMSGSIZE) {
		kb_log_info("refused an oversized control message (%zu bytes)", c->rd.len);
		reply_and_close(c, kb_ctl_error("message too large: %zu bytes (limit %u)", c->rd.len, KB_CTL_MAX_MSG));
	} else if (r < 0) {
		/* A truncated message: the client went away mid-frame. Nothing to answer. */
		close(c->fd);
		kb_frame_reset(&c->rd);
		c->fd = -1;
	} else {
		reply_and_close(c, handle(d, c->rd.msg));
	}
}

static void expire_clients(struct daemon *d)
{
	long now = now_ms();

	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &d->clients[i];

		if (c->fd >= 0 && now > c->deadline) {
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
			reply_and_close(c, kb_ctl_error("timed out waiting for a complete request"));
		}
	}
}

/* ---- start-up ----------------------------------------------------------------------- */

static bool has_pending_names(const struct kb_compiled *c)
{
	for (size_t i = 0; i < c->nfes; i++)
		for (size_t l = 0; l < c->fes[i].nlocs; l++)
			if (c->fes[i].locs[l].npending)
				return true;
	return false;
}

/* Restore the stored state and program it, so a restart reconciles with what the pins already serve. */
static void restore_state(struct daemon *d)
{
	struct kb_model m;
	struct kb_compiled c = { 0 };
	int refused, err;

	kb_model_init(&m);
	if (kb_store_load(d->state_dir, &m) < 0 || m.nerrors) {
		kb_err("failed to restore state from %s: unreadable; keeping what the maps serve", d->state_dir);
		kb_print_diags(stderr, &m);
		kb_model_free(&m);
		return;
	}
	struct kb_compile_env env = compile_env(d);

	refused = kb_validate(&m, &d->policy);
	if (refused || m.nerrors || kb_compile(&m, &env, &c)) {
		kb_err("failed to restore state from %s: %d object(s) refused under the current flags; "
		       "keeping what the maps serve", d->state_dir, refused);
		kb_print_diags(stderr, &m);
		snprintf(d->last_error, sizeof(d->last_error), "stored state refused under the current flags");
		kb_compiled_free(&c);
		kb_model_free(&m);
		return;
	}
	if (has_pending_names(&c)) {
		/*
		 * FQDN answers are not in yet: programming now would empty those
		 * localities. The pinned maps keep serving the old selection until
		 * the resolver has answered (or RESTORE_DNS_WAIT_MS has passed).
		 */
		d->state = m;
		d->compiled = c;
		d->restore_deadline = now_ms() + RESTORE_DNS_WAIT_MS;
		update_names(d);
		kb_log_info("restored %zu object(s) from %s; waiting for DNS before programming", m.nobjects,
			    d->state_dir);
		return;
	}
	err = d->dp->ops->apply(d->dp, &c);
	if (err) {
		kb_err("failed to program restored state: %s", strerror(-err));
		kb_compiled_free(&c);
		kb_model_free(&m);
		return;
	}
	d->state = m;
	d->compiled = c;
	update_names(d);
	kb_log_info("restored %zu object(s), %zu frontend(s) from %s", m.nobjects, c.nfes, d->state_dir);
}

/* An EnvoyGateway config file sets enableBackend unless --enable-backend was given. */
static int read_config(struct daemon *d)
{
	struct kb_model m;

	if (!d->config)
		return 0;
	kb_model_init(&m);
	kb_manifest_load_path(&m, d->config);
	if (m.nerrors) {
		kb_print_diags(stderr, &m);
		kb_err("failed to read config %s", d->config);
		kb_model_free(&m);
		return -EINVAL;
	}
	for (size_t i = 0; i < m.nenvoy_gateways; i++)
		if (d->policy.enable_backend < 0 && m.envoy_gateways[i]->enable_backend >= 0)
			d->policy.enable_backend = m.envoy_gateways[i]->enable_backend;
	kb_model_free(&m);
	return 0;
}

enum { OPT_CONFIG = 256, OPT_STATE_DIR, OPT_CGROUP, OPT_BPFFS, OPT_UNIX_DIR, OPT_ALLOW, OPT_SOCKET,
       OPT_ENABLE_BACKEND, OPT_CLUSTER_DOMAIN, OPT_DNS_SERVER, OPT_DNS_MIN_TTL, OPT_DNS_MAX_TTL };

static const struct option longopts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "cgroup", required_argument, NULL, OPT_CGROUP },
	{ "bpffs", required_argument, NULL, OPT_BPFFS },
	{ "unix-dir", required_argument, NULL, OPT_UNIX_DIR },
	{ "allow-endpoint", required_argument, NULL, OPT_ALLOW },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "enable-backend", no_argument, NULL, OPT_ENABLE_BACKEND },
	{ "cluster-domain", required_argument, NULL, OPT_CLUSTER_DOMAIN },
	{ "dns-server", required_argument, NULL, OPT_DNS_SERVER },
	{ "dns-min-ttl", required_argument, NULL, OPT_DNS_MIN_TTL },
	{ "dns-max-ttl", required_argument, NULL, OPT_DNS_MAX_TTL },
	{ "verbose", no_argument, NULL, 'v' },
	{ 0 },
};

static int parse_args(struct daemon *d, int argc, char **argv)
{
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_CONFIG:
			d->config = optarg;
			break;
		case OPT_STATE_DIR:
			d->state_dir = optarg;
			break;
		case OPT_CGROUP:
			d->cgroup = optarg;
			break;
		case OPT_BPFFS:
			d->bpffs = optarg;
			break;
		case OPT_UNIX_DIR:
			if (d->policy.nunix_dirs == MAX_FLAG_LIST)
				goto usage;
			d->unix_dirs[d->policy.nunix_dirs++] = optarg;
			break;
		case OPT_ALLOW:
			if (d->policy.nallow_cidrs == MAX_FLAG_LIST)
				goto usage;
			d->allow[d->policy.nallow_cidrs++] = optarg;
			break;
		case OPT_SOCKET:
			d->socket = optarg;
			break;
		case OPT_ENABLE_BACKEND:
			d->policy.enable_backend = 1;
			break;
		case OPT_CLUSTER_DOMAIN:
			d->policy.cluster_domain = optarg;
			break;
		case OPT_DNS_SERVER:
			if (d->ndns_servers == MAX_FLAG_LIST)
				goto usage;
			d->dns_servers[d->ndns_servers++] = optarg;
			break;
		case OPT_DNS_MIN_TTL:
		case OPT_DNS_MAX_TTL:
			if (!kb_parse_duration_ms(optarg, ch == OPT_DNS_MIN_TTL ? &d->dns_min_ttl_ms : &d->dns_max_ttl_ms)) {
				fprintf(stderr, "kbackend: daemon: --dns-%s-ttl %s: expected a duration like 5s or 10m\n",
					ch == OPT_DNS_MIN_TTL ? "min" : "max", optarg);
				goto usage;
			}
			break;
		case 'v':
			kb_verbosity++;
			break;
		default:
			goto usage;
		}
	}
	if (optind < argc || !d->cgroup) {
		fprintf(stderr, "kbackend: daemon: %s\n",
			d->cgroup ? "unexpected argument" : "--cgroup PATH is required (a cgroup v2 directory)");
		goto usage;
	}
	return 0;
usage:
	fprintf(stderr, "Try 'kbackend help daemon'.\n");
	return 2;
}

int kb_daemon_main(int argc, char **argv)
{
	struct daemon d = { .lfd = -1, .epfd = -1, .sigfd = -1 };
	struct kb_dataplane_opts dpo = { 0 };
	struct epoll_event ev;
	sigset_t mask;
	int err;

	kb_policy_init(&d.policy);
	d.policy.unix_dirs = d.unix_dirs;
	d.policy.allow_cidrs = d.allow;
	d.state_dir = KB_STATE_DIR_DEFAULT;
	d.bpffs = KB_PIN_DIR_DEFAULT;
	err = parse_args(&d, argc, argv);
	if (err)
		return err;
	d.socket = kb_ctl_socket_path(d.socket);
	for (int i = 0; i < MAX_CLIENTS; i++)
		d.clients[i].fd = -1;
	kb_model_init(&d.state);
	d.started = time(NULL);
	if (read_config(&d))
		return 1;

	dpo.bpffs = d.bpffs;
	dpo.cgroup = d.cgroup;
	{
		struct kb_resolver_opts ro = {
			.servers = d.dns_servers,
			.nservers = d.ndns_servers,
			.min_ttl_ms = d.dns_min_ttl_ms,
			.max_ttl_ms = d.dns_max_ttl_ms,
			.policy = &d.policy,
		};
		char why[256];

		d.resolver = kb_resolver_new(&ro, why, sizeof(why));
		if (!d.resolver) {
			kb_err("failed to start the resolver: %s", why);
			return 1;
		}
	}
	err = kb_dataplane_bpf_open(&dpo, &d.dp);
	if (err) {
		kb_resolver_free(d.resolver);
		return 1;
	}
	restore_state(&d);

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	d.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d.lfd = listen_socket(d.socket);
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d.sigfd < 0 || d.lfd < 0 || d.epfd < 0) {
		err = 1;
		goto out_close;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &d.lfd };
	epoll_ctl(d.epfd, EPOLL_CTL_ADD, d.lfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &d.sigfd };
	epoll_ctl(d.epfd, EPOLL_CTL_ADD, d.sigfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &d.resolver_tag };
	epoll_ctl(d.epfd, EPOLL_CTL_ADD, kb_resolver_epoll_fd(d.resolver), &ev);
	kb_log_info("serving %s; programs attached to %s, pinned under %s", d.socket, d.cgroup, d.bpffs);

	while (!d.stop) {
		struct epoll_event evs[16];
		int timeout = kb_resolver_timeout_ms(d.resolver);
		int n = epoll_wait(d.epfd, evs, 16, timeout < 0 || timeout > 1000 ? 1000 : timeout);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &d.resolver_tag) {
				kb_resolver_process(d.resolver);
			} else if (evs[i].data.ptr == &d.lfd) {
				accept_clients(&d);
			} else if (evs[i].data.ptr == &d.sigfd) {
				struct signalfd_siginfo si;

				if (read(d.sigfd, &si, sizeof(si)) == sizeof(si)) {
					kb_log_info("signal %u: stopping; pinned programs keep steering", si.ssi_signo);
					d.stop = true;
				}
			} else {
				serve_client(&d, evs[i].data.ptr);
			}
		}
		expire_clients(&d);
		kb_resolver_tick(d.resolver);
		if (d.restore_deadline) {
			/* A restart programs once DNS has answered everything, or once the wait is over. */
			if (kb_resolver_busy(d.resolver) == 0 || now_ms() > d.restore_deadline) {
				d.restore_deadline = 0;
				kb_resolver_changed(d.resolver);
				recompile(&d);
			}
		} else if (kb_resolver_changed(d.resolver)) {
			recompile(&d);
		}
	}
	err = 0;
out_close:
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (d.clients[i].fd >= 0) {
			close(d.clients[i].fd);
			kb_frame_reset(&d.clients[i].rd);
		}
	if (d.lfd >= 0)
		close(d.lfd);
	if (d.epfd >= 0)
		close(d.epfd);
	if (d.sigfd >= 0)
		close(d.sigfd);
	d.dp->ops->close(d.dp);
	if (d.unload) {
		err = kb_dataplane_unload(d.bpffs) ? 1 : 0;
		kb_log_info("unloaded: programs detached and pins removed from %s", d.bpffs);
	}
	/* Last, after unpinning: `kbackend unload` waits for the socket to go before it reports success. */
	if (d.lfd >= 0)
		unlink(d.socket);
	kb_resolver_free(d.resolver);
	kb_compiled_free(&d.compiled);
	kb_model_free(&d.state);
	return err;
}
