// SPDX-License-Identifier: Apache-2.0
/* The CLI commands that talk to the daemon: apply, delete, get, describe, status, stats, unload. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "control/control.h"
#include "ctl_int.h"
#include "dataplane/dataplane.h"
#include "manifest/manifest.h"


static char *read_stream(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	while (buf) {
		size_t r = fread(buf + n, 1, cap - n, f);

		n += r;
		if (r == 0)
			break;
		if (n == cap) {
			char *nb = cap >= KB_CTL_MAX_MSG ? NULL : realloc(buf, cap * 2);

			if (!nb) {
				free(buf);
				errno = EFBIG;
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
	}
	*len = n;
	return buf;
}

static int add_file(struct json_object *files, const char *name, FILE *f)
{
	struct json_object *jf;
	size_t len;
	char *buf = read_stream(f, &len);

	if (!buf)
		return -errno;
	jf = json_object_new_object();
	json_object_object_add(jf, "name", json_object_new_string(name));
	json_object_object_add(jf, "content", json_object_new_string_len(buf, (int)len));
	json_object_array_add(files, jf);
	free(buf);
	return 0;
}

/* Read -f paths as the parser would (a file, a directory's sorted YAML files, or stdin) into [{name, content}]. */
static int collect_files(struct opts *o, struct json_object *files)
{
	struct kb_arena a = { 0 };
	int err = 0;

	for (int i = 0; i < o->nfiles && !err; i++) {
		char **paths;
		size_t n;
		int r = kb_manifest_list_files(o->files[i], &a, &paths, &n);

		if (r < 0) {
			err = ctl_fail(o, "failed to read %s: %s", o->files[i], strerror(-r));
			break;
		}
		if (!n) {
			err = ctl_fail(o, "failed to read %s: no *.yaml or *.yml files in it", o->files[i]);
			break;
		}
		for (size_t k = 0; k < n && !err; k++) {
			bool in = strcmp(paths[k], "-") == 0;
			FILE *f = in ? stdin : fopen(paths[k], "r");

			if (!f || add_file(files, in ? "<stdin>" : paths[k], f))
				err = ctl_fail(o, "failed to read %s: %s", paths[k], strerror(errno));
			if (f && !in)
				fclose(f);
		}
	}
	kb_arena_free(&a);
	return err;
}

/* Send a request; on failure print one error line (naming the socket) and return NULL. */
static struct json_object *call(struct opts *o, struct json_object *req)
{
	struct json_object *reply = kb_ctl_call(o->socket, req, CALL_TIMEOUT_MS);

	json_object_put(req);
	if (!reply) {
		ctl_fail(o, "failed to reach the daemon at %s: %s%s", o->socket, strerror(errno),
		     errno == ENOENT || errno == ECONNREFUSED ? " (is `kbackend daemon` running?)" : "");
		return NULL;
	}
	return reply;
}

static struct json_object *request(const char *op)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "op", json_object_new_string(op));
	return r;
}

static bool reply_ok(struct json_object *reply)
{
	struct json_object *v;

	return json_object_object_get_ex(reply, "ok", &v) && json_object_get_boolean(v);
}

static const char *reply_error(struct json_object *reply)
{
	struct json_object *v;

	return json_object_object_get_ex(reply, "error", &v) ? json_object_get_string(v) : "unknown error";
}

/* Diagnostics, then the objects (only the refused ones when the change was refused), then the frontend plan. */
static void print_change_reply(struct json_object *reply, bool wide, bool dry_run)
{
	struct json_object *diags, *objs, *fes, *sum;
	bool ok = reply_ok(reply);

	if (json_object_object_get_ex(reply, "diagnostics", &diags))
		for (size_t i = 0; i < json_object_array_length(diags); i++) {
			struct json_object *t;

			if (json_object_object_get_ex(json_object_array_get_idx(diags, i), "text", &t))
				fprintf(stderr, "%s\n", json_object_get_string(t));
		}
	if (json_object_object_get_ex(reply, "objects", &objs))
		kb_print_objects_table(stdout, objs, !ok);
	if (ok && json_object_object_get_ex(reply, "summary", &sum))
		kb_print_objects_summary(stdout, sum);
	if (ok && dry_run && json_object_object_get_ex(reply, "frontends", &fes)) {
		fputc('\n', stdout);
		kb_print_frontends_table(stdout, fes, KB_TABLE_ENDPOINTS, wide);
	}
}

