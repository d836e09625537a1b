#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# A test Kubernetes API server for kbackend's Kubernetes source: HTTPS with bearer tokens,
# discovery, CRUD, the status subresource, paginated lists and watches with bookmarks and
# 410s, served on loopback inside any number of network namespaces, with fault controls.
# Python 3 standard library only; a test fixture, not the product (tests/kube/README.md).
#
# Usage:
#   apiserver.py --cert server.pem --key server.key --tokens tokens.csv \
#       --listen /run/netns/node1:6443 --listen -:0 --control /tmp/x/control.sock \
#       [--client-ca ca.pem] [--ready-file F] [--bookmark-interval S] [--history N] [--rv-base N]
#
# Control endpoint: plain HTTP on the unix socket --control (curl --unix-socket S http://x/...):
#   GET  /state                       {"resourceVersion", "compacted", "objects", "watches", ...}
#   POST /drop-watches                end every open watch mid-stream (no final chunk)
#   POST /compact[?rv=N]              forget history up to N (default: now): older RVs get 410
#   POST /fail?seconds=N[&code=500]   answer every API request with a Status CODE for N s
#   POST /hang?seconds=N              read requests, never answer, for N s (watches go silent)
#   POST /clear                       end /fail and /hang now
#   POST /bookmark                    a BOOKMARK now on every watch that allows them
#   POST /restart[?base=N]            a new history from RV N (default +1000000): watches
#                                     dropped, objects kept; a JSON list body replaces them
#   POST /tokens                      the body becomes the tokens file (token,user[,...] lines)
#   GET  /writes[?since=SEQ]          every write: user, userAgent, verb, resource, subresource,
#                                     namespace, name, code, resourceVersion, noop, status
#   GET  /objects                     every stored object (JSON list)
import argparse
import ctypes
import json
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubestore import (ApiError, BY_PATH, KIND_LIST, Store, matches,  # noqa: E402
                       parse_field_selector, parse_label_selector)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def listen_in_netns(netns, port):
    """A loopback listening socket made inside the namespace `netns` ('-': this one).
    setns moves only the calling thread, which returns to its own namespace after."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = None if netns == "-" else os.open(netns, os.O_RDONLY)
    try:
        if target is not None:
            _setns(target)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                s.close()
                raise OSError(e.errno, f"bind 127.0.0.1:{port} in {netns}: {e.strerror} (is lo up there?)")
            s.listen(128)
            return s
        finally:
            if target is not None:
                _setns(own)
    finally:
        os.close(own)
        if target is not None:
            os.close(target)


class Tokens:
    """kube-apiserver's token file format: token,user[,uid[,groups]] a line; re-read on change."""

    def __init__(self, path):
        self.path, self.stamp, self.users = path, None, {}
        self.lock = threading.Lock()

    def user(self, token):
        with self.lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self.stamp:
                    users = {}
                    with open(self.path) as f:
                        for line in f:
                            parts = [p.strip().strip('"') for p in line.strip().split(",")]
                            if parts and parts[0] and not parts[0].startswith("#"):
                                users[parts[0]] = parts[1] if len(parts) > 1 else parts[0]
                    self.users, self.stamp = users, stamp
            except OSError:
                self.users = {}
            return self.users.get(token)


