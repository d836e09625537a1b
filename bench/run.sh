#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kbackend's benchmark suite (issue 4): kbackend side by side with its peers,
# on one topology, in one run, interleaved, and the scale figures.
#
#   bench/run.sh            the full suite (`make bench`, < 25 min)
#   bench/run.sh --quick    a smoke run: fewer and shorter reps, fewer sizes (`make bench-quick`, < 2 min)
#
# Knobs (environment): BENCH_REPS, BENCH_SECS, BENCH_SCALE_SIZES, BENCH_SCALE_REPS,
# BENCH_BPF_ARGS (passed to build/bench/bpf_cost), BENCH_READ_SIZES, BENCH_READ_REPS,
# BENCH_CHANGE_SIZES, BENCH_CHANGE_REPS, BENCH_SKIP="paths scale reads changes bpf unix".
#
# Data-path section. One echo server (kbload serve) in the backend netns be1 at
# 198.51.100.2 (TCP 8080, UDP 5353). Every client runs in the node netns
# (no default route) and reaches that same server over the same veth by one of
# these paths:
#
#   direct     198.51.100.2:8080 from a plain cgroup (no programs attached)
#   kbackend   198.18.0.10:80 from the clients' cgroup, where kbackend's
#              cgroup/connect4 program rewrites it to 198.51.100.2:8080
#   direct+kb  198.51.100.2:8080 from the clients' cgroup: what kbackend costs a
#              connect that is no frontend (the miss path); CRR only
#   nft        198.18.1.10:80, DNAT'd by an `ip` nat table (prerouting + output
#              hooks, one rule per protocol): kube-proxy's model. The table is
#              created just before each nft run and deleted right after, so its
#              conntrack hooks never tax the other paths. A /32 route on the
#              backend veth stands in for the default route a real node has.
#   haproxy    HAProxy in TCP mode on 198.18.2.10:80 (on the node's lo) ->
#              198.51.100.2:8080: a userspace proxy, Envoy's model
#   socat      socat fork mode on 198.18.3.10:80 -> 198.51.100.2:8080
#
# Metrics (kbload): crr (connect, 64 B request, 64 B reply, close) at
# concurrency 1 and 8; rr (64 B round trips on one connection); stream (64 KiB
# writes echoed, Gbit/s); udp-rr (64 B round trips on one UDP socket: direct,
# kbackend, nft only). Every repetition measures every metric on every path,
# the pair direct/kbackend always back to back (order flipped every rep) and the
# peers rotating around them. Reported: the median over repetitions, the
# median of the per-repetition ratios path/direct (paired ratios), and min-max.
#
# Scale section: build/bench/bpf_cost (connect4 ns/call at 10 .. 100,000
# frontends, bpf_stats), bench/read-scale.sh (get, describe, stats and /metrics
# at 100 and 10,000 Backends), bench/apply-scale.sh (apply time, daemon RSS, map
# memory at 1,000 and 10,000 Backends), bench/map-memory.sh (each map's
# memlock on an empty daemon with the default sizes) and bench/change-scale.sh
# (what one applied, deleted or DNS-driven change costs at 100 objects, 10,000
# Backends and 100,000 frontends).
#
# Output: Markdown on stdout and in build/bench/results-<time>.md (also copied to
# build/bench/results.md), raw lines in build/bench/raw-<time>.txt; progress on
# stderr. Everything it makes (netns, cgroups, pins, nft tables, processes) is
# removed at the end, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
# KBACKEND, KBLOAD, BPF_COST override the binaries (e.g. a snapshot while others rebuild build/).
KB=${KBACKEND:-$PWD/$OUT/kbackend}
LOAD=${KBLOAD:-$PWD/$OUT/kbload}
BPFCOST=${BPF_COST:-$PWD/$OUT/bench/bpf_cost}

QUICK=
[ "${1:-}" = --quick ] && QUICK=1
if [ -n "$QUICK" ]; then
	REPS=${BENCH_REPS:-3}
	SECS=${BENCH_SECS:-0.4}
	SCALE_SIZES=${BENCH_SCALE_SIZES:-1000}
	SCALE_REPS=${BENCH_SCALE_REPS:-1}
	READ_SIZES=${BENCH_READ_SIZES:-100 1000}
	READ_REPS=${BENCH_READ_REPS:-2}
	CHANGE_SIZES=${BENCH_CHANGE_SIZES:-100}
	CHANGE_REPS=${BENCH_CHANGE_REPS:-2}
	BPF_ARGS=${BENCH_BPF_ARGS:--k 3000 -r 3 -n 10,1000,10000}
