// SPDX-License-Identifier: Apache-2.0
/* The kbackend CLI: the command table, argument parsing, offline commands and control-socket clients. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compile.h"
#include "control.h"
#include "ctl.h"
#include "daemon.h"
#include "dataplane.h"
#include "manifest.h"
#include "render.h"
#include "validate.h"

#ifndef KB_VERSION
#define KB_VERSION "0.1.0"
#endif

#define MAX_LIST 64
#define CALL_TIMEOUT_MS 60000

struct kb_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;	/* arguments after the command name */
	const char *summary;
};

static const struct kb_cmd *cmd_find(const char *name);
static void cmd_help_one(FILE *f, const struct kb_cmd *c);

/* Every option any client command takes; each command checks what applies to it. */
struct opts {
	const char *files[MAX_LIST];
	int nfiles;
	enum kb_output out;
	bool out_set;
	bool dry_run;
	struct kb_policy policy;
	bool policy_flags;	/* a policy flag was given: this dry run is computed offline */
	const char *config;
	char *unix_dirs[MAX_LIST];
	char *allow[MAX_LIST];
	const char *socket;
	const char *bpffs;
	const char *ns;
	bool all_ns;
	char **args;		/* positional arguments */
	int nargs;
};

enum { OPT_ENABLE_BACKEND = 256, OPT_UNIX_DIR, OPT_ALLOW, OPT_CLUSTER_DOMAIN, OPT_CONFIG, OPT_DRY_RUN, OPT_SOCKET,
       OPT_BPFFS };

static const struct option client_longopts[] = {
	{ "filename", required_argument, NULL, 'f' },
	{ "output", required_argument, NULL, 'o' },
	{ "namespace", required_argument, NULL, 'n' },
	{ "all-namespaces", no_argument, NULL, 'A' },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "enable-backend", no_argument, NULL, OPT_ENABLE_BACKEND },
	{ "unix-dir", required_argument, NULL, OPT_UNIX_DIR },
	{ "allow-endpoint", required_argument, NULL, OPT_ALLOW },
	{ "cluster-domain", required_argument, NULL, OPT_CLUSTER_DOMAIN },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "bpffs", required_argument, NULL, OPT_BPFFS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kbackend: %s: %s\n", cmd, buf);
	fprintf(stderr, "Try 'kbackend help %s'.\n", cmd);
	return 2;
}

/* Returns 0, 2 (usage error, already printed) or -1 (help was printed: exit 0). */
static int parse_opts(const char *cmd, int argc, char **argv, struct opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	kb_policy_init(&o->policy);
	o->policy.unix_dirs = o->unix_dirs;
	o->policy.allow_cidrs = o->allow;
	o->bpffs = KB_PIN_DIR_DEFAULT;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "f:o:n:Avh", client_longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (o->nfiles == MAX_LIST)
				return usage_error(cmd, "too many -f arguments");
			o->files[o->nfiles++] = optarg;
			break;
		case 'o':
			if (!kb_output_parse(optarg, &o->out))
				return usage_error(cmd, "-o %s: expected wide, json or yaml", optarg);
			o->out_set = true;
			break;
		case 'n':
			o->ns = optarg;
			break;
		case 'A':
			o->all_ns = true;
			break;
		case OPT_DRY_RUN:
			o->dry_run = true;
			break;
		case OPT_ENABLE_BACKEND:
			o->policy.enable_backend = 1;
			o->policy_flags = true;
			break;
		case OPT_UNIX_DIR:
			if (o->policy.nunix_dirs == MAX_LIST)
				return usage_error(cmd, "too many --unix-dir arguments");
			o->unix_dirs[o->policy.nunix_dirs++] = optarg;
			o->policy_flags = true;
			break;
		case OPT_ALLOW:
			if (o->policy.nallow_cidrs == MAX_LIST)
				return usage_error(cmd, "too many --allow-endpoint arguments");
			o->allow[o->policy.nallow_cidrs++] = optarg;
			o->policy_flags = true;
			break;
		case OPT_CLUSTER_DOMAIN:
			o->policy.cluster_domain = optarg;
			o->policy_flags = true;
			break;
		case OPT_CONFIG:
			o->config = optarg;
			o->policy_flags = true;
			break;
		case OPT_SOCKET:
			o->socket = optarg;
			break;
		case OPT_BPFFS:
			o->bpffs = optarg;
			break;
		case 'v':
			kb_verbosity++;
			break;
		case 'h':
			cmd_help_one(stdout, cmd_find(cmd));
			return -1;
		default:
			return usage_error(cmd, "unknown option");
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	o->socket = kb_ctl_socket_path(o->socket);
	return 0;
}

