// SPDX-License-Identifier: Apache-2.0
/* Where the API server is and who kbackend is to it: the pod's service account, or a kubeconfig's current context. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <yaml.h>

#include "util.h"
#include "kube/kube_int.h"

#define MAX_FILE (4u << 20)

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f)
		return NULL;
	for (;;) {
		size_t r;

		if (n + 4096 + 1 > cap) {
			char *nb = cap > MAX_FILE ? NULL : realloc(buf, cap = cap ? cap * 2 : 8192);

			if (!nb) {
				free(buf);
				fclose(f);
				errno = cap > MAX_FILE ? EFBIG : ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static void trim(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

int kb_kube_conf_in_cluster(struct kb_kube_conf *c, const char *sa_dir, char *why, size_t len)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	char path[4096];
	char *ns;

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	snprintf(c->origin, sizeof(c->origin), "in-cluster (%s)", sa_dir);
	if (!host || !*host || !port || !*port) {
		snprintf(why, len, "--kubernetes: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
				   "(not running in a pod? use --kubeconfig FILE)");
		return -1;
	}
	if (asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0)
		c->server = NULL;
	snprintf(path, sizeof(path), "%s/token", sa_dir);
	if (access(path, R_OK)) {
		snprintf(why, len, "--kubernetes: cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	c->token_file = strdup(path);
	snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
	if (access(path, R_OK)) {
		snprintf(why, len, "--kubernetes: cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	c->ca_file = strdup(path);
	snprintf(path, sizeof(path), "%s/namespace", sa_dir);
	ns = read_file(path, NULL);
	if (ns)
		trim(ns);
	c->namespace = ns && *ns ? ns : strdup("default");
	if (ns && !*ns)
		free(ns);
	return 0;
}

/* ---- kubeconfig: YAML through libyaml's document API ---- */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, key))
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *scalar(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_t *v = map_get(doc, map, key);

	return v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : NULL;
}

/* The entry of a named list (clusters, users, contexts) whose name is name: its inner mapping (under field). */
static yaml_node_t *named(yaml_document_t *doc, yaml_node_t *root, const char *list, const char *field,
			  const char *name)
{
	yaml_node_t *seq = map_get(doc, root, list);

	if (!seq || seq->type != YAML_SEQUENCE_NODE || !name)
		return NULL;
	for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top; i++) {
		yaml_node_t *e = yaml_document_get_node(doc, *i);
		const char *n = scalar(doc, e, "name");

		if (n && !strcmp(n, name))
			return map_get(doc, e, field);
	}
	return NULL;
}

/* A path in a kubeconfig is relative to the kubeconfig's directory. */
static char *resolve(const char *dir, const char *p)
{
	char *out;

	if (!p || !*p)
		return NULL;
	if (p[0] == '/')
		return strdup(p);
	if (asprintf(&out, "%s/%s", dir, p) < 0)
		return NULL;
	return out;
}