else
	REPS=${BENCH_REPS:-7}
	SECS=${BENCH_SECS:-3}
	SCALE_SIZES=${BENCH_SCALE_SIZES:-1000 10000}
	SCALE_REPS=${BENCH_SCALE_REPS:-3}
	READ_SIZES=${BENCH_READ_SIZES:-100 10000}
	READ_REPS=${BENCH_READ_REPS:-5}
	CHANGE_SIZES=${BENCH_CHANGE_SIZES:-100 10k 100k}
	CHANGE_REPS=${BENCH_CHANGE_REPS:-5}
	BPF_ARGS=${BENCH_BPF_ARGS:-}
fi
SKIP=${BENCH_SKIP:-}
# On a small VM a client and a server that share a CPU wake each other for free, and ones on two
# CPUs pay an IPI: the scheduler flipping between the two makes RR bimodal (2x). Pinning the client
# to CPU 0 and the echo server to CPU 1 keeps every run in the same (cross-CPU) mode. The proxies
# (HAProxy, socat) are not pinned. BENCH_PIN=0 turns it off.
CLIENT_PIN=''
SERVER_PIN=''
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
	CLIENT_PIN="taskset -c 0" SERVER_PIN="taskset -c 1"
fi

[ "$(id -u)" = 0 ] || { echo "bench: needs root" >&2; exit 1; }
for b in "$KB" "$LOAD"; do
	[ -x "$b" ] || { echo "bench: $b is missing; run 'make all' first" >&2; exit 1; }
done
[ "$REPS" -ge 1 ] 2>/dev/null || { echo "bench: BENCH_REPS must be a positive integer" >&2; exit 2; }

STAMP=$(date +%Y%m%d-%H%M%S)
RESDIR=$PWD/$OUT/bench
mkdir -p "$RESDIR" || exit 1
RAW=$RESDIR/raw-$STAMP.txt
RESULT=$RESDIR/results-$STAMP.md
: >"$RAW"
T_START=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init kbbench
PLAIN_CG=
NFT_TABLE=kbbench_nat

cleanup() {
	local rc=$?
	# The nft table lives in the node netns and goes with it; delete it first anyway.
	[ -e "$(topo_ns node)" ] && topo_in node nft delete table ip "$NFT_TABLE" 2>/dev/null
	if [ -n "$PLAIN_CG" ] && [ -d "$PLAIN_CG" ]; then
		local pid i
		while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$PLAIN_CG/cgroup.procs"
		for i in $(seq 30); do rmdir "$PLAIN_CG" 2>/dev/null && break; sleep 0.1; done
	fi
	PLAIN_CG=
	topo_down
	return "$rc"
}
trap cleanup EXIT
trap 'echo "bench: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "bench: $*" >&2; exit 1; }
log() { echo "  [bench] $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
skipped() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

DIRECT=198.51.100.2
FRONT=198.18.0.10
VIP=198.18.1.10
HAP=198.18.2.10
SOCAT=198.18.3.10

# ---------------------------------------------------------------- data paths

# client CGROUP ARGS...: a kbload client in the node netns, inside CGROUP.
client() {
	local cg=$1
	shift
	# shellcheck disable=SC2016,SC2086  # $$ and $@ are for sh; the pin command splits
	timeout --foreground 60 nsenter --net="$(topo_ns node)" -- sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" \
		$CLIENT_PIN "$@"
}

nft_up() {
	topo_in node nft -f - <<EOF
table ip $NFT_TABLE {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr $VIP tcp dport 80 dnat to $DIRECT:8080
		ip daddr $VIP udp dport 5353 dnat to $DIRECT:5353
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr $VIP tcp dport 80 dnat to $DIRECT:8080
		ip daddr $VIP udp dport 5353 dnat to $DIRECT:5353
	}
}
EOF
}
nft_down() { topo_in node nft delete table ip "$NFT_TABLE" 2>/dev/null; }