#define PARSE_OR_RETURN(cmd, argc, argv, o)                         \
	do {                                                        \
		int _e = parse_opts((cmd), (argc), (argv), (o));    \
		if (_e)                                             \
			return _e < 0 ? 0 : _e;                     \
	} while (0)

static bool machine_output(const struct opts *o)
{
	return o->out == KB_OUT_JSON || o->out == KB_OUT_YAML;
}

/* One error line, or {"error": ...} in JSON/YAML mode. Returns 1. */
static int fail(const struct opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const struct opts *o, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (machine_output(o)) {
		struct json_object *e = json_object_new_object();

		json_object_object_add(e, "error", json_object_new_string(buf));
		kb_print_doc(stdout, e, o->out);
		json_object_put(e);
	}
	fprintf(stderr, "kbackend: %s\n", buf);
	return 1;
}

/* ---- offline: validate and apply --dry-run ------------------------------------- */

/* Parse the config and every -f into m, then validate. Returns the number of refused objects. */
static int load_and_validate(struct opts *o, struct kb_model *m)
{
	kb_model_init(m);
	if (o->config)
		kb_manifest_load_path(m, o->config);
	for (int i = 0; i < o->nfiles; i++)
		kb_manifest_load_path(m, o->files[i]);
	return kb_validate(m, &o->policy);
}

static int cmd_validate(int argc, char **argv)
{
	struct kb_model m;
	struct opts o;
	int err, refused;

	PARSE_OR_RETURN("validate", argc, argv, &o);
	if (!o.nfiles || o.nargs)
		return usage_error("validate", o.nargs ? "unexpected argument" : "-f FILE|DIR|- is required");
	refused = load_and_validate(&o, &m);
	if (machine_output(&o)) {
		struct json_object *doc = kb_render_objects(&m, NULL);

		json_object_object_add(doc, "diagnostics", kb_render_diags(&m));
		kb_print_doc(stdout, doc, o.out);
		json_object_put(doc);
	} else {
		kb_print_diags(stderr, &m);
		kb_print_status_table(stdout, &m, o.out == KB_OUT_WIDE);
	}
	err = (refused || m.nerrors) ? 1 : 0;
	kb_model_free(&m);
	return err;
}

static int dry_run_offline(struct opts *o)
{
	struct kb_compiled c = { 0 };
	struct kb_model m;
	int err, refused;

	refused = load_and_validate(o, &m);
	/* Like the daemon's apply, a dry run is all or nothing: a refusal compiles nothing. */
	if (!refused && !m.nerrors && kb_compile(&m, NULL, &c) != 0)
		refused = 1;
	if (machine_output(o)) {
		struct json_object *doc = json_object_new_object();

		json_object_object_add(doc, "dryRun", json_object_new_boolean(1));
		json_object_object_add(doc, "ok", json_object_new_boolean(!refused && !m.nerrors));
		json_object_object_add(doc, "objects", kb_render_objects(&m, NULL));
		json_object_object_add(doc, "frontends", kb_render_frontends(&c));
		json_object_object_add(doc, "diagnostics", kb_render_diags(&m));
		kb_print_doc(stdout, doc, o->out);
		json_object_put(doc);
	} else {
		kb_print_diags(stderr, &m);
		kb_print_status_table(stdout, &m, o->out == KB_OUT_WIDE);
		if (!refused && !m.nerrors) {
			fputc('\n', stdout);
			kb_print_frontend_table(stdout, &c, o->out == KB_OUT_WIDE);
		} else {
			fprintf(stderr, "kbackend: dry run refused: %d object(s) refused, %zu error(s); nothing would "
					"be applied\n", refused, m.nerrors);
		}
	}
	err = (refused || m.nerrors) ? 1 : 0;
	kb_compiled_free(&c);
	kb_model_free(&m);
	return err;
}

