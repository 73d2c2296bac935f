"""The plan: a pure diff of the declared pools against what the API holds, and the status lines."""

from datetime import datetime, timedelta, timezone

import pytest

from kit.errors import UserError
from kit.pool_config import Pool, Queue
from kit.pools import Change, LivePool, LiveQueue, LiveWorker, changed_paths, plan, status_lines, templates_written

MAIN = Queue("prod-main", priority=1, description="Main")
SECONDARY = Queue("prod-secondary", priority=2)
DECLARED = (Pool("production", "process", queues=(MAIN, SECONDARY)),)


def live_pool(*queues, **fields):
    default = LiveQueue("default", "id-default", priority=3, description="The work pool's default queue.")
    return {"production": LivePool("production", fields.pop("type", "process"), default_queue_id="id-default",
                                   queues=(*queues, default), **fields)}


def live_queue(queue, **fields):
    values = {"priority": queue.priority, "concurrency_limit": queue.concurrency_limit,
              "description": queue.description, **fields}
    return LiveQueue(queue.name, f"id-{queue.name}", **values)


def actions(changes):
    return [(change.action, change.subject) for change in changes]


def test_a_missing_pool_is_created_with_its_queues():
    assert actions(plan(DECLARED, {})) == [
        ("create", "pool production"),
        ("create", "queue production/prod-main"),
        ("create", "queue production/prod-secondary"),
    ]


def test_what_matches_is_left_unchanged():
    changes = plan(DECLARED, live_pool(live_queue(MAIN), live_queue(SECONDARY)))
    assert {change.action for change in changes} == {"unchanged"}
    assert len(changes) == 3


def test_a_changed_priority_is_one_update_naming_old_and_new():
    changes = plan(DECLARED, live_pool(live_queue(MAIN, priority=2), live_queue(SECONDARY, priority=1)))
    updates = [change for change in changes if change.action == "update"]
    assert [(c.queue, c.differences) for c in updates] == [("prod-main", (("priority", 2, 1),)),
                                                           ("prod-secondary", (("priority", 1, 2),))]
    assert updates[0].describe() == "updated queue production/prod-main: priority 2 → 1"
    assert updates[0].describe(dry_run=True) == "would update queue production/prod-main: priority 2 → 1"


def test_an_undeclared_priority_is_not_managed():
    declared = (Pool("production", "process", queues=(Queue("prod-main"),)),)
    queue = plan(declared, live_pool(live_queue(Queue("prod-main"), priority=7)))[1]
    assert (queue.queue, queue.action) == ("prod-main", "unchanged")


def test_pool_settings_are_compared():
    declared = (Pool("production", "process", concurrency_limit=3, paused=True, queues=(MAIN, SECONDARY)),)
    changes = plan(declared, live_pool(live_queue(MAIN), live_queue(SECONDARY)))
    assert changes[0].differences == (("concurrency_limit", None, 3), ("paused", False, True))


def test_a_pool_of_another_type_is_one_line_saying_how_to_move_before_any_write():
    with pytest.raises(UserError) as raised:
        plan(DECLARED, live_pool(type="kubernetes"))
    assert raised.value.problems == (
        "pool production: exists with type 'kubernetes' but config/pools.yaml declares 'process', and Prefect "
        "cannot change a pool's type; give the pool a new name in config/pools.yaml (and in flows/prefect.yaml), "
        "or run `inv pools --force` to delete and recreate it with its queues (only while it has no scheduled "
        "flow runs)",)


def test_force_recreates_a_pool_of_another_type_with_its_queues_when_nothing_is_scheduled():
    changes = plan(DECLARED, live_pool(type="kubernetes"), force=True)
    assert actions(changes) == [("recreate", "pool production"), ("create", "queue production/prod-main"),
                                ("create", "queue production/prod-secondary")]
    assert changes[0].describe() == "recreated pool production"


def test_force_keeps_a_pool_of_another_type_that_has_scheduled_runs():
    with pytest.raises(UserError, match=r"it has 2 scheduled flow runs, so --force keeps it"):
        plan(DECLARED, live_pool(type="kubernetes", scheduled_runs=2), force=True)


KUBE = (Pool("production", "kubernetes", queues=(MAIN, SECONDARY)),)
TEMPLATE = {"job_configuration": {"job_manifest": {"spec": {"image": "repo:v2", "backoffLimit": 0}}}, "variables": {}}


def test_a_kubernetes_pool_with_the_declared_template_is_unchanged():
    live = live_pool(live_queue(MAIN), live_queue(SECONDARY), type="kubernetes", base_job_template=TEMPLATE)
    changes = plan(KUBE, live, {"production": TEMPLATE})
    assert {change.action for change in changes} == {"unchanged"}
    assert templates_written(changes, {"production": TEMPLATE}) == {}


