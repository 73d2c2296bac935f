"""Connection errors, `inv status`, `inv logs` and `inv destroy` through the real client against the stand-in."""

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kit import ROOT, cluster, destroy, logs, manifests, rollout, status
from kit.errors import UserError
from tests.contract.clusterkit import NS, WORKERS, Lines, deployed, digest_of, discovery_cache, settings  # noqa: F401
from tests.rendering import env_text, make_settings


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- connection


def test_unreachable_api_server_is_one_line_naming_context_and_server(fakeapi, settings, tmp_path, monkeypatch):
    port = closed_port()
    fakeapi.url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("KUBECONFIG", fakeapi.write_kubeconfig(str(tmp_path / "dead")))
    with pytest.raises(UserError) as raised:
        rollout.secrets(settings, out=Lines())
    assert raised.value.problems == (
        f"KUBE_CONTEXT: cannot reach the API server of context 'fakeapi' (http://127.0.0.1:{port}): "
        "Connection refused; check that the cluster is running and that this is the right context",)


def test_rejected_credentials_are_one_line(fakeapi, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", fakeapi.write_kubeconfig(str(tmp_path / "stale"), token="expired"))
    with pytest.raises(UserError, match=rf"^KUBE_CONTEXT: the API server of context 'fakeapi' \({fakeapi.url}\) "
                                        r"rejected the credentials \(401 Unauthorized\)"):
        rollout.secrets(settings, out=Lines())


def test_forbidden_names_what_was_refused(fakeapi, settings):
    fakeapi.deny(403, f"/api/v1/namespaces/{NS}/secrets")
    with pytest.raises(UserError) as raised:
        rollout.secrets(settings, out=Lines())
    (problem,) = raised.value.problems
    assert problem.startswith(f"KUBE_CONTEXT: context 'fakeapi' ({fakeapi.url}) is not allowed to do this: ")
    assert 'cannot patch resource "secrets"' in problem
    assert f"ask a cluster admin for a Role allowing it in namespace {NS}" in problem


def test_a_namespace_still_being_deleted_says_to_wait(fakeapi, settings):
    fakeapi.put({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NS, "deletionTimestamp": "2026-11-26T06:00:00Z"}})
    with pytest.raises(UserError) as raised:
        rollout.secrets(settings, out=Lines())
    assert raised.value.problems == (f"NAMESPACE: {NS} is still being deleted; wait until `kubectl get namespace "
                                     f"{NS}` no longer finds it, then run this again",)


def test_unknown_context_lists_the_known_ones(fakeapi):
    with pytest.raises(UserError, match=r"KUBE_CONTEXT: context 'production' is not in .*; choose one of: fakeapi$"):
        cluster.connect(make_settings(KUBE_CONTEXT="production"))


def test_no_kubeconfig_outside_a_pod(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UserError, match=r"KUBE_CONTEXT: no kubeconfig at .*missing and not running in a pod"):
        cluster.connect(make_settings())


# ---- status


def test_status_shows_pods_and_workloads_like_kubectl(deployed, settings):
    with cluster.connect(settings) as k:
        lines = status.cluster_lines(k, cluster.now())
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    server = next(line for line in lines if line.startswith("prefect-server-0 "))
    assert server.split()[1:4] == ["2/2", "Running", "0"], "Prefect and its login proxy"
    assert len([line for line in lines if line.startswith("prefect-worker-")]) == 2
    workloads = lines[lines.index("") + 1:]
    assert workloads[0].split() == ["WORKLOAD", "DESIRED", "READY", "UPDATED", "IMAGE"]
    # The tag, and the start of the digest it was pinned to.
    assert workloads[1].split() == ["statefulset/prefect-server", "1", "1", "1", f"v1@{digest_of('v1')[:19]}"]


def test_status_shows_a_crash_loop(deployed, settings):
    deployed.make_unready("Deployment", NS, WORKERS[0], "CrashLoopBackOff", "back-off", restarts=5)
    with cluster.connect(settings) as k:
        lines = status.cluster_lines(k, cluster.now())
    crashing = next(line for line in lines if line.startswith(WORKERS[0] + "-"))
    assert crashing.split()[1:4] == ["0/1", "CrashLoopBackOff", "5"]


def test_status_prints_the_url_and_the_prefect_half_when_the_cluster_is_down(fakeapi, tmp_path, monkeypatch):
    fakeapi.url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("KUBECONFIG", fakeapi.write_kubeconfig(str(tmp_path / "dead")))
    monkeypatch.setattr("kit.pools.status", lambda settings, api_url, *cluster: [f"pool production: ready (via {api_url})"])
    lines = Lines()
    with pytest.raises(UserError, match="cannot reach the API server"):
        status.show(make_settings(), "http://127.0.0.1:4200/api", out=lines)
    assert lines == ["url: http://prefect.company.local/", "pool production: ready (via http://127.0.0.1:4200/api)"]