# target PATH PROTO -> ADDR:PORT
target() {
	case $1/$2 in
	direct/tcp | direct+kb/tcp) echo "$DIRECT:8080" ;;
	direct/udp) echo "$DIRECT:5353" ;;
	kbackend/tcp) echo "$FRONT:80" ;;
	kbackend/udp) echo "$FRONT:5353" ;;
	nft/tcp) echo "$VIP:80" ;;
	nft/udp) echo "$VIP:5353" ;;
	haproxy/tcp) echo "$HAP:80" ;;
	socat/tcp) echo "$SOCAT:80" ;;
	esac
}
cgroup_of() { case $1 in kbackend | direct+kb) echo "$TOPO_CG" ;; *) echo "$PLAIN_CG" ;; esac; }

# measure METRIC PATH REP [SECONDS]: one kbload run; appends a raw line (unless REP is 0, a warm-up).
measure() {
	local metric=$1 path=$2 rep=$3 secs=${4:-$SECS} proto=tcp mode conc=1 line rc val p50 p99 err
	case $metric in
	crr1) mode=crr ;;
	crr8) mode=crr conc=8 ;;
	rr) mode=rr ;;
	stream) mode=stream ;;
	udp-rr) mode=rr proto=udp ;;
	esac
	[ "$path" = nft ] && { nft_up || fail "could not add the nft table"; }
	line=$(client "$(cgroup_of "$path")" "$LOAD" "$mode" "--$proto" "$(target "$path" "$proto")" \
		--duration "$secs" --concurrency "$conc" -q 2>&1)
	rc=$?
	[ "$path" = nft ] && nft_down
	# A client killed by a signal (not timeout's 124): someone pressed Ctrl-C or killed us; stop.
	[ $rc -gt 128 ] && { echo "bench: a client died of signal $((rc - 128)); stopping" >&2; exit 130; }
	[ "$rep" = 0 ] && return 0
	if [ $rc != 0 ] || ! grep -q '^mode=' <<<"$line"; then
		log "$metric $path rep $rep FAILED (rc $rc): $(tail -1 <<<"$line")"
		echo "perf metric=$metric path=$path rep=$rep val=0 p50=- p99=- errors=-1" >>"$RAW"
		return 0
	fi
	line=$(grep '^mode=' <<<"$line" | tail -1)
	if [ "$mode" = stream ]; then
		val=$(sed -n 's/.* gbps=\([^ ]*\).*/\1/p' <<<"$line") p50=- p99=-
	else
		val=$(sed -n 's/.* rate=\([^ ]*\).*/\1/p' <<<"$line")
		p50=$(sed -n 's/.* p50_us=\([^ ]*\).*/\1/p' <<<"$line")
		p99=$(sed -n 's/.* p99_us=\([^ ]*\).*/\1/p' <<<"$line")
	fi
	err=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$line")
	echo "perf metric=$metric path=$path rep=$rep val=$val p50=$p50 p99=$p99 errors=$err" >>"$RAW"
	log "$(printf 'rep %d %-7s %-9s %12s %s  p50 %s us  p99 %s us  errors %s' "$rep" "$metric" "$path" "$val" \
		"$([ "$mode" = stream ] && echo Gbit/s || echo /s)" "$p50" "$p99" "$err")"
}

# The peers that run next to each metric.
PEERS_TCP="nft haproxy socat"
have haproxy || { log "haproxy is not installed: its path is skipped"; PEERS_TCP=${PEERS_TCP/haproxy/}; }
have socat || { log "socat is not installed: its path is skipped"; PEERS_TCP=${PEERS_TCP/socat/}; }
have nft || fail "nft is not installed"
METRICS="crr1 crr8 rr stream udp-rr"

# units_for METRIC: the units that rotate (the direct/kbackend pair is one unit).
units_for() {
	case $1 in
	crr1 | crr8) echo "pair direct+kb $PEERS_TCP" ;;
	udp-rr) echo "pair nft" ;;
	*) echo "pair $PEERS_TCP" ;;
	esac
}

run_paths() {
	local r m u units n i k p order
	topo_up || fail "could not build the topology"
	PLAIN_CG=$TOPO_CG_ROOT/kbbench-plain
	mkdir "$PLAIN_CG" || fail "could not make $PLAIN_CG"
	# shellcheck disable=SC2086
	topo_bg be1 $SERVER_PIN "$LOAD" serve --tcp "$DIRECT:8080" --udp "$DIRECT:5353" --threads 2 --duration 3600
	topo_wait_listen be1 "$DIRECT:8080" || fail "the echo server did not start"
	topo_kb_start "$KB" --enable-backend || fail "the daemon did not start"
	cat >"$TOPO_TMP/bench.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: eg
  addresses: [{type: IPAddress, value: $FRONT}]
  listeners:
    - {name: tcp, protocol: TCP, port: 80}
    - {name: udp, protocol: UDP, port: 5353}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp, namespace: bench}
