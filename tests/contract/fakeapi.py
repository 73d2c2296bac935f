"""A stand-in Kubernetes API server for the contract tests: real HTTP on 127.0.0.1, driven by the real client.

No API server can run on these machines, so the cluster code is tested through the real `kubernetes` client
(typed APIs and `kubernetes.dynamic.DynamicClient`) against this server, which enforces the rules of a real
one for the calls the kit makes, and nothing more. Tests start it through the `fakeapi` fixture
(tests/contract/conftest.py), which also writes a kubeconfig with the context `fakeapi` and points
KUBECONFIG at it.

What it serves (JSON only; answers like a 1.33 API server)
    Discovery: /version, /api, /apis, /api/v1, /apis/apps/v1, /apis/networking.k8s.io/v1,
    /apis/policy/v1 (plain APIResourceList; no aggregated discovery, like a server that does not offer it).
    Kinds: Namespace, Secret, ConfigMap, ServiceAccount, Service, PersistentVolumeClaim, Pod (+ `log`),
    Event, Deployment, StatefulSet, NetworkPolicy, Ingress, PodDisruptionBudget.
    GET / LIST (labelSelector, fieldSelector on the fields the real server allows) / WATCH, POST, PUT,
    PATCH (apply, merge, strategic merge), DELETE (one object or a collection). Writes into a namespace
    that does not exist answer 404, as for real.
    Server-side apply: PATCH with Content-Type application/apply-patch+yaml and ?fieldManager=… (422 without
    it; 415 for a content type no patch accepts), the body validated with
    kubernetes_validate.validate(obj, "1.33", strict=True) (422 with the schema's message), Secret `data`
    values must be base64 (400, as the real decoder answers on every write). Creates (201) or merges: the
    fields a manager applied before and omits now are removed, lists are replaced whole (treated as
    atomic). An apply that changes nothing stores nothing: same resourceVersion, no watch event. A change
    under `spec` bumps metadata.generation.
    `status` in a client's body is ignored (only tests set it). ?dryRun=All validates and answers the
    would-be object, storing nothing. Conflict: a field owned by another manager whose value the apply
    changes answers 409 (reason Conflict, the real message form) unless ?force=true, which takes it over.
    PUT with a stale metadata.resourceVersion answers 409.
    Auth: the kubeconfig's bearer token is required (401 otherwise).

The handle (`FakeApi`, yielded by the `fakeapi` fixture). `kind` is the Kind ("Deployment"); `ns` is None
for cluster-scoped kinds. Every object passed in or returned is a plain dict copy.
    start() / stop()                    the fixture does both
    url, kubeconfig, context, token     where it listens and how the client reaches it
    write_kubeconfig(path, token=None)  another kubeconfig for it (a wrong token plays a bad login)
    put(obj) -> dict                    store obj as another client would (POST/PUT by manager "test"),
                                        with uid/resourceVersion/creationTimestamp; emits a watch event
    get(kind, ns, name) -> dict | None
    objects(kind, ns=None) -> list[dict]   (ns=None: all namespaces), sorted by namespace and name
    delete(kind, ns, name)              as a controller or another client would; emits DELETED
    set_status(kind, ns, name, status)  replace `.status` (new resourceVersion, MODIFIED event)
    set_owner(kind, ns, name, field_path, manager)
                                        record that `manager` (an Update manager, e.g. "kubectl-edit")
                                        owns field_path (".spec.replicas": dotted, keys without dots)
    requests -> list[Request]           every request so far: method, path, query (dict of first
                                        values), content_type, body (parsed JSON/YAML, or text), status
    writes() -> list[Request]           the requests that are not GET (POST/PUT/PATCH/DELETE)
    clear_requests()
    fail(path_prefix, code, times=1)    the next `times` requests whose path starts with path_prefix answer
                                        `code` (500 InternalError, 503 ServiceUnavailable, ...)
    deny(code, path_prefix="/")         401 (Unauthorized) or 403 (Forbidden, real message naming user,
                                        verb, resource and namespace) for every matching request until
    allow()                             lifts every deny()
    drop_watches()                      cut every open watch and log stream mid-stream (API server restart)
    compact()                           forget the event history: a watch from an older resourceVersion
                                        gets an ERROR event with a 410 Gone Status, as after etcd compaction
    log(ns, pod, text)                  append lines to a pod's log (GET …/log: tailLines, container,
                                        follow streams appended lines until the pod goes or drop_watches()).
                                        The kubelet's refusals hold: 400 for a container waiting to start
                                        (ImagePullBackOff, ...) or for previous=true without a terminated
                                        previous run; an unscheduled pod has an empty log
    event(obj, reason, message, type="Warning") -> dict
                                        record a core/v1 Event about obj (involvedObject filled from it)
    Controller helpers, never run unless a test calls them:
    make_ready(kind, ns, name)          Deployment/StatefulSet: pods for the current template (Running,
                                        Ready), old-template pods deleted, status as the real controller
                                        reports it when done (observedGeneration, replicas, updated,
                                        ready, available, conditions); a StatefulSet also gets the claims
                                        of its volumeClaimTemplates (`data-prefect-server-0`), which outlive
                                        its pods and rollouts
    make_unready(kind, ns, name, reason, message="", restarts=0)
                                        pods for the current template stuck waiting with `reason`
                                        (CrashLoopBackOff, ImagePullBackOff, ...), or Pending and
                                        Unschedulable for reason="Unschedulable"; status observed but
                                        not ready
    controller(on=True)                 a background thread that calls make_ready on every Deployment
                                        and StatefulSet whose generation it has not yet observed

Not modelled (the e2e suite against a real cluster covers these): admission, defaulting beyond
spec.replicas and Namespace phase, list-map merge keys inside lists, garbage collection of owned objects
(a Namespace deletion removes its contents at once), limit/continue paging, aggregated discovery, protobuf.

DynamicClient caches discovery in a temp file keyed by the server URL: pass `cache_file` (under tmp_path)
when request counts matter.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

SCHEMA_VERSION = "1.33"
USER = "contract-tester"
TEST_MANAGER = "test"
CONTROLLER_MANAGER = "kube-controller-manager"
APPLY_TYPE = "application/apply-patch+yaml"
MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
WRITE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# Fields every object supports in a fieldSelector; kinds add their own (pkg/registry/*/strategy.go).
COMMON_FIELD_LABELS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    field_labels: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """How the real server names the resource in messages: `deployments.apps`, `secrets`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


