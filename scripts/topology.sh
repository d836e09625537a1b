# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2046,SC2016  # TOPO_LAST_* are for callers; pid lists split on purpose; $$ is for sh
#
# Sourceable helpers that build and tear down kbackend's demo/bench topology
# (DESIGN section 8, the network rule):
#
#   <prefix>-node   clients + daemon. NO default route: only the two connected
#                   /24s (and /64s) below, so a mistake never leaves the machine.
#     <prefix>-n1 198.51.100.1/24 2001:db8:1::1/64  ==veth==  <prefix>-be1
#                                     <prefix>-b1 198.51.100.2/24, 198.51.100.3/24,
#                                                 2001:db8:1::2/64, 2001:db8:1::3/64
#     <prefix>-n2 203.0.113.1/24  2001:db8:1:2::1/64 ==veth== <prefix>-be2
#                                     <prefix>-b2 203.0.113.2/24, 2001:db8:1:2::2/64
#
#   Frontends (198.18.0.0/15, 2001:db8:f::/48) have no route anywhere: a connect
#   to one only works when kbackend's cgroup programs rewrite it.
#
#   Optional (topo_dns_up): a DNS server, a real dnsmasq, in its own netns:
#     <prefix>-n3 203.0.113.54/30  ==veth==  <prefix>-dns  <prefix>-d 203.0.113.53/30
#   The /30 is more specific than the node's 203.0.113.0/24 on <prefix>-n2, so
#   only 203.0.113.53 goes that way. dnsmasq answers from a hosts file and
#   nothing else (no resolv.conf, no /etc/hosts, no upstream): pass
#   --dns-server 203.0.113.53 to the daemon, never the machine's resolver.
#
#   A cgroup2 directory <cgroup2>/<prefix>-clients holds the clients; kbackend
#   attaches there and nowhere else.
#
# Usage:
#   . scripts/topology.sh
#   topo_init kbd            # names only; safe to call before a trap
#   trap topo_down EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
#   topo_up
#   topo_bg be1 build/kbload serve --tcp 198.51.100.2:8080 --id a   # background, tracked
#   topo_client build/kbload crr --tcp 198.18.0.10:80                # node netns + cgroup
#   topo_dns_up 5 demo.internal                                      # optional: dnsmasq, TTL 5 s
#   topo_kb_start build/kbackend --dns-min-ttl 1s                    # daemon in the node netns
#
# topo_down is idempotent and removes, in order: tracked processes (daemon
# after `kbackend unload`), anything left in the namespaces or the cgroup, the
# pins, the cgroup, the namespaces, the state dir and a cgroup2 mount it made.
# Only processes this script started (or that run inside namespaces/cgroups
# it created) are signalled, always by pid.

topo_init() {
	TOPO_PREFIX=${1:-kbd}
	TOPO_NODE=$TOPO_PREFIX-node
	TOPO_BE1=$TOPO_PREFIX-be1
	TOPO_BE2=$TOPO_PREFIX-be2
	TOPO_DNS=$TOPO_PREFIX-dns
	TOPO_DNS_ADDR=203.0.113.53
	TOPO_DNS_HOSTS=
	TOPO_DNS_PID=
	TOPO_DNS_MADE=
	TOPO_PIDS=()
	TOPO_NS_MADE=()
	TOPO_CG_ROOT=
	TOPO_CG=
	TOPO_CG_MOUNTED=
	TOPO_TMP=
	TOPO_KB=
	TOPO_KB_PID=
	TOPO_KB_PINS=
	TOPO_BPFFS=/sys/fs/bpf/kbackend-$TOPO_PREFIX
	TOPO_DOWN_DONE=
	TOPO_QUIET=${TOPO_QUIET:-}
	export KBACKEND_SOCKET=
}

topo_log() { [ -n "$TOPO_QUIET" ] || echo "  [topo] $*" >&2; }

# The netns path for a short name: node, be1, be2 (or a full name).
topo_ns() {
	case $1 in
	node) echo "/run/netns/$TOPO_NODE" ;;
	be1) echo "/run/netns/$TOPO_BE1" ;;
	be2) echo "/run/netns/$TOPO_BE2" ;;
	dns) echo "/run/netns/$TOPO_DNS" ;;
	*) echo "/run/netns/$1" ;;
	esac
}