# ---- logs


def test_logs_of_the_server_and_of_one_worker(deployed, settings):
    deployed.log(NS, "prefect-server-0", "one\ntwo\nthree")
    worker = next(p for p in deployed.objects("Pod", NS) if p["metadata"]["name"].startswith(WORKERS[1]))
    deployed.log(NS, worker["metadata"]["name"], "polling prod-secondary")

    server = Lines()
    logs.show(settings, tail=2, out=server)
    assert server == ["two", "three"]
    worker_lines = Lines()
    logs.show(settings, worker="prod-secondary", out=worker_lines)
    assert worker_lines == ["polling prod-secondary"]


def test_logs_of_a_crash_looping_server_read_its_previous_run(deployed, settings):
    deployed.make_unready("StatefulSet", NS, "prefect-server", "CrashLoopBackOff", "back-off", restarts=2)
    deployed.log(NS, "prefect-server-0", "unable to open database file")
    lines = Lines()
    logs.show(settings, out=lines)
    assert lines == ["unable to open database file"]
    (request,) = [r for r in deployed.requests if r.path.endswith("/log")]
    assert request.query["previous"] == "true"


def test_logs_of_a_container_that_never_started_is_one_line(deployed, settings):
    deployed.make_unready("Deployment", NS, WORKERS[0], "ImagePullBackOff", "Back-off pulling image")
    with pytest.raises(UserError, match=rf"^pod/{WORKERS[0]}-\S+: container \"worker\" in pod .* is waiting to start"):
        logs.show(settings, worker="prod-main", out=Lines())


def test_logs_follow_streams_until_the_pod_goes(deployed, settings):
    deployed.log(NS, "prefect-server-0", "started")
    lines = Lines()
    lines.on("started", lambda: deployed.log(NS, "prefect-server-0", "serving"))
    lines.on("serving", lambda: threading.Thread(target=deployed.delete, args=("Pod", NS, "prefect-server-0")).start())
    logs.show(settings, follow=True, out=lines)
    assert lines == ["started", "serving"]


def test_logs_of_an_unknown_queue_names_the_ones_with_workers(deployed, settings):
    with pytest.raises(UserError, match="--worker nightly: no worker for that queue in namespace prefect; "
                                        "workers run for: prod-main, prod-secondary"):
        logs.show(settings, worker="nightly", out=Lines())


# ---- destroy


def claim(api):
    return api.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
        "name": "data-prefect-server-0", "namespace": NS,
        "labels": {"app.kubernetes.io/managed-by": "prefect-kit", "app.kubernetes.io/component": "server"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})


def test_destroy_asks_first_and_a_no_deletes_nothing(deployed, settings):
    before = {kind: deployed.objects(kind, NS) for kind in ("Secret", "Deployment", "Ingress")}
    lines = Lines()
    destroy.run(settings, confirm=lambda question: False, out=lines)
    assert lines[-1] == "nothing deleted"
    assert {kind: deployed.objects(kind, NS) for kind in before} == before


def test_destroy_removes_the_kits_objects_and_keeps_the_data_and_the_namespace(deployed, settings):
    claim(deployed)
    foreign = deployed.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team", "namespace": NS}})
    questions = []
    destroy.run(settings, confirm=lambda question: questions.append(question) or True, out=Lines())

    # Everything rendered but the namespace; the claim only with --delete-data.
    objects = manifests.render(settings, "internal-cr:9999/prefect-core:v1")
    assert questions == [f"delete these {len(objects) - 1} objects?"]
    for kind in ("Deployment", "StatefulSet", "Service", "Ingress", "NetworkPolicy"):
        assert deployed.objects(kind, NS) == []
    assert deployed.objects("Secret", NS) == [foreign]
    assert deployed.get("PersistentVolumeClaim", NS, "data-prefect-server-0")
    assert deployed.get("Namespace", None, NS)


def debug_pod_on_the_claim(api):
    """Someone's pod that still mounts the data claim: the claim's protection keeps it while the pod runs."""
    return api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": NS}, "spec": {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "shell", "image": "busybox:1.37", "volumeMounts": [{"name": "data", "mountPath": "/d"}],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-prefect-server-0"}}]}})


def test_destroy_waits_until_the_claim_is_really_gone(deployed, settings):
    # The claim the StatefulSet controller made carries the protection finalizer its admission adds.
    debug_pod_on_the_claim(deployed)
    lines = Lines()
    lines.on("persistentvolumeclaim/data-prefect-server-0 deleted",
             lambda: threading.Timer(0.5, deployed.delete, ("Pod", NS, "debug")).start())
    destroy.run(settings, delete_data=True, timeout=20, out=lines)
    assert deployed.get("PersistentVolumeClaim", NS, "data-prefect-server-0") is None
    assert lines.index("persistentvolumeclaim/data-prefect-server-0 deleted") < lines.index(
        f"all {len([line for line in lines if line.endswith(' deleted')])} gone")