/* ---- talking to the daemon ---------------------------------------------------------- */

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

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read -f paths as the parser would (a file, a directory's sorted YAML files, or stdin) into [{name, content}]. */
static int collect_files(struct opts *o, struct json_object *files)
{
	for (int i = 0; i < o->nfiles; i++) {
		const char *p = o->files[i];
		struct stat st;

		if (strcmp(p, "-") == 0) {
			if (add_file(files, "<stdin>", stdin))
				return fail(o, "failed to read stdin: %s", strerror(errno));
			continue;
		}
		if (stat(p, &st))
			return fail(o, "failed to read %s: %s", p, strerror(errno));
		if (S_ISDIR(st.st_mode)) {
			struct dirent **ents;
			int n = scandir(p, &ents, NULL, alphasort), found = 0;

			if (n < 0)
				return fail(o, "failed to read %s: %s", p, strerror(errno));
			for (int k = 0; k < n; k++) {
				const char *nm = ents[k]->d_name;
				size_t l = strlen(nm);
				char path[4096];
				FILE *f;

				if ((l > 5 && strcmp(nm + l - 5, ".yaml") == 0) || (l > 4 && strcmp(nm + l - 4, ".yml") == 0)) {
					snprintf(path, sizeof(path), "%s%s%s", p, p[strlen(p) - 1] == '/' ? "" : "/", nm);
					f = fopen(path, "r");
					if (!f || add_file(files, path, f)) {
						if (f)
							fclose(f);
						for (; k < n; k++)
							free(ents[k]);
						free(ents);
						return fail(o, "failed to read %s: %s", path, strerror(errno));
					}
					fclose(f);
					found++;
				}
				free(ents[k]);
			}
			free(ents);
			if (!found)
				return fail(o, "failed to read %s: no *.yaml or *.yml files in it", p);
		} else {
			FILE *f = fopen(p, "r");

			if (!f || add_file(files, p, f)) {
				if (f)
					fclose(f);
				return fail(o, "failed to read %s: %s", p, strerror(errno));
			}
			fclose(f);
		}
	}
	(void)cmp_str;
	return 0;
}

/* Send a request; on failure print one error line (naming the socket) and return NULL. */
static struct json_object *call(struct opts *o, struct json_object *req)
{
	struct json_object *reply = kb_ctl_call(o->socket, req, CALL_TIMEOUT_MS);

	json_object_put(req);
	if (!reply) {
		fail(o, "failed to reach the daemon at %s: %s%s", o->socket, strerror(errno),
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

/* Print diagnostics and a status table from a reply's "diagnostics" and "objects" (List). */
static void print_change_reply(struct json_object *reply, bool wide)
{
	struct json_object *diags, *objs, *items;

	if (json_object_object_get_ex(reply, "diagnostics", &diags))
		for (size_t i = 0; i < json_object_array_length(diags); i++) {
			struct json_object *t;

			if (json_object_object_get_ex(json_object_array_get_idx(diags, i), "text", &t))
				fprintf(stderr, "%s\n", json_object_get_string(t));
		}
	if (!json_object_object_get_ex(reply, "objects", &objs) || !json_object_object_get_ex(objs, "items", &items))
		return;
	fprintf(stdout, "%-21s %-12s %-28s %-9s %s\n", "KIND", "NAMESPACE", "NAME", "VERDICT", "MESSAGE");
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct json_object *it = json_object_array_get_idx(items, i), *md, *st, *conds, *kind, *name, *ns;
		const char *verdict = "Accepted", *msg = "";

		json_object_object_get_ex(it, "kind", &kind);
		json_object_object_get_ex(it, "metadata", &md);
		json_object_object_get_ex(md, "name", &name);
		json_object_object_get_ex(md, "namespace", &ns);
		json_object_object_get_ex(it, "status", &st);
		/* Flatten the object's and its parents' conditions: the first False one decides. */
		struct json_object *lists[MAX_LIST];
		size_t nl = 0, np;
		struct json_object *parents;

		if (json_object_object_get_ex(st, "conditions", &conds))
			lists[nl++] = conds;
		if (json_object_object_get_ex(st, "parents", &parents)) {
			np = json_object_array_length(parents);
			for (size_t p = 0; p < np && nl < MAX_LIST; p++)
				if (json_object_object_get_ex(json_object_array_get_idx(parents, p), "conditions",
							      &conds))
					lists[nl++] = conds;
		}
		for (size_t l = 0; l < nl; l++)
			for (size_t c = 0; c < json_object_array_length(lists[l]); c++) {
				struct json_object *jc = json_object_array_get_idx(lists[l], c), *s, *m;

				json_object_object_get_ex(jc, "status", &s);
				json_object_object_get_ex(jc, "message", &m);
				if (strcmp(json_object_get_string(s), "False") == 0 && strcmp(verdict, "Refused")) {
					verdict = "Refused";
					msg = json_object_get_string(m);
				} else if (!*msg) {
					msg = m ? json_object_get_string(m) : "";
				}
			}
		fprintf(stdout, "%-21s %-12s %-28s %-9s %.*s\n", json_object_get_string(kind),
			ns ? json_object_get_string(ns) : "", json_object_get_string(name), verdict, wide ? 4096 : 80,
			msg);
	}
}

static int change(const char *cmd, int argc, char **argv, bool del)
{
	struct json_object *req, *reply, *files;
	struct opts o;
	int err;

	PARSE_OR_RETURN(cmd, argc, argv, &o);
	if (!del && o.dry_run && (o.policy_flags || access(o.socket, F_OK))) {
		/* No daemon, or policy flags to try out: compute the dry run here, without root. */
		if (!o.nfiles || o.nargs)
			return usage_error(cmd, "-f FILE|DIR|- is required");
		return dry_run_offline(&o);
	}
	files = json_object_new_array();
	if (del && !o.nfiles) {
		/* `delete KIND NAME [-n NS]`: a minimal document naming the object. */
		enum kb_kind k;
		char doc[1024];

		if (o.nargs != 2) {
			json_object_put(files);
			return usage_error(cmd, "expected -f FILE or KIND NAME");
		}
		k = kb_kind_from_name(o.args[0]);
		for (int i = 1; !k && i < KB_KIND__COUNT; i++)
			if (strcasecmp(o.args[0], kb_kind_name(i)) == 0)
				k = i;
		if (!k) {
			json_object_put(files);
			return usage_error(cmd, "unknown kind \"%s\"", o.args[0]);
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
			return usage_error(cmd, "-f FILE|DIR|- is required");
		}
		err = collect_files(&o, files);
		if (err) {
			json_object_put(files);
			return err;
		}
	}
	req = request(del ? "delete" : "apply");
	json_object_object_add(req, "files", files);
	json_object_object_add(req, "dryRun", json_object_new_boolean(o.dry_run));
	reply = call(&o, req);
	if (!reply)
		return 1;
	err = reply_ok(reply) ? 0 : 1;
	if (machine_output(&o)) {
		kb_print_doc(stdout, reply, o.out);
	} else {
		print_change_reply(reply, o.out == KB_OUT_WIDE);
		if (err)
			fprintf(stderr, "kbackend: %s\n", reply_error(reply));
	}
	json_object_put(reply);
	return err;
}

static int cmd_apply(int argc, char **argv)
{
	return change("apply", argc, argv, false);
}

static int cmd_delete(int argc, char **argv)
{
	return change("delete", argc, argv, true);
}

/* ---- read commands ---------------------------------------------------------------------- */

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

static int64_t jint(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static void print_frontends(struct json_object *fes, bool endpoints_only, bool wide)
{
	if (endpoints_only)
		printf("%-26s %-26s %-6s %-4s %-7s %-8s %-10s %-10s\n", "FRONTEND", "ENDPOINT", "PRIO", "WT",
		       "HEALTHY", "SHARE%", "CONNECTS", "FAILED");
	else
		printf("%-26s %-5s %-14s %-28s %-10s %-6s %-10s %-8s\n", "FRONTEND", "PROTO", "LB", "ROUTE",
		       "ENDPOINTS", "SLOTS", "CONNECTS", "REFUSED");
	for (size_t i = 0; i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i), *eps, *st = NULL;
		char front[80];
		const char *addr = jstr(fe, "address");

		snprintf(front, sizeof(front), strchr(addr, ':') ? "[%s]:%lld" : "%s:%lld", addr,
			 (long long)jint(fe, "port"));
		json_object_object_get_ex(fe, "stats", &st);
		json_object_object_get_ex(fe, "endpoints", &eps);
		if (!endpoints_only) {
			printf("%-26s %-5s %-14s %-28s %-10zu %-6lld %-10lld %-8lld\n", front, jstr(fe, "protocol"),
			       jstr(fe, "loadBalancer"), jstr(fe, "route"), json_object_array_length(eps),
			       (long long)jint(fe, "slots"), (long long)(st ? jint(st, "connects") : 0),
			       (long long)(st ? jint(st, "refused") : 0));
			continue;
		}
		for (size_t e = 0; e < json_object_array_length(eps); e++) {
			struct json_object *ep = json_object_array_get_idx(eps, e), *es = NULL, *h;
			char where[300];
			const char *a = jstr(ep, "address");

			if (strcmp(jstr(ep, "type"), "Unix") == 0)
				snprintf(where, sizeof(where), "unix:%s", a);
			else
				snprintf(where, sizeof(where), strchr(a, ':') ? "[%s]:%lld" : "%s:%lld", a,
					 (long long)jint(ep, "port"));
			json_object_object_get_ex(ep, "stats", &es);
			json_object_object_get_ex(ep, "healthy", &h);
			printf("%-26s %-26s %-6lld %-4lld %-7s %-8.2f %-10lld %-10lld%s%s\n", e ? "" : front, where,
			       (long long)jint(ep, "priority"), (long long)jint(ep, "weight"),
			       json_object_get_boolean(h) ? "yes" : "no",
			       json_object_get_double(json_object_object_get(ep, "sharePercent")),
			       (long long)(es ? jint(es, "connects") : 0), (long long)(es ? jint(es, "failed") : 0),
			       wide ? "  " : "", wide ? jstr(ep, "backend") : "");
		}
	}
}

static int cmd_get(int argc, char **argv)
{
	struct json_object *req, *reply, *items, *fes;
	struct opts o;
	int err = 0;

	PARSE_OR_RETURN("get", argc, argv, &o);
	if (o.nargs < 1 || o.nargs > 2)
		return usage_error("get", "expected backends|gateways|routes|policies|frontends|endpoints [NAME]");
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string(o.args[0]));
	if (o.nargs == 2)
		json_object_object_add(req, "name", json_object_new_string(o.args[1]));
	if (!o.all_ns)
		json_object_object_add(req, "namespace", json_object_new_string(o.ns ? o.ns : "default"));
	reply = call(&o, req);
	if (!reply)
		return 1;
	if (!reply_ok(reply)) {
		err = fail(&o, "failed to get %s: %s", o.args[0], reply_error(reply));
	} else if (json_object_object_get_ex(reply, "frontends", &fes)) {
		if (machine_output(&o))
			kb_print_doc(stdout, fes, o.out);
		else
			print_frontends(fes, strcmp(o.args[0], "endpoints") == 0, o.out == KB_OUT_WIDE);
	} else if (json_object_object_get_ex(reply, "items", &items)) {
		struct json_object *list = json_object_new_object();

		json_object_object_add(list, "apiVersion", json_object_new_string("v1"));
		json_object_object_add(list, "kind", json_object_new_string("List"));
		json_object_object_add(list, "items", json_object_get(items));
		if (machine_output(&o))
			kb_print_doc(stdout, list, o.out);
		else {
			json_object_object_add(reply, "objects", json_object_get(list));
			print_change_reply(reply, o.out == KB_OUT_WIDE);
		}
		json_object_put(list);
	}
	json_object_put(reply);
	return err;
}

static int cmd_describe(int argc, char **argv)
{
	struct json_object *req, *reply, *items, *fes = NULL, *freply;
	struct opts o;
	char key[512];
	int err = 0;

	PARSE_OR_RETURN("describe", argc, argv, &o);
	if (o.nargs != 2 || strncmp(o.args[0], "backend", 7) != 0)
		return usage_error("describe", "expected: describe backend NAME [-n NS]");
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string("backends"));
	json_object_object_add(req, "name", json_object_new_string(o.args[1]));
	json_object_object_add(req, "namespace", json_object_new_string(o.ns ? o.ns : "default"));
	reply = call(&o, req);
	if (!reply)
		return 1;
	if (!reply_ok(reply) || !json_object_object_get_ex(reply, "items", &items) ||
	    json_object_array_length(items) == 0) {
		err = fail(&o, "failed to describe backend %s/%s: not found", o.ns ? o.ns : "default", o.args[1]);
		json_object_put(reply);
		return err;
	}
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string("frontends"));
	freply = call(&o, req);
	if (!freply) {
		json_object_put(reply);
		return 1;
	}
	json_object_object_get_ex(freply, "frontends", &fes);
	snprintf(key, sizeof(key), "%s/%s", o.ns ? o.ns : "default", o.args[1]);
	/* Keep the frontends that hold a locality of this Backend. */
	struct json_object *mine = json_object_new_array(), *doc = json_object_new_object();

	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i), *locs;

		json_object_object_get_ex(fe, "localities", &locs);
		for (size_t l = 0; locs && l < json_object_array_length(locs); l++)
			if (strcmp(jstr(json_object_array_get_idx(locs, l), "backend"), key) == 0) {
				json_object_array_add(mine, json_object_get(fe));
				break;
			}
	}
	json_object_object_add(doc, "backend", json_object_get(json_object_array_get_idx(items, 0)));
	json_object_object_add(doc, "frontends", mine);
	if (machine_output(&o)) {
		kb_print_doc(stdout, doc, o.out);
	} else {
		struct json_object *st, *conds;

		printf("Name:       %s\nNamespace:  %s\nConditions:\n", o.args[1], o.ns ? o.ns : "default");
		json_object_object_get_ex(json_object_array_get_idx(items, 0), "status", &st);
		if (json_object_object_get_ex(st, "conditions", &conds))
			for (size_t c = 0; c < json_object_array_length(conds); c++) {
				struct json_object *jc = json_object_array_get_idx(conds, c);

				printf("  %s=%s (%s): %s\n", jstr(jc, "type"), jstr(jc, "status"), jstr(jc, "reason"),
				       jstr(jc, "message"));
			}
		printf("Frontends:  %zu\n", json_object_array_length(mine));
		for (size_t i = 0; i < json_object_array_length(mine); i++) {
			struct json_object *fe = json_object_array_get_idx(mine, i), *lv;

			printf("  %s:%lld/%s via %s (%s)\n", jstr(fe, "address"), (long long)jint(fe, "port"),
			       jstr(fe, "protocol"), jstr(fe, "route"), jstr(fe, "loadBalancer"));
			json_object_object_get_ex(fe, "priorities", &lv);
			for (size_t l = 0; lv && l < json_object_array_length(lv); l++) {
				struct json_object *jl = json_object_array_get_idx(lv, l);

				printf("    priority %lld: %lld/%lld healthy, load %.2f%%%s\n",
				       (long long)jint(jl, "priority"), (long long)jint(jl, "healthy"),
				       (long long)jint(jl, "endpoints"),
				       json_object_get_double(json_object_object_get(jl, "loadPercent")),
				       json_object_get_boolean(json_object_object_get(jl, "panic")) ? " (panic)" : "");
			}
		}
		if (json_object_array_length(mine)) {
			printf("Endpoints:\n");
			print_frontends(mine, true, true);
		}
	}
	json_object_put(doc);
	json_object_put(freply);
	json_object_put(reply);
	return err;
}

