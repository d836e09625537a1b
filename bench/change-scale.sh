#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Change scale (issue 13): what one small change costs the daemon at 100 objects,
# at 10,000 Backends and at 100,000 frontends, measured in one run.
#
# States (one daemon each, side by side in the node netns, each with its own
# cgroup, pins, state dir and socket; all with -v, --dns-min-ttl 1s and room for
# 131,072 frontends and endpoints):
#   100    bench/scale-gen.awk with N=48: 48 Backends of 10 endpoints, 48 TCPRoutes, 1 Gateway
#   10k    N=10000: 10,000 Backends of 10 endpoints, 10,000 TCPRoutes, 157 Gateways (20,157 objects)
#   100k   ten chunks of N=10000 with E=1 (one endpoint per Backend) and OFF=c*10048, applied one
#          after the other (one 10k-Backend file is already 8 MB of the 64 MiB request limit, and 10
#          endpoints each would be 1M slots): 100,000 frontends, 201,570 objects
# and each also holds a DNS set: Gateway gw-dns (198.19.200.1, 4 listeners), 4 TCPRoutes and 4
# Backends with one FQDN endpoint each (dnsK.bench.test), answered by the topology's dnsmasq (TTL 1 s).
#
# Every repetition visits the states in a rotating order and times, per state:
#   apply1   `kbackend apply -f` of one changed Backend (be-7, one endpoint whose port changes every rep)
#   delete1  `kbackend delete tcproute r-7`; then readd1, the route applied again (same size after)
#   dns      one name's answer flipped in dnsmasq's hosts file (SIGHUP), for all states at once; the
#            daemon's debug line "recompiled N Gateway(s) ... after K DNS name(s) changed, in X ms"
# and for 10k also:
#   full     a fresh daemon (empty state dir) applies the 10k file; reapply: the same file again
#   restart  the 10k daemon is killed (SIGKILL, pins stay) and started again on the same state dir
#            and pins: wall time until its "serving" log line (read as written, not polled), after
#            which `kbackend status` must show every frontend (polled further if not yet)
#   rss      VmRSS of each daemon at rest: 2 s after the rep's last change, past the daemon's own
#            trim of freed heap (1 s after a change); hwm: its VmHWM then (the 10k daemon's peak
#            since its restart in this rep, the others' since they started)
# Daemon-side ms: the "programmed in X ms" of the daemon's log line for that change (the DNS line's
# "in X ms"); CLI ms: wall time of the CLI process (for dns: from the SIGHUP to the daemon's line,
# so it holds the re-resolve wait). Ratios: the median of per-rep ratios 10k/100 and 100k/100 of
# the daemon-side figure (paired: same rep, neighbouring in time). A second table splits the
# daemon-side time by stage (judged, compiled, parse ... store, from the same log line), and a third
# gives the daemon's time on a CPU per change (cpu_ms: /proc/PID/task/*/schedstat read before and after
# the CLI call), which the shared machine's waits for the disk and for a CPU do not reach. After every
# repetition `kbackend verify` compares each state with a from-scratch compile (a difference is logged).
#
#   bench/change-scale.sh                          (as root, after `make all`; `make bench` runs it)
#   CHANGE_SIZES="100 10k 100k" CHANGE_REPS=5 CHANGE_RAW=FILE KBACKEND=build/kbackend bench/change-scale.sh
#
# CHANGE_LOAD_BUDGET (seconds, default 900) bounds loading the 100k state; past it the 100k column
# says it did not fit. Prints a Markdown table on stdout (progress on stderr); CHANGE_RAW gets one
# key=value line per measurement. Everything it makes is removed, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
SIZES=${CHANGE_SIZES:-100 10k 100k}
REPS=${CHANGE_REPS:-5}
RAW=${CHANGE_RAW:-}
BUDGET=${CHANGE_LOAD_BUDGET:-900}
# The node end of the DNS link (203.0.113.54) is one of scale-gen.awk's endpoint addresses: the SSRF
# guard would refuse it as a node address, so it is allowed (nothing connects to it here).
MAXARGS=(--max-frontends 131072 --max-endpoints 131072 --allow-endpoint 203.0.113.54/32)

