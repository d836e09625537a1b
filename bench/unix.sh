#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The unix-sidecar paths (issue 6): TCP -> one unix echo server through kbackend's bridge
# (both byte paths), HAProxy and socat, against a direct unix connection and TCP loopback.
#
#   bench/unix.sh [--quick]        (root; bench/run.sh may call it; BENCH_REPS, BENCH_SECS)
#
# One node netns (lo only, no default route) holds everything. One echo server
# (kbload serve) listens on <tmp>/sc/echo.sock and on 127.0.0.1:18090 (the TCP
# reference). Paths, all ending at that server:
#   unix-direct   the client connects to the unix socket itself (the floor for any bridge)
#   tcp-loopback  127.0.0.1:18090, no bridge: the ceiling for any TCP->unix bridge
#   kb-copy       198.18.0.30:80 from cgroup A: connect4 -> bridge listener -> copy -> unix
#   kb-splice     198.18.0.30:80 from cgroup B, a second daemon with --bridge-mode splice
#   haproxy       HAProxy 2.x, mode tcp, 127.0.0.1:18081 -> unix@echo.sock
#   socat         socat TCP-LISTEN:18082,fork -> UNIX-CONNECT:echo.sock
# Metrics (kbload, concurrency 1): crr, rr (64 B), stream (64 KiB writes, Gbit/s echoed).
# Every rep runs every path in a rotated order. Reported: median per path, and the
# median of per-rep ratios against unix-direct and against HAProxy.
# The client is pinned to CPU 0 and the echo server to CPU 1 (as bench/run.sh does);
# the bridges and proxies are not pinned. Everything made is removed on exit.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
LOAD=${KBLOAD:-$PWD/$OUT/kbload}
if [ "${1:-}" = --quick ]; then REPS=${BENCH_REPS:-3}; SECS=${BENCH_SECS:-0.5}
else REPS=${BENCH_REPS:-5}; SECS=${BENCH_SECS:-2}; fi
[ "$(id -u)" = 0 ] || { echo "bench/unix.sh: needs root" >&2; exit 2; }
for b in "$KB" "$LOAD"; do [ -x "$b" ] || { echo "bench/unix.sh: $b is not built" >&2; exit 2; }; done

TAG=kbux$$
NS=$TAG-node
TMP=$(mktemp -d /tmp/kbench-unix.XXXXXX)
SC=$TMP/sc
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
MOUNTED_CG=
if [ -z "$CG2" ]; then CG2=$TMP/cg2; mkdir -p "$CG2"; mount -t cgroup2 none "$CG2" && MOUNTED_CG=1; fi
CGA=$CG2/$TAG-a CGB=$CG2/$TAG-b
PINA=/sys/fs/bpf/$TAG-a PINB=/sys/fs/bpf/$TAG-b
PIDS=()
PIN_CLIENT='' PIN_SERVER=''
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN_CLIENT="taskset -c 0" PIN_SERVER="taskset -c 1"; fi

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for pin in "$PINA" "$PINB"; do
		[ -d "$pin" ] && KBACKEND_SOCKET=$TMP/none.sock "$KB" unload --bpffs "$pin" >/dev/null 2>&1
	done
	for cg in "$CGA" "$CGB"; do
		[ -d "$cg" ] && { while read -r p; do echo "$p" > "$CG2/cgroup.procs"; done < "$cg/cgroup.procs"; rmdir "$cg"; }
	done 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	[ -n "$MOUNTED_CG" ] && umount "$CG2"
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
ip netns add "$NS" && ip -n "$NS" link set lo up || exit 1
if ip -n "$NS" route show default | grep -q .; then echo "bench/unix.sh: the node netns has a default route" >&2; exit 1; fi
mkdir -p "$SC" "$CGA" "$CGB"
in_ns() { nsenter --net=/var/run/netns/"$NS" "$@"; }
# Start a long-lived process in the node netns; nsenter execs it, so $! is the process to kill.
bg_ns() { local log=$1; shift; nsenter --net=/var/run/netns/"$NS" "$@" > "$log" 2>&1 & PIDS+=($!); }
# Run a client in cgroup $1 (or none), in the node netns, pinned.
client() {
	local cg=$1; shift
	in_ns sh -c '[ -n "$1" ] && echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" $PIN_CLIENT "$LOAD" "$@"
}

bg_ns "$TMP/serve.log" $PIN_SERVER "$LOAD" serve --unix "$SC/echo.sock" --tcp 127.0.0.1:18090 --threads 1
cat > "$TMP/cfg.yaml" <<EOF
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyGateway
metadata: {name: envoy-gateway, namespace: envoy-gateway-system}
extensionApis: {enableBackend: true}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: eg, namespace: default}
spec:
  gatewayClassName: eg
  addresses: [{type: IPAddress, value: 198.18.0.30}]
  listeners: [{name: sidecar, protocol: TCP, port: 80}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: sidecar, namespace: default}