static int cmd_status(int argc, char **argv)
{
	struct json_object *reply;
	struct opts o;
	int err;

	PARSE_OR_RETURN("status", argc, argv, &o);
	if (o.nargs)
		return usage_error("status", "unexpected argument");
	reply = call(&o, request("status"));
	if (!reply)
		return 1;
	err = reply_ok(reply) ? 0 : 1;
	if (machine_output(&o)) {
		kb_print_doc(stdout, reply, o.out);
	} else {
		printf("daemon:      running (pid %lld, up %llds)\n", (long long)jint(reply, "pid"),
		       (long long)jint(reply, "uptimeSeconds"));
		printf("programs:    attached to %s, pinned under %s\n", jstr(reply, "cgroup"), jstr(reply, "bpffs"));
		printf("state:       %lld object(s) in %s\n", (long long)jint(reply, "objects"), jstr(reply, "stateDir"));
		printf("frontends:   %lld programmed\n", (long long)jint(reply, "frontends"));
		printf("applies:     %lld ok, %lld refused\n", (long long)jint(reply, "applies"),
		       (long long)jint(reply, "applyErrors"));
		if (*jstr(reply, "lastError"))
			printf("last error:  %s\n", jstr(reply, "lastError"));
	}
	json_object_put(reply);
	return err;
}

