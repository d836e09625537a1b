# SPDX-License-Identifier: Apache-2.0
# The test API server's object store: the served kinds, one global resourceVersion counter,
# the event history watches read from, compaction, list snapshots for continue tokens,
# selectors, merge and JSON patches, and the log of writes (tests/kube/README.md).
import base64
import copy
import json
import re
import threading
import time
import uuid

# group, version, kind, plural, namespaced, status subresource, short names
KINDS = [
    ("gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses", False, True, ["gc"]),
    ("gateway.networking.k8s.io", "v1", "Gateway", "gateways", True, True, ["gtw"]),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", True, True, []),
    ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes", True, True, []),
    ("gateway.networking.k8s.io", "v1alpha2", "TLSRoute", "tlsroutes", True, True, []),
    ("gateway.networking.k8s.io", "v1alpha2", "TCPRoute", "tcproutes", True, True, []),
    ("gateway.networking.k8s.io", "v1alpha2", "UDPRoute", "udproutes", True, True, []),
    ("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants", True, False, ["refgrant"]),
    ("gateway.envoyproxy.io", "v1alpha1", "Backend", "backends", True, True, ["be"]),
    ("gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy", "backendtrafficpolicies", True, True, ["btp"]),
    ("", "v1", "Service", "services", True, True, ["svc"]),
    ("", "v1", "Namespace", "namespaces", False, True, ["ns"]),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, False, []),
    ("multicluster.x-k8s.io", "v1alpha1", "ServiceImport", "serviceimports", True, True, ["svcim"]),
    ("coordination.k8s.io", "v1", "Lease", "leases", True, False, []),
]
# Groups that a real cluster serves through CustomResourceDefinitions (their list items carry
# kind and apiVersion; an update must name the resourceVersion it replaces).
CRD_GROUPS = {"gateway.networking.k8s.io", "gateway.envoyproxy.io", "multicluster.x-k8s.io"}


class Kind:
    def __init__(self, group, version, kind, plural, namespaced, status, short):
        self.group, self.version, self.kind, self.plural = group, version, kind, plural
        self.namespaced, self.status, self.short = namespaced, status, short
        self.api_version = f"{group}/{version}" if group else version
        self.crd = group in CRD_GROUPS
        self.key = (group, plural)


KIND_LIST = [Kind(*k) for k in KINDS]
BY_PATH = {(k.group, k.version, k.plural): k for k in KIND_LIST}


