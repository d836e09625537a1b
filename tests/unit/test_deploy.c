// SPDX-License-Identifier: Apache-2.0
/* deploy/ against the daemon: the DaemonSet's flags, mounts, probes and privileges, its RBAC against the kinds the daemon reads and writes, the ConfigMap mode's patch, and the systemd unit's. */
#include <libgen.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <yaml.h>

#include "docsutil.h"
#include "kube/kube_int.h"
#include "manifest/manifest.h"
#include "manifest/model.h"
#include "validate/validate.h"

#define NS_DEFAULT_SOCKET "/run/kbackend/kbackend.sock"
#define MAX_DOCS 64

struct ydoc {
	yaml_document_t d;
	char file[256];
};

#define PATCH "deploy/kubernetes/configmap-mode/daemonset-watch-dir.patch"

static struct ydoc docs[MAX_DOCS];
static size_t ndocs;
static struct ydoc patch;	/* the ConfigMap mode's strategic merge patch of the DaemonSet */
static struct du_list daemon_flags;

/* ---- a few libyaml helpers -------------------------------------------------- */

static const char *ystr(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *yget(yaml_document_t *d, yaml_node_t *n, const char *key)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const char *k = ystr(yaml_document_get_node(d, p->key));

		if (k && strcmp(k, key) == 0)
			return yaml_document_get_node(d, p->value);
	}
	return NULL;
}

/* A dotted path of mapping keys: "spec.template.spec". */
static yaml_node_t *ypath(yaml_document_t *d, yaml_node_t *n, const char *path)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, ".", &save); k && n; k = strtok_r(NULL, ".", &save))
		n = yget(d, n, k);
	return n;
}

static size_t ylen(const yaml_node_t *n)
{
	return n && n->type == YAML_SEQUENCE_NODE ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
						  : 0;
}

static yaml_node_t *yidx(yaml_document_t *d, yaml_node_t *n, size_t i)
{
	return i < ylen(n) ? yaml_document_get_node(d, n->data.sequence.items.start[i]) : NULL;
}

static bool yseq_has(yaml_document_t *d, yaml_node_t *n, const char *s)
{
	for (size_t i = 0; i < ylen(n); i++)
		if (ystr(yidx(d, n, i)) && strcmp(ystr(yidx(d, n, i)), s) == 0)
			return true;
	return false;
}

static struct ydoc *find(const char *kind, const char *name)
{
	for (size_t i = 0; i < ndocs; i++) {
		yaml_node_t *r = yaml_document_get_root_node(&docs[i].d);
		const char *k = ystr(yget(&docs[i].d, r, "kind")), *n = ystr(ypath(&docs[i].d, r, "metadata.name"));

		if (k && strcmp(k, kind) == 0 && (!name || (n && strcmp(n, name) == 0)))
			return &docs[i];
	}
	return NULL;
}

/* Every document of a YAML file into docs[] (patch: the first one into *one). 0, or -1 with why printed. */
static int load_file(const char *path, struct ydoc *one)
{
	FILE *f = fopen(path, "r");
	yaml_parser_t p;
	int rc = 0;

	if (!f) {
		fprintf(stderr, "# %s: %m\n", path);
		return -1;
	}
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	for (;;) {
		struct ydoc *y = one ? one : &docs[ndocs];

		if ((!one && ndocs == MAX_DOCS) || !yaml_parser_load(&p, &y->d)) {
			fprintf(stderr, "# %s:%zu: %s\n", path, p.problem_mark.line + 1, p.problem ? p.problem : "too many documents");
			rc = -1;
			break;
		}
		if (!yaml_document_get_root_node(&y->d)) {
			yaml_document_delete(&y->d);
			break;
		}
		snprintf(y->file, sizeof(y->file), "%s", path);
		if (one)
			break;
		ndocs++;
	}
	yaml_parser_delete(&p);
	fclose(f);
	return rc;
}

static int setup(void **state)
{
	glob_t g;
	char why[256];

	if (!du_daemon_options(&daemon_flags, why, sizeof(why))) {
		fprintf(stderr, "# %s\n", why);
		return -1;
	}
	if (glob("deploy/kubernetes/*.yaml", 0, NULL, &g) ||
	    glob("deploy/kubernetes/configmap-mode/*.yaml", GLOB_APPEND, NULL, &g)) {
		fprintf(stderr, "# no deploy/kubernetes/*.yaml or deploy/kubernetes/configmap-mode/*.yaml\n");
		return -1;
	}
	for (size_t i = 0; i < g.gl_pathc; i++)
		if (load_file(g.gl_pathv[i], NULL)) {
			globfree(&g);
			return -1;
		}
	globfree(&g);
	return load_file(PATCH, &patch);
}

static int teardown(void **state)
{
	for (size_t i = 0; i < ndocs; i++)
		yaml_document_delete(&docs[i].d);
	yaml_document_delete(&patch.d);
	du_free(&daemon_flags);
	return 0;
}

/* ---- the daemon's command line ---------------------------------------------- */

