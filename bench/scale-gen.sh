# SPDX-License-Identifier: Apache-2.0
# gen N > FILE: the scale manifest of bench/apply-scale.sh (its header says what it holds): ceil(N/64)
# Gateways, N TCPRoutes and N Backends with 10 endpoints each, from bench/scale-gen.awk (which
# bench/read-scale.sh runs with LABELS=1). Sourced by apply-scale.sh and store-scale.sh.
gen() { awk -v N="$1" -f bench/scale-gen.awk; }
