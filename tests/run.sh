#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs every test program through prove (the TAP harness) on this machine's kernel, then
# every e2e program again inside a Debian 12 6.1 guest (scripts/vmtest.sh), and ends with the
# summary line "N passed, N failed, N skipped" counting both. Unit tests are cmocka binaries
# (TAP output); e2e tests are cmocka binaries that need root and a kernel.
# KB_ONLY=unit|e2e narrows the programs; KB_VM=0 leaves out the guest run; KB_VM_TESTS
# (below) chooses the guest's programs.
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

# The e2e programs the guest runs: all of them (KB_VM_TESTS="test_x test_y" runs a list).
# qemu emulates the CPU here (no KVM), several times slower than the host, so the guest exports
# KB_SCALE (KB_VM_SCALE, default 8; tests/e2e/e2e.h): the tests that loop thousands of times
# (kill -9 restarts, connects, applies) make fewer rounds there, never below a floor that keeps
# each check able to fail, and the same assertions hold; their bounds on waiting grow by it. The
# host's run keeps every full count (KB_SCALE unset). docs/OPERATIONS.md, "Kernels tested".
VM_TESTS_DEFAULT=all

# Inside the guest: the e2e programs, each named after the kernel it runs on
# (a symlink in the guest's own /run), so every prove line says which kernel it is.
if [ "${1:-}" = --guest ]; then
	kdir=/run/kernel-$(uname -r)
	mkdir -p "$kdir"
	names=()
	want=" ${KB_VM_TESTS:-$VM_TESTS_DEFAULT} "
	for p in $(programs "$OUT"/e2e/*); do
		[ "$want" = " all " ] || [[ $want == *" ${p##*/} "* ]] || continue
		ln -sf "$PWD/$p" "$kdir/${p##*/}"
		names+=("$kdir/${p##*/}")
	done
	[ "${#names[@]}" -gt 0 ] || { echo "# no e2e program matches KB_VM_TESTS=$want"; exit 1; }
	export KB_SCALE=${KB_VM_SCALE:-8}
	echo "# kernel $(uname -r): ${VMTEST_KERNEL:-?} in qemu (scripts/vmtest.sh), KB_SCALE=$KB_SCALE"
	run_prove "${names[@]}"
	exit $?
fi

# The host runs every full count, whatever the caller's environment says.
unset KB_SCALE
LOG=$(mktemp /tmp/kbackend-tests.XXXXXX)
trap 'rm -f "$LOG"' EXIT

progs=()
case "${KB_ONLY:-all}" in
unit) progs+=("$OUT"/tests/test_*) ;;
e2e) progs+=("$OUT"/e2e/* tests/kube/apiserver.t) ;;
*) progs+=("$OUT"/tests/test_* "$OUT"/e2e/* tests/fuzz-smoke.t tests/kube/apiserver.t) ;;
esac
# vmtest.sh's own checks, with the guest run it serves.
if [ "${KB_ONLY:-all}" != unit ] && [ "${KB_VM:-1}" != 0 ]; then progs+=(tests/vmtest.t); fi
mapfile -t existing < <(programs "${progs[@]}")

echo "# kernel $(uname -r): this machine" | tee "$LOG"
run_prove "${existing[@]}" | tee -a "$LOG"
rc=${PIPESTATUS[0]}

# The e2e programs again on Debian 12's 6.1 kernel. Not as another user: the guest runs as
# root and qemu shares / as root sees it.
vm_rc=0
if [ "${KB_ONLY:-all}" != unit ] && [ "${KB_VM:-1}" != 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		scripts/vmtest.sh --timeout "${KB_VM_TIMEOUT:-900}" -- tests/run.sh --guest 2>&1 | tee -a "$LOG"
		vm_rc=${PIPESTATUS[0]}
	elif [ -n "${CI:-}" ] && [ "$CI" != false ] && [ "$CI" != 0 ]; then
		echo "# the Debian 12 guest run needs root (CI runs every test)" | tee -a "$LOG"
		vm_rc=1
	else
		echo "# the Debian 12 guest run needs root: left out"
	fi
fi

# Each kernel's own count, then the sum (the host's lines come first, the guest's after its header).
guest_at=$(grep -n -m1 '^# kernel .* in qemu' "$LOG" | cut -d: -f1)
count() { grep -E "^$1 [0-9]+" | grep -viEc '# skip'; }
if [ -n "$guest_at" ]; then
	echo "# $(head -n "$((guest_at - 1))" "$LOG" | count ok) passed, $(head -n "$((guest_at - 1))" "$LOG" | count 'not ok') failed on $(uname -r) (this machine);" \
		"$(tail -n "+$guest_at" "$LOG" | count ok) passed, $(tail -n "+$guest_at" "$LOG" | count 'not ok') failed on $(sed -n "${guest_at}s/^# kernel \([^:]*\):.*/\1/p" "$LOG") (qemu)"
fi
# Count the TAP results of every program: one "ok"/"not ok" line a test.
skipped=$(grep -ciE '^ok [0-9]+.*# skip' "$LOG")
passed=$(grep -E '^ok [0-9]+' "$LOG" | grep -viEc '# skip')
failed=$(grep -E '^not ok [0-9]+' "$LOG" | grep -viEc '# skip')
# A program (or the guest) that died without reporting its plan counts as one failure.
if { [ "$rc" != 0 ] || [ "$vm_rc" != 0 ]; } && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