static int change(const char *cmd, int argc, char **argv, bool del)
{
	struct json_object *req, *reply, *files;
	struct opts o;
	int err;

	PARSE_OR_RETURN(cmd, argc, argv, &o);
	if (del && o.replace)
		return ctl_usage_error(cmd, "--replace is for apply");
	/* An offline dry run computes the files alone, which is what --replace means too. */
	if (!del && o.dry_run && (o.policy_flags || access(o.socket, F_OK))) {
		/* No daemon, or policy flags to try out: compute the dry run here, without root. */
		if (!o.nfiles || o.nargs)
			return ctl_usage_error(cmd, "-f FILE|DIR|- is required");
		return ctl_dry_run_offline(&o);
	}
	files = json_object_new_array();
	if (del && !o.nfiles) {
		/* `delete KIND NAME [-n NS]`: a minimal document naming the object. */
		enum kb_kind k;
		char doc[1024];

		if (o.nargs != 2) {
			json_object_put(files);
			return ctl_usage_error(cmd, "expected -f FILE or KIND NAME");
		}
		k = kb_kind_from_name(o.args[0]);
		/* Kinds kbackend does not use are deleted with -f (their apiVersion is the file's). */
		for (int i = 1; !k && i < KB_KIND__COUNT; i++)
			if (i != KB_KIND_FOREIGN && strcasecmp(o.args[0], kb_kind_name(i)) == 0)
				k = i;
		if (!k) {
			json_object_put(files);
			return ctl_usage_error(cmd, "unknown kind \"%s\"", o.args[0]);
		}
		snprintf(doc, sizeof(doc), "apiVersion: %s\nkind: %s\nmetadata:\n  name: \"%s\"\n  namespace: \"%s\"\n",
			 kb_kind_api_version(k), kb_kind_name(k), o.args[1], o.ns ? o.ns : "default");
		struct json_object *jf = json_object_new_object();

		json_object_object_add(jf, "name", json_object_new_string("<command line>"));
		json_object_object_add(jf, "content", json_object_new_string(doc));
		json_object_array_add(files, jf);
	} else {
		if (!o.nfiles || o.nargs) {
			json_object_put(files);
			return ctl_usage_error(cmd, "-f FILE|DIR|- is required");
		}
		err = collect_files(&o, files);
		if (err) {
			json_object_put(files);
			return err;
		}
	}
	req = request(del ? "delete" : o.replace ? "replace" : "apply");
	json_object_object_add(req, "files", files);
	json_object_object_add(req, "dryRun", json_object_new_boolean(o.dry_run));
	/* A table lists a large change briefly; -o wide, json and yaml list every object. */
	if (o.out != KB_OUT_TEXT)
		json_object_object_add(req, "all", json_object_new_boolean(1));
	reply = call(&o, req);
	if (!reply)
		return 1;
	err = reply_ok(reply) ? 0 : 1;
	if (ctl_machine_output(&o)) {
		kb_print_doc(stdout, reply, o.out);
	} else {
		print_change_reply(reply, o.out == KB_OUT_WIDE, o.dry_run);
		if (err)
			fprintf(stderr, "kbackend: %s\n", reply_error(reply));
	}
	json_object_put(reply);
	return err;
}

int ctl_cmd_apply(int argc, char **argv)
{
	return change("apply", argc, argv, false);
}

int ctl_cmd_delete(int argc, char **argv)
{
	return change("delete", argc, argv, true);
}

/* ---- read commands ---------------------------------------------------------------------- */

static int collect_item(void *ctx, struct json_object *item)
{
	return json_object_array_add(*(struct json_object **)ctx, json_object_get(item));
}

static void collect_reset(void *ctx)
{
	struct json_object **arr = ctx;

	json_object_put(*arr);
	*arr = json_object_new_array();
}

static void list_reset(void *ctx)
{
	struct ctl_list *l = ctx;
	enum ctl_list_kind kind = l->kind;
	struct opts o = { .out = l->out };

	ctl_list_discard(l);
	ctl_list_init(l, &o, kind);
}