KINDS = (
    Kind("", "v1", "namespaces", "Namespace", False, ("ns",), ("status.phase",)),
    Kind("", "v1", "secrets", "Secret", True, (), ("type",)),
    Kind("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Kind("", "v1", "services", "Service", True, ("svc",)),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    Kind(
        "", "v1", "pods", "Pod", True, ("po",),
        ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
         "status.phase", "status.podIP", "status.nominatedNodeName"),
    ),
    Kind(
        "", "v1", "events", "Event", True, ("ev",),
        ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
         "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
         "reason", "reportingComponent", "type"),
    ),
    Kind("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Kind("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Kind("batch", "v1", "jobs", "Job", True),
    Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",)),
)
BY_KIND = {k.kind: k for k in KINDS}
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}
GROUP_VERSIONS = sorted({(k.group, k.version) for k in KINDS})


class ApiError(Exception):
    """An answer other than success, carried as the Status body a real API server sends."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(kind: Kind, name: str) -> ApiError:
    details = {"name": name, "group": kind.group, "kind": kind.plural}
    return ApiError(404, "NotFound", f'{kind.resource} "{name}" not found', details)


def namespace_not_found(namespace: str) -> ApiError:
    return not_found(BY_KIND["Namespace"], namespace)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: Kind, name: str, field_path: str, message: str) -> ApiError:
    details = {"name": name, "group": kind.group, "kind": kind.kind,
               "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}]}
    return ApiError(422, "Invalid", f'{kind.qualified_kind} "{name}" is invalid: {field_path}: {message}', details)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- discovery ---------------------------------------------------------------------------------------------

def discovery(path: str, host: str) -> dict | None:
    """The JSON a real API server answers on a discovery path, or None when the path is not discovery."""
    if path == "/version":
        return {"major": "1", "minor": SCHEMA_VERSION.split(".")[1], "gitVersion": f"v{SCHEMA_VERSION}.0",
                "gitCommit": "fakeapi", "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z",
                "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
    if path == "/apis":
        groups = []
        for group, version in GROUP_VERSIONS:
            if group:
                gv = {"groupVersion": f"{group}/{version}", "version": version}
                groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for group, version in GROUP_VERSIONS:
        group_version = f"{group}/{version}" if group else version
        if path == ("/apis/" if group else "/api/") + group_version:
            return resource_list(group, version, group_version)
    return None


def resource_list(group: str, version: str, group_version: str) -> dict:
    resources = []
    for kind in KINDS:
        if (kind.group, kind.version) != (group, version):
            continue
        verbs = [v for v in WRITE_VERBS if kind.namespaced or v != "deletecollection"]
        resources.append({"name": kind.plural, "singularName": kind.kind.lower(), "namespaced": kind.namespaced,
                          "kind": kind.kind, "verbs": verbs, "shortNames": list(kind.short_names)})
        if kind.kind == "Pod":
            resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                              "verbs": ["get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


# ---- selectors ----------------------------------------------------------------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_outside_parentheses(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def label_matcher(selector: str):
    """A predicate on a labels dict, for the label selector syntax of the real server (equality and sets)."""
    tests = []
    for requirement in filter(str.strip, _split_outside_parentheses(selector or "")):
        match = _REQUIREMENT.match(requirement)
        if not match or (match["neg"] and (match["op"] or match["setop"])):
            raise bad_request(f"unable to parse requirement: {requirement.strip()!r}")
        key, op, value = match["key"], match["op"], match["value"]
        if op in ("=", "=="):
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",")}
            inside = match["setop"] == "in"
            tests.append(lambda labels, k=key, vs=values, i=inside: (labels.get(k) in vs) == i)
        elif match["neg"]:
            tests.append(lambda labels, k=key: k not in labels)
        else:
            tests.append(lambda labels, k=key: k in labels)
    return lambda labels: all(test(labels or {}) for test in tests)


def field_matcher(kind: Kind, selector: str):
    """A predicate on an object for a field selector; fields the real server does not index answer 400."""
    tests = []
    for term in filter(str.strip, (selector or "").split(",")):
        match = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = match.groups()
        if path not in COMMON_FIELD_LABELS + kind.field_labels:
            raise bad_request(f'field label not supported: {path}')
        equal = op != "!="
        tests.append(lambda obj, p=path, v=value, e=equal: (str(dig(obj, p.split(".")) or "") == v) == e)
    return lambda obj: all(test(obj) for test in tests)


def dig(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


# ---- object content and field ownership ---------------------------------------------------------------------

# Managers own what the user wrote, never what the server keeps (the real server strips the same list).
_OWNABLE_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")


def ownable(obj: dict) -> dict:
    content = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k in _OWNABLE_METADATA}
    if metadata:
        content["metadata"] = metadata
    return content


def leaves(obj: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """Every leaf path of obj. Lists are leaves: the stand-in treats them as atomic (no list-map merge keys)."""
    found = {}
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            found.update(leaves(value, prefix + (key,)))
        else:
            found[prefix + (key,)] = value
    return found


def path_text(path: tuple) -> str:
    return "".join(f".{key}" for key in path)


def set_path(obj: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    if not (value == {} and isinstance(obj.get(path[-1]), dict)):
        obj[path[-1]] = copy.deepcopy(value)


def remove_path(obj: dict, path: tuple) -> None:
    parents = [obj]
    for key in path[:-1]:
        obj = obj.get(key)
        if not isinstance(obj, dict):
            return
        parents.append(obj)
    obj.pop(path[-1], None)
    for parent, key in zip(reversed(parents[:-1]), reversed(path[:-1])):
        if parent.get(key) == {}:
            del parent[key]


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; also stands in for strategic merge (lists are replaced, not merged by key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True)
class Owner:
    operation: str  # "Apply" or "Update"
    api_version: str
    fields: frozenset
    time: str


def managed_fields(owners: dict[str, Owner]) -> list[dict]:
    entries = []
    for manager, owner in sorted(owners.items()):
        if owner.fields:
            tree: dict = {}
            for path in sorted(owner.fields):
                node = tree
                for key in path:
                    node = node.setdefault(f"f:{key}", {})
            entries.append({"manager": manager, "operation": owner.operation, "apiVersion": owner.api_version,
                            "time": owner.time, "fieldsType": "FieldsV1", "fieldsV1": tree})
    return entries


def conflict_error(kind: Kind, name: str, conflicts: list[tuple[str, Owner, tuple]]) -> ApiError:
    """409 in the words of the real field manager (k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager)."""

    def who(manager: str, owner: Owner) -> str:
        return f'"{manager}" using {owner.api_version}' if owner.operation == "Update" else f'"{manager}"'

    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {who(m, o)}", "field": path_text(p)}
              for m, o, p in conflicts]
    if len(conflicts) == 1:
        manager, owner, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {who(manager, owner)}: {path_text(path)}"
    else:
        lines = []
        for manager in sorted({m for m, _, _ in conflicts}):
            owner = next(o for m, o, _ in conflicts if m == manager)
            lines.append(f"conflicts with {who(manager, owner)}:")
            lines += [f"- {path_text(p)}" for m, _, p in conflicts if m == manager]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"name": name, "group": kind.group, "kind": kind.plural,
                                                "causes": causes})


# ---- validation ---------------------------------------------------------------------------------------------

def validate(kind: Kind, obj: dict) -> None:
    """The checks of the real server's decoding and validation that the kit can trip over."""
    name = obj.get("metadata", {}).get("name", "")
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise invalid(kind, name, ".".join(str(p) for p in error.absolute_path) or "<root>", error.message) from None
    if kind.kind == "Secret":
        for key, value in (obj.get("data") or {}).items():
            bad_at = _base64_error(value)
            if bad_at is not None:
                raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at '
                                  f"input byte {bad_at} (data[{key}])")


