#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Instructions per one-object change (issue 13): the states and changes of bench/change-scale.sh
# (without its DNS set), counted by callgrind instead of timed, so that the ratio between state
# sizes does not move with a shared machine's noise.
#
# For each size in INSTR_SIZES (100, 10k, 100k), one daemon runs under
# `valgrind --tool=callgrind --instr-atstart=no` (loading the state uninstrumented), then for
# INSTR_REPS repetitions: apply one changed Backend (be-7), delete tcproute r-7, apply it again,
# each between `callgrind_control -z` and `-d`, whose dump's total is the change's instruction
# count (Ir) in the daemon. The binary is copied without its debug sections (valgrind 3.19
# reads no DWARF 5). Prints a Markdown table (medians over the repetitions) on stdout.
#
#   INSTR_SIZES="100 10k" INSTR_REPS=3 bench/change-instr.sh        (as root, after make all)
#
# 100k loads ten chunks under valgrind: about 10 minutes on a 2-vCPU machine.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
SIZES=${INSTR_SIZES:-100 10k}
REPS=${INSTR_REPS:-3}

[ "$(id -u)" = 0 ] || { echo "change-instr: needs root" >&2; exit 1; }
[ -x "$KB" ] || { echo "change-instr: $KB is missing; run 'make all' first" >&2; exit 1; }
command -v callgrind_control >/dev/null || { echo "change-instr: needs valgrind" >&2; exit 1; }

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1
topo_init "kbins$$"
trap topo_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() { echo "change-instr: $*" >&2; exit 1; }
topo_up || fail "could not build the topology"
RAW=$TOPO_TMP/raw
: >"$RAW"

# The daemon under callgrind, every other command as it is.
objcopy --strip-debug "$KB" "$TOPO_TMP/kbackend" || fail "objcopy failed"
cat >"$TOPO_TMP/vg" <<EOF
#!/bin/bash
[ "\$1" = daemon ] && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="\$CG_OUT.%p" "$TOPO_TMP/kbackend" "\$@"
exec "$TOPO_TMP/kbackend" "\$@"
EOF
chmod +x "$TOPO_TMP/vg"

cat >"$TOPO_TMP/route.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: r-7, namespace: bench}
spec:
  parentRefs: [{name: gw-0, sectionName: l7}]
  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: be-7}]}]
EOF

# count SIZE OP REP CMD...: one change between a zeroing and a dump of the counters.
count() {
	local z=$1 op=$2 rep=$3 f ir
	shift 3
	callgrind_control -z "$TOPO_KB_PID" >/dev/null
	"$KB" "$@" >/dev/null 2>&1 || fail "$op on $z failed"
	callgrind_control -d "$op-$rep" "$TOPO_KB_PID" >/dev/null
	f=$(grep -l "^desc: Trigger: .*[ :]$op-$rep\$" "$CG_OUT".* 2>/dev/null | head -1)
	ir=$(sed -n 's/^summary: //p; s/^totals: //p' "$f" | head -1)
	echo "$z $op $ir" >>"$RAW"
}

for z in $SIZES; do
	export CG_OUT=$TOPO_TMP/cg-$z
	topo_kb_start "$TOPO_TMP/vg" --enable-backend --max-frontends 131072 --max-endpoints 131072 ||
		fail "the daemon did not start"
	case $z in
	100) awk -v N=48 -f bench/scale-gen.awk >"$TOPO_TMP/s.yaml" && "$KB" apply -f "$TOPO_TMP/s.yaml" >/dev/null ;;
	10k) awk -v N=10000 -f bench/scale-gen.awk >"$TOPO_TMP/s.yaml" && "$KB" apply -f "$TOPO_TMP/s.yaml" >/dev/null ;;
	100k)
		for c in $(seq 0 9); do
			awk -v N=10000 -v E=1 -v OFF=$((c * 10048)) -f bench/scale-gen.awk >"$TOPO_TMP/s.yaml" &&
				"$KB" apply -f "$TOPO_TMP/s.yaml" >/dev/null || break
			echo "  [instr] 100k: chunk $c applied" >&2
		done
		;;
	*) fail "unknown size $z (100, 10k, 100k)" ;;
	esac || fail "loading $z failed"
	callgrind_control -i on "$TOPO_KB_PID" >/dev/null
	for r in $(seq "$REPS"); do
		printf 'apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: be-7, namespace: bench}\nspec:\n  endpoints: [{ip: {address: 198.51.100.77, port: %d}}]\n' \
			$((9000 + r)) >"$TOPO_TMP/be.yaml"
		count "$z" apply1 "$r" apply -f "$TOPO_TMP/be.yaml"
		count "$z" delete1 "$r" delete tcproute r-7 -n bench
		count "$z" readd1 "$r" apply -f "$TOPO_TMP/route.yaml"
	done
	echo "  [instr] $z: $(grep -c "^$z " "$RAW") changes counted" >&2
	topo_kb_stop
done

awk -v sizes="$SIZES" '
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ V[$1, $2, ++N[$1, $2]] = $3 }
END {
	ns = split(sizes, S, " ")
	split("apply1 delete1 readd1", O, " ")
	name["apply1"] = "apply one changed Backend"; name["delete1"] = "delete one TCPRoute"; name["readd1"] = "apply it again"
	printf "| change |"; for (i = 1; i <= ns; i++) printf " %s |", S[i]
	for (i = 1; i <= ns; i++) if (S[i] != "100") printf " ratio %s/100 |", S[i]
	printf "\n|---|"; for (i = 1; i <= ns; i++) printf "---:|"
	for (i = 1; i <= ns; i++) if (S[i] != "100") printf "---:|"
	printf "\n"
	for (o = 1; o <= 3; o++) {
		printf "| %s |", name[O[o]]
		for (i = 1; i <= ns; i++) {
			n = N[S[i], O[o]]; delete v
			for (k = 1; k <= n; k++) v[k] = V[S[i], O[o], k]
			M[i] = n ? median(v, n) : -1
			printf " %s |", n ? sprintf("%.2f M", M[i] / 1e6) : "-"
		}
		for (i = 1; i <= ns; i++)
			if (S[i] != "100") {
				b = 0; for (k = 1; k <= ns; k++) if (S[k] == "100") b = M[k]
				printf " %s |", (b > 0 && M[i] > 0 ? sprintf("%.2f", M[i] / b) : "-")
			}
		printf "\n"
	}
	printf "\nInstructions the daemon executes per change (callgrind Ir), medians of the repetitions.\n"
}' "$RAW"
