// SPDX-License-Identifier: Apache-2.0
/* What the daemon e2e tests share: child processes, the daemon's lifecycle, its socket and CLI, identity servers, counting clients, teardown and signals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control/control.h"
#include "util.h"

void e2e_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

void e2e_child_init(void)
{
	/* The test's handlers run its teardown: a child must not tear down the parent's topology. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* The parent died before prctl took effect. */
	if (getppid() == 1)
		_exit(1);
}

char *e2e_read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			if (!buf)
				break;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	fclose(f);
	if (buf)
		buf[n] = '\0';
	return buf;
}

int e2e_write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(content, f);
	return fclose(f);
}

void e2e_dump_file(const char *tag, const char *path, int last_lines)
{
	char *text = path[0] ? e2e_read_text(path) : NULL, *line, *save = NULL;
	int total = 0, i = 0;

	for (char *p = text; p && *p; p++)
		total += *p == '\n';
	if (last_lines <= 0)
		last_lines = total + 1;
	for (line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save))
		if (i++ >= total - last_lines)
			fprintf(stderr, "# %s: %s\n", tag, line);
	free(text);
}

const char *e2e_jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_get_string(v) ? json_object_get_string(v) : "";
}

long e2e_jint(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && v ? (long)json_object_get_int64(v) : -1;
}

struct json_object *e2e_jget(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

bool e2e_reply_ok(struct json_object *r)
{
	struct json_object *v = e2e_jget(r, "ok");

	return v && json_object_get_boolean(v);
}

struct json_object *e2e_files_req(const char *op, const char *name, const char *content)
{
	struct json_object *req = json_object_new_object(), *files = json_object_new_array();
	struct json_object *f = json_object_new_object();

	json_object_object_add(f, "name", json_object_new_string(name));
	json_object_object_add(f, "content", json_object_new_string(content));
	json_object_array_add(files, f);
	json_object_object_add(req, "op", json_object_new_string(op));
	json_object_object_add(req, "files", files);
	return req;
}

struct json_object *e2e_ctl(const char *sock, const char *op, int timeout_ms)
{
	struct json_object *req = json_object_new_object(), *reply;

	json_object_object_add(req, "op", json_object_new_string(op));
	reply = kb_ctl_call(sock, req, timeout_ms);
	json_object_put(req);
	return reply;
}

bool e2e_daemon_serves(const char *sock, int timeout_ms)
{
	struct json_object *r = e2e_ctl(sock, "status", timeout_ms);
	bool ok = e2e_reply_ok(r);

	json_object_put(r);
	return ok;
}

pid_t e2e_daemon_spawn(const char *kb, const char *log, const char *netns, const char *const *argv)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd;

		e2e_child_init();
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0 || (netns && e2e_setns(netns)))
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(kb, (char *const *)argv);
		_exit(127);
	}
	return pid < 0 ? -1 : pid;
}

int e2e_daemon_wait(pid_t *pid, const char *sock, long timeout_ms)
{
	for (long deadline = kb_now_ms() + timeout_ms; kb_now_ms() < deadline; e2e_sleep_ms(20)) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return -1;
		}
		if (e2e_daemon_serves(sock, 5000))
			return 0;
	}
	return -1;
}