struct flag {
	char name[64];
	char value[256];
};

/* "--name=value" or "--name value" from argv-like words; returns the number of flags. */
static size_t parse_flags(char **words, size_t n, struct flag *out, size_t max)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < max; i++) {
		const char *w = words[i], *eq;

		if (strncmp(w, "--", 2) != 0)
			continue;
		eq = strchr(w, '=');
		snprintf(out[k].name, sizeof(out[k].name), "%.*s", (int)(eq ? eq - w - 2 : (long)strlen(w) - 2), w + 2);
		out[k].value[0] = '\0';
		if (eq)
			snprintf(out[k].value, sizeof(out[k].value), "%s", eq + 1);
		else if (i + 1 < n && strncmp(words[i + 1], "--", 2) != 0)
			snprintf(out[k].value, sizeof(out[k].value), "%s", words[++i]);
		k++;
	}
	return k;
}

static const char *flag_value(const struct flag *f, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(f[i].name, name) == 0)
			return f[i].value;
	return NULL;
}

static void check_flags_exist(const struct flag *f, size_t n, const char *where)
{
	for (size_t i = 0; i < n; i++)
		if (!du_has(&daemon_flags, f[i].name))
			fail_msg("%s passes --%s, which `kbackend daemon` does not have (user/daemon/daemon.c longopts)", where,
				 f[i].name);
}

/* ---- Kubernetes ------------------------------------------------------------------ */

struct pod {
	yaml_document_t *d;
	yaml_node_t *spec, *ctr;
	char *argv[64];
	size_t argc;
	struct flag flags[64];
	size_t nflags;
};

/* The kbackend container of a pod template: the DaemonSet's, or (from_patch) the ConfigMap mode's patch of it. */
static void load_pod_from(struct pod *p, struct ydoc *y, bool from_patch)
{
	yaml_node_t *ctrs, *cmd, *args;

	memset(p, 0, sizeof(*p));
	p->d = &y->d;
	p->spec = ypath(p->d, yaml_document_get_root_node(p->d), "spec.template.spec");
	ctrs = yget(p->d, p->spec, "containers");
	for (size_t i = 0; i < ylen(ctrs); i++) {
		const char *n = ystr(yget(p->d, yidx(p->d, ctrs, i), "name"));

		if (n && strcmp(n, "kbackend") == 0)
			p->ctr = yidx(p->d, ctrs, i);
	}
	if (!p->ctr)
		fail_msg("%s: no container named kbackend in spec.template.spec.containers", y->file);
	cmd = yget(p->d, p->ctr, "command");
	args = yget(p->d, p->ctr, "args");
	if (from_patch) {
		/* The patch keeps the command; its args replace the DaemonSet's whole. */
		p->argv[p->argc++] = "kbackend";
		p->argv[p->argc++] = "daemon";
	}
	for (size_t i = 0; i < ylen(cmd) && p->argc < 64; i++)
		p->argv[p->argc++] = (char *)ystr(yidx(p->d, cmd, i));
	for (size_t i = 0; i < ylen(args) && p->argc < 64; i++)
		p->argv[p->argc++] = (char *)ystr(yidx(p->d, args, i));
	for (size_t i = 0; i < p->argc; i++)
		if (!p->argv[i])
			fail_msg("%s: the kbackend container's command/args must be strings", y->file);
	p->nflags = parse_flags(p->argv, p->argc, p->flags, 64);
}

static void load_pod(struct pod *p)
{
	struct ydoc *ds = find("DaemonSet", NULL);

	if (!ds)
		fail_msg("no DaemonSet in deploy/kubernetes/");
	load_pod_from(p, ds, false);
}

static const char *root_str(struct ydoc *y, const char *path)
{
	return ystr(ypath(&y->d, yaml_document_get_root_node(&y->d), path));
}

static const char *const CLUSTER_KINDS[] = { "Namespace", "ClusterRole", "ClusterRoleBinding" };

