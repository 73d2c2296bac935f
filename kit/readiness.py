"""Waiting until workloads are ready, the way `kubectl rollout status` does, and saying why when they are not.

The waiting is split the way kubectl splits it: one pure status viewer per kind (an object in, a message
and done out, Stalled when it will never get there), and one watch loop that knows nothing about kinds.
When a workload does not get ready, the pods say why: their waiting reason, events and last log lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kit.cluster import Cluster, describe, log_source, pod_ready
from kit.errors import UserError
from kit.kinds import BY_NAME

Out = Callable[[str], None]
EVENT_LINES = 5
LOG_LINES = 20
# Waiting reasons that mean "still starting", not "stuck".
_STARTING = ("ContainerCreating", "PodInitializing")


class Stalled(Exception):
    """A workload that will not become ready without a change (kubectl's error from a status viewer)."""


class NotReady(UserError):
    """What wait() raises, after the diagnostics: why (`failure`), for which workloads."""

    def __init__(self, failure: str, names: str):
        super().__init__(f"rollout: {failure}: {names}; see the reasons above, fix them, and run `inv rollout` again")
        self.failure = failure


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


def job_status(obj: dict) -> tuple[str, bool]:
    """Done once the Job is Complete, Stalled once it Failed (kubectl has no viewer; `kubectl wait` reads the same
    conditions)."""
    name, status = obj["metadata"]["name"], obj.get("status", {})
    condition = finished(obj)
    if condition and condition["type"] == "Complete":
        return f'job "{name}" completed', True
    if condition:
        raise Stalled(f'job "{name}" failed ({condition.get("reason")}: {condition.get("message")})')
    if status.get("active"):
        return f'job "{name}": running', False
    return f'job "{name}": waiting for its pod', False


def finished(job: dict) -> dict | None:
    """The Job's Complete or Failed condition once one is true, else None."""
    return next((condition for condition in job.get("status", {}).get("conditions", [])
                 if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed")), None)


VIEWERS: dict[str, Callable[[dict], tuple[str, bool]]] = {
    "Deployment": deployment_status,
    "StatefulSet": statefulset_status,
    "Job": job_status,
}


def wait(k: Cluster, workloads: list[dict], timeout: float, out: Out = print, deadline: float | None = None) -> None:
    """Wait until every workload is rolled out, for `timeout` seconds (or until `deadline`, the end of a longer
    wait's `timeout`); on failure explain each unready pod and raise UserError."""
    from kit import progress

    deadline = time.monotonic() + timeout if deadline is None else deadline
    states = {(obj["kind"], obj["metadata"]["name"]): obj for obj in workloads}
    try:
        # Live lines when the rollout prints to the terminal itself; the lines as they change otherwise.
        with progress.wait_view(None if out is print else out) as view:
            for kind in dict.fromkeys(kind for kind, _ in states):
                _wait_kind(k, kind, states, view, deadline)
    except Stalled as stalled:
        failure = str(stalled)
    except TimeoutError:
        failure = f"not ready after {timeout:g}s"
    else:
        return
    # Kinds not reached before the failure still hold their state from the apply: read them again.
    current = [k.get(BY_NAME[kind].api_version, kind, name) or obj for (kind, name), obj in states.items()]
    unready = [(obj, message) for obj in current for message, done in [_verdict(obj)] if not done]
    if not unready:  # the deadline came before the last look, and everything had got there
        return
    for obj, message in unready:
        diagnose(k, obj, message, out)
    raise NotReady(failure, ", ".join(describe(obj) for obj, _ in unready))


def _verdict(obj: dict) -> tuple[str, bool]:
    try:
        return VIEWERS[obj["kind"]](obj)
    except Stalled as stalled:
        return str(stalled), False


def _wait_kind(k: Cluster, kind: str, states: dict, view, deadline: float) -> None:
    """Watch one kind until all of its workloads are done, resuming dropped watches where they stopped."""
    from kubernetes.dynamic.exceptions import GoneError

    api_version = BY_NAME[kind].api_version
    names = {name for key_kind, name in states if key_kind == kind}

    def settled() -> bool:
        done = True
        for name in sorted(names):
            obj = states[(kind, name)]
            message, ready = VIEWERS[kind](obj)
            view.show(describe(obj), obj, message, ready)
            done = done and ready
        return done

    if settled():
        return
    version = None  # None: (re)list before watching
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
        except GoneError:
            version = None


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
        lines = last_log_lines(k, name, container, previous)
        if lines:
            out(f"    last {len(lines)} log lines of {container}{' (previous run)' if previous else ''}:")
            for line in lines:
                out(f"      {line}")


def last_log_lines(k: Cluster, pod: str, container: str, previous: bool) -> list[str]:
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
    for container in containers:
        ended = container.get("state", {}).get("terminated")
        if ended and ended.get("exitCode"):
            return f"container {container['name']} exited with code {ended['exitCode']} ({ended.get('reason')})"
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
