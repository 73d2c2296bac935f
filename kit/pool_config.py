"""config/pools.yaml: what it may say, its defaults, and one error line per mistake.

Pure: the file's text in, plain frozen data out. The pools and queues go to Prefect (kit.pools), each
queue's worker settings to its Deployment (kit.workers), a kubernetes pool's job settings to its base
job template (kit.job_template).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from kit import ROOT
from kit.errors import UserError
from kit.settings import WORKER_PREFIX

POOLS_PATH = ROOT / "config" / "pools.yaml"
# How messages name the file.
POOLS_FILE = "config/pools.yaml"
# process: flow runs are child processes of the worker pod; kubernetes: each flow run is a Job of its own.
POOL_TYPES = ("process", "kubernetes")
_POOL_KEYS = ("name", "type", "concurrency_limit", "paused", "worker", "job", "queues")
_QUEUE_KEYS = ("name", "priority", "concurrency_limit", "description", "worker")
_WORKER_KEYS = ("replicas", "limit", "resources", "autoscale")
_AUTOSCALE_KEYS = ("max_replicas", "cpu_percent")
# An autoscaled worker adds a pod when its pods' CPU passes this share of their requests.
DEFAULT_CPU_PERCENT = 70
_JOB_KEYS = ("resources", "ttl_seconds_after_finished", "manifest")
_RESOURCE_PARTS = ("requests", "limits")
_RESOURCE_NAMES = ("cpu", "memory")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Each queue gets a worker Deployment `prefect-worker-<queue>`, and a Deployment name is a DNS label.
MAX_QUEUE_NAME = 63 - len(WORKER_PREFIX)
# A Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource): a number and a suffix.
_QUANTITY = re.compile(r"^(?P<number>[+]?(\d+(\.\d*)?|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|)$")
_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}

# What a flow-run Job gets unless the pool says otherwise: the size a process worker's pod has, since its
# flow runs shared that pod; a finished Job (and its pod's log) is kept for an hour.
DEFAULT_JOB_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
DEFAULT_JOB_TTL = 3600


@dataclass(frozen=True)
class Autoscale:
    """A HorizontalPodAutoscaler for a queue's worker, from its replicas to max_replicas."""

    max_replicas: int
    cpu_percent: int = DEFAULT_CPU_PERCENT


@dataclass(frozen=True)
class WorkerSettings:
    """A queue's worker Deployment; None (and an empty resources) leaves the template's value."""

    replicas: int | None = None
    # `prefect worker start --limit`: flow runs one worker pod runs at once; None: no limit.
    limit: int | None = None
    resources: dict = field(default_factory=dict)
    # None: a fixed number of replicas.
    autoscale: Autoscale | None = None

    def overridden_by(self, other: WorkerSettings) -> WorkerSettings:
        """These settings with the ones `other` sets on top (resources merged key by key)."""
        return WorkerSettings(
            other.replicas if other.replicas is not None else self.replicas,
            other.limit if other.limit is not None else self.limit,
            {part: {**self.resources.get(part, {}), **other.resources.get(part, {})}
             for part in _RESOURCE_PARTS if part in self.resources or part in other.resources},
            other.autoscale if other.autoscale is not None else self.autoscale,
        )


@dataclass(frozen=True)
class JobSettings:
    """What the flow-run Jobs of a kubernetes pool get (kit.job_template)."""

    resources: dict = field(default_factory=lambda: {part: dict(values) for part, values in
                                                     DEFAULT_JOB_RESOURCES.items()})
    ttl_seconds_after_finished: int | None = DEFAULT_JOB_TTL
    # A partial Job manifest deep-merged over the kit's (lists of named items merge by name).
    manifest: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Queue:
    name: str
    # None: not managed; Prefect gives a new queue the first free priority.
    priority: int | None = None
    concurrency_limit: int | None = None
    # The server stores no description as "" and refuses null.
    description: str = ""
    # Overrides of the pool's worker settings for this queue's worker only.
    worker: WorkerSettings = field(default_factory=WorkerSettings)


@dataclass(frozen=True)
class Pool:
    name: str
    type: str
    concurrency_limit: int | None = None
    paused: bool = False
    queues: tuple[Queue, ...] = ()
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    # Kubernetes pools only.
    job: JobSettings | None = None

    def worker_for(self, queue: Queue) -> WorkerSettings:
        return self.worker.overridden_by(queue.worker)


