#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# TAP checks of scripts/vmtest.sh itself: the guest has no network device, the command's status and output come back, and neither a failing nor a hanging command (killed at the timeout) leaves a process or a file behind.
#
# Each run of vmtest.sh is a session leader (setsid) with its own TMPDIR, so what it leaves
# is what is still in that session or still names that directory, whoever its parent now is.
# VMTEST names the script under test (a deliberately broken copy must fail here).
set -u
cd "$(dirname "$0")/.." || exit 1
VMTEST=${VMTEST:-scripts/vmtest.sh}
echo "1..6"

n=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}

if [ "$(id -u)" != 0 ]; then
	# Under CI every check runs, or the run fails.
	if [ -n "${CI:-}" ] && [ "$CI" != false ] && [ "$CI" != 0 ]; then
		for i in 1 2 3 4 5 6; do echo "not ok $i - vmtest.sh needs root"; done
		exit 1
	fi
	for i in 1 2 3 4 5 6; do echo "ok $i # SKIP vmtest.sh needs root"; done
	exit 0
fi

work=$(mktemp -d /tmp/kb-vmtest-t.XXXXXX)
sid="" sids=""
cleanup() {
	# Only what a broken vmtest.sh left: the processes of its sessions, by their ids.
	local s
	for s in $sids; do pgrep -s "$s" | xargs -r kill -KILL 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

# Run vmtest.sh --timeout T ARGS... as a session leader with TMPDIR=$work/tmp: output in
# $work/out, status in $rc, session id in $sid, wall seconds in $took. A bound of its own
# (T + 60 s), in case the script under test ignores its timeout.
vm() {
	local t=$1 start=$SECONDS
	shift
	rm -rf "$work/tmp" && mkdir "$work/tmp"
	TMPDIR=$work/tmp timeout -s KILL $((t + 60)) setsid --wait bash -c 'echo $$ >"$0/sid"; exec "$@"' "$work" \
		"$VMTEST" --timeout "$t" "$@" >"$work/out" 2>&1
	rc=$?
	took=$((SECONDS - start))
	sid=$(cat "$work/sid")
	sids="$sids $sid"
}

# Nothing of the last run left: no process in its session, none naming its TMPDIR (qemu's
# -initrd does), no file in it. Waits a moment for the kernel to reap what was killed.
left_nothing() {
	local i
	for i in $(seq 50); do
		if ! pgrep -s "$sid" >/dev/null && ! pgrep -f "$work/tmp/" >/dev/null &&
			[ -z "$(ls -A "$work/tmp")" ]; then
			return 0
		fi
		sleep 0.1
	done
	pgrep -a -s "$sid" | sed 's/^/# left in the session: /'
	pgrep -a -f "$work/tmp/" | sed 's/^/# left naming its TMPDIR: /'
	ls -A "$work/tmp" | sed 's/^/# left in its TMPDIR: /'
	return 1
}

show() {
	sed 's/^/# /' "$work/out"
}

# A failing command that leaves children behind (one holding its output open): its status,
# output and directory come back, and the guest's only network interface is its loopback,
# on no network PCI device (class 0x02xxxx). A broken teardown shows as the timeout's 124.
vm 180 -- bash -c 'echo "net: $(ls /sys/class/net | tr "\n" " ")"
	echo "pci-net: $(cat /sys/bus/pci/devices/*/class | grep -c "^0x02")"
	sleep 3600 & sleep 3600 >/dev/null 2>&1 &
	echo "in $PWD on $(uname -r)"; exit 42'
[ "$rc" = 42 ] || show
ok $([ "$rc" = 42 ]; echo $?) "a failing command's status comes back (42, got $rc)"
grep -qx "in $PWD on 6\.1\..*" "$work/out"
ok $? "its output comes back, from the caller's directory on the 6.1 kernel"
grep -qx "net: lo " "$work/out" && grep -qx "pci-net: 0" "$work/out"
r=$?
[ "$r" = 0 ] || grep -E '^(net|pci-net):' "$work/out" | sed 's/^/# /'
ok $r "the guest has no network device: loopback only, no network PCI device"
left_nothing
ok $? "a failing command with children left running leaves no process or file"

# A command that hangs: killed at the timeout (124), after it started; the VM goes with it.
# The timeout leaves the boot twice the time the whole first run took to reach the command
# (at most 120 s: a first run that ran into its own timeout says nothing of the boot).
t=$((2 * took + 10))
[ "$t" -le 120 ] || t=120
vm "$t" -- bash -c 'echo started; exec sleep 3600'
[ "$rc" = 124 ] || show
ok $([ "$rc" = 124 ] && grep -qx started "$work/out"; echo $?) \
	"a hanging command is stopped at the timeout: status 124 (got $rc) after it started"
left_nothing
ok $? "a hanging command leaves no qemu, no process and no file"