[ "$(id -u)" = 0 ] || { echo "change-scale: needs root" >&2; exit 1; }
[ -x "$KB" ] || { echo "change-scale: $KB is missing; run 'make all' first" >&2; exit 1; }

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init "kbchg$$"
declare -A PID
cleanup() {
	local s
	for s in "${!PID[@]}"; do
		[ -n "${PID[$s]}" ] && kill -KILL "${PID[$s]}" 2>/dev/null && wait "${PID[$s]}" 2>/dev/null
	done
	for s in s100 s10k s100k full; do
		[ -e "$TOPO_BPFFS-$s" ] && { "$KB" unload --bpffs "$TOPO_BPFFS-$s" >/dev/null 2>&1; rm -rf "$TOPO_BPFFS-$s"; }
		[ -d "$TOPO_CG-$s" ] && rmdir "$TOPO_CG-$s" 2>/dev/null
	done
	topo_down
}
trap cleanup EXIT
trap 'echo "change-scale: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "change-scale: $*" >&2; exit 1; }
log() { echo "  [change] $*" >&2; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
sock() { echo "$TOPO_TMP/kb-$1.sock"; }
kbs() { local s=$1; shift; KBACKEND_SOCKET=$(sock "$s") "$KB" "$@"; }
lines() { wc -l <"$TOPO_TMP/daemon-$1.log"; }

topo_up || fail "could not build the topology"
topo_dns_up 1 bench.test || fail "could not start dnsmasq"
[ -n "$RAW" ] || RAW=$TOPO_TMP/raw
: >"$RAW"
DNSFLIP=0
dns_hosts() {
	{
		echo "198.51.100.$((10 + DNSFLIP)) dns0.bench.test"
		echo "198.51.100.12 dns1.bench.test"
		echo "198.51.100.13 dns2.bench.test"
		echo "198.51.100.14 dns3.bench.test"
	} >"$TOPO_DNS_HOSTS"
}
dns_hosts
topo_dns_reload

# start STATE: the daemon of one state on its own cgroup, pins, state dir and socket (kept across a restart).
spawn() {
	local s=$1
	mkdir -p "$TOPO_CG-$s" "$TOPO_TMP/state-$s"
	nsenter --net="$(topo_ns node)" -- "$KB" daemon --cgroup "$TOPO_CG-$s" --bpffs "$TOPO_BPFFS-$s" \
		--state-dir "$TOPO_TMP/state-$s" --socket "$(sock "$s")" --dns-server "$TOPO_DNS_ADDR:53" \
		--dns-min-ttl 1s --enable-backend -v "${MAXARGS[@]}" >>"$TOPO_TMP/daemon-$s.log" 2>&1 &
	PID[$s]=$!
}
start() {
	local s=$1 k
	spawn "$s"
	for k in $(seq 600); do
		kbs "$s" status >/dev/null 2>&1 && return 0
		kill -0 "${PID[$s]}" 2>/dev/null || { tail -5 "$TOPO_TMP/daemon-$s.log" >&2; fail "daemon $s exited"; }
		sleep 0.05
	done
	fail "daemon $s did not answer"
}
stop() {
	local s=$1
	kbs "$s" unload >/dev/null 2>&1
	wait "${PID[$s]}" 2>/dev/null
	PID[$s]=
	rm -rf "$TOPO_TMP/state-$s"
}
frontends() { kbs "$1" status -o json 2>/dev/null | sed -n 's/^ *"frontends": *\([0-9]*\),*$/\1/p' | head -1; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/"${PID[$1]}"/status; }
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/"${PID[$1]}"/status; }