class ApiError(Exception):
    """An error the API answers with a Status object."""

    REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
               415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError", 504: "Timeout"}

    def __init__(self, code, message, reason=None, kind=None, name=None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or self.REASONS.get(code, "Unknown")
        self.kind, self.name = kind, name

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.kind is not None:
            st["details"] = {"name": self.name or "", "group": self.kind.group, "kind": self.kind.plural}
        return st


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def qualified(kind):
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


# ---- selectors --------------------------------------------------------------------------

_TERM_SPLIT = re.compile(r",(?![^()]*\))")
_NAME = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def parse_label_selector(text):
    """Equality- and set-based label selectors, as a list of predicates over a label dict."""
    preds = []
    for term in _TERM_SPLIT.split(text or ""):
        t = term.strip()
        if not t:
            continue
        m = re.fullmatch(rf"(!?)\s*({_NAME})", t)
        if m:
            neg, key = m.group(1) == "!", m.group(2)
            preds.append(lambda l, k=key, n=neg: (k in l) != n)
            continue
        m = re.fullmatch(rf"({_NAME})\s+(in|notin)\s+\(([^)]*)\)", t)
        if m:
            key, op = m.group(1), m.group(2)
            vals = {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                preds.append(lambda l, k=key, vs=vals: l.get(k) in vs)
            else:
                preds.append(lambda l, k=key, vs=vals: l.get(k) not in vs)
            continue
        m = re.fullmatch(rf"({_NAME})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)", t)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                preds.append(lambda l, k=key, v=val: l.get(k) != v)
            else:
                preds.append(lambda l, k=key, v=val: l.get(k) == v)
            continue
        raise ApiError(400, f"unable to parse requirement: invalid label selector term {t!r}")
    return preds


FIELDS = {"metadata.name": lambda o: o["metadata"].get("name", ""),
          "metadata.namespace": lambda o: o["metadata"].get("namespace", "")}


def parse_field_selector(text):
    preds = []
    for term in (text or "").split(","):
        t = term.strip()
        if not t:
            continue
        m = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", t)
        if not m:
            raise ApiError(400, f"invalid selector: '{t}'; can't understand '{t}'")
        field, op, val = m.groups()
        if field not in FIELDS:
            raise ApiError(400, f'field label not supported: {field}')
        get = FIELDS[field]
        if op == "!=":
            preds.append(lambda o, g=get, v=val: g(o) != v)
        else:
            preds.append(lambda o, g=get, v=val: g(o) == v)
    return preds


def matches(obj, labels, fields):
    lab = obj["metadata"].get("labels") or {}
    return all(p(lab) for p in labels) and all(p(obj) for p in fields)


# ---- patches ----------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    for p in parts:
        if isinstance(doc, list):
            doc = doc[int(p)]
        else:
            doc = doc[p]
    return doc


def json_patch(doc, ops):
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ApiError(400, "a JSON patch is a list of operations")
    try:
        for op in ops:
            name, parts = op.get("op"), _pointer(op.get("path", ""))
            if name in ("move", "copy"):
                src = _pointer(op.get("from", ""))
                value = copy.deepcopy(_walk(doc, src))
                if name == "move":
                    parent = _walk(doc, src[:-1])
                    del parent[int(src[-1]) if isinstance(parent, list) else src[-1]]
                name, op = "add", {"value": value}
            if name == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise ApiError(422, f"test operation failed at {op.get('path')}")
                continue
            if not parts:
                if name in ("add", "replace"):
                    doc = copy.deepcopy(op.get("value"))
                    continue
                raise ApiError(422, "cannot remove the whole document")
            parent, last = _walk(doc, parts[:-1]), parts[-1]
            if name == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
                else:
                    parent[last] = copy.deepcopy(op["value"])
            elif name == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif name == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op["value"])
                else:
                    if last not in parent:
                        raise ApiError(422, f"replace of a missing path {op.get('path')}")
                    parent[last] = copy.deepcopy(op["value"])
            else:
                raise ApiError(422, f"unknown JSON patch operation {name!r}")
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise ApiError(422, f"the JSON patch does not apply: {e!r}")
    return doc


# ---- the store --------------------------------------------------------------------------

class Event:
    __slots__ = ("rv", "type", "key", "ns", "obj")

    def __init__(self, rv, type_, key, ns, obj):
        self.rv, self.type, self.key, self.ns, self.obj = rv, type_, key, ns, obj


def spec_part(kind, obj):
    """What metadata.generation counts: all but metadata (and status under a subresource)."""
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "kind", "apiVersion") and not (kind.status and k == "status")}


