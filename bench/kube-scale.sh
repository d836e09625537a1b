#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The Kubernetes source at scale (issue 14): how long `kbackend daemon --kubeconfig` takes to
# sync 10,000 Backends with their routes from the API server, and how long one MODIFIED event
# takes from the write on the server to connects landing on the new endpoint.
#
# The API server is tests/kube/apiserver.py (Python, standard library; tests/kube/README.md),
# started in the node netns (no default route) on its 127.0.0.1:6443, with a CA made by
# tests/kube/make-certs.sh and bearer tokens; the daemon reads a kubeconfig (server,
# certificate-authority, tokenFile). The objects are bench/scale-gen.awk's manifest (that of
# bench/apply-scale.sh): N Backends of 10 endpoints, N TCPRoutes, ceil(N/64) Gateways of class
# eg, plus GatewayClass eg of controller kbackend.io/gateway-controller; loaded with the
# server's POST /restart (one JSON list), so every repetition starts from the same 2N+N/64+1
# objects and an empty watch history. The M Backends the events change (be-0, be-N/M, ...)
# hold one endpoint each instead of ten, 198.51.100.2:8080 (kbload serve --id a, in be1), so
# that every connect to their frontends lands on a listener.
#
# Per repetition, on a fresh daemon (empty state dir, new pins):
#   sync     from starting the daemon to `kbackend status -o json` saying kubernetes.synced
#            with N frontends (polled every 50 ms); from the daemon's own log (each line stamped
#            when written, TOPO_KB_STAMP): start to "watching", to the last kind listed (the
#            paginated lists, limit=500 with continue), to "N object(s) are the state" (the maps
#            programmed), and the replace's own "programmed in X ms" and stages
#   cpu      the daemon's and the API server's CPU seconds over the sync (/proc schedstat, stat)
#   server   the same paginated lists fetched by a Python client alone (bench/kube-client.py
#            list): what serving them costs the server without kbackend
#   status   the status writer's pace: with status on (the default), its writes and what is
#            still pending KUBE_STATUS_SECS (default 30) after the sync; writing all 20,000 back to
#            the test server takes minutes. The events then run on a fresh --no-status daemon, so
#            that nothing else loads the server meanwhile
#   events   EVENTS merge PATCHes of the M Backends in turn, each flipping its endpoint between
#            198.51.100.2:8080 (id a) and 203.0.113.2:8080 (id b, in be2), written by a client in
#            the node netns and the daemon's cgroup over one kept-alive HTTPS connection, which
#            then connects to the Backend's frontend (every PROBE_US) until one lands on the new
#            endpoint: e2e_ms, from before the write to the connect that landed. Joined with the
#            daemon's log: log_ms, from before the write to the "applied ... programmed" line
#            being written (server, watch stream, daemon, maps), and daemon_ms, that line's own
#            figure (the change pipeline from the event's batch to the maps swapped).
#
#   bench/kube-scale.sh                          (as root, after `make all`; `make bench` and `make bench-kube` run it)
#   KUBE_N=10000 KUBE_EVENTS=1000 KUBE_REPS=2 KUBE_RAW=FILE KBACKEND=build/kbackend bench/kube-scale.sh
#
# Knobs: KUBE_BACKENDS (M, default 50), KUBE_GAP_MS (pause after an event, default 20),
# KUBE_PROBE_US (pause between connects, default 200: the client shares 2 vCPUs with the daemon
# and the server), KUBE_STATUS_SECS (see status).
# Prints a Markdown table on stdout (progress on stderr); KUBE_RAW gets one key=value line per
# measurement. Everything it makes is removed, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build}
KB=${KBACKEND:-$PWD/$OUT/kbackend}
LOAD=${KBLOAD:-$PWD/$OUT/kbload}
N=${KUBE_N:-10000}
EVENTS=${KUBE_EVENTS:-1000}
REPS=${KUBE_REPS:-2}
RAW=${KUBE_RAW:-}
M=${KUBE_BACKENDS:-50}
GAP=${KUBE_GAP_MS:-20}
PROBE=${KUBE_PROBE_US:-200}
STATUS_SECS=${KUBE_STATUS_SECS:-30}
PY=/usr/bin/python3
PORT=6443
EP_A=198.51.100.2
EP_B=203.0.113.2