def _base64_error(value) -> int | None:
    if not isinstance(value, str):
        return 0
    try:
        base64.b64decode(value, validate=True)
        return None
    except binascii.Error:
        illegal = re.search(r"[^A-Za-z0-9+/=]", value)
        return illegal.start() if illegal else len(value) - len(value) % 4


# ---- the server's state and its rules -----------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: object
    user_agent: str = ""
    status: int = 0


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass
class Answer:
    code: int
    body: object = None
    stream: object = None  # an iterator of byte chunks, sent with chunked encoding as it is produced
    content_type: str = "application/json"


@dataclass
class Stored:
    obj: dict
    owners: dict[str, Owner]


@dataclass(frozen=True)
class Change:
    rv: int
    type: str
    kind: Kind
    old: dict | None
    new: dict


class StreamDropped(Exception):
    """drop_watches() or stop(): the handler cuts the connection the way a restarting API server does."""


_NO_RESOURCE = ApiError(404, "NotFound", "the server could not find the requested resource", {})
_FAILURES = {
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    500: ("InternalError", "Internal error occurred: injected by FakeApi.fail()"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted, but may still be "
                     "processing the request"),
}
_WAITING_BEFORE_START = {"ImagePullBackOff", "ErrImagePull", "ContainerCreating", "CreateContainerConfigError",
                         "InvalidImageName"}


def log_refusal(pod: dict, container: str, previous: bool) -> str | None:
    """Why the kubelet refuses a container's log, in its words (validateContainerLogStatus, pkg/kubelet)."""
    subject = f'container "{container}" in pod "{pod["metadata"]["name"]}"'
    statuses = pod.get("status", {}).get("containerStatuses", [])
    status = next((c for c in statuses if c["name"] == container), None)
    if status is None:
        return f"{subject} is not available"
    state, last = status.get("state", {}), status.get("lastState", {}).get("terminated") or {}
    if previous:
        return None if last.get("containerID") else f"previous terminated {subject} not found"
    if "running" in state:
        return None
    if "terminated" in state or last:
        return None if state.get("terminated", {}).get("containerID") or last.get("containerID") else (
            f"{subject} is terminated")
    if "waiting" in state:
        reason = state["waiting"].get("reason", "")
        why = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}
        return f"{subject} is waiting to start: {why.get(reason, reason)}"
    return f"{subject} is waiting to start - no logs yet"


def parse_target(path: str) -> Target | None:
    """The resource a path names, None for a discovery path; 404 for a path the server does not serve."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    kind = BY_PATH.get((group, version, rest[0]))
    if kind is None or len(rest) > 3 or (kind.namespaced and namespace is None and len(rest) > 1):
        raise _NO_RESOURCE
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and (kind.kind, subresource) != ("Pod", "log"):
        raise _NO_RESOURCE
    return Target(kind, namespace, rest[1] if len(rest) > 1 else None, subresource)


def is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def verb(method: str, target: Target, query: dict) -> str:
    if method == "GET":
        return "get" if target.name else ("watch" if is_true(query.get("watch")) else "list")
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]


def forbidden(path: str, method: str, target: Target | None, query: dict) -> ApiError:
    if target is None:
        return ApiError(403, "Forbidden", f'forbidden: User "{USER}" cannot get path "{path}"', {})
    kind = target.kind
    subject = f'{kind.resource} "{target.name}"' if target.name else kind.resource
    scope = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
    resource = kind.plural + (f"/{target.subresource}" if target.subresource else "")
    message = (f'{subject} is forbidden: User "{USER}" cannot {verb(method, target, query)} resource "{resource}" '
               f'in API group "{kind.group}" {scope}')
    return ApiError(403, "Forbidden", message, {"name": target.name or "", "group": kind.group, "kind": kind.plural})


def check_dry_run(query: dict, options: str) -> bool:
    value = query.get("dryRun")
    if value not in (None, "All"):
        raise ApiError(422, "Invalid", f'{options}.meta.k8s.io "" is invalid: dryRun: Unsupported value: '
                                       f'["{value}"]: supported values: "All"')
    return value == "All"


def key_of(kind: Kind, namespace: str | None, name: str) -> tuple[str, str, str]:
    return kind.kind, namespace or "", name


def normalize(kind: Kind, obj: dict) -> None:
    """The few defaults and conversions the real server makes that the kit's logic can observe."""
    if kind.kind == "Secret" and "stringData" in obj:
        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(value.encode()).decode()
    if kind.kind == "Namespace":
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("status", {"phase": "Active"})
    if kind.kind in ("Deployment", "StatefulSet"):
        obj.setdefault("spec", {}).setdefault("replicas", 1)