static int cmd_stats(int argc, char **argv)
{
	struct json_object *req, *reply, *fes;
	struct opts o;
	int err = 0;

	PARSE_OR_RETURN("stats", argc, argv, &o);
	if (o.nargs)
		return usage_error("stats", "unexpected argument");
	req = request("get");
	json_object_object_add(req, "what", json_object_new_string("frontends"));
	reply = call(&o, req);
	if (!reply)
		return 1;
	if (!reply_ok(reply) || !json_object_object_get_ex(reply, "frontends", &fes)) {
		err = fail(&o, "failed to read stats: %s", reply_error(reply));
	} else if (machine_output(&o)) {
		kb_print_doc(stdout, fes, o.out);
	} else {
		print_frontends(fes, false, false);
		putchar('\n');
		print_frontends(fes, true, false);
	}
	json_object_put(reply);
	return err;
}

static int cmd_unload(int argc, char **argv)
{
	struct json_object *reply;
	struct opts o;

	PARSE_OR_RETURN("unload", argc, argv, &o);
	if (o.nargs)
		return usage_error("unload", "unexpected argument");
	if (access(o.socket, F_OK) == 0) {
		reply = call(&o, request("unload"));
		if (reply) {
			int ok = reply_ok(reply);

			json_object_put(reply);
			if (!ok)
				return fail(&o, "failed to unload: the daemon refused");
			/* The daemon removes its socket last, after detaching and unpinning. */
			for (int i = 0; i < 100 && access(o.socket, F_OK) == 0; i++)
				usleep(50 * 1000);
			printf("unloaded: daemon stopped, programs detached, pins removed\n");
			return 0;
		}
	}
	/* No daemon: detach and unpin directly, so unload works after a crash too. */
	if (kb_dataplane_unload(o.bpffs))
		return fail(&o, "failed to unload %s", o.bpffs);
	printf("unloaded: programs detached, pins removed from %s\n", o.bpffs);
	return 0;
}