static void test_k8s_objects(void **state)
{
	static const char *const need[] = { "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
					    "Role", "RoleBinding", "DaemonSet", "ConfigMap" };
	struct ydoc *ns = find("Namespace", NULL), *sa = find("ServiceAccount", NULL), *ds = find("DaemonSet", NULL);
	const char *nsname, *v;

	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!find(need[i], NULL))
			fail_msg("deploy/kubernetes/ (with configmap-mode/) has no %s", need[i]);
	nsname = root_str(ns, "metadata.name");
	for (size_t i = 0; i < ndocs; i++) {
		const char *kind = root_str(&docs[i], "kind"), *n = root_str(&docs[i], "metadata.namespace");
		bool cluster = false;

		assert_non_null(kind);
		for (size_t k = 0; k < sizeof(CLUSTER_KINDS) / sizeof(CLUSTER_KINDS[0]); k++)
			cluster |= strcmp(kind, CLUSTER_KINDS[k]) == 0;
		if (cluster && n)
			fail_msg("%s: %s is cluster-scoped and must name no namespace", docs[i].file, kind);
		if (!cluster && (!n || strcmp(n, nsname) != 0))
			fail_msg("%s: %s is not in namespace %s", docs[i].file, kind, nsname);
		/* A binding gives its role to the DaemonSet's service account, and to nobody else. */
		if (strstr(kind, "Binding")) {
			yaml_node_t *subj = ypath(&docs[i].d, yaml_document_get_root_node(&docs[i].d), "subjects");
			yaml_node_t *s0 = yidx(&docs[i].d, subj, 0);
			const char *rk = root_str(&docs[i], "roleRef.kind"), *rn = root_str(&docs[i], "roleRef.name");

			if (ylen(subj) != 1 || strcmp(ystr(yget(&docs[i].d, s0, "kind")) ?: "", "ServiceAccount") ||
			    strcmp(ystr(yget(&docs[i].d, s0, "name")) ?: "", root_str(sa, "metadata.name")) ||
			    strcmp(ystr(yget(&docs[i].d, s0, "namespace")) ?: "", nsname))
				fail_msg("%s: %s must bind exactly the ServiceAccount %s/%s", docs[i].file, kind, nsname,
					 root_str(sa, "metadata.name"));
			if (!rk || !rn || !find(rk, rn) || strcmp(rk, strcmp(kind, "RoleBinding") ? "ClusterRole" : "Role"))
				fail_msg("%s: %s's roleRef names no %s of deploy/kubernetes/", docs[i].file, kind,
					 strcmp(kind, "RoleBinding") ? "ClusterRole" : "Role");
		}
	}
	/* The token goes to the agent's pod only, which asks for it by name. */
	v = ystr(yget(&sa->d, yaml_document_get_root_node(&sa->d), "automountServiceAccountToken"));
	if (!v || strcmp(v, "false"))
		fail_msg("the ServiceAccount must set automountServiceAccountToken: false (the pod asks for its token)");
	v = root_str(ds, "spec.template.spec.serviceAccountName");
	if (!v || !find("ServiceAccount", v))
		fail_msg("the DaemonSet's serviceAccountName must name the ServiceAccount in deploy/kubernetes/");
}

/* ---- RBAC: exactly what the daemon asks of the API server (user/kube/) ---- */

enum { V_GET = 1, V_LIST = 2, V_WATCH = 4, V_UPDATE = 8, V_PATCH = 16, V_CREATE = 32 };

static unsigned verb_bits(struct ydoc *y, yaml_node_t *verbs)
{
	static const char *const names[] = { "get", "list", "watch", "update", "patch", "create" };
	unsigned bits = 0;

	for (size_t i = 0; i < ylen(verbs); i++) {
		const char *v = ystr(yidx(&y->d, verbs, i));
		size_t k = 0;

		while (k < 6 && (!v || strcmp(v, names[k])))
			k++;
		if (k == 6)
			fail_msg("%s: verb %s is not one the daemon uses", y->file, v ? v : "(not a string)");
		bits |= 1u << k;
	}
	return bits;
}

struct grant {
	char group[64], resource[96];
	unsigned verbs;
	bool named;	/* limited by resourceNames */
};

/* Every (apiGroup, resource) of a role's rules, with its verbs; wildcards and non-resource URLs fail. */
static size_t grants(struct ydoc *y, struct grant *out, size_t max)
{
	yaml_node_t *rules = ypath(&y->d, yaml_document_get_root_node(&y->d), "rules");
	size_t n = 0;

	for (size_t i = 0; i < ylen(rules); i++) {
		yaml_node_t *r = yidx(&y->d, rules, i), *gs = yget(&y->d, r, "apiGroups"), *rs = yget(&y->d, r, "resources");
		unsigned verbs = verb_bits(y, yget(&y->d, r, "verbs"));

		if (yget(&y->d, r, "nonResourceURLs") || yseq_has(&y->d, gs, "*") || yseq_has(&y->d, rs, "*"))
			fail_msg("%s: rule %zu has a wildcard or nonResourceURLs", y->file, i + 1);
		for (size_t g = 0; g < ylen(gs); g++)
			for (size_t k = 0; k < ylen(rs) && n < max; k++, n++) {
				snprintf(out[n].group, sizeof(out[n].group), "%s", ystr(yidx(&y->d, gs, g)));
				snprintf(out[n].resource, sizeof(out[n].resource), "%s", ystr(yidx(&y->d, rs, k)));
				out[n].verbs = verbs;
				out[n].named = yget(&y->d, r, "resourceNames") != NULL;
			}
	}
	return n;
}

static unsigned granted(const struct grant *g, size_t n, const char *group, const char *resource)
{
	unsigned v = 0;

	for (size_t i = 0; i < n; i++)
		if (!strcmp(g[i].group, group) && !strcmp(g[i].resource, resource))
			v |= g[i].verbs;
	return v;
}

/*
 * The ClusterRole grants get/list/watch on every kind the source reads and
 * update/patch on the status of every kind it writes status for, and
 * nothing else; the Role grants the one Lease. Both sides are the daemon's
 * own table (kube_kinds), so neither can drift from the other.
 */