def without_type(obj: dict) -> dict:
    """List items as the real server writes them: without apiVersion and kind."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


def watch_event(change: Change, selected) -> dict | None:
    """The event a watch with these selectors sees: an object that starts or stops matching is ADDED or DELETED."""
    was = change.old is not None and selected(change.old)
    now_selected = change.type != "DELETED" and selected(change.new)
    if was and now_selected:
        return {"type": "MODIFIED", "object": change.new}
    if now_selected:
        return {"type": "ADDED", "object": change.new}
    if was:
        return {"type": "DELETED", "object": change.new}
    return None


def _owner_shape(owners: dict[str, Owner]) -> dict:
    return {m: (o.operation, o.fields) for m, o in owners.items() if o.fields}


class FakeApi:
    """The stand-in server and the handle tests drive it by (see the module docstring)."""

    def __init__(self, token: str = "contract-token"):
        self.token = token
        self.url = ""
        self.kubeconfig = ""
        self.context = "fakeapi"
        # One re-entrant lock for everything: controller helpers call the same write paths as requests do.
        self._cond = threading.Condition(threading.RLock())
        self._objects: dict[tuple, Stored] = {}
        self._history: list[Change] = []
        self._rv = 0
        self._compacted = 0
        self._epoch = 0
        self._stopping = False
        self._logs: dict[tuple, list[str]] = {}
        self._requests: list[Request] = []
        self._failures: list[list] = []
        self._denials: list[tuple[str, int]] = []
        self._controlling = False
        self._controller: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None

    # ---- life cycle

    def start(self) -> FakeApi:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.api = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        serve = lambda: self._server.serve_forever(poll_interval=0.02)  # noqa: E731
        threading.Thread(target=serve, name="fakeapi", daemon=True).start()
        return self

    def stop(self) -> None:
        self.controller(False)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: str, token: str | None = None) -> str:
        """A kubeconfig whose context `fakeapi` reaches this server (with another token to play a bad login)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.context,
            "clusters": [{"name": "fakeapi", "cluster": {"server": self.url}}],
            "users": [{"name": USER, "user": {"token": token or self.token}}],
            "contexts": [{"name": self.context, "context": {"cluster": "fakeapi", "user": USER}}],
        }
        with open(path, "w") as file:
            yaml.safe_dump(config, file)
        return path

    # ---- control API

    def put(self, obj: dict) -> dict:
        kind = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        with self._cond:
            key = key_of(kind, meta.get("namespace"), meta["name"])
            return self._update(kind, key, self._objects.get(key), copy.deepcopy(obj), TEST_MANAGER, False)[1]

    def get(self, kind: str, ns: str | None, name: str) -> dict | None:
        with self._cond:
            stored = self._objects.get(key_of(BY_KIND[kind], ns, name))
            return copy.deepcopy(stored.obj) if stored else None

    def objects(self, kind: str, ns: str | None = None) -> list[dict]:
        with self._cond:
            return [copy.deepcopy(s.obj) for key, s in sorted(self._objects.items())
                    if key[0] == kind and (ns is None or key[1] == ns)]

    def delete(self, kind: str, ns: str | None, name: str) -> None:
        with self._cond:
            self._remove(key_of(BY_KIND[kind], ns, name))

    def set_status(self, kind: str, ns: str | None, name: str, status: dict) -> dict:
        with self._cond:
            key = key_of(BY_KIND[kind], ns, name)
            stored = self._objects[key]
            obj = copy.deepcopy(stored.obj)
            obj["status"] = copy.deepcopy(status)
            return self._write(BY_KIND[kind], key, stored, obj, dict(stored.owners), False)[1]

    def set_owner(self, kind: str, ns: str | None, name: str, field_path: str, manager: str) -> None:
        path = tuple(field_path.strip(".").split("."))
        with self._cond:
            key = key_of(BY_KIND[kind], ns, name)
            stored = self._objects[key]
            owners = {m: Owner(o.operation, o.api_version, o.fields - {path}, o.time) for m, o in stored.owners.items()}
            mine = owners.get(manager)
            fields = (mine.fields if mine else frozenset()) | {path}
            owners[manager] = Owner("Update", BY_KIND[kind].api_version, fields, now())
            # A write like the one that manager made: the object's managedFields and resourceVersion move.
            self._write(BY_KIND[kind], key, stored, copy.deepcopy(stored.obj), owners, False)

    @property
    def requests(self) -> list[Request]:
        with self._cond:
            return list(self._requests)

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def clear_requests(self) -> None:
        with self._cond:
            self._requests.clear()

    def fail(self, path_prefix: str, code: int, times: int = 1) -> None:
        with self._cond:
            self._failures.append([path_prefix, code, times])

    def deny(self, code: int, path_prefix: str = "/") -> None:
        if code not in (401, 403):
            raise ValueError("deny() plays authentication (401) or authorization (403) failures; fail() the others")
        with self._cond:
            self._denials.append((path_prefix, code))

    def allow(self) -> None:
        with self._cond:
            self._denials.clear()

    def drop_watches(self) -> None:
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def compact(self) -> None:
        with self._cond:
            self._history.clear()
            self._compacted = self._rv

    def log(self, ns: str, pod: str, text: str) -> None:
        with self._cond:
            self._logs.setdefault((ns, pod), []).extend(text.splitlines())
            self._cond.notify_all()

    def event(self, obj: dict, reason: str, message: str, type: str = "Warning") -> dict:
        meta, stamp = obj["metadata"], now()
        return self.put({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": meta["name"],
                               "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "fakeapi"}, "reportingComponent": "fakeapi",
        })

    def make_ready(self, kind: str, ns: str, name: str) -> None:
        self._roll(kind, ns, name, None)

    def make_unready(self, kind: str, ns: str, name: str, reason: str, message: str = "", restarts: int = 0) -> None:
        self._roll(kind, ns, name, (reason, message, restarts))

    def controller(self, on: bool = True) -> None:
        if on and self._controller is None:
            self._controlling = True
            self._controller = threading.Thread(target=self._control, name="fakeapi-controller", daemon=True)
            self._controller.start()
        elif not on and self._controller is not None:
            with self._cond:
                self._controlling = False
                self._cond.notify_all()
            self._controller.join()
            self._controller = None

    # ---- requests

    def answer(self, request: Request, authorization: str) -> Answer:
        with self._cond:
            self._requests.append(request)
        if authorization != f"Bearer {self.token}":
            raise unauthorized()
        target = parse_target(request.path)
        with self._cond:
            for prefix, code in self._denials:
                if request.path.startswith(prefix):
                    if code == 401:
                        raise unauthorized()
                    raise forbidden(request.path, request.method, target, request.query)
            for failure in self._failures:
                prefix, code, times = failure
                if times > 0 and request.path.startswith(prefix):
                    failure[2] -= 1
                    phrase = HTTPStatus(code).phrase
                    reason, message = _FAILURES.get(code, (phrase.replace(" ", ""), phrase))
                    raise ApiError(code, reason, message, {})
        if target is None:
            found = discovery(request.path, self.url.removeprefix("http://"))
            if found is None or request.method != "GET":
                raise _NO_RESOURCE
            return Answer(200, found)
        return self._route(request, target)

    def _route(self, request: Request, target: Target) -> Answer:
        kind, ns, name, query = target.kind, target.namespace, target.name, request.query
        method = request.method
        if method == "GET" and target.subresource == "log":
            return self._pod_log(ns, name, query)
        if method == "GET" and name:
            with self._cond:
                stored = self._objects.get(key_of(kind, ns, name))
                if stored is None:
                    raise not_found(kind, name)
                return Answer(200, copy.deepcopy(stored.obj))
        if method == "GET":
            if is_true(query.get("watch")):
                return Answer(200, stream=self._watch(kind, ns, query))
            return Answer(200, self._list(kind, ns, query))
        if method == "DELETE":
            return self._delete(kind, ns, name, query)
        if method == "POST" and name is None:
            return self._create(kind, ns, request)
        if method == "PUT" and name:
            return self._replace(kind, ns, name, request)
        if method == "PATCH" and name:
            return self._patch(kind, ns, name, request)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _body(self, kind: Kind, request: Request) -> dict:
        body = request.body
        if not isinstance(body, dict):
            raise bad_request(f"the object provided is unrecognized (must be of type {kind.kind})")
        if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
            raise bad_request(f"the API version in the data ({body.get('apiVersion')}) does not match the expected "
                              f"API version ({kind.api_version})" if body.get("kind") == kind.kind else
                              f"the object provided is unrecognized (must be of type {kind.kind})")
        return copy.deepcopy(body)

    def _check_scope(self, kind: Kind, ns: str | None, name: str | None, body: dict) -> None:
        meta = body.setdefault("metadata", {})
        if name is not None and meta.get("name") != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                              f"({name})")
        if kind.namespaced:
            if meta.get("namespace", ns) != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = ns
            namespace = self._objects.get(key_of(BY_KIND["Namespace"], None, ns))
            if namespace is None:
                raise namespace_not_found(ns)
            terminating = namespace.obj["metadata"].get("deletionTimestamp")
            if terminating and key_of(kind, ns, meta.get("name")) not in self._objects:
                # The NamespaceLifecycle admission plugin: nothing new in a namespace that is being deleted.
                raise ApiError(403, "Forbidden", f'{kind.resource} "{meta.get("name")}" is forbidden: unable to create '
                                                 f"new content in namespace {ns} because it is being terminated",
                               {"name": meta.get("name"), "group": kind.group, "kind": kind.plural})

    def _create(self, kind: Kind, ns: str | None, request: Request) -> Answer:
        dry_run = check_dry_run(request.query, "CreateOptions")
        body = self._body(kind, request)
        name = body.get("metadata", {}).get("name")
        if not name:
            raise invalid(kind, "", "metadata.name", "Required value: name or generateName is required")
        body.pop("status", None)
        validate(kind, body)
        with self._cond:
            self._check_scope(kind, ns, None, body)
            key = key_of(kind, ns, name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{kind.resource} "{name}" already exists',
                               {"name": name, "group": kind.group, "kind": kind.plural})
            return Answer(*self._update(kind, key, None, body, self._manager(request), dry_run))

    def _replace(self, kind: Kind, ns: str | None, name: str, request: Request) -> Answer:
        dry_run = check_dry_run(request.query, "UpdateOptions")
        body = self._body(kind, request)
        validate(kind, body)
        with self._cond:
            self._check_scope(kind, ns, name, body)
            key = key_of(kind, ns, name)
            stored = self._objects.get(key)
            if stored is None:
                raise not_found(kind, name)
            sent = body["metadata"].get("resourceVersion")
            if sent is not None and sent != stored.obj["metadata"]["resourceVersion"]:
                message = (f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again")
                raise ApiError(409, "Conflict", message, {"name": name, "group": kind.group, "kind": kind.plural})
            self._keep_status(stored, body)
            return Answer(*self._update(kind, key, stored, body, self._manager(request), dry_run))

    def _patch(self, kind: Kind, ns: str | None, name: str, request: Request) -> Answer:
        if request.content_type != APPLY_TYPE and request.content_type not in MERGE_TYPES:
            accepted = ", ".join((*MERGE_TYPES, APPLY_TYPE))
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                        f"accepted media types include: {accepted}")
        query = request.query
        apply = request.content_type == APPLY_TYPE
        if apply and not query.get("fieldManager"):
            required = "Required value: is required for apply patch"
            raise ApiError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: fieldManager: {required}',
                           {"group": "meta.k8s.io", "kind": "PatchOptions",
                            "causes": [{"reason": "FieldValueRequired", "message": required, "field": "fieldManager"}]})
        if not apply and "force" in query:
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be '
                                           "specified for non-apply patch")
        dry_run = check_dry_run(query, "PatchOptions")
        if apply:
            body = self._body(kind, request)
            if "managedFields" in body.get("metadata", {}):
                raise bad_request("metadata.managedFields must be nil")  # so an object read back cannot be re-applied
            validate(kind, body)
            with self._cond:
                self._check_scope(kind, ns, name, body)
                return Answer(*self._apply(kind, key_of(kind, ns, name), body, query["fieldManager"],
                                           is_true(query.get("force")), dry_run))
        if not isinstance(request.body, dict):
            raise bad_request("the body of the request was not a JSON object")
        with self._cond:
            key = key_of(kind, ns, name)
            stored = self._objects.get(key)
            if stored is None:
                raise not_found(kind, name)
            patched = merge_patch(stored.obj, request.body)
            self._keep_status(stored, patched)
            for server_field in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation"):
                if server_field in stored.obj["metadata"]:
                    patched.setdefault("metadata", {})[server_field] = stored.obj["metadata"][server_field]
            patched.get("metadata", {}).pop("managedFields", None)
            validate(kind, patched)
            return Answer(*self._update(kind, key, stored, patched, self._manager(request), dry_run))

    @staticmethod
    def _keep_status(stored: Stored, body: dict) -> None:
        """A write to the main resource never changes status (the real server resets it from the stored object)."""
        body.pop("status", None)
        if "status" in stored.obj:
            body["status"] = copy.deepcopy(stored.obj["status"])

    @staticmethod
    def _manager(request: Request) -> str:
        """The manager of a non-apply write: ?fieldManager, else the client's User-Agent product, as for real."""
        return request.query.get("fieldManager") or request.user_agent.split("/")[0] or "unknown"

    def _delete(self, kind: Kind, ns: str | None, name: str | None, query: dict) -> Answer:
        dry_run = check_dry_run(query, "DeleteOptions")
        with self._cond:
            if name is not None:
                stored = self._objects.get(key_of(kind, ns, name))
                if stored is None:
                    raise not_found(kind, name)
                return Answer(200, copy.deepcopy(stored.obj) if dry_run else self._remove(key_of(kind, ns, name)))
            listed = self._list(kind, ns, query)
            if not dry_run:
                for item in listed["items"]:
                    self._remove(key_of(kind, item["metadata"].get("namespace"), item["metadata"]["name"]))
            return Answer(200, listed)

    def _list(self, kind: Kind, ns: str | None, query: dict) -> dict:
        labels = label_matcher(query.get("labelSelector", ""))
        fields = field_matcher(kind, query.get("fieldSelector", ""))
        with self._cond:
            items = [without_type(s.obj) for key, s in sorted(self._objects.items())
                     if key[0] == kind.kind and (ns is None or key[1] == ns)
                     and labels(s.obj["metadata"].get("labels")) and fields(s.obj)]
            return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": str(self._rv)}, "items": copy.deepcopy(items)}

    # ---- writes: every change goes through _write, so generation, resourceVersion and watch events agree

    def _update(self, kind: Kind, key: tuple, stored: Stored | None, obj: dict, manager: str,
                dry_run: bool) -> tuple[int, dict]:
        """A create, replace or merge patch: the writer takes over every field whose value it changed."""
        normalize(kind, obj)
        before = leaves(ownable(stored.obj)) if stored else {}
        after = leaves(ownable(obj))
        touched = {p for p, v in after.items() if p not in before or before[p] != v} | (before.keys() - after.keys())
        owners = {m: Owner(o.operation, o.api_version, o.fields - touched, o.time)
                  for m, o in (stored.owners if stored else {}).items()}
        mine = owners.get(manager)
        fields = (mine.fields if mine else frozenset()) | (touched & after.keys())
        owners[manager] = Owner("Update", kind.api_version, fields, now())
        return self._write(kind, key, stored, obj, owners, dry_run)

    def _apply(self, kind: Kind, key: tuple, config: dict, manager: str, force: bool,
               dry_run: bool) -> tuple[int, dict]:
        """Server-side apply: merge what the manager applies, drop what it applied before and no longer does."""
        stored = self._objects.get(key)
        name = config["metadata"]["name"]
        obj = copy.deepcopy(stored.obj) if stored else {
            "apiVersion": kind.api_version, "kind": kind.kind,
            "metadata": {"name": name, **({"namespace": key[1]} if kind.namespaced else {})}}
        owners = dict(stored.owners) if stored else {}
        applied = leaves(ownable(config))
        conflicts = []
        for other, owner in sorted(owners.items()):
            if other != manager:
                conflicts += [(other, owner, path) for path in sorted(owner.fields)
                              if any(mine[:len(path)] == path and dig(obj, mine) != value
                                     for mine, value in applied.items())]
        if conflicts and not force:
            raise conflict_error(kind, name, conflicts)
        taken = {path for _, _, path in conflicts}
        owners = {m: Owner(o.operation, o.api_version, o.fields - taken, o.time) for m, o in owners.items()}
        kept_by_others = frozenset().union(*(o.fields for m, o in owners.items() if m != manager))
        for path in (owners[manager].fields if manager in owners else frozenset()) - applied.keys() - kept_by_others:
            remove_path(obj, path)
        for path, value in applied.items():
            set_path(obj, path, value)
        normalize(kind, obj)
        owners[manager] = Owner("Apply", kind.api_version, frozenset(applied), now())
        return self._write(kind, key, stored, obj, owners, dry_run)

    def _write(self, kind: Kind, key: tuple, stored: Stored | None, obj: dict, owners: dict[str, Owner],
               dry_run: bool) -> tuple[int, dict]:
        owners = {m: o for m, o in owners.items() if o.fields}
        meta = obj["metadata"]
        meta.pop("managedFields", None)
        if stored is not None:
            old_meta = stored.obj["metadata"]
            for server_field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
                meta[server_field] = old_meta[server_field]
            unchanged = {**stored.obj, "metadata": {k: v for k, v in old_meta.items() if k != "managedFields"}}
            if unchanged == obj and _owner_shape(owners) == _owner_shape(stored.owners):
                return 200, copy.deepcopy(stored.obj)
            if obj.get("spec") != stored.obj.get("spec"):
                meta["generation"] += 1
        else:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if owners:
            meta["managedFields"] = managed_fields(owners)
        code = 200 if stored else 201
        if dry_run:
            return code, copy.deepcopy(obj)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[key] = Stored(obj, owners)
        self._changed(kind, "MODIFIED" if stored else "ADDED", stored.obj if stored else None, obj)
        return code, copy.deepcopy(obj)

    def _remove(self, key: tuple) -> dict:
        kind = BY_KIND[key[0]]
        stored = self._objects.get(key)
        if stored is None:
            raise not_found(kind, key[2])
        del self._objects[key]
        self._rv += 1
        last = {**stored.obj, "metadata": {**stored.obj["metadata"], "resourceVersion": str(self._rv)}}
        self._changed(kind, "DELETED", stored.obj, last)
        if kind.kind == "Pod":
            self._logs.pop((key[1], key[2]), None)
        if kind.kind == "Namespace":
            # The real namespace controller empties a Terminating namespace in the background; here it is at once.
            for inner in [k for k in self._objects if k[1] == key[2] and BY_KIND[k[0]].namespaced]:
                self._remove(inner)
        return copy.deepcopy(last)

    def _changed(self, kind: Kind, type_: str, old: dict | None, new: dict) -> None:
        self._history.append(Change(self._rv, type_, kind, old, new))
        self._cond.notify_all()

    # ---- streams

    def _watch(self, kind: Kind, ns: str | None, query: dict):
        labels = label_matcher(query.get("labelSelector", ""))
        fields = field_matcher(kind, query.get("fieldSelector", ""))

        def selected(obj: dict | None) -> bool:
            return (obj is not None and (ns is None or obj["metadata"].get("namespace") == ns)
                    and labels(obj["metadata"].get("labels")) and fields(obj))

        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        since = query.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise bad_request(f'resourceVersion: Invalid value: "{since}": must be a number')
        with self._cond:
            epoch = self._epoch
            if since in ("", "0"):
                # "Start at most recent": the current state as ADDED events, then every change after it.
                cursor = self._rv
                first = [{"type": "ADDED", "object": s.obj} for k, s in sorted(self._objects.items())
                         if k[0] == kind.kind and selected(s.obj)]
            elif int(since) < self._compacted:
                cursor = None
                first = [{"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {since} ({self._compacted})").status()}]
            else:
                cursor, first = int(since), []
        bookmarks = is_true(query.get("allowWatchBookmarks"))
        return self._watch_stream(kind, selected, cursor, first, epoch, timeout, bookmarks)

    def _watch_stream(self, kind, selected, cursor, first, epoch, timeout, bookmarks):
        for event in first:
            yield (json.dumps(event) + "\n").encode()
        if cursor is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                changes = self._wait(lambda: [c for c in self._history if c.rv > cursor and c.kind is kind],
                                     epoch, deadline)
                if changes is None:
                    if bookmarks:
                        yield (json.dumps({"type": "BOOKMARK", "object": {
                            "kind": kind.kind, "apiVersion": kind.api_version,
                            "metadata": {"resourceVersion": str(self._rv)}}}) + "\n").encode()
                    return
                cursor = changes[-1].rv
                events = [e for e in (watch_event(c, selected) for c in changes) if e]
            for event in events:
                yield (json.dumps(event) + "\n").encode()

    def _wait(self, ready, epoch: int, deadline: float | None):
        """What ready() returns once it is truthy; None at the deadline; StreamDropped when watches are cut."""
        while True:
            if self._epoch != epoch or self._stopping:
                raise StreamDropped()
            found = ready()
            if found:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._cond.wait(remaining)

    def _pod_log(self, ns: str, name: str, query: dict) -> Answer:
        with self._cond:
            stored = self._objects.get(("Pod", ns, name))
            if stored is None:
                raise not_found(BY_KIND["Pod"], name)
            containers = [c["name"] for c in stored.obj.get("spec", {}).get("containers", [])]
            container = query.get("container")
            if container is None and len(containers) > 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(containers)}]")
            if container is not None and container not in containers:
                raise bad_request(f"container {container} is not valid for pod {name}")
            if not stored.obj.get("spec", {}).get("nodeName"):
                return Answer(200, "", content_type="text/plain")  # no kubelet to ask: an empty log, as for real
            refusal = log_refusal(stored.obj, container or containers[0], is_true(query.get("previous")))
            if refusal:
                raise bad_request(refusal)
            lines = self._logs.get((ns, name), [])
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            shown = lines[len(lines) - min(tail, len(lines)):] if tail is not None else list(lines)
            if not is_true(query.get("follow")):
                return Answer(200, "".join(f"{line}\n" for line in shown), content_type="text/plain")
            return Answer(200, stream=self._follow(ns, name, shown, len(lines), self._epoch), content_type="text/plain")

    def _follow(self, ns: str, name: str, shown: list[str], sent: int, epoch: int):
        """Like `kubectl logs -f`: the lines there are, then each appended one until the pod goes away."""
        pods = self._objects
        for line in shown:
            yield f"{line}\n".encode()
        while True:
            with self._cond:
                more = self._wait(lambda: self._logs.get((ns, name), [])[sent:] or ("Pod", ns, name) not in pods,
                                  epoch, None)
                if more is True:
                    return
                sent += len(more)
            for line in more:
                yield f"{line}\n".encode()

    # ---- the explicit controller

    def _roll(self, kind: str, ns: str, name: str, waiting: tuple | None) -> None:
        with self._cond:
            workload = self._objects[(kind, ns, name)].obj
            spec = workload["spec"]
            revision = hashlib.sha256(json.dumps(spec["template"], sort_keys=True).encode()).hexdigest()[:10]
            wanted = {pod["metadata"]["name"]: pod
                      for pod in (pod_for(workload, i, revision, waiting) for i in range(spec.get("replicas", 1)))}
            selector = label_matcher(",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items()))
            for key, stored in list(self._objects.items()):
                if key[:2] == ("Pod", ns) and selector(stored.obj["metadata"].get("labels")) and key[2] not in wanted:
                    self._remove(key)
            for pod_name, pod in wanted.items():
                key = ("Pod", ns, pod_name)
                self._update(BY_KIND["Pod"], key, self._objects.get(key), pod, CONTROLLER_MANAGER, False)
            if kind == "StatefulSet":
                for index in range(spec.get("replicas", 1)):
                    for claim in claims_for(workload, index):
                        key = ("PersistentVolumeClaim", ns, claim["metadata"]["name"])
                        if key not in self._objects:  # claims outlive pods and rollouts, as for real
                            self._update(BY_KIND["PersistentVolumeClaim"], key, None, claim, CONTROLLER_MANAGER, False)
            self.set_status(kind, ns, name, workload_status(workload, revision, ready=waiting is None))

    def _control(self) -> None:
        with self._cond:
            while self._controlling and not self._stopping:
                for kind, ns, name in [key for key in self._objects if key[0] in ("Deployment", "StatefulSet")]:
                    obj = self._objects[(kind, ns, name)].obj
                    if obj.get("status", {}).get("observedGeneration") != obj["metadata"]["generation"]:
                        self._roll(kind, ns, name, None)
                self._cond.wait()


def pod_for(workload: dict, index: int, revision: str, waiting: tuple | None) -> dict:
    """A pod as the workload's controller and the kubelet would leave it: Running and Ready, or stuck `waiting`."""
    meta, template = workload["metadata"], workload["spec"]["template"]
    labels = dict(template.get("metadata", {}).get("labels", {}))
    if workload["kind"] == "Deployment":
        owner_kind, owner_name = "ReplicaSet", f"{meta['name']}-{revision}"
        name = f"{owner_name}-{hashlib.sha256(f'{revision}{index}'.encode()).hexdigest()[:5]}"
        labels["pod-template-hash"] = revision
    else:
        owner_kind, owner_name, name = "StatefulSet", meta["name"], f"{meta['name']}-{index}"
        labels.update({"controller-revision-hash": f"{meta['name']}-{revision}",
                       "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": str(index)})
    containers = template["spec"]["containers"]
    stamp = now()
    scheduled = not (waiting and waiting[0] == "Unschedulable")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                     "annotations": dict(template.get("metadata", {}).get("annotations", {})),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner_name,
                                          "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, owner_name)),
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {**template["spec"], **({"nodeName": "fakeapi-node"} if scheduled else {})},
        "status": pod_status(containers, index, stamp, waiting),
    }