static int cmd_daemon(int argc, char **argv)
{
	return kb_daemon_main(argc, argv);
}

static int cmd_version(int argc, char **argv)
{
	printf("kbackend %s\n", KB_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv);

#define POLICY_FLAGS "[--enable-backend] [--config FILE] [--unix-dir DIR]... [--allow-endpoint CIDR]... " \
		     "[--cluster-domain DOMAIN]"

static const struct kb_cmd commands[] = {
	{ "daemon", cmd_daemon,
	  "--cgroup PATH [--bpffs DIR] [--state-dir DIR] [--socket PATH] " POLICY_FLAGS " [-v]",
	  "load the BPF programs, restore the stored state and serve the control socket" },
	{ "apply", cmd_apply, "-f FILE|DIR|- [--dry-run] [-o wide|json|yaml] [" POLICY_FLAGS " with --dry-run]",
	  "apply manifests through the daemon, all or nothing; --dry-run needs no daemon or root" },
	{ "delete", cmd_delete, "-f FILE|DIR|- | KIND NAME [-n NS]", "delete objects, all or nothing" },
	{ "get", cmd_get, "backends|gateways|routes|policies|frontends|endpoints [NAME] [-n NS|-A] [-o wide|json|yaml]",
	  "show objects with their status, or the programmed frontends and endpoints" },
	{ "describe", cmd_describe, "backend NAME [-n NS] [-o json|yaml]",
	  "show a Backend's status, the frontends that use it, priorities and load split" },
	{ "validate", cmd_validate, "-f FILE|DIR|- [-o wide|json|yaml] " POLICY_FLAGS,
	  "check manifests offline and print each object's status; exit 1 if any is refused" },
	{ "stats", cmd_stats, "[-o json|yaml]", "per-frontend and per-endpoint connection counters" },
	{ "status", cmd_status, "[-o json|yaml]", "the daemon's health: programs, state, applies" },
	{ "unload", cmd_unload, "[--bpffs DIR]", "stop the daemon, detach every program and remove every pin" },
	{ "version", cmd_version, "", "print the version" },
	{ "help", cmd_help, "[COMMAND]", "show help for all commands or one" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct kb_cmd *cmd_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void cmd_help_one(FILE *f, const struct kb_cmd *c)
{
	fprintf(f, "Usage: kbackend %s %s\n  %s\n", c->name, c->usage, c->summary);
}

static void help_all(FILE *f)
{
	fprintf(f, "Usage: kbackend COMMAND [OPTIONS]\n\n"
		   "kbackend steers connections for Envoy Gateway Backends inside the kernel.\n\nCommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nThe CLI talks to the daemon at $KBACKEND_SOCKET or --socket (default %s).\n"
		   "Exit codes: 0 ok, 1 failed, 2 usage.\n\n"
		   "EXAMPLES\n"
		   "  kbackend validate -f examples/\n"
		   "  kbackend apply --dry-run -f examples/ -o json\n"
		   "  kbackend daemon --cgroup /sys/fs/cgroup/unified/kbackend &\n"
		   "  kbackend apply -f examples/ && kbackend get endpoints\n",
		KB_SOCKET_DEFAULT);
}

static int cmd_help(int argc, char **argv)
{
	const struct kb_cmd *c;

	if (argc < 2) {
		help_all(stdout);
		return 0;
	}
	c = cmd_find(argv[1]);
	if (!c)
		return usage_error("help", "unknown command \"%s\"", argv[1]);
	cmd_help_one(stdout, c);
	return 0;
}

int kb_ctl_main(int argc, char **argv)
{
	const struct kb_cmd *c;

	if (argc < 2) {
		help_all(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		return cmd_help(1, argv);
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(1, argv);
	c = cmd_find(argv[1]);
	if (!c) {
		fprintf(stderr, "kbackend: unknown command \"%s\"\n", argv[1]);
		help_all(stderr);
		return 2;
	}
	return c->fn(argc - 1, argv + 1);
}
