#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in Kubernetes API server for tests/e2e/test_kube.c until tests/kube/apiserver.py lands.

Follows the documented API conventions that kbackend's client and kubectl use:
HTTPS with a CA it makes (openssl), bearer-token authentication, discovery
(/api, /apis, /apis/GROUP/VERSION), list with limit/continue, watch streams
(ADDED, MODIFIED, DELETED, BOOKMARK, 410 Gone), create/get/replace/delete,
the status subresource with optimistic concurrency (409), generation, Leases.
Listens on 127.0.0.1 only. Faults: write a name to DIR/fault and send SIGUSR1:
  drop-watches  every watch stream is cut mid-stream
  compact       history compacted: watches and continues from before get 410
  errors-on     every request answers 500 until errors-off
  restart       a new history (resourceVersions jump), every watch cut, old ones 410
  rotate-token  a new bearer token (written to DIR/token); the old one is refused from now on, watches cut
"""
import argparse, json, os, signal, ssl, subprocess, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

RES = {  # (group, version) -> [(plural, kind, namespaced)]
    ("gateway.networking.k8s.io", "v1"): [("gatewayclasses", "GatewayClass", False), ("gateways", "Gateway", True),
                                          ("httproutes", "HTTPRoute", True), ("grpcroutes", "GRPCRoute", True)],
    ("gateway.networking.k8s.io", "v1alpha2"): [("tcproutes", "TCPRoute", True), ("tlsroutes", "TLSRoute", True),
                                                ("udproutes", "UDPRoute", True)],
    ("gateway.networking.k8s.io", "v1beta1"): [("referencegrants", "ReferenceGrant", True)],
    ("gateway.envoyproxy.io", "v1alpha1"): [("backends", "Backend", True),
                                            ("backendtrafficpolicies", "BackendTrafficPolicy", True)],
    ("", "v1"): [("services", "Service", True), ("namespaces", "Namespace", False)],
    ("discovery.k8s.io", "v1"): [("endpointslices", "EndpointSlice", True)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
}
cond = threading.Condition()
S = {"objs": {}, "rv": 1, "events": [], "compacted": 0, "epoch": 0, "errors": False}


def record(plural, typ, o):
    """Under cond: a new resourceVersion for o and an event for watchers."""
    S["rv"] += 1
    o["metadata"]["resourceVersion"] = str(S["rv"])
    S["events"].append((S["rv"], plural, typ, json.loads(json.dumps(o))))
    cond.notify_all()


def status(code, reason, msg=""):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": msg or reason}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        sys.stderr.write("%s %s\n" % (self.command, self.path))

    def send(self, code, body):
        b = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def route(self):
        """(group, version, namespace, plural, name, sub) or None for discovery paths handled here."""
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.send(401, status(401, "Unauthorized"))
            return None
        if S["errors"]:
            self.send(500, status(500, "InternalError", "injected"))
            return None
        u = urlparse(self.path)
        p = [x for x in u.path.split("/") if x]
        if p == ["api"]:
            self.send(200, {"kind": "APIVersions", "versions": ["v1"]})
            return None
        if p == ["apis"]:
            groups = {}
            for (g, v) in RES:
                if g:
                    groups.setdefault(g, []).append(v)
            self.send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": g + "/" + v, "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": g + "/" + vs[0], "version": vs[0]}} for g, vs in groups.items()]})
            return None
        if p[0] == "api":
            g, rest = "", p[1:]
        elif p[0] == "apis" and len(p) >= 3:
            g, rest = p[1], p[2:]
        else:
            self.send(404, status(404, "NotFound"))
            return None
        v, rest = rest[0], rest[1:]
        if (g, v) not in RES:
            self.send(404, status(404, "NotFound"))
            return None
        if not rest:
            self.send(200, {"kind": "APIResourceList", "groupVersion": (g + "/" if g else "") + v, "resources": [
                {"name": pl, "singularName": k.lower(), "kind": k, "namespaced": ns,
                 "verbs": ["create", "delete", "get", "list", "update", "watch", "patch"]} for pl, k, ns in RES[(g, v)]] +
                [{"name": pl + "/status", "kind": k, "namespaced": ns, "verbs": ["get", "update"]}
                 for pl, k, ns in RES[(g, v)]]})
            return None
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        plural = rest[0]
        if plural not in [r[0] for r in RES[(g, v)]]:
            self.send(404, status(404, "NotFound"))
            return None
        return g, v, ns, plural, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None, parse_qs(u.query)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        r = self.route()
        if not r:
            return
        g, v, ns, plural, name, sub, q = r
        if name:
            with cond:
                o = S["objs"].get((plural, ns, name))
            return self.send(200, o) if o else self.send(404, status(404, "NotFound"))
        if "watch" in q:
            return self.watch(plural, ns, q)
        limit = int(q.get("limit", ["0"])[0])
        with cond:
            if "continue" in q:
                start_rv, skip = [int(x) for x in q["continue"][0].split(":")]
                if start_rv < S["compacted"]:
                    return self.send(410, status(410, "Expired", "continue token expired"))
            else:
                start_rv, skip = S["rv"], 0
            items = sorted([o for (pl, n_s, nm), o in S["objs"].items() if pl == plural and (not ns or n_s == ns)],
                           key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            rv = S["rv"]
        page = items[skip:skip + limit] if limit else items[skip:]
        md = {"resourceVersion": str(rv if "continue" not in q else start_rv)}
        if limit and skip + limit < len(items):
            md["continue"] = "%d:%d" % (start_rv, skip + limit)
        self.send(200, {"kind": "List", "apiVersion": "v1", "metadata": md, "items": page})

    def watch(self, plural, ns, q):
        since = int(q.get("resourceVersion", ["0"])[0] or 0)
        with cond:
            epoch = S["epoch"]
            if since and since < S["compacted"]:
                return self.send(410, status(410, "Expired", "too old resource version"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        end = time.time() + int(q.get("timeoutSeconds", ["60"])[0])
        last_bm = time.time()

        def out(d):
            line = (json.dumps(d) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        try:
            while time.time() < end:
                with cond:
                    cond.wait(0.5)
                    if S["epoch"] != epoch:
                        return  # dropped mid-stream: no closing chunk
                    todo = [e for e in S["events"] if e[0] > since and e[1] == plural and
                            (not ns or e[3]["metadata"].get("namespace") == ns)]
                    rv = S["rv"]
                for e in todo:
                    since = e[0]
                    out({"type": e[2], "object": e[3]})
                if q.get("allowWatchBookmarks") == ["true"] and time.time() - last_bm > 2:
                    out({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(rv)}}})
                    since, last_bm = max(since, rv), time.time()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.close_connection = True

    def do_POST(self):
        r = self.route()
        if not r:
            return
        g, v, ns, plural, name, sub, q = r
        o = self.body()
        o.setdefault("metadata", {})
        if ns:
            o["metadata"]["namespace"] = ns
        k = (plural, ns, o["metadata"].get("name", ""))
        with cond:
            if k in S["objs"]:
                return self.send(409, status(409, "AlreadyExists"))
            o["metadata"]["generation"] = 1
            o["metadata"]["uid"] = "uid-%d" % S["rv"]
            o["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            o.pop("status", None)
            S["objs"][k] = o
            record(plural, "ADDED", o)
            self.send(201, o)

    def do_PUT(self):
        r = self.route()
        if not r:
            return
        g, v, ns, plural, name, sub, q = r
        o = self.body()
        k = (plural, ns, name)
        with cond:
            cur = S["objs"].get(k)
            if not cur:
                return self.send(404, status(404, "NotFound"))
            want = o.get("metadata", {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                return self.send(409, status(409, "Conflict", "the object has been modified"))
            new = json.loads(json.dumps(cur))
            if sub == "status":
                new["status"] = o.get("status", {})
            else:
                new["spec"] = o.get("spec")
                new["metadata"]["labels"] = o.get("metadata", {}).get("labels")
                if new.get("spec") != cur.get("spec"):
                    new["metadata"]["generation"] = cur["metadata"].get("generation", 1) + 1
            S["objs"][k] = new
            record(plural, "MODIFIED", new)
            self.send(200, new)

    def do_DELETE(self):
        r = self.route()
        if not r:
            return
        g, v, ns, plural, name, sub, q = r
        with cond:
            o = S["objs"].pop((plural, ns, name), None)
            if not o:
                return self.send(404, status(404, "NotFound"))
            record(plural, "DELETED", o)
            self.send(200, o)


def fault(signum, frame):
    name = open(os.path.join(ARGS.dir, "fault")).read().strip()
    with cond:
        if name == "drop-watches":
            S["epoch"] += 1
        elif name == "compact":
            S["compacted"] = S["rv"] + 1
            S["events"] = []
            S["epoch"] += 1
        elif name == "errors-on":
            S["errors"] = True
            S["epoch"] += 1
        elif name == "errors-off":
            S["errors"] = False
        elif name == "rotate-token":
            global TOKEN
            TOKEN = os.urandom(16).hex()
            open(ARGS.dir + "/token.new", "w").write(TOKEN + "\n")
            os.rename(ARGS.dir + "/token.new", ARGS.dir + "/token")
            S["epoch"] += 1
        elif name == "restart":
            S["rv"] += 1000
            S["compacted"] = S["rv"] + 1
            S["events"] = []
            S["epoch"] += 1
            for o in S["objs"].values():
                o["metadata"]["resourceVersion"] = str(S["rv"])
        cond.notify_all()
    open(os.path.join(ARGS.dir, "fault.done"), "w").write(name + "\n")


def make_certs(d):
    run = lambda *a: subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kbt-test-ca",
        "-keyout", d + "/ca.key", "-out", d + "/ca.crt")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", d + "/server.key",
        "-out", d + "/server.csr")
    open(d + "/san.ext", "w").write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", d + "/san.ext", "-out", d + "/server.crt")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ARGS = ap.parse_args()
    os.makedirs(ARGS.dir, exist_ok=True)
    make_certs(ARGS.dir)
    TOKEN = os.urandom(16).hex()
    open(ARGS.dir + "/token", "w").write(TOKEN + "\n")
    signal.signal(signal.SIGUSR1, fault)
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), H)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.dir + "/server.crt", ARGS.dir + "/server.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    open(ARGS.dir + "/ready", "w").write("%d\n" % os.getpid())
    srv.serve_forever()
