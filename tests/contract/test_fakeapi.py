"""The stand-in API server itself, driven through the real kubernetes client: it must answer as a real one does.

Each rule the cluster code relies on (apply semantics, rejections, watches, failures) is proven here once, so the
cluster tests can trust what the stand-in tells them.
"""

import json
import threading

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic import exceptions as errors

NS = "prefect"
MANAGER = "prefect-kit"


def deployment(image="prefecthq/prefect:3.9.1-python3.12", replicas=1, labels=None):
    labels = labels if labels is not None else {"app.kubernetes.io/part-of": "prefect"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "prefect-worker-prod-main", "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"}},
                "spec": {"containers": [{"name": "worker", "image": image}]},
            },
        },
    }


def secret(value="c2VjcmV0"):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prefect-config", "namespace": NS},
            "data": {"auth-string": value}}


@pytest.fixture
def api_client(fakeapi):
    return config.new_client_from_config(config_file=fakeapi.kubeconfig, context=fakeapi.context)


@pytest.fixture
def dyn(api_client, tmp_path):
    return DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))


@pytest.fixture
def namespace(fakeapi):
    return fakeapi.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})


def resource(dyn, kind, api_version="v1"):
    return dyn.resources.get(api_version=api_version, kind=kind)


def apply(dyn, body, **options):
    kind = resource(dyn, body["kind"], body["apiVersion"])
    return dyn.server_side_apply(kind, body=body, field_manager=MANAGER, **options)


def first_event(dyn, kind, api_version, **options):
    watcher = watch.Watch()
    # The timeout only bounds a failing test; a passing one returns at the first event.
    for event in dyn.watch(resource(dyn, kind, api_version), namespace=NS, watcher=watcher, timeout=5, **options):
        watcher.stop()
        return event
    return None


def test_discovery_answers_the_dynamic_and_typed_clients(dyn, api_client, namespace):
    assert resource(dyn, "Ingress", "networking.k8s.io/v1").namespaced
    assert not resource(dyn, "Namespace").namespaced
    assert resource(dyn, "Pod").subresources["log"]
    assert dyn.version["kubernetes"]["gitVersion"] == "v1.33.0"
    assert [n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items] == [NS]


def test_apply_creates_then_an_identical_apply_changes_nothing(fakeapi, dyn, namespace):
    created = apply(dyn, deployment())
    again = apply(dyn, deployment())
    assert [r.status for r in fakeapi.requests if r.method == "PATCH"] == [201, 200]
    assert again.metadata.resourceVersion == created.metadata.resourceVersion
    assert again.metadata.generation == created.metadata.generation == 1
    # The first event after the created version is the next real change: the no-op left no trace.
    changed = apply(dyn, deployment(image="prefecthq/prefect:3.9.2-python3.12"))
    event = first_event(dyn, "Deployment", "apps/v1", resource_version=created.metadata.resourceVersion)
    assert (event["type"], event["object"].metadata.resourceVersion) == ("MODIFIED", changed.metadata.resourceVersion)


def test_apply_merges_changes_bumps_generation_on_spec_and_drops_fields_no_longer_applied(fakeapi, dyn, namespace):
    created = apply(dyn, deployment(labels={"app.kubernetes.io/part-of": "prefect", "old": "yes"}))
    updated = apply(dyn, deployment(image="prefecthq/prefect:3.9.2-python3.12"))
    assert updated.metadata.generation == 2
    assert int(updated.metadata.resourceVersion) > int(created.metadata.resourceVersion)
    assert updated.metadata.labels.to_dict() == {"app.kubernetes.io/part-of": "prefect"}
    assert updated.spec.template.spec.containers[0].image.endswith("3.9.2-python3.12")
    relabelled = apply(dyn, deployment(image="prefecthq/prefect:3.9.2-python3.12", labels={"new": "yes"}))
    assert relabelled.metadata.generation == 2  # metadata only: the spec did not change


def test_status_is_kept_from_the_server_and_set_only_by_tests(fakeapi, dyn, namespace):
    body = deployment()
    apply(dyn, body)
    fakeapi.set_status("Deployment", NS, body["metadata"]["name"], {"observedGeneration": 1, "replicas": 1})
    applied = apply(dyn, {**body, "status": {"replicas": 7}})
    assert applied.status.replicas == 1


def test_apply_without_field_manager_is_invalid(dyn, namespace):
    kind = resource(dyn, "Deployment", "apps/v1")
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        dyn.server_side_apply(kind, body=deployment())
    assert ('PatchOptions.meta.k8s.io \\"\\" is invalid: fieldManager: Required value: is required for apply patch'
            in raised.value.body)


