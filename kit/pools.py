"""Work pools and queues from config/pools.yaml: the file's schema, the plan (a pure diff of declared
against live), applying it through the Prefect client, and the Prefect half of `inv status`.

Reading and planning are pure functions over plain dataclasses; only `read_live`, `apply`, `sync`
and `status` talk to the API.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from kit import ROOT, prefect_api
from kit.errors import UserError
from kit.settings import WORKER_PREFIX, Settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

POOLS_PATH = ROOT / "config" / "pools.yaml"
# How messages name the file.
POOLS_FILE = "config/pools.yaml"
POOL_TYPES = ("process",)
_POOL_KEYS = ("name", "type", "concurrency_limit", "paused", "queues")
_QUEUE_KEYS = ("name", "priority", "concurrency_limit", "description")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Each queue gets a worker Deployment `prefect-worker-<queue>`, and a Deployment name is a DNS label.
MAX_QUEUE_NAME = 63 - len(WORKER_PREFIX)


@dataclass(frozen=True)
class Queue:
    name: str
    # None: not managed; Prefect gives a new queue the first free priority.
    priority: int | None = None
    concurrency_limit: int | None = None
    # The server stores no description as "" and refuses null.
    description: str = ""


@dataclass(frozen=True)
class Pool:
    name: str
    type: str
    concurrency_limit: int | None = None
    paused: bool = False
    queues: tuple[Queue, ...] = ()


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
        raise UserError(f"{source}{where}: not valid YAML ({getattr(error, 'problem', error)}); fix the syntax") from None
    if not isinstance(document, dict) or not isinstance(document.get("pools"), list) or not document["pools"]:
        raise UserError(f"{source}: must be a mapping with a non-empty list `pools:` (see the README, `inv pools`)")
    problems = _unknown_keys(document, ("pools",), source)
    pools = [pool for index, raw in enumerate(document["pools"]) if (pool := _parse_pool(raw, source, index, problems))]
    problems += [f"{source}: pool {name!r} declared twice; keep one" for name in _repeated(p.name for p in pools)]
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
    return Pool(name, pool_type, limit, paused is True, tuple(queues))


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
    if not isinstance(name, str):
        return None
    return Queue(name, priority, limit, description)


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


# --- The plan ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    action: str  # create | update | unchanged | delete | undeclared
    pool: str
    queue: str = ""  # empty for a change of the pool itself
    differences: tuple[tuple[str, Any, Any], ...] = ()  # (field, live, declared)
    declared: Pool | Queue | None = None
    queue_id: str = ""

    @property
    def subject(self) -> str:
        return f"queue {self.pool}/{self.queue}" if self.queue else f"pool {self.pool}"

    def describe(self, dry_run: bool = False) -> str:
        done = {"create": "created", "update": "updated", "delete": "deleted"}
        if self.action == "unchanged":
            return f"unchanged {self.subject}"
        if self.action == "undeclared":
            return f"kept {self.subject}: not in {POOLS_FILE} (`inv pools --prune` deletes it)"
        verb = f"would {self.action}" if dry_run else done[self.action]
        details = ", ".join(f"{name} {live!r} → {want!r}" for name, live, want in self.differences)
        return f"{verb} {self.subject}" + (f": {details}" if details else "")


def plan(declared: tuple[Pool, ...], live: dict[str, LivePool], prune: bool = False,
         force: bool = False) -> list[Change]:
    """What it takes to make the declared pools true; raises when it cannot be done safely."""
    changes: list[Change] = []
    problems: list[str] = []
    for pool in declared:
        current = live.get(pool.name)
        if current is None:
            changes.append(Change("create", pool.name, declared=pool))
            changes += [Change("create", pool.name, queue.name, declared=queue) for queue in pool.queues]
            continue
        if current.type != pool.type:
            problems.append(
                f"pool {pool.name}: exists with type {current.type!r} but {POOLS_FILE} declares {pool.type!r}, and "
                f"Prefect cannot change a pool's type; delete it (`prefect work-pool delete {pool.name}`) or rename it")
            continue
        changes.append(_compare(pool.name, "", current, pool, ("concurrency_limit", "paused")))
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
                    "keeps it; move or cancel them, or add --force to delete it anyway (the runs are then left without a queue)")
            else:
                changes.append(Change("delete", pool.name, queue.name, queue_id=queue.id))
    if problems:
        raise UserError(*problems)
    return changes


def _compare(pool: str, queue: str, live: LivePool | LiveQueue, declared: Pool | Queue,
             managed: tuple[str, ...]) -> Change:
    differences = tuple((name, getattr(live, name), getattr(declared, name)) for name in managed
                        if getattr(live, name) != getattr(declared, name))
    queue_id = live.id if isinstance(live, LiveQueue) else ""
    return Change("update" if differences else "unchanged", pool, queue, differences, declared, queue_id)


# --- The edges: read, apply, sync, status -------------------------------------------------------------

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
    live = {}
    for pool in pools:
        queues = tuple(_live_queue(client, queue, details, count_scheduled)
                       for queue in client.read_work_queues(work_pool_name=pool.name))
        workers = tuple(LiveWorker(worker.name, worker.status.value == "ONLINE", worker.last_heartbeat_time)
                        for worker in client.read_workers_for_work_pool(pool.name)) if details else ()
        live[pool.name] = LivePool(pool.name, pool.type, pool.concurrency_limit, pool.is_paused,
                                   str(pool.default_queue_id), pool.status.value if pool.status else "",
                                   queues, workers)
    return live


def _live_queue(client: "SyncPrefectClient", queue: Any, details: bool, count_scheduled: bool) -> LiveQueue:
    late_runs = client.read_work_queue_status(queue.id).late_runs_count if details else 0
    scheduled = _scheduled_runs(client, queue.id) if count_scheduled else 0
    status = queue.status.value if queue.status else ""
    return LiveQueue(queue.name, str(queue.id), queue.priority, queue.concurrency_limit, queue.description or "",
                     status, late_runs, scheduled)


def _scheduled_runs(client: "SyncPrefectClient", queue_id: str) -> int:
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                WorkQueueFilter, WorkQueueFilterId)
    from prefect.client.schemas.objects import StateType

    return client.count_flow_runs(
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        work_queue_filter=WorkQueueFilter(id=WorkQueueFilterId(any_=[queue_id])),
    )


def apply(client: "SyncPrefectClient", changes: list[Change]) -> None:
    """Make the writes the plan asks for: pools first, then queues, then deletions."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.workers.base import BaseWorker

    for change in changes:
        if change.queue or change.action not in ("create", "update"):
            continue
        pool = change.declared
        if change.action == "create":
            # The worker type's own job template, as `prefect work-pool create --type` uses.
            template = BaseWorker.get_worker_class_from_type(pool.type).get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=pool.name, type=pool.type, base_job_template=template,
                                                   concurrency_limit=pool.concurrency_limit, is_paused=pool.paused))
        else:
            client.update_work_pool(pool.name, WorkPoolUpdate(**_renamed(change.differences)))
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


