// SPDX-License-Identifier: Apache-2.0
/* The stored state at start: restore it, or, when it cannot be trusted, keep the pinned frontends and refuse changes that would drop them. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "daemon_int.h"
#include "manifest/manifest.h"
#include "render/render.h"
#include "store/store.h"

#define WAY_OUT "state the whole desired set with `kbackend apply --replace -f FILE|DIR`, or remove everything " \
		"with `kbackend unload`"

/* "198.18.0.10:80/TCP", "[2001:db8:f::1]:53/UDP". */
static const char *key_str(const struct kb_frontend_key *k, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	inet_ntop(k->family == AF_INET6 ? AF_INET6 : AF_INET, k->ip, ip, sizeof(ip));
	snprintf(buf, len, k->family == AF_INET6 ? "[%s]:%u/%s" : "%s:%u/%s", ip, ntohs(k->port),
		 k->proto == KB_PROTO_UDP ? "UDP" : "TCP");
	return buf;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct kb_frontend_key));
}

/* The frontends the pinned map serves now (before the restore writes anything), sorted, into d->unaccounted. */
static void read_pinned(struct daemon *d)
{
	int err = kb_dataplane_pinned_keys(d->bpffs, &d->unaccounted, &d->nunaccounted);

	if (err) {
		kb_err("failed to read the pinned frontends map under %s: %s", d->bpffs, strerror(-err));
		return;
	}
	if (d->nunaccounted)
		qsort(d->unaccounted, d->nunaccounted, sizeof(*d->unaccounted), key_cmp);
}