def test_an_object_read_back_cannot_be_applied_as_it_is(dyn, namespace):
    stored = apply(dyn, deployment()).to_dict()
    with pytest.raises(errors.BadRequestError) as raised:
        apply(dyn, stored)
    assert "metadata.managedFields must be nil" in raised.value.body


def test_a_patch_with_a_content_type_no_patch_accepts_is_415(dyn, namespace):
    apply(dyn, deployment())
    kind = resource(dyn, "Deployment", "apps/v1")
    with pytest.raises(errors.DynamicApiError) as raised:
        dyn.patch(kind, body=deployment(), content_type="application/json")
    assert raised.value.status == 415


def test_apply_of_an_object_the_schema_rejects_is_invalid(dyn, namespace):
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        apply(dyn, body)
    assert "spec.template.spec.containers.0" in raised.value.body
    assert "'imagePulPolicy' was unexpected" in raised.value.body


def test_a_secret_value_that_is_not_base64_is_rejected(fakeapi, dyn, namespace):
    with pytest.raises(errors.BadRequestError) as raised:
        apply(dyn, secret("not base64!"))
    assert "illegal base64 data at input byte 3" in raised.value.body
    assert fakeapi.objects("Secret") == []


def test_a_write_into_a_missing_namespace_is_not_found(dyn):
    with pytest.raises(errors.NotFoundError) as raised:
        apply(dyn, secret())
    assert 'namespaces \\"prefect\\" not found' in raised.value.body


def test_create_refuses_a_second_object_of_the_same_name(fakeapi, dyn, namespace):
    secrets = resource(dyn, "Secret")
    dyn.create(secrets, body=secret(), namespace=NS)
    with pytest.raises(errors.ConflictError) as raised:
        dyn.create(secrets, body=secret(), namespace=NS)
    assert json.loads(raised.value.body)["reason"] == "AlreadyExists"
    assert [(r.method, r.status) for r in fakeapi.writes()] == [("POST", 201), ("POST", 409)]


def test_delete_by_label_selector_deletes_only_what_it_selects(fakeapi, dyn, namespace):
    fakeapi.put({**secret(), "metadata": {"name": "kept", "namespace": NS}})
    managed = {"app.kubernetes.io/managed-by": "prefect-kit"}
    fakeapi.put({**secret(), "metadata": {"name": "doomed", "namespace": NS, "labels": managed}})
    dyn.delete(resource(dyn, "Secret"), namespace=NS, label_selector="app.kubernetes.io/managed-by=prefect-kit")
    assert [s["metadata"]["name"] for s in fakeapi.objects("Secret", NS)] == ["kept"]


def test_replace_with_a_stale_resource_version_conflicts(dyn, namespace):
    first = apply(dyn, secret()).to_dict()
    apply(dyn, secret("bmV3"))
    with pytest.raises(errors.ConflictError) as raised:
        dyn.replace(resource(dyn, "Secret"), body=first)
    assert "the object has been modified" in raised.value.body


def test_a_field_owned_by_another_manager_conflicts_unless_forced(fakeapi, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.set_owner("Deployment", NS, "prefect-worker-prod-main", ".spec.replicas", "kubectl-client-side-apply")
    apply(dyn, deployment(replicas=1))  # same value: shared ownership, no conflict
    with pytest.raises(errors.ConflictError) as raised:
        apply(dyn, deployment(replicas=3))
    assert ('Apply failed with 1 conflict: conflict with \\"kubectl-client-side-apply\\" using apps/v1: '
            ".spec.replicas") in raised.value.body
    forced = apply(dyn, deployment(replicas=3), force_conflicts=True)
    assert forced.spec.replicas == 3
    assert [m.manager for m in forced.metadata.managedFields] == [MANAGER]


def test_a_merge_patch_by_another_manager_survives_the_next_apply(dyn, namespace):
    apply(dyn, deployment())
    restart = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}
    patched = dyn.patch(resource(dyn, "Deployment", "apps/v1"), body=restart, name="prefect-worker-prod-main",
                        namespace=NS, field_manager="kubectl-rollout")
    assert patched.metadata.generation == 2
    reapplied = apply(dyn, deployment())
    assert reapplied.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] == "now"
    assert reapplied.metadata.resourceVersion == patched.metadata.resourceVersion


def test_dry_run_answers_the_would_be_object_and_stores_nothing(fakeapi, dyn, namespace):
    answered = apply(dyn, deployment(), dry_run="All")
    assert answered.metadata.name == "prefect-worker-prod-main"
    assert fakeapi.objects("Deployment") == []
    stored = apply(dyn, deployment())
    would_be = apply(dyn, deployment(image="other:1"), dry_run="All")
    assert would_be.spec.template.spec.containers[0].image == "other:1"
    assert fakeapi.get("Deployment", NS, "prefect-worker-prod-main")["metadata"]["resourceVersion"] == (
        stored.metadata.resourceVersion)