/*
 * A read (req, taken) streamed from the daemon, each item passed to on_item
 * as it arrives. A read cut short because the state changed meanwhile is
 * read again (a few times), after reset(ctx), asking for it "whole": the
 * daemon then renders it in one turn of its loop, which no change can cut
 * (on a slow machine, while many names resolve, every streamed read was cut).
 * 0, or 1 with one error line printed.
 */
static int read_items(struct opts *o, const char *what_for, struct json_object *req,
		      int (*on_item)(void *, struct json_object *), void (*reset)(void *), void *ctx)
{
	for (int attempt = 1;; attempt++) {
		struct json_object *last, *v;

		last = kb_ctl_call_stream(o->socket, req, CALL_TIMEOUT_MS, on_item,
					  on_item == ctl_list_item ? ctl_list_rows : NULL, ctx);
		if (!last) {
			json_object_put(req);
			return ctl_fail(o, "failed to reach the daemon at %s: %s%s", o->socket, strerror(errno),
					errno == ENOENT || errno == ECONNREFUSED ? " (is `kbackend daemon` running?)" : "");
		}
		if (reply_ok(last)) {
			json_object_put(last);
			json_object_put(req);
			return 0;
		}
		if (attempt < 5 && json_object_object_get_ex(last, "retry", &v) && json_object_get_boolean(v)) {
			json_object_put(last);
			reset(ctx);
			json_object_object_add(req, "whole", json_object_new_boolean(1));
			continue;
		}
		ctl_fail(o, "failed to %s: %s", what_for, reply_error(last));
		json_object_put(last);
		json_object_put(req);
		return 1;
	}
}

static bool is_frontends(const char *what)
{
	return !strcmp(what, "frontends") || !strcmp(what, "endpoints");
}

int ctl_cmd_get(int argc, char **argv)
{
	struct json_object *req;
	struct ctl_list list;
	struct opts o;
	char what_for[300];

	PARSE_OR_RETURN("get", argc, argv, &o);
	static const char *const what[] = { "backends", "backend", "gateways", "gateway", "routes", "route",
					     "policies", "policy", "frontends", "endpoints", "all" };
	bool known = false;

	if (o.nargs < 1 || o.nargs > 2)
		return ctl_usage_error("get", "expected backends|gateways|routes|policies|frontends|endpoints [NAME]");
	for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++)
		known |= strcmp(o.args[0], what[i]) == 0;
	/* Said here, not by the daemon, so a typo is a usage error even when no daemon runs. */
	if (!known)
		return ctl_usage_error("get", "unknown resource \"%s\": expected backends, gateways, routes, policies, "
				       "frontends or endpoints", o.args[0]);
	if (o.ns && o.all_ns)
		return ctl_usage_error("get", "-n and -A exclude each other");
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string(o.args[0]));
	if (o.nargs == 2)
		json_object_object_add(req, "name", json_object_new_string(o.args[1]));
	/* Frontends are the node's: -n narrows them to a namespace's routes only when given. */
	if (is_frontends(o.args[0]) ? o.ns != NULL : !o.all_ns)
		json_object_object_add(req, "namespace", json_object_new_string(o.ns ? o.ns : "default"));
	if (o.labels)
		json_object_object_add(req, "labelSelector", json_object_new_string(o.labels));
	if (o.fields)
		json_object_object_add(req, "fieldSelector", json_object_new_string(o.fields));
	snprintf(what_for, sizeof(what_for), "get %s", o.args[0]);
	ctl_list_init(&list, &o, !is_frontends(o.args[0])		? CTL_LIST_OBJECTS
				 : strcmp(o.args[0], "endpoints") == 0 ? CTL_LIST_ENDPOINTS
								       : CTL_LIST_FRONTENDS);
	ctl_list_ask_rows(&list, req);
	if (read_items(&o, what_for, req, ctl_list_item, list_reset, &list)) {
		ctl_list_discard(&list);
		return 1;
	}
	return ctl_list_print(&list, stdout) ? ctl_fail(&o, "failed to print %s: out of memory", o.args[0]) : 0;
}

