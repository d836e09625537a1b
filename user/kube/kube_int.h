/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to user/kube/: the connection settings, the kinds watched, and the hand-over from the watch thread to the loop. */
#ifndef KB_KUBE_INT_H
#define KB_KUBE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include <curl/curl.h>
#include <json-c/json.h>

#define KUBE_MAX_OBJECT (1u << 20)	/* an object larger than this is refused (as the API server's own etcd limit, roughly) */
#define KUBE_LIST_LIMIT 500		/* items per list page, as client-go */
#define KUBE_WATCH_MARGIN_S 30		/* a watch silent this long past its timeoutSeconds is restarted */
#define KUBE_BACKOFF_MIN_MS 800		/* client-go's reflector backoff: 800 ms doubling to 30 s, with jitter */
#define KUBE_BACKOFF_MAX_MS 30000

/* ---- kube_config.c: where the API server is and who we are ---- */
struct kb_kube_conf {
	char *server;			/* https://host:port, no trailing slash */
	char *ca_file;			/* CA bundle file, or */
	char *ca_data;			/* PEM bytes (certificate-authority-data); NULL: the system's CAs */
	size_t ca_len;
	char *cert_file, *key_file;	/* client certificate and key files, or */
	char *cert_data, *key_data;	/* PEM bytes */
	size_t cert_len, key_len;
	bool insecure;			/* insecure-skip-tls-verify */
	char *token;			/* a literal bearer token, or */
	char *token_file;		/* a file read again whenever it changes (rotated service-account tokens) */
	char *namespace;		/* the daemon's own (in-cluster: the service account's) */
	char origin[512];		/* "in-cluster" or the kubeconfig's path and context, for messages */
	/* The token file as last read. */
	pthread_mutex_t lock;
	char *token_read;
	struct timespec token_mtime;
	ino_t token_ino;
};

/* In-cluster: the service account's files and KUBERNETES_SERVICE_HOST/PORT. 0, or -1 with why set. */
int kb_kube_conf_in_cluster(struct kb_kube_conf *c, const char *sa_dir, char *why, size_t len);
/* A kubeconfig's current context. 0, or -1 with why set (naming the file, and the user for what is not supported). */
int kb_kube_conf_kubeconfig(struct kb_kube_conf *c, const char *path, char *why, size_t len);
void kb_kube_conf_free(struct kb_kube_conf *c);
/* "Authorization: Bearer ..." for the next request (the token file re-read if it changed), or NULL: none. Caller frees. */
char *kb_kube_conf_auth_header(struct kb_kube_conf *c);

/* ---- kube_http.c: libcurl handles set up for the API server ---- */
/* An easy handle for GET (or method with body) of server+path: TLS, the credentials, HTTP/2 where offered. NULL on ENOMEM. */
CURL *kb_kube_http_handle(struct kb_kube_conf *c, const char *path, struct curl_slist **headers);
/*
 * A blocking request (for the loop's writers: never the loop itself): status
 * code, body (caller frees). With keep, the handle (and its connection) is
 * kept there for the next request; the caller cleans it up at the end.
 */
long kb_kube_http_do(struct kb_kube_conf *c, CURL **keep, const char *method, const char *path, const char *body,
		     const char *content_type, char **out, long timeout_ms);

/* ---- the kinds watched ---- */
struct kube_kind {
	const char *kind;		/* Gateway */
	const char *group;		/* gateway.networking.k8s.io; "" for the core group */
	const char *versions[4];	/* the versions kbackend reads, preferred first */
	const char *plural;		/* gateways */
	bool cluster_scoped;
	bool status;			/* kbackend writes its status (deploy/kubernetes/15-rbac.yaml grants NAME/status) */
};
#define KUBE_NKINDS 14
#define KUBE_KIND_GATEWAYCLASS 0	/* kube_kinds[]: the two kinds that decide which Gateways are ours */
#define KUBE_KIND_GATEWAY 1
extern const struct kube_kind kube_kinds[KUBE_NKINDS];
extern const size_t kube_nkinds;