def test_list_selects_by_label_and_by_the_fields_the_real_server_indexes(fakeapi, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.put({**secret(), "metadata": {"name": "other", "namespace": NS, "labels": {"tier": "x"}}})
    fakeapi.put(secret())
    secrets = resource(dyn, "Secret")
    assert [s.metadata.name for s in dyn.get(secrets, namespace=NS, label_selector="tier in (x,y)").items] == ["other"]
    assert [s.metadata.name for s in dyn.get(secrets, namespace=NS, label_selector="!tier").items] == [
        "prefect-config"]
    named = dyn.get(secrets, namespace=NS, field_selector="metadata.name=other")
    assert [s.metadata.name for s in named.items] == ["other"]
    raw = json.loads(dyn.get(secrets, namespace=NS, serialize=False).data)
    assert [sorted(item) for item in raw["items"]] == [["data", "metadata"]] * 2  # no kind in items, as for real
    with pytest.raises(errors.BadRequestError):
        dyn.get(secrets, namespace=NS, field_selector="data.auth-string=x")


def test_events_are_found_by_the_object_they_are_about(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "ImagePullBackOff", "pull failed")
    (pod,) = fakeapi.objects("Pod", NS)
    fakeapi.event(pod, "Failed", "Failed to pull image")
    fakeapi.event(fakeapi.get("Deployment", NS, "prefect-worker-prod-main"), "ScalingReplicaSet", "scaled", "Normal")
    found = client.CoreV1Api(api_client).list_namespaced_event(
        NS, field_selector=f"involvedObject.name={pod['metadata']['name']},involvedObject.kind=Pod")
    assert [(e.reason, e.type, e.involved_object.uid) for e in found.items] == [
        ("Failed", "Warning", pod["metadata"]["uid"])]


def test_a_watch_from_a_compacted_resource_version_gets_410(fakeapi, dyn, namespace):
    old = apply(dyn, secret()).metadata.resourceVersion
    apply(dyn, secret("bmV3"))
    fakeapi.compact()
    with pytest.raises(client.ApiException) as raised:
        first_event(dyn, "Secret", "v1", resource_version=old)
    assert raised.value.status == 410
    assert "too old resource version" in raised.value.reason


def test_a_watch_streams_changes_and_ends_at_its_timeout_with_a_bookmark(fakeapi, dyn, namespace):
    start = apply(dyn, secret()).metadata.resourceVersion
    threading.Timer(0.2, apply, (dyn, secret("bmV3"))).start()
    events = list(dyn.watch(resource(dyn, "Secret"), namespace=NS, resource_version=start, timeout=1,
                            allow_watch_bookmarks=True))
    assert [e["type"] for e in events] == ["MODIFIED", "BOOKMARK"]
    assert events[0]["object"].data["auth-string"] == "bmV3"


def test_dropped_watches_cut_the_stream_mid_way(fakeapi, dyn, namespace):
    threading.Timer(0.2, fakeapi.drop_watches).start()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        list(dyn.watch(resource(dyn, "Secret"), namespace=NS, timeout=30))


def test_a_wrong_token_is_unauthorized(fakeapi, tmp_path):
    bad = config.new_client_from_config(
        config_file=fakeapi.write_kubeconfig(str(tmp_path / "bad"), token="wrong"), context=fakeapi.context)
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(bad).list_namespace()
    assert raised.value.status == 401


def test_deny_answers_401_or_403_with_real_status_bodies(fakeapi, dyn, api_client, namespace):
    resource(dyn, "Secret")
    fakeapi.deny(403, "/api/v1/namespaces/prefect/secrets")
    with pytest.raises(errors.ForbiddenError) as raised:
        apply(dyn, secret())
    assert ('secrets \\"prefect-config\\" is forbidden: User \\"contract-tester\\" cannot patch resource '
            '\\"secrets\\" in API group \\"\\" in the namespace \\"prefect\\"') in raised.value.body
    fakeapi.allow()
    fakeapi.deny(401)
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api_client).list_namespace()
    assert raised.value.status == 401


def test_fail_answers_the_next_requests_with_an_error_then_recovers(fakeapi, api_client, namespace):
    core = client.CoreV1Api(api_client)
    fakeapi.fail("/api/v1/namespaces", 503, times=2)
    for _ in range(2):
        with pytest.raises(client.ApiException) as raised:
            core.list_namespace()
        assert raised.value.status == 503
    assert core.list_namespace().items


def test_the_request_log_shows_what_the_client_sent(fakeapi, dyn, namespace):
    resource(dyn, "Deployment", "apps/v1")
    fakeapi.clear_requests()
    apply(dyn, deployment())
    (write,) = fakeapi.writes()
    assert (write.method, write.path, write.content_type) == (
        "PATCH", "/apis/apps/v1/namespaces/prefect/deployments/prefect-worker-prod-main",
        "application/apply-patch+yaml")
    assert write.query["fieldManager"] == MANAGER
    assert write.body == deployment()


