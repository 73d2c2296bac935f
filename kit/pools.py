"""Work pools and queues on the Prefect server: the plan (a pure diff of config/pools.yaml against what
the API holds), applying it through the Prefect client, `inv pools`, and the Prefect half of `inv status`.

A kubernetes pool's base job template is part of the plan: the kit's (kit.job_template, with the image
the workers run), written only after the cluster has admitted what it makes (kit.admission).
Planning is pure over plain dataclasses; `read_live`, `apply`, `write`, `sync` and `status` talk to
the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from kit import ROOT, access, prefect_api
from kit.errors import UserError
from kit.pool_config import POOLS_FILE, POOLS_PATH, Pool, Queue, load
from kit.settings import WORKER_PREFIX, Settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import WorkPool
    from prefect.client.orchestration import SyncPrefectClient

    from kit.cluster import Cluster

Out = Callable[[str], None]
DEFAULT_TEMPLATE_CACHE = ROOT / ".kit"
# Called with a pool's name and the template about to be written; raises UserError to stop the write.
Admit = Callable[[str, dict], None]
TEMPLATE = "base_job_template"
# How many changed places of a template a line names before it says "and N more".
SHOWN_PATHS = 3


# --- What the API holds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveQueue:
    name: str
    id: str
    priority: int | None = None
    concurrency_limit: int | None = None
    description: str = ""
    status: str = ""
    late_runs: int = 0
    # Counted only when pruning: it decides whether a queue may be deleted.
    scheduled_runs: int = 0


@dataclass(frozen=True)
class LiveWorker:
    name: str
    online: bool
    last_heartbeat: datetime | None


@dataclass(frozen=True)
class LivePool:
    name: str
    type: str
    concurrency_limit: int | None = None
    paused: bool = False
    default_queue_id: str = ""
    status: str = ""
    queues: tuple[LiveQueue, ...] = ()
    workers: tuple[LiveWorker, ...] = ()
    base_job_template: dict | None = None
    # Counted only with --force: a pool of the wrong type is recreated only without scheduled runs.
    scheduled_runs: int = 0


# --- The plan ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    action: str  # create | recreate | update | unchanged | delete | undeclared
    pool: str
    queue: str = ""  # empty for a change of the pool itself
    differences: tuple[tuple[str, Any, Any], ...] = ()  # (field, live, declared)
    declared: Pool | Queue | None = None
    queue_id: str = ""

    @property
    def subject(self) -> str:
        return f"queue {self.pool}/{self.queue}" if self.queue else f"pool {self.pool}"

    def describe(self, dry_run: bool = False) -> str:
        done = {"create": "created", "recreate": "recreated", "update": "updated", "delete": "deleted"}
        if self.action == "unchanged":
            return f"unchanged {self.subject}"
        if self.action == "undeclared":
            return f"kept {self.subject}: not in {POOLS_FILE} (`inv pools --prune` deletes it)"
        verb = f"would {self.action}" if dry_run else done[self.action]
        details = ", ".join(_difference(name, live, want) for name, live, want in self.differences)
        return f"{verb} {self.subject}" + (f": {details}" if details else "")


def _difference(name: str, live: Any, want: Any) -> str:
    if name != TEMPLATE:
        return f"{name} {live!r} → {want!r}"
    paths = changed_paths(live or {}, want)
    more = f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else ""
    return f"base job template ({', '.join(paths[:SHOWN_PATHS])}{more})"


def changed_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ, as dotted paths with list indexes."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [found for key in sorted(old.keys() | new.keys(), key=str)
                for found in changed_paths(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [found for index, (a, b) in enumerate(zip(old, new))
                for found in changed_paths(a, b, f"{path}[{index}]")]
    return [] if old == new else [path]


def plan(declared: tuple[Pool, ...], live: dict[str, LivePool], templates: dict[str, dict] | None = None,
         prune: bool = False, force: bool = False) -> list[Change]:
    """What it takes to make the declared pools true (and the kubernetes pools' templates, by pool name);
    raises when it cannot be done safely."""
    templates = templates or {}
    changes: list[Change] = []
    problems: list[str] = []
    for pool in declared:
        current = live.get(pool.name)
        if current is not None and current.type != pool.type:
            problem = _retype(pool, current, force)
            if problem:
                problems.append(problem)
                continue
        if current is None or current.type != pool.type:
            changes.append(Change("create" if current is None else "recreate", pool.name, declared=pool))
            changes += [Change("create", pool.name, queue.name, declared=queue) for queue in pool.queues]
            continue
        pool_change = _compare(pool.name, "", current, pool, ("concurrency_limit", "paused"))
        if pool.name in templates and current.base_job_template != templates[pool.name]:
            pool_change = Change("update", pool.name, differences=pool_change.differences + (
                (TEMPLATE, current.base_job_template, templates[pool.name]),), declared=pool)
        changes.append(pool_change)
        queues = {queue.name: queue for queue in current.queues}
        for queue in pool.queues:
            if queue.name in queues:
                managed = ("concurrency_limit", "description") + (("priority",) if queue.priority else ())
                changes.append(_compare(pool.name, queue.name, queues[queue.name], queue, managed))
            else:
                changes.append(Change("create", pool.name, queue.name, declared=queue))
        declared_names = {queue.name for queue in pool.queues}
        for queue in current.queues:
            if queue.name in declared_names or queue.id == current.default_queue_id:
                continue
            if not prune:
                changes.append(Change("undeclared", pool.name, queue.name, queue_id=queue.id))
            elif queue.scheduled_runs and not force:
                problems.append(
                    f"queue {pool.name}/{queue.name}: has {queue.scheduled_runs} scheduled flow runs, so --prune "
                    "keeps it; move or cancel them, or add --force to delete it anyway (the runs are then left "
                    "without a queue)")
            else:
                changes.append(Change("delete", pool.name, queue.name, queue_id=queue.id))
    if problems:
        raise UserError(*problems)
    return changes


def _retype(pool: Pool, current: LivePool, force: bool) -> str | None:
    """Why a pool of another type cannot be recreated with the declared one; None when it may be."""
    where = (f"pool {pool.name}: exists with type {current.type!r} but {POOLS_FILE} declares {pool.type!r}, and "
             "Prefect cannot change a pool's type")
    if not force:
        return (f"{where}; give the pool a new name in {POOLS_FILE} (and in flows/prefect.yaml), or run `inv pools "
                "--force` to delete and recreate it with its queues (only while it has no scheduled flow runs)")
    if current.scheduled_runs:
        return (f"{where}, and it has {current.scheduled_runs} scheduled flow runs, so --force keeps it; cancel "
                "them, or give the pool a new name")
    return None


def _compare(pool: str, queue: str, live: LivePool | LiveQueue, declared: Pool | Queue,
             managed: tuple[str, ...]) -> Change:
    differences = tuple((name, getattr(live, name), getattr(declared, name)) for name in managed
                        if getattr(live, name) != getattr(declared, name))
    queue_id = live.id if isinstance(live, LiveQueue) else ""
    return Change("update" if differences else "unchanged", pool, queue, differences, declared, queue_id)


def templates_written(changes: list[Change], templates: dict[str, dict]) -> dict[str, dict]:
    """The templates the changes would write, by pool name."""
    return {change.pool: templates[change.pool] for change in changes
            if not change.queue and change.pool in templates and (
                change.action in ("create", "recreate") or any(name == TEMPLATE for name, _, _ in change.differences))}


# --- The edges: read, apply, write, sync, status ------------------------------------------------------

def read_live(client: "SyncPrefectClient", names: Iterable[str] | None = None, details: bool = False,
              count_scheduled: bool = False) -> dict[str, LivePool]:
    """The named pools (all pools when names is None) as plain data; details adds status, late runs, workers."""
    from prefect.exceptions import ObjectNotFound

    if names is None:
        pools = client.read_work_pools()
    else:
        pools = []
        for name in names:
            try:
                pools.append(client.read_work_pool(name))
            except ObjectNotFound:
                pass
    return {pool.name: _live_pool(client, pool, details, count_scheduled) for pool in pools}


def _live_pool(client: "SyncPrefectClient", pool: "WorkPool", details: bool, count_scheduled: bool) -> LivePool:
    queues = tuple(_live_queue(client, queue, details, count_scheduled)
                   for queue in client.read_work_queues(work_pool_name=pool.name))
    workers = tuple(read_workers(client, pool.name)) if details else ()
    scheduled = _scheduled_runs(client, pool=pool.name) if count_scheduled else 0
    return LivePool(pool.name, pool.type, pool.concurrency_limit, pool.is_paused, str(pool.default_queue_id),
                    pool.status.value if pool.status else "", queues, workers, pool.base_job_template, scheduled)


def read_workers(client: "SyncPrefectClient", pool: str) -> list[LiveWorker]:
    return [LiveWorker(worker.name, worker.status.value == "ONLINE", worker.last_heartbeat_time)
            for worker in client.read_workers_for_work_pool(pool)]


def _live_queue(client: "SyncPrefectClient", queue: Any, details: bool, count_scheduled: bool) -> LiveQueue:
    late_runs = client.read_work_queue_status(queue.id).late_runs_count if details else 0
    scheduled = _scheduled_runs(client, queue_id=queue.id) if count_scheduled else 0
    status = queue.status.value if queue.status else ""
    return LiveQueue(queue.name, str(queue.id), queue.priority, queue.concurrency_limit, queue.description or "",
                     status, late_runs, scheduled)


def _scheduled_runs(client: "SyncPrefectClient", queue_id: str = "", pool: str = "") -> int:
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                WorkPoolFilter, WorkPoolFilterName, WorkQueueFilter,
                                                WorkQueueFilterId)
    from prefect.client.schemas.objects import StateType

    scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
    if pool:
        return client.count_flow_runs(flow_run_filter=scheduled,
                                      work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
    return client.count_flow_runs(flow_run_filter=scheduled,
                                  work_queue_filter=WorkQueueFilter(id=WorkQueueFilterId(any_=[queue_id])))


def apply(client: "SyncPrefectClient", changes: list[Change], templates: dict[str, dict] | None = None) -> None:
    """Make the writes the plan asks for: pools first, then queues, then deletions."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.workers.base import BaseWorker

    templates = templates or {}
    for change in changes:
        if change.queue or change.action not in ("create", "recreate", "update"):
            continue
        pool = change.declared
        if change.action == "update":
            client.update_work_pool(pool.name, WorkPoolUpdate(**_renamed(change.differences)))
            continue
        if change.action == "recreate":
            client.delete_work_pool(pool.name)
        # The kit's template, or the worker type's own, as `prefect work-pool create --type` uses.
        template = templates.get(pool.name) or \
            BaseWorker.get_worker_class_from_type(pool.type).get_default_base_job_template()
        client.create_work_pool(WorkPoolCreate(name=pool.name, type=pool.type, base_job_template=template,
                                               concurrency_limit=pool.concurrency_limit, is_paused=pool.paused))
    # Setting priority p moves the queues holding p or more down by one; going in ascending order of the
    # declared priorities never moves a queue set earlier, so one run converges.
    queue_writes = sorted((c for c in changes if c.queue and c.action in ("create", "update")),
                          key=lambda c: c.declared.priority or float("inf"))
    for change in queue_writes:
        queue = change.declared
        if change.action == "create":
            client.create_work_queue(queue.name, description=queue.description, priority=queue.priority,
                                     concurrency_limit=queue.concurrency_limit, work_pool_name=change.pool)
        else:
            client.update_work_queue(change.queue_id, **_renamed(change.differences))
    for change in changes:
        if change.action == "delete":
            client.delete_work_queue_by_id(change.queue_id)


def _renamed(differences: tuple[tuple[str, Any, Any], ...]) -> dict[str, Any]:
    api_names = {"paused": "is_paused"}
    return {api_names.get(name, name): want for name, _, want in differences}


def write(client: "SyncPrefectClient", declared: tuple[Pool, ...], templates: dict[str, dict], *,
          admit: Admit | None = None, dry_run: bool = False, prune: bool = False, force: bool = False) -> list[str]:
    """Plan and apply (unless dry_run) on a connected client; each template is admitted before anything is
    written. One line per object."""
    live = read_live(client, [pool.name for pool in declared], count_scheduled=prune or force)
    changes = plan(declared, live, templates, prune=prune, force=force)
    if admit is not None:
        for name, template in templates_written(changes, templates).items():
            admit(name, template)
    if not dry_run:
        apply(client, changes, templates)
    return [change.describe(dry_run) for change in changes]


def sync(settings: Settings, api_url: str | None = None, *, dry_run: bool = False, prune: bool = False,
         force: bool = False, tag: str | None = None, path: Path = POOLS_PATH, out: Out = print) -> None:
    """`inv pools`: make the declared pools, queues and job templates true; one line per object.

    A kubernetes pool's template carries the image of its workers in the cluster (or of --tag), and is
    admitted by the cluster before it is written; without a kubernetes pool no cluster is needed, unless
    the public URL does not answer and the way to Prefect is a port-forward.
    """
    from kit import admission, cluster

    declared = load(path)
    kubernetes = [pool for pool in declared if pool.type == "kubernetes"]
    with ExitStack() as stack:
        k, templates, admit = None, {}, None
        if kubernetes:
            k = stack.enter_context(cluster.connect(settings))
            templates = kubernetes_templates(settings, declared, live_images(k, kubernetes, tag, settings))
            admit = lambda name, template: admission.check(k, name, template, out)  # noqa: E731
        url = stack.enter_context(access.prefect_url(settings, api_url, k, out))
        client = stack.enter_context(prefect_api.connect(settings, url))
        # Retried as a whole: the next try reads what the server holds now, so a create whose answer was lost
        # is seen as done, not made twice.
        lines = prefect_api.retried(settings, lambda: write(client, declared, templates, admit=admit, dry_run=dry_run,
                                                            prune=prune, force=force), out)
        for line in lines:
            out(line)


def kubernetes_templates(settings: Settings, declared: tuple[Pool, ...], images: dict[str, str]) -> dict[str, dict]:
    """The base job template of each kubernetes pool, for the image its flow runs get (by pool name)."""
    from kit import job_template, manifests, workers

    default = default_template()
    template = workers.template(manifests.load())
    return {pool.name: job_template.render(default, pool, settings, images[pool.name], template)
            for pool in declared if pool.type == "kubernetes"}


def default_template(cache: Path = DEFAULT_TEMPLATE_CACHE) -> dict:
    """`prefect work-pool get-default-base-job-template --type kubernetes`, from the installed packages.

    Importing prefect-kubernetes costs more than the rest of a no-change `inv pools`, and its answer depends
    only on what is installed: it is kept in .kit/, under the versions it was made with.
    """
    from importlib.metadata import version

    installed = "-".join(version(package) for package in ("prefect-kubernetes", "prefect", "pydantic"))
    path = cache / f"kubernetes-job-template-{installed}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        pass
    from prefect_kubernetes.worker import KubernetesWorker

    template = KubernetesWorker.get_default_base_job_template()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(template))
    return template