fail() { echo "kube-scale: $*" >&2; exit 1; }
log() { echo "  [kube] $*" >&2; }
[ "$(id -u)" = 0 ] || fail "needs root"
for b in "$KB" "$LOAD"; do [ -x "$b" ] || fail "$b is missing; run 'make all' first"; done
"$PY" -c 'import yaml' 2>/dev/null && command -v openssl >/dev/null && command -v curl >/dev/null && command -v jq >/dev/null ||
	fail "python3 with python3-yaml, openssl, curl and jq are needed: run 'make deps'"
[ "$N" -ge "$M" ] 2>/dev/null || fail "KUBE_N must be at least KUBE_BACKENDS ($M)"
STEP=$((N / M))
LAST=$((STEP * (M - 1)))

# shellcheck source=scripts/topology.sh
. scripts/topology.sh
# shellcheck disable=SC2034  # read by topology.sh
TOPO_QUIET=1 TOPO_KB_STAMP=1
topo_init "kbkube$$"
trap topo_down EXIT
trap 'echo "kube-scale: interrupted, cleaning up" >&2; exit 130' INT
trap 'exit 143' TERM

topo_up || fail "could not build the topology"
[ -n "$RAW" ] || RAW=$TOPO_TMP/raw
: >"$RAW"
API=$TOPO_TMP/api
CTL=$API/control.sock
ctl() { curl -sf --max-time 120 --unix-socket "$CTL" -X POST "$@"; }
kst() { "$KB" status -o json 2>/dev/null; }
now() { echo "$EPOCHREALTIME"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
# CPU seconds: of a process (utime + stime from /proc/PID/stat, 100 Hz ticks), and of the daemon's threads (schedstat).
cpu_stat() { awk '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' /proc/"$1"/stat; }
cpu_sched() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.2f", t / 1e9 }'; }

# ---------------------------------------------------------------- the endpoints and the API server

topo_bg be1 "$LOAD" serve --tcp "$EP_A:8080" --id a
topo_bg be2 "$LOAD" serve --tcp "$EP_B:8080" --id b
topo_wait_listen be1 "$EP_A:8080" && topo_wait_listen be2 "$EP_B:8080" || fail "the endpoint servers did not start"

mkdir -m 700 "$API" && tests/kube/make-certs.sh "$API" || fail "could not make the certificates"
echo "kb-$$" >"$API/token"
echo "bench-$$" >"$API/bench-token"
printf 'kb-%s,kbackend\nbench-%s,bench\n' $$ $$ >"$API/tokens.csv"
cat >"$API/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: bench
contexts:
- name: bench
  context: {cluster: bench, user: kbackend}
clusters:
- name: bench
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority: $API/ca.pem
users:
- name: kbackend
  user:
    tokenFile: $API/token
EOF
topo_bg node "$PY" tests/kube/apiserver.py --cert "$API/server.pem" --key "$API/server.key" --tokens "$API/tokens.csv" \
	--listen=-:$PORT --control "$CTL" --ready-file "$API/ready.json" --bookmark-interval 3600
API_PID=$TOPO_LAST_PID
for _ in $(seq 300); do
	[ -e "$API/ready.json" ] && break
	kill -0 "$API_PID" 2>/dev/null || { cat "$TOPO_LAST_LOG" >&2; fail "the API server exited"; }
	sleep 0.1
done
[ -e "$API/ready.json" ] || fail "the API server did not start"

log "generating $N Backends ($((2 * N + (N + 63) / 64 + 1)) objects)"
gen() { awk -v N="$1" -f bench/scale-gen.awk; }
gen "$N" | "$PY" bench/kube-client.py seed 0 "$LAST" "$STEP" "$EP_A:8080" >"$API/objects.json" || fail "could not generate the objects"
NOBJ=$(jq length "$API/objects.json")

# stamp PATTERN [FROM]: the wall time of the first daemon log line matching PATTERN (after stamp FROM).
stamp() { awk -v p="$1" -v f="${2:-0}" '$1 > f && $0 ~ p { print $1; exit }' "$TOPO_TMP/daemon.log"; }

# ---------------------------------------------------------------- repetitions

# sync MODE: a fresh daemon (status: as by default; nostatus: --no-status) syncs the objects, loaded anew.
sync() {
	local mode=$1 t0 t1 ok api0 api1 kbcpu w l s p rl rms pa va co pr so line
	local args=(--kubeconfig "$API/kubeconfig" --enable-backend --max-frontends 131072 --max-endpoints 131072 -v)
	[ "$mode" = nostatus ] && args+=(--no-status)
	topo_kb_stop
	rm -rf "$TOPO_TMP/state"
	ctl --data-binary @"$API/objects.json" http://x/restart >/dev/null || fail "the API server refused the objects"
	sleep 1	# the watches of the last daemon are gone and the server is idle
	api0=$(cpu_stat "$API_PID")
	t0=$(now)
	topo_kb_start "$KB" "${args[@]}" || fail "the daemon did not start"
	for _ in $(seq 1200); do
		[ "$(kst | jq -r '"\(.kubernetes.synced) \(.frontends)"')" = "true $N" ] && { ok=1; break; }
		sleep 0.05
	done
	t1=$(now)
	[ -n "$ok" ] || fail "rep $REP: not synced with $N frontends after 60 s: $(kst | jq -c '{frontends, k: .kubernetes | {synced, objects, lastError}}')"
	api1=$(cpu_stat "$API_PID")
	kbcpu=$(cpu_sched "$TOPO_KB_PID")
	w=$(stamp 'kubernetes: watching')
	l=$(awk '/kubernetes: .* listed: / { t = $1 } END { print t }' "$TOPO_TMP/daemon.log")
	s=$(stamp 'every kind listed: synced')
	p=$(stamp 'object\\(s\\) are the state')
	rl=$(grep -m1 'replaced: .*programmed in' "$TOPO_TMP/daemon.log" |
		sed -n 's/.*programmed in \([0-9.]*\) ms (\([^:]*\): .*parse \([0-9.]*\), validate \([0-9.]*\), compile \([0-9.]*\), program \([0-9.]*\), store \([0-9.]*\)).*/\1 \3 \4 \5 \6 \7/p')
	read -r rms pa va co pr so <<<"${rl:-- - - - - -}"
	line="sync rep=$REP mode=$mode n=$N objects=$NOBJ status_ms=$(ms "$t0" "$t1") watching_ms=$(ms "$t0" "$w") listed_ms=$(ms "$t0" "$l")"
	line="$line synced_ms=$(ms "$t0" "$s") programmed_ms=$(ms "$t0" "$p") replace_ms=$rms parse=$pa validate=$va compile=$co program=$pr store=$so"
	line="$line daemon_cpu_s=$kbcpu api_cpu_s=$(awk -v a="$api0" -v b="$api1" 'BEGIN { printf "%.2f", b - a }')"
	line="$line api_rss_kib=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/"$API_PID"/status)"
	line="$line kb_rss_kib=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/"$TOPO_KB_PID"/status)"
	echo "$line" >>"$RAW"
	log "$line"
	SYNCED_AT=$t1
}

for REP in $(seq "$REPS"); do
	# As by default: the status writer writes every object's status back after the sync; its pace is
	# measured over STATUS_SECS (finishing 20,000 objects against the test server takes minutes).
	sync status
	sleep "$STATUS_SECS"
	st=$(kst | jq -r '.kubernetes.statusWriter | "writes=\(.writes) unchanged=\(.unchanged) errors=\(.errors) pending=\(.pending)"')
	echo "status rep=$REP after_s=$(awk -v a="$SYNCED_AT" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') $st" >>"$RAW"
	log "$(tail -1 "$RAW")"

	# The events, on a daemon that writes no status: nothing else loads the server meanwhile.
	sync nostatus
	list=$(topo_in node "$PY" bench/kube-client.py list "https://127.0.0.1:$PORT" "$API/ca.pem" "$API/bench-token") ||
		fail "the server-only list failed"
	echo "server rep=$REP $list" >>"$RAW"
	sleep 1

	from=$(wc -l <"$TOPO_TMP/daemon.log")
	rel0=$(kst | jq '[.kubernetes.kinds[].relists] | add')
	log "rep $REP: $EVENTS events over $M Backends"
	topo_client "$PY" bench/kube-client.py events "https://127.0.0.1:$PORT" "$API/ca.pem" "$API/bench-token" "$EVENTS" \
		0 "$LAST" "$STEP" "$EP_A" "$EP_B" 8080 "$GAP" "$PROBE" >"$TOPO_TMP/events.txt" || fail "the event client failed"
	sleep 0.5
	rel1=$(kst | jq '[.kubernetes.kinds[].relists] | add')
	# Each event's first "applied" line after its write: when it was written, and its own figure.
	tail -n +"$((from + 1))" "$TOPO_TMP/daemon.log" | awk -v rep="$REP" '
	FNR == NR && / applied: .*programmed in / {
		x = $0; sub(/.*programmed in /, "", x); d = x + 0
		mode = $0 ~ /programmed in [0-9.]+ ms \(scoped:/ ? "scoped" : "whole"
		at[++na] = $1; dm[na] = d; md[na] = mode; next
	}
	FNR != NR && $1 == "kevent" {
		for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) }
		while (j < na && at[j + 1] < F["t0"]) j++
		lm = "-"; d = "-"; mode = "-"
		if (j < na) { lm = sprintf("%.2f", (at[j + 1] - F["t0"]) * 1000); d = dm[j + 1]; mode = md[j + 1]; j++ }
		printf "event rep=%s i=%s be=%s e2e_ms=%s resp_ms=%s log_ms=%s daemon_ms=%s mode=%s probes=%s\n", rep, F["i"], F["be"],
			F["e2e_ms"], F["resp_ms"], lm, d, mode, F["probes"]
	}' - "$TOPO_TMP/events.txt" >>"$RAW"
	echo "relists rep=$REP during_events=$((rel1 - rel0))" >>"$RAW"
	log "rep $REP: $(grep -c "^event rep=$REP " "$RAW") events, $(grep "^event rep=$REP " "$RAW" | grep -c 'e2e_ms=-') did not land"