# Run a command in a namespace (nsenter, so /sys/fs/bpf stays visible).
topo_in() {
	local ns
	ns=$(topo_ns "$1")
	shift
	nsenter --net="$ns" -- "$@"
}

_topo_cg2_root() {
	local root
	root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	if [ -z "$root" ]; then
		root=/run/kbackend-$TOPO_PREFIX-cg2
		mkdir -p "$root"
		mount -t cgroup2 none "$root" || return 1
		TOPO_CG_MOUNTED=$root
	fi
	TOPO_CG_ROOT=$root
}

topo_up() {
	local n=$TOPO_NODE b1=$TOPO_BE1 b2=$TOPO_BE2 p=$TOPO_PREFIX ns
	for ns in "$n" "$b1" "$b2"; do
		if [ -e "/run/netns/$ns" ]; then
			echo "topology: netns $ns already exists (a previous run?); run with the same prefix's teardown first" >&2
			return 1
		fi
	done
	TOPO_TMP=$(mktemp -d "/tmp/kbackend-$p.XXXXXX") || return 1
	for ns in "$n" "$b1" "$b2"; do
		ip netns add "$ns" || return 1
		TOPO_NS_MADE+=("$ns")
	done
	# Every link is made from inside the node netns: nothing touches the root namespace.
	ip -n "$n" link add "$p-n1" type veth peer name "$p-b1" netns "$b1" || return 1
	ip -n "$n" link add "$p-n2" type veth peer name "$p-b2" netns "$b2" || return 1
	for ns in "$n" "$b1" "$b2"; do
		ip -n "$ns" link set lo up || return 1
	done
	ip -n "$n" addr add 198.51.100.1/24 dev "$p-n1" || return 1
	ip -n "$n" addr add 2001:db8:1::1/64 dev "$p-n1" nodad || return 1
	ip -n "$n" addr add 203.0.113.1/24 dev "$p-n2" || return 1
	ip -n "$n" addr add 2001:db8:1:2::1/64 dev "$p-n2" nodad || return 1
	ip -n "$b1" addr add 198.51.100.2/24 dev "$p-b1" || return 1
	ip -n "$b1" addr add 198.51.100.3/24 dev "$p-b1" || return 1
	ip -n "$b1" addr add 2001:db8:1::2/64 dev "$p-b1" nodad || return 1
	ip -n "$b1" addr add 2001:db8:1::3/64 dev "$p-b1" nodad || return 1
	ip -n "$b2" addr add 203.0.113.2/24 dev "$p-b2" || return 1
	ip -n "$b2" addr add 2001:db8:1:2::2/64 dev "$p-b2" nodad || return 1
	ip -n "$n" link set "$p-n1" up || return 1
	ip -n "$n" link set "$p-n2" up || return 1
	ip -n "$b1" link set "$p-b1" up || return 1
	ip -n "$b2" link set "$p-b2" up || return 1
	# CRR runs open many short connections from one address: reuse TIME_WAIT ports.
	topo_in node sysctl -qw net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=1024 65000" || return 1
	# The rule that keeps mistakes on this machine.
	for ns in "$n" "$b1" "$b2"; do
		if [ -n "$(ip -n "$ns" route show default)$(ip -n "$ns" -6 route show default)" ]; then
			echo "topology: $ns has a default route; refusing to continue" >&2
			return 1
		fi
	done
	_topo_cg2_root || { echo "topology: no cgroup2 hierarchy and cannot mount one" >&2; return 1; }
	mkdir "$TOPO_CG_ROOT/$p-clients" || return 1
	TOPO_CG=$TOPO_CG_ROOT/$p-clients
	topo_log "netns $n, $b1, $b2; cgroup $TOPO_CG"
}