def claims_for(statefulset: dict, index: int) -> list[dict]:
    """The claims the StatefulSet controller makes per pod: `<template>-<set>-<ordinal>`, labelled with the
    template's labels and the set's selector (pkg/controller/statefulset/stateful_set_utils.go)."""
    meta, spec = statefulset["metadata"], statefulset["spec"]
    claims = []
    for template in spec.get("volumeClaimTemplates", []):
        labels = {**template.get("metadata", {}).get("labels", {}), **spec["selector"].get("matchLabels", {})}
        claims.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"{template['metadata']['name']}-{meta['name']}-{index}",
                         "namespace": meta["namespace"], "labels": labels},
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Bound", "accessModes": template["spec"].get("accessModes", []),
                       "capacity": template["spec"].get("resources", {}).get("requests", {})},
        })
    return claims


def pod_status(containers: list[dict], index: int, stamp: str, waiting: tuple | None) -> dict:
    def condition(type_: str, ok: bool, reason: str = "", message: str = "") -> dict:
        found = {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": stamp}
        return {**found, "reason": reason, "message": message} if reason else found

    if waiting is None:
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "containerID": container_id(c, index, 0),
                     "ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}
                    for c in containers]
        conditions = [condition(t, True) for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        return {"phase": "Running", "conditions": conditions, "podIP": f"10.244.0.{10 + index}", "startTime": stamp,
                "containerStatuses": statuses}
    reason, message, restarts = waiting
    if reason == "Unschedulable":
        return {"phase": "Pending", "conditions": [condition("PodScheduled", False, reason, message)]}
    statuses = []
    for c in containers:
        status = {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
                  "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}}}
        if restarts:
            status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": stamp,
                                                  "finishedAt": stamp, "containerID": container_id(c, index, restarts)}}
        statuses.append(status)
    unready = f"containers with unready status: [{' '.join(c['name'] for c in containers)}]"
    conditions = [condition("Initialized", True), condition("Ready", False, "ContainersNotReady", unready),
                  condition("ContainersReady", False, "ContainersNotReady", unready), condition("PodScheduled", True)]
    return {"phase": "Pending" if reason in _WAITING_BEFORE_START else "Running", "conditions": conditions,
            "podIP": f"10.244.0.{10 + index}", "startTime": stamp, "containerStatuses": statuses}