int ctl_cmd_describe(int argc, char **argv)
{
	struct json_object *req, *reply, *items, *fes = NULL;
	struct opts o;
	char key[512], sel[600];
	int err = 0;

	PARSE_OR_RETURN("describe", argc, argv, &o);
	if (o.nargs != 2 || strncmp(o.args[0], "backend", 7) != 0)
		return ctl_usage_error("describe", "expected: describe backend NAME [-n NS]");
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string("backends"));
	json_object_object_add(req, "name", json_object_new_string(o.args[1]));
	json_object_object_add(req, "namespace", json_object_new_string(o.ns ? o.ns : "default"));
	reply = call(&o, req);
	if (!reply)
		return 1;
	if (!reply_ok(reply) || !json_object_object_get_ex(reply, "items", &items) ||
	    json_object_array_length(items) == 0) {
		err = ctl_fail(&o, "failed to describe backend %s/%s: not found", o.ns ? o.ns : "default", o.args[1]);
		json_object_put(reply);
		return err;
	}
	snprintf(key, sizeof(key), "%s/%s", o.ns ? o.ns : "default", o.args[1]);
	snprintf(sel, sizeof(sel), "backend=%s", key);
	/* Only this Backend's frontends, found through the daemon's index. */
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string("frontends"));
	json_object_object_add(req, "fieldSelector", json_object_new_string(sel));
	fes = json_object_new_array();
	if (read_items(&o, "describe backend", req, collect_item, collect_reset, &fes)) {
		json_object_put(fes);
		json_object_put(reply);
		return 1;
	}
	/* Keep the frontends that hold a locality of this Backend (a daemon without selectors sends them all). */
	struct json_object *mine = json_object_new_array(), *doc = json_object_new_object();

	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i), *locs;

		json_object_object_get_ex(fe, "localities", &locs);
		for (size_t l = 0; locs && l < json_object_array_length(locs); l++)
			if (strcmp(kb_json_str(json_object_array_get_idx(locs, l), "backend"), key) == 0) {
				json_object_array_add(mine, json_object_get(fe));
				break;
			}
	}
	json_object_object_add(doc, "backend", json_object_get(json_object_array_get_idx(items, 0)));
	json_object_object_add(doc, "frontends", mine);
	if (ctl_machine_output(&o)) {
		kb_print_doc(stdout, doc, o.out);
	} else {
		struct json_object *st, *conds;

		printf("Name:       %s\nNamespace:  %s\nConditions:\n", o.args[1], o.ns ? o.ns : "default");
		json_object_object_get_ex(json_object_array_get_idx(items, 0), "status", &st);
		if (json_object_object_get_ex(st, "conditions", &conds))
			for (size_t c = 0; c < json_object_array_length(conds); c++) {
				struct json_object *jc = json_object_array_get_idx(conds, c);

				printf("  %s=%s (%s): %s\n", kb_json_str(jc, "type"), kb_json_str(jc, "status"), kb_json_str(jc, "reason"),
				       kb_json_str(jc, "message"));
			}
		printf("Frontends:  %zu\n", json_object_array_length(mine));
		for (size_t i = 0; i < json_object_array_length(mine); i++) {
			struct json_object *fe = json_object_array_get_idx(mine, i), *lv;

			char front[80];

			kb_json_hostport(front, sizeof(front), fe);
			printf("  %s/%s via %s (%s)\n", front, kb_json_str(fe, "protocol"), kb_json_str(fe, "route"), kb_json_str(fe, "loadBalancer"));
			json_object_object_get_ex(fe, "priorities", &lv);
			for (size_t l = 0; lv && l < json_object_array_length(lv); l++) {
				struct json_object *jl = json_object_array_get_idx(lv, l);

				printf("    priority %lld: %lld/%lld healthy, load %.2f%%%s\n",
				       kb_json_int(jl, "priority"), kb_json_int(jl, "healthy"),
				       kb_json_int(jl, "endpoints"),
				       json_object_get_double(json_object_object_get(jl, "loadPercent")),
				       json_object_get_boolean(json_object_object_get(jl, "panic")) ? " (panic)" : "");
			}
		}
		if (json_object_array_length(mine)) {
			printf("Endpoints:\n");
			kb_print_frontends_table(stdout, mine, KB_TABLE_ENDPOINTS, true);
		}
	}
	json_object_put(doc);
	json_object_put(fes);
	json_object_put(reply);
	return err;
}