# Start dnsmasq in a netns of its own (<prefix>-dns), reachable from the node at
# $TOPO_DNS_ADDR:53. It answers the names in $TOPO_DNS_HOSTS (a hosts file:
# "ADDRESS NAME..." lines; edit it, then topo_dns_reload) with TTL $1 (default 5 s),
# and NXDOMAIN for any other name under the domains given after it. After topo_up.
topo_dns_up() {
	local ttl=${1:-5} n=$TOPO_NODE d=$TOPO_DNS p=$TOPO_PREFIX dom i
	shift
	local args=()
	[ -n "$TOPO_TMP" ] || { echo "topology: topo_dns_up before topo_up" >&2; return 1; }
	command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || { echo "topology: dnsmasq is missing; run 'make deps'" >&2; return 1; }
	if [ -e "/run/netns/$d" ]; then
		echo "topology: netns $d already exists (a previous run?)" >&2
		return 1
	fi
	ip netns add "$d" || return 1
	TOPO_NS_MADE+=("$d")
	TOPO_DNS_MADE=1
	ip -n "$n" link add "$p-n3" type veth peer name "$p-d" netns "$d" || return 1
	ip -n "$d" link set lo up || return 1
	ip -n "$n" addr add 203.0.113.54/30 dev "$p-n3" || return 1
	ip -n "$d" addr add "$TOPO_DNS_ADDR/30" dev "$p-d" || return 1
	ip -n "$n" link set "$p-n3" up || return 1
	ip -n "$d" link set "$p-d" up || return 1
	if [ -n "$(ip -n "$d" route show default)$(ip -n "$d" -6 route show default)" ]; then
		echo "topology: $d has a default route; refusing to continue" >&2
		return 1
	fi
	TOPO_DNS_HOSTS=$TOPO_TMP/dns.hosts
	[ -e "$TOPO_DNS_HOSTS" ] || : >"$TOPO_DNS_HOSTS"
	for dom in "$@"; do args+=("--local=/$dom/"); done
	# Root, so that a reload can read the hosts file in the 0700 temp dir.
	topo_bg dns "$(command -v dnsmasq || echo /usr/sbin/dnsmasq)" --keep-in-foreground --no-resolv --no-hosts \
		--conf-file=/dev/null --bind-interfaces --listen-address="$TOPO_DNS_ADDR" --port=53 --user=root \
		--pid-file= --addn-hosts="$TOPO_DNS_HOSTS" --local-ttl="$ttl" --log-queries \
		--log-facility="$TOPO_TMP/dnsmasq.log" "${args[@]}"
	TOPO_DNS_PID=$TOPO_LAST_PID
	for i in $(seq 50); do
		topo_in dns ss -Hlun "src $TOPO_DNS_ADDR:53" 2>/dev/null | grep -q . && break
		if ! kill -0 "$TOPO_DNS_PID" 2>/dev/null; then
			echo "topology: dnsmasq exited:" >&2
			sed 's/^/    /' "$TOPO_LAST_LOG" "$TOPO_TMP/dnsmasq.log" >&2 2>/dev/null
			return 1
		fi
		sleep 0.1
	done
	topo_log "netns $d: dnsmasq on $TOPO_DNS_ADDR:53 (hosts $TOPO_DNS_HOSTS, TTL $ttl s)"
}

# Re-read the hosts file (dnsmasq clears its cache and reloads on SIGHUP).
topo_dns_reload() {
	[ -n "$TOPO_DNS_PID" ] && kill -HUP "$TOPO_DNS_PID"
}

# Stop dnsmasq and remove its netns (topo_down does this too).
topo_dns_down() {
	local i
	[ -n "$TOPO_DNS_PID" ] && kill -TERM "$TOPO_DNS_PID" 2>/dev/null
	for i in $(seq 30); do
		if [ -z "$TOPO_DNS_PID" ] || ! kill -0 "$TOPO_DNS_PID" 2>/dev/null; then break; fi
		sleep 0.1
	done
	[ -n "$TOPO_DNS_PID" ] && { kill -KILL "$TOPO_DNS_PID" 2>/dev/null; wait "$TOPO_DNS_PID" 2>/dev/null; }
	TOPO_DNS_PID=
	if [ -n "${TOPO_DNS_MADE:-}" ] && [ -e "/run/netns/$TOPO_DNS" ]; then
		_topo_kill_pids KILL $(ip netns pids "$TOPO_DNS" 2>/dev/null)
		ip netns del "$TOPO_DNS" 2>/dev/null
	fi
	TOPO_DNS_MADE=
}

