#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# prove's --exec wrapper: runs one test program and fixes cmocka 1.1.5's skip
# lines ("not ok N # SKIP"), which TAP readers count as failures, into "ok N # SKIP".
set -o pipefail
"$1" | sed -E 's/^not ok ([0-9]+)(.*# ?[Ss][Kk][Ii][Pp])/ok \1\2/'