spec:
  endpoints: [{unix: {path: $SC/echo.sock}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: sidecar, namespace: default}
spec:
  parentRefs: [{name: eg, sectionName: sidecar}]
  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: sidecar}]}]
EOF
start_daemon() {	# name cgroup pin mode [extra]
	local n=$1 cg=$2 pin=$3 mode=$4; shift 4
	bg_ns "$TMP/daemon-$n.log" "$KB" daemon --cgroup "$cg" --bpffs "$pin" --state-dir "$TMP/state-$n" \
		--socket "$TMP/$n.sock" --unix-dir "$SC" --bridge-mode "$mode" "$@"
	for _ in $(seq 100); do KBACKEND_SOCKET=$TMP/$n.sock "$KB" status >/dev/null 2>&1 && break; sleep 0.1; done
	KBACKEND_SOCKET=$TMP/$n.sock "$KB" apply -f "$TMP/cfg.yaml" >/dev/null || { cat "$TMP/daemon-$n.log" >&2; exit 1; }
}
start_daemon a "$CGA" "$PINA" copy
start_daemon b "$CGB" "$PINB" splice --no-inbound
cat > "$TMP/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen sidecar
    bind 127.0.0.1:18081
    server s1 unix@$SC/echo.sock
EOF
HAVE_HAPROXY= HAVE_SOCAT=
if command -v haproxy >/dev/null; then
	bg_ns "$TMP/haproxy.log" haproxy -f "$TMP/haproxy.cfg" -db; HAVE_HAPROXY=1
fi
if command -v socat >/dev/null; then
	bg_ns "$TMP/socat.log" socat TCP-LISTEN:18082,bind=127.0.0.1,fork,reuseaddr,backlog=4096 UNIX-CONNECT:"$SC/echo.sock"
	HAVE_SOCAT=1
fi
sleep 0.5

PATHS="unix-direct tcp-loopback kb-copy kb-splice"
[ -n "$HAVE_HAPROXY" ] && PATHS="$PATHS haproxy"
[ -n "$HAVE_SOCAT" ] && PATHS="$PATHS socat"
target() {
	case $1 in
	unix-direct) echo "-- --unix $SC/echo.sock" ;;
	tcp-loopback) echo "-- --tcp 127.0.0.1:18090" ;;
	kb-copy) echo "$CGA --tcp 198.18.0.30:80" ;;
	kb-splice) echo "$CGB --tcp 198.18.0.30:80" ;;
	haproxy) echo "-- --tcp 127.0.0.1:18081" ;;
	socat) echo "-- --tcp 127.0.0.1:18082" ;;
	esac
}
RAW=$TMP/raw.txt
: > "$RAW"
echo "bench/unix.sh: $REPS reps x ${SECS}s, paths: $PATHS" >&2
for rep in $(seq "$REPS"); do
	set -- $PATHS
	for _ in $(seq $(( (rep - 1) % $# ))); do set -- "$@" "$1"; shift; done	# rotate the order
	for p in "$@"; do
		read -r cg args <<< "$(target "$p")"
		[ "$cg" = -- ] && cg=
		for m in crr rr stream; do
			line=$(client "$cg" $m $args --duration "$SECS" -q 2>/dev/null)
			v=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p; s/.* gbps=\([0-9.]*\).*/\1/p' <<< "$line")
			echo "$rep $p $m ${v:-0}" >> "$RAW"
		done
	done
	echo "  rep $rep done" >&2
done

# Medians and paired ratios.
python3 - "$RAW" "$PATHS" <<'EOF'
import sys, statistics as st
raw, paths = sys.argv[1], sys.argv[2].split()
d = {}
for line in open(raw):
    rep, p, m, v = line.split()
    d.setdefault((p, m), {})[int(rep)] = float(v)
def med(p, m):
    v = list(d.get((p, m), {}).values())
    return st.median(v) if v else 0
def ratio(p, q, m):
    a, b = d.get((p, m), {}), d.get((q, m), {})
    r = [a[k] / b[k] for k in a if k in b and b[k] > 0]
    return st.median(r) if r else float('nan')
unit = {'crr': 'conn/s', 'rr': 'req/s', 'stream': 'Gbit/s'}
print("| path | CRR (conn/s) | RR (req/s) | stream (Gbit/s) | CRR / unix | RR / unix | stream / unix | CRR / HAProxy | RR / HAProxy | stream / HAProxy |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in paths:
    cells = [f"{med(p,'crr'):.0f}", f"{med(p,'rr'):.0f}", f"{med(p,'stream'):.2f}"]
    cells += [f"{ratio(p,'unix-direct',m):.2f}" for m in ('crr', 'rr', 'stream')]
    cells += [f"{ratio(p,'haproxy',m):.2f}" if 'haproxy' in paths else '-' for m in ('crr', 'rr', 'stream')]
    print(f"| {p} | " + " | ".join(cells) + " |")
EOF
