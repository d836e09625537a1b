// SPDX-License-Identifier: Apache-2.0
/* kbackend daemon: flags, start-up and the event loop. The single writer of the maps (see apply.c and serve.c). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "compile/compile.h"
#include "control/control.h"
#include "daemon/daemon.h"
#include "daemon_int.h"
#include "dataplane/dataplane.h"
#include "manifest/manifest.h"
#include "reads/metrics.h"
#include "render/render.h"
#include "resolver/resolver.h"
#include "store/store.h"
#include "validate/validate.h"
#include "sources/watch.h"
#include "kube/kube.h"

/* An EnvoyGateway config file sets enableBackend unless --enable-backend was given. */
static int read_config(struct daemon *d)
{
	struct kb_model m;

	if (!d->config)
		return 0;
	kb_model_init(&m);
	kb_manifest_load_path(&m, d->config);
	if (m.nerrors) {
		kb_print_diags(stderr, &m);
		kb_err("failed to read config %s", d->config);
		kb_model_free(&m);
		return -EINVAL;
	}
	for (size_t i = 0; i < m.nenvoy_gateways; i++)
		if (d->policy.enable_backend < 0 && m.envoy_gateways[i]->enable_backend >= 0)
			d->policy.enable_backend = m.envoy_gateways[i]->enable_backend;
	kb_model_free(&m);
	return 0;
}

enum { OPT_CONFIG = 256, OPT_STATE_DIR, OPT_CGROUP, OPT_BPFFS, OPT_UNIX_DIR, OPT_ALLOW, OPT_SOCKET,
       OPT_ENABLE_BACKEND, OPT_CLUSTER_DOMAIN, OPT_CLUSTERSET_DOMAIN, OPT_SERVICE_ENDPOINTS, OPT_DNS_SERVER, OPT_DNS_MIN_TTL, OPT_DNS_MAX_TTL,
       OPT_WATCH_DIR, OPT_METRICS_ADDR, OPT_MAX_FRONTENDS, OPT_MAX_SLOTS, OPT_MAX_ENDPOINTS, OPT_MAX_SOCKETS,
       OPT_KUBERNETES, OPT_KUBECONFIG, OPT_CONTROLLER_NAME, OPT_NO_STATUS };

static const struct option longopts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "cgroup", required_argument, NULL, OPT_CGROUP },
	{ "bpffs", required_argument, NULL, OPT_BPFFS },
	{ "unix-dir", required_argument, NULL, OPT_UNIX_DIR },
	{ "allow-endpoint", required_argument, NULL, OPT_ALLOW },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "enable-backend", no_argument, NULL, OPT_ENABLE_BACKEND },
	{ "cluster-domain", required_argument, NULL, OPT_CLUSTER_DOMAIN },
	{ "clusterset-domain", required_argument, NULL, OPT_CLUSTERSET_DOMAIN },
	{ "service-endpoints", required_argument, NULL, OPT_SERVICE_ENDPOINTS },
	{ "dns-server", required_argument, NULL, OPT_DNS_SERVER },
	{ "dns-min-ttl", required_argument, NULL, OPT_DNS_MIN_TTL },
	{ "dns-max-ttl", required_argument, NULL, OPT_DNS_MAX_TTL },
	{ "watch-dir", required_argument, NULL, OPT_WATCH_DIR },
	{ "metrics-addr", required_argument, NULL, OPT_METRICS_ADDR },
	{ "max-frontends", required_argument, NULL, OPT_MAX_FRONTENDS },
	{ "max-slots", required_argument, NULL, OPT_MAX_SLOTS },
	{ "max-endpoints", required_argument, NULL, OPT_MAX_ENDPOINTS },
	{ "max-tracked-sockets", required_argument, NULL, OPT_MAX_SOCKETS },
	{ "kubernetes", no_argument, NULL, OPT_KUBERNETES },
	{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
	{ "controller-name", required_argument, NULL, OPT_CONTROLLER_NAME },
	{ "no-status", no_argument, NULL, OPT_NO_STATUS },
	KB_BRIDGE_LONGOPTS,
	{ "verbose", no_argument, NULL, 'v' },
	{ 0 },
};

/*
 * A --max-* flag (getopt's ch): a count from 16 to its ceiling, so that a
 * typo cannot ask for a map that does not load or steers nothing.
 */
