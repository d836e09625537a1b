#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Control-plane scale (issue 4): how long `kbackend apply` takes for 1,000 and
# 10,000 Backends of 10 endpoints each, and what the daemon and its pinned BPF
# maps hold in memory at those sizes.
#
# Every Backend gets a frontend of its own, as it would in a cluster: the
# manifest is ceil(N/64) Gateways (one 198.19.x.y address each, 64 TCP
# listeners on ports 10000-10063, the Gateway API maximum), N TCPRoutes (one
# per listener) and N Backends with 10 endpoints each (5 in 198.51.100.0/24,
# 5 in 203.0.113.0/24, port 8080; addresses repeat across Backends). That is
# N frontends and 10*N endpoint slots, from 2N + N/64 objects in one file.
#
# Per size and repetition, on a fresh daemon with an empty state dir:
#   apply_s    wall time of `kbackend apply -f FILE` (CLI read + daemon parse,
#              validate, compile, program the maps, persist the state, reply)
#   reapply_s  the same apply again (nothing changes)
#   parse_ms   the daemon's parse stage of the first apply (its "applied:" log line)
#   rss/hwm    VmRSS / VmHWM of the daemon after the applies (/proc/PID/status),
#              and RSS at rest per Backend (with its route), in KiB
#   memlock    sum of memlock over the maps the daemon holds (/proc/PID/fdinfo)
# and once per size the offline `apply --dry-run` (CLI only, no daemon).
#
#   bench/apply-scale.sh                       (as root, after `make all`)
#   SCALE_SIZES="1000 10000" SCALE_REPS=3 SCALE_RAW=FILE bench/apply-scale.sh
#
# Prints a Markdown table on stdout (progress on stderr); SCALE_RAW gets one
# key=value line per run. Everything it makes is removed, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
SIZES=${SCALE_SIZES:-1000 10000}
REPS=${SCALE_REPS:-3}
RAW=${SCALE_RAW:-}

[ "$(id -u)" = 0 ] || { echo "apply-scale: needs root" >&2; exit 1; }
[ -x "$KB" ] || { echo "apply-scale: $KB is missing; run 'make all' first" >&2; exit 1; }

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init kbscale
trap topo_down EXIT
trap 'echo "apply-scale: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "apply-scale: $*" >&2; exit 1; }
log() { echo "  [scale] $*" >&2; }

topo_up || fail "could not build the topology"
[ -n "$RAW" ] || RAW=$TOPO_TMP/raw
: >"$RAW"

# gen N > FILE: the manifest described above (bench/scale-gen.awk, shared with the other scale benches).
# shellcheck source=bench/scale-gen.sh
. bench/scale-gen.sh

kb_kib() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" /proc/"$1"/status; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

fresh_daemon() {
	topo_kb_stop
	rm -rf "$TOPO_TMP/state"
	# 10,000 Backends are 10,000 frontends and 100,000 endpoint pairs: over the defaults (map-memory.sh).
	topo_kb_start "$KB" --enable-backend --max-frontends 131072 --max-endpoints 131072 || fail "the daemon did not start"
	[ "$(cat /proc/"$TOPO_KB_PID"/comm 2>/dev/null)" = kbackend ] || fail "pid $TOPO_KB_PID is not the daemon"
}

for n in $SIZES; do
	gen "$n" >"$TOPO_TMP/scale-$n.yaml" || fail "could not generate $n Backends"
	t0=$(now)
	"$KB" apply --dry-run --enable-backend -f "$TOPO_TMP/scale-$n.yaml" >/dev/null 2>&1 || fail "dry-run of $n Backends failed"
	t1=$(now)
	echo "scale kind=dryrun n=$n dryrun_s=$(elapsed "$t0" "$t1") bytes=$(stat -c %s "$TOPO_TMP/scale-$n.yaml")" >>"$RAW"
done

