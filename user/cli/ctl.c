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

#include "compile/compile.h"
#include "control/control.h"
#include "cli/ctl.h"
#include "ctl_int.h"
#include "daemon/daemon.h"
#include "dataplane/dataplane.h"
#include "manifest/manifest.h"
#include "cli/manpage.h"
#include "render/render.h"
#include "store/store.h"
#include "validate/validate.h"

#ifndef KB_VERSION
#define KB_VERSION "0.1.0"
#endif


struct kb_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;	/* arguments after the command name */
	const char *summary;
};

static const struct kb_cmd *cmd_find(const char *name);
static void cmd_help_one(FILE *f, const struct kb_cmd *c);


enum { OPT_ENABLE_BACKEND = 256, OPT_UNIX_DIR, OPT_ALLOW, OPT_CLUSTER_DOMAIN, OPT_CLUSTERSET_DOMAIN, OPT_SERVICE_ENDPOINTS, OPT_CONFIG, OPT_DRY_RUN, OPT_SOCKET,
       OPT_BPFFS, OPT_EACH_FILE, OPT_REPLACE, OPT_STATE_DIR, OPT_FIELD_SELECTOR };

static const struct option client_longopts[] = {
	{ "filename", required_argument, NULL, 'f' },
	{ "output", required_argument, NULL, 'o' },
	{ "namespace", required_argument, NULL, 'n' },
	{ "all-namespaces", no_argument, NULL, 'A' },
	{ "selector", required_argument, NULL, 'l' },
	{ "field-selector", required_argument, NULL, OPT_FIELD_SELECTOR },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "replace", no_argument, NULL, OPT_REPLACE },
	{ "each-file", no_argument, NULL, OPT_EACH_FILE },
	{ "watch", no_argument, NULL, 'w' },
	{ "enable-backend", no_argument, NULL, OPT_ENABLE_BACKEND },
	{ "unix-dir", required_argument, NULL, OPT_UNIX_DIR },
	{ "allow-endpoint", required_argument, NULL, OPT_ALLOW },
	{ "cluster-domain", required_argument, NULL, OPT_CLUSTER_DOMAIN },
	{ "clusterset-domain", required_argument, NULL, OPT_CLUSTERSET_DOMAIN },
	{ "service-endpoints", required_argument, NULL, OPT_SERVICE_ENDPOINTS },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "bpffs", required_argument, NULL, OPT_BPFFS },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

int ctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ctl_usage_error(const char *cmd, const char *fmt, ...)
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
int ctl_parse_opts(const char *cmd, int argc, char **argv, struct opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	kb_policy_init(&o->policy);
	o->policy.unix_dirs = o->unix_dirs;
	o->policy.allow_cidrs = o->allow;
	o->bpffs = KB_PIN_DIR_DEFAULT;
	o->state_dir = KB_STATE_DIR_DEFAULT;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "f:o:n:Al:wvh", client_longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (o->nfiles == MAX_LIST)
				return ctl_usage_error(cmd, "too many -f arguments");
			o->files[o->nfiles++] = optarg;
			break;
		case 'o':
			if (!kb_output_parse(optarg, &o->out))
				return ctl_usage_error(cmd, "-o %s: expected wide, json or yaml", optarg);
			o->out_set = true;
			break;
		case 'n':
			o->ns = optarg;
			break;
		case 'A':
			o->all_ns = true;
			break;
		case 'l':
			o->labels = optarg;
			break;
		case OPT_FIELD_SELECTOR:
			o->fields = optarg;
			break;
		case OPT_DRY_RUN:
			o->dry_run = true;
			break;
		case OPT_REPLACE:
			o->replace = true;
			break;
		case 'w':
			o->watch = true;
			break;
		case OPT_EACH_FILE:
			o->each_file = true;
			break;
		case OPT_ENABLE_BACKEND:
			o->policy.enable_backend = 1;
			o->policy_flags = true;
			break;
		case OPT_UNIX_DIR:
			if (o->policy.nunix_dirs == MAX_LIST)
				return ctl_usage_error(cmd, "too many --unix-dir arguments");
			o->unix_dirs[o->policy.nunix_dirs++] = optarg;
			o->policy_flags = true;
			break;
		case OPT_ALLOW:
			if (o->policy.nallow_cidrs == MAX_LIST)
				return ctl_usage_error(cmd, "too many --allow-endpoint arguments");
			o->allow[o->policy.nallow_cidrs++] = optarg;
			o->policy_flags = true;
			break;
		case OPT_CLUSTER_DOMAIN:
			o->policy.cluster_domain = optarg;
			o->policy_flags = true;
			break;
		case OPT_CLUSTERSET_DOMAIN:
			o->policy.clusterset_domain = optarg;
			o->policy_flags = true;
			break;
		case OPT_SERVICE_ENDPOINTS:
			if (!kb_svc_mode_parse(optarg, &o->policy.service_endpoints))
				return ctl_usage_error(cmd, "--service-endpoints takes auto, slices or dns");
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
		case OPT_STATE_DIR:
			o->state_dir = optarg;
			break;
		case 'v':
			kb_verbosity++;
			break;
		case 'h':
			cmd_help_one(stdout, cmd_find(cmd));
			return -1;
		default:
			return ctl_usage_error(cmd, "unknown option");
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	o->socket = kb_ctl_socket_path(o->socket);
	return 0;
}


