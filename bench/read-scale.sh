#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Read scale (issue 13): how long the read commands take at 100 and at 10,000
# Backends, measured in one run on the same topology.
#
# The state is bench/scale-gen.awk's manifest (the one bench/apply-scale.sh
# applies, with labels): N Backends of 10 endpoints, N TCPRoutes, ceil(N/64)
# Gateways, so N frontends and 10*N endpoint rows. Per size, one daemon in the
# node netns (no default route; its metrics listener on the node's 127.0.0.1)
# gets the manifest applied once; then every repetition times, through the CLI
# (process start, request, reply, printing to /dev/null):
#   get_all      kbackend get endpoints -A             (every frontend, a table)
#   get_fes      kbackend get frontends -A             (one row a frontend)
#   get_all_json kbackend get endpoints -A -o json     (one JSON document)
#   get_one      kbackend get backend be-K -n bench    (one object by name)
#   get_sel      kbackend get endpoints -n bench -l app=be-K   (one Backend's frontend by label)
#   describe     kbackend describe backend be-K -n bench
#   stats        kbackend stats
#   metrics      one GET /metrics (curl, in the node netns)
# and each daemon's VmRSS at rest (3 s after the apply, and 3 s after the last read).
# K changes every repetition. Repetitions alternate between the sizes (both
# daemons run side by side, each with its own cgroup, pins and socket), so a
# noisy stretch of the machine hits both; the table gives medians and the
# median of the paired ratios 10,000 / 100.
#
#   bench/read-scale.sh                     (as root, after `make all`)
#   READ_SIZES="100 10000" READ_REPS=5 READ_RAW=FILE KBACKEND=build/kbackend bench/read-scale.sh
#
# An older binary that lacks a form (get_sel) reports it as "-". Prints a
# Markdown table on stdout (progress on stderr); READ_RAW gets one key=value line
# per measurement. Everything it makes is removed, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
SIZES=${READ_SIZES:-100 10000}
REPS=${READ_REPS:-5}
RAW=${READ_RAW:-}
OPS="get_all get_fes get_all_json get_one get_sel describe stats metrics"

[ "$(id -u)" = 0 ] || { echo "read-scale: needs root" >&2; exit 1; }
[ -x "$KB" ] || { echo "read-scale: $KB is missing; run 'make all' first" >&2; exit 1; }
command -v curl >/dev/null || { echo "read-scale: curl is missing" >&2; exit 1; }

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init "kbrd$$"
PIDS=()
cleanup() {
	local i
	for i in "${!PIDS[@]}"; do
		KBACKEND_SOCKET=$TOPO_TMP/kb-$i.sock timeout 10 "$KB" unload --bpffs "$TOPO_BPFFS-$i" >/dev/null 2>&1
		kill -KILL "${PIDS[$i]}" 2>/dev/null
		wait "${PIDS[$i]}" 2>/dev/null
		"$KB" unload --bpffs "$TOPO_BPFFS-$i" >/dev/null 2>&1
		rm -rf "$TOPO_BPFFS-$i"
		rmdir "$TOPO_CG-$i" 2>/dev/null
	done
	topo_down
}
trap cleanup EXIT
trap 'echo "read-scale: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "read-scale: $*" >&2; exit 1; }
log() { echo "  [reads] $*" >&2; }

topo_up || fail "could not build the topology"
[ -n "$RAW" ] || RAW=$TOPO_TMP/raw
: >"$RAW"

# 10,000 Backends are past the default map sizes; a binary from before the --max-* flags had room.
LIMITS=()
"$KB" help daemon 2>&1 | grep -q -- --max-frontends && LIMITS=(--max-frontends 131072 --max-endpoints 131072)

