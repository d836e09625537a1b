#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# TAP checks of the test API server (tests/kube/apiserver.py) against real clients: Debian's
# kubectl creates, gets, lists, updates, watches and deletes a Backend, a Gateway and an
# EndpointSlice; curl checks pagination, 410s, bookmarks, the status subresource and every
# fault control. The server listens in two network namespaces this test makes (one store).
set -u
cd "$(dirname "$0")/../.." || exit 1
PLAN=34
echo "1..$PLAN"
n=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
skip_all() {
	local i
	if [ -n "${CI:-}" ] && [ "$CI" != false ] && [ "$CI" != 0 ]; then
		for i in $(seq 1 $PLAN); do echo "not ok $i - $1"; done
		exit 1
	fi
	for i in $(seq 1 $PLAN); do echo "ok $i # SKIP $1"; done
	exit 0
}
fail_all() {
	local i
	for i in $(seq $((n + 1)) $PLAN); do echo "not ok $i - $1"; done
	exit 1
}
[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces)"

# Debian's kubectl: unpacked by scripts/deps.sh where another package owns /usr/bin/kubectl.
KUBECTL=/var/cache/kbackend-kubectl/usr/bin/kubectl
if [ ! -x "$KUBECTL" ]; then
	[ "$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1)" = kubernetes-client ] || fail_all "Debian's kubectl is missing: run make deps"
	KUBECTL=/usr/bin/kubectl
fi
PY=/usr/bin/python3
for t in $PY openssl curl; do command -v "$t" >/dev/null || fail_all "$t is missing: run make deps"; done
echo "# $($KUBECTL version --client --short 2>/dev/null || $KUBECTL version --client)"

work=$(mktemp -d /tmp/kb-apiserver-t.XXXXXX)
ns1=kb-api1-$$ ns2=kb-api2-$$ pid="" bg=""
cleanup() {
	local p
	for p in $bg; do kill "$p" 2>/dev/null; done
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	ip netns del "$ns1" 2>/dev/null
	ip netns del "$ns2" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
for ns in $ns1 $ns2; do
	ip netns add "$ns" && nsenter --net="/run/netns/$ns" ip link set lo up || fail_all "cannot make netns $ns"
done
tests/kube/make-certs.sh "$work" || fail_all "make-certs.sh failed"
echo "tok1,node1" >"$work/tokens.csv"
CTL=$work/control.sock
$PY tests/kube/apiserver.py --cert "$work/server.pem" --key "$work/server.key" --tokens "$work/tokens.csv" \
	--listen "/run/netns/$ns1:6443" --listen "/run/netns/$ns2:6443" --control "$CTL" \
	--ready-file "$work/ready.json" --bookmark-interval 5 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do [ -f "$work/ready.json" ] && break; sleep 0.1; done
[ -f "$work/ready.json" ] || { sed 's/^/# /' "$work/server.log"; fail_all "the server did not start"; }

# One JSON value from stdin: jq-like, with a Python expression over d.
js() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ctl() { curl -sS --unix-socket "$CTL" -X "$1" "http://control$2" "${@:3}"; }
# curl in node namespace 1 (or $NS), token tok1 (or $TOK); prints the body, then the code on its own line.
api() {
	nsenter --net="/run/netns/${NS:-$ns1}" curl -sS --cacert "$work/ca.pem" -H "Authorization: Bearer ${TOK:-tok1}" \
		-w '\n%{http_code}\n' "$@"
}
body() { sed '$d'; }
code() { tail -n1; }
URL=https://127.0.0.1:6443
BE=$URL/apis/gateway.envoyproxy.io/v1alpha1/namespaces/default/backends
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: t, cluster: {server: "$URL", certificate-authority: "$work/ca.pem"}}]
users: [{name: u, user: {token: tok1}}]
contexts: [{name: t, context: {cluster: t, user: u, namespace: default}}]
current-context: t
EOF
export HOME=$work
k() { nsenter --net="/run/netns/${NS:-$ns1}" "$KUBECTL" --kubeconfig "$work/kubeconfig" --cache-dir "$work/cache" --request-timeout 20s "$@"; }

