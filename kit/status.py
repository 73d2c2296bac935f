"""`inv status`: the kit's pods and workloads as kubectl shows them, the public URL, and the Prefect half.

Each half is read on its own, so an unreachable cluster still shows the pools, and the other way round.
The table functions are pure: a pod or workload dict in, a row out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kit import cluster, routes
from kit.columns import human_age, table
from kit.cluster import describe
from kit.errors import UserError
from kit.kinds import BY_NAME
from kit.settings import Settings

# The kinds whose pods `inv status` reports replicas for; a migration Job is shown by its own line.
WORKLOAD_KINDS = ("StatefulSet", "Deployment")
WORKER_PODS = f"{cluster.MANAGED},app.kubernetes.io/component=worker"


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
    pod_rows = [(pod["metadata"]["name"], pod_ready_count(pod), pod_status(pod), str(restarts(pod)),
                 human_age(now, pod["metadata"].get("creationTimestamp"))) for pod in pods]
    workload_rows = [workload_row(obj) for obj in workloads]
    return (table(("NAME", "READY", "STATUS", "RESTARTS", "AGE"), pod_rows) + [""]
            + table(("WORKLOAD", "DESIRED", "READY", "UPDATED", "IMAGE"), workload_rows))


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
