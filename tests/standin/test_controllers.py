"""The controller helpers and what real controllers do that tests rely on: rollouts, Jobs, garbage collection,
claim protection, namespace deletion."""

import pytest
from kubernetes import client
from kubernetes.dynamic import exceptions as errors

from tests.standin.samples import NS, apply, claim, deployment, first_event, job, pod_spec, resource, secret, \
    statefulset, status_of

JOB_LABELS = ("job-name", "batch.kubernetes.io/job-name", "controller-uid", "batch.kubernetes.io/controller-uid")


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
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"ReplicaSet"}
    status = fakeapi.get("Deployment", NS, "prefect-worker-prod-main")["status"]
    assert (status["observedGeneration"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2)


def test_a_ready_statefulset_has_its_claims_and_pods_that_mount_them(fakeapi, dyn, namespace):
    stored = apply(dyn, statefulset())
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    (server,) = fakeapi.objects("Pod", NS)
    assert server["metadata"]["name"] == "prefect-server-0"
    assert server["metadata"]["ownerReferences"][0]["uid"] == stored.metadata.uid
    # Real (the StatefulSet controller's updateStorage): one volume per claim template, naming its claim.
    assert [v for v in server["spec"]["volumes"] if v["name"] == "data"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-prefect-server-0"}}]
    (data,) = fakeapi.objects("PersistentVolumeClaim", NS)
    assert data["metadata"]["name"] == "data-prefect-server-0"
    assert data["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "prefect-kit", "app": "server"}
    status = fakeapi.get("StatefulSet", NS, "prefect-server")["status"]
    assert (status["observedGeneration"], status["readyReplicas"], status["updatedReplicas"]) == (1, 1, 1)


def test_a_new_statefulset_template_replaces_its_pods(fakeapi, dyn, namespace):
    apply(dyn, statefulset())
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    before = fakeapi.get("Pod", NS, "prefect-server-0")["metadata"]["uid"]
    changed = statefulset()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "prefecthq/prefect:3.9.2-python3.12"
    apply(dyn, changed)
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    after = fakeapi.get("Pod", NS, "prefect-server-0")
    assert after["metadata"]["uid"] != before  # a new pod of the same name, as the real controller makes it
    assert after["spec"]["containers"][0]["image"].endswith("3.9.2-python3.12")


def test_the_background_controller_makes_each_new_generation_ready(fakeapi, dyn, namespace):
    fakeapi.controller()
    applied = apply(dyn, deployment())
    event = first_event(dyn, "Deployment", "apps/v1", field_selector="metadata.name=prefect-worker-prod-main",
                        resource_version=applied.metadata.resourceVersion)
    assert event["object"].status.observedGeneration == 1
    assert event["object"].status.readyReplicas == 1


def test_a_running_job_has_pods_labelled_as_the_job_controller_labels_them(fakeapi, dyn, api_client, namespace):
    stored = apply(dyn, job())
    fakeapi.job_running(NS, "flow-run")
    (run,) = fakeapi.objects("Pod", NS)
    labels = run["metadata"]["labels"]
    assert {label: labels[label] for label in JOB_LABELS} == {
        "job-name": "flow-run", "batch.kubernetes.io/job-name": "flow-run",
        "controller-uid": stored.metadata.uid, "batch.kubernetes.io/controller-uid": stored.metadata.uid}
    assert run["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "flow-run",
                                                   "uid": stored.metadata.uid, "controller": True,
                                                   "blockOwnerDeletion": True}]
    status = client.BatchV1Api(api_client).read_namespaced_job_status("flow-run", NS).status
    assert (status.active, status.ready, status.start_time is not None, status.conditions) == (1, 1, True, None)
    fakeapi.log(NS, run["metadata"]["name"], "Flow run started")
    assert client.CoreV1Api(api_client).read_namespaced_pod_log(run["metadata"]["name"], NS) == "Flow run started\n"


def test_a_succeeded_job_has_the_conditions_of_a_real_one(fakeapi, dyn, api_client, namespace):
    apply(dyn, job())
    fakeapi.job_running(NS, "flow-run")
    fakeapi.job_succeeded(NS, "flow-run")
    status = client.BatchV1Api(api_client).read_namespaced_job_status("flow-run", NS).status
    # Real (1.31+): SuccessCriteriaMet, then Complete, both CompletionsReached.
    assert [(c.type, c.status, c.reason, c.message) for c in status.conditions] == [
        ("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")]
    assert (status.succeeded, status.active, status.completion_time is not None) == (1, None, True)
    (run,) = fakeapi.objects("Pod", NS)
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_a_failed_job_has_the_conditions_of_a_real_one(fakeapi, dyn, api_client, namespace):
    apply(dyn, job())
    fakeapi.job_failed(NS, "flow-run")
    status = client.BatchV1Api(api_client).read_namespaced_job_status("flow-run", NS).status
    # Real (1.31+): FailureTarget, then Failed; with restartPolicy Never, one failed pod per attempt.
    assert [(c.type, c.reason, c.message) for c in status.conditions] == [
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert status.failed == 7 and status.completion_time is None
    assert {p["status"]["phase"] for p in fakeapi.objects("Pod", NS)} == {"Failed"}
    fakeapi.job_failed(NS, "flow-run", reason="DeadlineExceeded")
    assert fakeapi.get("Job", NS, "flow-run")["status"]["conditions"][1]["message"] == (
        "Job was active longer than specified deadline")


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_deleting_a_workload_deletes_the_pods_it_owns(fakeapi, dyn, namespace, propagation):
    apply(dyn, deployment())
    apply(dyn, statefulset(claims=False, spec=pod_spec([{"name": "server", "image": "s:1"}])))
    apply(dyn, job())
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    fakeapi.job_running(NS, "flow-run")
    assert len(fakeapi.objects("Pod", NS)) == 3
    for kind, api_version, name in (("Deployment", "apps/v1", "prefect-worker-prod-main"),
                                    ("StatefulSet", "apps/v1", "prefect-server"), ("Job", "batch/v1", "flow-run")):
        answered = dyn.delete(resource(dyn, kind, api_version), name, NS, propagation_policy=propagation)
        if propagation == "Foreground":
            # Real: the answer is the owner marked for deletion, held by the foregroundDeletion finalizer.
            assert "foregroundDeletion" in answered.metadata.finalizers
    assert fakeapi.objects("Pod", NS) == []
    assert fakeapi.objects("Deployment", NS) == fakeapi.objects("Job", NS) == []


def test_orphaned_pods_stay_and_lose_their_owner(fakeapi, dyn, namespace):
    apply(dyn, statefulset())
    apply(dyn, deployment())
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    dyn.delete(resource(dyn, "StatefulSet", "apps/v1"), "prefect-server", NS, propagation_policy="Orphan")
    dyn.delete(resource(dyn, "Deployment", "apps/v1"), "prefect-worker-prod-main", NS, propagation_policy="Orphan")
    server = fakeapi.get("Pod", NS, "prefect-server-0")
    assert "ownerReferences" not in server["metadata"]  # the garbage collector removed the reference
    worker = next(p for p in fakeapi.objects("Pod", NS) if p["metadata"]["name"].startswith("prefect-worker"))
    assert worker["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"  # its ReplicaSet was orphaned instead
    assert fakeapi.get("PersistentVolumeClaim", NS, "data-prefect-server-0")  # claims never go with the set


def test_a_claim_in_use_stays_terminating_until_its_pod_is_gone(fakeapi, dyn, api_client, namespace):
    apply(dyn, statefulset())
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    claims = resource(dyn, "PersistentVolumeClaim")
    marked = dyn.delete(claims, "data-prefect-server-0", NS)
    # Real: 200 with the claim, marked for deletion and held by the kubernetes.io/pvc-protection finalizer.
    assert marked.metadata.deletionTimestamp and marked.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    again = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "data-prefect-server-0", "namespace": NS}, "spec": claim()["spec"]}
    with pytest.raises(errors.ConflictError) as raised:
        dyn.create(claims, body=again, namespace=NS)
    # Real: the name is still taken by the terminating claim; an apply updates that claim, which stays terminating.
    assert status_of(raised.value)["message"] == 'persistentvolumeclaims "data-prefect-server-0" already exists'
    reapplied = apply(dyn, {**again, "metadata": {**again["metadata"], "labels": {"kept": "yes"}}})
    assert reapplied.metadata.deletionTimestamp == marked.metadata.deletionTimestamp
    dyn.delete(resource(dyn, "StatefulSet", "apps/v1"), "prefect-server", NS)
    assert fakeapi.get("PersistentVolumeClaim", NS, "data-prefect-server-0") is None


def test_a_finalizer_holds_an_object_until_it_is_removed(fakeapi, dyn, namespace):
    held = secret()
    held["metadata"]["finalizers"] = ["example.com/keep"]
    apply(dyn, held)
    dyn.delete(resource(dyn, "Secret"), "prefect-config", NS)
    assert fakeapi.get("Secret", NS, "prefect-config")["metadata"]["deletionTimestamp"]
    dyn.patch(resource(dyn, "Secret"), name="prefect-config", namespace=NS,
              body={"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
    assert fakeapi.get("Secret", NS, "prefect-config") is None


def test_deleting_a_namespace_removes_its_contents(fakeapi, dyn, namespace):
    apply(dyn, secret())
    dyn.delete(resource(dyn, "Namespace"), name=NS, propagation_policy="Foreground")
    assert fakeapi.objects("Secret") == [] and fakeapi.objects("Namespace") == []