# --- kubectl: create, get, list, update, 409, watch, delete
cat >"$work/objs.yaml" <<'EOF'
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: be1, namespace: default}
spec:
  endpoints: [{ip: {address: 198.51.100.10, port: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw1, namespace: default}
spec:
  gatewayClassName: kbackend
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-abc, namespace: default, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [198.51.100.11], conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
EOF
# A watch through kubectl, open before the changes it must see.
k get backends --watch --output-watch-events -o json >"$work/kwatch.out" 2>&1 &
bg="$bg $!"
kw=$!
for _ in $(seq 100); do [ "$(ctl GET /state | js 'd["watches"]')" -ge 1 ] && break; sleep 0.1; done
out=$(k create --validate=false -f "$work/objs.yaml" 2>&1)
echo "$out" | sed 's/^/# /'
[ "$(echo "$out" | grep -c created)" = 3 ]
ok $? "kubectl creates a Backend, a Gateway and an EndpointSlice"

out=$(k get backend be1 -o json | js 'd["metadata"]["uid"] != "" and d["metadata"]["generation"] == 1 and d["spec"]["endpoints"][0]["ip"]["address"] == "198.51.100.10" and int(d["metadata"]["resourceVersion"]) > 1')
ok "$([ "$out" = True ]; echo $?)" "kubectl get -o json: the Backend with uid, generation 1, resourceVersion and its spec"
out=$(k get gateway gw1 -o json | js 'd["spec"]["gatewayClassName"]')$(k get endpointslice svc1-abc -o json | js 'd["endpoints"][0]["addresses"][0]')
ok "$([ "$out" = kbackend198.51.100.11 ]; echo $?)" "kubectl get -o json: the Gateway and the EndpointSlice"
out=$(NS=$ns2 k get backends,gateways,endpointslices -A -o json | js '",".join(sorted(i["metadata"]["name"] for i in d["items"]))')
ok "$([ "$out" = be1,gw1,svc1-abc ]; echo $?)" "kubectl lists all three from the other namespace's listener (one store): $out"
out=$(k get endpointslices -l kubernetes.io/service-name=svc1 -o name; k get endpointslices -l kubernetes.io/service-name=other -o name)
ok "$([ "$out" = endpointslice.discovery.k8s.io/svc1-abc ]; echo $?)" "a label selector picks the slice: $out"

k get backend be1 -o json >"$work/be1.old.json"
k get backend be1 -o json | $PY -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["endpoints"][0]["ip"]["port"]=9090; print(json.dumps(d))' >"$work/be1.new.json"
k replace --validate=false -f "$work/be1.new.json" >/dev/null 2>&1
out=$(k get backend be1 -o json | js 'd["spec"]["endpoints"][0]["ip"]["port"], d["metadata"]["generation"]')
ok "$([ "$out" = "9090 2" ]; echo $?)" "kubectl replace updates the spec and bumps generation: $out"
k label backend be1 team=a >/dev/null 2>&1
out=$(k get backend be1 -o json | js 'd["metadata"]["labels"]["team"], d["metadata"]["generation"]')
ok "$([ "$out" = "a 2" ]; echo $?)" "kubectl label (a merge patch) changes metadata, not generation: $out"
out=$(k replace --validate=false -f "$work/be1.old.json" 2>&1)
echo "$out" | grep -q "the object has been modified"
ok $? "kubectl replace with a stale resourceVersion gets 409 Conflict: $out"
out=$(api -X PUT -H 'Content-Type: application/json' --data-binary @"$work/be1.old.json" "$BE/be1" | code)
ok "$([ "$out" = 409 ]; echo $?)" "the same stale PUT through curl is 409: $out"

out=$(k delete -f "$work/objs.yaml" 2>&1 | grep -c deleted)
ok "$([ "$out" = 3 ]; echo $?)" "kubectl deletes all three"
out=$(k get backend be1 2>&1)
echo "$out" | grep -q 'NotFound\|not found'
ok $? "a deleted Backend is NotFound: $out"
for _ in $(seq 100); do grep -q '"DELETED"' "$work/kwatch.out" && break; sleep 0.1; done
kill "$kw" 2>/dev/null
sed 's/^/# kubectl --watch: /' "$work/kwatch.out" | head -5
out=$($PY -c '
import json, sys
print("".join(json.loads(l)["type"] + "," for l in open(sys.argv[1]) if l.startswith("{")))' "$work/kwatch.out")
ok "$([ "$out" = ADDED,MODIFIED,MODIFIED,DELETED, ]; echo $?)" "kubectl get --watch saw the Backend's events: $out"

# --- authentication
out=$(TOK=bad api "$URL/api/v1/namespaces" | code)$(nsenter --net="/run/netns/$ns1" curl -sS --cacert "$work/ca.pem" -o /dev/null -w '%{http_code}' "$URL/api")
ok "$([ "$out" = 401401 ]; echo $?)" "a bad or missing token gets 401: $out"
printf 'tok2,node2\n' >"$work/tokens.csv"
out=$(api "$URL/api" | code)$(TOK=tok2 api "$URL/api" | code)
printf 'tok1,node1\n' >"$work/tokens.csv"
ok "$([ "$out" = 401200 ]; echo $?)" "a rewritten tokens file is re-read (old token 401, new 200): $out"
ctl POST /tokens --data-binary $'tok3,node3\n' >/dev/null
out=$(api "$URL/api" | code)$(TOK=tok3 api "$URL/api" | code)
printf 'tok1,node1\n' >"$work/tokens.csv"
ok "$([ "$out" = 401200 ]; echo $?)" "POST /tokens rotates the tokens: $out"

# --- pagination, compaction, watch errors, bookmarks
for i in 1 2 3 4 5; do
	api -X POST -H 'Content-Type: application/json' "$BE" \
		-d "{\"apiVersion\":\"gateway.envoyproxy.io/v1alpha1\",\"kind\":\"Backend\",\"metadata\":{\"name\":\"p$i\"},\"spec\":{}}" >/dev/null
done
out=$(api -X POST -H 'Content-Type: application/json' "$BE" \
	-d '{"apiVersion":"gateway.envoyproxy.io/v1alpha1","kind":"Backend","metadata":{"name":"p1"},"spec":{}}' | code)
ok "$([ "$out" = 409 ]; echo $?)" "creating an existing name is 409 AlreadyExists: $out"
names="" cont="" pages=0 first_cont=""
while :; do
	page=$(api "$BE?limit=2${cont:+&continue=$cont}" | body)
	names="$names$(echo "$page" | js '",".join(i["metadata"]["name"] for i in d["items"])'),"
	cont=$(echo "$page" | js 'd["metadata"].get("continue", "")')
	pages=$((pages + 1))
	[ -n "$first_cont" ] || first_cont=$cont
	[ -n "$cont" ] && [ $pages -lt 10 ] || break
done
ok "$([ "$names$pages" = "p1,p2,p3,p4,p5,3" ]; echo $?)" "limit=2 with continue: three pages, every Backend once: $names $pages"
rv=$(api "$BE" | body | js 'd["metadata"]["resourceVersion"]')
api -X DELETE "$BE/p5" >/dev/null
ctl POST /compact >/dev/null
out=$(api "$BE?limit=2&continue=$first_cont" | body | js 'd["code"], d["reason"]')
ok "$([ "$out" = "410 Expired" ]; echo $?)" "a continue token older than the compaction is 410 Expired: $out"
out=$(api "$BE?watch=1&resourceVersion=$rv&timeoutSeconds=5" | body | js 'd["type"], d["object"]["code"]')
ok "$([ "$out" = "ERROR 410" ]; echo $?)" "a watch from a compacted resourceVersion gets an ERROR event with 410: $out"
rv=$(api "$BE" | body | js 'd["metadata"]["resourceVersion"]')
( sleep 0.5; api -X DELETE "$BE/p4" >/dev/null ) &
out=$(api "$BE?watch=1&resourceVersion=$rv&allowWatchBookmarks=true&timeoutSeconds=7" | body | $PY -c '
import json, sys
print(",".join(json.loads(l)["type"] for l in sys.stdin if l.strip()))')
ok "$([[ $out == DELETED,BOOKMARK* ]]; echo $?)" "a watch from the list's resourceVersion sees the DELETED event, then a periodic BOOKMARK: $out"
api "$BE?watch=1&resourceVersion=$rv&allowWatchBookmarks=true&timeoutSeconds=3" >"$work/bm.out" &
w1=$!
api "$BE?watch=1&resourceVersion=$rv&timeoutSeconds=3" >"$work/nobm.out" &
w2=$!
bg="$bg $w1 $w2"
for _ in $(seq 100); do [ "$(ctl GET /state | js 'd["watches"]')" -ge 2 ] && break; sleep 0.1; done
ctl POST /bookmark >/dev/null
wait $w1 $w2
out=$(grep -c BOOKMARK "$work/bm.out")$(grep -c BOOKMARK "$work/nobm.out")
ok "$([ "$out" = 10 ]; echo $?)" "POST /bookmark: a BOOKMARK at once where allowWatchBookmarks, none elsewhere: $out"

# --- the status subresource
cur=$(api "$BE/p1" | body)
echo "$cur" | $PY -c 'import json,sys; d=json.load(sys.stdin); d["status"]={"conditions":[{"type":"Accepted","status":"True"}]}; d["spec"]={"changed":1}; print(json.dumps(d))' >"$work/st.json"
api -X PUT -H 'Content-Type: application/json' -H 'User-Agent: kbackend-test/1' --data-binary @"$work/st.json" "$BE/p1/status" >/dev/null
out=$(api "$BE/p1" | body | js 'd["status"]["conditions"][0]["type"], d["spec"], d["metadata"]["generation"]')
ok "$([ "$out" = "Accepted {} 1" ]; echo $?)" "PUT .../status changes only the status: $out"
cur=$(api "$BE/p1" | body)
echo "$cur" | $PY -c 'import json,sys; d=json.load(sys.stdin); d["status"]={}; d["spec"]={"x":2}; print(json.dumps(d))' >"$work/main.json"
api -X PUT -H 'Content-Type: application/json' --data-binary @"$work/main.json" "$BE/p1" >/dev/null
out=$(api "$BE/p1" | body | js 'd["status"]["conditions"][0]["type"], d["spec"]["x"], d["metadata"]["generation"]')
ok "$([ "$out" = "Accepted 2 2" ]; echo $?)" "PUT on the resource changes the spec, not the status: $out"
api -X PATCH -H 'Content-Type: application/merge-patch+json' -H 'User-Agent: kbackend-test/1' -d '{"status":{"conditions":null,"x":1}}' "$BE/p1/status" >/dev/null
api -X PATCH -H 'Content-Type: application/merge-patch+json' -H 'User-Agent: kbackend-test/1' -d '{"status":{"conditions":null,"x":1}}' "$BE/p1/status" >/dev/null
out=$(api "$BE/p1" | body | js 'd["status"], d["spec"]["x"]')
ok "$([ "$out" = "{'x': 1} 2" ]; echo $?)" "a merge patch of .../status: $out"
out=$(ctl GET /writes | js '";".join("%s %s %s %s" % (w["user"], w["userAgent"], w["code"], w["noop"]) for w in d if w["subresource"] == "status")')
ok "$([ "$out" = "node1 kbackend-test/1 200 False;node1 kbackend-test/1 200 False;node1 kbackend-test/1 200 True" ]; echo $?)" \
	"the write log names each status write's user and User-Agent, the unchanged one as noop: $out"

# --- fault controls
ctl POST '/fail?seconds=60' >/dev/null
out=$(api "$BE" | body | js 'd["kind"], d["code"]')
ctl POST /clear >/dev/null
out="$out/$(api "$BE" | code)"
ok "$([ "$out" = "Status 500/200" ]; echo $?)" "POST /fail answers 500 Status until /clear: $out"
ctl POST '/hang?seconds=3' >/dev/null
api --max-time 1 "$BE" >/dev/null 2>&1
rc=$?
ctl POST /clear >/dev/null
out="$rc/$(api "$BE" | code)"
ok "$([ "$out" = 28/200 ]; echo $?)" "POST /hang: a request gets no answer (curl's timeout, 28) until /clear: $out"
api "$BE?watch=1&timeoutSeconds=60" >"$work/drop.out" 2>&1 &
w=$!
bg="$bg $w"
for _ in $(seq 100); do [ "$(ctl GET /state | js 'd["watches"]')" -ge 1 ] && break; sleep 0.1; done
ctl POST /drop-watches >/dev/null
wait $w
rc=$?
ok "$([ $rc != 0 ] && grep -q ADDED "$work/drop.out"; echo $?)" "POST /drop-watches ends an open watch mid-stream (curl $rc)"
old=$(api "$BE" | body | js 'd["metadata"]["resourceVersion"]')
api "$BE?watch=1&resourceVersion=$old&timeoutSeconds=60" >"$work/restart.out" 2>&1 &
w=$!
bg="$bg $w"
for _ in $(seq 100); do [ "$(ctl GET /state | js 'd["watches"]')" -ge 1 ] && break; sleep 0.1; done
ctl POST '/restart?base=3' >/dev/null
wait $w
rc=$?
new=$(api "$BE" | body | js 'd["metadata"]["resourceVersion"], ",".join(i["metadata"]["name"] for i in d["items"])')
ok "$([ $rc != 0 ] && [ "$new" = "6 p1,p2,p3" ]; echo $?)" "POST /restart?base=3: the watch dropped (curl $rc), objects kept with new resourceVersions: $old -> $new"
out=$(api "$BE?watch=1&resourceVersion=$old&timeoutSeconds=5" | body | js 'd["type"], d["object"]["code"]')
ok "$([ "$out" = "ERROR 504" ]; echo $?)" "a watch from the old history's resourceVersion gets Too large (504): $out"
ctl POST /restart -H 'Content-Type: application/json' \
	--data-binary '[{"apiVersion":"gateway.envoyproxy.io/v1alpha1","kind":"Backend","metadata":{"name":"r1","namespace":"default"},"spec":{}}]' >/dev/null
out=$(api "$BE" | body | js '",".join(i["metadata"]["name"] for i in d["items"]), int(d["metadata"]["resourceVersion"]) > 1000000')
ok "$([ "$out" = "r1 True" ]; echo $?)" "POST /restart with a body replaces the objects: $out"

# --- the rest of the API surface
out=$(api "$URL/apis/example.com/v1/namespaces/default/widgets" | code)$(api "$URL/apis/gateway.envoyproxy.io/v1alpha1/namespaces/default/backendz" | code)
ok "$([ "$out" = 404404 ]; echo $?)" "unknown kinds are 404: $out"
out=$(k get --raw /apis/gateway.envoyproxy.io/v1alpha1 | js '",".join(r["name"] for r in d["resources"])')
ok "$([ "$out" = "backends,backends/status,backendtrafficpolicies,backendtrafficpolicies/status" ]; echo $?)" "discovery lists the group's resources and their status subresources: $out"
L=$URL/apis/coordination.k8s.io/v1/namespaces/kbackend/leases
api -X POST -H 'Content-Type: application/json' "$L" -d '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"kbackend-leader"},"spec":{"holderIdentity":"node1","leaseDurationSeconds":15}}' >/dev/null
lease=$(NS=$ns2 TOK=tok1 api "$L/kbackend-leader" | body)
a=$(echo "$lease" | $PY -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["holderIdentity"]="node2"; print(json.dumps(d))' | NS=$ns2 api -X PUT -H 'Content-Type: application/json' --data-binary @- "$L/kbackend-leader" | code)
b=$(echo "$lease" | $PY -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["holderIdentity"]="node1"; print(json.dumps(d))' | api -X PUT -H 'Content-Type: application/json' --data-binary @- "$L/kbackend-leader" | code)
holder=$(api "$L/kbackend-leader" | body | js 'd["spec"]["holderIdentity"]')
ok "$([ "$a/$b/$holder" = 200/409/node2 ]; echo $?)" "a Lease taken from two namespaces: the second update on the same resourceVersion loses (409): $a/$b/$holder"

[ "$n" = $PLAN ] || echo "# ran $n checks, planned $PLAN"
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=""
grep -q Traceback "$work/server.log" && sed 's/^/# /' "$work/server.log" | head -40
exit 0