static void test_rbac_matches_the_daemon(void **state)
{
	struct ydoc *cr = find("ClusterRole", NULL), *role = find("Role", NULL);
	struct grant g[128];
	size_t n = grants(cr, g, 128);
	char res[96];

	for (size_t i = 0; i < kube_nkinds; i++) {
		const struct kube_kind *k = &kube_kinds[i];

		if (granted(g, n, k->group, k->plural) != (V_GET | V_LIST | V_WATCH))
			fail_msg("%s: %s (%s/%s) must be granted exactly get, list, watch", cr->file, k->kind,
				 *k->group ? k->group : "core", k->plural);
		snprintf(res, sizeof(res), "%s/status", k->plural);
		if (granted(g, n, k->group, res) != (k->status ? V_UPDATE | V_PATCH : 0))
			fail_msg("%s: %s/status must be granted %s", cr->file, k->plural,
				 k->status ? "exactly update, patch (the daemon writes it)" : "nothing (the daemon never writes it)");
	}
	for (size_t j = 0; j < n; j++) {
		bool used = false;

		for (size_t i = 0; i < kube_nkinds; i++) {
			snprintf(res, sizeof(res), "%s/status", kube_kinds[i].plural);
			used |= !strcmp(g[j].group, kube_kinds[i].group) &&
				(!strcmp(g[j].resource, kube_kinds[i].plural) || !strcmp(g[j].resource, res));
		}
		if (!used || g[j].named)
			fail_msg("%s: %s/%s is granted but the daemon reads no such kind", cr->file, g[j].group, g[j].resource);
	}
	/* The Lease: create (cannot be limited to a name), get and update of ours only. */
	n = grants(role, g, 128);
	for (size_t j = 0; j < n; j++) {
		yaml_node_t *rules = ypath(&role->d, yaml_document_get_root_node(&role->d), "rules");

		if (strcmp(g[j].group, "coordination.k8s.io") || strcmp(g[j].resource, "leases"))
			fail_msg("%s: grants %s/%s; the Role is for the Lease only", role->file, g[j].group, g[j].resource);
		if ((g[j].verbs & V_CREATE) ? g[j].verbs != V_CREATE : g[j].verbs != (V_GET | V_UPDATE) || !g[j].named)
			fail_msg("%s: leases: create alone, and get/update only with resourceNames", role->file);
		for (size_t i = 0; i < ylen(rules); i++) {
			yaml_node_t *names = yget(&role->d, yidx(&role->d, rules, i), "resourceNames");

			if (names && (ylen(names) != 1 || !yseq_has(&role->d, names, KUBE_LEASE_NAME)))
				fail_msg("%s: resourceNames must be [%s], the daemon's Lease", role->file, KUBE_LEASE_NAME);
		}
	}
	assert_true(granted(g, n, "coordination.k8s.io", "leases") == (V_CREATE | V_GET | V_UPDATE));
}

static void test_daemonset_pod(void **state)
{
	struct pod p;
	const char *v;
	yaml_node_t *sc, *add;

	load_pod(&p);
	v = ystr(yget(p.d, p.spec, "hostNetwork"));
	if (!v || strcmp(v, "true"))
		fail_msg("the DaemonSet's pod must set hostNetwork: true");
	/* --kubernetes reads the service account's token; the pod asks for it (the account does not hand it out). */
	v = ystr(yget(p.d, p.spec, "automountServiceAccountToken"));
	if (!v || strcmp(v, "true"))
		fail_msg("the DaemonSet's pod must set automountServiceAccountToken: true (--kubernetes reads its token)");
	if (!flag_value(p.flags, p.nflags, "kubernetes"))
		fail_msg("the DaemonSet must run the Kubernetes source (--kubernetes) by default");
	/* The Lease holder's identity: the pod's name (user/kube/kube_status.c reads POD_NAME). */
	{
		yaml_node_t *env = yget(p.d, p.ctr, "env");
		bool pod_name = false;

		for (size_t i = 0; i < ylen(env); i++) {
			yaml_node_t *e = yidx(p.d, env, i);

			pod_name |= ystr(yget(p.d, e, "name")) && !strcmp(ystr(yget(p.d, e, "name")), "POD_NAME") &&
				    ystr(ypath(p.d, e, "valueFrom.fieldRef.fieldPath")) &&
				    !strcmp(ystr(ypath(p.d, e, "valueFrom.fieldRef.fieldPath")), "metadata.name");
		}
		if (!pod_name)
			fail_msg("the kbackend container needs env POD_NAME from metadata.name (the Lease identity)");
	}
	if (p.argc < 2 || strcmp(basename(p.argv[0]), "kbackend") || strcmp(p.argv[1], "daemon"))
		fail_msg("the kbackend container must run `kbackend daemon ...`");
	check_flags_exist(p.flags, p.nflags, "the DaemonSet");
	static const char *const required[] = { "cgroup", "bpffs", "state-dir" };

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!flag_value(p.flags, p.nflags, required[i]) || !*flag_value(p.flags, p.nflags, required[i]))
			fail_msg("the DaemonSet must pass --%s", required[i]);
	/* Privileges: privileged, or at least the capabilities loading and attaching need. */
	sc = yget(p.d, p.ctr, "securityContext");
	v = ystr(yget(p.d, sc, "privileged"));
	if (!v || strcmp(v, "true")) {
		add = ypath(p.d, sc, "capabilities.add");
		static const char *const caps[] = { "BPF", "PERFMON", "NET_ADMIN" };

		for (size_t i = 0; i < 3; i++)
			if (!yseq_has(p.d, add, caps[i]))
				fail_msg("the kbackend container is not privileged and lacks capability %s", caps[i]);
	}
}

