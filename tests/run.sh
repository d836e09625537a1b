#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs every test program through prove (the TAP harness) and ends with the
# summary line "N passed, N failed, N skipped". Unit tests are cmocka binaries
# (TAP output); e2e tests are cmocka binaries that need root and a kernel.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build}
LOG=$(mktemp /tmp/kbackend-tests.XXXXXX)
trap 'rm -f "$LOG"' EXIT
export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

progs=()
case "${KB_ONLY:-all}" in
unit) progs+=("$OUT"/tests/test_*) ;;
e2e) progs+=("$OUT"/e2e/*) ;;
*) progs+=("$OUT"/tests/test_* "$OUT"/e2e/* tests/fuzz-smoke.t) ;;
esac
# Only programs: the globs also match the compiler's dependency files (*.d).
existing=()
for p in "${progs[@]}"; do [ -f "$p" ] && [ -x "$p" ] && existing+=("$p"); done

prove --exec tests/tap-exec.sh --verbose --timer "${existing[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}

# Count the TAP results of every program: one "ok"/"not ok" line a test.
skipped=$(grep -ciE '^ok [0-9]+.*# skip' "$LOG")
passed=$(grep -E '^ok [0-9]+' "$LOG" | grep -viEc '# skip')
failed=$(grep -E '^not ok [0-9]+' "$LOG" | grep -viEc '# skip')
# A program that died without reporting its plan counts as one failure.
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
