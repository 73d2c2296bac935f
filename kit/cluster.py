"""The kit's one door to the Kubernetes API: connect, apply, list, watch, delete, exec, read logs.

Every call goes through the official client's DynamicClient. Objects are applied server-side under one
field manager, so the API server itself tracks which fields the kit owns and `kubectl` sees the same.
Everything here takes and returns plain dicts; what to apply comes from kit.manifests, never from here.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from kit import retry
from kit.errors import UserError
from kit.kinds import NAMESPACED, Kind
from kit.settings import Settings

FIELD_MANAGER = "prefect-kit"
# `--restart` writes one annotation under a manager of its own (as `kubectl rollout restart` does): had
# the kit's apply owned it, the next apply without `--restart` would remove it and restart the pods again.
RESTART_MANAGER = "prefect-kit-restart"
RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
# Scaling for a restore is not part of the applied configuration: it gets a manager of its own, as `kubectl scale`.
SCALE_MANAGER = "prefect-kit-scale"
# Keeps a workload's replicas while the kit's apply lets go of them for a new autoscaler (Kubernetes' documented
# hand-over of a field between managers).
HANDOVER_MANAGER = "prefect-kit-handover"
MANAGED = "app.kubernetes.io/managed-by=prefect-kit"
# (connect, read) seconds for ordinary calls: a black-holed server must not hang a task for minutes.
REQUEST_TIMEOUT = (10, 60)
_SERVER_FIELDS = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")
T = TypeVar("T")


def connect(settings: Settings) -> Cluster:
    """The cluster of KUBE_CONTEXT (or the current context, or the pod's own service account).

    Use it as a context manager: API failures inside the block become one-line UserErrors.
    """
    from kubernetes import client

    configuration = client.Configuration()
    context = _load_configuration(settings.kube_context, configuration)
    # urllib3 would send a GET or DELETE again by itself after a dropped connection (and log a warning each time):
    # off, so that kit.retry is the one place that retries, and knows when an answer was lost.
    configuration.retries = False
    return Cluster(client.ApiClient(configuration), context, configuration.host, settings.namespace,
                   retry_deadline=settings.retry_deadline, settings_file=settings.source)


def _load_configuration(context: str, configuration) -> str:
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    location = os.environ.get("KUBECONFIG") or "~/.kube/config"
    files = [os.path.expanduser(path) for path in location.split(os.pathsep) if path]
    if not any(os.path.exists(path) for path in files):
        if not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
            return "in-cluster"
        raise UserError(f"KUBE_CONTEXT: no kubeconfig at {location} and not running in a pod; "
                        "point KUBECONFIG at one (kind and minikube write ~/.kube/config)")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=location)
    except ConfigException as error:
        raise UserError(f"KUBE_CONTEXT: {location} is not a usable kubeconfig ({error})") from None
    names = [item["name"] for item in contexts or []]
    chosen = context or (current or {}).get("name", "")
    if not chosen:
        raise UserError(f"KUBE_CONTEXT: {location} has no current context; set KUBE_CONTEXT to one of: "
                        f"{', '.join(names) or '(none)'}")
    if chosen not in names:
        raise UserError(f"KUBE_CONTEXT: context '{chosen}' is not in {location}; choose one of: "
                        f"{', '.join(names) or '(none)'}")
    try:
        config.load_kube_config(config_file=location, context=chosen, client_configuration=configuration,
                                persist_config=False)
    except ConfigException as error:
        raise UserError(f"KUBE_CONTEXT: context '{chosen}' in {location} cannot be used: {error}") from None
    return chosen


class WaitTimeout(UserError):
    """What wait_for raises when its time is up: a UserError, which a caller that waits on may catch."""


@dataclass
class Cluster:
    """One namespace of one cluster, reached through one API client. Every request goes through kit.retry."""

    api_client: object
    context: str
    server: str
    namespace: str
    retry_deadline: float
    settings_file: str = ".env"
    _dynamic: object = field(default=None, repr=False)
    _resources: dict = field(default_factory=dict, repr=False)
    # Whether the API server has answered a request yet: only then is a refused or dropped connection worth retrying.
    _answered: bool = field(default=False, repr=False)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        problem = self.explain(error) if error is not None else None
        if problem:
            raise UserError(problem) from None
        return False

    def explain(self, error: BaseException) -> str | None:
        """The one line a user needs for an unreachable server, one that kept failing (kit.retry gave up), 401 or
        403; None for anything else."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"context '{self.context}' ({self.server})"
        if isinstance(error, retry.GaveUp) and isinstance(error.error, (ApiException, HTTPError)):
            last = error.error
            cause = (f"HTTP {last.status}: {status_message(last)}" if isinstance(last, ApiException)
                     else connection_reason(last))
            return (f"KUBE_CONTEXT: the API server of {where} kept failing on {error.what} ({cause}), retried for "
                    f"{error.deadline:g} s (RETRY_DEADLINE); check it (`kubectl get --raw /readyz`), then run this "
                    "again")
        status = getattr(error, "status", None) if isinstance(error, ApiException) else None
        if status == 401:
            return (f"KUBE_CONTEXT: the API server of {where} rejected the credentials (401 Unauthorized); "
                    "log in again or refresh the kubeconfig")
        if status == 403 and "because it is being terminated" in status_message(error):
            # The NamespaceLifecycle admission answers 403 too, right after a `kubectl delete namespace`.
            return (f"NAMESPACE: {self.namespace} is still being deleted; wait until `kubectl get namespace "
                    f"{self.namespace}` no longer finds it, then run this again")
        if status == 403:
            return (f"KUBE_CONTEXT: {where} is not allowed to do this: {status_message(error)}; ask a cluster "
                    f"admin for a Role allowing it in namespace {self.namespace} (README: Troubleshooting)")
        if isinstance(error, HTTPError):
            return (f"KUBE_CONTEXT: cannot reach the API server of {where}: {connection_reason(error)}; "
                    "check that the cluster is running and that this is the right context")
        if status is not None and status >= 500:
            return f"KUBE_CONTEXT: the API server of {where} failed: {status_message(error)}; try again"
        return None

    @property
    def dynamic(self):
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient

            # Discovery is cached in a temp file per server URL (as kubectl caches it): later runs skip it.
            self._dynamic = DynamicClient(self.api_client)
        return self._dynamic

    def resource(self, api_version: str, kind: str):
        key = (api_version, kind)
        if key not in self._resources:
            # Core kinds live under the "api" prefix; naming it keeps discovery from reading every API group.
            prefix = "api" if "/" not in api_version else "apis"
            self._resources[key] = self._call(f"discovery of {api_version}", lambda retrying: (
                self.dynamic.resources.get(prefix=prefix, api_version=api_version, kind=kind)))
        return self._resources[key]

    def serves(self, kind: Kind) -> bool:
        """Whether the API server has this kind at all: an add-on such as Gateway API may not be installed.

        Asked of the group's own discovery path (404 when absent): a kind the DynamicClient cannot find makes it
        throw its whole discovery cache away, and every later lookup in this run would fetch it again.
        """
        from kubernetes.dynamic.exceptions import NotFoundError

        prefix = "api" if "/" not in kind.api_version else "apis"
        try:
            listed = self._request("get", f"/{prefix}/{kind.api_version}")
        except NotFoundError:
            return False
        return any(resource.get("kind") == kind.name for resource in listed.get("resources", []))

    def version(self) -> str:
        """The API server's Kubernetes version, e.g. v1.36.2."""
        return self._request("get", "/version")["gitVersion"]

    def may(self, verb: str, resource: str, *, group: str = "", subresource: str = "", name: str = "",
            namespaced: bool = True) -> bool:
        """Whether these credentials may do this, as the API server's own authorizer answers (an access review)."""
        attributes = {"verb": verb, "resource": resource, "group": group, "subresource": subresource, "name": name}
        if namespaced:
            attributes["namespace"] = self.namespace
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attributes}}
        answer = self._request("post", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
        return bool(answer.get("status", {}).get("allowed"))

    def managed(self) -> tuple[list[dict], list[Kind]]:
        """Every object the kit labelled in the namespace, and the kinds this cluster does not serve."""
        found, unserved = [], []
        for kind in NAMESPACED:
            if kind.optional and not self.serves(kind):
                unserved.append(kind)
                continue
            found += self.objects(kind.api_version, kind.name)[0]
        return found, unserved

    def _namespace_for(self, resource) -> str | None:
        return self.namespace if resource.namespaced else None

    def _call(self, what: str, send: Callable[[bool], T]) -> T:
        """send(retrying) under the retry policy: again after a 429 or 5xx, and after a refused or dropped connection
        once this server has answered before, until RETRY_DEADLINE; `what` names the request when it gives up."""
        from kubernetes.client.exceptions import ApiException

        def attempt(retrying: bool) -> T:
            try:
                result = send(retrying)
            except ApiException as error:
                self._answered = self._answered or bool(error.status)  # status 0: no answer (TLS)
                raise
            self._answered = True
            return result

        return retry.call(attempt, self.retry_deadline, what=what,
                          is_transient=lambda error: retry.transient(error, answered=self._answered))

    def _send(self, method: str, path: str, **params) -> dict:
        """One request, not retried: the methods that retry know what a retry after a lost answer means."""
        response = self.dynamic.request(method, path, serialize=False, _request_timeout=REQUEST_TIMEOUT, **params)
        return json.loads(response.data)

    def _request(self, method: str, path: str, **params) -> dict:
        return self._call(f"{method.upper()} {path}", lambda retrying: self._send(method, path, **params))

    def apply(self, obj: dict, *, dry_run: bool = False, force_conflicts: bool = False,
              manager: str = FIELD_MANAGER) -> tuple[bool, dict]:
        """Server-side apply one object; returns (created, the object as stored or as it would be)."""
        from kubernetes.dynamic.exceptions import (ConflictError, InternalServerError, ResourceNotFoundError,
                                                   UnprocessibleEntityError)

        try:
            resource = self.resource(obj["apiVersion"], obj["kind"])
        except ResourceNotFoundError:
            raise UserError(f"{describe(obj)}: this cluster does not serve {obj['kind']} ({obj['apiVersion']}); "
                            f"install the API that provides it, or change {self.settings_file} so the kit does not "
                            "render it") from None
        namespace = self._namespace_for(resource)

        def send(retrying: bool):
            # Applying again is what apply is for: a retry after a lost answer changes nothing more.
            try:
                return self.dynamic.server_side_apply(
                    resource, body=obj, namespace=namespace, field_manager=manager,
                    force_conflicts=True if force_conflicts else None, dry_run="All" if dry_run else None,
                    serialize=False, _request_timeout=REQUEST_TIMEOUT)
            except ConflictError as error:
                raise UserError(
                    f"{describe(obj)}: {status_message(error)}; another tool changed fields the kit manages: "
                    "`inv rollout --force-conflicts` takes them back (README: Troubleshooting)") from None
            except UnprocessibleEntityError as error:
                raise UserError(f"{describe(obj)}: the API server rejected it: {status_message(error)}") from None
            except InternalServerError as error:
                # An object the field manager cannot type (a field the schema lacks, a list key twice) fails as a
                # 500, but it is the object that is wrong: trying again cannot help.
                if "failed to create typed patch object" not in status_message(error):
                    raise
                raise UserError(f"{describe(obj)}: the API server rejected it: {status_message(error)}") from None

        response = self._call(f"PATCH {resource.path(name=obj['metadata']['name'], namespace=namespace)}", send)
        return response.status == 201, json.loads(response.data)

    def dry_run_create(self, obj: dict) -> list[str]:
        """Ask the API server to admit a new object (schema strictly, admission plugins such as PodSecurity)
        without storing it; returns its warnings. A refusal raises the client's ApiException."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        path = resource.path(namespace=self._namespace_for(resource))
        response = self._call(f"POST {path} (dry run)", lambda retrying: self.dynamic.request(
            "post", path, body=obj, dry_run="All", query_params=[("fieldValidation", "Strict")], serialize=False,
            _request_timeout=REQUEST_TIMEOUT))
        return [warning for header, warning in response.getheaders().items() if header.lower() == "warning"]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """One object, or None; namespaced kinds are looked up in the kit's namespace unless another is named."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self.resource(api_version, kind)
        where = (namespace or self.namespace) if resource.namespaced else None
        try:
            return self._request("get", resource.path(name=name, namespace=where))
        except NotFoundError:
            return None

    def objects(self, api_version: str, kind: str, label_selector: str = MANAGED) -> tuple[list[dict], str]:
        """The matching objects of one kind in the namespace, and the list's resourceVersion to watch from."""
        resource = self.resource(api_version, kind)
        listed = self._request("get", resource.path(namespace=self._namespace_for(resource)),
                               label_selector=label_selector)
        # A real server leaves apiVersion and kind out of list items; put them back so items read like objects.
        items = [{"apiVersion": api_version, "kind": kind, **item} for item in listed.get("items") or []]
        return items, listed["metadata"]["resourceVersion"]

    def pods_of(self, workload: dict) -> list[dict]:
        """The pods a Deployment or StatefulSet selects, old and new."""
        labels = workload["spec"]["selector"]["matchLabels"]
        return self.objects("v1", "Pod", ",".join(f"{key}={value}" for key, value in sorted(labels.items())))[0]

    def watch(self, api_version: str, kind: str, *, resource_version: str, timeout: float,
              label_selector: str | None = MANAGED, field_selector: str | None = None) -> Iterator[dict]:
        """Watch events from resource_version on; ends when the server closes the stream, or when it is cut (an API
        server restart, a proxy's timeout): the caller goes on from the last version it saw, as after a close."""
        from kubernetes.watch.watch import iter_resp_lines
        from urllib3.exceptions import HTTPError

        resource = self.resource(api_version, kind)
        seconds = max(1, math.ceil(timeout))
        path = resource.path(namespace=self._namespace_for(resource))
        response = self._call(f"GET {path} (watch)", lambda retrying: self.dynamic.request(
            "get", path, watch=True, resource_version=resource_version, label_selector=label_selector,
            field_selector=field_selector, allow_watch_bookmarks=True, timeout_seconds=seconds, serialize=False,
            _request_timeout=(REQUEST_TIMEOUT[0], seconds + 5)))
        try:
            for line in iter_resp_lines(response):
                if line:
                    yield json.loads(line)
        except HTTPError:
            return
        finally:
            response.release_conn()

    def restart(self, obj: dict, at: datetime) -> dict:
        """What `kubectl rollout restart` does: stamp the pod template, so every pod is replaced."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        # RFC 3339 in seconds, as kubectl writes it.
        when = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        stamp = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: when}}}}}
        path = resource.path(name=obj["metadata"]["name"], namespace=self._namespace_for(resource))
        return self._request("patch", path, body=stamp, content_type="application/merge-patch+json",
                             field_manager=RESTART_MANAGER)

    def delete(self, api_version: str, kind: str, name: str, propagation: str | None = None) -> bool:
        """Delete one object; False when it was already gone. propagation: Foreground (its pods first),
        Background or Orphan (its pods stay), as DeleteOptions.propagationPolicy; None is the kind's default."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self.resource(api_version, kind)
        options = {"propagationPolicy": propagation} if propagation else None
        path = resource.path(name=name, namespace=self._namespace_for(resource))

        def send(retrying: bool) -> bool:
            try:
                self._send("delete", path, body=options)
            except NotFoundError:
                return retrying  # when retrying, gone most likely by the try whose answer was lost
            return True

        return self._call(f"DELETE {path}", send)

    def create(self, obj: dict) -> dict:
        """Create one object the kit does not apply (a short-lived pod): it is the kit's only while it lives."""
        from kubernetes.dynamic.exceptions import ConflictError

        resource = self.resource(obj["apiVersion"], obj["kind"])
        namespace = self._namespace_for(resource)

        def send(retrying: bool) -> dict:
            try:
                return self._send("post", resource.path(namespace=namespace), body=obj, field_manager=FIELD_MANAGER)
            except ConflictError:
                if not retrying:
                    raise
                # AlreadyExists on a retry: made by the try whose answer was lost.
                return self._send("get", resource.path(name=obj["metadata"]["name"], namespace=namespace))

        return self._call(f"POST {resource.path(namespace=namespace)}", send)

    def scale(self, obj: dict, replicas: int) -> dict:
        """Set a workload's replicas, as `kubectl scale` does (an update of that one field, by its own manager)."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        path = resource.path(name=obj["metadata"]["name"], namespace=self._namespace_for(resource))
        return self._request("patch", path, body={"spec": {"replicas": replicas}},
                             content_type="application/merge-patch+json", field_manager=SCALE_MANAGER)

    def wait_for(self, api_version: str, kind: str, name: str, done, timeout: float, waiting_for: str) -> dict | None:
        """Watch one object until done(obj) holds (obj is None once it is gone); raise UserError after timeout
        seconds, naming what was waited for. Returns the object as it was when done."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get(api_version, kind, name)
            if done(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"{kind.lower()}/{name}: still not {waiting_for} after {timeout:g}s; "
                                  "`inv status` shows what it is doing")
            version = current["metadata"]["resourceVersion"] if current else self.objects(
                api_version, kind, label_selector=None)[1]
            # Any event about it (or the watch's end) is a reason to look again.
            for _ in self.watch(api_version, kind, resource_version=version, timeout=min(remaining, 30),
                                label_selector=None, field_selector=f"metadata.name={name}"):
                break

    def wait_gone(self, api_version: str, kind: str, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            self.wait_for(api_version, kind, name, lambda obj: obj is None,
                          max(0.0, deadline - time.monotonic()), "gone")

    def run(self, pod: str, container: str, command: list[str], *, stdin=(), stdout=None) -> tuple[int, str]:
        """Run a command in a container as `kubectl exec -i` does: the byte chunks of stdin go in, stdout's
        bytes go to stdout(chunk) as they come; returns the exit code and what it wrote to stderr."""
        import yaml
        from kubernetes.client import CoreV1Api
        from kubernetes.stream import stream
        from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

        # Binary frames: in text mode the client decodes each frame on its own, which breaks a file's bytes.
        # (The client also keeps a copy of all output for read_all(): a backup costs its size twice in memory.)
        session = stream(CoreV1Api(self.api_client).connect_get_namespaced_pod_exec, pod, self.namespace,
                         container=container, command=command, stdin=True, stdout=True, stderr=True, tty=False,
                         binary=True, _preload_content=False)
        errors = bytearray()

        def drain() -> None:
            data = session.read_channel(STDOUT_CHANNEL)
            if data and stdout is not None:
                stdout(data)
            errors.extend(session.read_channel(STDERR_CHANNEL))

        try:
            for chunk in stdin:
                session.write_stdin(chunk)
                drain()
            while session.is_open():
                session.update(timeout=1)
                drain()
            drain()
            # The kubelet's last word, a Status: Success, or Failure with the exit code as its cause.
            status = yaml.safe_load(session.read_channel(ERROR_CHANNEL) or "null")
        finally:
            session.close()
        code = exit_code(status)
        if code == -1:  # it never ran: the Status says why (no such container, the runtime refused it)
            errors.extend(f"\n{(status or {}).get('message', 'the exec stream ended without a status')}".encode())
        return code, errors.decode(errors="replace")

    def log_lines(self, pod: str, container: str, *, tail: int | None = None, previous: bool = False,
                  follow: bool = False) -> Iterator[str]:
        """A container's log, line by line; with follow, until the pod stops or the stream is cut."""
        from kubernetes.watch.watch import iter_resp_lines

        query = [("container", container)]
        if tail is not None:
            query.append(("tailLines", tail))
        if previous:
            query.append(("previous", "true"))
        if follow:
            query.append(("follow", "true"))
        path = self.resource("v1", "Pod").path(name=pod, namespace=self.namespace) + "/log"
        response = self._call(f"GET {path}", lambda retrying: self.dynamic.request(
            "get", path, query_params=query, header_params={"Accept": "*/*"}, serialize=False,
            _request_timeout=(REQUEST_TIMEOUT[0], None) if follow else REQUEST_TIMEOUT))
        try:
            yield from iter_resp_lines(response)
        finally:
            response.release_conn()


def exit_code(status: dict | None) -> int:
    """The exit code in the Status that ends an exec stream; -1 when the command never ran or the stream broke."""
    if not status:
        return -1
    if status.get("status") == "Success":
        return 0
    for cause in status.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    return -1


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions", []))


def log_source(pod: dict) -> tuple[str, bool]:
    """The container whose log explains the pod, and whether its previous run is the one to read."""
    statuses = pod.get("status", {}).get("containerStatuses", [])
    for container in statuses:
        if not container.get("ready"):
            crashed = container.get("restartCount", 0) > 0 and "running" not in container.get("state", {})
            return container["name"], crashed
    return pod["spec"]["containers"][0]["name"], False


def unserved_line(kind: Kind) -> str:
    return f"{kind.name.lower()}: skipped, this cluster does not serve {kind.api_version} (nothing of it to delete)"


def describe(obj: dict) -> str:
    """kind/name, as kubectl prints it."""
    return f"{obj['kind'].lower()}/{obj['metadata']['name']}"


def status_message(error) -> str:
    """The human message of an API error's Status body."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


def connection_reason(error: BaseException) -> str:
    """'Connection refused' rather than urllib3's repr of a connection pool."""
    text = str(getattr(error, "reason", None) or error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text) or re.search(r"(certificate verify failed[^'\")]*)", text)
    if found:
        return found.group(1).strip()
    # A dropped connection: ProtocolError('Connection aborted.', RemoteDisconnected('Remote end closed …')).
    inner = next((arg for arg in reversed(error.args) if isinstance(arg, BaseException) and str(arg)), None)
    return str(inner) if inner else type(error).__name__


def outcome(created: bool, before: dict | None, after: dict) -> str:
    """kubectl's word for what an apply did: created, configured or unchanged.

    Judged by content, not resourceVersion: a controller's status write between our read and our apply
    changes the version without the apply having changed anything, and a dry run never changes it.
    """
    if created:
        return "created"
    if before is None:
        return "configured"
    return "configured" if changes(before, after) else "unchanged"


def changes(before: dict, after: dict) -> list[str]:
    """The fields that differ between two versions of an object, Secret values hidden."""
    secret = after.get("kind") == "Secret"
    found: list[str] = []

    def walk(path: str, old, new) -> None:
        if old == new:
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(old.keys() | new.keys(), key=str):
                walk(f"{path}.{key}" if path else key, old.get(key), new.get(key))
            return
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            for index, (a, b) in enumerate(zip(old, new)):
                walk(f"{path}[{index}]", a, b)
            return
        if secret:  # not even a part of a value: data, or an annotation that copied it
            found.append(f"{path}: {'added' if old is None else 'removed' if new is None else 'changed'} "
                         "(value hidden)")
        elif old is None:
            found.append(f"{path}: added {_short(new)}")
        elif new is None:
            found.append(f"{path}: removed (was {_short(old)})")
        else:
            found.append(f"{path}: {_short(old)} -> {_short(new)}")

    walk("", _comparable(before), _comparable(after))
    return found


def _comparable(obj: dict) -> dict:
    metadata = {key: value for key, value in obj.get("metadata", {}).items() if key not in _SERVER_FIELDS}
    return {**{key: value for key, value in obj.items() if key != "status"}, "metadata": metadata}


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def now() -> datetime:
    return datetime.now(timezone.utc)