/* The volumeMount that holds path (the longest mountPath that is path or a parent of it), and its volume. */
static yaml_node_t *mount_for(struct pod *p, const char *path, yaml_node_t **vol, const char **mount_path)
{
	yaml_node_t *mounts = yget(p->d, p->ctr, "volumeMounts"), *best = NULL, *vols;
	size_t bestlen = 0;

	for (size_t i = 0; i < ylen(mounts); i++) {
		yaml_node_t *m = yidx(p->d, mounts, i);
		const char *mp = ystr(yget(p->d, m, "mountPath"));
		size_t n = mp ? strlen(mp) : 0;

		if (n && strncmp(path, mp, n) == 0 && (path[n] == '\0' || path[n] == '/') && n > bestlen) {
			best = m;
			bestlen = n;
			*mount_path = mp;
		}
	}
	if (!best)
		fail_msg("DaemonSet: %s is on no volumeMount of the kbackend container", path);
	vols = yget(p->d, p->spec, "volumes");
	*vol = NULL;
	for (size_t i = 0; i < ylen(vols); i++) {
		const char *n = ystr(yget(p->d, yidx(p->d, vols, i), "name"));

		if (n && strcmp(n, ystr(yget(p->d, best, "name"))) == 0)
			*vol = yidx(p->d, vols, i);
	}
	if (!*vol)
		fail_msg("DaemonSet: volumeMount %s names no volume", *mount_path);
	return best;
}

static void expect_host_path(struct pod *p, const char *flag, const char *value, const char *host, bool exact)
{
	yaml_node_t *vol, *m;
	const char *mp, *hp;

	m = mount_for(p, value, &vol, &mp);
	hp = ystr(ypath(p->d, vol, "hostPath.path"));
	if (!hp || strcmp(hp, host))
		fail_msg("DaemonSet: --%s=%s must be on a hostPath volume of %s (it is on %s)", flag, value, host,
			 hp ? hp : "a non-hostPath volume");
	if (exact && strcmp(mp, value))
		fail_msg("DaemonSet: --%s=%s must be the mountPath of the %s hostPath (%s)", flag, value, host, mp);
	(void)m;
}

static void expect_writable(struct pod *p, const char *flag, const char *value)
{
	yaml_node_t *vol, *m;
	const char *mp, *ro;

	m = mount_for(p, value, &vol, &mp);
	ro = ystr(yget(p->d, m, "readOnly"));
	if (ro && strcmp(ro, "true") == 0)
		fail_msg("DaemonSet: --%s=%s is on a readOnly mount", flag, value);
}

static void test_daemonset_mounts_match_flags(void **state)
{
	struct pod p;
	char parent[256];
	const char *v;

	load_pod(&p);
	/* bpffs: the daemon pins under --bpffs and wants the host's bpffs on its parent. */
	v = flag_value(p.flags, p.nflags, "bpffs");
	snprintf(parent, sizeof(parent), "%s", v);
	expect_host_path(&p, "bpffs", dirname(parent), "/sys/fs/bpf", true);
	expect_writable(&p, "bpffs", v);
	/* cgroup2: the host's hierarchy (read-only is enough to attach). */
	expect_host_path(&p, "cgroup", flag_value(p.flags, p.nflags, "cgroup"), "/sys/fs/cgroup", false);
	/* State survives the pod: a hostPath. */
	v = flag_value(p.flags, p.nflags, "state-dir");
	expect_host_path(&p, "state-dir", v, "/var/lib/kbackend", true);
	expect_writable(&p, "state-dir", v);
	/* The control socket's directory and every sidecar directory are writable mounts. */
	v = flag_value(p.flags, p.nflags, "socket");
	snprintf(parent, sizeof(parent), "%s", v ? v : NS_DEFAULT_SOCKET);
	expect_writable(&p, "socket", dirname(parent));
	for (size_t i = 0; i < p.nflags; i++)
		if (strcmp(p.flags[i].name, "unix-dir") == 0)
			expect_writable(&p, "unix-dir", p.flags[i].value);
}

