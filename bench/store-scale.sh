#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Persistence cost per apply (issue 13): what one small change costs the state
# store at 100 and at 10,000 Backends, for this build and for one from before
# the log (format 2: every apply rewrote and fsynced the whole applied.yaml).
#
# Per binary, size and repetition (interleaved: old, new, old, new ...), on a
# fresh daemon with an empty state dir: apply bench/apply-scale.sh's manifest
# (bench/scale-gen.sh), then ONES applies of one Backend (be-0, its first
# endpoint alternating between two addresses). Per one-Backend apply:
#   wchar      bytes the daemon wrote (/proc/PID/io wchar: the state files, and
#              its reply to the CLI, the same small reply for both builds)
#   daemon_ms  the daemon's own time for it ("programmed in N ms" in its log:
#              parse, validate, compile, program, persist)
#   wall_ms    `kbackend apply -f` as the user sees it
# and the size of the state directory afterwards.
#
#   KBACKEND_OLD=/path/to/old/build/kbackend bench/store-scale.sh   (as root, after `make all`)
#   STORE_SIZES="100 10000" STORE_REPS=3 STORE_ONES=10 STORE_RAW=FILE KBACKEND_OLD=... bench/store-scale.sh
#
# Without KBACKEND_OLD only this build is measured. Prints a Markdown table on
# stdout (progress on stderr). Everything it makes is removed, also on failure.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
NEW=${KBACKEND:-$PWD/$OUT/kbackend}
OLD=${KBACKEND_OLD:-}
SIZES=${STORE_SIZES:-100 10000}
REPS=${STORE_REPS:-3}
ONES=${STORE_ONES:-10}
RAW=${STORE_RAW:-}

[ "$(id -u)" = 0 ] || { echo "store-scale: needs root" >&2; exit 1; }
[ -x "$NEW" ] || { echo "store-scale: $NEW is missing; run 'make all' first" >&2; exit 1; }
[ -z "$OLD" ] || [ -x "$OLD" ] || { echo "store-scale: KBACKEND_OLD=$OLD is not executable" >&2; exit 1; }

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck source=bench/scale-gen.sh
. bench/scale-gen.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init kbstore
trap topo_down EXIT
trap 'echo "store-scale: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "store-scale: $*" >&2; exit 1; }
log() { echo "  [store] $*" >&2; }

topo_up || fail "could not build the topology"
[ -n "$RAW" ] || RAW=$TOPO_TMP/raw
: >"$RAW"

wchar() { sed -n 's/^wchar: //p' /proc/"$1"/io; }
now() { echo "$EPOCHREALTIME"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
# The daemon's time for the last change it logged.
daemon_ms() { sed -n 's/.* programmed in \([0-9]*\) ms$/\1/p' "$TOPO_TMP/daemon.log" | tail -1; }

# one ADDR > FILE: Backend be-0 of the manifest with ADDR as its first endpoint.
one() {
	gen 1 | awk 'BEGIN { RS = "---\n" } { d = $0 } END { printf "%s", d }' | sed "0,/address: .*/s//address: $1/"
}
one 198.51.100.200 >"$TOPO_TMP/one-a.yaml"
one 198.51.100.201 >"$TOPO_TMP/one-b.yaml"
for n in $SIZES; do
	gen "$n" >"$TOPO_TMP/scale-$n.yaml" || fail "could not generate $n Backends"
done

bins="new"
[ -z "$OLD" ] || bins="old new"
for r in $(seq "$REPS"); do
	for n in $SIZES; do
		for b in $bins; do
			kb=$NEW
			[ "$b" = new ] || kb=$OLD
			topo_kb_stop
			rm -rf "$TOPO_TMP/state"
			topo_kb_start "$kb" --enable-backend || fail "the $b daemon did not start"
			pid=$TOPO_KB_PID
			"$kb" apply -f "$TOPO_TMP/scale-$n.yaml" >/dev/null 2>&1 || fail "$b: apply of $n Backends failed"
			for i in $(seq "$ONES"); do
				f=$TOPO_TMP/one-a.yaml
				[ $((i % 2)) = 0 ] || f=$TOPO_TMP/one-b.yaml
				w0=$(wchar "$pid")
				t0=$(now)
				"$kb" apply -f "$f" >/dev/null 2>&1 || fail "$b: one-Backend apply at $n failed"
				t1=$(now)
				w1=$(wchar "$pid")
				echo "store bin=$b n=$n rep=$r i=$i wchar=$((w1 - w0)) daemon_ms=$(daemon_ms) wall_ms=$(ms "$t0" "$t1")" >>"$RAW"
			done
			sz=$(du -sb "$TOPO_TMP/state" | cut -f1)
			echo "dir bin=$b n=$n rep=$r bytes=$sz" >>"$RAW"
			log "$b n=$n rep=$r: $(tail -2 "$RAW" | head -1)"
		done
	done
done
topo_kb_stop

awk '
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
{ kv(); k = F["bin"] SUBSEP F["n"]; if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }
$1 == "store" { c = ++cnt[k]; W[k, c] = F["wchar"] + 0; D[k, c] = F["daemon_ms"] + 0; T[k, c] = F["wall_ms"] + 0 }
$1 == "dir" { c = ++dcnt[k]; S[k, c] = F["bytes"] + 0 }
END {
	printf "| build | Backends | bytes written per one-Backend apply | daemon ms per apply | CLI wall ms | state dir after |\n"
	printf "|---|---:|---:|---:|---:|---:|\n"
	for (i = 1; i <= nk; i++) {
		k = order[i]; split(k, p, SUBSEP); c = cnt[k]
		for (j = 1; j <= c; j++) v[j] = W[k, j]; w = median(v, c)
		for (j = 1; j <= c; j++) v[j] = D[k, j]; d = median(v, c)
		for (j = 1; j <= c; j++) v[j] = T[k, j]; t = median(v, c)
		for (j = 1; j <= dcnt[k]; j++) v[j] = S[k, j]; s = median(v, dcnt[k])
		printf "| %s | %d | %d | %.0f | %.1f | %.2f MB |\n", p[1] == "old" ? "before (format 2, whole file)" : "snapshot + log", p[2], w, d, t, s / 1e6
	}
	printf "\nMedians over %d one-Backend applies per build and size (%d per fresh daemon).\n", c, '"$ONES"'
}' "$RAW"