# Start a command in the background in a namespace; its pid is tracked for teardown.
# A simple command (not a function) in the background, and nsenter execs the command
# (no fork for a net namespace): $! is the command itself.
topo_bg() {
	local ns=$1 log
	shift
	log=$TOPO_TMP/bg-${#TOPO_PIDS[@]}.log
	ns=$(topo_ns "$ns")
	nsenter --net="$ns" -- "$@" >"$log" 2>&1 &
	TOPO_PIDS+=("$!")
	TOPO_LAST_PID=$!
	TOPO_LAST_LOG=$log
}

# Run a client in the node netns, inside the clients' cgroup (the shell joins it, then execs).
topo_client() {
	nsenter --net="$(topo_ns node)" -- sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$TOPO_CG" "$@"
}

# Wait until a TCP port listens in a namespace (ss from iproute2), up to ~5 s.
topo_wait_listen() {
	local ns=$1 addrport=$2 i
	for i in $(seq 50); do
		topo_in "$ns" ss -Hltn "src $addrport" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	echo "topology: nothing listens on $addrport in $ns" >&2
	return 1
}

_topo_stamp() {
	local l
	while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done
}

# Start `kbackend daemon` in the node netns, attached to the clients' cgroup,
# with a temp state dir and socket and its own pin dir. Sets KBACKEND_SOCKET.
# The daemon always gets --dns-server: the topology's dnsmasq ($TOPO_DNS_ADDR,
# from topo_dns_up; without it, queries go nowhere but stay in the namespaces),
# unless the caller names one. The machine's resolv.conf is never used.
topo_kb_start() {
	local kb=$1 i a lfd dns=("--dns-server" "$TOPO_DNS_ADDR:53")
	shift
	for a in "$@"; do
		case $a in --dns-server | --dns-server=*) dns=() ;; esac
	done
	TOPO_KB=$kb
	if [ -e "$TOPO_BPFFS" ]; then
		echo "topology: $TOPO_BPFFS exists (a previous run?); remove it with: $kb unload --bpffs $TOPO_BPFFS" >&2
		return 1
	fi
	TOPO_KB_PINS=1
	mkdir -p "$TOPO_TMP/state"
	export KBACKEND_SOCKET=$TOPO_TMP/kbackend.sock
	# TOPO_KB_STAMP=1: each log line gets the wall time it was read at (EPOCHREALTIME), for benches
	# that time the daemon's stages; the daemon's stderr is unbuffered, so that is when it was written.
	if [ -n "${TOPO_KB_STAMP:-}" ]; then
		exec {lfd}> >(_topo_stamp >"$TOPO_TMP/daemon.log")
	else
		exec {lfd}>"$TOPO_TMP/daemon.log"
	fi
	nsenter --net="$(topo_ns node)" -- "$kb" daemon --cgroup "$TOPO_CG" --bpffs "$TOPO_BPFFS" --state-dir "$TOPO_TMP/state" \
		--socket "$KBACKEND_SOCKET" "${dns[@]}" "$@" >&"$lfd" 2>&1 &
	TOPO_KB_PID=$!
	exec {lfd}>&-
	for i in $(seq 100); do
		if [ -S "$KBACKEND_SOCKET" ] && "$kb" status >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$TOPO_KB_PID" 2>/dev/null; then
			echo "topology: the daemon exited; its log:" >&2
			sed 's/^/    /' "$TOPO_TMP/daemon.log" >&2
			TOPO_KB_PID=
			return 1
		fi
		sleep 0.1
	done
	echo "topology: the daemon did not come up; its log:" >&2
	sed 's/^/    /' "$TOPO_TMP/daemon.log" >&2
	return 1
}

# Sum of memlock (bytes) over the distinct BPF maps process $1 holds open.
topo_maps_memlock() {
	local f id ml seen=" " total=0
	for f in /proc/"$1"/fdinfo/*; do
		id=$(sed -n 's/^map_id:[[:space:]]*//p' "$f" 2>/dev/null)
		[ -n "$id" ] || continue
		case $seen in *" $id "*) continue ;; esac
		seen="$seen$id "
		ml=$(sed -n 's/^memlock:[[:space:]]*//p' "$f" 2>/dev/null)
		total=$((total + ${ml:-0}))
	done
	echo "$total"
}

