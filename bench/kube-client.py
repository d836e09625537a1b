#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# bench/kube-scale.sh's client of the test API server (tests/kube/apiserver.py); standard
# library and PyYAML (Debian's python3-yaml) only.
#
#   kube-client.py seed FIRST LAST STEP ADDR:PORT < scale.yaml > objects.json
#       bench/scale-gen.awk's manifest as the JSON list POST /restart loads, plus GatewayClass
#       eg of controller kbackend.io/gateway-controller; Backends be-FIRST, be-(FIRST+STEP) ...
#       up to be-LAST (the ones the events change) get the single endpoint ADDR:PORT instead of
#       their ten, so that a connect to their frontend always lands on a listener.
#   kube-client.py list SERVER CA TOKEN
#       the paginated lists kbackend makes at start (every kind, limit=500, continue), one
#       after the other, bodies read and dropped: what serving the sync costs the server.
#       Prints "list_s=S pages=P bytes=B".
#   kube-client.py events SERVER CA TOKEN N FIRST LAST STEP ADDR1 ADDR2 PORT GAP_MS PROBE_US
#       N events, each a merge PATCH of one Backend's endpoints (the Backends in turn, each
#       flipping between ADDR1 and ADDR2) over one kept-alive HTTPS connection, then connects
#       to that Backend's frontend until one reaches the new endpoint (kbload serve --id
#       answers with its id: a or b). One line an event on stdout:
#       "kevent i=I be=K t0=WALL resp_ms=R e2e_ms=E probes=P" (t0: time.time() before the
#       request; R: until the server answered; E: until the connect that landed), or with
#       e2e_ms=- after 10 s without landing. Run it in the node netns, in the daemon's cgroup.
import http.client
import json
import re
import socket
import ssl
import sys
import time

CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "eg"}, "spec": {"controllerName": "kbackend.io/gateway-controller"}}
# The kinds kbackend lists (user/kube/kube_watch.c), at the versions the test server serves.
KINDS = ["/apis/gateway.networking.k8s.io/v1/gatewayclasses", "/apis/gateway.networking.k8s.io/v1/gateways",
         "/apis/gateway.networking.k8s.io/v1/httproutes", "/apis/gateway.networking.k8s.io/v1/grpcroutes",
         "/apis/gateway.networking.k8s.io/v1alpha2/tlsroutes", "/apis/gateway.networking.k8s.io/v1alpha2/tcproutes",
         "/apis/gateway.networking.k8s.io/v1alpha2/udproutes",
         "/apis/gateway.networking.k8s.io/v1beta1/referencegrants",
         "/apis/gateway.envoyproxy.io/v1alpha1/backends", "/apis/gateway.envoyproxy.io/v1alpha1/backendtrafficpolicies",
         "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices",
         "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports", "/api/v1/namespaces"]


def endpoint(addr):
    a, p = addr.rsplit(":", 1)
    return [{"ip": {"address": a, "port": int(p)}}]


def seed(first, last, step, addr):
    import yaml
    changed = {f"be-{k}" for k in range(first, last + 1, step)}
    objs = [CLASS]
    for o in yaml.load_all(sys.stdin, Loader=yaml.CSafeLoader):
        if o is None:
            continue
        if o["kind"] == "Backend" and o["metadata"]["name"] in changed:
            o["spec"]["endpoints"] = endpoint(addr)
        objs.append(o)
    json.dump(objs, sys.stdout, separators=(",", ":"))


def connection(server, ca):
    host, port = server.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)


def list_all(server, ca, token):
    conn = connection(server, ca)
    hdrs = {"Authorization": "Bearer " + token, "Accept": "application/json"}
    pages = size = 0
    t0 = time.monotonic()
    for path in KINDS:
        cont = ""
        while True:
            conn.request("GET", f"{path}?limit=500" + (f"&continue={cont}" if cont else ""), headers=hdrs)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                sys.exit(f"kube-client: GET {path}: HTTP {r.status}")
            pages += 1
            size += len(body)
            m = re.search(rb'"continue":"([^"]*)"', body[:4096]) or re.search(rb'"continue":"([^"]*)"', body)
            cont = m.group(1).decode() if m else ""
            if not cont:
                break
    print(f"list_s={time.monotonic() - t0:.3f} pages={pages} bytes={size}")


def frontend(k):
    """bench/scale-gen.awk: Backend k's route holds listener l(k%64) of Gateway gw-(k/64)."""
    g = k // 64
    return (f"198.19.{g // 250}.{g % 250 + 1}", 10000 + k % 64)


def probe(fe):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(fe)
        s.sendall(b"x" * 8)
        return s.recv(64).strip()
    except OSError:
        return b""
    finally:
        s.close()


def events(server, ca, token, n, first, last, step, a1, a2, port, gap_ms, probe_us):
    conn = connection(server, ca)
    hdrs = {"Authorization": "Bearer " + token, "Content-Type": "application/merge-patch+json",
            "User-Agent": "kube-scale-bench"}
    bes = list(range(first, last + 1, step))
    flips = {k: 0 for k in bes}
    for i in range(n):
        k = bes[i % len(bes)]
        flips[k] += 1
        addr, want = (a2, b"b") if flips[k] % 2 else (a1, b"a")
        body = json.dumps({"spec": {"endpoints": endpoint(f"{addr}:{port}")}})
        fe = frontend(k)
        t0w, t0 = time.time(), time.monotonic()
        conn.request("PATCH", f"/apis/gateway.envoyproxy.io/v1alpha1/namespaces/bench/backends/be-{k}",
                     body=body, headers=hdrs)
        r = conn.getresponse()
        r.read()
        t1 = time.monotonic()
        if r.status != 200:
            sys.exit(f"kube-client: PATCH be-{k}: HTTP {r.status}")
        probes, e2e = 0, "-"
        while time.monotonic() - t0 < 10:
            probes += 1
            if probe(fe) == want:
                e2e = f"{(time.monotonic() - t0) * 1000:.2f}"
                break
            if probe_us:
                time.sleep(probe_us / 1e6)
        print(f"kevent i={i + 1} be={k} t0={t0w:.6f} resp_ms={(t1 - t0) * 1000:.2f} e2e_ms={e2e} probes={probes}",
              flush=True)
        time.sleep(gap_ms / 1000)


def main():
    a = sys.argv[1:]
    if a[:1] == ["seed"] and len(a) == 5:
        seed(int(a[1]), int(a[2]), int(a[3]), a[4])
    elif a[:1] == ["list"] and len(a) == 4:
        list_all(a[1], a[2], open(a[3]).read().strip())
    elif a[:1] == ["events"] and len(a) == 13:
        events(a[1], a[2], open(a[3]).read().strip(), int(a[4]), int(a[5]), int(a[6]), int(a[7]), a[8], a[9],
               int(a[10]), float(a[11]), float(a[12]))
    else:
        sys.exit("usage: see the head of bench/kube-client.py")


if __name__ == "__main__":
    main()
