// SPDX-License-Identifier: Apache-2.0
/* The daemon's verify op: the stored state compiled from scratch, compared with what the kernel maps hold. */
#include <errno.h>
#include <string.h>

#include <json-c/json.h>

#include "control.h"
#include "daemon_int.h"
#include "util.h"

static void kb_add_diff(void *ctx, const char *text)
{
	json_object_array_add(ctx, json_object_new_string(text));
}

/*
 * {"ok": true, "frontends": N, "differences": [...]}: an empty list when the
 * maps hold exactly the compile. The dataplane reads the maps back from the
 * kernel, not its shadow, so this also checks the apply's incremental path.
 */
struct json_object *kb_daemon_verify(struct daemon *d)
{
	struct kb_compile_env env = kb_daemon_compile_env(d);
	struct kb_compiled c = { 0 };
	struct json_object *reply, *diffs;
	size_t nfes;
	int n;

	if (!d->dp->ops->verify)
		return kb_ctl_error("verify: this dataplane cannot read its maps back");
	if (d->nunaccounted)
		return kb_ctl_error("verify: the stored state is not restored, so the pinned maps are not expected to hold it");
	if (kb_compile(&d->state, &env, &c)) {
		kb_compiled_free(&c);
		return kb_ctl_error("verify: failed to compile the stored state");
	}
	diffs = json_object_new_array();
	n = d->dp->ops->verify(d->dp, &c, kb_add_diff, diffs);
	nfes = c.nfes;
	kb_compiled_free(&c);
	if (n < 0) {
		json_object_put(diffs);
		return kb_ctl_error("verify: failed to read the maps: %s", strerror(-n));
	}
	reply = json_object_new_object();
	json_object_object_add(reply, "ok", json_object_new_boolean(1));
	json_object_object_add(reply, "frontends", json_object_new_int64((int64_t)nfes));
	json_object_object_add(reply, "differences", diffs);
	return reply;
}
