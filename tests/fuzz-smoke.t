#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A short libFuzzer run of the parser and validator (the long one is `make fuzz`), as one TAP test.
cd "$(dirname "$0")/.." || exit 1
echo "1..1"
if out=$(./scripts/run-fuzz.sh build/fuzz_manifest "${KB_FUZZ_SECONDS:-15}" 2>&1); then
	echo "ok 1 - fuzz_manifest: $(echo "$out" | tail -1)"
else
	echo "$out" | sed 's/^/# /'
	echo "not ok 1 - fuzz_manifest found a crash or leak"
fi