bool ctl_machine_output(const struct opts *o)
{
	return o->out == KB_OUT_JSON || o->out == KB_OUT_YAML;
}

/* One error line, or {"error": ...} in JSON/YAML mode. Returns 1. */
int ctl_fail(const struct opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ctl_fail(const struct opts *o, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (ctl_machine_output(o)) {
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

/* Validate one set of manifests and add its objects and diagnostics to the output. Returns 1 if anything was refused. */
static int validate_set(struct opts *o, const char **files, int nfiles, struct json_object *items,
			struct json_object *diags)
{
	struct kb_model m;
	int refused, bad;

	kb_model_init(&m);
	if (o->config)
		kb_manifest_load_path(&m, o->config);
	for (int i = 0; i < nfiles; i++)
		kb_manifest_load_path(&m, files[i]);
	refused = kb_validate(&m, &o->policy);
	bad = refused || m.nerrors;
	if (ctl_machine_output(o)) {
		struct json_object *list = kb_render_objects(&m, NULL, NULL), *d = kb_render_diags(&m), *its;

		json_object_object_get_ex(list, "items", &its);
		for (size_t i = 0; i < json_object_array_length(its); i++)
			json_object_array_add(items, json_object_get(json_object_array_get_idx(its, i)));
		for (size_t i = 0; i < json_object_array_length(d); i++)
			json_object_array_add(diags, json_object_get(json_object_array_get_idx(d, i)));
		json_object_put(list);
		json_object_put(d);
	} else {
		if (o->each_file)
			printf("== %s: %s\n", files[0], bad ? "refused" : "accepted");
		struct json_object *list = kb_render_objects(&m, NULL, NULL);

		kb_print_diags(stderr, &m);
		kb_print_objects_table(stdout, list, false);
		json_object_put(list);
		if (o->each_file)
			putchar('\n');
	}
	kb_model_free(&m);
	return bad ? 1 : 0;
}

static int cmd_validate(int argc, char **argv)
{
	struct json_object *items = json_object_new_array(), *diags = json_object_new_array();
	struct kb_arena a = { 0 };
	struct opts o;
	int err = 0;

	PARSE_OR_RETURN("validate", argc, argv, &o);
	if (!o.nfiles || o.nargs) {
		json_object_put(items);
		json_object_put(diags);
		return ctl_usage_error("validate", o.nargs ? "unexpected argument" : "-f FILE|DIR|- is required");
	}
	if (!o.each_file) {
		err = validate_set(&o, o.files, o.nfiles, items, diags);
	} else {
		/* Every file is its own set, as test cases are written: no cross-file references or duplicates. */
		for (int i = 0; i < o.nfiles; i++) {
			char **paths;
			size_t n = 0;

			if (kb_manifest_list_files(o.files[i], &a, &paths, &n) < 0 || !n) {
				err |= validate_set(&o, &o.files[i], 1, items, diags);
				continue;
			}
			for (size_t k = 0; k < n; k++)
				err |= validate_set(&o, (const char **)&paths[k], 1, items, diags);
		}
	}
	if (ctl_machine_output(&o)) {
		struct json_object *doc = json_object_new_object();

		json_object_object_add(doc, "apiVersion", json_object_new_string("v1"));
		json_object_object_add(doc, "kind", json_object_new_string("List"));
		json_object_object_add(doc, "items", items);
		json_object_object_add(doc, "diagnostics", diags);
		kb_print_doc(stdout, doc, o.out);
		json_object_put(doc);
	} else {
		json_object_put(items);
		json_object_put(diags);
	}
	kb_arena_free(&a);
	return err;
}

int ctl_dry_run_offline(struct opts *o)
{
	/* Nothing resolved offline: FQDNs, Service and ServiceImport names stay pending, named with the domain flags. */
	struct kb_compile_env env = { .cluster_domain = o->policy.cluster_domain,
				      .clusterset_domain = o->policy.clusterset_domain,
				      .service_endpoints = o->policy.service_endpoints };
	struct kb_compiled c = { 0 };
	struct kb_model m;
	int err, refused;

	refused = load_and_validate(o, &m);
	/* Like the daemon's apply, a dry run is all or nothing: a refusal compiles nothing. */
	if (!refused && !m.nerrors && kb_compile(&m, &env, &c) != 0)
		refused = 1;
	if (ctl_machine_output(o)) {
		struct json_object *doc = json_object_new_object();

		json_object_object_add(doc, "dryRun", json_object_new_boolean(1));
		json_object_object_add(doc, "ok", json_object_new_boolean(!refused && !m.nerrors));
		json_object_object_add(doc, "objects", kb_render_objects(&m, NULL, NULL));
		json_object_object_add(doc, "frontends", kb_render_frontends(&c));
		json_object_object_add(doc, "diagnostics", kb_render_diags(&m));
		kb_print_doc(stdout, doc, o->out);
		json_object_put(doc);
	} else {
		struct json_object *list = kb_render_objects(&m, NULL, NULL), *fes = kb_render_frontends(&c);
		bool ok = !refused && !m.nerrors;

		kb_print_diags(stderr, &m);
		kb_print_objects_table(stdout, list, !ok);
		if (ok) {
			fputc('\n', stdout);
			kb_print_frontends_table(stdout, fes, KB_TABLE_ENDPOINTS, o->out == KB_OUT_WIDE);
		} else {
			fprintf(stderr, "kbackend: dry run refused: %d object(s) refused, %zu error(s); nothing would "
					"be applied\n", refused, m.nerrors);
		}
		json_object_put(list);
		json_object_put(fes);
	}
	err = (refused || m.nerrors) ? 1 : 0;
	kb_compiled_free(&c);
	kb_model_free(&m);
	return err;
}

/* The stored state, read from --state-dir as a restart reads it, printed as one YAML stream. */
static int cmd_dump_state(int argc, char **argv)
{
	char why[1024], note[1024];
	enum kb_store_result res;
	struct kb_store st;
	struct kb_model m;
	struct opts o;

	PARSE_OR_RETURN("dump-state", argc, argv, &o);
	if (o.nargs)
		return ctl_usage_error("dump-state", "unexpected argument");
	kb_store_init(&st, o.state_dir);
	kb_model_init(&m);
	res = kb_store_load(&st, &m, why, sizeof(why), note, sizeof(note));
	kb_store_close(&st);
	if (res == KB_STORE_BAD) {
		kb_model_free(&m);
		fprintf(stderr, "kbackend: failed to read the state in %s: %s\n", o.state_dir, why);
		return 1;
	}
	if (note[0])
		fprintf(stderr, "kbackend: %s\n", note);
	printf("# The state stored in %s: %zu object(s).\n", o.state_dir, m.nobjects);
	for (size_t i = 0; i < m.nobjects; i++) {
		const struct kb_meta *obj = m.objects[i];
		char key[512];

		kb_store_key(obj, key, sizeof(key));
		printf("---\n# %s, applied from %s\n%.*s\n", key, obj->loc.file ? obj->loc.file : "-", (int)obj->src_len,
		       obj->src ? obj->src : "");
	}
	kb_model_free(&m);
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
		     "[--cluster-domain DOMAIN] [--clusterset-domain DOMAIN] [--service-endpoints auto|slices|dns]"

static const struct kb_cmd commands[] = {
	{ "daemon", cmd_daemon,
	  "--cgroup PATH [--bpffs DIR] [--state-dir DIR] [--socket PATH] [--watch-dir DIR] "
	  "[--kubernetes | --kubeconfig FILE] [--controller-name NAME] [--no-status] "
	  "[--metrics-addr ADDR:PORT] [--bridge-netns PATH]... [--bridge-buffer SIZE] [--bridge-mode copy|splice] "
	  "[--bridge-idle-timeout DURATION] [--no-inbound] [--max-frontends N] [--max-slots N] [--max-endpoints N] "
	  "[--max-tracked-sockets N] " POLICY_FLAGS " [-v]",
	  "load the BPF programs, restore the stored state and serve the control socket" },
	{ "apply", ctl_cmd_apply,
	  "-f FILE|DIR|- [--replace] [--dry-run] [-o wide|json|yaml] [" POLICY_FLAGS " with --dry-run]",
	  "apply manifests through the daemon, all or nothing; --replace makes them the whole state (stored objects "
	  "they do not name are deleted); --dry-run needs no daemon or root" },
	{ "delete", ctl_cmd_delete, "-f FILE|DIR|- | KIND NAME [-n NS]", "delete objects, all or nothing" },
	{ "get", ctl_cmd_get,
	  "backends|gateways|routes|policies|frontends|endpoints [NAME] [-n NS|-A] [-l SELECTOR] "
	  "[--field-selector SELECTOR] [-o wide|json|yaml]",
	  "show objects with their status, or the programmed frontends and endpoints; NAME is an object's name or a "
	  "frontend's ADDR:PORT, -l selects by label (a frontend by its Backends' labels), --field-selector by field" },
	{ "describe", ctl_cmd_describe, "backend NAME [-n NS] [-o json|yaml]",
	  "show a Backend's status, the frontends that use it, priorities and load split" },
	{ "validate", cmd_validate, "-f FILE|DIR|- [--each-file] [-o wide|json|yaml] " POLICY_FLAGS,
	  "check manifests offline and print each object's status; exit 1 if any is refused" },
	{ "stats", ctl_cmd_stats, "[-o json|yaml] [--watch]", "per-frontend and per-endpoint connection counters" },
	{ "status", ctl_cmd_status, "[-o json|yaml]", "the daemon's health: programs, state, applies" },
	{ "verify", ctl_cmd_verify, "[-o json|yaml]",
	  "compile the daemon's stored objects from scratch and compare with its state and frontends; exit 1 on a difference" },
	{ "register", ctl_cmd_register, "ADDR:PORT [--fd N] [--pid PID] [--remove] [-o json]",
	  "hand a sidecar's listening socket to the daemon: connections arriving for ADDR:PORT go to it" },
	{ "dump-state", cmd_dump_state, "[--state-dir DIR]",
	  "print the state a daemon stored in DIR (snapshot and log) as YAML; no daemon needed" },
	{ "unload", ctl_cmd_unload, "[--bpffs DIR]", "stop the daemon, detach every program and remove every pin" },
	{ "version", cmd_version, "", "print the version" },
	{ "help", cmd_help, "[COMMAND]", "show help for all commands or one" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The table as the man page generator (manpage.c) reads it. */
bool kb_ctl_command(size_t i, struct kb_cmd_doc *out)
{
	if (i >= NCOMMANDS)
		return false;
	*out = (struct kb_cmd_doc){ commands[i].name, commands[i].usage, commands[i].summary };
	return true;
}

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
	if (strcmp(argv[1], "--man") == 0) {	/* hidden: the Makefile makes build/kbackend.1 with it */
		kb_man_write(stdout, KB_VERSION);
		return 0;
	}
	c = cmd_find(argv[1]);
	if (!c)
		return ctl_usage_error("help", "unknown command \"%s\"", argv[1]);
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