def container_id(container: dict, index: int, run: int) -> str:
    return "containerd://" + hashlib.sha256(f"{container['name']}/{index}/{run}".encode()).hexdigest()


def workload_status(workload: dict, revision: str, ready: bool) -> dict:
    """The status the Deployment or StatefulSet controller reports once it has acted on the current spec."""
    name, replicas = workload["metadata"]["name"], workload["spec"].get("replicas", 1)
    done = {"readyReplicas": replicas, "availableReplicas": replicas} if ready and replicas else {}
    status = {"observedGeneration": workload["metadata"]["generation"], "replicas": replicas,
              "updatedReplicas": replicas, **done}
    if workload["kind"] == "StatefulSet":
        return {**status, "currentReplicas": replicas, "currentRevision": f"{name}-{revision}",
                "updateRevision": f"{name}-{revision}", "collisionCount": 0}
    stamp = now()
    replica_set = f"{name}-{revision}"
    if ready:
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{replica_set}" has successfully progressed.')
    else:
        status["unavailableReplicas"] = replicas
        available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{replica_set}" is progressing.')
    status["conditions"] = [
        {"type": type_, "status": s, "reason": r, "message": m, "lastUpdateTime": stamp, "lastTransitionTime": stamp}
        for type_, (s, r, m) in (("Available", available), ("Progressing", progressing))]
    return status