/* base64 (the *-data fields) to bytes, through OpenSSL; NULL when it is not base64. */
static char *unbase64(const char *s, size_t *len)
{
	size_t n = 0, in = strlen(s);
	char *clean = malloc(in + 1), *out;
	int r;

	if (!clean)
		return NULL;
	for (size_t i = 0; i < in; i++)
		if (s[i] != '\n' && s[i] != '\r' && s[i] != ' ')
			clean[n++] = s[i];
	clean[n] = '\0';
	out = malloc(n / 4 * 3 + 4);
	r = out && n % 4 == 0 ? EVP_DecodeBlock((unsigned char *)out, (unsigned char *)clean, (int)n) : -1;
	if (r < 0) {
		free(clean);
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding's zero bytes. */
	while (n && clean[n - 1] == '=') {
		n--;
		r--;
	}
	free(clean);
	out[r] = '\0';
	*len = (size_t)r;
	return out;
}

static int data_field(yaml_document_t *doc, yaml_node_t *m, const char *key, char **out, size_t *len,
		      const char *path, char *why, size_t wlen)
{
	const char *v = scalar(doc, m, key);

	if (!v)
		return 0;
	*out = unbase64(v, len);
	if (!*out) {
		snprintf(why, wlen, "%s: %s is not base64", path, key);
		return -1;
	}
	return 0;
}

int kb_kube_conf_kubeconfig(struct kb_kube_conf *c, const char *path, char *why, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *ctx, *cluster, *user;
	const char *cur, *cname, *uname, *s;
	char *buf, *dcopy, *dir;
	size_t blen;
	int err = -1;

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	buf = read_file(path, &blen);
	if (!buf) {
		snprintf(why, len, "--kubeconfig %s: %s", path, strerror(errno));
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (unsigned char *)buf, blen);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(why, len, "%s:%zu: not YAML: %s", path, parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
		free(buf);
		return -1;
	}
	dcopy = strdup(path);
	dir = dirname(dcopy);
	root = yaml_document_get_root_node(&doc);
	cur = scalar(&doc, root, "current-context");
	if (!cur || !*cur) {
		snprintf(why, len, "%s: no current-context", path);
		goto out;
	}
	ctx = named(&doc, root, "contexts", "context", cur);
	if (!ctx) {
		snprintf(why, len, "%s: current-context %s: no such context", path, cur);
		goto out;
	}
	cname = scalar(&doc, ctx, "cluster");
	uname = scalar(&doc, ctx, "user");
	snprintf(c->origin, sizeof(c->origin), "%s (context %s)", path, cur);
	cluster = named(&doc, root, "clusters", "cluster", cname);
	if (!cluster || !(s = scalar(&doc, cluster, "server")) || !*s) {
		snprintf(why, len, "%s: context %s: cluster %s %s", path, cur, cname ? cname : "(none)",
			 cluster ? "has no server" : "not found");
		goto out;
	}
	c->server = strdup(s);
	while (strlen(c->server) > 1 && c->server[strlen(c->server) - 1] == '/')
		c->server[strlen(c->server) - 1] = '\0';
	if (strncmp(c->server, "https://", 8) && strncmp(c->server, "http://", 7)) {
		snprintf(why, len, "%s: cluster %s: server %s is not an http(s) URL", path, cname, s);
		goto out;
	}
	c->ca_file = resolve(dir, scalar(&doc, cluster, "certificate-authority"));
	if (data_field(&doc, cluster, "certificate-authority-data", &c->ca_data, &c->ca_len, path, why, len))
		goto out;
	s = scalar(&doc, cluster, "insecure-skip-tls-verify");
	c->insecure = s && !strcmp(s, "true");
	c->namespace = strdup((s = scalar(&doc, ctx, "namespace")) && *s ? s : "default");
	user = named(&doc, root, "users", "user", uname);
	if (uname && !user) {
		snprintf(why, len, "%s: context %s: user %s not found", path, cur, uname);
		goto out;
	}
	if (map_get(&doc, user, "exec") || map_get(&doc, user, "auth-provider")) {
		snprintf(why, len, "%s: user %s: %s is not supported (use a token, tokenFile or a client certificate)",
			 path, uname, map_get(&doc, user, "exec") ? "an exec credential plugin" : "an auth-provider");
		goto out;
	}
	if (scalar(&doc, user, "username") || scalar(&doc, user, "password")) {
		snprintf(why, len, "%s: user %s: basic authentication (username/password) is not supported", path, uname);
		goto out;
	}
	c->cert_file = resolve(dir, scalar(&doc, user, "client-certificate"));
	c->key_file = resolve(dir, scalar(&doc, user, "client-key"));
	if (data_field(&doc, user, "client-certificate-data", &c->cert_data, &c->cert_len, path, why, len) ||
	    data_field(&doc, user, "client-key-data", &c->key_data, &c->key_len, path, why, len))
		goto out;
	if ((s = scalar(&doc, user, "token")) && *s)
		c->token = strdup(s);
	c->token_file = resolve(dir, scalar(&doc, user, "tokenFile"));
	/* A bearer token over plain HTTP is readable by anyone on the path; only `kubectl proxy`-style servers take none. */
	if (!strncmp(c->server, "http://", 7) && (c->token || c->token_file)) {
		snprintf(why, len, "%s: user %s: a token would be sent in the clear to %s: use an https server", path,
			 uname ? uname : "(none)", c->server);
		goto out;
	}
	err = 0;
out:
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(dcopy);
	free(buf);
	return err;
}

void kb_kube_conf_free(struct kb_kube_conf *c)
{
	free(c->server);
	free(c->ca_file);
	free(c->ca_data);
	free(c->cert_file);
	free(c->key_file);
	free(c->cert_data);
	free(c->key_data);
	free(c->token);
	free(c->token_file);
	free(c->namespace);
	free(c->token_read);
	pthread_mutex_destroy(&c->lock);
	memset(c, 0, sizeof(*c));
}

char *kb_kube_conf_auth_header(struct kb_kube_conf *c)
{
	char *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->token_file) {
		struct stat st;

		/* A projected token is rotated by a symlink swap: re-read when the file behind the name changed. */
		if (!stat(c->token_file, &st) &&
		    (!c->token_read || st.st_ino != c->token_ino || st.st_mtim.tv_sec != c->token_mtime.tv_sec ||
		     st.st_mtim.tv_nsec != c->token_mtime.tv_nsec)) {
			char *t = read_file(c->token_file, NULL);

			if (t) {
				trim(t);
				free(c->token_read);
				c->token_read = t;
				c->token_ino = st.st_ino;
				c->token_mtime = st.st_mtim;
			}
		}
	}
	{
		const char *t = c->token_read ? c->token_read : c->token;

		if (t && *t && asprintf(&h, "Authorization: Bearer %s", t) < 0)
			h = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	return h;
}
