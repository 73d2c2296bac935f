"""Watches and pod logs, through the real client; each stream is driven step by step, never by a timer."""

import pytest
import urllib3
from kubernetes import client, watch

from tests.standin.samples import NS, apply, deployment, first_event, resource, secret, status_of


def test_a_watch_from_a_compacted_resource_version_gets_410(fakeapi, dyn, namespace):
    old = apply(dyn, secret()).metadata.resourceVersion
    apply(dyn, secret("bmV3"))
    fakeapi.compact()
    with pytest.raises(client.ApiException) as raised:
        first_event(dyn, "Secret", "v1", resource_version=old)
    # Real: an ERROR event with a 410 Expired Status, which the client raises.
    assert raised.value.status == 410
    assert "too old resource version" in raised.value.reason


def test_a_watch_streams_changes_and_ends_at_its_timeout_with_a_bookmark(fakeapi, dyn, namespace):
    start = apply(dyn, secret()).metadata.resourceVersion
    apply(dyn, secret("bmV3"))
    events = list(dyn.watch(resource(dyn, "Secret"), namespace=NS, resource_version=start, timeout=1,
                            allow_watch_bookmarks=True))
    assert [e["type"] for e in events] == ["MODIFIED", "BOOKMARK"]
    assert events[0]["object"].data["auth-string"] == "bmV3"


def test_a_watch_sees_objects_enter_and_leave_its_selector(fakeapi, dyn, namespace):
    start = apply(dyn, secret()).metadata.resourceVersion
    labelled = secret()
    labelled["metadata"]["labels"] = {"tier": "x"}
    apply(dyn, labelled)
    apply(dyn, secret())
    watcher, seen = watch.Watch(), []
    for event in dyn.watch(resource(dyn, "Secret"), namespace=NS, resource_version=start, timeout=5,
                           label_selector="tier=x", watcher=watcher):
        seen.append(event["type"])
        if len(seen) == 2:
            watcher.stop()
    assert seen == ["ADDED", "DELETED"]


def test_dropped_watches_cut_the_stream_mid_way(fakeapi, dyn, namespace):
    apply(dyn, secret())
    stream = dyn.watch(resource(dyn, "Secret"), namespace=NS, timeout=30)
    assert next(stream)["type"] == "ADDED"
    fakeapi.drop_watches()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        next(stream)


def test_pod_logs_answer_tail_lines_and_follow(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    (pod,) = fakeapi.objects("Pod", NS)
    name = pod["metadata"]["name"]
    fakeapi.log(NS, name, "one\ntwo\nthree")
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_pod_log(name, NS, tail_lines=2) == "two\nthree\n"
    followed = watch.Watch().stream(core.read_namespaced_pod_log, name, NS, tail_lines=1)
    assert next(followed) == "three"
    fakeapi.log(NS, name, "four")
    assert next(followed) == "four"
    fakeapi.delete("Pod", NS, name)
    assert list(followed) == []  # the stream ends with the pod


def test_logs_follow_the_kubelets_rules_for_containers_that_never_ran(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "ImagePullBackOff", "pull failed")
    name = fakeapi.objects("Pod", NS)[0]["metadata"]["name"]
    core = client.CoreV1Api(api_client)
    with pytest.raises(client.ApiException) as waiting:
        core.read_namespaced_pod_log(name, NS)
    # Real: 400 with the kubelet's words.
    assert status_of(waiting.value)["message"] == (
        f'container "worker" in pod "{name}" is waiting to start: trying and failing to pull image')
    with pytest.raises(client.ApiException) as previous:
        core.read_namespaced_pod_log(name, NS, previous=True)
    assert status_of(previous.value)["message"] == f'previous terminated container "worker" in pod "{name}" not found'
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "CrashLoopBackOff", "back-off", restarts=1)
    fakeapi.log(NS, name, "Traceback")
    assert core.read_namespaced_pod_log(name, NS, previous=True) == "Traceback\n"
    assert core.read_namespaced_pod_log(name, NS) == "Traceback\n"  # the crashed run, until the next one starts
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "Unschedulable", "0/1 nodes are available")
    assert core.read_namespaced_pod_log(name, NS) == ""  # the replacement is not scheduled: no kubelet, no log
