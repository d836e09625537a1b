// SPDX-License-Identifier: Apache-2.0
/* libcurl handles set up for the API server: TLS with its CA, the client certificate or bearer token, HTTP/2 where offered. */
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "kube/kube_int.h"

/* Set h up for server+path; false on ENOMEM. */
static bool setup(CURL *h, struct kb_kube_conf *c, const char *path, struct curl_slist **headers)
{
	char *url, *auth;

	*headers = NULL;
	if (asprintf(&url, "%s%s", c->server, path) < 0)
		return false;
	curl_easy_setopt(h, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	if (c->ca_data) {
		struct curl_blob b = { .data = c->ca_data, .len = c->ca_len, .flags = CURL_BLOB_COPY };

		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
	} else if (c->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	}
	if (c->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->cert_data) {
		struct curl_blob b = { .data = c->cert_data, .len = c->cert_len, .flags = CURL_BLOB_COPY };

		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &b);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->cert_file) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
	}
	if (c->key_data) {
		struct curl_blob b = { .data = c->key_data, .len = c->key_len, .flags = CURL_BLOB_COPY };

		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &b);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->key_file) {
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
	}
	*headers = curl_slist_append(*headers, "Accept: application/json");
	*headers = curl_slist_append(*headers, "User-Agent: kbackend");
	auth = kb_kube_conf_auth_header(c);
	if (auth) {
		*headers = curl_slist_append(*headers, auth);
		free(auth);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
	return true;
}

CURL *kb_kube_http_handle(struct kb_kube_conf *c, const char *path, struct curl_slist **headers)
{
	CURL *h = curl_easy_init();

	*headers = NULL;
	if (h && !setup(h, c, path, headers)) {
		curl_easy_cleanup(h);
		return NULL;
	}
	return h;
}

struct body {
	char *p;
	size_t n;
};

static size_t collect(char *data, size_t sz, size_t nmemb, void *ctx)
{
	struct body *b = ctx;
	size_t n = sz * nmemb;
	char *np;

	if (b->n + n > 64u * KUBE_MAX_OBJECT)
		return 0;	/* a runaway answer: the transfer fails */
	np = realloc(b->p, b->n + n + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, data, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

long kb_kube_http_do(struct kb_kube_conf *c, CURL **keep, const char *method, const char *path, const char *body,
		     const char *content_type, char **out, long timeout_ms)
{
	struct curl_slist *hdrs = NULL;
	struct body b = { 0 };
	CURL *h;
	long code = 0;
	CURLcode rc;

	*out = NULL;
	if (keep && *keep) {
		/* A reset keeps the handle's open connection and TLS session: no new handshake per request. */
		h = *keep;
		curl_easy_reset(h);
		if (!setup(h, c, path, &hdrs)) {
			curl_slist_free_all(hdrs);
			return -1;
		}
	} else {
		h = kb_kube_http_handle(c, path, &hdrs);
	}
	if (!h)
		return -1;
	if (content_type) {
		char ct[128];

		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		hdrs = curl_slist_append(hdrs, ct);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	}
	if (strcmp(method, "GET"))
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	else
		code = -1;
	if (keep)
		*keep = h;
	else
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	*out = b.p;
	return code;
}