class Store:
    def __init__(self, rv_base=1, history_max=200000, snapshots_max=64):
        self.cond = threading.Condition()
        self.rv = rv_base
        self.compacted = rv_base      # a watch from an RV below this gets 410
        self.objects = {k.key: {} for k in KIND_LIST}
        self.history = []             # Events, rv ascending
        self.history_max = history_max
        self.snapshots = {}           # snapshot id -> (rv, [objects sorted by (ns, name)])
        self.snapshots_max = snapshots_max
        self.next_snapshot = 1
        self.drop_epoch = 0           # bumped to end every open watch abruptly
        self.bookmark_epoch = 0       # bumped to send a BOOKMARK to every open watch now
        self.watches = 0
        self.writes = []
        self.fail_until = 0.0
        self.fail_code = 500
        self.hang_until = 0.0

    # callers hold self.cond
    def _record(self, kind, type_, ns, obj):
        self.history.append(Event(self.rv, type_, kind.key, ns, obj))
        if len(self.history) > self.history_max:
            cut = len(self.history) - self.history_max
            self.compacted = self.history[cut - 1].rv
            del self.history[:cut]
        self.cond.notify_all()

    def compact(self, rv=None):
        with self.cond:
            rv = self.rv if rv is None else min(int(rv), self.rv)
            self.history = [e for e in self.history if e.rv > rv]
            self.compacted = max(self.compacted, rv)
            self.snapshots = {i: s for i, s in self.snapshots.items() if s[0] >= self.compacted}
            return self.compacted

    def log_write(self, who, verb, kind, sub, ns, name, code, rv, noop=False, status=None):
        rec = {"seq": len(self.writes) + 1, "time": time.time(), "user": who[0], "userAgent": who[1],
               "verb": verb, "group": kind.group, "resource": kind.plural, "subresource": sub or "",
               "namespace": ns or "", "name": name or "", "code": code, "resourceVersion": str(rv) if rv else "",
               "noop": noop}
        if status is not None:
            rec["status"] = status
        self.writes.append(rec)

    def get(self, kind, ns, name):
        with self.cond:
            obj = self.objects[kind.key].get((ns or "", name))
            if obj is None:
                raise ApiError(404, f'{qualified(kind)} "{name}" not found', kind=kind, name=name)
            return obj

    def list(self, kind, ns, labels, fields, limit, cont):
        """Returns (items, list RV, continue token, remaining count)."""
        with self.cond:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    rv, sid, start = int(tok["rv"]), int(tok["id"]), int(tok["start"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "continue key is not valid: incorrect encoded start resourceVersion")
                snap = self.snapshots.get(sid)
                if rv < self.compacted or snap is None or snap[0] != rv:
                    raise ApiError(410, "The provided continue parameter is too old to display a consistent list "
                                        "result. You can start a new list without the continue parameter.",
                                   reason="Expired")
                items = snap[1]
            else:
                rv, start = self.rv, 0
                objs = self.objects[kind.key]
                items = [objs[k] for k in sorted(objs) if (not ns or k[0] == ns)]
                items = [o for o in items if matches(o, labels, fields)]
                sid = None
            if limit and start + limit < len(items):
                if sid is None:
                    sid = self.next_snapshot
                    self.next_snapshot += 1
                    self.snapshots[sid] = (rv, items)
                    while len(self.snapshots) > self.snapshots_max:
                        del self.snapshots[min(self.snapshots)]
                nxt = base64.urlsafe_b64encode(json.dumps(
                    {"rv": rv, "id": sid, "start": start + limit}).encode()).decode()
                return items[start:start + limit], rv, nxt, len(items) - start - limit
            return items[start:], rv, "", None

    def _stamp(self, kind, obj, ns):
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        md = obj.setdefault("metadata", {})
        if kind.namespaced:
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        return md

    def create(self, kind, ns, obj, who):
        with self.cond:
            obj = copy.deepcopy(obj)
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
                raise ApiError(400, "the body is not an object with metadata")
            md = obj.get("metadata") or {}
            if kind.namespaced and md.get("namespace") and md["namespace"] != ns:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            obj["metadata"] = md
            name = md.get("name")
            if not name:
                raise ApiError(422, f'{kind.kind} "" is invalid: metadata.name: Required value: name or generateName is required', kind=kind)
            md = self._stamp(kind, obj, ns)
            if (ns, name) in self.objects[kind.key] or (not kind.namespaced and ("", name) in self.objects[kind.key]):
                self.log_write(who, "create", kind, None, ns, name, 409, 0)
                raise ApiError(409, f'{qualified(kind)} "{name}" already exists', reason="AlreadyExists", kind=kind, name=name)
            if kind.status:
                obj.pop("status", None)   # written only through the status subresource
            if kind.kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            self.rv += 1
            md.update({"uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(),
                       "resourceVersion": str(self.rv), "generation": 1})
            key_ns = ns if kind.namespaced else ""
            self.objects[kind.key][(key_ns, name)] = obj
            self._record(kind, "ADDED", key_ns, obj)
            self.log_write(who, "create", kind, None, key_ns, name, 201, self.rv)
            return obj

    def update(self, kind, ns, name, obj, who, sub=None, verb="update"):
        """PUT (or a patch's result): the main resource ignores .status, /status only takes it."""
        with self.cond:
            key_ns = ns if kind.namespaced else ""
            old = self.objects[kind.key].get((key_ns, name))
            if old is None:
                self.log_write(who, verb, kind, sub, key_ns, name, 404, 0)
                raise ApiError(404, f'{qualified(kind)} "{name}" not found', kind=kind, name=name)
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
                raise ApiError(400, "the body is not an object with metadata")
            md = obj.get("metadata") or {}
            if md.get("name", name) != name:
                raise ApiError(400, f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})")
            if kind.namespaced and md.get("namespace", key_ns) != key_ns:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
            rv = md.get("resourceVersion")
            if rv is None and kind.crd and verb == "update":
                raise ApiError(422, f'{kind.kind}.{kind.group} "{name}" is invalid: metadata.resourceVersion: '
                                    'Invalid value: 0x0: must be specified for an update', kind=kind, name=name)
            if rv is not None and rv != old["metadata"]["resourceVersion"]:
                self.log_write(who, verb, kind, sub, key_ns, name, 409, 0)
                raise ApiError(409, f'Operation cannot be fulfilled on {qualified(kind)} "{name}": the object has been '
                                    'modified; please apply your changes to the latest version and try again',
                               kind=kind, name=name)
            if sub == "status":
                new = copy.deepcopy(old)
                if "status" in obj:
                    new["status"] = copy.deepcopy(obj["status"])
                else:
                    new.pop("status", None)
            else:
                new = copy.deepcopy(obj)
                self._stamp(kind, new, key_ns)
                nmd = new["metadata"]
                for f in ("uid", "creationTimestamp", "generation", "name"):
                    if f in old["metadata"]:
                        nmd[f] = old["metadata"][f]
                if kind.status:
                    if "status" in old:
                        new["status"] = old["status"]
                    else:
                        new.pop("status", None)
                if spec_part(kind, new) != spec_part(kind, old):
                    nmd["generation"] = old["metadata"].get("generation", 0) + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            status = new.get("status") if sub == "status" else None
            if new == old:   # as etcd3's GuaranteedUpdate: an unchanged object is not written
                self.log_write(who, verb, kind, sub, key_ns, name, 200, int(old["metadata"]["resourceVersion"]),
                               noop=True, status=status)
                return old
            self.rv += 1
            new["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[kind.key][(key_ns, name)] = new
            self._record(kind, "MODIFIED", key_ns, new)
            self.log_write(who, verb, kind, sub, key_ns, name, 200, self.rv, status=status)
            return new

    def patch(self, kind, ns, name, ctype, body, who, sub=None):
        with self.cond:
            old = self.get(kind, ns if kind.namespaced else "", name)
            if ctype == "application/json-patch+json":
                new = json_patch(old, body)
            elif ctype == "application/merge-patch+json" or (
                    ctype == "application/strategic-merge-patch+json" and not kind.crd):
                # Built-in kinds: a strategic merge patch is taken as a merge patch (lists replaced).
                if not isinstance(body, dict):
                    raise ApiError(400, "a merge patch is a JSON object")
                new = merge_patch(old, body)
            else:
                raise ApiError(415, f"the body of the request was in an unknown format - accepted media types "
                                    f"include: application/json-patch+json, application/merge-patch+json")
            if not isinstance(new, dict):
                raise ApiError(422, "the patched object is not an object")
            new.setdefault("metadata", {})
            new["metadata"].setdefault("resourceVersion", old["metadata"]["resourceVersion"])
            return self.update(kind, ns, name, new, who, sub=sub, verb="patch")

    def delete(self, kind, ns, name, who, precondition_rv=None):
        with self.cond:
            key_ns = ns if kind.namespaced else ""
            old = self.objects[kind.key].get((key_ns, name))
            if old is None:
                self.log_write(who, "delete", kind, None, key_ns, name, 404, 0)
                raise ApiError(404, f'{qualified(kind)} "{name}" not found', kind=kind, name=name)
            if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
                self.log_write(who, "delete", kind, None, key_ns, name, 409, 0)
                raise ApiError(409, f'Operation cannot be fulfilled on {qualified(kind)} "{name}": the '
                                    'ResourceVersion in the precondition does not match', kind=kind, name=name)
            del self.objects[kind.key][(key_ns, name)]
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record(kind, "DELETED", key_ns, gone)
            self.log_write(who, "delete", kind, None, key_ns, name, 200, self.rv)
            return gone

    def restart(self, base=None, objects=None):
        """A new history: every RV before is unknown (410), watches are dropped, objects are kept
        (re-stamped from the new base) or replaced by `objects`."""
        with self.cond:
            self.rv = int(base) if base is not None else self.rv + 1000000
            self.history = []
            self.snapshots = {}
            self.compacted = self.rv
            if objects is not None:
                keep = {k.key: {} for k in KIND_LIST}
                by_kind = {(k.api_version, k.kind): k for k in KIND_LIST}
                for o in objects:
                    kind = by_kind.get((o.get("apiVersion"), o.get("kind")))
                    if kind is None:
                        raise ApiError(400, f"unknown kind {o.get('apiVersion')}/{o.get('kind')}")
                    o = copy.deepcopy(o)
                    md = o.setdefault("metadata", {})
                    md.setdefault("uid", str(uuid.uuid4()))
                    md.setdefault("creationTimestamp", now_rfc3339())
                    md.setdefault("generation", 1)
                    ns = md.get("namespace", "default") if kind.namespaced else ""
                    self._stamp(kind, o, ns)
                    keep[kind.key][(ns, md["name"])] = o
                self.objects = keep
            for kind in KIND_LIST:
                for k in sorted(self.objects[kind.key]):
                    self.rv += 1
                    o = copy.deepcopy(self.objects[kind.key][k])
                    o["metadata"]["resourceVersion"] = str(self.rv)
                    self.objects[kind.key][k] = o
            self.compacted = self.rv
            self.drop_epoch += 1
            self.cond.notify_all()
            return self.rv
