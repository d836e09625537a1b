#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kbackend demo (`make demo`, as root): builds a private network topology, starts
# the daemon in it, applies examples/, sends traffic through the Gateway's
# frontend address and shows the 90/10 split, UDP, an FQDN Backend resolved through
# the demo's own dnsmasq (and following a DNS change), and the fallback Backend.
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
for t in ip nsenter ss awk dnsmasq; do
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
# Wait (up to 10 s) until the DNS table lists exactly this address for api.demo.internal.
wait_fqdn() {
	local _
	for _ in $(seq 100); do
		[ "$("$KB" get endpoints -o wide 2>/dev/null | awk '/^FQDN/ { p = 1 } p && $1 == "api.demo.internal." { print $3 }')" = "$1" ] &&
			return 0
		sleep 0.1
	done
	return 1
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

section "DNS server (dnsmasq in its own netns; answers only the demo's names)"
printf '203.0.113.2 api.demo.internal\n' >"$TOPO_TMP/dns.hosts"
topo_dns_up 2 demo.internal || fail "dnsmasq did not start"
say "$TOPO_DNS    dnsmasq on $TOPO_DNS_ADDR:53: api.demo.internal -> 203.0.113.2, TTL 2 s" \
	"              no resolv.conf, no upstream; the daemon is started with --dns-server $TOPO_DNS_ADDR:53"

section "Backend servers (kbload serve: each answers with the address it was reached on)"
topo_bg be1 "$LOAD" serve --id @local --duration 120 \
	--tcp 198.51.100.3:8080 --tcp '[2001:db8:1::2]:8080' --udp 198.51.100.2:5353
# app-a's server on its own, so that the failover step can kill it alone.
app_a_serve() {
	topo_bg be1 "$LOAD" serve --id @local --duration 120 --tcp 198.51.100.2:8080
	APP_A_PID=$TOPO_LAST_PID
	topo_wait_listen be1 198.51.100.2:8080
}
app_a_serve || fail "app-a's server did not start"
topo_bg be2 "$LOAD" serve --id @local --duration 120 --tcp 203.0.113.2:8080
{ topo_wait_listen be1 198.51.100.3:8080 && topo_wait_listen be2 203.0.113.2:8080; } || fail "servers did not start"
say "$TOPO_BE1: tcp 198.51.100.2:8080 198.51.100.3:8080 [2001:db8:1::2]:8080, udp 198.51.100.2:5353" \
	"$TOPO_BE2: tcp 203.0.113.2:8080"

section "kbackend daemon (in $TOPO_NODE, attached to the clients' cgroup)"
# The sidecar step's unix socket lives here (examples/sidecar/ names it); made now, removed at the end.
SIDECAR_DIR=/run/kbackend/sidecars
[ -d "$SIDECAR_DIR" ] || { mkdir -p "$SIDECAR_DIR" && SIDECAR_DIR_MADE=1; }
topo_kb_start "$KB" --dns-min-ttl 1s --unix-dir "$SIDECAR_DIR" || fail "the daemon did not start"
cmdline "[node netns] kbackend daemon --cgroup $TOPO_CG --bpffs $TOPO_BPFFS --state-dir $TOPO_TMP/state --socket \$KBACKEND_SOCKET --dns-server $TOPO_DNS_ADDR:53 --dns-min-ttl 1s --unix-dir $SIDECAR_DIR"
kb status || fail "kbackend status failed"

section "Apply examples/ (Gateway eg at 198.18.0.10 and 2001:db8:f::10; Backends, one of them FQDN; routes)"
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

section "FQDN Backend api (api.demo.internal.) through 198.18.0.10:9000 (TCPRoute api)"
say "The daemon asked dnsmasq for api.demo.internal (trailing dot: absolute, no search domain)" \
	"and programmed what it answered. The DNS table is at the end of 'get endpoints -o wide':"
wait_fqdn 203.0.113.2 || fail "api.demo.internal was not resolved"
echo
kb get endpoints -o wide || fail "get endpoints failed"
echo
client ids --tcp 198.18.0.10:9000 --count 200 --concurrency 2 || fail "FQDN traffic failed"
say "=> app-b's host 203.0.113.2 got $(share_of 203.0.113.2:8080)/200: what dnsmasq answered."
echo
say "The record changes: api.demo.internal -> 198.51.100.3 (edit dnsmasq's hosts file, SIGHUP)."
printf '198.51.100.3 api.demo.internal\n' >"$TOPO_DNS_HOSTS"
topo_dns_reload
t0=$(date +%s%N)
wait_fqdn 198.51.100.3 || fail "the DNS change was not picked up"
say "picked up $(( ($(date +%s%N) - t0) / 1000000 )) ms later (TTL 2 s; the daemon re-asks when the TTL runs out):"
"$KB" get endpoints -o wide | awk '/^FQDN/ { p = 1 } p' | sed 's/^/   /'
client ids --tcp 198.18.0.10:9000 --count 200 --concurrency 2 || fail "FQDN traffic failed"
say "=> 198.51.100.3 got $(share_of 198.51.100.3:8080)/200: new connections follow DNS; no restart, no apply."

section "Failover: kill app-a's server; health checks move its traffic to the fallback and back"
cat >"$TOPO_TMP/health.yaml" <<'EOF'
# Active TCP checks every second and passive ejection from the kernel's connect outcomes (sockops).
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata:
  name: app-health
  namespace: default
spec:
  targetRefs:
    - group: gateway.networking.k8s.io
      kind: HTTPRoute
      name: app
  healthCheck:
    active:
      type: TCP
      interval: 1s
      timeout: 500ms
      unhealthyThreshold: 2
      healthyThreshold: 1
    passive:
      consecutive5XxErrors: 3
      baseEjectionTime: 5s
      maxEjectionPercent: 100
EOF
kb apply -f "$TOPO_TMP/health.yaml" >/dev/null || fail "applying the health policy failed"
say "applied BackendTrafficPolicy app-health (active TCP 1s x2, passive 3 failed connects, ejection 5 s)." \
	"Priority 0: app-a 90, app-b 10. Priority 1: app-standby (fallback: true)."
cmdline "kill <app-a's server, 198.51.100.2:8080>"
kill "$APP_A_PID" 2>/dev/null
client ids --tcp 198.18.0.10:80 --count 200 --concurrency 1
say "=> the first connects to app-a were refused; the 3rd refusal in a row ejected it (sockops -> daemon -> map swap)."
client ids --tcp 198.18.0.10:80 --count 400 --concurrency 4 || fail "failover traffic failed"
say "=> app-b $(share_of 203.0.113.2:8080), app-standby $(share_of 198.51.100.3:8080) of 400: priority 0 is 50% healthy," \
	"   so it keeps 50% x 1.4 = 70% and 30% spills to the fallback, as in Envoy."
echo
kb get endpoints || fail "get endpoints failed"
echo
say "app-a's server comes back; once its ejection ends and a probe passes, traffic returns:"
app_a_serve || fail "app-a's server did not restart"
sleep 6
client ids --tcp 198.18.0.10:80 --count 400 --concurrency 4 || fail "traffic failed"
a=$(share_of 198.51.100.2:8080) b=$(share_of 203.0.113.2:8080) c=$(share_of 198.51.100.3:8080)
say "=> app-a ${a:-0}, app-b ${b:-0}, app-standby ${c:-0} of 400: back to 90/10."

section "A unix-socket sidecar through a frontend (examples/sidecar/: 198.18.0.11:7000 -> unix socket)"
topo_bg node "$LOAD" serve --unix "$SIDECAR_DIR/echo.sock" --id sidecar --duration 120
for _ in $(seq 50); do [ -S "$SIDECAR_DIR/echo.sock" ] && break; sleep 0.1; done
say "kbload serve --unix $SIDECAR_DIR/echo.sock (the sidecar: a unix socket, no TCP port at all)"
kb apply -f examples/sidecar/ || fail "apply of the sidecar example failed"
client ids --tcp 198.18.0.11:7000 --count 200 --concurrency 2 || fail "sidecar traffic failed"
say "=> $(share_of sidecar) of 200 answered by the sidecar. connect4 steered each connect to the daemon's" \
	"   bridge listener on 127.0.0.1, which connected to the unix socket and moved the bytes" \
	"   (Envoy Gateway refuses unix endpoints in routes; kbackend allows them under --unix-dir)."
client rr --tcp 198.18.0.11:7000 --duration 1 || fail "sidecar round trips failed"

section "Counters (kbackend stats)"
kb stats || fail "stats failed"
say "CONNECTS counts the connects kbackend steered, per frontend and per endpoint of that frontend," \
	"from per-CPU counters (an ejected endpoint keeps its count). OPEN and OK/REFUSED/TIMEOUT come" \
	"from sockops and are per endpoint address, shared by every frontend that uses it."

section "Unload and clean up"
ours=("${TOPO_PIDS[@]}" ${TOPO_KB_PID:+"$TOPO_KB_PID"})
kb unload || fail "unload failed"
topo_down
trap - EXIT
left=
ip netns list | grep -q "^$TOPO_PREFIX-" && left="$left netns"
[ -e "$TOPO_BPFFS" ] && left="$left pins"
[ -n "$TOPO_CG" ] && [ -d "$TOPO_CG" ] && left="$left cgroup"
# Only this demo's processes (others may run kbload or a daemon on this machine): the ones it
# started, and any whose command line names its pin dir or temp dir (the daemon, dnsmasq).
for pid in "${ours[@]}"; do kill -0 "$pid" 2>/dev/null && left="$left pid:$pid"; done
pgrep -f "kbackend-$TOPO_PREFIX" >/dev/null && left="$left processes"
if [ -n "$left" ]; then
	echo "demo: left behind:$left" >&2
	exit 1
fi
rm -f "$SIDECAR_DIR/echo.sock"
[ -n "${SIDECAR_DIR_MADE:-}" ] && rmdir "$SIDECAR_DIR" 2>/dev/null
say "namespaces, cgroup ${TOPO_CG##*/}, pins ${TOPO_BPFFS}, daemon, dnsmasq and servers: all gone."
say "demo finished in $(($(date +%s) - START)) s"
