"""Why a pod is not ready, in one line, from the pod as the API server reports it (plain dicts)."""

from kit.cluster import log_source, pod_ready
from kit.readiness import format_event, latest, pod_problem


def pod(*containers, conditions=(), phase="Running", deleting=False):
    metadata = {"name": "prefect-server-0"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-26T06:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": c["name"]} for c in containers] or [{"name": "server"}]},
        "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": list(containers)},
    }


def container(name="server", ready=False, restarts=0, **state):
    return {"name": name, "ready": ready, "restartCount": restarts, "state": state}


def event(reason, message, time, count=1, kind="Warning"):
    return {"metadata": {"name": f"e-{time}"}, "type": kind, "reason": reason, "message": message,
            "lastTimestamp": time, "count": count}


def test_unschedulable_pod_reports_the_scheduler_message():
    unschedulable = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/3 nodes are available: 3 Insufficient memory."}], phase="Pending")
    assert pod_problem(unschedulable, []) == "Unschedulable: 0/3 nodes are available: 3 Insufficient memory."


def test_image_pull_back_off_reports_the_kubelet_message():
    pulling = pod(container(waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "r/x:1"'}))
    assert pod_problem(pulling, []) == 'ImagePullBackOff: Back-off pulling image "r/x:1"'


def test_crash_loop_names_the_last_exit_code():
    crashing = pod(container(restarts=4, waiting={"reason": "CrashLoopBackOff", "message": "back-off 40s"}))
    crashing["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 3, "reason": "Error"}}
    assert pod_problem(crashing, []) == (
        "CrashLoopBackOff: back-off 40s (container server last exited with code 3, Error)")


def test_running_but_unready_container_reports_the_latest_probe_failure():
    unready = pod(container(running={"startedAt": "2026-11-26T06:00:00Z"}))
    events = [event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", "06:01"),
              event("Unhealthy", "Readiness probe failed: connection refused", "06:00")]
    assert pod_problem(unready, events) == (
        "container server is running but failing its probe: "
        "Readiness probe failed: HTTP probe failed with statuscode: 503")


def test_running_but_unready_without_probe_events_says_the_probe_has_not_passed():
    unready = pod(container(running={"startedAt": "2026-11-26T06:00:00Z"}))
    assert pod_problem(unready, []) == "container server is running but its readiness probe has not passed yet"


def test_starting_container_is_reported_as_such():
    creating = pod(container(waiting={"reason": "ContainerCreating"}), phase="Pending")
    assert pod_problem(creating, []) == "ContainerCreating"


def test_terminating_pod():
    assert pod_problem(pod(container(running={}), deleting=True), []) == "terminating"


def test_pod_ready_reads_the_ready_condition():
    assert pod_ready(pod(conditions=[{"type": "Ready", "status": "True"}]))
    assert not pod_ready(pod(conditions=[{"type": "Ready", "status": "False"}]))


def test_log_source_reads_the_previous_run_of_a_crashed_container():
    crashing = pod(container(restarts=2, waiting={"reason": "CrashLoopBackOff"}))
    assert log_source(crashing) == ("server", True)


def test_log_source_reads_the_current_run_of_a_running_container():
    running = pod(container(restarts=2, running={}))
    assert log_source(running) == ("server", False)


def test_latest_keeps_the_newest_events_oldest_first():
    events = [event("A", "a", "06:03"), event("B", "b", "06:01"), event("C", "c", "06:02")]
    assert [e["reason"] for e in latest(events, 2)] == ["C", "A"]


def test_format_event_shows_repetitions():
    assert format_event(event("BackOff", "Back-off restarting failed container", "06:00", count=7)) == (
        "Warning BackOff: Back-off restarting failed container (x7)")
    assert format_event(event("Pulled", "pulled", "06:00", kind="Normal")) == "Normal Pulled: pulled"
