"""`inv status`: the kit's pods and workloads as kubectl shows them, their autoscalers, the last database migration,
the public URL, Redis in scaled mode, and the Prefect half.

Each half is read on its own, so an unreachable cluster still shows the pools, and the other way round.
The table functions are pure: a pod or workload dict in, a row out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kit import autoscaling, cluster, routes, server
from kit.columns import human_age, table
from kit.cluster import describe
from kit.errors import UserError
from kit.kinds import BY_NAME
from kit.readiness import finished
from kit.settings import REDIS_NAME, Settings, redact_url

# The kinds whose pods `inv status` reports replicas for; a migration Job is shown by its own line.
WORKLOAD_KINDS = ("StatefulSet", "Deployment")
WORKER_PODS = f"{cluster.MANAGED},app.kubernetes.io/component=worker"
MIGRATION_JOBS = f"{cluster.MANAGED},{server.COMPONENT}=migration"


def show(settings: Settings, api_url: str | None = None, out: Callable[[str], None] = print) -> None:
    """Print both halves; raise UserError (after printing the other half) when the cluster cannot be read."""
    from kit import pools

    problem, k, worker_pods = None, None, None
    try:
        with cluster.connect(settings) as k:
            lines = cluster_lines(k, cluster.now())
            worker_pods = {pod["metadata"]["name"] for pod in k.objects("v1", "Pod", WORKER_PODS)[0]}
    except UserError as error:
        problem, lines, k = error, [], None
    for line in lines:
        out(line)
    if settings.mode == "scaled":
        out(f"redis: {redact_url(settings.redis_url)} (REDIS_URL)" if settings.redis_url else
            f"redis: the embedded statefulset/{REDIS_NAME} (one pod; REDIS_URL is empty)")
    out(f"url: {routes.where(settings)}")
    # With the pod names, a replaced worker's leftover entry in Prefect shows as stale, not online.
    for line in pools.status(settings, api_url, k, worker_pods):
        out(line)
    if problem:
        raise problem


def cluster_lines(k: cluster.Cluster, now: datetime) -> list[str]:
    pods, _ = k.objects("v1", "Pod")
    workloads = [obj for kind in WORKLOAD_KINDS for obj in k.objects(BY_NAME[kind].api_version, kind)[0]]
    if not pods and not workloads:
        return [f"namespace {k.namespace}: nothing of the kit's is running; run `inv rollout`"]
    autoscalers = _listed(k, autoscaling.API_VERSION, autoscaling.KIND, cluster.MANAGED)
    jobs = _listed(k, BY_NAME["Job"].api_version, "Job", MIGRATION_JOBS)
    pod_rows = [(pod["metadata"]["name"], pod_ready_count(pod), pod_status(pod), str(restarts(pod)),
                 human_age(now, pod["metadata"].get("creationTimestamp"))) for pod in pods]
    workload_rows = [workload_row(obj) for obj in workloads]
    return (table(("NAME", "READY", "STATUS", "RESTARTS", "AGE"), pod_rows) + [""]
            + table(("WORKLOAD", "DESIRED", "READY", "UPDATED", "IMAGE"), workload_rows)
            + [autoscaler_line(obj) for obj in autoscalers] + migration_lines(jobs, workloads, now))


def _listed(k: cluster.Cluster, api_version: str, kind: str, selector: str) -> list[dict]:
    """The objects, or none when these credentials may not list them: the rest of the status still shows."""
    from kubernetes.client.exceptions import ApiException

    try:
        return k.objects(api_version, kind, selector)[0]
    except ApiException as error:
        if error.status == 403:
            return []
        raise


def autoscaler_line(autoscaler: dict) -> str:
    kind, name = autoscaling.target(autoscaler)
    spec, status = autoscaler["spec"], autoscaler.get("status", {})
    target = next((metric["resource"]["target"].get("averageUtilization") for metric in spec.get("metrics", [])
                   if metric.get("type") == "Resource"), None)
    current = next((metric["resource"]["current"].get("averageUtilization") for metric in status.get("currentMetrics")
                    or [] if metric.get("type") == "Resource"), None)
    now = f"{status.get('currentReplicas', '?')} now" + (f" at {current}% CPU" if current is not None else "")
    return (f"autoscaler: {kind.lower()}/{name} {spec.get('minReplicas', 1)} to {spec['maxReplicas']} replicas at "
            f"{target}% CPU, {now}")


def migration_lines(jobs: list[dict], workloads: list[dict], now: datetime) -> list[str]:
    """The last database migration: the newest migration Job, or once its TTL removed it, the one the server's
    workloads name as the migration they were rolled out after."""
    if jobs:
        job = max(jobs, key=lambda item: item["metadata"].get("creationTimestamp", ""))
        return [f"migration: {describe(job)} {job_state(job, now)}"]
    named = {obj["metadata"].get("annotations", {}).get(server.MIGRATION_ANNOTATION) for obj in workloads} - {None}
    return [f"migration: job/{name} completed, removed by its TTL since (the server was rolled out after it)"
            for name in sorted(named)]


def job_state(job: dict, now: datetime) -> str:
    """A Job's state in words: completed (when, how long), failed (when, why), running, or waiting."""
    status = job.get("status", {})
    started = status.get("startTime")
    condition = finished(job)
    if condition and condition["type"] == "Complete":
        ended = status.get("completionTime") or condition.get("lastTransitionTime")
        return f"completed {_when(ended, now)}, took {_took(started, ended)}"
    if condition:
        why = ": ".join(part for part in (condition.get("reason"), condition.get("message")) if part)
        return (f"failed {_when(condition.get('lastTransitionTime'), now)} ({why}); `kubectl -n "
                f"{job['metadata']['namespace']} logs job/{job['metadata']['name']}` shows why")
    if status.get("active"):
        return f"running for {human_age(now, started)}"
    return "waiting for its pod"


def _when(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "(time unknown)"
    return f"{_parse(stamp):%Y-%m-%d %H:%M:%S} UTC ({human_age(now, stamp)} ago)"


def _took(started: str | None, ended: str | None) -> str:
    if not started or not ended:
        return "?"
    seconds = int((_parse(ended) - _parse(started)).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m{seconds % 60}s"


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def pod_ready_count(pod: dict) -> str:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    total = len(pod.get("spec", {}).get("containers", [])) or len(statuses)
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", []))


def pod_status(pod: dict) -> str:
    """kubectl's STATUS column: the most telling reason among the pod's and its containers' states."""
    status = pod.get("status", {})
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    inits = status.get("initContainerStatuses", [])
    for index, container in enumerate(inits):
        state = container.get("state", {})
        if state.get("terminated", {}).get("exitCode", 0) != 0:
            return f"Init:{state['terminated'].get('reason') or 'Error'}"
        if state.get("waiting", {}).get("reason") not in (None, "PodInitializing"):
            return f"Init:{state['waiting']['reason']}"
        if "terminated" not in state:
            return f"Init:{index}/{len(inits)}"
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in reversed(status.get("containerStatuses", [])):
        state = container.get("state", {})
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            ended = state["terminated"]
            reason = ended.get("reason") or f"ExitCode:{ended.get('exitCode')}"
    return reason


def workload_row(obj: dict) -> tuple[str, str, str, str, str]:
    status = obj.get("status", {})
    image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
    return (describe(obj), str(obj["spec"].get("replicas", 1)), str(status.get("readyReplicas", 0)),
            str(status.get("updatedReplicas", 0)), image_tag(image))


def image_tag(image: str) -> str:
    """The tag (and a short digest) of an image reference: what tells one rollout from another."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] or "latest"
    return f"{tag}@{digest[:19]}" if digest else tag
