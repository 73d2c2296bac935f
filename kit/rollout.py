"""`inv secrets` and `inv rollout`: apply the rendered objects, then wait as `kubectl rollout status` does.

The waiting is split the way kubectl splits it: one pure status viewer per kind (an object in, a message
and done out, Stalled when it will never get there), and one watch loop that knows nothing about kinds.
When a workload does not get ready, the pods say why: their waiting reason, events and last log lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kit import cluster, release, routes
from kit.cluster import Cluster, describe, log_source, pod_ready
from kit.errors import UserError
from kit.kinds import APPLY_ORDER, BY_NAME, ROUTE_KINDS
from kit.settings import SERVER_NAME, Settings

Out = Callable[[str], None]
DEFAULT_TIMEOUT = 300
EVENT_LINES = 5
LOG_LINES = 20
# Waiting reasons that mean "still starting", not "stuck".
_STARTING = ("ContainerCreating", "PodInitializing")


class Stalled(Exception):
    """A workload that will not become ready without a change (kubectl's error from a status viewer)."""


def deployment_status(obj: dict) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer."""
    name, spec, status = obj["metadata"]["name"], obj.get("spec", {}), obj.get("status", {})
    if obj["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return f'deployment "{name}": waiting for the spec update to be observed', False
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise Stalled(f'deployment "{name}" exceeded its progress deadline')
    wanted = spec.get("replicas", 1)
    updated, replicas = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return f'deployment "{name}": {updated} out of {wanted} new replicas have been updated', False
    if replicas > updated:
        return f'deployment "{name}": {replicas - updated} old replicas are pending termination', False
    if available < updated:
        return f'deployment "{name}": {available} of {updated} updated replicas are available', False
    return f'deployment "{name}" successfully rolled out', True


def statefulset_status(obj: dict) -> tuple[str, bool]:
    """kubectl's StatefulSetStatusViewer; a strategy left out counts as the API's default, RollingUpdate."""
    name, spec, status = obj["metadata"]["name"], obj.get("spec", {}), obj.get("status", {})
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise Stalled(f'statefulset "{name}": rollout status is only available for the RollingUpdate strategy')
    observed = status.get("observedGeneration", 0)
    if observed == 0 or obj["metadata"].get("generation", 0) > observed:
        return f'statefulset "{name}": waiting for the spec update to be observed', False
    wanted = spec.get("replicas", 1)
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    if ready < wanted:
        return f'statefulset "{name}": waiting for {wanted - ready} pods to be ready', False
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        expected = wanted - rolling.get("partition", 0)
        if updated < expected:
            return (f'statefulset "{name}": waiting for partitioned roll out to finish: '
                    f'{updated} out of {expected} new pods have been updated'), False
        return f'statefulset "{name}": partitioned roll out complete: {updated} new pods have been updated', True
    if status.get("updateRevision") != status.get("currentRevision"):
        return (f'statefulset "{name}": waiting for the rolling update to complete {updated} pods at revision '
                f'{status.get("updateRevision")}'), False
    return f'statefulset "{name}" rolling update complete', True


VIEWERS: dict[str, Callable[[dict], tuple[str, bool]]] = {
    "Deployment": deployment_status,
    "StatefulSet": statefulset_status,
}


def image_reference(settings: Settings, tag: str | None, record: Path = release.RECORD_PATH) -> str:
    """The image workloads get: `--tag`, else what `inv build push` recorded for this commit; never latest."""
    if tag:
        return release.image_for(settings.image_repository, tag, record).reference
    commit = release.commit_tag()
    build = release.recorded_build(settings.image_repository, commit, record)
    if build is None:
        raise UserError(f"image: nothing was built for this commit ({settings.image_repository}:{commit}); "
                        "run `inv build push` first, or pass --tag")
    if not build.digest:
        raise UserError(f"image: {build.repository}:{build.tag} was built but not pushed, so the cluster cannot "
                        "pull it; run `inv push`")
    return build.reference


def secrets(settings: Settings, *, dry_run: bool = False, out: Out = print) -> None:
    """Apply the namespace and the rendered Secrets, nothing else."""
    from kit import manifests

    objects = manifests.render_config(settings)
    with cluster.connect(settings) as k:
        apply_objects(k, objects, live_objects(k)[0], dry_run=dry_run, out=out)


def rollout(settings: Settings, *, tag: str | None = None, restart: bool = False, prune: bool = False,
            dry_run: bool = False, force_conflicts: bool = False, timeout: float = DEFAULT_TIMEOUT,
            out: Out = print) -> None:
    """Apply everything rendered, prune what is no longer rendered, and wait until the workloads are ready."""
    from kit import manifests

    objects = manifests.render(settings, image_reference(settings, tag))
    with cluster.connect(settings) as k:
        check_served(k, objects)
        live, unserved = live_objects(k)
        server = live.get(("StatefulSet", SERVER_NAME))
        if server is not None:
            manifests.check_database_mode(server, manifests.find(objects, "StatefulSet", SERVER_NAME))
        applied = apply_objects(k, objects, live, dry_run=dry_run, force_conflicts=force_conflicts, out=out)
        if prune:
            for kind in unserved:
                out(cluster.unserved_line(kind))
        # A route of an earlier render (another ROUTE, the former two Ingresses) would serve the same host.
        prune_stale(k, objects, live if prune else {key: obj for key, obj in live.items() if key[0] in ROUTE_KINDS},
                    dry_run=dry_run, out=out)
        if dry_run:
            return
        workloads = [obj for obj in applied if obj["kind"] in VIEWERS]
        if restart:
            stamp = cluster.now()
            workloads = [k.restart(obj, stamp) for obj in workloads]
            for obj in workloads:
                out(f"{describe(obj)} restarted")
        wait(k, workloads, timeout, out)
    out(f"ready: {routes.where(settings)}")


def check_served(k: Cluster, objects: list[dict]) -> None:
    """Refuse before applying anything when the cluster lacks an add-on kind the render needs (Gateway API's)."""
    for kind in (BY_NAME[name] for name in dict.fromkeys(obj["kind"] for obj in objects)):
        if kind.optional and not k.serves(kind):
            raise UserError(f"ROUTE: this cluster does not serve {kind.name} ({kind.api_version}): Gateway API is "
                            "not installed; ask for it, or set ROUTE=ingress")


def live_objects(k: Cluster) -> tuple[dict[tuple[str, str], dict], list]:
    """What the kit applied earlier, by (kind, name): the namespace and every labelled object in it; and the
    kinds of the kit's that this cluster does not serve."""
    namespace = k.get("v1", "Namespace", k.namespace)
    if namespace is None:
        return {}, []
    managed, unserved = k.managed()
    live = {("Namespace", k.namespace): namespace}
    live.update({(item["kind"], item["metadata"]["name"]): item for item in managed})
    return live, unserved


def apply_objects(k: Cluster, objects: list[dict], live: dict, *, dry_run: bool = False,
                  force_conflicts: bool = False, out: Out = print) -> list[dict]:
    """Server-side apply in order, one kubectl-style line per object; returns the objects as stored."""
    applied = []
    missing_namespace = ("Namespace", k.namespace) not in live
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if dry_run and missing_namespace and obj["kind"] != "Namespace":
            # The server cannot dry-run writes into a namespace that a dry run did not create.
            out(f"{describe(obj)} created (dry run; namespace {k.namespace} does not exist yet)")
            continue
        created, stored = k.apply(obj, dry_run=dry_run, force_conflicts=force_conflicts)
        word = cluster.outcome(created, live.get(key), stored)
        out(f"{describe(obj)} {word}{' (server dry run)' if dry_run else ''}")
        if dry_run and word == "configured" and key in live:
            for change in cluster.changes(live[key], stored):
                out(f"  {change}")
        applied.append(stored)
    return applied


def prune_stale(k: Cluster, objects: list[dict], live: dict, *, dry_run: bool, out: Out) -> None:
    """Delete what the kit applied before and no longer renders; the namespace is never pruned."""
    rendered = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    stale = [key for key in live if key[0] != "Namespace" and key not in rendered]
    for kind, name in sorted(stale, key=lambda key: -APPLY_ORDER.index(key[0])):
        if dry_run:
            out(f"{kind.lower()}/{name} would be pruned (dry run)")
        elif k.delete(BY_NAME[kind].api_version, kind, name):
            out(f"{kind.lower()}/{name} pruned")


def wait(k: Cluster, workloads: list[dict], timeout: float, out: Out = print) -> None:
    """Wait until every workload is rolled out; on failure explain each unready pod and raise UserError."""
    deadline = time.monotonic() + timeout
    states = {(obj["kind"], obj["metadata"]["name"]): obj for obj in workloads}
    shown: dict[tuple[str, str], str] = {}  # the last message printed per workload, to print only changes
    try:
        for kind in dict.fromkeys(kind for kind, _ in states):
            _wait_kind(k, kind, states, shown, deadline, out)
    except Stalled as stalled:
        failure = str(stalled)
    except TimeoutError:
        failure = f"not ready after {timeout:g}s"
    else:
        return
    # Kinds not reached before the failure still hold their state from the apply: read them again.
    current = [k.get(BY_NAME[kind].api_version, kind, name) or obj for (kind, name), obj in states.items()]
    unready = [(obj, message) for obj in current for message, done in [_verdict(obj)] if not done]
    for obj, message in unready:
        diagnose(k, obj, message, out)
    names = ", ".join(describe(obj) for obj, _ in unready)
    raise UserError(f"rollout: {failure}: {names}; see the reasons above, fix them, and run `inv rollout` again")


def _verdict(obj: dict) -> tuple[str, bool]:
    try:
        return VIEWERS[obj["kind"]](obj)
    except Stalled as stalled:
        return str(stalled), False


def _wait_kind(k: Cluster, kind: str, states: dict, shown: dict, deadline: float, out: Out) -> None:
    """Watch one kind until all of its workloads are done, resuming dropped watches where they stopped."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import GoneError
    from urllib3.exceptions import HTTPError, MaxRetryError

    api_version = BY_NAME[kind].api_version
    names = {name for key_kind, name in states if key_kind == kind}

    def settled() -> bool:
        done = True
        for name in sorted(names):
            message, ready = VIEWERS[kind](states[(kind, name)])
            if shown.get((kind, name)) != message:
                shown[(kind, name)] = message
                out(message)
            done = done and ready
        return done

    if settled():
        return
    version = None  # None: (re)list before watching
    pause = 0.0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            if version is None:
                items, version = k.objects(api_version, kind)
                states.update({(kind, item["metadata"]["name"]): item
                               for item in items if item["metadata"]["name"] in names})
                if settled():
                    return
            for event in k.watch(api_version, kind, resource_version=version, timeout=remaining):
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") != 410:
                        raise UserError(f"watching {kind}s: {obj.get('message', obj)}")
                    version = None  # history compacted: list again
                    break
                version = obj["metadata"]["resourceVersion"]
                name = obj["metadata"].get("name")
                if name not in names or event["type"] == "BOOKMARK":
                    continue
                if event["type"] == "DELETED":
                    raise Stalled(f"{kind.lower()}/{name} was deleted while waiting for it")
                states[(kind, name)] = obj
                if settled():
                    return
            pause = 0.0
        except GoneError:
            version = None
        except (HTTPError, ApiException) as error:
            # A cut stream (API server restart, proxy timeout) resumes at once from the last version seen;
            # a server that is down or answering 5xx/429 is retried after a growing pause, until the deadline.
            if isinstance(error, ApiException) and not (error.status == 429 or error.status >= 500):
                raise
            if isinstance(error, (MaxRetryError, ApiException)):
                pause = min(2.0, pause * 2 or 0.2)
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))


def diagnose(k: Cluster, workload: dict, message: str, out: Out) -> None:
    """Why a workload is not ready: its unready pods' reasons, latest events and last log lines."""
    pods = k.pods_of(workload)
    events, _ = k.objects("v1", "Event", label_selector=None)
    out(f"{describe(workload)}: {message}")
    if not pods:
        # A Deployment's pod creation failures are events of its ReplicaSet, named <deployment>-<hash>.
        name = workload["metadata"]["name"]
        own = [event for event in events
               if name in (event.get("involvedObject", {}).get("name"),
                           event.get("involvedObject", {}).get("name", "").rpartition("-")[0])]
        conditions = [f"{c.get('type')}: {c.get('message')}" for c in workload.get("status", {}).get("conditions", [])
                      if c.get("status") == "False" and c.get("message")]
        out("  no pods")
        for line in conditions + [format_event(event) for event in latest(own)]:
            out(f"    {line}")
        return
    for pod in pods:
        if pod_ready(pod):
            continue
        name = pod["metadata"]["name"]
        own = [event for event in events if event.get("involvedObject", {}).get("name") == name]
        out(f"  pod/{name}: {pod_problem(pod, own)}")
        for event in latest(own):
            out(f"    {format_event(event)}")
        container, previous = log_source(pod)
        lines = _last_log_lines(k, name, container, previous)
        if lines:
            out(f"    last {len(lines)} log lines of {container}{' (previous run)' if previous else ''}:")
            for line in lines:
                out(f"      {line}")


def _last_log_lines(k: Cluster, pod: str, container: str, previous: bool) -> list[str]:
    from kubernetes.client.exceptions import ApiException

    try:
        return list(k.log_lines(pod, container, tail=LOG_LINES, previous=previous))
    except ApiException as error:
        if error.status in (400, 404):  # the container has not started yet: no log to show
            return []
        raise


def pod_problem(pod: dict, events: list[dict]) -> str:
    """The one-line reason a pod is not ready: unschedulable, a waiting container, or a failing probe."""
    status = pod.get("status", {})
    if pod["metadata"].get("deletionTimestamp"):
        return "terminating"
    for condition in status.get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message', '')}".rstrip(": ")
    containers = status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
    for container in containers:
        waiting = container.get("state", {}).get("waiting")
        if waiting and waiting.get("reason") not in _STARTING:
            text = f"{waiting.get('reason')}: {waiting['message']}" if waiting.get("message") else waiting.get("reason")
            last = container.get("lastState", {}).get("terminated")
            if last:
                text += f" (container {container['name']} last exited with code {last.get('exitCode')}"
                text += f", {last['reason']})" if last.get("reason") else ")"
            return text
    for container in status.get("containerStatuses", []):
        if "running" in container.get("state", {}) and not container.get("ready"):
            probes = [event for event in events if event.get("reason") == "Unhealthy"]
            if probes:
                failure = latest(probes, 1)[0].get("message")
                return f"container {container['name']} is running but failing its probe: {failure}"
            return f"container {container['name']} is running but its readiness probe has not passed yet"
    waiting = [c["state"]["waiting"]["reason"] for c in containers if c.get("state", {}).get("waiting")]
    return waiting[0] if waiting else status.get("phase", "Pending")


def latest(events: list[dict], count: int = EVENT_LINES) -> list[dict]:
    """The newest events, oldest first."""
    return sorted(events, key=_event_time)[-count:]


def _event_time(event: dict) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp") or ""


def format_event(event: dict) -> str:
    count = event.get("count") or 1
    repeated = f" (x{count})" if count > 1 else ""
    return f"{event.get('type', 'Normal')} {event.get('reason', '')}: {event.get('message', '').strip()}{repeated}"
