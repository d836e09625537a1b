#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs every test program through prove (the TAP harness) on this machine's kernel, then the
# e2e programs again inside a Debian 12 6.1 guest (scripts/vmtest.sh), and ends with the
# summary line "N passed, N failed, N skipped" counting both. Unit tests are cmocka binaries
# (TAP output); e2e tests are cmocka binaries that need root and a kernel.
# KB_ONLY=unit|e2e narrows the programs; KB_VM=0 leaves out the guest run.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build}
export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_prove() {
	prove --exec tests/tap-exec.sh --verbose --timer "$@" 2>&1
}

# Only programs: the globs also match the compiler's dependency files (*.d).
programs() {
	local p
	for p in "$@"; do [ -f "$p" ] && [ -x "$p" ] && echo "$p"; done
}

# Inside the guest: the e2e programs, each named after the kernel it runs on
# (a symlink in the guest's own /run), so every prove line says which kernel it is.
if [ "${1:-}" = --guest ]; then
	kdir=/run/kernel-$(uname -r)
	mkdir -p "$kdir"
	names=()
	for p in $(programs "$OUT"/e2e/*); do
		ln -sf "$PWD/$p" "$kdir/${p##*/}"
		names+=("$kdir/${p##*/}")
	done
	echo "# kernel $(uname -r): ${VMTEST_KERNEL:-?} in qemu (scripts/vmtest.sh)"
	run_prove "${names[@]}"
	exit $?
fi

LOG=$(mktemp /tmp/kbackend-tests.XXXXXX)
trap 'rm -f "$LOG"' EXIT

progs=()
case "${KB_ONLY:-all}" in
unit) progs+=("$OUT"/tests/test_*) ;;
e2e) progs+=("$OUT"/e2e/*) ;;
*) progs+=("$OUT"/tests/test_* "$OUT"/e2e/* tests/fuzz-smoke.t) ;;
esac
mapfile -t existing < <(programs "${progs[@]}")

echo "# kernel $(uname -r): this machine" | tee "$LOG"
run_prove "${existing[@]}" | tee -a "$LOG"
rc=${PIPESTATUS[0]}

# The e2e programs again on Debian 12's 6.1 kernel. Not as another user: the guest runs as
# root and qemu shares / as root sees it.
vm_rc=0
if [ "${KB_ONLY:-all}" != unit ] && [ "${KB_VM:-1}" != 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		scripts/vmtest.sh -- tests/run.sh --guest 2>&1 | tee -a "$LOG"
		vm_rc=${PIPESTATUS[0]}
	elif [ -n "${CI:-}" ] && [ "$CI" != false ] && [ "$CI" != 0 ]; then
		echo "# the Debian 12 guest run needs root (CI runs every test)" | tee -a "$LOG"
		vm_rc=1
	else
		echo "# the Debian 12 guest run needs root: left out"
	fi
fi

# Count the TAP results of every program: one "ok"/"not ok" line a test.
skipped=$(grep -ciE '^ok [0-9]+.*# skip' "$LOG")
passed=$(grep -E '^ok [0-9]+' "$LOG" | grep -viEc '# skip')
failed=$(grep -E '^not ok [0-9]+' "$LOG" | grep -viEc '# skip')
# A program (or the guest) that died without reporting its plan counts as one failure.
if { [ "$rc" != 0 ] || [ "$vm_rc" != 0 ]; } && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