static bool parse_limit(int ch, const char *arg, struct kb_dataplane_opts *o)
{
#define LIMIT(opt, flag, max, field) { opt, flag, max, offsetof(struct kb_dataplane_opts, field) }
	static const struct { int ch; const char *flag; __u32 max; size_t off; } limits[] = {
		LIMIT(OPT_MAX_FRONTENDS, "max-frontends", KB_MAX_FRONTENDS_LIMIT, max_frontends),
		LIMIT(OPT_MAX_SLOTS, "max-slots", KB_MAX_SLOTS_LIMIT, max_slots),
		LIMIT(OPT_MAX_ENDPOINTS, "max-endpoints", KB_MAX_ENDPOINTS_LIMIT, max_endpoints),
		LIMIT(OPT_MAX_SOCKETS, "max-tracked-sockets", KB_MAX_PEERS_LIMIT, max_sockets),
	};
#undef LIMIT
	unsigned long long v;
	char *end;

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (limits[i].ch != ch)
			continue;
		errno = 0;
		v = strtoull(arg, &end, 10);
		if (errno || end == arg || *end || *arg == '-' || v < 16 || v > limits[i].max) {
			fprintf(stderr, "kbackend: daemon: --%s %s: expected a count from 16 to %u\n", limits[i].flag, arg,
				limits[i].max);
			return false;
		}
		*(__u32 *)((char *)o + limits[i].off) = (__u32)v;
		return true;
	}
	return false;
}

static int parse_args(struct daemon *d, int argc, char **argv)
{
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_CONFIG:
			d->config = optarg;
			break;
		case OPT_STATE_DIR:
			d->state_dir = optarg;
			break;
		case OPT_CGROUP:
			d->cgroup = optarg;
			break;
		case OPT_BPFFS:
			d->bpffs = optarg;
			break;
		case OPT_UNIX_DIR:
			if (d->policy.nunix_dirs == MAX_FLAG_LIST)
				goto usage;
			d->unix_dirs[d->policy.nunix_dirs++] = optarg;
			break;
		case OPT_ALLOW:
			if (d->policy.nallow_cidrs == MAX_FLAG_LIST)
				goto usage;
			d->allow[d->policy.nallow_cidrs++] = optarg;
			break;
		case OPT_SOCKET:
			d->socket = optarg;
			break;
		case OPT_ENABLE_BACKEND:
			d->policy.enable_backend = 1;
			break;
		case OPT_CLUSTER_DOMAIN:
			d->policy.cluster_domain = optarg;
			break;
		case OPT_CLUSTERSET_DOMAIN:
			d->policy.clusterset_domain = optarg;
			break;
		case OPT_SERVICE_ENDPOINTS:
			if (!kb_svc_mode_parse(optarg, &d->policy.service_endpoints))
				goto usage;
			break;
		case OPT_DNS_SERVER:
			if (d->ndns_servers == MAX_FLAG_LIST)
				goto usage;
			d->dns_servers[d->ndns_servers++] = optarg;
			break;
		case OPT_DNS_MIN_TTL:
		case OPT_DNS_MAX_TTL:
			if (!kb_parse_duration_ms(optarg, ch == OPT_DNS_MIN_TTL ? &d->dns_min_ttl_ms : &d->dns_max_ttl_ms)) {
				fprintf(stderr, "kbackend: daemon: --dns-%s-ttl %s: expected a duration like 5s or 10m\n",
					ch == OPT_DNS_MIN_TTL ? "min" : "max", optarg);
				goto usage;
			}
			break;
		case OPT_WATCH_DIR:
			d->watch_dir = optarg;
			break;
		case OPT_METRICS_ADDR: {
			struct sockaddr_storage ss;
			socklen_t len;

			if (kb_metrics_parse_addr(optarg, &ss, &len)) {
				fprintf(stderr, "kbackend: daemon: --metrics-addr %s: expected ADDR:PORT or [ADDR]:PORT\n",
					optarg);
				goto usage;
			}
			d->metrics_addr = optarg;
			break;
		}
		case OPT_MAX_FRONTENDS:
		case OPT_MAX_SLOTS:
		case OPT_MAX_ENDPOINTS:
		case OPT_MAX_SOCKETS:
			if (!parse_limit(ch, optarg, &d->dp_opts))
				goto usage;
			break;
		case OPT_KUBERNETES:
			d->kube_opts.in_cluster = true;
			break;
		case OPT_KUBECONFIG:
			d->kube_opts.kubeconfig = optarg;
			break;
		case OPT_CONTROLLER_NAME:
			if (!*optarg) {
				fprintf(stderr, "kbackend: daemon: --controller-name: expected a name like example.com/controller\n");
				goto usage;
			}
			d->kube_opts.controller_name = optarg;
			break;
		case OPT_NO_STATUS:
			d->kube_opts.no_status = true;
			break;
		case 'v':
			kb_verbosity++;
			break;
		default:
			if (kb_daemon_bridge_opt(d, ch, optarg) == 1)
				break;
			goto usage;
		}
	}
	if (d->kube_opts.in_cluster && d->kube_opts.kubeconfig) {
		fprintf(stderr, "kbackend: daemon: --kubernetes and --kubeconfig are two ways to reach one cluster: give one\n");
		goto usage;
	}
	if (d->kube_opts.in_cluster && d->watch_dir) {
		fprintf(stderr, "kbackend: daemon: --watch-dir and --kubernetes both make the whole state: give one\n");
		goto usage;
	}
	if (d->kube_opts.kubeconfig && d->watch_dir) {
		fprintf(stderr, "kbackend: daemon: --watch-dir and --kubeconfig both make the whole state: give one\n");
		goto usage;
	}
	if (optind < argc || !d->cgroup) {
		fprintf(stderr, "kbackend: daemon: %s\n",
			d->cgroup ? "unexpected argument" : "--cgroup PATH is required (a cgroup v2 directory)");
		goto usage;
	}
	return 0;