/* The state line; when the stored state was not restored, loudly, with what is at risk and the way out. */
static void print_state(struct json_object *reply)
{
	struct json_object *sf = json_object_object_get(reply, "stateFile"), *un, *v;
	const char *problem = kb_json_str(sf, "problem"), *aside = kb_json_str(sf, "setAsideAs");

	if (!json_object_object_get_ex(reply, "degraded", &v) || !json_object_get_boolean(v)) {
		printf("state:       %lld object(s) in %s\n", kb_json_int(reply, "objects"), kb_json_str(reply, "stateDir"));
		if (*problem)
			printf("             at start: %s%s%s\n", problem, *aside ? "; set aside as " : "", aside);
		return;
	}
	printf("state:       DEGRADED: the stored state was not restored: %s\n", problem);
	if (*aside)
		printf("             the bad file is kept as %s\n", aside);
	if (json_object_object_get_ex(sf, "unaccountedFrontends", &un)) {
		printf("             the pinned maps still serve %zu frontend(s) no stored object accounts for:",
		       json_object_array_length(un));
		for (size_t i = 0; i < json_object_array_length(un) && i < 10; i++)
			printf(" %s", json_object_get_string(json_object_array_get_idx(un, i)));
		if (json_object_array_length(un) > 10)
			printf(" and %zu more (-o json lists them)", json_object_array_length(un) - 10);
		printf("\n             an apply or delete that would drop them is refused: %s\n", kb_json_str(sf, "wayOut"));
	}
}

/* "limits:  frontends 12/8192, ...": each map size and its use, so that operators see the headroom. */
static void print_limits(struct json_object *reply)
{
	static const char *const keys[] = { "frontends", "slots", "endpoints", "trackedSockets", "udpSenders" };
	static const char *const names[] = { "frontends", "slots", "endpoints", "tracked sockets", "UDP senders" };
	struct json_object *lim, *o;
	const char *sep = "";

	if (!json_object_object_get_ex(reply, "limits", &lim) || !json_object_object_length(lim))
		return;
	printf("limits:      ");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!json_object_object_get_ex(lim, keys[i], &o))
			continue;
		if (json_object_object_get_ex(o, "used", NULL))
			printf("%s%s %lld/%lld", sep, names[i], kb_json_int(o, "used"), kb_json_int(o, "max"));
		else
			printf("%s%s -/%lld", sep, names[i], kb_json_int(o, "max"));
		sep = ", ";
	}
	printf(" (--max-frontends, --max-slots, --max-endpoints, --max-tracked-sockets)\n");
}

/* --watch-dir: its last read, and each object it set aside (per-object acceptance) with the first error naming it. */
static void print_watch(struct json_object *reply)
{
	struct json_object *w, *refused, *ok;
	size_t n;

	if (!json_object_object_get_ex(reply, "watch", &w) || !json_object_is_type(w, json_type_object))
		return;
	printf("watch-dir:   %s: %lld file(s), %lld reload(s), last read %s\n", kb_json_str(w, "dir"),
	       kb_json_int(w, "files"), kb_json_int(w, "reloads"),
	       json_object_object_get_ex(w, "ok", &ok) && json_object_get_boolean(ok) ? "applied" : "refused");
	if (!json_object_object_get_ex(w, "refusedObjects", &refused))
		return;
	n = json_object_array_length(refused);
	printf("refused:     %zu object(s) set aside, not programmed (status -o yaml shows their conditions)\n", n);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(refused, i), *st, *diags;
		const char *first = "";

		if (json_object_object_get_ex(o, "status", &st) && json_object_object_get_ex(st, "diagnostics", &diags) &&
		    json_object_array_length(diags))
			first = kb_json_str(json_object_array_get_idx(diags, 0), "text");
		printf("  %s%s%s\n", kb_json_str(o, "object"), *first ? ": " : "", first);
	}
}