def test_pod_logs_answer_tail_lines_and_follow(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    (pod,) = fakeapi.objects("Pod", NS)
    name = pod["metadata"]["name"]
    fakeapi.log(NS, name, "one\ntwo\nthree")
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_pod_log(name, NS, tail_lines=2) == "two\nthree\n"
    threading.Timer(0.2, fakeapi.log, (NS, name, "four")).start()
    threading.Timer(0.4, fakeapi.delete, ("Pod", NS, name)).start()
    followed = watch.Watch().stream(core.read_namespaced_pod_log, name, NS, tail_lines=1)
    assert list(followed) == ["three", "four"]


def test_make_ready_and_make_unready_play_the_controllers(fakeapi, dyn, namespace):
    apply(dyn, deployment(replicas=2))
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "CrashLoopBackOff", "back-off", restarts=4)
    waiting = [p["status"]["containerStatuses"][0] for p in fakeapi.objects("Pod", NS)]
    assert [(w["state"]["waiting"]["reason"], w["restartCount"]) for w in waiting] == [("CrashLoopBackOff", 4)] * 2
    assert "readyReplicas" not in fakeapi.get("Deployment", NS, "prefect-worker-prod-main")["status"]
    apply(dyn, deployment(image="new:2", replicas=2))
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    pods = fakeapi.objects("Pod", NS)
    assert [p["spec"]["containers"][0]["image"] for p in pods] == ["new:2", "new:2"]
    status = fakeapi.get("Deployment", NS, "prefect-worker-prod-main")["status"]
    assert (status["observedGeneration"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2)


def test_logs_follow_the_kubelets_rules_for_containers_that_never_ran(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "ImagePullBackOff", "pull failed")
    name = fakeapi.objects("Pod", NS)[0]["metadata"]["name"]
    core = client.CoreV1Api(api_client)
    with pytest.raises(client.ApiException) as waiting:
        core.read_namespaced_pod_log(name, NS)
    assert json.loads(waiting.value.body)["message"] == (
        f'container "worker" in pod "{name}" is waiting to start: trying and failing to pull image')
    with pytest.raises(client.ApiException) as previous:
        core.read_namespaced_pod_log(name, NS, previous=True)
    assert json.loads(previous.value.body)["message"] == (
        f'previous terminated container "worker" in pod "{name}" not found')
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "CrashLoopBackOff", "back-off", restarts=1)
    fakeapi.log(NS, name, "Traceback")
    assert core.read_namespaced_pod_log(name, NS, previous=True) == "Traceback\n"
    assert core.read_namespaced_pod_log(name, NS) == "Traceback\n"  # the crashed run, until the next one starts
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "Unschedulable", "0/1 nodes are available")
    assert core.read_namespaced_pod_log(name, NS) == ""


def test_a_ready_statefulset_has_its_pods_and_volume_claims(fakeapi, dyn, namespace):
    template = {"metadata": {"name": "data", "labels": {"app.kubernetes.io/managed-by": "prefect-kit"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    body = deployment()
    body.update(kind="StatefulSet", metadata={"name": "prefect-server", "namespace": NS})
    body["spec"].update(serviceName="prefect-server-headless", volumeClaimTemplates=[template])
    apply(dyn, body)
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    assert [p["metadata"]["name"] for p in fakeapi.objects("Pod", NS)] == ["prefect-server-0"]
    (claim,) = fakeapi.objects("PersistentVolumeClaim", NS)
    assert claim["metadata"]["name"] == "data-prefect-server-0"
    assert claim["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "prefect-kit", "app": "worker"}
    status = fakeapi.get("StatefulSet", NS, "prefect-server")["status"]
    assert (status["observedGeneration"], status["readyReplicas"], status["updatedReplicas"]) == (1, 1, 1)


def test_the_background_controller_makes_each_new_generation_ready(fakeapi, dyn, namespace):
    fakeapi.controller()
    applied = apply(dyn, deployment())
    event = first_event(dyn, "Deployment", "apps/v1", field_selector="metadata.name=prefect-worker-prod-main",
                        resource_version=applied.metadata.resourceVersion)
    assert event["object"].status.observedGeneration == 1
    assert event["object"].status.readyReplicas == 1


def test_deleting_a_namespace_removes_its_contents(fakeapi, dyn, namespace):
    apply(dyn, secret())
    dyn.delete(resource(dyn, "Namespace"), name=NS, propagation_policy="Foreground")
    assert fakeapi.objects("Secret") == [] and fakeapi.objects("Namespace") == []
