// SPDX-License-Identifier: Apache-2.0
/* deploy/ against the daemon: the DaemonSet's flags, mounts, probes and privileges, and the systemd unit's. */
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
#include "manifest/manifest.h"
#include "manifest/model.h"
#include "validate/validate.h"

#define NS_DEFAULT_SOCKET "/run/kbackend/kbackend.sock"
#define MAX_DOCS 64

struct ydoc {
	yaml_document_t d;
	char file[256];
};

static struct ydoc docs[MAX_DOCS];
static size_t ndocs;
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

static int setup(void **state)
{
	glob_t g;
	char why[256];

	if (!du_daemon_options(&daemon_flags, why, sizeof(why))) {
		fprintf(stderr, "# %s\n", why);
		return -1;
	}
	if (glob("deploy/kubernetes/*.yaml", 0, NULL, &g)) {
		fprintf(stderr, "# no deploy/kubernetes/*.yaml\n");
		return -1;
	}
	for (size_t i = 0; i < g.gl_pathc; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");
		yaml_parser_t p;

		if (!f)
			return -1;
		yaml_parser_initialize(&p);
		yaml_parser_set_input_file(&p, f);
		for (;;) {
			struct ydoc *y = &docs[ndocs];

			if (ndocs == MAX_DOCS || !yaml_parser_load(&p, &y->d)) {
				fprintf(stderr, "# %s:%zu: %s\n", g.gl_pathv[i], p.problem_mark.line + 1,
					p.problem ? p.problem : "too many documents");
				yaml_parser_delete(&p);
				fclose(f);
				globfree(&g);
				return -1;
			}
			if (!yaml_document_get_root_node(&y->d)) {
				yaml_document_delete(&y->d);
				break;
			}
			snprintf(y->file, sizeof(y->file), "%s", g.gl_pathv[i]);
			ndocs++;
		}
		yaml_parser_delete(&p);
		fclose(f);
	}
	globfree(&g);
	return 0;
}