def discovery():
    groups, core = {}, []
    for k in KIND_LIST:
        res = {"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
               "kind": k.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
        if k.short:
            res["shortNames"] = k.short
        if k.group.startswith("gateway."):
            res["categories"] = ["gateway-api"] if k.group == "gateway.networking.k8s.io" else ["envoy-gateway"]
        subs = [res]
        if k.status:
            subs.append({"name": f"{k.plural}/status", "singularName": "", "namespaced": k.namespaced,
                         "kind": k.kind, "verbs": ["get", "patch", "update"]})
        if not k.group:
            core.extend(subs)
        else:
            groups.setdefault(k.group, {}).setdefault(k.version, []).extend(subs)
    return groups, core


GROUPS, CORE = discovery()
PREFERRED = {"gateway.networking.k8s.io": "v1"}


def group_doc(g):
    versions = sorted(GROUPS[g], key=lambda v: (v != PREFERRED.get(g, v), v))
    vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
    return {"name": g, "versions": vs, "preferredVersion": vs[0]}


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kbackend-test-apiserver"
    disable_nagle_algorithm = True   # TCP_NODELAY, as Go sets on every connection: headers and body are two writes
    timeout = 600

    def setup(self):
        self.request.settimeout(30)
        try:
            self.request.do_handshake()   # here, in this connection's thread, not in accept
        except (ssl.SSLError, OSError):
            self.request.close()
            raise
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.cfg.verbose:
            sys.stderr.write("apiserver: %s %s\n" % (self.address_string(), fmt % args))

    # ---- plumbing
    def send_json(self, code, doc, headers=()):
        body = json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for h in headers:
            self.send_header(*h)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self):
        raw = self.read_body()
        try:
            return json.loads(raw or b"null")
        except ValueError as e:
            raise ApiError(400, f"the request body is not JSON: {e}")

    def who(self):
        return (self.user, self.headers.get("User-Agent", ""))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def dispatch(self):
        store, cfg = self.server.store, self.server.cfg
        self.body_read = False
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = url.path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            return self.send_text(200, "ok")
        try:
            if time.time() < store.hang_until:
                self.hang()
                return
            auth = self.headers.get("Authorization", "")
            self.user = None
            if auth.startswith("Bearer "):
                self.user = cfg.tokens.user(auth[7:].strip())
            elif not auth and self.server.client_user(self.request):
                self.user = self.server.client_user(self.request)
            if self.user is None:
                self.drain()
                raise ApiError(401, "Unauthorized")
            if time.time() < store.fail_until:
                self.drain()
                raise ApiError(store.fail_code, "the test API server was told to fail (POST /fail)")
            self.route(path, q)
        except ApiError as e:
            self.drain()
            self.send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            self.close_connection = True

    def drain(self):
        if not self.body_read and self.command in ("POST", "PUT", "PATCH", "DELETE"):
            self.body_read = True
            self.read_body()

    def send_text(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def hang(self):
        store = self.server.store
        while time.time() < store.hang_until:
            time.sleep(0.1)
        self.close_connection = True   # accepted, read, never answered

    # ---- routing
    def route(self, path, q):
        parts = path.strip("/").split("/")
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "20", "gitVersion": "v1.20.0-kbackend-test",
                                        "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
                                        "goVersion": "", "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.server.server_address[1]}]})
        if path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                        "groups": [group_doc(g) for g in sorted(GROUPS)]})
        if path == "/api/v1":
            return self.send_json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": CORE})
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in GROUPS:
            return self.send_json(200, dict(kind="APIGroup", apiVersion="v1", **group_doc(parts[1])))
        if parts[0] == "apis" and len(parts) == 3 and parts[2] in GROUPS.get(parts[1], {}):
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": f"{parts[1]}/{parts[2]}",
                                        "resources": GROUPS[parts[1]][parts[2]]})
        if parts[0] == "api" and len(parts) >= 3 and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        ns = None
        # As kube-apiserver's request info: namespaces/NAME/status is the namespace's own status.
        if rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        kind = BY_PATH.get((group, version, rest[0]))
        if kind is None or len(rest) > 3 or (ns is not None and not kind.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "status" or not kind.status):
            raise ApiError(404, "the server could not find the requested resource")
        if kind.namespaced and name is not None and ns is None:
            raise ApiError(404, "the server could not find the requested resource")
        self.resource(kind, ns or "", name, sub, q)

    def resource(self, kind, ns, name, sub, q):
        store, m = self.server.store, self.command
        if name is None:
            if m == "GET":
                if q.get("watch") in ("1", "true"):
                    return self.watch(kind, ns, q)
                return self.list(kind, ns, q)
            if m == "POST":
                if not kind.namespaced:
                    ns = ""
                elif not ns:
                    raise ApiError(404, "the server could not find the requested resource")
                obj = self.json_body()
                self.body_read = True
                return self.send_json(201, store.create(kind, ns, obj, self.who()))
            raise ApiError(405, f"the server does not allow this method on the requested resource")
        if m in ("GET", "HEAD"):
            return self.send_json(200, store.get(kind, ns, name))
        if m == "PUT":
            obj = self.json_body()
            self.body_read = True
            return self.send_json(200, store.update(kind, ns, name, obj, self.who(), sub=sub))
        if m == "PATCH":
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
            body = self.json_body()
            self.body_read = True
            return self.send_json(200, store.patch(kind, ns, name, ctype, body, self.who(), sub=sub))
        if m == "DELETE" and sub is None:
            opts = self.json_body() or {}
            self.body_read = True
            pre = ((opts.get("preconditions") or {}).get("resourceVersion")) if isinstance(opts, dict) else None
            return self.send_json(200, store.delete(kind, ns, name, self.who(), pre))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def selectors(self, q):
        return parse_label_selector(q.get("labelSelector")), parse_field_selector(q.get("fieldSelector"))

    def list(self, kind, ns, q):
        store = self.server.store
        labels, fields = self.selectors(q)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise ApiError(400, f"limit: invalid value {q.get('limit')!r}")
        want = q.get("resourceVersion")
        if want and want != "0" and not q.get("continue"):
            if not want.isdigit():
                raise ApiError(400, f"invalid resource version {want!r}")
            if int(want) > store.rv:
                raise ApiError(504, f"Too large resource version: {want}, current: {store.rv}", reason="Timeout")
        items, rv, cont, remaining = store.list(kind, ns, labels, fields, limit, q.get("continue"))
        if not kind.crd:   # as kube-apiserver: built-in list items carry no kind/apiVersion
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        md = {"resourceVersion": str(rv)}
        if cont:
            md["continue"] = cont
            md["remainingItemCount"] = remaining
        self.send_json(200, {"kind": kind.kind + "List", "apiVersion": kind.api_version,
                             "metadata": md, "items": items})

    # ---- watch
    def chunk(self, doc):
        data = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def watch(self, kind, ns, q):
        store, cfg = self.server.store, self.server.cfg
        labels, fields = self.selectors(q)
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        try:
            timeout = float(q.get("timeoutSeconds") or 1800)
        except ValueError:
            raise ApiError(400, "timeoutSeconds: not a number")
        deadline = time.time() + timeout
        want = q.get("resourceVersion") or "0"
        if not want.isdigit():
            raise ApiError(400, f"invalid resource version {want!r}")
        first = []
        with store.cond:
            drop_epoch, bm_epoch = store.drop_epoch, store.bookmark_epoch
            if want == "0":   # start from now, with the current objects as ADDED
                pos = store.rv
                objs = store.objects[kind.key]
                first = [{"type": "ADDED", "object": objs[k]} for k in sorted(objs)
                         if (not ns or k[0] == ns) and matches(objs[k], labels, fields)]
            else:
                pos = int(want)
                if pos < store.compacted:
                    first = [{"type": "ERROR", "object": ApiError(
                        410, f"too old resource version: {pos} ({store.compacted})", reason="Expired").status()}]
                    deadline = 0
                elif pos > store.rv:
                    first = [{"type": "ERROR", "object": ApiError(
                        504, f"Too large resource version: {pos}, current: {store.rv}", reason="Timeout").status()}]
                    deadline = 0
            store.watches += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            for ev in first:
                self.chunk(ev)
            next_bm = time.time() + cfg.bookmark_interval
            while True:
                now = time.time()
                if now >= deadline:
                    break
                with store.cond:
                    if store.drop_epoch == drop_epoch and store.rv == pos and store.bookmark_epoch == bm_epoch:
                        store.cond.wait(min(deadline, next_bm) - now if bookmarks else deadline - now)
                    if store.drop_epoch != drop_epoch:
                        self.abort()
                        return
                    if time.time() < store.hang_until:   # silent, neither events nor bookmarks
                        store.cond.wait(0.2)
                        continue
                    if pos < store.compacted:   # fell behind the kept history
                        evs = [{"type": "ERROR", "object": ApiError(
                            410, f"too old resource version: {pos} ({store.compacted})", reason="Expired").status()}]
                        deadline = 0
                    else:
                        evs = [{"type": e.type, "object": e.obj} for e in store.history
                               if e.rv > pos and e.key == kind.key and (not ns or e.ns == ns)
                               and matches(e.obj, labels, fields)]
                        pos = store.rv
                    bm_now = store.bookmark_epoch != bm_epoch
                    bm_epoch = store.bookmark_epoch
                for ev in evs:
                    self.chunk(ev)
                if bookmarks and (bm_now or time.time() >= next_bm):
                    self.chunk({"type": "BOOKMARK", "object": {
                        "kind": kind.kind, "apiVersion": kind.api_version,
                        "metadata": {"resourceVersion": str(pos)}}})
                    next_bm = time.time() + cfg.bookmark_interval
            self.wfile.write(b"0\r\n\r\n")
        finally:
            with store.cond:
                store.watches -= 1

    def abort(self):
        """Ends the stream without its last chunk, as a dropped connection does."""
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock, ctx, store, cfg):
        super().__init__(("127.0.0.1", 0), Api, bind_and_activate=False)
        self.socket.close()
        self.socket = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.server_address = self.socket.getsockname()
        self.store, self.cfg = store, cfg

    def client_user(self, conn):
        try:
            cert = conn.getpeercert()
        except (ValueError, ssl.SSLError):
            return None
        for rdn in (cert or {}).get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    return v
        return None

    def handle_error(self, request, client_address):
        if self.cfg.verbose:
            super().handle_error(request, client_address)


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self):
        return "control"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, doc):
        body = json.dumps(doc, indent=1).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.control()

    do_POST = do_GET

    def control(self):
        store, cfg = self.server.store, self.server.cfg
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = url.path
        try:
            secs = float(q.get("seconds", 0))
            with store.cond:
                if p == "/state":
                    return self.reply(200, {"resourceVersion": str(store.rv), "compacted": str(store.compacted),
                                            "objects": sum(len(v) for v in store.objects.values()),
                                            "history": len(store.history), "watches": store.watches,
                                            "writes": len(store.writes),
                                            "failing": store.fail_until > time.time(),
                                            "hanging": store.hang_until > time.time()})
                if p == "/writes":
                    since = int(q.get("since", 0))
                    return self.reply(200, store.writes[since:])
                if p == "/objects":
                    return self.reply(200, [o for objs in store.objects.values() for o in objs.values()])
                if self.command != "POST":
                    return self.reply(405, {"error": f"POST {p}"})
                if p == "/drop-watches":
                    store.drop_epoch += 1
                    n = store.watches
                elif p == "/compact":
                    n = store.compact(q.get("rv"))
                elif p == "/fail":
                    store.fail_until, store.fail_code = time.time() + secs, int(q.get("code", 500))
                    n = secs
                elif p == "/hang":
                    store.hang_until = time.time() + secs
                    n = secs
                elif p == "/clear":
                    store.fail_until = store.hang_until = 0
                    n = 0
                elif p == "/bookmark":
                    store.bookmark_epoch += 1
                    n = store.watches
                elif p == "/restart":
                    objs = json.loads(body) if body.strip() else None
                    n = store.restart(q.get("base"), objs)
                elif p == "/tokens":
                    tmp = cfg.tokens.path + ".tmp"
                    with open(tmp, "wb") as f:
                        f.write(body)
                    os.rename(tmp, cfg.tokens.path)
                    n = len(body.splitlines())
                else:
                    return self.reply(404, {"error": f"no control {p}"})
                store.cond.notify_all()
            return self.reply(200, {"ok": p, "value": n})
        except (ValueError, ApiError) as e:
            return self.reply(400, {"error": str(e)})


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description="kbackend's test Kubernetes API server (tests/kube/README.md)")
    ap.add_argument("--listen", action="append", required=True, metavar="NETNS:PORT",
                    help="NETNS is a namespace file (/run/netns/x, /proc/PID/ns/net) or - for this one")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", help="also accept client certificates signed by this CA (user = CN)")
    ap.add_argument("--tokens", required=True, help="token,user lines; re-read when it changes")
    ap.add_argument("--control", required=True, help="unix socket for the fault controls")
    ap.add_argument("--ready-file", help="written (JSON: the ports) once every socket listens")
    ap.add_argument("--bookmark-interval", type=float, default=10.0)
    ap.add_argument("--history", type=int, default=200000, help="events kept for watches")
    ap.add_argument("--rv-base", type=int, default=1)
    ap.add_argument("-v", "--verbose", action="store_true")
    cfg = ap.parse_args()
    cfg.tokens = Tokens(cfg.tokens)
    store = Store(rv_base=cfg.rv_base, history_max=cfg.history)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg.cert, cfg.key)
    ctx.set_alpn_protocols(["http/1.1"])   # no HTTP/2 here: clients must fall back
    if cfg.client_ca:
        ctx.load_verify_locations(cfg.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL

    servers, ready = [], []
    for spec in cfg.listen:
        netns, _, port = spec.rpartition(":")
        sock = listen_in_netns(netns or "-", int(port))
        srv = ApiServer(sock, ctx, store, cfg)
        servers.append(srv)
        ready.append({"netns": netns or "-", "port": srv.server_address[1]})
    if os.path.exists(cfg.control):
        os.unlink(cfg.control)
    ctl = ControlServer(cfg.control, Control)
    ctl.store, ctl.cfg = store, cfg
    servers.append(ctl)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    if cfg.ready_file:
        tmp = cfg.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"listen": ready, "control": cfg.control, "pid": os.getpid()}, f)
        os.rename(tmp, cfg.ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.wait(1):
        pass
    for s in servers:
        s.shutdown()
    try:
        os.unlink(cfg.control)
    except OSError:
        pass


if __name__ == "__main__":
    main()