/* --kubernetes / --kubeconfig: the server, whether every kind is synced, and each kind's watch. */
static void print_kube(struct json_object *reply)
{
	struct json_object *k, *kinds, *v;

	if (!json_object_object_get_ex(reply, "kubernetes", &k) || !json_object_is_type(k, json_type_object))
		return;
	printf("kubernetes:  %s (%s): %s, %lld object(s), %lld refused, controller %s%s\n", kb_json_str(k, "server"),
	       kb_json_str(k, "config"),
	       json_object_object_get_ex(k, "synced", &v) && json_object_get_boolean(v) ? "synced" : "not synced",
	       kb_json_int(k, "objects"), kb_json_int(k, "refused"), kb_json_str(k, "controllerName"),
	       json_object_object_get_ex(k, "writesStatus", &v) && json_object_get_boolean(v) ? "" : ", no status");
	if (json_object_object_get_ex(k, "lastError", &v))
		printf("  last error: %s\n", json_object_get_string(v));
	if (json_object_object_get_ex(k, "statusWriter", &v))
		printf("  status:   %s (holder %s), %lld write(s), %lld unchanged, %lld conflict(s), %lld error(s)\n",
		       json_object_get_boolean(json_object_object_get(v, "leader")) ? "leader, writes status" : "follower",
		       *kb_json_str(v, "holder") ? kb_json_str(v, "holder") : "none", kb_json_int(v, "writes"),
		       kb_json_int(v, "unchanged"), kb_json_int(v, "conflicts"), kb_json_int(v, "errors"));
	if (!json_object_object_get_ex(k, "kinds", &kinds))
		return;
	for (size_t i = 0; i < json_object_array_length(kinds); i++) {
		struct json_object *j = json_object_array_get_idx(kinds, i), *served;
		bool skipped = json_object_object_get_ex(j, "served", &served) && served && !json_object_get_boolean(served);

		if (skipped) {
			printf("  %-20s not served: skipped\n", kb_json_str(j, "kind"));
			continue;
		}
		printf("  %-20s %-9s rv %-10s %lld event(s), %lld relist(s), %lld error(s), %lld refused%s%s\n",
		       kb_json_str(j, "kind"), *kb_json_str(j, "version") ? kb_json_str(j, "version") : "?",
		       *kb_json_str(j, "resourceVersion") ? kb_json_str(j, "resourceVersion") : "-", kb_json_int(j, "events"),
		       kb_json_int(j, "relists"), kb_json_int(j, "errors"), kb_json_int(j, "refused"),
		       json_object_object_get_ex(j, "lastError", &v) ? ": " : "", v ? json_object_get_string(v) : "");
	}
}

/* One line: the kernel, and the features it lacks (docs/OPERATIONS.md says what each costs). */
static void print_features(struct json_object *reply)
{
	struct json_object *all = json_object_object_get(reply, "features");
	const char *sep = "";

	printf("kernel:      %s, ", kb_json_str(reply, "kernel"));
	json_object_object_foreach(all, name, f) {
		if (json_object_get_boolean(json_object_object_get(f, "present")))
			continue;
		printf("%s%s (since %s)", *sep ? sep : "absent: ", name, kb_json_str(f, "since"));
		sep = ", ";
	}
	printf("%s\n", *sep ? "" : "every feature kbackend uses present");
}

int ctl_cmd_status(int argc, char **argv)
{
	struct json_object *reply, *un;
	struct opts o;
	int err;

	PARSE_OR_RETURN("status", argc, argv, &o);
	if (o.nargs)
		return ctl_usage_error("status", "unexpected argument");
	reply = call(&o, request("status"));
	if (!reply)
		return 1;
	err = reply_ok(reply) ? 0 : 1;
	if (ctl_machine_output(&o)) {
		kb_print_doc(stdout, reply, o.out);
	} else {
		printf("daemon:      running (pid %lld, up %llds)\n", kb_json_int(reply, "pid"),
		       kb_json_int(reply, "uptimeSeconds"));
		printf("programs:    attached to %s, pinned under %s\n", kb_json_str(reply, "cgroup"), kb_json_str(reply, "bpffs"));
		print_state(reply);
		printf("frontends:   %lld programmed", kb_json_int(reply, "frontends"));
		if (json_object_object_get_ex(json_object_object_get(reply, "stateFile"), "unaccountedFrontends", &un))
			printf(", %zu more still served from the pins", json_object_array_length(un));
		printf("\n");
		print_limits(reply);
		print_features(reply);
		printf("applies:     %lld ok, %lld refused\n", kb_json_int(reply, "applies"),
		       kb_json_int(reply, "applyErrors"));
		if (*kb_json_str(reply, "lastError"))
			printf("last error:  %s\n", kb_json_str(reply, "lastError"));
		print_watch(reply);
		print_kube(reply);
	}
	json_object_put(reply);
	return err;
}