# One daemon per size (index i), each attached to a cgroup of its own under the topology's.
start_daemon() {
	local i=$1 n=$2 port=$((19400 + $1)) k
	mkdir -p "$TOPO_CG-$i" "$TOPO_TMP/state-$i"
	nsenter --net="$(topo_ns node)" -- "$KB" daemon --cgroup "$TOPO_CG-$i" --bpffs "$TOPO_BPFFS-$i" \
		--state-dir "$TOPO_TMP/state-$i" --socket "$TOPO_TMP/kb-$i.sock" --dns-server "$TOPO_DNS_ADDR:53" \
		--metrics-addr "127.0.0.1:$port" --enable-backend "${LIMITS[@]}" >"$TOPO_TMP/daemon-$i.log" 2>&1 &
	PIDS[i]=$!
	for k in $(seq 100); do
		KBACKEND_SOCKET=$TOPO_TMP/kb-$i.sock "$KB" status >/dev/null 2>&1 && break
		kill -0 "${PIDS[$i]}" 2>/dev/null || { sed 's/^/    /' "$TOPO_TMP/daemon-$i.log" >&2; fail "daemon $i exited"; }
		sleep 0.1
	done
	awk -v N="$n" -v LABELS=1 -f bench/scale-gen.awk >"$TOPO_TMP/scale-$n.yaml" || fail "could not generate $n Backends"
	KBACKEND_SOCKET=$TOPO_TMP/kb-$i.sock "$KB" apply -f "$TOPO_TMP/scale-$n.yaml" >"$TOPO_TMP/apply.out" 2>&1 ||
		{ tail -5 "$TOPO_TMP/apply.out" >&2; fail "apply of $n Backends failed"; }
}

# run_op OP N K: the command for one measurement, its output to $TOPO_TMP/op.out.
run_op() {
	local op=$1 n=$2 k=$3
	case $op in
	get_all) "$KB" get endpoints -A ;;
	get_fes) "$KB" get frontends -A ;;
	get_all_json) "$KB" get endpoints -A -o json ;;
	get_one) "$KB" get backend "be-$k" -n bench ;;
	get_sel) "$KB" get endpoints -n bench -l "app=be-$k" ;;
	describe) "$KB" describe backend "be-$k" -n bench ;;
	stats) "$KB" stats ;;
	metrics) nsenter --net="$(topo_ns node)" -- curl -sfS --max-time 60 "http://127.0.0.1:$((19400 + IDX))/metrics" ;;
	esac >"$TOPO_TMP/op.out" 2>"$TOPO_TMP/op.err"
}

# What each output must hold, so a fast wrong answer is not a result.
check_op() {
	local op=$1 n=$2 k=$3 out=$TOPO_TMP/op.out
	case $op in
	get_all) [ "$(grep -c '^198\.19\.' "$out")" = "$n" ] ;;
	get_fes) [ "$(grep -c '^198\.19\.' "$out")" = "$n" ] ;;
	get_all_json) [ "$(grep -c '"loadBalancer"' "$out")" = "$n" ] ;;
	get_one) grep -q "be-$k " "$out" && [ "$(grep -c 'Backend' "$out")" = 1 ] ;;
	get_sel) [ "$(grep -c '^198\.19\.' "$out")" = 1 ] && grep -q "be-$k " "$out" ;;
	describe) grep -q "^Name: *be-$k\$" "$out" && grep -q 'Frontends: *1$' "$out" ;;
	stats) [ "$(grep -c '^198\.19\.' "$out")" = $((2 * n)) ] ;;
	metrics) [ "$(grep -c '^kbackend_frontend_connections_total{' "$out")" = "$n" ] ;;
	esac
}

idx=0
for n in $SIZES; do
	start_daemon "$idx" "$n"
	log "daemon $idx: $n Backends applied"
	idx=$((idx + 1))
done

# RSS at rest: the daemon gives free heap pages back a second after a change or a long read.
rss_rest() {
	local when=$1 i=0 n
	sleep 3
	for n in $SIZES; do
		echo "rss n=$n when=$when kib=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/"${PIDS[$i]}"/status)" >>"$RAW"
		i=$((i + 1))
	done
}
rss_rest apply

