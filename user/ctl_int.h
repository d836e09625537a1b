/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the CLI (ctl.c, ctl_remote.c): shared options, error helpers and the commands that call the daemon. */
#ifndef KB_CTL_INT_H
#define KB_CTL_INT_H

#include <stdbool.h>

#include "render.h"
#include "validate.h"

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

/* Commands that talk to the daemon over the control socket (ctl_remote.c). */
int ctl_cmd_apply(int argc, char **argv);
int ctl_cmd_delete(int argc, char **argv);
int ctl_cmd_get(int argc, char **argv);
int ctl_cmd_describe(int argc, char **argv);
int ctl_cmd_status(int argc, char **argv);
int ctl_cmd_stats(int argc, char **argv);
int ctl_cmd_unload(int argc, char **argv);
/* ctl_register.c */
int ctl_cmd_register(int argc, char **argv);

#endif /* KB_CTL_INT_H */