/*
 * `kbackend verify`: the daemon compiles its stored objects from scratch and
 * compares; exit 1 with each difference when the incremental state disagrees.
 */
int ctl_cmd_verify(int argc, char **argv)
{
	struct json_object *reply, *diffs;
	struct opts o;
	int err;

	PARSE_OR_RETURN("verify", argc, argv, &o);
	if (o.nargs)
		return ctl_usage_error("verify", "unexpected argument");
	reply = call(&o, request("verify"));
	if (!reply)
		return 1;
	err = reply_ok(reply) ? 0 : 1;
	if (ctl_machine_output(&o)) {
		kb_print_doc(stdout, reply, o.out);
	} else if (!err) {
		printf("verified: %lld object(s) and %lld frontend(s) equal a from-scratch compile (%lld ms)\n",
		       kb_json_int(reply, "objects"), kb_json_int(reply, "frontends"), kb_json_int(reply, "milliseconds"));
	} else if (json_object_object_get_ex(reply, "differences", &diffs)) {
		fprintf(stderr, "kbackend: verify: %lld difference(s) from a from-scratch compile:\n",
			kb_json_int(reply, "differenceCount"));
		for (size_t i = 0; i < json_object_array_length(diffs); i++)
			fprintf(stderr, "  %s\n", json_object_get_string(json_object_array_get_idx(diffs, i)));
	}
	json_object_put(reply);
	return err;
}

/* One stats snapshot: the frontends with their per-CPU counters summed by the daemon. */
static int stats_once(struct opts *o)
{
	struct json_object *req;
	struct ctl_list list;
	int err;

	req = request("get");
	json_object_object_add(req, "what", json_object_new_string("frontends"));
	ctl_list_init(&list, o, CTL_LIST_STATS);
	ctl_list_ask_rows(&list, req);
	if (read_items(o, "read stats", req, ctl_list_item, list_reset, &list)) {
		ctl_list_discard(&list);
		return 1;
	}
	err = ctl_list_print(&list, stdout) ? ctl_fail(o, "failed to print stats: out of memory") : 0;
	fflush(stdout);
	return err;
}

int ctl_cmd_stats(int argc, char **argv)
{
	struct opts o;
	int err;

	PARSE_OR_RETURN("stats", argc, argv, &o);
	if (o.nargs)
		return ctl_usage_error("stats", "unexpected argument");
	/* --watch: a snapshot every 2 s until interrupted; JSON mode prints one document per snapshot. */
	while (!(err = stats_once(&o)) && o.watch) {
		sleep(2);
		if (!ctl_machine_output(&o))
			printf("\n");
	}
	return err;
}

int ctl_cmd_unload(int argc, char **argv)
{
	struct json_object *reply;
	struct opts o;

	PARSE_OR_RETURN("unload", argc, argv, &o);
	if (o.nargs)
		return ctl_usage_error("unload", "unexpected argument");
	if (access(o.socket, F_OK) == 0) {
		reply = call(&o, request("unload"));
		if (reply) {
			int ok = reply_ok(reply);

			json_object_put(reply);
			if (!ok)
				return ctl_fail(&o, "failed to unload: the daemon refused");
			/* The daemon removes its socket last, after detaching and unpinning. */
			for (int i = 0; i < 100 && access(o.socket, F_OK) == 0; i++)
				usleep(50 * 1000);
			if (access(o.socket, F_OK) == 0)
				return ctl_fail(&o, "failed to unload: the daemon accepted but still serves %s after 5 s",
						o.socket);
			printf("unloaded: daemon stopped, programs detached, pins removed\n");
			return 0;
		}
	}
	/* No daemon: detach and unpin directly, so unload works after a crash too. */
	if (kb_dataplane_unload(o.bpffs))
		return ctl_fail(&o, "failed to unload %s", o.bpffs);
	printf("unloaded: programs detached, pins removed from %s\n", o.bpffs);
	return 0;
}