/* ---- kube_watch.c: the thread (curl multi) ---- */
enum kube_ev_type { KUBE_EV_ADDED, KUBE_EV_MODIFIED, KUBE_EV_DELETED, KUBE_EV_LIST, KUBE_EV_SKIPPED };

/* One object's event, or a kind's whole list (a relist: objects not in it are gone), handed to the loop. */
struct kube_event {
	struct kube_event *next;
	enum kube_ev_type type;
	size_t kind;			/* index into kube_kinds */
	char *key;			/* Kind/namespace/name (cluster-scoped: Kind/name); NULL for a list */
	char *content;			/* pretty JSON, managedFields, resourceVersion and status removed; NULL for DELETED */
	struct kube_event *items;	/* KUBE_EV_LIST: the list's objects, as ADDED events */
};
void kube_event_free(struct kube_event *e);

/* What the thread knows of one kind, read by `status` under the watcher's lock. */
struct kube_kind_state {
	char version[32];		/* the served version read; "" until discovery answered */
	bool served;			/* false: discovery says the server does not serve it (skipped) */
	bool discovered;
	bool synced;			/* listed once */
	char rv[64];			/* last resourceVersion seen (list, event or bookmark) */
	time_t last_event;
	unsigned long events, relists, errors, refused, bookmarks;
	char last_error[256];
};

struct kube_watcher;
/* Start the thread; each batch of events is pushed and notify_fd (an eventfd) written. */
struct kube_watcher *kube_watcher_start(struct kb_kube_conf *c, int notify_fd, int watch_timeout_s);
void kube_watcher_stop(struct kube_watcher *w);
/* Take every queued event (oldest first), or NULL. */
struct kube_event *kube_watcher_take(struct kube_watcher *w);
/* A copy of the per-kind state (kube_nkinds entries). */
void kube_watcher_snapshot(struct kube_watcher *w, struct kube_kind_state *out);

#endif

/* ---- kube_lease.c: leader election through a coordination.k8s.io/v1 Lease (client-go's defaults) ---- */
#define KUBE_LEASE_DURATION_S 15
#define KUBE_LEASE_RENEW_DEADLINE_MS 10000
#define KUBE_LEASE_RETRY_MS 2000
#define KUBE_LEASE_NAME "kbackend-status-writer"

struct kube_lease {
	struct kb_kube_conf *conf;
	CURL *conn;			/* kept between renewals (kb_kube_http_do) */
	char identity[256];
	bool leader;
	long last_renew;		/* kb_now_ms of our last successful acquire or renew */
	char observed[512];		/* the other holder's record (holder, renewTime) as last seen */
	long observed_at;		/* when it last changed, on our clock (client-go's observedTime) */
	char holder[256];
	unsigned long transitions;	/* times we became leader */
	char last_error[256];
};
/* Try to acquire or renew (blocking: the status thread's). Returns whether we lead now. */
bool kube_lease_tick(struct kube_lease *l);
/* RFC 3339 with microseconds, UTC (MicroTime). */
void kube_micro_time(char *buf, size_t len);

/* ---- kube_status.c: status written back, by the leader, through the status subresource ---- */
struct kube_status_writer;
struct kube_status_writer *kube_status_start(struct kb_kube_conf *c, const char *controller, bool write);
void kube_status_stop(struct kube_status_writer *w);
/* The status this daemon wants on the object at path (taken); written when it leads, skipped when unchanged. */
void kube_status_want(struct kube_status_writer *w, const char *path, struct json_object *desired);
/* The object at path is gone: nothing to write. */
void kube_status_forget(struct kube_status_writer *w, const char *path);
/* For `status`: leader or follower, the holder, writes, conflicts, skips. */
struct json_object *kube_status_json(struct kube_status_writer *w);