def live_images(k: "Cluster", pools: list[Pool], tag: str | None, settings: Settings) -> dict[str, str]:
    """The image each kubernetes pool's Jobs get: --tag's, else what its worker Deployments run."""
    from kit import release

    if tag:
        image = release.image_for(settings.image_repository, tag).reference
        return {pool.name: image for pool in pools}
    running = {item["metadata"]["name"]: item["spec"]["template"]["spec"]["containers"][0]["image"]
               for item in k.objects("apps/v1", "Deployment")[0]}
    images = {}
    for pool in pools:
        found = [running[WORKER_PREFIX + queue.name] for queue in pool.queues if WORKER_PREFIX + queue.name in running]
        if not found:
            raise UserError(f"pool {pool.name}: none of its workers runs in namespace {k.namespace}, so there is no "
                            "image for its job template; `inv rollout` makes the pools itself, or pass --tag")
        images[pool.name] = found[0]
    return images


def status(settings: Settings, api_url: str | None = None, k: "Cluster | None" = None,
           pods: set[str] | None = None) -> list[str]:
    """The Prefect half of `inv status`: lines to print, also when the API cannot be reached. `pods`: the
    names of the kit's worker pods, to tell a replaced worker's leftover entry from a live one."""
    lines: list[str] = []
    try:
        declared = load()
        with ExitStack() as stack:
            if k is not None:
                stack.enter_context(k)
            url = stack.enter_context(access.prefect_url(settings, api_url, k, lines.append))
            # Two quick probes: status reports what it sees instead of waiting for a server to come up.
            client = stack.enter_context(prefect_api.connect(settings, url, attempts=2, first_delay=0.5))
            live = prefect_api.retried(settings, lambda: read_live(client, details=True), lines.append)
    except UserError as error:
        return lines + [f"prefect: {problem}" for problem in error.problems]
    return lines + status_lines(declared, live, datetime.now(timezone.utc), pods)