for r in $(seq "$REPS"); do
	for n in $SIZES; do
		f=$TOPO_TMP/scale-$n.yaml
		fresh_daemon
		pid=$TOPO_KB_PID
		rss0=$(kb_kib "$pid" VmRSS)
		ml0=$(topo_maps_memlock "$pid")
		t0=$(now)
		"$KB" apply -f "$f" >"$TOPO_TMP/apply.out" 2>&1 || { sed 's/^/    /' "$TOPO_TMP/apply.out" | tail -5 >&2; fail "apply of $n Backends failed"; }
		t1=$(now)
		parse=$(sed -n 's/.*applied:.*(parse \([0-9]*\),.*/\1/p' "$TOPO_TMP/daemon.log" | tail -1)
		"$KB" apply -f "$f" >/dev/null 2>&1 || fail "re-apply of $n Backends failed"
		t2=$(now)
		fe=$("$KB" get frontends 2>/dev/null | grep -c '^198\.19\.')
		[ "$fe" = "$n" ] || fail "$n Backends gave $fe programmed frontends, not $n"
		rss=$(kb_kib "$pid" VmRSS)
		hwm=$(kb_kib "$pid" VmHWM)
		ml=$(topo_maps_memlock "$pid")
		line="scale kind=apply n=$n rep=$r apply_s=$(elapsed "$t0" "$t1") reapply_s=$(elapsed "$t1" "$t2") frontends=$fe"
		line="$line parse_ms=${parse:-0} rss0_kib=$rss0 rss_kib=$rss hwm_kib=$hwm memlock0=$ml0 memlock=$ml"
		echo "$line" >>"$RAW"
		log "$line"
	done
done
topo_kb_stop

awk '
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
{ kv() }
F["kind"] == "dryrun" { dry[F["n"]] = F["dryrun_s"]; bytes[F["n"]] = F["bytes"] }
F["kind"] == "apply" {
	n = F["n"]; if (!(n in cnt)) order[++ns] = n
	k = ++cnt[n]
	ap[n, k] = F["apply_s"] + 0; re[n, k] = F["reapply_s"] + 0; rss[n, k] = F["rss_kib"] + 0; hwm[n, k] = F["hwm_kib"] + 0
	rss0[n, k] = F["rss0_kib"] + 0; ml[n] = F["memlock"] + 0; ml0[n] = F["memlock0"] + 0; pm[n, k] = F["parse_ms"] + 0
}
END {
	printf "| Backends (10 endpoints each) | frontends / objects | manifest | apply s, median (min-max) | parse ms (daemon) | re-apply s | dry-run s (CLI only) | daemon RSS idle -> after | RSS per Backend | VmHWM | maps memlock |\n"
	printf "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
	for (i = 1; i <= ns; i++) {
		n = order[i]; c = cnt[n]
		lo = 1e9; hi = 0
		for (k = 1; k <= c; k++) { v[k] = ap[n, k]; if (v[k] < lo) lo = v[k]; if (v[k] > hi) hi = v[k] }
		a = median(v, c)
		for (k = 1; k <= c; k++) v[k] = re[n, k]; b = median(v, c)
		for (k = 1; k <= c; k++) v[k] = rss0[n, k]; r0 = median(v, c)
		for (k = 1; k <= c; k++) v[k] = rss[n, k]; r1 = median(v, c)
		for (k = 1; k <= c; k++) v[k] = hwm[n, k]; h = median(v, c)
		for (k = 1; k <= c; k++) v[k] = pm[n, k]; p = median(v, c)
		printf "| %d | %d / %d | %.1f MB | %.3f (%.3f-%.3f) | %d | %.3f | %s | %.1f -> %.1f MiB | %.1f KiB | %.1f MiB | %.1f MiB |\n",
			n, n, 2 * n + int((n + 63) / 64), bytes[n] / 1e6, a, lo, hi, p, b, (n in dry) ? dry[n] : "-",
			r0 / 1024, r1 / 1024, r1 / n, h / 1024, ml[n] / 1048576
	}
	printf "\n%d repetition(s) per size, each on a fresh daemon with an empty state dir. ", c
	same = 1; for (i = 1; i <= ns; i++) if (ml[order[i]] != ml0[order[i]]) same = 0
	if (same)
		printf "Maps memlock does not change with the apply (%.1f MiB on an empty daemon): the maps are sized for their maximum when the daemon loads.\n", ml0[order[1]] / 1048576
	else
		printf "Maps memlock on an empty daemon: %.1f MiB.\n", ml0[order[1]] / 1048576
}' "$RAW"