# daemon_ms STATE FROM: from the first change line after log line FROM, "X mode=M judged=J
# compiled=C parse=.. validate=.. compile=.. program=.. store=.." (X: its "programmed in X ms";
# M: scoped, or whole when the change took the whole pipeline).
daemon_ms() {
	tail -n +"$(($2 + 1))" "$TOPO_TMP/daemon-$1.log" | awk '
	match($0, /programmed in [0-9.]+ ms \(/) {
		x = substr($0, RSTART + 14); x += 0
		t = substr($0, RSTART + RLENGTH); sub(/\)$/, "", t)
		mode = t ~ /^scoped:/ ? "scoped" : "whole"
		sub(/^.*: /, "", t); gsub(/ judged,/, "", t); gsub(/ frontend\(s\) compiled;/, "", t); gsub(/,/, "", t)
		split(t, f, " ")
		printf "%.1f mode=%s judged=%s compiled=%s parse=%s validate=%s compile=%s program=%s store=%s\n", x, mode,
			f[1], f[2], f[4], f[6], f[8], f[10], f[12]
		exit
	}'
}
# cpu_ns STATE: nanoseconds the daemon has run on a CPU (all its threads; /proc/PID/task/*/schedstat).
# A change's difference is its CPU cost, without the waits for the disk (fdatasync) or for a CPU that
# the shared machine adds to the wall figures.
cpu_ns() {
	local f a t=0
	for f in /proc/"${PID[$1]}"/task/*/schedstat; do
		read -r a _ <"$f" 2>/dev/null && t=$((t + a))
	done
	echo "$t"
}
cpu_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'; }
# change STATE OP CMD...: one timed CLI change, its raw line.
change() {
	local s=$1 op=$2 from t0 t1 d c0 c1
	shift 2
	from=$(lines "$s")
	c0=$(cpu_ns "$s")
	t0=$EPOCHREALTIME
	kbs "$s" "$@" >"$TOPO_TMP/op.out" 2>&1 || { tail -3 "$TOPO_TMP/op.out" >&2; fail "$op on $s failed"; }
	t1=$EPOCHREALTIME
	c1=$(cpu_ns "$s")
	d=$(daemon_ms "$s" "$from")
	echo "change state=${s#s} op=$op rep=$REP daemon_ms=${d:--} cli_ms=$(ms "$t0" "$t1") cpu_ms=$(cpu_ms "$c0" "$c1")" >>"$RAW"
}

cat >"$TOPO_TMP/dns.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw-dns, namespace: bench}
spec:
  gatewayClassName: eg
  addresses: [{type: IPAddress, value: 198.19.200.1}]
  listeners:
$(for k in 0 1 2 3; do echo "    - {name: l$k, protocol: TCP, port: $((20000 + k))}"; done)
EOF
for k in 0 1 2 3; do
	cat >>"$TOPO_TMP/dns.yaml" <<EOF
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: r-dns-$k, namespace: bench}
spec:
  parentRefs: [{name: gw-dns, sectionName: l$k}]
  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: be-dns-$k}]}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: be-dns-$k, namespace: bench}
spec:
  endpoints: [{fqdn: {hostname: dns$k.bench.test, port: 8080}}]
EOF
done
cat >"$TOPO_TMP/route.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: r-7, namespace: bench}
spec:
  parentRefs: [{name: gw-0, sectionName: l7}]
  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: be-7}]}]
EOF
backend_file() {
	cat >"$TOPO_TMP/be.yaml" <<EOF
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: be-7, namespace: bench}
spec:
  endpoints: [{ip: {address: 198.51.100.77, port: $((9000 + $1))}}]
EOF
}

# ---------------------------------------------------------------- load the states

declare -A WANT	# frontends each state must program
STATES=()
awk -v N=10000 -f bench/scale-gen.awk >"$TOPO_TMP/s10k.yaml" || fail "could not generate 10k"
for z in $SIZES; do
	s=s$z
	case $z in
	100)
		start "$s"
		awk -v N=48 -f bench/scale-gen.awk >"$TOPO_TMP/$s.yaml"
		kbs "$s" apply -f "$TOPO_TMP/$s.yaml" >"$TOPO_TMP/op.out" 2>&1 || { tail -3 "$TOPO_TMP/op.out" >&2; fail "apply of the 100-object state failed"; }
		WANT[$s]=52
		;;
	10k)
		start "$s"
		kbs "$s" apply -f "$TOPO_TMP/s10k.yaml" >/dev/null 2>&1 || fail "apply of 10k Backends failed"
		WANT[$s]=10004
		;;
	100k)
		start "$s"
		t0=$EPOCHREALTIME
		ok=1
		for c in $(seq 0 9); do
			awk -v N=10000 -v E=1 -v OFF=$((c * 10048)) -f bench/scale-gen.awk >"$TOPO_TMP/chunk.yaml"
			if ! kbs "$s" apply -f "$TOPO_TMP/chunk.yaml" >"$TOPO_TMP/op.out" 2>&1; then
				log "100k: chunk $c refused: $(tail -1 "$TOPO_TMP/op.out")"
				ok=
				break
			fi
			log "100k: chunk $c applied ($(ms "$t0" "$EPOCHREALTIME") ms so far, RSS $(rss "$s") kB)"
			if [ "$(ms "$t0" "$EPOCHREALTIME" | cut -d. -f1)" -gt $((BUDGET * 1000)) ]; then
				log "100k: over the ${BUDGET}s budget after chunk $c"
				ok=
				break
			fi
		done
		echo "load state=100k ok=${ok:-0} load_ms=$(ms "$t0" "$EPOCHREALTIME") rss_kib=$(rss "$s")" >>"$RAW"
		if [ -z "$ok" ]; then
			kill -KILL "${PID[$s]}" 2>/dev/null
			wait "${PID[$s]}" 2>/dev/null
			PID[$s]=
			continue
		fi
		WANT[$s]=100004
		;;
	*) fail "unknown size $z (100, 10k, 100k)" ;;
	esac
	kbs "$s" apply -f "$TOPO_TMP/dns.yaml" >/dev/null 2>&1 || fail "apply of the DNS set on $z failed"
	for k in $(seq 200); do
		[ "$(frontends "$s")" = "${WANT[$s]}" ] && break
		sleep 0.1
	done
	[ "$(frontends "$s")" = "${WANT[$s]}" ] || fail "state $z programs $(frontends "$s") frontends, not ${WANT[$s]}"
	STATES+=("$s")
	log "state $z: ${WANT[$s]} frontends programmed"
done
[ ${#STATES[@]} -gt 0 ] || fail "no state was loaded"

# ---------------------------------------------------------------- repetitions

for REP in $(seq "$REPS"); do
	n=${#STATES[@]}
	order=()
	for ((i = 0; i < n; i++)); do order+=("${STATES[$(((i + REP - 1) % n))]}"); done
	backend_file "$REP"
	for s in "${order[@]}"; do
		change "$s" apply1 apply -f "$TOPO_TMP/be.yaml"
		change "$s" delete1 delete tcproute r-7 -n bench
		change "$s" readd1 apply -f "$TOPO_TMP/route.yaml"
	done
	# One flip reaches every state: each daemon re-resolves dns0 on its own and logs its line.
	declare -A FROM=() CPU0=()
	for s in "${STATES[@]}"; do FROM[$s]=$(lines "$s"); CPU0[$s]=$(cpu_ns "$s"); done
	DNSFLIP=$((1 - DNSFLIP))
	dns_hosts
	t0=$EPOCHREALTIME
	topo_dns_reload
	declare -A GOT=()
	for k in $(seq 300); do
		for s in "${STATES[@]}"; do
			[ -n "${GOT[$s]:-}" ] && continue
			d=$(tail -n +"$((FROM[$s] + 1))" "$TOPO_TMP/daemon-$s.log" |
				sed -n 's/.*recompiled \([0-9]*\) Gateway(s), \([0-9]*\) frontend(s) after [0-9]* DNS name(s) changed, in \([0-9.]*\) ms.*/\3 \1 \2/p' | head -1)
			[ -n "$d" ] || continue
			GOT[$s]=1
			# shellcheck disable=SC2086  # three numbers, split on purpose
			set -- $d
			echo "change state=${s#s} op=dns rep=$REP daemon_ms=$1 cli_ms=$(ms "$t0" "$EPOCHREALTIME") gateways=$2 frontends=$3 cpu_ms=$(cpu_ms "${CPU0[$s]}" "$(cpu_ns "$s")")" >>"$RAW"
		done
		[ ${#GOT[@]} = ${#STATES[@]} ] && break
		sleep 0.05
	done
	for s in "${STATES[@]}"; do
		[ -n "${GOT[$s]:-}" ] || { log "rep $REP: no DNS recompile line from ${s#s} in 15 s"; echo "change state=${s#s} op=dns rep=$REP daemon_ms=- cli_ms=-" >>"$RAW"; }
	done
	if [ -n "${WANT[s10k]:-}" ]; then
		# A full apply on a fresh daemon, then the unchanged file again.
		start full
		change full full apply -f "$TOPO_TMP/s10k.yaml"
		change full reapply apply -f "$TOPO_TMP/s10k.yaml"
		stop full
		# Restart to serving: SIGKILL (pins stay), start on the same state dir and pins.
		kill -KILL "${PID[s10k]}"
		wait "${PID[s10k]}" 2>/dev/null
		from=$(lines s10k)
		t0=$EPOCHREALTIME
		spawn s10k
		# Until the daemon's "serving" line, read as it is written: a `status` poll is a CLI
		# process (about 16 ms of CPU, mostly the dynamic loader), which on 2 CPUs slowed the
		# very restart it timed. Then `status` must show every frontend (else it is polled).
		exec {tfd}< <(exec tail -n +"$((from + 1))" -s 0.01 -F "$TOPO_TMP/daemon-s10k.log" 2>/dev/null)
		tpid=$!
		served=
		while IFS= read -r -t 60 -u "$tfd" line; do
			[[ $line == *"kbackend: serving "* ]] && { served=1; break; }
		done
		t1=$EPOCHREALTIME
		kill "$tpid" 2>/dev/null
		exec {tfd}<&-
		[ -n "$served" ] || { tail -5 "$TOPO_TMP/daemon-s10k.log" >&2; fail "the restarted 10k daemon did not serve in 60 s"; }
		for k in $(seq 1200); do
			[ "$(frontends s10k)" = "${WANT[s10k]}" ] && break
			sleep 0.05
			t1=$EPOCHREALTIME
		done
		[ "$(frontends s10k)" = "${WANT[s10k]}" ] || fail "the restarted 10k daemon programs $(frontends s10k) frontends"
		echo "change state=10k op=restart rep=$REP daemon_ms=- cli_ms=$(ms "$t0" "$t1")" >>"$RAW"
	fi
	sleep 2	# at rest: the daemon trims freed heap 1 s after a change
	for s in "${STATES[@]}"; do echo "rss state=${s#s} rep=$REP rss_kib=$(rss "$s") hwm_kib=$(hwm "$s")" >>"$RAW"; done
	for s in "${STATES[@]}"; do
		kbs "$s" verify >"$TOPO_TMP/op.out" 2>&1 || log "rep $REP: verify on ${s#s} differs: $(tail -1 "$TOPO_TMP/op.out")"
	done
	log "rep $REP done: $(grep -c "rep=$REP " "$RAW") lines"
done

# ---------------------------------------------------------------- report

awk -v reps="$REPS" '
function median(a, n,   i, j, t, b) {
	for (i = 1; i <= n; i++) b[i] = a[i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
	return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
function med(s, op, f,   r, n, v) {
	n = 0
	for (r = 1; r <= maxr; r++) if (((s, op, r) in D) && D[s, op, r, f] != "-") v[++n] = D[s, op, r, f] + 0
	return n ? median(v, n) : -1
}
function cell(s, op,   d, c) {
	if (s == "100k" && tried100k && !loaded100k) return "did not fit"
	d = med(s, op, "daemon_ms"); c = med(s, op, "cli_ms")
	if (d < 0 && c < 0) return "-"
	return (d < 0 ? "-" : sprintf(op == "dns" ? "%.2f" : "%.1f", d)) " / " (c < 0 ? "-" : sprintf("%.0f", c))
}
function ratio(s, op, f,   r, n, v) {
	if (s == "100k" && !loaded100k) return "-"
	if (f == "") f = "daemon_ms"
	n = 0
	for (r = 1; r <= maxr; r++)
		if (((s, op, r) in D) && (("100", op, r) in D) && D[s, op, r, f] != "-" && D["100", op, r, f] != "-")
			v[++n] = (D[s, op, r, f] + 0) / (D["100", op, r, f] > 0 ? D["100", op, r, f] : 1)
	return n ? sprintf("%.1f", median(v, n)) : "-"
}
function cpucell(s, op,   m) {
	if (s == "100k" && tried100k && !loaded100k) return "did not fit"
	m = med(s, op, "cpu_ms")
	return m < 0 ? "-" : sprintf("%.2f", m)
}
$1 == "change" { kv(); k = F["state"] SUBSEP F["op"] SUBSEP F["rep"]; D[k] = 1
	D[k, "daemon_ms"] = F["daemon_ms"]; D[k, "cli_ms"] = F["cli_ms"]; D[k, "cpu_ms"] = ("cpu_ms" in F) ? F["cpu_ms"] : "-"
	if (F["rep"] > maxr) maxr = F["rep"]
	for (i = 1; i <= nst; i++) D[k, ST[i]] = (ST[i] in F) ? F[ST[i]] : "-"
	if ("mode" in F) MODE[F["state"], F["op"]] = MODE[F["state"], F["op"]] == "" || MODE[F["state"], F["op"]] == F["mode"] ? F["mode"] : "mixed" }
BEGIN { nst = split("judged compiled parse validate compile program store", ST, " ") }
$1 == "rss" { kv(); R[F["state"], ++nr[F["state"]]] = F["rss_kib"]; H[F["state"], nr[F["state"]]] = ("hwm_kib" in F) ? F["hwm_kib"] : "" }
$1 == "load" { kv(); tried100k = 1; loaded100k = F["ok"] == 1; loadms = F["load_ms"]; loadrss = F["rss_kib"] }
END {
	printf "| change | 100 objects: daemon ms / CLI ms | 10k Backends | 100k frontends | ratio 10k/100 | ratio 100k/100 |\n"
	printf "|---|---:|---:|---:|---:|---:|\n"
	split("apply1 delete1 readd1 dns", O, " ")
	name["apply1"] = "apply one changed Backend"; name["delete1"] = "delete one TCPRoute"
	name["readd1"] = "apply it again"; name["full"] = "full apply"; name["reapply"] = "re-apply unchanged"; name["dns"] = "one DNS answer changes (CLI ms: SIGHUP to the daemon line)"
	for (i = 1; i <= 4; i++)
		printf "| %s | %s | %s | %s | %s | %s |\n", name[O[i]], cell("100", O[i]), cell("10k", O[i]), cell("100k", O[i]),
			ratio("10k", O[i]), ratio("100k", O[i])
	printf "| full apply of the 10k file, fresh daemon | | %s | | | |\n", cell("full", "full")
	printf "| re-apply of the unchanged 10k file | | %s | | | |\n", cell("full", "reapply")
	printf "| restart to serving (SIGKILL, start, its serving line logged, status shows every frontend) | | %s | | | |\n", cell("10k", "restart")
	split("100 10k 100k", S, " ")
	for (i = 1; i <= 3; i++) {
		n = nr[S[i]]; for (k = 1; k <= n; k++) v[k] = R[S[i], k]
		rs[i] = n ? sprintf("%.0f MiB", median(v, n) / 1024) : (S[i] == "100k" && loadms != "" ? "did not fit" : "-")
		m = 0; for (k = 1; k <= n; k++) if (H[S[i], k] != "") w[++m] = H[S[i], k]
		hs[i] = m ? sprintf("%.0f MiB", median(w, m) / 1024) : "-"
	}
	printf "| daemon RSS at rest (2 s after the last change of the rep) | %s | %s | %s | | |\n", rs[1], rs[2], rs[3]
	printf "| daemon peak RSS (VmHWM; 10k: since its restart in the rep) | %s | %s | %s | | |\n", hs[1], hs[2], hs[3]
	if (loadms != "")
		printf "\nLoading the 100k state (ten applies of 10,000 Backends): %.1f s%s.\n", loadms / 1000,
			loaded100k ? "" : ", stopped: it did not fit (refused or over the time budget)"
	printf "\nWhere the daemon-side time goes (medians; judged objects, compiled frontends, then ms per stage):\n\n"
	printf "| state | change | pipeline | judged | compiled | parse | validate | compile | program | store |\n"
	printf "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
	split("100 10k 100k full", SS, " "); split("apply1 delete1 readd1 full reapply", OO, " ")
	for (i = 1; i <= 4; i++) for (j = 1; j <= 5; j++) {
		s = SS[i]; op = OO[j]
		if (!((s, op) in MODE)) continue
		printf "| %s | %s | %s |", s == "full" ? "10k (fresh)" : s, name[op], MODE[s, op]
		for (k = 1; k <= nst; k++) { m = med(s, op, ST[k]); printf " %s |", m < 0 ? "-" : sprintf("%.1f", m) }
		printf "\n"
	}
	printf "\nThe daemon on a CPU per change (ms; /proc/PID/task/*/schedstat around the CLI call, for DNS from the\n"
	printf "flip to the recompile line): the work itself, without the waits for the disk or for a CPU.\n\n"
	printf "| change | 100 objects | 10k Backends | 100k frontends | ratio 10k/100 | ratio 100k/100 |\n"
	printf "|---|---:|---:|---:|---:|---:|\n"
	for (i = 1; i <= 4; i++)
		printf "| %s | %s | %s | %s | %s | %s |\n", O[i] == "dns" ? "one DNS answer changes" : name[O[i]], cpucell("100", O[i]), cpucell("10k", O[i]),
			cpucell("100k", O[i]), ratio("10k", O[i], "cpu_ms"), ratio("100k", O[i], "cpu_ms")
	printf "\nMedians of %d interleaved repetitions; ratios are medians of per-rep ratios.\n", reps
}' "$RAW"