spec:
  parentRefs: [{name: bench, sectionName: tcp}]
  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: tcp}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {name: udp, namespace: bench}
spec:
  parentRefs: [{name: bench, sectionName: udp}]
  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: udp}]}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: tcp, namespace: bench}
spec:
  endpoints: [{ip: {address: $DIRECT, port: 8080}}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: udp, namespace: bench}
spec:
  endpoints: [{ip: {address: $DIRECT, port: 5353}}]
EOF
	"$KB" apply -f "$TOPO_TMP/bench.yaml" >"$TOPO_TMP/apply.out" 2>&1 || { cat "$TOPO_TMP/apply.out" >&2; fail "apply failed"; }
	"$KB" get endpoints | grep -q "$FRONT:80 .*$DIRECT:8080" || fail "the TCP frontend is not programmed"
	"$KB" get endpoints | grep -q "$FRONT:5353 .*$DIRECT:5353" || fail "the UDP frontend is not programmed"

	# The nft VIP needs a route to leave the node's routing lookup (a real node has a default route).
	topo_in node ip route add "$VIP/32" dev "$TOPO_PREFIX-n1" || fail "could not add the VIP route"
	topo_in node ip addr add "$HAP/32" dev lo || fail "could not add $HAP"
	topo_in node ip addr add "$SOCAT/32" dev lo || fail "could not add $SOCAT"
	if [[ $PEERS_TCP == *haproxy* ]]; then
		cat >"$TOPO_TMP/haproxy.cfg" <<EOF
global
	maxconn 4096
	nbthread $(nproc)
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend fe
	bind $HAP:80
	default_backend be
backend be
	server s1 $DIRECT:8080