static void check_probe(struct pod *p, const char *which, bool required)
{
	yaml_node_t *cmd = ypath(p->d, p->ctr, which);
	const char *sock = flag_value(p->flags, p->nflags, "socket");
	char *words[16];
	size_t n = 0;
	struct flag f[8];

	if (!cmd) {
		if (required)
			fail_msg("DaemonSet: the kbackend container has no %s", which);
		return;
	}
	for (size_t i = 0; i < ylen(cmd) && n < 16; i++)
		words[n++] = (char *)ystr(yidx(p->d, cmd, i));
	if (n < 2 || !words[0] || !words[1] || strcmp(basename(words[0]), "kbackend") || strcmp(words[1], "status"))
		fail_msg("DaemonSet: %s must run `kbackend status`", which);
	/* The probe must ask the socket the daemon serves. */
	size_t nf = parse_flags(words, n, f, 8);
	const char *psock = flag_value(f, nf, "socket");

	if (strcmp(psock ? psock : NS_DEFAULT_SOCKET, sock ? sock : NS_DEFAULT_SOCKET))
		fail_msg("DaemonSet: %s asks %s, the daemon serves %s", which, psock ? psock : NS_DEFAULT_SOCKET,
			 sock ? sock : NS_DEFAULT_SOCKET);
}

static void test_daemonset_probes(void **state)
{
	struct pod p;

	load_pod(&p);
	check_probe(&p, "livenessProbe.exec.command", true);
	check_probe(&p, "readinessProbe.exec.command", true);
	check_probe(&p, "startupProbe.exec.command", false);
}

/* The ConfigMap the patched pod's --watch-dir reads (its mount and volume are the patch's own). */
static struct ydoc *patched_configmap(struct pod *pp)
{
	const char *wd = flag_value(pp->flags, pp->nflags, "watch-dir"), *mp;
	yaml_node_t *vol;

	if (!wd || !*wd)
		fail_msg("%s: ConfigMap mode must pass --watch-dir", PATCH);
	mount_for(pp, wd, &vol, &mp);
	if (strcmp(mp, wd) || !ystr(ypath(pp->d, vol, "configMap.name")) ||
	    !find("ConfigMap", ystr(ypath(pp->d, vol, "configMap.name"))))
		fail_msg("%s: --watch-dir=%s must be the mountPath of a ConfigMap volume of configmap-mode/", PATCH, wd);
	return find("ConfigMap", ystr(ypath(pp->d, vol, "configMap.name")));
}

/*
 * ConfigMap mode: the patch's args (which replace the DaemonSet's whole)
 * are the DaemonSet's with --kubernetes swapped for --watch-dir, so the two
 * modes cannot drift apart; and the pod gets no token.
 */
static void test_configmap_mode_patch(void **state)
{
	struct pod p, pp;
	const char *v;

	load_pod(&p);
	load_pod_from(&pp, &patch, true);
	check_flags_exist(pp.flags, pp.nflags, PATCH);
	for (size_t i = 0; i < p.nflags; i++) {
		v = flag_value(pp.flags, pp.nflags, p.flags[i].name);
		if (strcmp(p.flags[i].name, "kubernetes") && (!v || strcmp(v, p.flags[i].value)))
			fail_msg("%s: args must keep the DaemonSet's --%s=%s", PATCH, p.flags[i].name, p.flags[i].value);
	}
	for (size_t i = 0; i < pp.nflags; i++)
		if (strcmp(pp.flags[i].name, "watch-dir") && !flag_value(p.flags, p.nflags, pp.flags[i].name))
			fail_msg("%s: --%s is not in the DaemonSet's args", PATCH, pp.flags[i].name);
	if (flag_value(pp.flags, pp.nflags, "kubernetes"))
		fail_msg("%s: ConfigMap mode must not pass --kubernetes", PATCH);
	patched_configmap(&pp);
	v = ystr(yget(pp.d, pp.spec, "automountServiceAccountToken"));
	if (!v || strcmp(v, "false"))
		fail_msg("%s: ConfigMap mode needs no API access: automountServiceAccountToken: false", PATCH);
}

/* The ConfigMap's manifests are accepted by kbackend's own validator, under the ConfigMap mode's policy flags. */
static void test_configmap_manifests_valid(void **state)
{
	struct pod p;
	struct ydoc *cm;
	yaml_node_t *data;
	struct kb_policy pol;
	struct kb_model m;
	char *unix_dirs[16];
	size_t nfiles = 0;

	load_pod_from(&p, &patch, true);
	cm = patched_configmap(&p);
	kb_policy_init(&pol);
	pol.unix_dirs = unix_dirs;
	for (size_t i = 0; i < p.nflags; i++) {
		if (strcmp(p.flags[i].name, "enable-backend") == 0)
			pol.enable_backend = 1;
		if (strcmp(p.flags[i].name, "unix-dir") == 0 && pol.nunix_dirs < 16)
			unix_dirs[pol.nunix_dirs++] = p.flags[i].value;
	}
	kb_model_init(&m);
	data = yget(&cm->d, yaml_document_get_root_node(&cm->d), "data");
	assert_non_null(data);
	for (yaml_node_pair_t *pr = data->data.mapping.pairs.start; pr < data->data.mapping.pairs.top; pr++) {
		const char *k = ystr(yaml_document_get_node(&cm->d, pr->key));
		yaml_node_t *v = yaml_document_get_node(&cm->d, pr->value);

		assert_non_null(ystr(v));
		kb_manifest_load_buffer(&m, k, ystr(v), v->data.scalar.length);
		nfiles++;
	}
	assert_true(nfiles > 0);
	int refused = kb_validate(&m, &pol);

	if (refused || m.nerrors) {
		char buf[256];

		for (size_t i = 0; i < m.ndiags; i++) {
			kb_diag_format(&m.diags[i], buf, sizeof(buf));
			print_message("# %s\n", buf);
		}
		kb_model_free(&m);
		fail_msg("the ConfigMap's manifests: %d object(s) refused, %zu error(s)", refused, m.nerrors);
	}
	assert_true(m.nbackends > 0 && m.ngateways > 0);
	kb_model_free(&m);
}

