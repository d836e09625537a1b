/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the CLI (ctl.c, ctl_remote.c): shared options, error helpers and the commands that call the daemon. */
#ifndef KB_CTL_INT_H
#define KB_CTL_INT_H

#include <stdbool.h>

#include "render/render.h"
#include "validate/validate.h"

#define MAX_LIST 64
#define CALL_TIMEOUT_MS 60000

/* Every option any client command takes; each command checks what applies to it. */
struct opts {
	const char *files[MAX_LIST];
	int nfiles;
	enum kb_output out;
	bool out_set;
	bool dry_run;
	bool replace;		/* apply: the files are the whole desired state */
	bool watch;		/* stats: repeat every 2 s */
	bool each_file;		/* validate: every file is its own set */
	struct kb_policy policy;
	bool policy_flags;	/* a policy flag was given: this dry run is computed offline */
	const char *config;
	char *unix_dirs[MAX_LIST];
	char *allow[MAX_LIST];
	const char *socket;
	const char *bpffs;
	const char *state_dir;	/* dump-state */
	const char *ns;
	bool all_ns;
	const char *labels;	/* get: -l/--selector */
	const char *fields;	/* get: --field-selector */
	char **args;		/* positional arguments */
	int nargs;
};

/* Returns 0, 2 (usage error, already printed) or -1 (help was printed: exit 0). */
int ctl_parse_opts(const char *cmd, int argc, char **argv, struct opts *o);
int ctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One error line, or {"error": ...} in JSON/YAML mode. Returns 1. */
int ctl_fail(const struct opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool ctl_machine_output(const struct opts *o);
/* An offline dry run: parse, validate and compile here, without root or daemon. */
int ctl_dry_run_offline(struct opts *o);

#define PARSE_OR_RETURN(cmd, argc, argv, o)                         \
	do {                                                        \
		int _e = ctl_parse_opts((cmd), (argc), (argv), (o));    \
		if (_e)                                             \
			return _e < 0 ? 0 : _e;                     \
	} while (0)

/* ctl_list.c: a streamed list printed as it arrives (tables, JSON or YAML). */
enum ctl_list_kind { CTL_LIST_OBJECTS, CTL_LIST_FRONTENDS, CTL_LIST_ENDPOINTS, CTL_LIST_STATS };
struct ctl_list {
	enum ctl_list_kind kind;
	enum kb_output out;
	bool machine;			/* JSON or YAML text */
	struct kb_yaml_stream *yaml;
	struct kb_obj_table ot;
	struct kb_fe_table ft, ft2;	/* ft2: stats' endpoint table */
	FILE *f;			/* the output, in memory until the read is whole */
	char *buf;
	size_t len, n;
};
void ctl_list_init(struct ctl_list *l, const struct opts *o, enum ctl_list_kind kind);
/* kb_ctl_call_stream's on_item and on_rows: ctx is the struct ctl_list. */
int ctl_list_item(void *ctx, struct json_object *item);
int ctl_list_rows(void *ctx, char *text, size_t len);
/* Ask the daemon for table rows in req when l prints a table they make (not -o wide's endpoints, not objects). */
void ctl_list_ask_rows(const struct ctl_list *l, struct json_object *req);
/* Write the whole output to out and free l. 0 or -1. */
int ctl_list_print(struct ctl_list *l, FILE *out);
void ctl_list_discard(struct ctl_list *l);

/* Commands that talk to the daemon over the control socket (ctl_remote.c). */
int ctl_cmd_apply(int argc, char **argv);
int ctl_cmd_delete(int argc, char **argv);
int ctl_cmd_get(int argc, char **argv);
int ctl_cmd_describe(int argc, char **argv);
int ctl_cmd_status(int argc, char **argv);
int ctl_cmd_verify(int argc, char **argv);
int ctl_cmd_stats(int argc, char **argv);
int ctl_cmd_unload(int argc, char **argv);
/* ctl_register.c */
int ctl_cmd_register(int argc, char **argv);

#endif /* KB_CTL_INT_H */