done
topo_kb_stop

# ---------------------------------------------------------------- report

awk -v n="$N" -v m="$M" -v gap="$GAP" -v probe="$PROBE" '
function kv(   i, p) { delete F; for (i = 2; i <= NF; i++) { p = index($i, "="); F[substr($i, 1, p - 1)] = substr($i, p + 1) } }
function sortn(a, k,   i, j, t) { for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t } }
# q(A, K, P): the P-quantile (nearest rank) of A[1..K], sorted in place.
function q(a, k, p,   r) { if (!k) return -1; sortn(a, k); r = int(p * k + 0.999999); return a[r < 1 ? 1 : r] }
function f(v, d) { return v < 0 ? "-" : sprintf("%." d "f", v) }
$1 == "sync" { kv(); r = F["rep"] "/" F["mode"]; R[++nr] = r; for (k in F) S[r, k] = F[k] }
$1 == "status" { kv(); for (k in F) ST[F["rep"], k] = F[k] }
$1 == "server" { kv(); for (k in F) SV[F["rep"], k] = F[k] }
$1 == "relists" { kv(); RL[F["rep"]] = F["during_events"] }
$1 == "event" { kv(); r = F["rep"]; if (!(r in ne)) ER[++ner] = r; ne[r]++
	if (F["e2e_ms"] == "-") lost[r]++; else E2E[r, ++n2[r]] = F["e2e_ms"] + 0
	if (F["log_ms"] != "-") LG[r, ++nl[r]] = F["log_ms"] + 0
	if (F["daemon_ms"] != "-") DM[r, ++nd[r]] = F["daemon_ms"] + 0
	RESP[r, ++nq[r]] = F["resp_ms"] + 0
	if (F["mode"] != "scoped") whole[r]++ }