def load(path: Path = POOLS_PATH) -> tuple[Pool, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: not found; it declares the work pools (see the README, `inv pools`)") from None
    return parse(text, source=POOLS_FILE if path == POOLS_PATH else str(path))


def parse(text: str, source: str = POOLS_FILE) -> tuple[Pool, ...]:
    """Validate the pools file; every problem becomes one line of the UserError."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", error)
        raise UserError(f"{source}{where}: not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(document, dict) or not isinstance(document.get("pools"), list) or not document["pools"]:
        raise UserError(f"{source}: must be a mapping with a non-empty list `pools:` (see the README, `inv pools`)")
    problems = _unknown_keys(document, ("pools",), source)
    pools = [pool for index, raw in enumerate(document["pools"]) if (pool := _parse_pool(raw, source, index, problems))]
    problems += [f"{source}: pool {name!r} declared twice; keep one" for name in _repeated(p.name for p in pools)]
    owners: dict[str, str] = {}
    for pool in pools:
        for queue in pool.queues:
            if owners.setdefault(queue.name, pool.name) != pool.name:
                problems.append(f"{source}: queue {queue.name!r} declared in pools {owners[queue.name]!r} and "
                                f"{pool.name!r}; its worker is Deployment {WORKER_PREFIX}{queue.name}, so a queue "
                                "name may appear in one pool only: rename one")
    if problems:
        raise UserError(*problems)
    return tuple(pools)


def _parse_pool(raw: Any, source: str, index: int, problems: list[str]) -> Pool | None:
    where = f"{source}: pools[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with name, type and queues")
        return None
    name = raw.get("name")
    if _check_name(name, 63, where, problems):
        where = f"{source}: pool {name!r}"
        if name.startswith("prefect"):
            problems.append(f"{where}: Prefect reserves names starting with 'prefect'; choose another name")
    problems += _unknown_keys(raw, _POOL_KEYS, where)
    pool_type = raw.get("type")
    if pool_type not in POOL_TYPES:
        problems.append(f"{where}: type {pool_type!r} is not supported; use one of {', '.join(POOL_TYPES)}")
    limit = _limit(raw.get("concurrency_limit"), where, problems)
    paused = raw.get("paused", False)
    if not isinstance(paused, bool):
        problems.append(f"{where}: paused must be true or false, not {paused!r}")
    worker = _parse_worker(raw.get("worker"), where, problems)
    job = None
    if pool_type == "kubernetes":
        job = _parse_job(raw.get("job"), where, problems)
    elif "job" in raw:
        problems.append(f"{where}: job: only a kubernetes pool runs its flow runs as Jobs; remove it, or set "
                        "type: kubernetes")
    raw_queues = raw.get("queues") or []
    if not isinstance(raw_queues, list):
        problems.append(f"{where}: queues must be a list of mappings with a name")
        raw_queues = []
    queues = [queue for index, item in enumerate(raw_queues) if (queue := _parse_queue(item, where, index, problems))]
    problems += [f"{where}: queue {name!r} declared twice; keep one" for name in _repeated(q.name for q in queues)]
    # Prefect keeps priorities unique in a pool by moving the others down: a shared one would flip every run.
    problems += [f"{where}: priority {priority} given to two queues; give each queue its own"
                 for priority in _repeated(q.priority for q in queues if q.priority is not None)]
    if not isinstance(name, str) or pool_type not in POOL_TYPES:
        return None
    return Pool(name, pool_type, limit, paused is True, tuple(queues), worker, job)


def _parse_queue(raw: Any, pool_where: str, index: int, problems: list[str]) -> Queue | None:
    where = f"{pool_where}, queues[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with a name")
        return None
    name = raw.get("name")
    if _check_name(name, MAX_QUEUE_NAME, where, problems):
        where = f"{pool_where}, queue {name!r}"
    problems += _unknown_keys(raw, _QUEUE_KEYS, where)
    priority = raw.get("priority")
    if priority is not None and (not _is_int(priority) or priority < 1):
        problems.append(f"{where}: priority must be a whole number from 1 (the highest), not {priority!r}")
        priority = None
    limit = _limit(raw.get("concurrency_limit"), where, problems)
    description = "" if raw.get("description") is None else raw["description"]
    if not isinstance(description, str):
        problems.append(f"{where}: description must be text, not {description!r}")
    worker = _parse_worker(raw.get("worker"), where, problems)
    if not isinstance(name, str):
        return None
    return Queue(name, priority, limit, description, worker)


def _parse_worker(raw: Any, where: str, problems: list[str]) -> WorkerSettings:
    where = f"{where}: worker"
    raw = _section(raw, _WORKER_KEYS, where, problems)
    if raw is None:
        return WorkerSettings()
    replicas = raw.get("replicas")
    if replicas is not None and (not _is_int(replicas) or replicas < 0):
        problems.append(f"{where}: replicas must be a whole number ≥ 0, not {replicas!r}")
        replicas = None
    limit = raw.get("limit")
    if limit is not None and (not _is_int(limit) or limit < 1):
        problems.append(f"{where}: limit must be a whole number ≥ 1 (flow runs at once per worker pod), or null "
                        f"for no limit, not {limit!r}")
        limit = None
    return WorkerSettings(replicas, limit, _parse_resources(raw.get("resources"), where, problems),
                          _parse_autoscale(raw.get("autoscale"), where, problems))


def _parse_autoscale(raw: Any, where: str, problems: list[str]) -> Autoscale | None:
    where = f"{where}: autoscale"
    raw = _section(raw, _AUTOSCALE_KEYS, where, problems, example=", e.g. {max_replicas: 4}")
    if raw is None:
        return None
    maximum, percent = raw.get("max_replicas"), raw.get("cpu_percent", DEFAULT_CPU_PERCENT)
    if not _is_int(maximum) or maximum < 1:
        problems.append(f"{where}: max_replicas must be a whole number ≥ 1 (the most worker pods), not {maximum!r}")
        return None
    if not _is_int(percent) or not 1 <= percent <= 100:
        problems.append(f"{where}: cpu_percent must be a whole number from 1 to 100 (of the pods' CPU requests), "
                        f"not {percent!r}")
        return None
    return Autoscale(maximum, percent)


def _parse_job(raw: Any, where: str, problems: list[str]) -> JobSettings:
    where = f"{where}: job"
    raw = _section(raw, _JOB_KEYS, where, problems)
    if raw is None:
        return JobSettings()
    overrides = _parse_resources(raw.get("resources"), where, problems)
    resources = {part: {**DEFAULT_JOB_RESOURCES[part], **overrides.get(part, {})} for part in _RESOURCE_PARTS}
    problems += resource_order(resources, where)
    ttl = raw.get("ttl_seconds_after_finished", DEFAULT_JOB_TTL)
    if ttl is not None and (not _is_int(ttl) or ttl < 0):
        problems.append(f"{where}: ttl_seconds_after_finished must be a whole number ≥ 0, or null to keep finished "
                        f"Jobs, not {ttl!r}")
        ttl = DEFAULT_JOB_TTL
    manifest = raw.get("manifest") or {}
    if not isinstance(manifest, dict):
        problems.append(f"{where}: manifest must be a mapping (a partial Job manifest), not {manifest!r}")
        manifest = {}
    for key, wanted in (("apiVersion", "batch/v1"), ("kind", "Job")):
        if manifest.get(key, wanted) != wanted:
            problems.append(f"{where}: manifest: {key} must be {wanted}, not {manifest[key]!r}; the override "
                            "is merged into the flow run's Job")
    return JobSettings(resources, ttl, manifest)


def _parse_resources(raw: Any, where: str, problems: list[str]) -> dict:
    where = f"{where}: resources"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with requests and/or limits")
        return {}
    problems += _unknown_keys(raw, _RESOURCE_PARTS, where)
    resources = {}
    for part in _RESOURCE_PARTS:
        values = raw.get(part)
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: {part} must be a mapping of cpu and/or memory")
            continue
        problems += _unknown_keys(values, _RESOURCE_NAMES, f"{where}: {part}")
        for resource in _RESOURCE_NAMES:
            if resource in values and quantity(values[resource]) is None:
                problems.append(f"{where}: {part}: {resource} {values[resource]!r} is not a Kubernetes quantity "
                                f"(e.g. {'500m or 2' if resource == 'cpu' else '512Mi or 2Gi'})")
        resources[part] = {name: str(value) for name, value in values.items()
                           if name in _RESOURCE_NAMES and quantity(value) is not None}
    return resources


def resource_order(resources: dict, where: str) -> list[str]:
    """The API server refuses a request above its limit; say so before anything is applied."""
    problems = []
    for name in _RESOURCE_NAMES:
        request = resources.get("requests", {}).get(name)
        limit = resources.get("limits", {}).get(name)
        if request is not None and limit is not None and quantity(request) > quantity(limit):
            problems.append(f"{where}: resources: requests: {name} {request} is more than its limit {limit}; "
                            "raise the limit or lower the request")
    return problems


def quantity(value: Any) -> Decimal | None:
    """The value of a Kubernetes quantity such as 500m, 2, 512Mi; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    match = _QUANTITY.match(str(value))
    return Decimal(match["number"]) * _SUFFIX[match["suffix"]] if match else None


def _check_name(name: Any, longest: int, where: str, problems: list[str]) -> bool:
    if isinstance(name, str) and _NAME.match(name) and len(name) <= longest:
        return True
    problems.append(f"{where}: name {name!r} must be lowercase letters, digits and '-', at most {longest} characters")
    return False


def _limit(value: Any, where: str, problems: list[str]) -> int | None:
    if value is None or (_is_int(value) and value >= 0):
        return value
    problems.append(f"{where}: concurrency_limit must be a whole number ≥ 0, or null for no limit, not {value!r}")
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _section(raw: Any, keys: tuple[str, ...], where: str, problems: list[str], example: str = "") -> dict | None:
    """An optional mapping of these keys: None when it is left out or is not a mapping (a problem then)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping of {', '.join(keys)}{example}")
        return None
    problems += _unknown_keys(raw, keys, where)
    return raw


def _unknown_keys(raw: dict, allowed: tuple[str, ...], where: str) -> list[str]:
    problems = []
    for key in raw:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            fix = f"did you mean {hint[0]}?" if hint else f"allowed: {', '.join(allowed)}"
            problems.append(f"{where}: unknown key {key!r}; {fix}")
    return problems


def _repeated(values: Iterable[Any]) -> list[Any]:
    seen: set[Any] = set()
    repeated = []
    for value in values:
        if value in seen:
            repeated.append(value)
        seen.add(value)
    return repeated
