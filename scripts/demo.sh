#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kbackend demo (`make demo`, as root): builds a private network topology, starts
# the daemon in it, applies examples/, sends traffic through the Gateway's
# frontend address and shows the 90/10 split, UDP, and the fallback Backend.
# Everything it creates (namespaces, cgroup, pins, processes, temp files) is
# removed at the end, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=$PWD/$OUT/kbackend
LOAD=$PWD/$OUT/kbload
N=${DEMO_CONNECTS:-1000}

if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (network namespaces, cgroups and BPF)" >&2
	exit 1
fi
for b in "$KB" "$LOAD"; do
	[ -x "$b" ] || { echo "demo: $b is missing; run 'make all' first" >&2; exit 1; }
done
for t in ip nsenter ss awk; do
	command -v "$t" >/dev/null || { echo "demo: $t is missing; run 'make deps'" >&2; exit 1; }
done

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
TOPO_QUIET=1
topo_init kbdemo
trap topo_down EXIT
trap 'echo; echo "demo: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM

step=0
B='' D='' R=''
if [ -t 1 ]; then B=$'\033[1m' D=$'\033[2m' R=$'\033[0m'; fi
section() {
	step=$((step + 1))
	printf '\n%s== %d. %s ==%s\n' "$B" "$step" "$1" "$R"
}
say() { printf '   %s\n' "$@"; }
cmdline() { printf '%s$ %s%s\n' "$D" "$*" "$R"; }
# Run kbackend, echoing the command as a user would type it.
kb() {
	cmdline "kbackend $*"
	"$KB" "$@"
}
fail() {
	echo "demo: $*" >&2
	exit 1
}
# kbload in the node netns, inside the clients' cgroup, printed as the user would type it.
client() {
	cmdline "[node netns, cgroup ${TOPO_CG##*/}] kbload $*"
	topo_client "$LOAD" "$@" >"$TOPO_TMP/kbload.out"
	local rc=$?
	sed -n 's/^# \{0,1\}/   /p' "$TOPO_TMP/kbload.out"
	return $rc
}
# Connects that reached one id, from the machine line of the last kbload run.
share_of() {
	awk -v id="id:$1=" '/^mode=/ { for (i = 1; i <= NF; i++) if (index($i, id) == 1) print substr($i, length(id) + 1) }' \
		"$TOPO_TMP/kbload.out"
}

START=$(date +%s)

section "Topology (network namespaces; nothing leaves this machine)"
topo_up || fail "could not build the topology"
say "$TOPO_NODE   clients + kbackend daemon: $(ip -n "$TOPO_NODE" -o addr show scope global | awk '{ printf "%s ", $4 }')" \
	"              routes: $(ip -n "$TOPO_NODE" route show | awk '{ printf "%s ", $1 }')$(ip -n "$TOPO_NODE" -6 route show | awk '$1 !~ /^fe80/ { printf "%s ", $1 }')(no default route)" \
	"$TOPO_BE1    app-a 198.51.100.2:8080, app-standby 198.51.100.3:8080, udp-echo 198.51.100.2:5353" \
	"$TOPO_BE2    app-b 203.0.113.2:8080" \
	"cgroup        $TOPO_CG (clients run here; kbackend attaches only here)"

section "Backend servers (kbload serve: each answers with the address it was reached on)"
topo_bg be1 "$LOAD" serve --id @local --duration 120 \
	--tcp 198.51.100.2:8080 --tcp 198.51.100.3:8080 --tcp '[2001:db8:1::2]:8080' --udp 198.51.100.2:5353
topo_bg be2 "$LOAD" serve --id @local --duration 120 --tcp 203.0.113.2:8080
{ topo_wait_listen be1 198.51.100.3:8080 && topo_wait_listen be2 203.0.113.2:8080; } || fail "servers did not start"
say "$TOPO_BE1: tcp 198.51.100.2:8080 198.51.100.3:8080 [2001:db8:1::2]:8080, udp 198.51.100.2:5353" \
	"$TOPO_BE2: tcp 203.0.113.2:8080"

section "kbackend daemon (in $TOPO_NODE, attached to the clients' cgroup)"
topo_kb_start "$KB" || fail "the daemon did not start"
cmdline "[node netns] kbackend daemon --cgroup $TOPO_CG --bpffs $TOPO_BPFFS --state-dir $TOPO_TMP/state --socket \$KBACKEND_SOCKET"
kb status || fail "kbackend status failed"

section "Apply examples/ (Gateway eg at 198.18.0.10 and 2001:db8:f::10; Backends; routes)"
kb apply -f examples/ || fail "apply failed"
echo
kb get endpoints || fail "get endpoints failed"
echo
kb describe backend app-a || fail "describe failed"

