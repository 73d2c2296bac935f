"""The rows of `inv status`, as kubectl prints them (plain dicts, fixed clock)."""

from datetime import datetime, timedelta, timezone

import pytest

from kit.columns import human_age, table
from kit.status import image_tag, pod_ready_count, pod_status, workload_row

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def ago(**delta) -> str:
    return (NOW - timedelta(**delta)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(("delta", "shown"), [
    ({"seconds": 45}, "45s"), ({"seconds": 119}, "119s"), ({"minutes": 3, "seconds": 20}, "3m20s"),
    ({"minutes": 5}, "5m"), ({"minutes": 42}, "42m"), ({"hours": 5, "minutes": 3}, "5h3m"), ({"hours": 20}, "20h"),
    ({"days": 3, "hours": 4}, "3d4h"), ({"days": 40}, "40d"),
])
def test_age_reads_like_kubectl(delta, shown):
    assert human_age(NOW, ago(**delta)) == shown


def pod(*containers, phase="Running", reason=None, deleting=False, inits=()):
    status = {"phase": phase, "containerStatuses": list(containers), "initContainerStatuses": list(inits)}
    if reason:
        status["reason"] = reason
    metadata = {"name": "p", **({"deletionTimestamp": ago(seconds=1)} if deleting else {})}
    return {"metadata": metadata, "spec": {"containers": [{"name": c["name"]} for c in containers]},
            "status": status}


def container(name="server", ready=True, **state):
    return {"name": name, "ready": ready, "restartCount": 0, "state": state or {"running": {}}}


def test_running_pod():
    running = pod(container())
    assert (pod_status(running), pod_ready_count(running)) == ("Running", "1/1")


def test_waiting_reason_wins_over_the_phase():
    assert pod_status(pod(container(ready=False, waiting={"reason": "CrashLoopBackOff"}))) == "CrashLoopBackOff"


def test_terminated_container_shows_its_reason_or_exit_code():
    assert pod_status(pod(container(ready=False, terminated={"reason": "OOMKilled", "exitCode": 137}))) == "OOMKilled"
    assert pod_status(pod(container(ready=False, terminated={"exitCode": 2}))) == "ExitCode:2"


def test_deleted_pod_is_terminating():
    assert pod_status(pod(container(), deleting=True)) == "Terminating"


def test_evicted_pod_shows_the_pod_reason():
    assert pod_status(pod(phase="Failed", reason="Evicted")) == "Evicted"


def test_init_containers_come_first():
    waiting = {"name": "init", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    running = {"name": "init", "state": {"running": {}}}
    assert pod_status(pod(container(), inits=[waiting])) == "Init:ImagePullBackOff"
    assert pod_status(pod(container(), inits=[running])) == "Init:0/1"


def test_image_tag_keeps_the_tag_and_a_short_digest():
    assert image_tag("internal-cr:9999/prefect-core:4f2c1ab@sha256:" + "ab" * 32) == "4f2c1ab@sha256:abababababab"
    assert image_tag("internal-cr:9999/prefect-core:v2") == "v2"
    assert image_tag("internal-cr:9999/prefect-core") == "latest"


def test_workload_row():
    deployment = {"kind": "Deployment", "metadata": {"name": "prefect-worker-prod-main"},
                  "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "r:1/p:v3"}]}}},
                  "status": {"readyReplicas": 1, "updatedReplicas": 2}}
    assert workload_row(deployment) == ("deployment/prefect-worker-prod-main", "2", "1", "2", "v3")


def test_table_aligns_columns_three_spaces_apart():
    assert table(("NAME", "READY"), [("prefect-server-0", "1/1")]) == ["NAME               READY",
                                                                       "prefect-server-0   1/1"]
