#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Kernel memory held by an EMPTY daemon's BPF maps (issue 13): one row per
# pinned map (type, max_entries, memlock) and the total over every map the
# daemon holds open (/proc/PID/fdinfo, internal .rodata/.bss maps included).
#
#   bench/map-memory.sh                         defaults
#   bench/map-memory.sh --max-slots 1048576     any daemon flags: sizes to compare
#   MAPMEM_RAW=FILE bench/map-memory.sh ...     also one key=value line per map
#
# `memlock` is what the kernel charges the map (map_mem_usage on 5.19+: the
# preallocated elements, buckets, per-CPU copies), so it is the figure to put
# against a node's memory. Prints Markdown on stdout; everything it makes is
# removed, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
RAW=${MAPMEM_RAW:-}

[ "$(id -u)" = 0 ] || { echo "map-memory: needs root" >&2; exit 1; }
[ -x "$KB" ] || { echo "map-memory: $KB is missing; run 'make all' first" >&2; exit 1; }
command -v bpftool >/dev/null || { echo "map-memory: needs bpftool" >&2; exit 1; }

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init "kbmem$$"
trap topo_down EXIT
trap 'echo "map-memory: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM
fail() { echo "map-memory: $*" >&2; exit 1; }

topo_up || fail "could not build the topology"
topo_kb_start "$KB" --dns-server 127.0.0.1:53 "$@" || fail "the daemon did not start"
pid=$TOPO_KB_PID

total=$(topo_maps_memlock "$pid")

echo "Empty daemon, flags: ${*:-(defaults)}; $(nproc) CPUs online, possible: $(cat /sys/devices/system/cpu/possible)."
echo
echo "| map | type | max_entries | memlock |"
echo "|---|---|---:|---:|"
pinned=0
for p in "$TOPO_BPFFS"/*; do
	[ -f "$p" ] || continue
	j=$(bpftool -j map show pinned "$p" 2>/dev/null) || continue
	line=$(echo "$j" | python3 -c 'import json, sys
m = json.load(sys.stdin)
print(m["name"], m["type"], m["max_entries"], m["bytes_memlock"])') || continue
	read -r name type max ml <<<"$line"
	name=$(basename "$p")	# the kernel truncates names to 15 characters
	pinned=$((pinned + ml))
	printf "| %s | %s | %s | %.2f MiB |\n" "$name" "$type" "$max" "$(echo "$ml / 1048576" | bc -l)"
	[ -n "$RAW" ] && echo "mapmem map=$name type=$type max_entries=$max memlock=$ml" >>"$RAW"
done
printf "| **pinned maps** | | | **%.2f MiB** |\n" "$(echo "$pinned / 1048576" | bc -l)"
printf "| **all maps the daemon holds** | | | **%.2f MiB** |\n" "$(echo "$total / 1048576" | bc -l)"
[ -n "$RAW" ] && echo "mapmem total=$total pinned=$pinned flags=${*// /,}" >>"$RAW"
exit 0