def sync(settings: Settings, api_url: str | None = None, dry_run: bool = False, prune: bool = False,
         force: bool = False, path: Path = POOLS_PATH) -> list[str]:
    """`inv pools`: make the declared pools and queues true; one line per object."""
    declared = load(path)
    url = prefect_api.api_url(settings, api_url)
    with prefect_api.connect(settings, url) as client:
        live = read_live(client, [pool.name for pool in declared], count_scheduled=prune)
        changes = plan(declared, live, prune=prune, force=force)
        if not dry_run:
            apply(client, changes)
    return [change.describe(dry_run) for change in changes]


def status(settings: Settings, api_url: str | None = None) -> list[str]:
    """The Prefect half of `inv status`: lines to print, also when the API cannot be reached."""
    try:
        declared = load()
        url = prefect_api.api_url(settings, api_url)
        # Two quick probes: status reports what it sees instead of waiting for a server to come up.
        with prefect_api.connect(settings, url, attempts=2, first_delay=0.5) as client:
            live = read_live(client, details=True)
    except UserError as error:
        return [f"prefect: {problem}" for problem in error.problems]
    return status_lines(declared, live, datetime.now(timezone.utc))


def status_lines(declared: tuple[Pool, ...], live: dict[str, LivePool], now: datetime) -> list[str]:
    lines = []
    for name in [pool.name for pool in declared if pool.name not in live]:
        lines.append(f"pool {name}: missing (declared in {POOLS_FILE}); run `inv pools`")
    for pool in live.values():
        limit = "unlimited" if pool.concurrency_limit is None else str(pool.concurrency_limit)
        # The pool's status already says "paused" when it is.
        lines.append(f"pool {pool.name} ({pool.type}): {_status(pool.status)}, concurrency {limit}")
        for queue in pool.queues:
            lines.append(f"  queue {queue.name}: {_status(queue.status)}, {queue.late_runs} late runs")
        if not pool.workers:
            lines.append("  workers: none has polled this pool yet")
        for worker in pool.workers:
            seen = _ago(worker.last_heartbeat, now)
            lines.append(f"  worker {worker.name}: {'online' if worker.online else 'offline'}, last heartbeat {seen}")
    return lines


def _status(value: str) -> str:
    return value.lower().replace("_", " ") or "unknown"


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC ({seconds} s ago)"