# ---- HTTP ---------------------------------------------------------------------------------------------------

def parse_body(raw: bytes, content_type: str):
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return yaml.safe_load(text) if content_type == APPLY_TYPE else json.loads(text)
    except (ValueError, yaml.YAMLError):
        return text


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch streams, as the real server speaks
    # Headers and body go out in separate writes: with Nagle's algorithm on, each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the signature is BaseHTTPRequestHandler's
        """Silent: FakeApi.requests is the log tests read."""

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a client hanging up mid-answer (a stopped watch, a follow) is routine for a server

    def do_GET(self):
        api: FakeApi = self.server.api
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        request = Request(self.command, url.path, query, content_type, parse_body(raw, content_type),
                          self.headers.get("User-Agent", ""))
        try:
            answer = api.answer(request, self.headers.get("Authorization", ""))
        except ApiError as error:
            answer = Answer(error.code, error.status())
        request.status = answer.code
        if answer.stream is None:
            self._send(answer)
        else:
            self._stream(answer)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _send(self, answer: Answer) -> None:
        data = (answer.body if isinstance(answer.body, str) else json.dumps(answer.body)).encode()
        self.send_response(answer.code)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, answer: Answer) -> None:
        self.send_response(answer.code)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in answer.stream:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except StreamDropped:
            # No final chunk: the client sees the connection end mid-stream, as when the API server restarts.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