def test_a_changed_template_is_one_update_naming_the_places_that_change():
    old = {"job_configuration": {"job_manifest": {"spec": {"image": "repo:v1", "backoffLimit": 0}}}, "variables": {}}
    live = live_pool(live_queue(MAIN), live_queue(SECONDARY), type="kubernetes", base_job_template=old)
    (pool_change, *_) = plan(KUBE, live, {"production": TEMPLATE})
    assert pool_change.action == "update"
    assert pool_change.describe() == "updated pool production: base job template (job_configuration.job_manifest.spec.image)"
    assert templates_written([pool_change], {"production": TEMPLATE}) == {"production": TEMPLATE}


def test_a_new_kubernetes_pool_writes_its_template():
    changes = plan(KUBE, {}, {"production": TEMPLATE})
    assert templates_written(changes, {"production": TEMPLATE}) == {"production": TEMPLATE}


def test_changed_paths_name_keys_and_list_indexes():
    assert changed_paths({"a": [1, {"b": 2}], "c": 3}, {"a": [1, {"b": 5}], "d": 3}) == ["a[1].b", "c", "d"]
    assert changed_paths({"a": [1]}, {"a": [1, 2]}) == ["a"]


def test_an_undeclared_queue_is_kept_and_reported_without_prune():
    changes = plan(DECLARED, live_pool(live_queue(MAIN), live_queue(SECONDARY), LiveQueue("old", "id-old")))
    (kept,) = [change for change in changes if change.queue == "old"]
    assert kept.action == "undeclared"
    assert kept.describe() == ("kept queue production/old: not in config/pools.yaml "
                               "(`inv pools --prune` deletes it)")


def test_prune_deletes_undeclared_queues_but_never_the_default_queue():
    changes = plan(DECLARED, live_pool(live_queue(MAIN), live_queue(SECONDARY), LiveQueue("old", "id-old")),
                   prune=True)
    assert [(c.action, c.queue, c.queue_id) for c in changes if c.action == "delete"] == [("delete", "old", "id-old")]
    assert "default" not in {change.queue for change in changes}


def test_prune_refuses_a_queue_with_scheduled_runs_unless_forced():
    live = live_pool(live_queue(MAIN), live_queue(SECONDARY), LiveQueue("busy", "id-busy", scheduled_runs=3))
    with pytest.raises(UserError, match="queue production/busy: has 3 scheduled flow runs.*--force"):
        plan(DECLARED, live, prune=True)
    assert ("delete", "queue production/busy") in actions(plan(DECLARED, live, prune=True, force=True))


def test_a_change_describes_itself_in_one_line():
    assert Change("create", "production", declared=DECLARED[0]).describe() == "created pool production"
    assert Change("delete", "production", "old").describe(dry_run=True) == "would delete queue production/old"
    assert Change("unchanged", "production", "prod-main").describe() == "unchanged queue production/prod-main"


NOW = datetime(2026, 11, 26, 6, 0, 0, tzinfo=timezone.utc)


def test_status_shows_pool_queues_and_workers():
    live = live_pool(live_queue(MAIN, status="READY", late_runs=2), status="READY", concurrency_limit=5,
                     workers=(LiveWorker("worker-1", True, NOW - timedelta(seconds=12)),
                              LiveWorker("worker-2", False, None)))
    assert status_lines(DECLARED, live, NOW) == [
        "POOL         TYPE      STATUS   CONCURRENCY",
        "production   process   ready    5",
        "",
        "QUEUE                  STATUS    CONCURRENCY   LATE RUNS",
        "production/prod-main   ready     unlimited     2",
        "production/default     unknown   unlimited     0",
        "",
        "WORKER     POOL         STATUS    LAST HEARTBEAT",
        "worker-1   production   online    12s ago",
        "worker-2   production   offline   never",
    ]


def test_status_names_a_declared_pool_that_is_missing():
    lines = status_lines(DECLARED, {}, NOW)
    assert lines == ["POOL         TYPE      STATUS                                                     CONCURRENCY",
                     "production   process   missing: run `inv pools` (config/pools.yaml declares it)"]


def test_status_shows_a_worker_whose_pod_is_gone_as_stale_not_online():
    live = live_pool(status="READY", workers=(LiveWorker("prefect-worker-prod-main-6d9f-old", True, NOW),
                                              LiveWorker("prefect-worker-prod-main-6d9f-new", True, NOW)))
    lines = status_lines(DECLARED, live, NOW, pods={"prefect-worker-prod-main-6d9f-new"})
    rows = {line.split()[0]: line.split("   ") for line in lines[lines.index("") + 1:] if line}
    assert [cell.strip() for cell in rows["prefect-worker-prod-main-6d9f-old"] if cell] == [
        "prefect-worker-prod-main-6d9f-old", "production", "stale (its pod is gone)", "0s ago"]
    assert [cell.strip() for cell in rows["prefect-worker-prod-main-6d9f-new"] if cell] == [
        "prefect-worker-prod-main-6d9f-new", "production", "online", "0s ago"]


def test_status_says_when_no_worker_has_polled():
    assert status_lines(DECLARED, live_pool(status="NOT_READY"), NOW)[-1] == \
        "pool production: no worker has polled it yet"
