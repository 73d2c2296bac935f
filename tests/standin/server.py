"""FakeApi: the stand-in server's request paths, and the handle tests drive it by (see the package docstring)."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import ThreadingHTTPServer

import yaml

from tests.standin import channels, controllers, validation
from tests.standin.apply import merged_config, owners_after_apply
from tests.standin.errors import (NO_RESOURCE, ApiError, already_exists, bad_request, forbidden, invalid, not_found,
                                  unauthorized)
from tests.standin.handler import APPLY_TYPE, Answer, Handler, Request
from tests.standin.kinds import BY_KIND, Kind, by_path, discovery
from tests.standin.logs import is_true
from tests.standin.registry import Registry
from tests.standin.selectors import field_matcher, label_matcher
from tests.standin.store import key_of

DEFAULT_VERSION = "1.33.0"
USER = "contract-tester"
TEST_MANAGER = "test"
MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
PROPAGATIONS = ("Foreground", "Background", "Orphan")
STREAMS = ("exec", "portforward")
_FAILURES = {
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    500: ("InternalError", "Internal error occurred: injected by FakeApi.fail()"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted, but may still be "
                     "processing the request"),
}


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


def verb(method: str, target: Target, query: dict) -> str:
    if target.subresource in STREAMS:
        # The websocket upgrade is a GET, authorized as `create` (the default since 1.31, closing a hole where
        # `get` on pods/exec was enough to run commands).
        return "create"
    if method == "GET":
        return "get" if target.name else ("watch" if is_true(query.get("watch")) else "list")
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]


def rbac_forbidden(path: str, method: str, target: Target | None, query: dict) -> ApiError:
    """403 as the RBAC authorizer words it: who may not do what, on which resource, where."""
    if target is None:
        return ApiError(403, "Forbidden", f'forbidden: User "{USER}" cannot get path "{path}"', {})
    kind = target.kind
    scope = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
    resource = kind.plural + (f"/{target.subresource}" if target.subresource else "")
    why = (f'User "{USER}" cannot {verb(method, target, query)} resource "{resource}" in API group "{kind.group}" '
           f"{scope}")
    return forbidden(kind.resource, kind.group, kind.plural, target.name or "", why)


def check_dry_run(query: dict, options: str) -> bool:
    value = query.get("dryRun")
    if value not in (None, "All"):
        raise ApiError(422, "Invalid", f'{options}.meta.k8s.io "" is invalid: dryRun: Unsupported value: '
                                       f'["{value}"]: supported values: "All"')
    return value == "All"


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


def without_type(obj: dict) -> dict:
    """List items as the real server writes them: without apiVersion and kind."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


def _base64_error(value) -> int | None:
    if not isinstance(value, str):
        return 0
    try:
        base64.b64decode(value, validate=True)
        return None
    except binascii.Error:
        illegal = re.search(r"[^A-Za-z0-9+/=]", value)
        return illegal.start() if illegal else len(value) - len(value) % 4