declare -A SKIPPED
for r in $(seq "$REPS"); do
	idx=0
	for n in $SIZES; do
		IDX=$idx
		export KBACKEND_SOCKET=$TOPO_TMP/kb-$idx.sock
		k=$(((r * 7919) % n))
		for op in $OPS; do
			[ -n "${SKIPPED[$op]:-}" ] && continue
			t0=$EPOCHREALTIME
			run_op "$op" "$n" "$k"
			rc=$?
			t1=$EPOCHREALTIME
			if [ $rc != 0 ] || ! check_op "$op" "$n" "$k"; then
				if [ "$op" = get_sel ] && [ $rc = 2 ]; then
					SKIPPED[$op]=1	# a binary without selectors: a usage error, reported as "-"
					continue
				fi
				sed 's/^/    /' "$TOPO_TMP/op.err" | tail -3 >&2
				fail "$op at $n Backends (rep $r) gave a wrong answer (rc $rc); output in $TOPO_TMP/op.out"
			fi
			line="read n=$n op=$op rep=$r s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }') bytes=$(stat -c %s "$TOPO_TMP/op.out")"
			echo "$line" >>"$RAW"
		done
		log "rep $r, $n Backends: $(grep " n=$n .* rep=$r " "$RAW" | awk '{ split($3, o, "="); split($5, s, "="); printf "%s %s  ", o[2], s[2] }')"
		idx=$((idx + 1))
	done
done

rss_rest reads

awk -v ops="$OPS" -v sizes="$SIZES" '
function median(a, n,   i, j, t, b) {
	for (i = 1; i <= n; i++) b[i] = a[i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
	return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
$1 == "rss" { kv(); rss[F["n"], F["when"]] = F["kib"] }
$1 == "read" { kv(); v[F["op"], F["n"], F["rep"] + 0] = F["s"] + 0; by[F["op"], F["n"]] = F["bytes"]; if (F["rep"] + 0 > maxr) maxr = F["rep"] + 0 }
END {
	no = split(ops, O, " "); ns = split(sizes, S, " "); lo = S[1]; hi = S[ns]
	printf "| read (through the CLI) |"
	for (i = 1; i <= ns; i++) printf " %s Backends, s |", S[i]
	printf " %s / %s (paired) | output at %s | under 0.5 s at %s |\n|---|", hi, lo, hi, hi
	for (i = 1; i <= ns + 3; i++) printf "---:|"
	printf "\n"
	for (o = 1; o <= no; o++) {
		op = O[o]; printf "| %s |", op
		for (i = 1; i <= ns; i++) {
			m = 0; for (r = 1; r <= maxr; r++) if ((op, S[i], r) in v) a[++m] = v[op, S[i], r]
			med[i] = m ? median(a, m) : -1
			printf " %s |", m ? sprintf("%.3f", med[i]) : "-"
		}
		m = 0; for (r = 1; r <= maxr; r++) if (((op, lo, r) in v) && ((op, hi, r) in v) && v[op, lo, r] > 0) q[++m] = v[op, hi, r] / v[op, lo, r]
		printf " %s | %s | %s |\n", m ? sprintf("%.1f", median(q, m)) : "-", ((op, hi) in by) ? sprintf("%.1f MB", by[op, hi] / 1e6) : "-",
			med[ns] < 0 ? "-" : (med[ns] < 0.5 ? "yes" : "**no**")
	}
	printf "| daemon RSS at rest, MiB (after the apply / after the reads) |"
	for (i = 1; i <= ns; i++) printf " %.1f / %.1f |", rss[S[i], "apply"] / 1024, rss[S[i], "reads"] / 1024
	printf " | | %s |\n", rss[hi, "reads"] == "" ? "-" : (rss[hi, "reads"] + 0 <= 102400 ? "(<= 100 MiB: yes)" : "(<= 100 MiB: **no**)")
	printf "\nMedians of %d repetition(s), wall time through the CLI (process start to exit, output to /dev/null); the ratio is the median of the per-repetition ratios.\n", maxr
}' "$RAW"