/* A list of keys for a message: the first few, then a count of the rest. */
static void keys_str(const struct kb_frontend_key *const *keys, size_t n, char *buf, size_t len)
{
	size_t off = 0;
	char one[80];

	buf[0] = '\0';
	for (size_t i = 0; i < n && i < 3 && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", key_str(keys[i], one, sizeof(one)));
	if (n > 3 && off < len)
		snprintf(buf + off, len - off, " and %zu more", n - 3);
}

/* Nothing can be restored: every pinned frontend stays as it is, unaccounted for, until a change covers it. */
static void degrade(struct daemon *d, const char *problem)
{
	const struct kb_frontend_key *first[3];
	char list[512];

	snprintf(d->state_problem, sizeof(d->state_problem), "%s", problem);
	if (!d->nunaccounted) {
		kb_log_info("the pinned maps serve nothing, so nothing is at risk: starting with an empty state");
		return;
	}
	for (size_t i = 0; i < d->nunaccounted && i < 3; i++)
		first[i] = &d->unaccounted[i];
	keys_str(first, d->nunaccounted, list, sizeof(list));
	kb_err("failed to account for %zu pinned frontend(s) (%s): they keep serving as pinned, and every apply "
	       "or delete that would drop them is refused; %s", d->nunaccounted, list, WAY_OUT);
}

/* The newest applied.yaml.bad-* in dir (their names sort by time), else the newest applied.log.bad-*, or "". */
static void last_set_aside(const char *dir, char *out, size_t len)
{
	static const char *const prefixes[] = { KB_STATE_FILE ".bad-", KB_STATE_LOG ".bad-" };
	char best[256] = "";
	struct dirent *e;

	out[0] = '\0';
	for (size_t p = 0; p < 2 && !best[0]; p++) {
		DIR *dh = opendir(dir);

		if (!dh)
			return;
		while ((e = readdir(dh)))
			if (!strncmp(e->d_name, prefixes[p], strlen(prefixes[p])) && strlen(e->d_name) < sizeof(best) &&
			    strcmp(e->d_name, best) > 0)
				snprintf(best, sizeof(best), "%s", e->d_name);
		closedir(dh);
	}
	if (best[0])
		snprintf(out, len, "%s/%s", dir, best);
}

static bool has_pending_names(const struct kb_compiled *c)
{
	for (size_t i = 0; i < c->nfes; i++)
		for (size_t l = 0; l < c->fes[i].nlocs; l++)
			if (c->fes[i].locs[l].npending)
				return true;
	return false;
}

/*
 * The stored state is parsed and judged on a thread of its own while the main
 * thread probes the kernel, loads the programs and reads the pins back: at
 * 10,000 Backends each takes a few hundred ms, and a restart waits for the
 * longer of them, not the sum. Judging needs only the flags and the node's
 * addresses (read before the thread starts); compiling waits for the bridge.
 */
struct kb_restore_read {
	pthread_t thread;
	struct kb_store *store;
	const struct kb_policy *policy;
	struct kb_model m;
	enum kb_store_result res;
	int refused;
	bool judged;
	char why[1024], note[1024];
};

static void *restore_read(void *arg)
{
	struct kb_restore_read *r = arg;

	r->res = kb_store_load(r->store, &r->m, r->why, sizeof(r->why), r->note, sizeof(r->note));
	if (r->res != KB_STORE_BAD) {
		r->refused = kb_validate(&r->m, r->policy);
		r->judged = true;
	}
	return NULL;
}

void kb_daemon_restore_begin(struct daemon *d)
{
	struct kb_restore_read *r = calloc(1, sizeof(*r));

	kb_store_path(d->state_dir, d->state_path, sizeof(d->state_path));
	kb_store_remove_temps(d->state_dir);
	if (!r)
		return;	/* kb_daemon_restore reads it itself */
	kb_daemon_read_node_addrs(d);
	kb_model_init(&r->m);
	r->store = &d->store;
	r->policy = &d->policy;
	if (pthread_create(&r->thread, NULL, restore_read, r)) {
		free(r);
		return;
	}
	d->restore_read = r;
}

/*
 * Restore the stored state and program it, so a restart reconciles with what
 * the pins already serve. A state file that cannot be trusted is set aside
 * and programs nothing: the pinned frontends keep serving, unaccounted for.
 */
void kb_daemon_restore(struct daemon *d)
{
	struct kb_compile_env env = kb_daemon_compile_env(d);
	struct kb_compiled c = { 0 };
	char why[1024], msg[2048], note[1024];
	enum kb_store_result res;
	struct kb_model m;
	int refused = -1, err;

	read_pinned(d);
	if (d->restore_read) {
		struct kb_restore_read *r = d->restore_read;

		pthread_join(r->thread, NULL);
		m = r->m;
		res = r->res;
		if (r->judged)
			refused = r->refused;
		snprintf(why, sizeof(why), "%s", r->why);
		snprintf(note, sizeof(note), "%s", r->note);
		free(r);
		d->restore_read = NULL;
	} else {
		kb_daemon_read_node_addrs(d);
		kb_model_init(&m);
		kb_store_path(d->state_dir, d->state_path, sizeof(d->state_path));
		kb_store_remove_temps(d->state_dir);
		res = kb_store_load(&d->store, &m, why, sizeof(why), note, sizeof(note));
	}
	if (note[0])
		kb_log_info("%s", note);
	if (res == KB_STORE_OK && d->store.from_format && d->store.from_format < KB_STATE_FORMAT) {
		/* Read once in the old whole-file format; from now on it is a snapshot and a log. */
		err = kb_store_compact(&d->store, &m);
		if (err)
			kb_err("failed to rewrite %s in state format %d: %s; it is read again at the next start",
			       d->state_path, KB_STATE_FORMAT, strerror(-err));
		else
			kb_log_info("migrated %s from state format %d to %d", d->state_path, d->store.from_format,
				    KB_STATE_FORMAT);
	}
	if (res == KB_STORE_BAD) {
		err = kb_store_set_aside(d->state_dir, d->state_aside, sizeof(d->state_aside));
		if (err)
			d->state_aside[0] = '\0';
		/* Set aside, the directory holds no state; left in place (it could not be moved), it is overwritten whole. */
		kb_store_init(&d->store, d->state_dir);
		d->store_diverged = err != 0;
		kb_err("failed to restore state from %s: %s; %s%s", d->state_path, why,
		       err ? "could not set it aside: " : "set aside as ", err ? strerror(-err) : d->state_aside);
		kb_model_free(&m);
		degrade(d, why);
		return;
	}
	if (res == KB_STORE_MISSING && d->nunaccounted) {
		/* Set aside by an earlier start, lost with the directory, or a new --state-dir: an empty state would unprogram them all. */
		char last[4200];

		last_set_aside(d->state_dir, last, sizeof(last));
		snprintf(msg, sizeof(msg), "missing: there is no %s or %s, but the pinned maps serve frontends%s%s%s",
			 d->state_path, KB_STATE_LOG, last[0] ? " (the last bad file was kept as " : "", last,
			 last[0] ? ")" : "");
		kb_err("failed to restore state: %s", msg);
		kb_model_free(&m);
		degrade(d, msg);
		return;
	}
	if (refused < 0)
		refused = kb_validate(&m, &d->policy);
	if (refused || m.nerrors || kb_compile(&m, &env, &c)) {
		snprintf(msg, sizeof(msg), "refused: %d stored object(s) refused under the current flags", refused);
		kb_err("failed to restore state from %s: %s; keeping what the maps serve", d->state_path, msg);
		kb_print_diags(stderr, &m);
		snprintf(d->last_error, sizeof(d->last_error), "stored state refused under the current flags");
		kb_compiled_free(&c);
		kb_model_free(&m);
		d->store_diverged = true;
		degrade(d, msg);
		return;
	}
	if (has_pending_names(&c)) {
		/*
		 * FQDN answers are not in yet: programming now would empty those
		 * localities. The pinned maps keep serving the old selection until
		 * the resolver has answered (or RESTORE_DNS_WAIT_MS has passed).
		 */
		kb_daemon_accounted(d);
		d->state = m;
		d->compiled = c;
		kb_daemon_state_reset(d);
		d->restore_deadline = kb_now_ms() + RESTORE_DNS_WAIT_MS;
		kb_daemon_reads_changed(d);
		kb_daemon_update_names(d);
		kb_log_info("restored %zu object(s) from %s; waiting for DNS before programming", m.nobjects,
			    d->state_dir);
		kb_daemon_trim_soon(d);
		return;
	}
	if (d->dp->ops->fits && d->dp->ops->fits(d->dp, &c, msg, sizeof(msg))) {
		char why[1024];

		snprintf(why, sizeof(why), "unprogrammed: %s", msg);
		kb_err("failed to program restored state: %s", msg);
		kb_compiled_free(&c);
		kb_model_free(&m);
		degrade(d, why);
		return;
	}
	err = d->dp->ops->apply(d->dp, &c);
	if (err) {
		snprintf(msg, sizeof(msg), "unprogrammed: the restored state could not be programmed: %s",
			 strerror(-err));
		kb_err("failed to program restored state: %s", strerror(-err));
		kb_compiled_free(&c);
		kb_model_free(&m);
		d->store_diverged = true;
		degrade(d, msg);
		return;
	}
	/* The stored state is the truth: pinned frontends it does not have were dropped by that apply. */
	kb_daemon_accounted(d);
	d->state = m;
	d->compiled = c;
	kb_daemon_state_reset(d);
	kb_daemon_reads_changed(d);
	kb_daemon_update_names(d);
	kb_log_info("restored %zu object(s), %zu frontend(s) from %s", m.nobjects, c.nfes, d->state_dir);
	kb_daemon_trim_soon(d);	/* the parse's and compile's peak goes back, as after a change */
}

void kb_daemon_accounted(struct daemon *d)
{
	free(d->unaccounted);
	d->unaccounted = NULL;
	d->nunaccounted = 0;
}

bool kb_daemon_would_drop(struct daemon *d, const struct kb_compiled *next, const char *verb, char *why, size_t len)
{
	const struct kb_frontend_key **lost, *first[3];
	struct kb_frontend_key *keys;
	size_t nlost = 0;
	char list[512];

	if (!d->nunaccounted)
		return false;
	keys = calloc(next->nfes ? next->nfes : 1, sizeof(*keys));
	lost = calloc(d->nunaccounted, sizeof(*lost));
	if (!keys || !lost) {
		free(keys);
		free(lost);
		snprintf(why, len, "%s refused: out of memory; nothing was changed", verb);
		return true;
	}
	for (size_t i = 0; i < next->nfes; i++)
		keys[i] = next->fes[i].key;
	qsort(keys, next->nfes, sizeof(*keys), key_cmp);
	for (size_t i = 0; i < d->nunaccounted; i++)
		if (!bsearch(&d->unaccounted[i], keys, next->nfes, sizeof(*keys), key_cmp))
			lost[nlost++] = &d->unaccounted[i];
	for (size_t i = 0; i < nlost && i < 3; i++)
		first[i] = lost[i];
	keys_str(first, nlost, list, sizeof(list));
	if (nlost)
		snprintf(why, len,
			 "%s refused: the stored state was not restored at start (%s), and the pinned maps still serve "
			 "%zu frontend(s) that this %s would drop: %s; nothing was changed. To proceed, " WAY_OUT,
			 verb, d->state_problem, nlost, verb, list);
	free(keys);
	free(lost);
	return nlost > 0;
}

struct json_object *kb_daemon_state_json(struct daemon *d)
{
	struct json_object *o = json_object_new_object();
	char one[80];

	json_object_object_add(o, "path", json_object_new_string(d->state_path));
	json_object_object_add(o, "format", json_object_new_int(KB_STATE_FORMAT));
	json_object_object_add(o, "snapshotBytes", json_object_new_int64((int64_t)d->store.snap_bytes));
	json_object_object_add(o, "logBytes", json_object_new_int64((int64_t)d->store.log_bytes));
	if (d->state_problem[0])
		json_object_object_add(o, "problem", json_object_new_string(d->state_problem));
	if (d->state_aside[0])
		json_object_object_add(o, "setAsideAs", json_object_new_string(d->state_aside));
	if (d->nunaccounted) {
		struct json_object *arr = json_object_new_array();

		for (size_t i = 0; i < d->nunaccounted; i++)
			json_object_array_add(arr, json_object_new_string(key_str(&d->unaccounted[i], one, sizeof(one))));
		json_object_object_add(o, "unaccountedFrontends", arr);
		json_object_object_add(o, "wayOut", json_object_new_string(WAY_OUT));
	}
	return o;
}