# `kbackend unload` through the socket, then wait for the daemon to exit.
topo_kb_stop() {
	local i
	[ -n "$TOPO_KB" ] || return 0
	if [ -n "$TOPO_KB_PID" ] && kill -0 "$TOPO_KB_PID" 2>/dev/null; then
		timeout 10 "$TOPO_KB" unload >/dev/null 2>&1
		for i in $(seq 50); do
			kill -0 "$TOPO_KB_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$TOPO_KB_PID" 2>/dev/null; then
			kill -TERM "$TOPO_KB_PID" 2>/dev/null
			sleep 0.5
			kill -KILL "$TOPO_KB_PID" 2>/dev/null
		fi
		wait "$TOPO_KB_PID" 2>/dev/null
	fi
	TOPO_KB_PID=
	# No daemon (crashed or killed): unload detaches and unpins directly.
	if [ -n "$TOPO_KB_PINS" ] && [ -e "$TOPO_BPFFS" ]; then
		timeout 10 "$TOPO_KB" unload --bpffs "$TOPO_BPFFS" >/dev/null 2>&1
		rm -rf "$TOPO_BPFFS"
	fi
}

_topo_kill_pids() {
	local sig=$1 pid
	shift
	for pid in "$@"; do
		[ -n "$pid" ] && kill "-$sig" "$pid" 2>/dev/null
	done
}

topo_down() {
	local rc=$? pid ns i left
	[ -n "$TOPO_DOWN_DONE" ] && return "$rc"
	TOPO_DOWN_DONE=1
	trap '' INT TERM	# a second Ctrl-C must not interrupt the cleanup
	[ -n "${TOPO_PREFIX:-}" ] || return "$rc"
	topo_kb_stop
	topo_dns_down
	_topo_kill_pids TERM "${TOPO_PIDS[@]}"
	# Anything else still running inside our namespaces or our cgroup is ours too.
	for ns in "${TOPO_NS_MADE[@]}"; do
		[ -e "/run/netns/$ns" ] && _topo_kill_pids TERM $(ip netns pids "$ns" 2>/dev/null)
	done
	[ -n "$TOPO_CG" ] && [ -f "$TOPO_CG/cgroup.procs" ] && _topo_kill_pids TERM $(cat "$TOPO_CG/cgroup.procs")
	for i in $(seq 30); do
		left=
		for pid in "${TOPO_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
		[ -n "$TOPO_CG" ] && [ -s "$TOPO_CG/cgroup.procs" ] && left=1
		[ -z "$left" ] && break
		sleep 0.1
	done
	_topo_kill_pids KILL "${TOPO_PIDS[@]}"
	for ns in "${TOPO_NS_MADE[@]}"; do
		[ -e "/run/netns/$ns" ] && _topo_kill_pids KILL $(ip netns pids "$ns" 2>/dev/null)
	done
	[ -n "$TOPO_CG" ] && [ -f "$TOPO_CG/cgroup.procs" ] && _topo_kill_pids KILL $(cat "$TOPO_CG/cgroup.procs")
	for pid in "${TOPO_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	TOPO_PIDS=()
	if [ -n "$TOPO_CG" ] && [ -d "$TOPO_CG" ]; then
		for i in $(seq 30); do
			rmdir "$TOPO_CG" 2>/dev/null && break
			sleep 0.1
		done
		[ -d "$TOPO_CG" ] && echo "topology: could not remove cgroup $TOPO_CG" >&2
	fi
	# Deleting a netns removes its veth ends, and with them the peers.
	for ns in "${TOPO_NS_MADE[@]}"; do
		[ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null
	done
	TOPO_NS_MADE=()
	if [ -n "$TOPO_CG_MOUNTED" ]; then
		umount "$TOPO_CG_MOUNTED" 2>/dev/null && rmdir "$TOPO_CG_MOUNTED"
	fi
	[ -n "$TOPO_TMP" ] && rm -rf "$TOPO_TMP"
	topo_log "torn down"
	return "$rc"
}
