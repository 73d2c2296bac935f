"""`inv logs`: the log of the server, of its background services, or of one queue's worker, as `kubectl logs`
shows it."""

from __future__ import annotations

from kit import server
from kit.cluster import Cluster, connect, log_source, pod_ready, status_message
from kit.errors import UserError
from kit.kinds import BY_NAME
from kit.settings import SERVER_NAME, WORKER_PREFIX, Settings


def show(settings: Settings, *, worker: str = "", services: bool = False, tail: int = 100, follow: bool = False,
         out=print) -> None:
    """The log of the server (in scaled mode its API, or its background services), or of the worker of one queue:
    its newest ready pod, as `kubectl logs` picks."""
    from kubernetes.dynamic.exceptions import BadRequestError

    if services and settings.mode != "scaled":
        raise UserError("--services: the background services run in the server pod with "
                        f"DATABASE_MODE={settings.mode}; `inv logs` shows them")
    if worker:
        kind, name = "Deployment", f"{WORKER_PREFIX}{worker}"
    elif settings.mode == "scaled":
        kind, name = "Deployment", server.SERVICES if services else server.API
    else:
        kind, name = "StatefulSet", SERVER_NAME
    with connect(settings) as k:
        workload = k.get(BY_NAME[kind].api_version, kind, name)
        if workload is None:
            raise UserError(_missing_workload(k, kind, name, worker))
        pods = k.pods_of(workload)
        if not pods:
            raise UserError(f"{kind.lower()}/{name}: has no pods yet; `inv status` shows why")
        pod = max(pods, key=lambda item: (pod_ready(item), item["metadata"].get("creationTimestamp", "")))
        container, previous = log_source(pod)
        try:
            for line in k.log_lines(pod["metadata"]["name"], container, tail=tail, previous=previous, follow=follow):
                out(line)
        except BadRequestError as error:  # a container that never started has no log yet
            raise UserError(f"pod/{pod['metadata']['name']}: {status_message(error)}; `inv status` shows why") from None


def _missing_workload(k: Cluster, kind: str, name: str, worker: str) -> str:
    if not worker:
        return f"{kind.lower()}/{name}: not in namespace {k.namespace}; run `inv rollout` first"
    deployments, _ = k.objects(BY_NAME["Deployment"].api_version, "Deployment")
    queues = [item["metadata"]["name"].removeprefix(WORKER_PREFIX) for item in deployments
              if item["metadata"]["name"].startswith(WORKER_PREFIX)]
    return (f"--worker {worker}: no worker for that queue in namespace {k.namespace}; "
            f"workers run for: {', '.join(queues) or 'no queue yet (run `inv rollout`)'}")
