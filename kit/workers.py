"""The workers: one Deployment per queue of config/pools.yaml, made from the one template in
manifests/30-workers.yaml, and the kubernetes worker's accounts and Role, which exist only while a
kubernetes pool does. Pure: parsed objects and pools in, objects out.

Also the verdict of the rollout's last wait: which worker pods Prefect has seen connected.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

from kit import autoscaling
from kit.errors import UserError
from kit.pool_config import POOLS_FILE, Pool, Queue, WorkerSettings, resource_order
from kit.settings import WORKER_PREFIX

WORKER_ACCOUNT = "prefect-worker"
FLOW_RUN_ACCOUNT = "prefect-flow-run"
INSTANCE = "app.kubernetes.io/instance"
# The kubernetes worker's own settings (its observer's namespace, where its Jobs find the auth string).
KUBERNETES_SETTINGS = "PREFECT_INTEGRATIONS_KUBERNETES_"
OBSERVER_NAMESPACES = KUBERNETES_SETTINGS + "OBSERVER_NAMESPACES"
# The checkov check that a pod mounts no token: skipped, with the reason, only where one is mounted.
TOKEN_CHECK = "CKV_K8S_38"


def is_template(obj: dict) -> bool:
    return obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith(WORKER_PREFIX)


def is_workers(obj: dict) -> bool:
    """A worker Deployment or its autoscaler: what the rollout applies once the pools are made."""
    return obj["kind"] in ("Deployment", autoscaling.KIND) and obj["metadata"]["name"].startswith(WORKER_PREFIX)


def kubernetes_only(obj: dict) -> bool:
    """The accounts and Role of the kubernetes worker type, pointless without a kubernetes pool."""
    return obj["kind"] in ("ServiceAccount", "Role", "RoleBinding") and \
        obj["metadata"]["name"] in (WORKER_ACCOUNT, FLOW_RUN_ACCOUNT)


def template(objects: list[dict]) -> dict:
    (found,) = [obj for obj in objects if is_template(obj)]
    return found


def expand(objects: list[dict], pools: tuple[Pool, ...], namespace: str) -> list[dict]:
    """The objects with the worker template replaced by each queue's Deployment, in the template's place."""
    has_kubernetes = any(pool.type == "kubernetes" for pool in pools)
    expanded = []
    for obj in objects:
        if is_template(obj):
            expanded += [made for pool in pools for queue in pool.queues
                         for made in queue_workers(obj, pool, queue, namespace)]
        elif kubernetes_only(obj):
            if has_kubernetes:
                expanded.append(_in_namespace(obj, namespace))
        else:
            expanded.append(obj)
    return expanded


def queue_workers(template: dict, pool: Pool, queue: Queue, namespace: str) -> list[dict]:
    """The worker Deployment of one queue, and its autoscaler when the pools file asks for one."""
    worker = deployment(template, pool, queue, namespace)
    autoscale = pool.worker_for(queue).autoscale
    if autoscale is None:
        return [worker]
    name, minimum = worker["metadata"]["name"], worker["spec"].get("replicas", 1)
    if not 1 <= minimum <= autoscale.max_replicas:
        raise UserError(f"Deployment {name}: worker: autoscale: max_replicas {autoscale.max_replicas} must be at least "
                        f"its replicas ({minimum}, the autoscaler's minimum, which must be ≥ 1); fix {POOLS_FILE}")
    return [worker, autoscaling.autoscale(worker, minimum, autoscale.max_replicas, autoscale.cpu_percent)]


def deployment(template: dict, pool: Pool, queue: Queue, namespace: str) -> dict:
    """The worker Deployment of one queue."""
    worker = copy.deepcopy(template)
    name = WORKER_PREFIX + queue.name
    worker["metadata"]["name"] = name
    for labels in (worker["metadata"]["labels"], worker["spec"]["selector"]["matchLabels"],
                   worker["spec"]["template"]["metadata"]["labels"]):
        labels[INSTANCE] = name
    settings = pool.worker_for(queue)
    if settings.replicas is not None:
        worker["spec"]["replicas"] = settings.replicas
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["args"] = worker_args(container["args"], pool, queue, settings)
    container["resources"] = _resources(container.get("resources", {}), settings, name)
    if pool.type == "kubernetes":
        _set_value(container["env"], OBSERVER_NAMESPACES, namespace)
    else:
        _without_kubernetes(worker, pod, container)
    return worker


def worker_args(args: list[str], pool: Pool, queue: Queue, settings: WorkerSettings) -> list[str]:
    """The template's `prefect worker start …` for this queue's pool, queue, type and limit."""
    wanted = {"--pool": pool.name, "--work-queue": queue.name, "--type": pool.type,
              "--limit": None if settings.limit is None else str(settings.limit)}
    result, index = [], 0
    while index < len(args):
        option = args[index]
        if option in wanted:
            value = wanted.pop(option)
            result += [option, value] if value is not None else []
            index += 2
        else:
            result.append(option)
            index += 1
    return result + [item for option, value in wanted.items() if value is not None for item in (option, value)]


def pool_of(worker: dict) -> str:
    """The pool a worker Deployment polls (its --pool)."""
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--pool") + 1]


def _resources(current: dict, settings: WorkerSettings, name: str) -> dict:
    merged = {part: {**current.get(part, {}), **settings.resources.get(part, {})}
              for part in ("requests", "limits") if part in current or part in settings.resources}
    problems = resource_order(merged, f"Deployment {name}: worker")
    if problems:
        raise UserError(*[f"{problem} (in config/pools.yaml, or the template's in manifests/30-workers.yaml)"
                          for problem in problems])
    return merged


def _without_kubernetes(worker: dict, pod: dict, container: dict) -> None:
    """A process worker runs flows inside its own pod: no account of its own, no token, no observer."""
    pod.pop("serviceAccountName", None)
    pod["automountServiceAccountToken"] = False
    container["env"] = [item for item in container["env"] if not item["name"].startswith(KUBERNETES_SETTINGS)]
    annotations = worker["metadata"].get("annotations", {})
    for key in [key for key, value in annotations.items() if value.startswith(TOKEN_CHECK + "=")]:
        del annotations[key]


def _in_namespace(obj: dict, namespace: str) -> dict:
    for subject in obj.get("subjects", []):
        subject["namespace"] = namespace
    return obj


def _set_value(env: list[dict], name: str, value: str) -> None:
    for item in env:
        if item["name"] == name:
            item["value"] = value


# --- Connected: the rollout's last wait ----------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """A worker as Prefect lists it."""

    name: str
    online: bool
    last_heartbeat: datetime | None


def unconnected(pods: list[dict], seen: list[Seen]) -> list[dict]:
    """The worker pods Prefect does not show ONLINE with a heartbeat after the pod started.

    A worker names itself after its pod (--name $(POD_NAME)), so a replaced pod's leftover entry, which
    Prefect keeps ONLINE for a while, never stands in for its successor.
    """
    by_name = {worker.name: worker for worker in seen}
    waiting = []
    for pod in pods:
        worker = by_name.get(pod["metadata"]["name"])
        started = pod.get("status", {}).get("startTime")
        if worker is None or not worker.online or worker.last_heartbeat is None or (
                started and worker.last_heartbeat < datetime.fromisoformat(started.replace("Z", "+00:00"))):
            waiting.append(pod)
    return waiting