section "Without kbackend: the frontend address has no route"
say "A client in the node netns but outside the cgroup connects to 198.18.0.10:80:"
cmdline "[node netns, no cgroup] kbload ids --tcp 198.18.0.10:80 --count 1"
topo_in node "$LOAD" ids --tcp 198.18.0.10:80 --count 1 --timeout-ms 500 | sed -n 's/^# last error: /   -> /p'

section "$N TCP connects to 198.18.0.10:80 (HTTPRoute app: app-a 90, app-b 10)"
client ids --tcp 198.18.0.10:80 --count "$N" --concurrency 4 || fail "traffic failed"
a=$(share_of 198.51.100.2:8080) b=$(share_of 203.0.113.2:8080)
say "=> app-a (198.51.100.2) got ${a:-0}, app-b (203.0.113.2) got ${b:-0} of $N: expected about 90/10." \
	"   Each connect() was rewritten in the kernel: no proxy, no NAT, the server saw the client directly."
echo
say "The same through the IPv6 frontend (the Backends are IPv4; the socket is dual-stack):"
client ids --tcp '[2001:db8:f::10]:80' --count 100 --concurrency 2 || fail "IPv6 frontend traffic failed"

section "UDP through 198.18.0.10:5353 (UDPRoute echo-udp -> udp-echo 198.51.100.2:5353)"
client ids --udp 198.18.0.10:5353 --count 3 || fail "UDP failed"

section "Fallback: the priority rule (Backend app-standby has fallback: true)"
say "app-standby is priority 1: it gets 0% while a priority-0 Backend has endpoints." \
	"kbackend has no health checks yet, so an endpoint cannot go unhealthy on its own; the"
say "compiler also refuses a Backend with zero endpoints. So we show the rule the other way:" \
	"apply a variant of HTTPRoute app whose primary Backends (app-a, app-b) are removed."
cat >"$TOPO_TMP/route-fallback-only.yaml" <<'EOF'
# HTTPRoute app with its priority-0 Backends removed: only the fallback Backend remains.
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
          name: app-standby
EOF
echo
say "What the compiler makes of it (offline dry run of examples/ with this route; port 80 rows):"
cmdline "kbackend apply --dry-run -f examples/{00,10,20}-*.yaml -f route-fallback-only.yaml"
KBACKEND_SOCKET=$TOPO_TMP/no-daemon "$KB" apply --dry-run -f examples/00-envoy-gateway.yaml -f examples/10-gateway.yaml \
	-f examples/20-backends.yaml -f "$TOPO_TMP/route-fallback-only.yaml" |
	awk '/^FRONTEND/ { p = 1 } p && (/^FRONTEND/ || /:80 /)'
echo
kb apply -f "$TOPO_TMP/route-fallback-only.yaml" >/dev/null || fail "applying the fallback route failed"
say "applied."
client ids --tcp 198.18.0.10:80 --count 200 --concurrency 4 || fail "fallback traffic failed"
say "=> all traffic moved to app-standby (198.51.100.3): $(share_of 198.51.100.3:8080)/200." \
	"   Health-driven failover (priority 0 losing health -> traffic spills to priority 1 with Envoy's" \
	"   1.4 overprovisioning factor) arrives with the health-check issue; the priority math is the same."
echo
say "Restore the original route:"
kb apply -f examples/30-routes.yaml >/dev/null || fail "restoring the route failed"
client ids --tcp 198.18.0.10:80 --count 200 --concurrency 4 || fail "traffic failed"

section "Counters (kbackend stats)"
kb stats || fail "stats failed"
say "Frontend counters count every connect since the daemon started. Endpoint counters are kept" \
	"per endpoint address (shared by the IPv4 and IPv6 frontends) and restart when an endpoint" \
	"leaves the slot table, as app-a, app-b and app-standby did around the fallback step."

section "Unload and clean up"
kb unload || fail "unload failed"
topo_down
trap - EXIT
left=
ip netns list | grep -q "^$TOPO_PREFIX-" && left="$left netns"
[ -e "$TOPO_BPFFS" ] && left="$left pins"
[ -n "$TOPO_CG" ] && [ -d "$TOPO_CG" ] && left="$left cgroup"
pgrep -f "$LOAD|$KB daemon" >/dev/null && left="$left processes"
if [ -n "$left" ]; then
	echo "demo: left behind:$left" >&2
	exit 1
fi
say "namespaces, cgroup ${TOPO_CG##*/}, pins ${TOPO_BPFFS}, daemon and servers: all gone."
say "demo finished in $(($(date +%s) - START)) s"