/* ---- the image ------------------------------------------------------------------ */

/* Every library the build links (scripts/deps.sh's lib*-dev, less the test-only ones) is in the image's build stage. */
static void test_dockerfile_has_build_libraries(void **state)
{
	char *deps = du_read_file("scripts/deps.sh"), *df = du_read_file("deploy/Dockerfile"), *save = NULL;
	const char *start, *end;
	size_t n = 0;

	assert_non_null(deps);
	assert_non_null(df);
	start = strstr(deps, "PKGS=\"");
	end = start ? strchr(start + 6, '"') : NULL;
	assert_non_null(end);
	((char *)end)[0] = '\0';
	end = strstr(df, "\nFROM ");	/* the build stage: up to the second FROM */
	end = end ? strstr(end + 1, "\nFROM ") : NULL;
	assert_non_null(end);
	((char *)end)[0] = '\0';
	for (char *w = strtok_r((char *)start + 6, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
		size_t l = strlen(w);
		char *hit;

		if (strncmp(w, "lib", 3) || l < 5 || strcmp(w + l - 4, "-dev") || !strcmp(w, "libcmocka-dev") ||
		    !strncmp(w, "libclang-rt", 11))
			continue;
		n++;
		hit = strstr(df, w);
		if (!hit || (hit[l] != ' ' && hit[l] != '\n') || (hit[-1] != ' '))
			fail_msg("deploy/Dockerfile's build stage lacks %s, which scripts/deps.sh installs for the build", w);
	}
	assert_true(n >= 8);
	free(deps);
	free(df);
}

/* ---- systemd ----------------------------------------------------------------------- */

#define UNIT "deploy/systemd/kbackend.service"
#define ENVFILE "deploy/systemd/kbackend.env"

/* All values of Key= in the unit (repeated keys add up), space-separated. */
static void unit_values(const char *unit, const char *key, char *out, size_t len)
{
	size_t klen = strlen(key);

	out[0] = '\0';
	for (const char *l = unit; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, klen) == 0 && l[klen] == '=') {
			size_t n = strlen(out);

			snprintf(out + n, len - n, "%s%.*s", n ? " " : "", (int)strcspn(l + klen + 1, "\n"), l + klen + 1);
		}
	}
}

static bool word_in(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return true;
	return false;
}

static size_t split_words(char *s, char **w, size_t max)
{
	size_t n = 0;
	char *save = NULL;

	for (char *t = strtok_r(s, " \t\"", &save); t && n < max; t = strtok_r(NULL, " \t\"", &save))
		w[n++] = t;
	return n;
}