usage:
	fprintf(stderr, "Try 'kbackend help daemon'.\n");
	return 2;
}

static void on_signal(void *ctx, int fd, uint32_t events)
{
	struct daemon *d = ctx;
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) == sizeof(si)) {
		kb_log_info("signal %u: stopping; pinned programs keep steering", si.ssi_signo);
		d->stop = true;
	}
}

/* An endpoint's health changed: recompile and swap the frontends it serves. */
static void on_health(void *ctx)
{
	struct daemon *d = ctx;

	if (!d->restore_deadline)	/* a restart still waiting for DNS programs health with it */
		kb_daemon_health_changed(d);
}

/* The health programs' load, on a thread of its own at start (kb_daemon_main). */
struct health_loader {
	pthread_t thread;
	bool running;
	struct kb_health_opts opts;
	struct kb_health *h;
	int err;
};

static void *health_load(void *arg)
{
	struct health_loader *l = arg;

	l->err = kb_health_load(&l->opts, &l->h);
	return NULL;
}

int kb_daemon_main(int argc, char **argv)
{
	struct daemon d = { .lfd = -1, .sigfd = -1 };
	struct health_loader hl = { 0 };
	sigset_t mask;
	long long t[6];	/* start-up stages, for the debug line that sums them */
	int err;

	kb_policy_init(&d.policy);
	d.policy.unix_dirs = d.unix_dirs;
	d.policy.allow_cidrs = d.allow;
	d.state_dir = KB_STATE_DIR_DEFAULT;
	d.bpffs = KB_PIN_DIR_DEFAULT;
	d.kube_opts.controller_name = KB_KUBE_CONTROLLER_DEFAULT;
	err = parse_args(&d, argc, argv);
	if (err)
		return err;
	d.socket = kb_ctl_socket_path(d.socket);
	kb_store_init(&d.store, d.state_dir);
	d.loop = kb_loop_new();
	if (!d.loop) {
		kb_err("failed to create the event loop: %s", strerror(errno));
		return 1;
	}
	kb_model_init(&d.state);
	d.started = time(NULL);
	if (read_config(&d))
		return 1;
	/* The stored state is read and judged meanwhile (daemon_state.c). */
	kb_daemon_restore_begin(&d);
	/* Before anything is loaded: a kernel without a required feature gets one line per gap, not a verifier log. */
	t[0] = kb_now_us();
	err = kb_features_probe(&d.features);
	t[1] = kb_now_us();
	kb_log_debug("kernel %s: features probed in %lld us", d.features.kernel, t[1] - t[0]);
	if (err) {
		kb_err("failed to probe the kernel's BPF features: %s", strerror(-err));
		return 1;
	}
	if (kb_features_report(&d.features)) {
		kb_err("refusing to start: kernel %s lacks what kbackend requires (docs/OPERATIONS.md, \"Kernel features\")",
		       d.features.kernel);
		return 1;
	}

	d.dp_opts.bpffs = d.bpffs;
	d.dp_opts.cgroup = d.cgroup;
	{
		struct kb_resolver_opts ro = {
			.servers = d.dns_servers,
			.nservers = d.ndns_servers,
			.min_ttl_ms = d.dns_min_ttl_ms,
			.max_ttl_ms = d.dns_max_ttl_ms,
			.policy = &d.policy,
		};
		char why[256];

		d.resolver = kb_resolver_new(&ro, why, sizeof(why));
		if (!d.resolver) {
			kb_err("failed to start the resolver: %s", why);
			return 1;
		}
	}
	err = kb_dataplane_bpf_open(&d.dp_opts, &d.dp);
	t[2] = kb_now_us();
	if (err) {
		kb_resolver_free(d.resolver);
		return 1;
	}
	/*
	 * The health programs load on their own thread while the bridge starts
	 * and the stored state is compiled and programmed: the compile does not
	 * need them, since a health not yet synced says every endpoint is
	 * healthy, which is also what d.health == NULL says meanwhile.
	 */
	hl.opts = (struct kb_health_opts){
		.bpffs = d.bpffs, .cgroup = d.cgroup, .loop = d.loop, .changed = on_health, .ctx = &d,
		.udp_destroy = d.features.present[KB_FEAT_SOCK_DESTROY],
	};
	hl.running = pthread_create(&hl.thread, NULL, health_load, &hl) == 0;
	if (!hl.running)
		health_load(&hl);
	/* Before the restore: its compile asks the bridge for listeners. Not fatal: unix endpoints are then refused. */
	kb_daemon_bridge_start(&d);
	t[3] = kb_now_us();
	kb_daemon_restore(&d);
	t[4] = kb_now_us();
	if (hl.running)
		pthread_join(hl.thread, NULL);
	/* Not fatal: without it every endpoint counts as healthy, as before. */
	if (!hl.err && !(hl.err = kb_health_start(hl.h)))
		d.health = hl.h;
	else
		kb_health_close(hl.h);
	if (!d.health)
		kb_err("failed to start health checking: every endpoint counts as healthy");
	kb_health_sync(d.health, &d.compiled);
	t[5] = kb_now_us();
	kb_log_debug("started in %.0f ms: kernel probe %.0f, programs %.0f, bridge %.0f, restore %.0f, health (loaded "
		     "meanwhile) %.0f more",
		     (t[5] - t[0]) / 1e3, (t[1] - t[0]) / 1e3, (t[2] - t[1]) / 1e3, (t[3] - t[2]) / 1e3,
		     (t[4] - t[3]) / 1e3, (t[5] - t[4]) / 1e3);

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	d.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d.sigfd < 0 || kb_loop_add(d.loop, d.sigfd, EPOLLIN, on_signal, &d) || kb_serve_start(&d) ||
	    kb_daemon_dns_start(&d) || kb_watch_start(&d) || kb_kube_start(&d) ||
	    kb_metrics_start(&d)) {
		err = 1;
		goto out_close;
	}
	kb_log_info("serving %s; programs attached to %s, pinned under %s", d.socket, d.cgroup, d.bpffs);
	while (!d.stop)
		kb_loop_run_once(d.loop, 1000);
	err = 0;
out_close:
	kb_metrics_stop(&d);
	kb_watch_stop(&d);
	kb_kube_stop(&d);
	kb_serve_stop(&d);
	if (d.sigfd >= 0)
		close(d.sigfd);
	kb_health_close(d.health);
	kb_daemon_bridge_stop(&d);
	d.dp->ops->close(d.dp);
	if (d.unload) {
		err = kb_dataplane_unload(d.bpffs) ? 1 : 0;
		kb_log_info("unloaded: programs detached and pins removed from %s", d.bpffs);
	}
	/* Last, after unpinning: `kbackend unload` waits for the socket to go before it reports success. */
	kb_serve_unlink(&d);
	kb_resolver_free(d.resolver);
	kb_loop_free(d.loop);
	kb_arena_free(&d.node_arena);
	kb_daemon_reads_free(&d);
	kb_compiled_free(&d.compiled);
	kb_model_free(&d.state);
	kb_store_close(&d.store);
	kb_daemon_accounted(&d);
	return err;
}
