"""FakeApi: the stand-in server's request paths, and the handle tests drive it by (see the package docstring)."""

from __future__ import annotations

import base64
import binascii
import copy
import re
import threading
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import ThreadingHTTPServer

import yaml

from tests.standin import admission, controllers, defaults, schema, validation
from tests.standin.apply import (managed_fields, merged_config, now, owners_after_apply, owners_after_update, shape,
                                 take_field)
from tests.standin.errors import (NO_RESOURCE, ApiError, already_exists, bad_request, forbidden, internal, invalid,
                                  not_found, unauthorized)
from tests.standin.fields import duplicates, parse_path, path_text, smd_path
from tests.standin.handler import APPLY_TYPE, Answer, Handler, Request
from tests.standin.kinds import BY_KIND, Kind, by_path, discovery, served
from tests.standin.logs import PodLogs, is_true
from tests.standin.selectors import field_matcher, label_matcher
from tests.standin.store import Store, key_of

DEFAULT_VERSION = "1.33.0"
USER = "contract-tester"
TEST_MANAGER = "test"
MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
PROPAGATIONS = ("Foreground", "Background", "Orphan")
# Metadata only the server sets; a write keeps the stored values.
_SERVER_METADATA = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp",
                    "deletionGracePeriodSeconds")
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


def _without_managed_fields(obj: dict) -> dict:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


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
        self.version = version
        # Shared with the package's controllers, which write through the same paths as requests do.
        self.store = Store()
        self.logs = PodLogs(self.store)
        self.rbac = admission.Rbac()
        self.replica_sets: dict[str, str] = {}  # ReplicaSet uid -> its Deployment's uid, for garbage collection
        self._gateway_api = False
        self._next_ip = 10
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
        self.version = version

    def serve_gateway_api(self, installed: bool = True) -> None:
        """Play the Gateway API CRDs being installed (or removed): discovery, paths and validation follow."""
        with self.store.cond:
            self._gateway_api = installed
            if not installed:
                for key in [k for k in self.store.objects if BY_KIND[k[0]].crd]:
                    self.store.remove(BY_KIND[key[0]], key)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return served(self._gateway_api)

    # ---- the handle

    def put(self, obj: dict) -> dict:
        """Create or replace obj as another client would (manager "test"), status and deletionTimestamp as given."""
        kind = BY_KIND[obj["kind"]]
        body = copy.deepcopy(obj)
        with self.store.cond:
            self._check_scope(kind, body["metadata"].get("namespace"), None, body)
            key = key_of(kind, body["metadata"].get("namespace"), body["metadata"]["name"])
            return self._commit(kind, key, body, TEST_MANAGER, keep_status=True, trusted=True)[1]

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
            return self.remove_object(key, propagation)

    def set_status(self, kind: str, ns: str | None, name: str, status: dict) -> dict:
        with self.store.cond:
            key = key_of(BY_KIND[kind], ns, name)
            stored = self.store.get(key)
            obj = copy.deepcopy(stored.obj)
            obj["status"] = copy.deepcopy(status)
            return self.store.write(BY_KIND[kind], key, obj, dict(stored.owners))

    def set_owner(self, kind: str, ns: str | None, name: str, field_path: str, manager: str) -> None:
        """Record that `manager` (an Update manager, e.g. "kubectl-edit") wrote the field at field_path, given
        as conflicts print it: `.spec.replicas`, `.spec.template.spec.containers[name="worker"].image`."""
        with self.store.cond:
            key = key_of(BY_KIND[kind], ns, name)
            stored = self.store.get(key)
            owners = take_field(BY_KIND[kind], stored.owners, parse_path(field_path), manager)
            obj = copy.deepcopy(stored.obj)
            obj["metadata"]["managedFields"] = managed_fields(owners)
            self.store.write(BY_KIND[kind], key, obj, owners)

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
            self.rbac.forbid(verb, resource, group, namespace, subresource)

    def allow(self) -> None:
        """Lift every deny() and forbid()."""
        with self.store.cond:
            self._denials.clear()
            self.rbac.clear()

    def drop_watches(self) -> None:
        with self.store.cond:
            self.store.drop_streams()

    def compact(self) -> None:
        with self.store.cond:
            self.store.compact()

    def log(self, ns: str, pod: str, text: str) -> None:
        self.logs.append(ns, pod, text)

    def event(self, obj: dict, reason: str, message: str, type: str = "Warning") -> dict:
        meta, stamp = obj["metadata"], now()
        return self.system_write({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": meta["name"],
                               "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "fakeapi"}, "reportingComponent": "fakeapi",
        }, TEST_MANAGER)

    def make_ready(self, kind: str, ns: str, name: str) -> None:
        controllers.roll(self, kind, ns, name, None)

    def make_unready(self, kind: str, ns: str, name: str, reason: str, message: str = "", restarts: int = 0) -> None:
        controllers.roll(self, kind, ns, name, (reason, message, restarts))

    def job_running(self, ns: str, name: str, pods: int = 1) -> None:
        controllers.job_running(self, ns, name, pods)

    def job_succeeded(self, ns: str, name: str) -> None:
        controllers.job_finished(self, ns, name, succeeded=True)

    def job_failed(self, ns: str, name: str, reason: str = "BackoffLimitExceeded", message: str | None = None) -> None:
        controllers.job_finished(self, ns, name, succeeded=False, reason=reason, message=message)

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
                        controllers.roll(self, kind, ns, name, None)
                self.store.cond.wait()

    # ---- what the controllers write through

    def system_write(self, obj: dict, manager: str = controllers.CONTROLLER_MANAGER) -> dict:
        """Create or update obj as a controller does (status included), through the full write path."""
        kind = BY_KIND[obj["kind"]]
        body = copy.deepcopy(obj)
        with self.store.cond:
            self._check_scope(kind, body["metadata"].get("namespace"), None, body)
            key = key_of(kind, body["metadata"].get("namespace"), body["metadata"]["name"])
            return self._commit(kind, key, body, manager, keep_status=True)[1]

    def remove_object(self, key: tuple, propagation: str = "Background") -> dict:
        """DELETE's effect: removed at once, or marked for deletion while finalizers (or Foreground) hold it."""
        kind = BY_KIND[key[0]]
        stored = self.store.get(key)
        if kind.kind == "Namespace":
            # The real namespace controller empties a Terminating namespace in the background; here it is at once.
            for inner in [k for k in self.store.objects if k[1] == key[2] and BY_KIND[k[0]].namespaced]:
                self.store.remove(BY_KIND[inner[0]], inner)
                if inner[0] == "Pod":
                    self.logs.forget(inner[1], inner[2])
            return self.store.remove(kind, key)
        obj = copy.deepcopy(stored.obj)
        meta = obj["metadata"]
        if propagation == "Foreground" or meta.get("finalizers"):
            meta.setdefault("deletionTimestamp", now())
            meta.setdefault("deletionGracePeriodSeconds", 0)
            if propagation == "Foreground" and "foregroundDeletion" not in (meta.get("finalizers") or []):
                meta["finalizers"] = [*meta.get("finalizers", []), "foregroundDeletion"]
            marked = self.store.write(kind, key, obj, stored.owners)
            if propagation == "Foreground":
                self._collect(obj, "Foreground")
                self.drop_finalizer(key, "foregroundDeletion")
            if kind.kind == "PersistentVolumeClaim":
                controllers.release_claims(self, key[1])
            return marked
        last = self.store.remove(kind, key)
        self._removed(kind, key, obj, propagation)
        return last

    def drop_finalizer(self, key: tuple, finalizer: str) -> None:
        """A controller done with its finalizer removes it; the last one gone, a deleted object goes too."""
        stored = self.store.get(key)
        if stored is None:
            return
        obj = copy.deepcopy(stored.obj)
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if not obj["metadata"]["finalizers"]:
            del obj["metadata"]["finalizers"]
            if obj["metadata"].get("deletionTimestamp"):
                self.store.remove(BY_KIND[key[0]], key)
                self._removed(BY_KIND[key[0]], key, obj, "Background")
                return
        self.store.write(BY_KIND[key[0]], key, obj, stored.owners)

    def _removed(self, kind: Kind, key: tuple, obj: dict, propagation: str) -> None:
        if kind.kind == "Pod":
            self.logs.forget(key[1], key[2])
            controllers.release_claims(self, key[1])
        self._collect(obj, propagation)

    def _collect(self, owner: dict, propagation: str) -> None:
        """The garbage collector: dependents go with their owner, or lose their ownerReference (Orphan)."""
        direct, through_sets = controllers.dependents(self, owner)
        uid = owner["metadata"].get("uid")
        if propagation == "Orphan":
            for key in direct:
                stored = self.store.get(key)
                obj = copy.deepcopy(stored.obj)
                obj["metadata"]["ownerReferences"] = [r for r in obj["metadata"]["ownerReferences"]
                                                      if r.get("uid") != uid]
                if not obj["metadata"]["ownerReferences"]:
                    del obj["metadata"]["ownerReferences"]
                self.store.write(BY_KIND[key[0]], key, obj, stored.owners)
        else:
            for key in direct + through_sets:
                if self.store.get(key) is not None:
                    self.remove_object(key, "Background" if propagation == "Background" else "Foreground")
        for replica_set in [rs for rs, deployment in self.replica_sets.items() if deployment == uid]:
            del self.replica_sets[replica_set]

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
                    phrase = HTTPStatus(code).phrase
                    reason, message = _FAILURES.get(code, (phrase.replace(" ", ""), phrase))
                    raise ApiError(code, reason, message, {})
            if target is not None and not self.rbac.allows(verb(request.method, target, request.query),
                                                           target.kind.plural, target.kind.group, target.namespace,
                                                           target.subresource or ""):
                raise rbac_forbidden(request.path, request.method, target, request.query)
        if target is None:
            found = discovery(request.path, self.url.removeprefix("http://"), self.kinds, self.version)
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
        kinds = self.kinds
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
        if method == "GET" and target.subresource == "log":
            with self.store.cond:
                stored = self.store.get(key_of(kind, ns, name))
                if stored is None:
                    raise not_found(kind.resource, kind.group, kind.plural, name)
                return self.logs.answer(stored.obj, query)
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

    def _check_scope(self, kind: Kind, ns: str | None, name: str | None, body: dict) -> None:
        meta = body.setdefault("metadata", {})
        if name is not None and meta.get("name") != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                              f"({name})")
        if not kind.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace", ns) != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = ns
        namespace = self.store.get(("Namespace", "", ns))
        if namespace is None:
            namespaces = BY_KIND["Namespace"]
            raise not_found(namespaces.resource, "", namespaces.plural, ns)
        terminating = namespace.obj["metadata"].get("deletionTimestamp")
        if terminating and key_of(kind, ns, meta.get("name")) not in self.store.objects:
            # The NamespaceLifecycle admission plugin: nothing new in a namespace that is being deleted.
            raise forbidden(kind.resource, kind.group, kind.plural, meta.get("name") or "",
                            f"unable to create new content in namespace {ns} because it is being terminated")

    def _root(self, kind: Kind) -> schema.Node:
        return schema.root(schema.schema_version(self.version), kind)

    def _prune_unknown(self, kind: Kind, body: dict, query: dict) -> list[str]:
        """Unknown fields of a create, replace or patch: dropped with a warning (the default, Warn), dropped
        (Ignore), or refused (Strict), as the decoder does for each fieldValidation."""
        directive = query.get("fieldValidation", "Warn")
        found = schema.unknown_fields(body, self._root(kind))
        texts = [f'unknown field "{schema.json_path(path)}"' for path, _, _ in found]
        if found and directive == "Strict":
            raise bad_request("strict decoding error: " + ", ".join(texts))
        for _, parent, key in found:
            parent.pop(key, None)
        return texts if directive == "Warn" else []

    def _typed_patch(self, kind: Kind, ns: str | None, name: str, body: dict) -> None:
        """What structured-merge-diff cannot turn into a typed object fails the apply, as a plain 500."""
        node = self._root(kind)
        problems = [f"{path_text(smd_path(body, path, node))}: field not declared in schema"
                    for path, _, _ in schema.unknown_fields(body, node)]
        problems += [f"{path_text(path)}: duplicate entries for key {path_text((key,))}"
                     for path, key in duplicates(body, node)]
        if problems:
            listed = problems[0] if len(problems) == 1 else "errors:\n  " + "\n  ".join(problems)
            raise internal(f"failed to create typed patch object ({ns or ''}/{name}; {kind.group}/{kind.version}, "
                           f"Kind={kind.kind}): {listed}")

    def _create(self, kind: Kind, ns: str | None, request: Request) -> Answer:
        dry_run = check_dry_run(request.query, "CreateOptions")
        body = self._body(kind, request)
        warnings = self._prune_unknown(kind, body, request.query)
        name = body.get("metadata", {}).get("name")
        if not name:
            raise invalid(kind.group, kind.kind, "", [validation.required("metadata.name",
                                                                          "name or generateName is required")])
        with self.store.cond:
            self._check_scope(kind, ns, None, body)
            key = key_of(kind, ns, name)
            if key in self.store.objects:
                raise already_exists(kind.resource, kind.group, kind.plural, name)
            code, obj, more = self._commit(kind, key, body, self._manager(request), dry_run=dry_run)
            return Answer(code, obj, warnings=warnings + more)

    def _replace(self, kind: Kind, ns: str | None, name: str, request: Request) -> Answer:
        dry_run = check_dry_run(request.query, "UpdateOptions")
        body = self._body(kind, request)
        warnings = self._prune_unknown(kind, body, request.query)
        with self.store.cond:
            self._check_scope(kind, ns, name, body)
            key = key_of(kind, ns, name)
            stored = self.store.get(key)
            if stored is None:
                raise not_found(kind.resource, kind.group, kind.plural, name)
            sent = body["metadata"].get("resourceVersion")
            if sent is not None and sent != stored.obj["metadata"]["resourceVersion"]:
                message = (f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again")
                raise ApiError(409, "Conflict", message, {"name": name, "group": kind.group, "kind": kind.plural})
            code, obj, more = self._commit(kind, key, body, self._manager(request), dry_run=dry_run)
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
            warnings = self._prune_unknown(kind, patched, query)
            code, obj, more = self._commit(kind, key, patched, self._manager(request), dry_run=dry_run)
            return Answer(code, obj, warnings=warnings + more)

    def _apply(self, kind: Kind, ns: str | None, name: str, request: Request, dry_run: bool) -> Answer:
        """Server-side apply: merge what the manager applies, drop what it applied before and no longer does."""
        body = self._body(kind, request)
        if "managedFields" in body.get("metadata", {}):
            raise bad_request("metadata.managedFields must be nil")  # so an object read back cannot be re-applied
        self._typed_patch(kind, ns, name, body)
        manager, force = request.query["fieldManager"], is_true(request.query.get("force"))
        node = self._root(kind)
        with self.store.cond:
            self._check_scope(kind, ns, name, body)
            key = key_of(kind, ns, name)
            stored = self.store.get(key)
            live = copy.deepcopy(stored.obj) if stored else {
                "apiVersion": kind.api_version, "kind": kind.kind,
                "metadata": {"name": name, **({"namespace": ns} if kind.namespaced else {})}}
            owners = stored.owners if stored else {}
            merged, applied = merged_config(live, owners, body, manager, node)
            code, obj, warnings = self._commit(
                kind, key, merged, manager, dry_run=dry_run,
                owners_of=lambda new: owners_after_apply(kind, name, live, new, owners, manager, applied, force, node))
            return Answer(code, obj, warnings=warnings)

    @staticmethod
    def _manager(request: Request) -> str:
        """The manager of a non-apply write: ?fieldManager, else the client's User-Agent product, as for real."""
        return request.query.get("fieldManager") or request.user_agent.split("/")[0] or "unknown"

    # ---- the write path: every create, update and apply goes through _commit, so that all rules hold for all

    def _commit(self, kind: Kind, key: tuple, obj: dict, manager: str, *, dry_run: bool = False,
                keep_status: bool = False, trusted: bool = False, owners_of=None) -> tuple[int, dict, list[str]]:
        """The registry's write path: prepare, default, take ownership, admit, validate, store."""
        stored = self.store.get(key)
        old = stored.obj if stored else None
        meta = obj.setdefault("metadata", {})
        meta.pop("managedFields", None)
        if not keep_status:
            obj.pop("status", None)
            if old is not None and "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
        for field in _SERVER_METADATA:
            if not (trusted and field in ("deletionTimestamp", "deletionGracePeriodSeconds")):
                meta.pop(field, None)
            if old is not None and field in old["metadata"]:
                meta[field] = old["metadata"][field]
        if kind.kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for name, value in obj.pop("stringData").items():
                data[name] = base64.b64encode(value.encode()).decode()
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        elif kind.kind == "Service":
            self._keep_cluster_ip(old, obj)
        defaults.default(kind, obj, self.version)
        if old is None and kind.kind == "Job":
            defaults.job_selector(obj)
        if old is None and kind.kind == "Service":
            defaults.cluster_ip(obj, self._allocate_ip)
        if old is not None and obj.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"]["generation"] + 1
        if owners_of is not None:
            owners = owners_of(obj)
        else:
            owners = owners_after_update(kind, old, obj, stored.owners if stored else {}, manager, self._root(kind))
        if old is None:
            self._mutating_admission(kind, obj)
        errors = schema.schema_errors(schema.schema_version(self.version), kind, obj)
        errors += validation.validate(kind, obj, creating=old is None)
        if old is not None:
            errors += validation.validate_update(kind, old, obj)
        if errors:
            raise invalid(kind.group, kind.kind, meta.get("name", ""), errors)
        warnings = []
        if old is None or (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            refusal, warnings = admission.check_pod_security(kind, obj, self._namespace_of(kind, obj))
            if refusal and old is None:
                raise forbidden(kind.resource, kind.group, kind.plural, meta["name"], refusal)
        return (*self._store(kind, key, stored, obj, owners, dry_run), warnings)

    def _store(self, kind: Kind, key: tuple, stored, obj: dict, owners: dict, dry_run: bool) -> tuple[int, dict]:
        meta = obj["metadata"]
        if owners:
            meta["managedFields"] = managed_fields(owners)
        if stored is not None and _without_managed_fields(stored.obj) == _without_managed_fields(obj) and (
                shape(owners) == shape(stored.owners)):
            return 200, copy.deepcopy(stored.obj)  # a no-op: same resourceVersion, no watch event
        code = 200 if stored else 201
        if dry_run:
            return code, copy.deepcopy(obj)
        if stored is not None and meta.get("deletionTimestamp") and stored.obj["metadata"].get("finalizers") and (
                not meta.get("finalizers")):
            # The last finalizer went: the object being deleted goes.
            last = self.store.remove(kind, key)
            self._removed(kind, key, obj, "Background")
            return code, last
        result = self.store.write(kind, key, obj, owners)
        if stored is None and kind.kind == "Namespace" and not meta.get("deletionTimestamp"):
            for inner in controllers.namespace_contents(meta["name"]):
                self.system_write(inner)
        return code, result

    def _mutating_admission(self, kind: Kind, obj: dict) -> None:
        if kind.kind == "PersistentVolumeClaim":
            admission.protect_claim(obj)
        if kind.kind == "Pod":
            ns = obj["metadata"]["namespace"]
            name = (obj.get("spec") or {}).get("serviceAccountName") or (obj.get("spec") or {}).get(
                "serviceAccount") or "default"
            account = self.store.get(("ServiceAccount", ns, name))
            refusal = admission.service_account(obj, account.obj if account else None)
            if refusal:
                raise forbidden(kind.resource, kind.group, kind.plural, obj["metadata"]["name"], refusal)

    def _namespace_of(self, kind: Kind, obj: dict) -> dict | None:
        if not kind.namespaced:
            return None
        stored = self.store.get(("Namespace", "", obj["metadata"]["namespace"]))
        return stored.obj if stored else None

    def _keep_cluster_ip(self, old: dict, new: dict) -> None:
        """The Service REST update keeps the allocated address a writer leaves out (patchAllocatedValues)."""
        old_spec, new_spec = old.get("spec") or {}, new.setdefault("spec", {})
        if "ExternalName" in (old_spec.get("type"), new_spec.get("type")):
            return
        if not new_spec.get("clusterIP") and not new_spec.get("clusterIPs"):
            for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if field in old_spec:
                    new_spec[field] = copy.deepcopy(old_spec[field])
        elif new_spec.get("clusterIP") and new_spec.get("clusterIPs") in (None, old_spec.get("clusterIPs")):
            new_spec["clusterIPs"] = [new_spec["clusterIP"]]

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return f"10.96.{self._next_ip // 250}.{self._next_ip % 250}"

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
                return Answer(200, copy.deepcopy(stored.obj) if dry_run else self.remove_object(key, propagation))
            listed = self._list(kind, ns, query)
            if not dry_run:
                for item in listed["items"]:
                    key = key_of(kind, item["metadata"].get("namespace"), item["metadata"]["name"])
                    if self.store.get(key) is not None:
                        self.remove_object(key, propagation)
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

    def _review(self, kind: Kind, request: Request) -> Answer:
        """A SelfSubjectAccessReview, answered from the same RBAC model the requests are checked against."""
        body = self._body(kind, request)
        with self.store.cond:
            body["status"] = self.rbac.review(body.get("spec") or {})
        body.setdefault("metadata", {})
        return Answer(201, body)

