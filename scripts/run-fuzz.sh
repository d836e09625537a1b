#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Run the manifest fuzzer for N seconds from the committed seed corpus, with
# leak detection on. New inputs go to a scratch corpus, never into the repo.
# Exit 0 only when libFuzzer found no crash, leak or timeout.
set -eu
bin=$1
secs=${2:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/kbackend-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$top"/fuzz/corpus/* "$work"/ 2>/dev/null || true
cp "$top"/examples/*.yaml "$work"/ 2>/dev/null || true
export ASAN_OPTIONS=detect_leaks=1
"$bin" -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
	-dict="$top/fuzz/yaml.dict" -artifact_prefix="$work/" -print_final_stats=1 \
	"$work" > "$work/log" 2>&1 || {
	tail -40 "$work/log"
	echo "kbackend: fuzzing failed; artifacts:" "$work"/crash-* "$work"/leak-* 2>/dev/null
	exit 1
}
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
echo "fuzz: ${secs}s, ${runs:-?} inputs, no crash, no leak"