static void test_systemd_unit(void **state)
{
	char *unit = du_read_file(UNIT), *env = du_read_file(ENVFILE);
	char v[4096], *w[64];
	struct flag f[64];
	size_t n, nf;
	const char *bpffs, *state_dir, *sock;
	char parent[256];

	assert_non_null(unit);
	assert_non_null(env);
	unit_values(unit, "ExecStart", v, sizeof(v));
	n = split_words(v, w, 64);
	if (n < 2 || strcmp(basename(w[0]), "kbackend") || strcmp(w[1], "daemon"))
		fail_msg(UNIT ": ExecStart must run kbackend daemon");
	nf = parse_flags(w, n, f, 64);
	check_flags_exist(f, nf, UNIT " ExecStart");
	if (!flag_value(f, nf, "cgroup"))
		fail_msg(UNIT ": ExecStart must pass --cgroup");
	bpffs = flag_value(f, nf, "bpffs");
	state_dir = flag_value(f, nf, "state-dir");
	sock = flag_value(f, nf, "socket");
	/* The environment file's examples, commented-out ones included, must name real flags too. */
	for (char *l = env; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char line[1024], *eq;
		struct flag ef[32];

		snprintf(line, sizeof(line), "%.*s", (int)strcspn(l, "\n"), l);
		eq = strchr(line, '=');
		if (!eq || (line[0] == '#' && strncmp(line, "#KBACKEND_", 10)))
			continue;
		size_t ne = split_words(eq + 1, w, 64), nef = parse_flags(w, ne, ef, 32);

		check_flags_exist(ef, nef, ENVFILE);
	}
	/* Capabilities: the three that loading and attaching need, plus at most CAP_SYS_ADMIN. */
	unit_values(unit, "CapabilityBoundingSet", v, sizeof(v));
	{
		char copy[4096];

		snprintf(copy, sizeof(copy), "%s", v);
		n = split_words(copy, w, 64);
		for (size_t i = 0; i < n; i++)
			if (!word_in("CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_ADMIN", w[i]))
				fail_msg(UNIT ": CapabilityBoundingSet has %s, which kbackend does not need", w[i]);
		if (!word_in(v, "CAP_BPF") || !word_in(v, "CAP_PERFMON") || !word_in(v, "CAP_NET_ADMIN"))
			fail_msg(UNIT ": CapabilityBoundingSet needs CAP_BPF CAP_PERFMON CAP_NET_ADMIN");
	}
	static const char *const yes[][2] = {
		{ "ProtectSystem", "strict" }, { "NoNewPrivileges", "yes" }, { "ProtectHome", "yes" },
		{ "PrivateTmp", "yes" },       { "User", "root" },
	};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		unit_values(unit, yes[i][0], v, sizeof(v));
		if (strcmp(v, yes[i][1]))
			fail_msg(UNIT ": %s=%s expected", yes[i][0], yes[i][1]);
	}
	unit_values(unit, "RestrictAddressFamilies", v, sizeof(v));
	if (!word_in(v, "AF_UNIX") || !word_in(v, "AF_INET") || !word_in(v, "AF_INET6") || !word_in(v, "AF_NETLINK"))
		fail_msg(UNIT ": RestrictAddressFamilies needs AF_UNIX AF_INET AF_INET6 AF_NETLINK");
	/* ProtectSystem=strict: what the daemon writes must be made writable. */
	unit_values(unit, "ReadWritePaths", v, sizeof(v));
	snprintf(parent, sizeof(parent), "%s", bpffs ? bpffs : "/sys/fs/bpf/kbackend");
	if (!word_in(v, dirname(parent)))
		fail_msg(UNIT ": ReadWritePaths needs the bpffs %s", parent);
	{
		char sd[256], rd[256], want[300];

		unit_values(unit, "StateDirectory", sd, sizeof(sd));
		snprintf(want, sizeof(want), "/var/lib/%s", sd);
		if (!(sd[0] && strcmp(want, state_dir ? state_dir : "/var/lib/kbackend") == 0) &&
		    !word_in(v, state_dir ? state_dir : "/var/lib/kbackend"))
			fail_msg(UNIT ": --state-dir must be the StateDirectory= or in ReadWritePaths");
		unit_values(unit, "RuntimeDirectory", rd, sizeof(rd));
		snprintf(parent, sizeof(parent), "%s", sock ? sock : NS_DEFAULT_SOCKET);
		snprintf(want, sizeof(want), "/run/%s", rd);
		if (!(rd[0] && strcmp(want, dirname(parent)) == 0) && !word_in(v, parent))
			fail_msg(UNIT ": the socket's directory must be the RuntimeDirectory= or in ReadWritePaths");
	}
	free(unit);
	free(env);
}

/*
 * systemd-analyze verify accepts the unit (with the binary and man page from
 * this build). `make deps` installs it, so a missing one is a failure.
 */
static void test_systemd_verify(void **state)
{
	char dir[] = "/tmp/kbackend-unit.XXXXXX", cmd[4096], *out, cwd[1024];
	int rc;

	out = du_run("command -v systemd-analyze", &rc);
	free(out);
	if (rc != 0)
		fail_msg("systemd-analyze is not installed (package systemd; run `make deps`)");
	assert_non_null(mkdtemp(dir));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %1$s/man/man1 && cp %2$s/%3$s/kbackend.1 %1$s/man/man1/ && "
		 "sed 's|/usr/local/bin/kbackend|%2$s/%3$s/kbackend|g' " UNIT " > %1$s/kbackend.service && "
		 "MANPATH=%1$s/man systemd-analyze verify %1$s/kbackend.service 2>&1; echo rc=$?; rm -rf %1$s",
		 dir, cwd, du_out());
	out = du_run(cmd, &rc);
	assert_non_null(out);
	if (strcmp(out, "rc=0\n"))
		fail_msg("systemd-analyze verify " UNIT ":\n%s", out);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_k8s_objects),
		cmocka_unit_test(test_rbac_matches_the_daemon),
		cmocka_unit_test(test_daemonset_pod),
		cmocka_unit_test(test_daemonset_mounts_match_flags),
		cmocka_unit_test(test_daemonset_probes),
		cmocka_unit_test(test_configmap_mode_patch),
		cmocka_unit_test(test_configmap_manifests_valid),
		cmocka_unit_test(test_dockerfile_has_build_libraries),
		cmocka_unit_test(test_systemd_unit),
		cmocka_unit_test(test_systemd_verify),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