END {
	printf "Initial sync of %d Backends (%s objects) by a fresh daemon, seconds from its start:\n\n", n, S[R[1], "objects"]
	printf "| run | status writes | `status` shows them (polled) | maps programmed (daemon log) | of which: to \"watching\" | lists (to the last kind listed) | replace | parse / validate / compile / program / store, ms | daemon CPU s | API server CPU s | server alone: the same lists |\n"
	printf "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n"
	for (i = 1; i <= nr; i++) {
		r = R[i]; rep = S[r, "rep"]
		printf "| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s / %s / %s / %s / %s | %s | %s | %s |\n", rep,
			S[r, "mode"] == "status" ? "on (default)" : "off (--no-status)",
			S[r, "status_ms"] / 1000, S[r, "programmed_ms"] / 1000, S[r, "watching_ms"] / 1000,
			(S[r, "listed_ms"] - S[r, "watching_ms"]) / 1000, S[r, "replace_ms"] / 1000, S[r, "parse"], S[r, "validate"],
			S[r, "compile"], S[r, "program"], S[r, "store"], S[r, "daemon_cpu_s"], S[r, "api_cpu_s"],
			S[r, "mode"] == "status" ? "" : sprintf("%s (%s pages)", SV[rep, "list_s"], SV[rep, "pages"])
	}
	printf "\nStatus written back by the daemon with status writes on, after the sync:"
	for (i = 1; i <= nr; i++) {
		rep = S[R[i], "rep"]; if (S[R[i], "mode"] != "status") continue
		printf " run %d: %d writes in %.0f s (%.0f/s), %d still pending;", rep, ST[rep, "writes"], ST[rep, "after_s"],
			ST[rep, "writes"] / (ST[rep, "after_s"] > 0 ? ST[rep, "after_s"] : 1), ST[rep, "pending"]
	}
	printf "\n"
	printf "\nOne MODIFIED event with those objects stored (%d Backends in turn, each flipping its endpoint), ms:\n\n", m
	printf "| run | events | e2e median | e2e p99 | e2e max | write answered (median) | log: write to \"applied\" median / p99 | daemon pipeline median / p99 | not scoped | lost | relists |\n"
	printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
	for (i = 1; i <= ner; i++) {
		r = ER[i]
		delete A; for (k = 1; k <= n2[r]; k++) A[k] = E2E[r, k]
		e50 = q(A, n2[r], 0.5); e99 = q(A, n2[r], 0.99); emax = n2[r] ? A[n2[r]] : -1
		delete A; for (k = 1; k <= nl[r]; k++) A[k] = LG[r, k]; l50 = q(A, nl[r], 0.5); l99 = q(A, nl[r], 0.99)
		delete A; for (k = 1; k <= nd[r]; k++) A[k] = DM[r, k]; d50 = q(A, nd[r], 0.5); d99 = q(A, nd[r], 0.99)
		delete A; for (k = 1; k <= nq[r]; k++) A[k] = RESP[r, k]; q50 = q(A, nq[r], 0.5)
		printf "| %d | %d | %s | %s | %s | %s | %s / %s | %s / %s | %d | %d | %s |\n", r, ne[r], f(e50, 1), f(e99, 1), f(emax, 1),
			f(q50, 1), f(l50, 1), f(l99, 1), f(d50, 2), f(d99, 2), whole[r], lost[r], RL[r]
	}
	printf "\nConnects every %d us until one lands on the new endpoint; %d ms between events. ", probe, gap
	printf "p99: nearest rank. \"not scoped\": events the daemon took through a whole replace.\n"
}' "$RAW"
