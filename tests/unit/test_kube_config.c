// SPDX-License-Identifier: Apache-2.0
/* The Kubernetes source's connection settings: a kubeconfig's current context, in-cluster files, the token re-read on rotation. */
#include <stdlib.h>

#include "testutil.h"
#include "kube/kube_int.h"

static char dir[] = "/tmp/kb-kubeconf-XXXXXX";

static void put(const char *name, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static const char kc_head[] =
	"apiVersion: v1\nkind: Config\ncurrent-context: test\n"
	"contexts:\n- name: other\n  context: {cluster: nowhere, user: nobody}\n"
	"- name: test\n  context: {cluster: c1, user: u1, namespace: kbackend-system}\n"
	"clusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443/\n"
	"    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
	"users:\n- name: u1\n  user:\n";

/* Every field of the current context is read; -data fields are decoded; relative paths are the kubeconfig's directory's. */
static void test_kubeconfig_fields(void **state)
{
	struct kb_kube_conf c;
	char path[256], why[512] = "", want[256];

	put("kc", "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
		  "contexts:\n- name: test\n  context: {cluster: c1, user: u1, namespace: kbackend-system}\n"
		  "clusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443/\n"
		  "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
		  "users:\n- name: u1\n  user:\n    token: abc.def\n    client-certificate: certs/c.pem\n"
		  "    client-key: /abs/k.pem\n");
	snprintf(path, sizeof(path), "%s/kc", dir);
	assert_int_equal(kb_kube_conf_kubeconfig(&c, path, why, sizeof(why)), 0);
	assert_string_equal(c.server, "https://127.0.0.1:6443");
	assert_int_equal(c.ca_len, strlen("-----BEGIN CERTIFICATE-----\n"));
	assert_memory_equal(c.ca_data, "-----BEGIN CERTIFICATE-----\n", c.ca_len);
	assert_string_equal(c.namespace, "kbackend-system");
	snprintf(want, sizeof(want), "%s/certs/c.pem", dir);
	assert_string_equal(c.cert_file, want);
	assert_string_equal(c.key_file, "/abs/k.pem");
	{
		char *h = kb_kube_conf_auth_header(&c);

		assert_string_equal(h, "Authorization: Bearer abc.def");
		free(h);
	}
	kb_kube_conf_free(&c);
}

/* What kbackend cannot do is said plainly, naming the file and the user. */
static void test_kubeconfig_unsupported(void **state)
{
	static const struct {
		const char *user, *want;
	} rows[] = {
		{ "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}\n",
		  "user u1: an exec credential plugin is not supported" },
		{ "    auth-provider: {name: gcp}\n", "user u1: an auth-provider is not supported" },
		{ "    username: admin\n    password: x\n", "user u1: basic authentication" },
	};
	char path[256], text[2048], why[512];
	struct kb_kube_conf c;

	snprintf(path, sizeof(path), "%s/kc", dir);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", kc_head, rows[i].user);
		put("kc", text);
		why[0] = '\0';
		assert_int_equal(kb_kube_conf_kubeconfig(&c, path, why, sizeof(why)), -1);
		if (!strstr(why, rows[i].want) || !strstr(why, path))
			fail_msg("row %zu: got \"%s\"", i, why);
		kb_kube_conf_free(&c);
	}
	/* A token to a plain-HTTP server would cross the network in the clear. */
	put("kc", "apiVersion: v1\nkind: Config\ncurrent-context: t\ncontexts:\n- name: t\n  context: {cluster: c, user: u}\n"
		  "clusters:\n- name: c\n  cluster: {server: 'http://198.18.0.1:8080'}\n"
		  "users:\n- name: u\n  user: {token: abc}\n");
	assert_int_equal(kb_kube_conf_kubeconfig(&c, path, why, sizeof(why)), -1);
	if (!strstr(why, "a token would be sent in the clear"))
		fail_msg("a token over http: got \"%s\"", why);
	kb_kube_conf_free(&c);
	put("kc", "apiVersion: v1\nkind: Config\nclusters: []\n");
	assert_int_equal(kb_kube_conf_kubeconfig(&c, path, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no current-context"));
	kb_kube_conf_free(&c);
	put("kc", "current-context: [\n");
	assert_int_equal(kb_kube_conf_kubeconfig(&c, path, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "not YAML"));
	kb_kube_conf_free(&c);
}

/* In-cluster: the service account's files; a rotated token (a new file swapped in by rename) is read again. */
static void test_in_cluster_token_rotation(void **state)
{
	struct kb_kube_conf c;
	char why[512], a[256], b[256], *h;

	put("token", "first\n");
	put("ca.crt", "x");
	put("namespace", "kb-ns");
	unsetenv("KUBERNETES_SERVICE_HOST");
	assert_int_equal(kb_kube_conf_in_cluster(&c, dir, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "KUBERNETES_SERVICE_HOST"));
	kb_kube_conf_free(&c);
	setenv("KUBERNETES_SERVICE_HOST", "2001:db8:f::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(kb_kube_conf_in_cluster(&c, dir, why, sizeof(why)), 0);
	assert_string_equal(c.server, "https://[2001:db8:f::1]:443");
	assert_string_equal(c.namespace, "kb-ns");
	h = kb_kube_conf_auth_header(&c);
	assert_string_equal(h, "Authorization: Bearer first");
	free(h);
	put("token.new", "second\n");
	snprintf(a, sizeof(a), "%s/token.new", dir);
	snprintf(b, sizeof(b), "%s/token", dir);
	assert_int_equal(rename(a, b), 0);
	h = kb_kube_conf_auth_header(&c);
	assert_string_equal(h, "Authorization: Bearer second");
	free(h);
	kb_kube_conf_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kubeconfig_fields),
		cmocka_unit_test(test_kubeconfig_unsupported),
		cmocka_unit_test(test_in_cluster_token_rotation),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