int e2e_cli(const char *kb, const char *sock, const char *log, char **out, const char *const *args)
{
	const char *argv[32];
	size_t n = 0, cap = 0, len = 0;
	char *buf = NULL;
	int p[2], status;
	pid_t pid;
	ssize_t r;

	argv[n++] = "kbackend";
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		e2e_child_init();
		setenv("KBACKEND_SOCKET", sock, 1);
		dup2(p[1], 1);
		if (fd >= 0)
			dup2(fd, 2);
		execv(kb, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		/* Large steps: `get endpoints` for a thousand frontends is megabytes. */
		if (len + 65536 + 1 > cap) {
			cap = cap ? cap * 2 : 262144;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		r = read(p[0], buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(p[0]);
	waitpid(pid, &status, 0);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct json_object *e2e_cli_json(const char *kb, const char *sock, const char *log, int *rc,
				 const char *const *args)
{
	const char *a[32];
	struct json_object *j;
	size_t n = 0;
	char *out = NULL;

	while (args[n] && n < 28) {
		a[n] = args[n];
		n++;
	}
	a[n++] = "-o";
	a[n++] = "json";
	a[n] = NULL;
	*rc = e2e_cli(kb, sock, log, &out, a);
	j = json_tokener_parse(out);
	if (!j)
		fail_msg("kbackend %s: stdout is not JSON: %.300s", args[0], out);
	free(out);
	return j;
}

int e2e_tcp_ident(const char *ip, uint16_t port, char *out, size_t len, bool check_peer)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) }, peer;
	socklen_t pl = sizeof(peer);
	struct timeval tv = { 3, 0 };
	size_t got = 0;
	ssize_t n;
	int fd, err = 0;

	inet_pton(AF_INET, ip, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		goto out;
	}
	if (check_peer) {
		/* getpeername shows the frontend, not the endpoint. */
		if (getpeername(fd, (struct sockaddr *)&peer, &pl)) {
			err = -errno;
			goto out;
		}
		if (peer.sin_addr.s_addr != sa.sin_addr.s_addr || peer.sin_port != sa.sin_port) {
			err = -EPROTO;
			goto out;
		}
	}
	/* Read to EOF: the endpoint closes first, so the client leaves no TIME_WAIT behind. */
	while (got < len - 1 && (n = recv(fd, out + got, len - 1 - got, 0)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		got += (size_t)n;
	}
	out[got] = '\0';
	if (!got)
		err = -ENODATA;
out:
	close(fd);
	return err;
}

void e2e_tally_run(struct e2e_tally *t, const char *ip, uint16_t port, bool check_peer, const char *const *eps,
		   int neps)
{
	char buf[128];

	/* Relaxed atomics: the test reads the counters while they grow, and only needs each one whole. */
	for (long i = 0; !__atomic_load_n(&t->stop, __ATOMIC_RELAXED) && (!t->limit || i < t->limit); i++) {
		int err = e2e_tcp_ident(ip, port, buf, sizeof(buf), check_peer), e;
		int pause = __atomic_load_n(&t->pause_us, __ATOMIC_RELAXED);

		if (pause)
			usleep((useconds_t)pause);

		if (err) {
			if (!t->fail)
				t->first_err = -err;
			__atomic_add_fetch(&t->fail, 1, __ATOMIC_RELAXED);
			continue;
		}
		for (e = 0; e < neps && strcmp(buf, eps[e]); e++)
			;
		if (e == neps || e >= E2E_TALLY_EPS) {
			if (!t->bad)
				snprintf(t->first_bad, sizeof(t->first_bad), "%s", buf);
			__atomic_add_fetch(&t->bad, 1, __ATOMIC_RELAXED);
			continue;
		}
		__atomic_add_fetch(&t->ok[e], 1, __ATOMIC_RELAXED);
	}
	_exit(0);
}

struct e2e_sum e2e_tallies_sum(const struct e2e_tally *t, int n)
{
	struct e2e_sum s = { 0 };

	for (int i = 0; i < n; i++, t++) {
		for (int e = 0; e < E2E_TALLY_EPS; e++) {
			long v = __atomic_load_n(&t->ok[e], __ATOMIC_RELAXED);

			s.ok[e] += v;
			s.total_ok += v;
		}
		s.bad += __atomic_load_n(&t->bad, __ATOMIC_RELAXED);
		s.fail += __atomic_load_n(&t->fail, __ATOMIC_RELAXED);
		if (!s.first_err && t->first_err)
			s.first_err = t->first_err;
		if (!s.first_bad[0] && t->first_bad[0])
			snprintf(s.first_bad, sizeof(s.first_bad), "%s", t->first_bad);
	}
	return s;
}

int e2e_kid_wait(pid_t *kid, int *stop, long deadline)
{
	int status = 0;

	if (*kid <= 0)
		return 0;
	if (stop)
		__atomic_store_n(stop, 1, __ATOMIC_RELAXED);
	while (waitpid(*kid, &status, WNOHANG) == 0) {
		if (kb_now_ms() > deadline) {
			kill(*kid, SIGKILL);
			waitpid(*kid, &status, 0);
			break;
		}
		e2e_sleep_ms(5);
	}
	*kid = 0;
	return status;
}

void e2e_kids_kill(pid_t *kids, int n)
{
	for (int i = 0; i < n; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
}

int e2e_kbackend_path(char *buf, size_t len)
{
	const char *env = getenv("KBACKEND_BIN");
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (env && *env) {
		snprintf(buf, len, "%s", env);
	} else {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[n > 0 ? n : 0] = '\0';
		slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(buf, len, "%s/../kbackend", self);
	}
	return access(buf, X_OK) ? -1 : 0;
}

static char interrupted_msg[128];
static int (*interrupted_teardown)(void **state);

static void on_signal(int sig)
{
	/* write(2): stdio is not async-signal-safe. */
	if (write(2, interrupted_msg, strlen(interrupted_msg)) < 0)
		{ /* nothing to do */ }
	interrupted_teardown(NULL);
	_exit(128 + sig);
}

void e2e_main_init(const char *name, int (*teardown)(void **state), unsigned watchdog_s)
{
	snprintf(interrupted_msg, sizeof(interrupted_msg), "# %s: interrupted; cleaning up\n", name);
	interrupted_teardown = teardown;
	if (getenv("KB_VERBOSE"))
		kb_verbosity = atoi(getenv("KB_VERBOSE"));
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGALRM, on_signal);
	alarm(watchdog_s);
}

void e2e_kill(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
}

void e2e_kill_group(pid_t *pid)
{
	if (*pid > 0) {
		kill(-*pid, SIGKILL);
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
}

static void ident_serve(const char *const *ips, int n, struct pollfd *pf)
{
	for (;;) {
		if (poll(pf, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			int c;

			if (!(pf[i].revents & POLLIN))
				continue;
			/* Nonblocking listeners: the other worker may have taken it. */
			while ((c = accept4(pf[i].fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
				if (write(c, ips[i], strlen(ips[i])) < 0)
					{ /* the client went away */ }
				close(c);
			}
		}
	}
}

static void ident_main(const char *netns, const char *const *ips, int n, uint16_t port, int ready)
{
	struct pollfd pf[16];

	setpgid(0, 0);
	if (n > 16 || e2e_setns(netns))
		_exit(1);
	for (int i = 0; i < n; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
		int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		inet_pton(AF_INET, ips[i], &sa.sin_addr);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1024))
			_exit(2);
		pf[i].fd = fd;
		pf[i].events = POLLIN;
	}
	/* Two workers on the same listeners: the clients run up to four at a time. */
	if (fork() == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	else if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	ident_serve(ips, n, pf);
}

pid_t e2e_ident_servers_start(const char *netns, const char *const *ips, int n, uint16_t port)
{
	pid_t pid;
	int p[2];
	char c;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		e2e_child_init();
		close(p[0]);
		ident_main(netns, ips, n, port, p[1]);
		_exit(0);
	}
	setpgid(pid, pid);	/* both sides, so that teardown can kill the group at once */
	close(p[1]);
	if (read(p[0], &c, 1) != 1) {
		close(p[0]);
		e2e_kill_group(&pid);
		return -1;
	}
	close(p[0]);
	return pid;
}

void e2e_cgroups_release(const char *cgroot, char *cgroup, bool *cgmounted)
{
	if (cgroup[0])
		e2e_cgroup_remove(cgroot, cgroup);
	cgroup[0] = '\0';
	e2e_cgroup2_release(cgroot, *cgmounted);
	*cgmounted = false;
}

void e2e_netns_del(bool *made, ...)
{
	const char *name;
	va_list ap;

	if (!*made)
		return;
	va_start(ap, made);
	while ((name = va_arg(ap, const char *)))
		e2e_sh("ip netns del %s", name);
	va_end(ap);
	*made = false;
}

void e2e_tmpdir_remove(char *tmp, void (*dump)(void))
{
	if (tmp[0]) {
		if (getenv("KB_KEEP_LOG"))
			dump();
		e2e_sh("rm -rf '%s'", tmp);
	}
	tmp[0] = '\0';
}

int e2e_setup_failed(const char *why, void (*dump)(void), int (*teardown)(void **state))
{
	fprintf(stderr, "# setup failed: %s\n", why);
	dump();
	teardown(NULL);
	return -1;
}

int e2e_env_setup(struct e2e_env *env, const char *name)
{
	int pid = (int)getpid();

	if (e2e_netns_check(env->cgroot, sizeof(env->cgroot), &env->cgmounted, &env->skip))
		return -1;
	if (env->skip)
		return 0;
	if (e2e_kbackend_path(env->kb, sizeof(env->kb))) {
		fprintf(stderr, "# %s is not built or not executable (make)\n", env->kb);
		return -1;
	}
	snprintf(env->tmp, sizeof(env->tmp), "/tmp/kbt-%s-XXXXXX", name);
	if (!mkdtemp(env->tmp)) {
		env->tmp[0] = '\0';
		fprintf(stderr, "# mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(env->sock, sizeof(env->sock), "%s/kb.sock", env->tmp);
	snprintf(env->state, sizeof(env->state), "%s/state", env->tmp);
	snprintf(env->log, sizeof(env->log), "%s/daemon.log", env->tmp);
	snprintf(env->cgroup, sizeof(env->cgroup), "%s/kbt-%s-%d", env->cgroot, name, pid);
	snprintf(env->bpffs, sizeof(env->bpffs), "/sys/fs/bpf/kbt-%s-%d", name, pid);
	if (mkdir(env->cgroup, 0755)) {
		fprintf(stderr, "# mkdir %s: %s\n", env->cgroup, strerror(errno));
		env->cgroup[0] = '\0';
		return -1;
	}
	if (e2e_ensure_bpffs()) {
		fprintf(stderr, "# bpffs: cannot mount /sys/fs/bpf\n");
		return -1;
	}
	return 0;
}

void e2e_env_teardown(struct e2e_env *env, void (*dump)(void))
{
	e2e_cgroups_release(env->cgroot, env->cgroup, &env->cgmounted);
	e2e_tmpdir_remove(env->tmp, dump);
}