class FakeApi:
    """The stand-in server and the handle tests drive it by (see the package docstring)."""

    def __init__(self, token: str = "contract-token", version: str = DEFAULT_VERSION):
        self.token = token
        self.url = ""
        self.kubeconfig = ""
        self.context = "fakeapi"
        self.registry = Registry(version)
        self.store = self.registry.store
        self._requests: list[Request] = []
        self._failures: list[list] = []
        self._denials: list[tuple[str, int]] = []
        self._controlling = False
        self._controller: threading.Thread | None = None
        self._forwards: dict[tuple[str, str, int], int] = {}
        self._runners: dict[tuple[str, str], object] = {}
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
        with self.store.cond:
            self.store.stop()
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

    def set_version(self, version: str) -> None:
        """Answer /version as this Kubernetes release ("1.36.2") and validate with its schemas."""
        self.registry.version = version

    def serve_gateway_api(self, installed: bool = True) -> None:
        """Play the Gateway API CRDs being installed (or removed): discovery, paths and validation follow."""
        self.registry.serve_gateway_api(installed)

    # ---- the handle

    def put(self, obj: dict) -> dict:
        """Create or replace obj as another client would (manager "test"), status and deletionTimestamp as given."""
        kind = BY_KIND[obj["kind"]]
        body = copy.deepcopy(obj)
        with self.store.cond:
            self.registry.check_scope(kind, body["metadata"].get("namespace"), None, body)
            key = key_of(kind, body["metadata"].get("namespace"), body["metadata"]["name"])
            return self.registry.commit(kind, key, body, TEST_MANAGER, keep_status=True, trusted=True)[1]

    def get(self, kind: str, ns: str | None, name: str) -> dict | None:
        with self.store.cond:
            stored = self.store.get(key_of(BY_KIND[kind], ns, name))
            return copy.deepcopy(stored.obj) if stored else None

    def objects(self, kind: str, ns: str | None = None) -> list[dict]:
        with self.store.cond:
            return [copy.deepcopy(s.obj) for _, s in self.store.of_kind(kind, ns)]

    def delete(self, kind: str, ns: str | None, name: str, propagation: str = "Background") -> dict:
        """Delete as a controller or another client would: finalizers, claim protection and GC included."""
        with self.store.cond:
            key = key_of(BY_KIND[kind], ns, name)
            if self.store.get(key) is None:
                raise not_found(BY_KIND[kind].resource, BY_KIND[kind].group, BY_KIND[kind].plural, name)
            return self.registry.remove_object(key, propagation)

    def set_status(self, kind: str, ns: str | None, name: str, status: dict) -> dict:
        return self.registry.set_status(kind, ns, name, status)

    def set_owner(self, kind: str, ns: str | None, name: str, field_path: str, manager: str) -> None:
        """Record that `manager` (an Update manager, e.g. "kubectl-edit") wrote the field at field_path, given
        as conflicts print it: `.spec.replicas`, `.spec.template.spec.containers[name="worker"].image`."""
        self.registry.record_owner(kind, ns, name, field_path, manager)

    @property
    def requests(self) -> list[Request]:
        with self.store.cond:
            return list(self._requests)

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def clear_requests(self) -> None:
        with self.store.cond:
            self._requests.clear()

    def fail(self, path_prefix: str, code: int, times: int = 1) -> None:
        """The next `times` requests under path_prefix answer `code` without being carried out; code 0 carries them
        out, then closes the connection without an answer (a server or proxy gone mid-request: the answer is lost)."""
        with self.store.cond:
            self._failures.append([path_prefix, code, times])

    def deny(self, code: int, path_prefix: str = "/") -> None:
        if code not in (401, 403):
            raise ValueError("deny() plays authentication (401) or authorization (403) failures; fail() the others")
        with self.store.cond:
            self._denials.append((path_prefix, code))

    def forbid(self, verb: str, resource: str, group: str = "", namespace: str | None = None,
               subresource: str = "") -> None:
        """RBAC without this permission: the requests answer 403 and access reviews of it allowed=false."""
        with self.store.cond:
            self.registry.rbac.forbid(verb, resource, group, namespace, subresource)

    def allow(self) -> None:
        """Lift every deny() and forbid()."""
        with self.store.cond:
            self._denials.clear()
            self.registry.rbac.clear()

    def forward(self, ns: str, pod: str, port: int, to: int) -> None:
        """Play the kubelet for pods/portforward: a tunnel to `port` of the pod reaches 127.0.0.1:`to`."""
        with self.store.cond:
            self._forwards[(ns, pod, port)] = to

    def on_exec(self, ns: str, pod: str, run) -> None:
        """Play the container runtime for pods/exec: run(command, container) -> a subprocess.Popen with binary
        pipes runs what the client asked for (a test maps it onto a local command)."""
        with self.store.cond:
            self._runners[(ns, pod)] = run

    def drop_watches(self) -> None:
        with self.store.cond:
            self.store.drop_streams()

    def compact(self) -> None:
        with self.store.cond:
            self.store.compact()

    def log(self, ns: str, pod: str, text: str) -> None:
        self.registry.logs.append(ns, pod, text)

    def event(self, obj: dict, reason: str, message: str, type: str = "Warning") -> dict:
        return self.registry.event(obj, reason, message, type, TEST_MANAGER)

    def make_ready(self, kind: str, ns: str, name: str) -> None:
        controllers.roll(self.registry, kind, ns, name, None)

    def make_unready(self, kind: str, ns: str, name: str, reason: str, message: str = "", restarts: int = 0) -> None:
        controllers.roll(self.registry, kind, ns, name, (reason, message, restarts))

    def job_running(self, ns: str, name: str, pods: int = 1) -> None:
        controllers.job_running(self.registry, ns, name, pods)

    def job_succeeded(self, ns: str, name: str) -> None:
        controllers.job_finished(self.registry, ns, name, succeeded=True)

    def job_failed(self, ns: str, name: str, reason: str = "BackoffLimitExceeded", message: str | None = None) -> None:
        controllers.job_finished(self.registry, ns, name, succeeded=False, reason=reason, message=message)

    def controller(self, on: bool = True) -> None:
        if on and self._controller is None:
            self._controlling = True
            self._controller = threading.Thread(target=self._control, name="fakeapi-controller", daemon=True)
            self._controller.start()
        elif not on and self._controller is not None:
            with self.store.cond:
                self._controlling = False
                self.store.cond.notify_all()
            self._controller.join()
            self._controller = None

    def _control(self) -> None:
        with self.store.cond:
            while self._controlling and not self.store.stopping:
                for kind, ns, name in [key for key in self.store.objects if key[0] in ("Deployment", "StatefulSet")]:
                    obj = self.store.get((kind, ns, name)).obj
                    if obj.get("status", {}).get("observedGeneration") != obj["metadata"]["generation"]:
                        controllers.roll(self.registry, kind, ns, name, None)
                self.store.cond.wait()

    # ---- requests

    def answer(self, request: Request, authorization: str) -> Answer:
        with self.store.cond:
            self._requests.append(request)
        if authorization != f"Bearer {self.token}":
            raise unauthorized()
        target = self._target(request.path)
        with self.store.cond:
            for prefix, code in self._denials:
                if request.path.startswith(prefix):
                    if code == 401:
                        raise unauthorized()
                    raise rbac_forbidden(request.path, request.method, target, request.query)
            for failure in self._failures:
                prefix, code, times = failure
                if times > 0 and request.path.startswith(prefix):
                    failure[2] -= 1
                    if code == 0:
                        request.dropped = True
                        break
                    phrase = HTTPStatus(code).phrase
                    reason, message = _FAILURES.get(code, (phrase.replace(" ", ""), phrase))
                    raise ApiError(code, reason, message, {})
            if target is not None and not self.registry.rbac.allows(verb(request.method, target, request.query),
                                                           target.kind.plural, target.kind.group, target.namespace,
                                                           target.subresource or ""):
                raise rbac_forbidden(request.path, request.method, target, request.query)
        if target is None:
            found = discovery(request.path, self.url.removeprefix("http://"), self.registry.kinds, self.registry.version)
            if found is None or request.method != "GET":
                raise NO_RESOURCE
            return Answer(200, found)
        return self._route(request, target)

    def _target(self, path: str) -> Target | None:
        """The resource a path names, None for a discovery path; 404 for a path the server does not serve."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) > 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        kinds = self.registry.kinds
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and by_path(kinds, group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        kind = by_path(kinds, group, version, rest[0])
        if kind is None or len(rest) > 3 or (kind.namespaced and namespace is None and len(rest) > 1):
            raise NO_RESOURCE
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and subresource not in kind.subresources:
            raise NO_RESOURCE
        return Target(kind, namespace, rest[1] if len(rest) > 1 else None, subresource)

    def _route(self, request: Request, target: Target) -> Answer:
        kind, ns, name, query = target.kind, target.namespace, target.name, request.query
        method = request.method
        if not kind.stored:
            if method == "POST" and name is None:
                return self._review(kind, request)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "GET" and target.subresource in STREAMS:
            return self._stream_session(target, request)
        if method == "GET" and target.subresource == "log":
            with self.store.cond:
                stored = self.store.get(key_of(kind, ns, name))
                if stored is None:
                    raise not_found(kind.resource, kind.group, kind.plural, name)
                return self.registry.logs.answer(stored.obj, query)
        if method == "GET" and name and target.subresource in (None, "status"):
            with self.store.cond:
                stored = self.store.get(key_of(kind, ns, name))
                if stored is None:
                    raise not_found(kind.resource, kind.group, kind.plural, name)
                return Answer(200, copy.deepcopy(stored.obj))
        if method == "GET":
            if is_true(query.get("watch")):
                return Answer(200, stream=self._watch(kind, ns, query))
            return Answer(200, self._list(kind, ns, query))
        if target.subresource is not None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "DELETE":
            return self._delete(kind, ns, name, request)
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
        # The decoder takes what a body leaves out from the endpoint it was sent to.
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **body}
        if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
            raise bad_request(f"the API version in the data ({body.get('apiVersion')}) does not match the expected "
                              f"API version ({kind.api_version})" if body.get("kind") == kind.kind else
                              f"the object provided is unrecognized (must be of type {kind.kind})")
        body = copy.deepcopy(body)
        if kind.kind == "Secret":
            for key, value in (body.get("data") or {}).items():
                bad_at = _base64_error(value)
                if bad_at is not None:
                    raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at '
                                      f"input byte {bad_at} (data[{key}])")
        return body

    def _create(self, kind: Kind, ns: str | None, request: Request) -> Answer:
        dry_run = check_dry_run(request.query, "CreateOptions")
        body = self._body(kind, request)
        warnings = self.registry.prune_unknown(kind, body, request.query)
        name = body.get("metadata", {}).get("name")
        if not name:
            raise invalid(kind.group, kind.kind, "", [validation.required("metadata.name",
                                                                          "name or generateName is required")])
        with self.store.cond:
            self.registry.check_scope(kind, ns, None, body)
            key = key_of(kind, ns, name)
            if key in self.store.objects:
                raise already_exists(kind.resource, kind.group, kind.plural, name)
            code, obj, more = self.registry.commit(kind, key, body, self._manager(request), dry_run=dry_run)
            return Answer(code, obj, warnings=warnings + more)

    def _replace(self, kind: Kind, ns: str | None, name: str, request: Request) -> Answer:
        dry_run = check_dry_run(request.query, "UpdateOptions")
        body = self._body(kind, request)
        warnings = self.registry.prune_unknown(kind, body, request.query)
        with self.store.cond:
            self.registry.check_scope(kind, ns, name, body)
            key = key_of(kind, ns, name)
            stored = self.store.get(key)
            if stored is None:
                raise not_found(kind.resource, kind.group, kind.plural, name)
            sent = body["metadata"].get("resourceVersion")
            if sent is not None and sent != stored.obj["metadata"]["resourceVersion"]:
                message = (f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again")
                raise ApiError(409, "Conflict", message, {"name": name, "group": kind.group, "kind": kind.plural})
            code, obj, more = self.registry.commit(kind, key, body, self._manager(request), dry_run=dry_run)
            return Answer(code, obj, warnings=warnings + more)

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
            return self._apply(kind, ns, name, request, dry_run)
        if not isinstance(request.body, dict):
            raise bad_request("the body of the request was not a JSON object")
        with self.store.cond:
            key = key_of(kind, ns, name)
            stored = self.store.get(key)
            if stored is None:
                raise not_found(kind.resource, kind.group, kind.plural, name)
            patched = merge_patch(copy.deepcopy(stored.obj), request.body)
            patched.setdefault("metadata", {}).pop("managedFields", None)
            warnings = self.registry.prune_unknown(kind, patched, query)
            code, obj, more = self.registry.commit(kind, key, patched, self._manager(request), dry_run=dry_run)
            return Answer(code, obj, warnings=warnings + more)

    def _apply(self, kind: Kind, ns: str | None, name: str, request: Request, dry_run: bool) -> Answer:
        """Server-side apply: merge what the manager applies, drop what it applied before and no longer does."""
        body = self._body(kind, request)
        if "managedFields" in body.get("metadata", {}):
            raise bad_request("metadata.managedFields must be nil")  # so an object read back cannot be re-applied
        self.registry.typed_patch(kind, ns, name, body)
        manager, force = request.query["fieldManager"], is_true(request.query.get("force"))
        node = self.registry.root(kind)
        with self.store.cond:
            self.registry.check_scope(kind, ns, name, body)
            key = key_of(kind, ns, name)
            stored = self.store.get(key)
            live = copy.deepcopy(stored.obj) if stored else {
                "apiVersion": kind.api_version, "kind": kind.kind,
                "metadata": {"name": name, **({"namespace": ns} if kind.namespaced else {})}}
            owners = stored.owners if stored else {}
            merged, applied = merged_config(live, owners, body, manager, node)
            code, obj, warnings = self.registry.commit(
                kind, key, merged, manager, dry_run=dry_run,
                owners_of=lambda new: owners_after_apply(kind, name, live, new, owners, manager, applied, force, node))
            return Answer(code, obj, warnings=warnings)

    @staticmethod
    def _manager(request: Request) -> str:
        """The manager of a non-apply write: ?fieldManager, else the client's User-Agent product, as for real."""
        return request.query.get("fieldManager") or request.user_agent.split("/")[0] or "unknown"

    # ---- reads, deletes, reviews

    def _delete(self, kind: Kind, ns: str | None, name: str | None, request: Request) -> Answer:
        query = request.query
        dry_run = check_dry_run(query, "DeleteOptions")
        options = request.body if isinstance(request.body, dict) else {}
        propagation = query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
        if propagation not in PROPAGATIONS:
            raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                                           f'value: "{propagation}": supported values: "Foreground", "Background", '
                                           '"Orphan", "nil"')
        with self.store.cond:
            if name is not None:
                key = key_of(kind, ns, name)
                stored = self.store.get(key)
                if stored is None:
                    raise not_found(kind.resource, kind.group, kind.plural, name)
                return Answer(200, copy.deepcopy(stored.obj) if dry_run else self.registry.remove_object(key, propagation))
            listed = self._list(kind, ns, query)
            if not dry_run:
                for item in listed["items"]:
                    key = key_of(kind, item["metadata"].get("namespace"), item["metadata"]["name"])
                    if self.store.get(key) is not None:
                        self.registry.remove_object(key, propagation)
            return Answer(200, listed)

    def _list(self, kind: Kind, ns: str | None, query: dict) -> dict:
        labels = label_matcher(query.get("labelSelector", ""))
        fields = field_matcher(kind, query.get("fieldSelector", ""))
        with self.store.cond:
            items = [without_type(s.obj) for _, s in self.store.of_kind(kind.kind, ns)
                     if labels(s.obj["metadata"].get("labels")) and fields(s.obj)]
            return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": str(self.store.rv)}, "items": copy.deepcopy(items)}

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
        return self.store.watch(kind, selected, since, timeout, is_true(query.get("allowWatchBookmarks")))

    def _stream_session(self, target: Target, request: Request) -> Answer:
        """pods/exec and pods/portforward: the kubelet's streams, once the pod runs, over a websocket."""
        ns, name, values = target.namespace, target.name, request.values
        with self.store.cond:
            stored = self.store.get(key_of(target.kind, ns, name))
            if stored is None:
                raise not_found(target.kind.resource, target.kind.group, target.kind.plural, name)
            pod = copy.deepcopy(stored.obj)
        if pod.get("status", {}).get("phase") != "Running":
            raise bad_request("unable to upgrade connection: pod does not exist")
        containers = [c["name"] for c in pod["spec"]["containers"]]
        if target.subresource == "portforward":
            ports = [int(port) for value in values.get("ports", []) for port in value.split(",")]

            def connect(port: int):
                to = self._forwards.get((ns, name, port))
                if to is None:
                    raise ConnectionRefusedError(111, "Connection refused")
                return socket.create_connection(("127.0.0.1", to))

            return Answer(101, upgrade=lambda handler: self._upgrade(
                handler, lambda: channels.serve_portforward(handler, ports, connect)))
        container = request.query.get("container") or containers[0]
        if container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        command = values.get("command", [])
        run = self._runners.get((ns, name))

        def start(argv: list[str]):
            if run is None:
                raise FileNotFoundError(2, f"no runner for pod {name}: a test gives one with on_exec()", argv[0])
            return run(argv, container)

        flags = {flag: is_true(request.query.get(flag)) for flag in ("stdin", "stdout", "stderr", "tty")}
        return Answer(101, upgrade=lambda handler: self._upgrade(
            handler, lambda: channels.serve_exec(handler, command, run=start, **flags)))

    @staticmethod
    def _upgrade(handler, serve) -> None:
        if not channels.is_upgrade(handler.headers):
            error = bad_request("Upgrade request required")
            data = json.dumps(error.status()).encode()
            handler.send_response(400)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        serve()

    def _review(self, kind: Kind, request: Request) -> Answer:
        """A SelfSubjectAccessReview, answered from the same RBAC model the requests are checked against."""
        body = self._body(kind, request)
        with self.store.cond:
            body["status"] = self.registry.rbac.review(body.get("spec") or {})
        body.setdefault("metadata", {})
        return Answer(201, body)

