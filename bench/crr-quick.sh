#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Quick paired CRR measurement (issue 3): connect-request-response rate to the
# endpoint directly (198.51.100.2:8080) versus through kbackend's frontend
# (198.18.0.10:80 -> the same endpoint), interleaved A B A B ..., at
# concurrency 1 and 8. The client always runs in the node netns inside the
# clients' cgroup, so both paths pass the same programs and the only
# difference is the rewrite. Prints medians, min-max spread, and the median of
# the paired ratios frontend/direct.
#
#   bench/crr-quick.sh            (as root; after `make all`)
#   CRR_SECONDS=3 CRR_REPS=5 CRR_CONC="1 8" bench/crr-quick.sh
#
# Everything it creates is removed at the end, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=$PWD/$OUT/kbackend
LOAD=$PWD/$OUT/kbload
SECS=${CRR_SECONDS:-3}
REPS=${CRR_REPS:-5}
CONCS=${CRR_CONC:-1 8}
DIRECT=198.51.100.2:8080
FRONT=198.18.0.10:80

[ "$(id -u)" = 0 ] || { echo "crr-quick: needs root" >&2; exit 1; }
for b in "$KB" "$LOAD"; do
	[ -x "$b" ] || { echo "crr-quick: $b is missing; run 'make all' first" >&2; exit 1; }
done

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
TOPO_QUIET=1
topo_init kbcrr
trap topo_down EXIT
trap 'echo "crr-quick: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "crr-quick: $*" >&2; exit 1; }

topo_up || fail "could not build the topology"
topo_bg be1 "$LOAD" serve --tcp "$DIRECT" --threads 2 --duration 3600
topo_wait_listen be1 "$DIRECT" || fail "the server did not start"
topo_kb_start "$KB" || fail "the daemon did not start"

# One frontend, one endpoint: the same server on both paths.
cat >"$TOPO_TMP/bench.yaml" <<'EOF'
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata:
  name: bench
  namespace: default
spec:
  endpoints:
    - ip:
        address: 198.51.100.2
        port: 8080
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: app
  namespace: default
spec:
  parentRefs:
    - name: eg
      sectionName: http
  rules:
    - backendRefs:
        - group: gateway.envoyproxy.io
          kind: Backend
          name: bench
EOF
"$KB" apply -f examples/00-envoy-gateway.yaml -f examples/10-gateway.yaml -f "$TOPO_TMP/bench.yaml" >/dev/null ||
	fail "apply failed"
"$KB" get endpoints | grep -q "198.18.0.10:80 .*198.51.100.2:8080" || fail "the frontend is not programmed"

RES=$TOPO_TMP/results
: >"$RES"
# run PATHNAME TARGET CONC REP: one kbload run; appends "path conc rep rate p50 p99 errors" to $RES.
run() {
	local line rate p50 p99 err
	line=$(topo_client "$LOAD" crr --tcp "$2" --duration "$SECS" --concurrency "$3" -q) || fail "kbload failed: $line"
	rate=$(sed -n 's/.* rate=\([^ ]*\).*/\1/p' <<<"$line")
	p50=$(sed -n 's/.* p50_us=\([^ ]*\).*/\1/p' <<<"$line")
	p99=$(sed -n 's/.* p99_us=\([^ ]*\).*/\1/p' <<<"$line")
	err=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$line")
	echo "$1 $3 $4 $rate $p50 $p99 $err" >>"$RES"
	printf '  conc %-2s rep %d %-8s %10.1f conn/s  p50 %7.1f us  p99 %7.1f us  errors %s\n' "$3" "$4" "$1" "$rate" "$p50" "$p99" "$err"
}

echo "CRR (connect, 64 B request, 64 B reply, close), ${SECS}s a run, $REPS pairs, client in the node netns + cgroup"
echo "  direct   = $DIRECT      frontend = $FRONT (kbackend rewrite to the same endpoint)"
# Warm up both paths (ARP, neighbour entries, page faults) without recording.
topo_client "$LOAD" crr --tcp "$DIRECT" --duration 0.5 -q >/dev/null
topo_client "$LOAD" crr --tcp "$FRONT" --duration 0.5 -q >/dev/null
for c in $CONCS; do
	for r in $(seq "$REPS"); do
		# Alternate which path goes first, so drift does not favour one side.
		if [ $((r % 2)) = 1 ]; then
			run direct "$DIRECT" "$c" "$r"
			run frontend "$FRONT" "$c" "$r"
		else
			run frontend "$FRONT" "$c" "$r"
			run direct "$DIRECT" "$c" "$r"
		fi
	done
done

echo
awk -v concs="$CONCS" '
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function minv(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] < m) m = a[i]; return m }
function maxv(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] > m) m = a[i]; return m }
{ rate[$1, $2, $3] = $4; p50[$1, $2, $3] = $5; p99[$1, $2, $3] = $6; errs[$1, $2] += $7; reps[$2] = ($3 > reps[$2] ? $3 : reps[$2]) }
END {
	printf "%-5s %-9s %12s %21s %9s %9s %7s\n", "CONC", "PATH", "MEDIAN c/s", "MIN-MAX c/s", "p50 us", "p99 us", "ERRORS"
	nc = split(concs, cs, " ")
	for (k = 1; k <= nc; k++) {
		c = cs[k]; n = reps[c]
		for (pi = 1; pi <= 2; pi++) {
			p = pi == 1 ? "direct" : "frontend"
			for (i = 1; i <= n; i++) { v[i] = rate[p, c, i]; l[i] = p50[p, c, i]; h[i] = p99[p, c, i] }
			lo = minv(v, n); hi = maxv(v, n)
			printf "%-5s %-9s %12.1f %10.1f-%-10.1f %9.1f %9.1f %7d\n", c, p, median(v, n), lo, hi, median(l, n), median(h, n), errs[p, c]
		}
		for (i = 1; i <= n; i++) q[i] = rate["direct", c, i] > 0 ? rate["frontend", c, i] / rate["direct", c, i] : 0
		lo = minv(q, n); hi = maxv(q, n)
		printf "%-5s %-9s %12.3f %10.3f-%-10.3f   (paired frontend/direct, %d pairs)\n", c, "ratio", median(q, n), lo, hi, n
	}
}' "$RES"