def status_lines(declared: tuple[Pool, ...], live: dict[str, LivePool], now: datetime,
                 pods: set[str] | None = None) -> list[str]:
    """The Prefect half of `inv status`, in tables like its cluster half: pools, queues, workers."""
    from kit.columns import table

    missing = [(pool.name, pool.type, f"missing: run `inv pools` ({POOLS_FILE} declares it)", "")
               for pool in declared if pool.name not in live]
    # The pool's status already says "paused" when it is.
    pools = [(pool.name, pool.type, _status(pool.status), _limit(pool.concurrency_limit)) for pool in live.values()]
    lines = table(("POOL", "TYPE", "STATUS", "CONCURRENCY"), missing + pools)
    queues = [(f"{pool.name}/{queue.name}", _status(queue.status), _limit(queue.concurrency_limit),
               str(queue.late_runs)) for pool in live.values() for queue in pool.queues]
    if queues:
        lines += [""] + table(("QUEUE", "STATUS", "CONCURRENCY", "LATE RUNS"), queues)
    workers = [(worker.name, pool.name, _worker_state(worker, pods), _ago(worker.last_heartbeat, now))
               for pool in live.values() for worker in pool.workers]
    if workers:
        lines += [""] + table(("WORKER", "POOL", "STATUS", "LAST HEARTBEAT"), workers)
    lines += [f"pool {pool.name}: no worker has polled it yet" for pool in live.values() if not pool.workers]
    return lines


def _worker_state(worker: LiveWorker, pods: set[str] | None) -> str:
    if pods is not None and worker.name not in pods:
        # Prefect keeps a stopped worker ONLINE until its heartbeats are overdue (~90 s).
        return "stale (its pod is gone)"
    return "online" if worker.online else "offline"


def _status(value: str) -> str:
    return value.lower().replace("_", " ") or "unknown"


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _ago(moment: datetime | None, now: datetime) -> str:
    """kubectl's AGE form for a heartbeat: 12s ago, 3m20s ago; never."""
    from kit.columns import human_age

    if moment is None:
        return "never"
    return f"{human_age(now, moment.astimezone(timezone.utc).isoformat())} ago"