EOF
		topo_bg node haproxy -db -f "$TOPO_TMP/haproxy.cfg"
		topo_wait_listen node "$HAP:80" || { cat "$TOPO_LAST_LOG" >&2; fail "haproxy did not start"; }
	fi
	if [[ $PEERS_TCP == *socat* ]]; then
		topo_bg node socat -lf /dev/null "TCP4-LISTEN:80,bind=$SOCAT,fork,reuseaddr,backlog=1024,nodelay" \
			"TCP4:$DIRECT:8080,nodelay"
		topo_wait_listen node "$SOCAT:80" || { cat "$TOPO_LAST_LOG" >&2; fail "socat did not start"; }
	fi
	# Every path must reach the server before anything is measured.
	for k in direct kbackend direct+kb $PEERS_TCP udp:direct udp:kbackend udp:nft; do
		p=tcp
		[ "${k#udp:}" != "$k" ] && { p=udp k=${k#udp:}; }
		[ "$k" = nft ] && { nft_up || fail "could not add the nft table"; }
		client "$(cgroup_of "$k")" "$LOAD" rr "--$p" "$(target "$k" "$p")" --count 10 --timeout-ms 2000 -q >/dev/null 2>&1
		i=$?
		[ "$k" = nft ] && nft_down
		[ $i = 0 ] || fail "path $k does not reach the $p echo server"
	done
	log "topology up; warming up"
	for m in crr8 stream; do
		for k in direct kbackend direct+kb $PEERS_TCP; do measure "$m" "$k" 0 0.3; done
	done

	log "$REPS repetitions x ${SECS}s a run; metrics: $METRICS"
	for r in $(seq "$REPS"); do
		for m in $METRICS; do
			# shellcheck disable=SC2207
			units=($(units_for "$m"))
			n=${#units[@]}
			order=()
			for ((i = 0; i < n; i++)); do order+=("${units[$(((i + r - 1) % n))]}"); done
			for u in "${order[@]}"; do
				if [ "$u" = pair ]; then
					if [ $((r % 2)) = 1 ]; then
						measure "$m" direct "$r"
						measure "$m" kbackend "$r"
					else
						measure "$m" kbackend "$r"
						measure "$m" direct "$r"
					fi
				else
					measure "$m" "$u" "$r"
				fi
			done
		done
	done
	cleanup
	trap cleanup EXIT
	trap 'echo "bench: interrupted, cleaning up" >&2; exit 130' INT
	trap 'exit 143' TERM
}

# Markdown of the data-path section from the raw lines.
report_paths() {
	awk -v reps="$REPS" -v secs="$SECS" '
function median(a, n,   i, j, t, b) {
	for (i = 1; i <= n; i++) b[i] = a[i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
	return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
$1 == "perf" {
	kv(); m = F["metric"]; p = F["path"]; r = F["rep"] + 0
	val[m, p, r] = F["val"] + 0; p50[m, p, r] = F["p50"]; p99[m, p, r] = F["p99"]
	e = F["errors"] + 0; if (e > 0) err[m, p] += e; if (e < 0) fails[m, p]++
	seen[m, p] = 1; if (r > maxr) maxr = r
}
END {
	nm = split("crr1 crr8 rr stream udp-rr", M, " ")
	np = split("direct kbackend direct+kb nft haproxy socat", P, " ")
	title["crr1"] = "CRR, concurrency 1 (connections/s)"; title["crr8"] = "CRR, concurrency 8 (connections/s)"
	title["rr"] = "TCP RR, 1 connection (round trips/s)"; title["stream"] = "TCP stream, 1 connection (Gbit/s)"
	title["udp-rr"] = "UDP RR, 1 socket (round trips/s)"
	printf "| metric | path | median | vs direct (paired) | ratio min-max | value min-max | p50 us | p99 us | errors |\n"
	printf "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
	for (a = 1; a <= nm; a++) {
		m = M[a]
		for (b = 1; b <= np; b++) {
			p = P[b]; if (!((m, p) in seen)) continue
			n = 0; nq = 0; lo = 1e18; hi = -1; qlo = 1e18; qhi = -1; nl = 0
			for (r = 1; r <= maxr; r++) {
				if (!((m, p, r) in val)) continue
				v[++n] = val[m, p, r]; if (v[n] < lo) lo = v[n]; if (v[n] > hi) hi = v[n]
				if (p50[m, p, r] != "-") { l50[++nl] = p50[m, p, r] + 0; l99[nl] = p99[m, p, r] + 0 }
				if (((m, "direct", r) in val) && val[m, "direct", r] > 0) {
					q[++nq] = val[m, p, r] / val[m, "direct", r]; if (q[nq] < qlo) qlo = q[nq]; if (q[nq] > qhi) qhi = q[nq]
				}
			}
			fmt = m == "stream" ? "%.2f" : "%.0f"
			med = median(v, n)
			printf "| %s | %s | " fmt " | %s | %s | " fmt "-" fmt " | %s | %s | %s |\n", !shown[m] ? title[m] : "", p, med,
				p == "direct" ? "1" : (nq ? sprintf("%.3f", median(q, nq)) : "-"),
				p == "direct" ? "-" : (nq ? sprintf("%.3f-%.3f", qlo, qhi) : "-"), lo, hi,
				nl ? sprintf("%.1f", median(l50, nl)) : "-", nl ? sprintf("%.1f", median(l99, nl)) : "-",
				(err[m, p] + 0) (fails[m, p] ? " (" fails[m, p] " runs failed)" : "")
			shown[m] = 1
		}
	}
	printf "\n%d repetitions x %ss a run, interleaved; \"vs direct (paired)\" is the median over repetitions of path/direct, each measured in the same repetition.\n", maxr, secs
	printf "\nkbackend against each peer (median of paired ratios kbackend/peer; > 1: kbackend is ahead):\n\n"
	printf "| metric | vs nft DNAT | vs HAProxy | vs socat |\n|---|---:|---:|---:|\n"
	for (a = 1; a <= nm; a++) {
		m = M[a]; if (!((m, "kbackend") in seen)) continue
		printf "| %s |", m
		split("nft haproxy socat", PP, " ")
		for (b = 1; b <= 3; b++) {
			p = PP[b]; nq = 0
			for (r = 1; r <= maxr; r++)
				if (((m, p, r) in val) && ((m, "kbackend", r) in val) && val[m, p, r] > 0) q[++nq] = val[m, "kbackend", r] / val[m, p, r]
			printf " %s |", nq ? sprintf("%.2f", median(q, nq)) : "n/a"
		}
		printf "\n"
	}
}' "$RAW"
}

# ---------------------------------------------------------------- scale

run_bpf_cost() {
	local out=$RESDIR/bpf_cost-$STAMP.txt
	if [ ! -x "$BPFCOST" ]; then
		log "$BPFCOST is missing (make $OUT/bench/bpf_cost); skipping the BPF cost section"
		echo "bpf_cost_failed reason=missing" >>"$RAW"
		return 1
	fi
	log "BPF cost: $BPFCOST $BPF_ARGS"
	# shellcheck disable=SC2086
	"$BPFCOST" $BPF_ARGS >"$out" 2>&1
	local rc=$?
	# The per-repetition lines, so that a failure at one size still reports the others.
	grep '^bpf_cost ' "$out" | sed 's/^bpf_cost /bpf_rep /' >>"$RAW"
	if [ $rc != 0 ]; then
		tail -3 "$out" >&2
		log "bpf_cost failed (rc $rc); reporting the sizes it finished"
		echo "bpf_cost_failed rc=$rc reason=$(grep -v '^bpf_cost ' "$out" | tail -2 | tr '\n\t' '  ')" >>"$RAW"
	fi
	return 0
}

# Medians per (set, N) from the per-repetition lines; ratios against the smallest N.
report_bpf_cost() {
	awk '
function median(a, n,   i, j, t, b) {
	for (i = 1; i <= n; i++) b[i] = a[i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
	return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
$1 == "bpf_rep" {
	kv(); n = F["n"] + 0; s = F["set"]; if (!(n in have)) order[++nn] = n; have[n] = 1
	k = ++cnt[n, s]; c4[n, s, k] = F["connect4_ns"] + 0; rl[n, s, k] = F["sock_release_ns"] + 0
	proto = F["proto"]; store = F["store"]; sets[s] = 1
}
$1 == "bpf_cost_failed" { failed = $0; sub(/^bpf_cost_failed /, "", failed) }
END {
	if (!nn) { print "(no BPF cost figures: " (failed ? "bpf_cost failed: " failed : "bpf_cost did not run") ")"; exit }
	for (i = 2; i <= nn; i++) for (j = i; j > 1 && order[j - 1] > order[j]; j--) { t = order[j]; order[j] = order[j - 1]; order[j - 1] = t }
	n0 = order[1]
	split("hot cold miss", S, " ")
	for (a = 1; a <= 3; a++) for (i = 1; i <= nn; i++) {
		n = order[i]; s = S[a]; m = cnt[n, s]
		if (!m) continue
		for (k = 1; k <= m; k++) { v[k] = c4[n, s, k]; w[k] = rl[n, s, k] }
		med[n, s] = median(v, m); rel[n, s] = median(w, m); reps[n] = m
	}
	printf "| frontends | connect4 ns, hot | vs %d | connect4 ns, cold | vs %d | connect4 ns, miss | vs %d | sock_release ns (hot) | reps |\n", n0, n0, n0
	printf "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
	for (i = 1; i <= nn; i++) {
		n = order[i]; printf "| %d |", n
		for (a = 1; a <= 3; a++) {
			s = S[a]
			if ((n, s) in med) printf " %.1f | %.3f |", med[n, s], ((n0, s) in med) ? med[n, s] / med[n0, s] : 0
			else printf " - | - |"
		}
		printf " %.1f | %d |\n", rel[n, "hot"], reps[n]
	}
	printf "\nMedians of the repetitions (bpf_stats run time / run count over the connects, %s sockets, %s frontend store). hot: 10 fixed frontends, the algorithmic cost; cold: cycling through all N (cache and TLB misses); miss: a destination that is no frontend (what every other connect in the cgroup pays).\n", proto, store
	if (failed) printf "\n**bpf_cost stopped early:** %s\n", failed
}' "$RAW"
}

# ---------------------------------------------------------------- goals

report_goals() {
	awk '
function median(a, n,   i, j, t, b) {
	for (i = 1; i <= n; i++) b[i] = a[i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
	return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
function paired(m, a, b,   r, n, q) {
	n = 0
	for (r = 1; r <= maxr; r++) if (((m, a, r) in val) && ((m, b, r) in val) && val[m, b, r] > 0) q[++n] = val[m, a, r] / val[m, b, r]
	return n ? median(q, n) : -1
}
function row(goal, got, ok, txt) {
	printf "| %s | %s | %s |\n", goal, got < 0 ? "n/a" : txt, got < 0 ? "not measured" : (ok ? "met" : "**not met**")
}
$1 == "perf" { kv(); val[F["metric"], F["path"], F["rep"] + 0] = F["val"] + 0; if (F["rep"] + 0 > maxr) maxr = F["rep"] + 0 }
$1 == "bpf_rep" { kv(); if (F["set"] == "hot") { n = F["n"] + 0; if (!(n in bc)) bo[++bn] = n; bv[n, ++bc[n]] = F["connect4_ns"] + 0 } }
$1 == "scale" { kv(); if (F["kind"] == "apply" && F["n"] == 10000) a10k[++na] = F["apply_s"] + 0 }
$1 == "read" { kv(); if (F["n"] == 10000) rd[F["op"], ++nrd[F["op"]]] = F["s"] + 0 }
END {
	printf "| goal (reported, not asserted) | measured | verdict |\n|---|---:|---|\n"
	g = paired("crr1", "kbackend", "direct"); row("CRR conc 1: kbackend/direct >= 0.97", g, g >= 0.97, sprintf("%.3f", g))
	g = paired("crr8", "kbackend", "direct"); row("CRR conc 8: kbackend/direct >= 0.97", g, g >= 0.97, sprintf("%.3f", g))
	g = paired("rr", "kbackend", "direct"); row("TCP RR: kbackend/direct >= 0.98", g, g >= 0.98, sprintf("%.3f", g))
	g = paired("stream", "kbackend", "direct"); row("stream: kbackend/direct >= 0.98", g, g >= 0.98, sprintf("%.3f", g))
	g = paired("crr8", "kbackend", "nft"); row("CRR conc 8: ahead of nftables DNAT (kbackend/nft > 1)", g, g > 1, sprintf("%.2f", g))
	g = paired("crr1", "kbackend", "haproxy"); row("CRR conc 1: >= 2x HAProxy", g, g >= 2, sprintf("%.2fx", g))
	g = paired("crr8", "kbackend", "haproxy"); row("CRR conc 8: >= 2x HAProxy", g, g >= 2, sprintf("%.2fx", g))
	g = paired("rr", "kbackend", "haproxy"); row("TCP RR: >= 2x HAProxy", g, g >= 2, sprintf("%.2fx", g))
	if (bn) {
		for (i = 2; i <= bn; i++) for (j = i; j > 1 && bo[j - 1] > bo[j]; j--) { t = bo[j]; bo[j] = bo[j - 1]; bo[j - 1] = t }
		for (i = 1; i <= bn; i++) { n = bo[i]; for (k = 1; k <= bc[n]; k++) v[k] = bv[n, k]; bm[i] = median(v, bc[n]) }
		bmin = bmax = 1; for (i = 2; i <= bn; i++) { r = bm[i] / bm[1]; if (r > bmax) bmax = r; if (r < bmin) bmin = r }
		blast = bo[bn]
	}
	if (bn && blast < 100000) {
		printf "| BPF connect4 cost flat within 15%% from 10 to 100k frontends (hot set) | %.3f-%.3f of N=%d, up to N=%d only | not measured at 100k |\n", bmin, bmax, bo[1], blast
		bn = -1
	}
	if (bn > 0) row("BPF connect4 cost flat within 15% from " bo[1] " to " blast " frontends (hot set)", bmax, bmax <= 1.15 && bmin >= 0.85, sprintf("%.3f-%.3f of N=10", bmin, bmax))
	else if (bn == 0) row("BPF connect4 cost flat within 15% from 10 to 100k frontends", -1, 0, "")
	g = na ? median(a10k, na) : -1; row("apply of 10,000 Backends < 1 s", g, g < 1, sprintf("%.2f s", g))
	split("get_all stats metrics", RO, " ")
	for (i = 1; i <= 3; i++) {
		op = RO[i]; m = nrd[op]; for (k = 1; k <= m; k++) v[k] = rd[op, k]
		g = m ? median(v, m) : -1; row(op " at 10,000 Backends < 0.5 s (through the CLI)", g, g < 0.5, sprintf("%.2f s", g))
	}
}' "$RAW"
}

# ---------------------------------------------------------------- main

skipped paths || run_paths
if ! skipped bpf; then run_bpf_cost; fi
if ! skipped unix; then
	log "unix sidecar paths (bench/unix.sh${QUICK:+ --quick})"
	KBACKEND=$KB KBLOAD=$LOAD bench/unix.sh ${QUICK:+--quick} >"$RESDIR/unix-$STAMP.md" || log "bench/unix.sh failed"
fi
if ! skipped scale; then
	log "apply scale: sizes $SCALE_SIZES, $SCALE_REPS rep(s)"
	KBACKEND=$KB SCALE_SIZES=$SCALE_SIZES SCALE_REPS=$SCALE_REPS SCALE_RAW=$RESDIR/scale-$STAMP.txt OUT=$OUT \
		bench/apply-scale.sh >"$RESDIR/scale-$STAMP.md" || log "apply-scale failed"
	cat "$RESDIR/scale-$STAMP.txt" >>"$RAW" 2>/dev/null
	log "map memory of an empty daemon (bench/map-memory.sh)"
	KBACKEND=$KB OUT=$OUT MAPMEM_RAW=$RAW bench/map-memory.sh >"$RESDIR/mapmem-$STAMP.md" || log "map-memory failed"
fi
if ! skipped reads; then
	log "read scale: sizes $READ_SIZES, $READ_REPS rep(s)"
	KBACKEND=$KB READ_SIZES=$READ_SIZES READ_REPS=$READ_REPS READ_RAW=$RESDIR/reads-$STAMP.txt OUT=$OUT \
		bench/read-scale.sh >"$RESDIR/reads-$STAMP.md" || log "read-scale failed"
	cat "$RESDIR/reads-$STAMP.txt" >>"$RAW" 2>/dev/null
fi
if ! skipped changes; then
	log "change scale: sizes $CHANGE_SIZES, $CHANGE_REPS rep(s)"
	KBACKEND=$KB CHANGE_SIZES=$CHANGE_SIZES CHANGE_REPS=$CHANGE_REPS CHANGE_RAW=$RESDIR/changes-$STAMP.txt OUT=$OUT \
		bench/change-scale.sh >"$RESDIR/changes-$STAMP.md" || log "change-scale failed"
	cat "$RESDIR/changes-$STAMP.txt" >>"$RAW" 2>/dev/null
fi
if ! skipped kube; then
	log "Kubernetes source at scale (bench/kube-scale.sh)"
	KBACKEND=$KB KBLOAD=$LOAD KUBE_RAW=$RESDIR/kube-$STAMP.txt OUT=$OUT ${QUICK:+KUBE_N=1000 KUBE_EVENTS=100 KUBE_REPS=1} \
		bench/kube-scale.sh >"$RESDIR/kube-$STAMP.md" || log "kube-scale failed"
fi
T_END=$EPOCHREALTIME

{
	echo "# kbackend benchmark results ($STAMP)"
	echo
	echo "Command: \`bench/run.sh${QUICK:+ --quick}\` (reps $REPS, ${SECS}s a run, client/server pinning: ${CLIENT_PIN:-off}${SERVER_PIN:+ / $SERVER_PIN}). Machine: $(nproc) vCPU," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)." \
		"Load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)." \
		"Wall time: $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f", b - a }') s."
	if ! skipped paths; then
		echo
		echo "## Data path: kbackend and its peers, interleaved"
		echo
		report_paths
	fi
	if ! skipped bpf; then
		echo
		echo "## BPF cost per connect4 against the number of frontends"
		echo
		report_bpf_cost
	fi
	if ! skipped unix; then
		echo
		echo "## Unix sidecars: TCP to a unix socket through kbackend's bridge and its peers"
		echo
		echo "Concurrency 1, the same unix echo server; ratios are medians of per-rep ratios."
		echo
		cat "$RESDIR/unix-$STAMP.md" 2>/dev/null
	fi
	if ! skipped scale; then
		echo
		echo "## Control plane: apply time and memory"
		echo
		cat "$RESDIR/scale-$STAMP.md" 2>/dev/null
		echo
		echo "## Map memory of an empty daemon (default --max-* sizes)"
		echo
		cat "$RESDIR/mapmem-$STAMP.md" 2>/dev/null
	fi
	if ! skipped reads; then
		echo
		echo "## Control plane: reads at scale"
		echo
		cat "$RESDIR/reads-$STAMP.md" 2>/dev/null
	fi
	if ! skipped changes; then
		echo
		echo "## Control plane: one change at scale"
		echo
		cat "$RESDIR/changes-$STAMP.md" 2>/dev/null
	fi
	if ! skipped kube; then
		echo
		echo "## Kubernetes source: sync and one event at 10,000 Backends"
		echo
		cat "$RESDIR/kube-$STAMP.md" 2>/dev/null
	fi
	echo
	echo "## Goals"
	echo
	report_goals
} >"$RESULT"
cp "$RESULT" "$RESDIR/results.md"
cat "$RESULT"
echo >&2
echo "bench: results in $RESULT (raw: $RAW)" >&2