def test_destroy_names_what_is_still_there_after_its_timeout(deployed, settings):
    debug_pod_on_the_claim(deployed)
    with pytest.raises(UserError) as raised:
        destroy.run(settings, delete_data=True, timeout=1, out=Lines())
    assert raised.value.problems == ("destroy: still there after 1s: persistentvolumeclaim/data-prefect-server-0; "
                                     "its finalizers or pods hold it (`kubectl describe` it), then run `inv destroy` "
                                     "again",)
    assert deployed.get("PersistentVolumeClaim", NS, "data-prefect-server-0")["metadata"]["deletionTimestamp"]


def test_destroy_skips_a_kind_the_cluster_does_not_serve_with_one_line(deployed, settings):
    lines = Lines()
    destroy.run(settings, out=lines)
    # The stand-in, like a cluster without Gateway API, has no gateway.networking.k8s.io group (404 on its path).
    assert lines[0] == "httproute: skipped, this cluster does not serve gateway.networking.k8s.io/v1 " \
                       "(nothing of it to delete)"
    assert "deployment/prefect-worker-prod-main deleted" in lines


def test_prune_skips_a_kind_the_cluster_does_not_serve_with_one_line(deployed, settings):
    lines = Lines()
    rollout.rollout(settings, tag="v1", prune=True, timeout=10, out=lines)
    assert lines.count("httproute: skipped, this cluster does not serve gateway.networking.k8s.io/v1 "
                       "(nothing of it to delete)") == 1
    assert lines[-1] == "ready: http://prefect.company.local/"


def test_destroy_with_delete_data_removes_the_volume_claims(deployed, settings):
    claim(deployed)
    lines = Lines()
    destroy.run(settings, delete_data=True, out=lines)
    assert "persistentvolumeclaim/data-prefect-server-0 deleted" in lines
    assert deployed.get("PersistentVolumeClaim", NS, "data-prefect-server-0") is None


# ---- through the real `inv`


def inv(*args, stdin=None):
    command = [str(Path(sys.executable).parent / "inv"), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, stdin=stdin, timeout=60)


def test_inv_rollout_without_a_way_to_prefect_stops_before_the_workers_and_destroy_asks(fakeapi, env_file):
    """Through the real `inv`: the public host has no DNS record and the user may not port-forward, so the
    rollout stops, in one line, after the server and before any worker; `inv destroy` then asks."""
    env_file(env_text())
    fakeapi.controller(True)
    fakeapi.forbid("create", "pods", subresource="portforward")
    done = inv("rollout", "--tag", "v1", "--timeout", "10")
    assert done.returncode == 1
    assert "statefulset/prefect-server created" in done.stdout
    assert 'statefulset "prefect-server": partitioned roll out complete: 1 new pods have been updated' in done.stdout
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: Prefect API: the public URL does not answer: ConnectError: ")
    assert "and there is no port-forward to the server instead: the port-forward to pod/prefect-server-0 failed: " \
        in line
    assert line.endswith("; ask for `create` on pods/portforward in namespace prefect; or pass --api-url")
    assert fakeapi.objects("Deployment", NS) == []

    declined = inv("destroy", stdin=subprocess.DEVNULL)
    assert declined.returncode == 0 and declined.stdout.rstrip().endswith("nothing deleted")
    assert fakeapi.objects("StatefulSet", NS)


def test_inv_reports_an_unreachable_cluster_as_one_error_line(fakeapi, env_file, tmp_path, monkeypatch):
    env_file(env_text())
    port = closed_port()
    fakeapi.url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("KUBECONFIG", fakeapi.write_kubeconfig(str(tmp_path / "dead")))
    failed = inv("secrets")
    assert failed.returncode == 1
    assert failed.stderr == (f"error: KUBE_CONTEXT: cannot reach the API server of context 'fakeapi' "
                             f"(http://127.0.0.1:{port}): Connection refused; check that the cluster is running "
                             "and that this is the right context\n")


def test_an_object_the_schema_does_not_know_is_one_line_not_a_retry_hint(fakeapi, settings):
    from kit import manifests
    from tests.rendering import IMAGE

    worker = next(obj for obj in manifests.render(settings, IMAGE) if obj["kind"] == "Deployment")
    worker["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    rollout.secrets(settings, out=Lines())
    with pytest.raises(UserError) as raised, cluster.connect(settings) as k:
        k.apply(worker)
    (problem,) = raised.value.problems
    # The real server: 500 `failed to create typed patch object (...): ...imagePulPolicy: field not declared in schema`
    assert problem.startswith(f"deployment/{worker['metadata']['name']}: the API server rejected it: failed to "
                              "create typed patch object")
    assert "imagePulPolicy: field not declared in schema" in problem and "try again" not in problem