static int teardown(void **state)
{
	for (size_t i = 0; i < ndocs; i++)
		yaml_document_delete(&docs[i].d);
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

static void load_pod(struct pod *p)
{
	struct ydoc *ds = find("DaemonSet", NULL);
	yaml_node_t *ctrs, *cmd, *args;

	if (!ds)
		fail_msg("no DaemonSet in deploy/kubernetes/");
	memset(p, 0, sizeof(*p));
	p->d = &ds->d;
	p->spec = ypath(p->d, yaml_document_get_root_node(p->d), "spec.template.spec");
	ctrs = yget(p->d, p->spec, "containers");
	for (size_t i = 0; i < ylen(ctrs); i++) {
		const char *n = ystr(yget(p->d, yidx(p->d, ctrs, i), "name"));

		if (n && strcmp(n, "kbackend") == 0)
			p->ctr = yidx(p->d, ctrs, i);
	}
	if (!p->ctr)
		fail_msg("%s: the DaemonSet has no container named kbackend", ds->file);
	cmd = yget(p->d, p->ctr, "command");
	args = yget(p->d, p->ctr, "args");
	for (size_t i = 0; i < ylen(cmd) && p->argc < 64; i++)
		p->argv[p->argc++] = (char *)ystr(yidx(p->d, cmd, i));
	for (size_t i = 0; i < ylen(args) && p->argc < 64; i++)
		p->argv[p->argc++] = (char *)ystr(yidx(p->d, args, i));
	for (size_t i = 0; i < p->argc; i++)
		if (!p->argv[i])
			fail_msg("the kbackend container's command/args must be strings");
	p->nflags = parse_flags(p->argv, p->argc, p->flags, 64);
}

static void test_k8s_objects_and_rbac(void **state)
{
	struct ydoc *ns = find("Namespace", NULL), *sa = find("ServiceAccount", NULL);
	const char *nsname;

	assert_true(ndocs >= 4);
	if (!ns || !sa || !find("ConfigMap", NULL) || !find("DaemonSet", NULL))
		fail_msg("deploy/kubernetes/ needs a Namespace, a ServiceAccount, a ConfigMap and a DaemonSet");
	nsname = ystr(ypath(&ns->d, yaml_document_get_root_node(&ns->d), "metadata.name"));
	for (size_t i = 0; i < ndocs; i++) {
		yaml_node_t *r = yaml_document_get_root_node(&docs[i].d);
		const char *kind = ystr(yget(&docs[i].d, r, "kind")), *n = ystr(ypath(&docs[i].d, r, "metadata.namespace"));

		assert_non_null(kind);
		/* RBAC no wider than needed: kbackend reads no API object, so it is granted nothing. */
		if (strstr(kind, "Role"))
			fail_msg("%s: %s: kbackend needs no API permission; grant none", docs[i].file, kind);
		if (strcmp(kind, "Namespace") != 0 && (!n || strcmp(n, nsname) != 0))
			fail_msg("%s: %s is not in namespace %s", docs[i].file, kind, nsname);
	}
	if (!ystr(yget(&sa->d, yaml_document_get_root_node(&sa->d), "automountServiceAccountToken")) ||
	    strcmp(ystr(yget(&sa->d, yaml_document_get_root_node(&sa->d), "automountServiceAccountToken")), "false"))
		fail_msg("the ServiceAccount must set automountServiceAccountToken: false");
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
	v = ystr(yget(p.d, p.spec, "automountServiceAccountToken"));
	if (!v || strcmp(v, "false"))
		fail_msg("the DaemonSet's pod must set automountServiceAccountToken: false");
	v = ystr(yget(p.d, p.spec, "serviceAccountName"));
	if (!v || !find("ServiceAccount", v))
		fail_msg("the DaemonSet's serviceAccountName must name the ServiceAccount in deploy/kubernetes/");
	if (p.argc < 2 || strcmp(basename(p.argv[0]), "kbackend") || strcmp(p.argv[1], "daemon"))
		fail_msg("the kbackend container must run `kbackend daemon ...`");
	check_flags_exist(p.flags, p.nflags, "the DaemonSet");
	static const char *const required[] = { "cgroup", "bpffs", "state-dir", "watch-dir" };

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
	const char *v, *mp;
	yaml_node_t *vol;

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
	/* The watch dir is the ConfigMap. */
	v = flag_value(p.flags, p.nflags, "watch-dir");
	mount_for(&p, v, &vol, &mp);
	if (strcmp(mp, v) || !ystr(ypath(p.d, vol, "configMap.name")) ||
	    !find("ConfigMap", ystr(ypath(p.d, vol, "configMap.name"))))
		fail_msg("DaemonSet: --watch-dir=%s must be the mountPath of a ConfigMap volume of deploy/kubernetes/", v);
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

/* The ConfigMap's manifests are accepted by kbackend's own validator, under the DaemonSet's policy flags. */
static void test_configmap_manifests_valid(void **state)
{
	struct pod p;
	struct ydoc *cm;
	yaml_node_t *data;
	struct kb_policy pol;
	struct kb_model m;
	char *unix_dirs[16];
	size_t nfiles = 0;

	load_pod(&p);
	{
		const char *wd = flag_value(p.flags, p.nflags, "watch-dir"), *mp;
		yaml_node_t *vol;

		mount_for(&p, wd, &vol, &mp);
		cm = find("ConfigMap", ystr(ypath(p.d, vol, "configMap.name")));
		assert_non_null(cm);
	}
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
		cmocka_unit_test(test_k8s_objects_and_rbac),
		cmocka_unit_test(test_daemonset_pod),
		cmocka_unit_test(test_daemonset_mounts_match_flags),
		cmocka_unit_test(test_daemonset_probes),
		cmocka_unit_test(test_configmap_manifests_valid),
		cmocka_unit_test(test_systemd_unit),
		cmocka_unit_test(test_systemd_verify),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
