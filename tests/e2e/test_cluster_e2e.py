"""The whole cluster workflow against a real API server (kind, minikube, or any test cluster).

Opt-in: KIT_E2E_KUBECONFIG=path/to/kubeconfig .venv/bin/python -m pytest -m e2e tests/e2e
Optional: KIT_E2E_CONTEXT (default: the kubeconfig's current context) and KIT_E2E_KIT_IMAGE, the kit's own image
(`inv build push` to a registry the cluster pulls from, tag included): it carries flows/, so the flow-run tests run
too; without it the pods run the official Prefect image with prefect-kubernetes, and those tests are skipped.
Everything happens in a fresh namespace that is deleted at the end; its public host has no DNS record, so the kit
reaches Prefect through a port-forward. The tests run in order and share that one deployment.
"""

import base64
import json
import os
import time
import uuid

import pytest

from kit import access, cluster, destroy, doctor, flows, logs, pool_config, pools, prefect_api, rollout, status
from kit.errors import UserError
from kit.settings import WORKER_PREFIX
from tests.rendering import make_settings

KUBECONFIG = os.environ.get("KIT_E2E_KUBECONFIG", "")
KIT_IMAGE = os.environ.get("KIT_E2E_KIT_IMAGE", "")
IMAGE = KIT_IMAGE or "docker.io/prefecthq/prefect:3.9.1-python3.12-kubernetes"
# A first start pulls the image and migrates a fresh database.
READY_TIMEOUT = 600
RUN_TIMEOUT = 300
# The shipped kubernetes pool, and a process pool beside it.
POOLS = pool_config.load() + pool_config.parse("pools:\n  - {name: scripts, type: process, queues: [{name: scripts}]}\n")
WORKERS = tuple(WORKER_PREFIX + queue.name for pool in POOLS for queue in pool.queues)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="needs a test cluster: set KIT_E2E_KUBECONFIG (tests/README.md: End-to-end)"),
]
needs_flows = pytest.mark.skipif(not KIT_IMAGE, reason="needs the kit's own image with flows/: set KIT_E2E_KIT_IMAGE")


def image_settings(**overrides):
    repository, tag = IMAGE.rsplit(":", 1)
    registry, _, name = repository.rpartition("/")
    return make_settings(REGISTRY=registry, IMAGE_NAME=name, **overrides), tag


@pytest.fixture(scope="module")
def target():
    """Settings for a fresh namespace, the image tag, and the cluster handle; the namespace goes at the end."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", KUBECONFIG)
        namespace = f"prefect-kit-e2e-{uuid.uuid4().hex[:6]}"
        settings, tag = image_settings(NAMESPACE=namespace, KUBE_CONTEXT=os.environ.get("KIT_E2E_CONTEXT", ""),
                                       PUBLIC_HOST=f"{namespace}.e2e.invalid")
        k = cluster.connect(settings)
        yield settings, tag, k
        with k:
            k.delete("v1", "Namespace", namespace)


def run(settings, **options):
    lines = []
    rollout.rollout(settings, timeout=READY_TIMEOUT, pools=options.pop("pools", POOLS), out=lines.append, **options)
    return lines


def prefect_client(settings, k):
    """A Prefect client through the kit's own way in (here: a port-forward), for the test's checks."""
    from contextlib import ExitStack

    stack = ExitStack()
    url = stack.enter_context(access.prefect_url(settings, None, k, out=lambda line: None))
    return stack, stack.enter_context(prefect_api.connect(settings, url))


def wait_for_run(client, run_id, timeout=RUN_TIMEOUT, until=lambda state: state.is_final()):
    deadline = time.monotonic() + timeout
    while not until(state := client.read_flow_run(run_id).state):
        assert time.monotonic() < deadline, f"flow run {run_id} still {state} after {timeout} s"
        time.sleep(2)
    return state


def run_in_process(client, **parameters):
    """A flow run of flows/hello.py on the process pool `scripts`, from the image's copy of flows/."""
    flow_id = client.create_flow_from_name("hello")
    deployment = client.create_deployment(
        flow_id, "hello-in-process", work_pool_name="scripts", work_queue_name="scripts",
        entrypoint="hello.py:hello", pull_steps=[{"prefect.deployments.steps.set_working_directory": {
            "directory": flows.IMAGE_FLOWS_DIR}}])
    return client.create_flow_run_from_deployment(deployment, parameters=parameters or None)


def generations(k):
    with k:
        return {name: k.get("apps/v1", "Deployment", name)["metadata"]["generation"] for name in WORKERS} | {
            "prefect-server": k.get("apps/v1", "StatefulSet", "prefect-server")["metadata"]["generation"]}


def doctor_findings(settings, k):
    """inv doctor's findings for these settings, with the route the test cluster really has: its first
    IngressClass, or no route when it has none (the tests reach Prefect through a port-forward anyway)."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    with k:
        classes = [item["metadata"]["name"] for item in k.objects("networking.k8s.io/v1", "IngressClass",
                                                                   label_selector=None)[0]]
    fitted = dataclasses.replace(settings, ingress_class=classes[0]) if classes else \
        dataclasses.replace(settings, route="none")
    groups = (doctor.check_cluster, doctor.check_registry, doctor.check_public_host, doctor.check_prefect)
    with ThreadPoolExecutor(len(groups)) as pool:
        return {f.subject: f for group in pool.map(lambda check: check(fitted), groups) for f in group}


def test_doctor_before_the_first_rollout_finds_nothing_to_fix(target):
    settings, _, k = target
    findings = doctor_findings(settings, k)
    assert not [f.line() for f in findings.values() if f.mark == doctor.FAIL]
    assert findings["cluster"].mark == findings["rights"].mark == doctor.OK
    assert findings["namespace"].mark == findings["Prefect API"].mark == doctor.LATER


def test_first_rollout_creates_everything_and_waits_until_ready(target):
    settings, tag, k = target
    lines = run(settings, tag=tag)
    assert f"namespace/{settings.namespace} created" in lines
    assert "statefulset/prefect-server created" in lines
    assert all(f'deployment "{name}" successfully rolled out' in lines for name in WORKERS)
    assert any(line.startswith("prefect: through a port-forward to pod/prefect-server-0 ") for line in lines)


def test_every_worker_is_online_when_the_rollout_returns(target):
    settings, _, k = target
    with k:
        pods = {pod["metadata"]["name"] for pod in k.objects("v1", "Pod", status.WORKER_PODS)[0]
                if not pod["metadata"].get("deletionTimestamp")}
        stack, client = prefect_client(settings, k)
        with stack:
            online = {worker.name for pool in POOLS for worker in client.read_workers_for_work_pool(pool.name)
                      if worker.status.value == "ONLINE"}
    assert len(pods) == len(WORKERS) and pods <= online


def test_doctor_after_the_rollout_ticks_the_cluster_the_namespace_and_prefect(target):
    settings, _, k = target
    findings = doctor_findings(settings, k)
    assert not [f.line() for f in findings.values() if f.mark == doctor.FAIL]
    for subject in ("cluster", "rights", "namespace", "storage", "Prefect API"):
        assert findings[subject].mark == doctor.OK, findings[subject].line()
    assert findings["namespace"].text.endswith("enforces the restricted Pod Security Standard")


def test_inv_ui_prints_a_url_that_answers(target):
    import re
    import threading
    import urllib.error
    import urllib.request

    from kit import ui

    settings, _, _ = target
    printed = []
    opened = threading.Event()
    # It serves until the pod goes: here, until the module deletes the namespace.
    threading.Thread(target=lambda: ui.serve(settings, out=lambda line: (printed.append(line), opened.set())),
                     daemon=True).start()
    assert opened.wait(60), "inv ui printed nothing"
    url = re.match(r"UI: (http://127\.0\.0\.1:\d+/) ", printed[0])[1]
    assert settings.login_password not in printed[0]
    with pytest.raises(urllib.error.HTTPError) as asked:
        urllib.request.urlopen(url, timeout=30)
    assert asked.value.code == 401
    with urllib.request.urlopen(f"{url}api/health", timeout=30) as answer:
        assert answer.status == 200


def test_status_shows_the_running_pods(target):
    settings, _, k = target
    with k:
        lines = status.cluster_lines(k, cluster.now())
    server = next(line for line in lines if line.startswith("prefect-server-0 "))
    assert server.split()[1:3] == ["2/2", "Running"], "Prefect and its login proxy"
    assert len([line for line in lines if line.startswith("prefect-worker-prod-") and "Running" in line]) == 2


def through_the_service(k, settings, path, *, method="GET", credentials=None, body=None):
    """One HTTP request through a port-forward to the pod and port the Service prefect-server sends traffic to,
    as `kubectl port-forward svc/prefect-server` (and the route in front) reach it: (status, headers, body)."""
    import http.client

    from kubernetes import client
    from kubernetes.stream import portforward

    with k:
        service = k.get("v1", "Service", "prefect-server")
        selector = ",".join(f"{key}={value}" for key, value in sorted(service["spec"]["selector"].items()))
        (pod,) = k.objects("v1", "Pod", label_selector=selector)[0]
    (target_port,) = [port["targetPort"] for port in service["spec"]["ports"]]
    number = next(port["containerPort"] for c in pod["spec"]["containers"] for port in c.get("ports", [])
                  if port["name"] == target_port)
    forward = portforward(client.CoreV1Api(k.api_client).connect_get_namespaced_pod_portforward,
                          pod["metadata"]["name"], settings.namespace, ports=str(number))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", number, timeout=60)
        connection.sock = forward.socket(number)
        headers = {"Host": settings.public_host, "Connection": "close"}
        if credentials:
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        forward.close()


def test_through_the_service_the_ui_asks_for_the_login_and_the_api_answers_the_auth_string(target):
    settings, _, k = target
    status, headers, _ = through_the_service(k, settings, "/")
    assert (status, headers["WWW-Authenticate"]) == (401, 'Basic realm="Prefect"')
    assert through_the_service(k, settings, "/", credentials=settings.auth_string)[0] == 200
    assert through_the_service(k, settings, "/api/flows/filter", method="POST", body={})[0] == 401
    assert through_the_service(k, settings, "/api/flows/filter", method="POST", body={},
                               credentials=settings.auth_string)[0] == 200


def test_through_the_service_the_uis_own_api_calls_succeed(target):
    """What the UI does after the browser's prompt: read its settings, then call the API they name, with the same
    Authorization header the browser keeps sending."""
    settings, _, k = target
    status, _, body = through_the_service(k, settings, "/ui-settings", credentials=settings.auth_string)
    api_url = json.loads(body)["api_url"]
    assert (status, api_url) == (200, "/api")
    for method, path in (("GET", "/admin/version"), ("POST", "/flow_runs/count"), ("POST", "/work_pools/filter")):
        status, _, _ = through_the_service(k, settings, f"{api_url}{path}", method=method,
                                           body={} if method == "POST" else None, credentials=settings.auth_string)
        assert status == 200, path


def test_the_same_rollout_again_changes_nothing(target):
    settings, tag, k = target
    before = generations(k)
    lines = run(settings, tag=tag)
    assert [line for line in lines if line.endswith((" created", " configured"))] == []
    assert generations(k) == before


def test_worker_logs_can_be_read(target):
    settings, _, _ = target
    deadline = time.monotonic() + 60
    while True:  # a worker that just started may not have written its first line yet
        lines = []
        logs.show(settings, worker="prod-main", tail=50, out=lines.append)
        if any("worker" in line.lower() for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert any("worker" in line.lower() for line in lines), lines


def test_inv_pools_finds_prefect_without_api_url_or_dns(target):
    settings, _, _ = target
    lines = []
    pools.sync(settings, out=lines.append)
    assert lines[0].startswith(f"prefect: through a port-forward to pod/prefect-server-0 (http://{settings.public_host}"
                               "/api does not answer: ")
    assert "unchanged pool production" in lines


@needs_flows
def test_a_kubernetes_pool_flow_run_is_a_job_that_completes(target):
    settings, _, k = target
    flows.deploy(settings, out=lambda line: None)
    with k:
        stack, client = prefect_client(settings, k)
        with stack:
            deployment = client.read_deployment_by_name("hello/hello")
            run = client.create_flow_run_from_deployment(deployment.id)
            assert wait_for_run(client, run.id).type.value == "COMPLETED"
        (job,) = k.objects("batch/v1", "Job", label_selector=f"prefect.io/flow-run-id={run.id}")[0]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "prefect-flow-run" and pod["automountServiceAccountToken"] is False


@needs_flows
def test_a_process_pool_flow_run_completes(target):
    settings, _, k = target
    with k:
        stack, client = prefect_client(settings, k)
        with stack:
            run = run_in_process(client)
            assert wait_for_run(client, run.id).type.value == "COMPLETED"


@needs_flows
def test_a_worker_restart_leaves_a_running_job_to_complete(target):
    settings, tag, k = target
    with k:
        stack, client = prefect_client(settings, k)
        with stack:
            deployment = client.read_deployment_by_name("hello/hello")
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"seconds": 60})
            wait_for_run(client, run.id, until=lambda state: state.is_running() or state.is_final())
            lines = run(settings, tag=tag, restart=True)
            assert f"deployment/{WORKERS[0]} restarted" in lines
            assert wait_for_run(client, run.id).type.value == "COMPLETED"


def test_a_job_template_the_restricted_profile_refuses_is_one_line_before_any_flow_run(target):
    settings, tag, k = target
    with k:  # the kit's namespace enforces the restricted profile
        labels = k.get("v1", "Namespace", settings.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    (production, scripts) = POOLS
    weak = pool_config.Pool(production.name, production.type, queues=production.queues,
                            job=pool_config.JobSettings(manifest={"spec": {"template": {"spec": {
                                "securityContext": {"runAsNonRoot": False}}}}}))
    with pytest.raises(UserError) as raised:
        run(settings, tag=tag, pools=(weak, scripts))
    (problem,) = raised.value.problems
    assert problem.startswith("pool production: the cluster would refuse every flow run's pod: ")
    assert 'violates PodSecurity "restricted:latest": runAsNonRoot != true' in problem
    # Every pod the kit itself runs passes the same profile: the next rollout still changes nothing.
    assert [line for line in run(settings, tag=tag) if line.endswith((" created", " configured"))] == []


def test_a_backup_restored_brings_back_what_it_held(target, tmp_path):
    from kit import backup

    settings, _, k = target

    def run_names():
        with k:
            stack, client = prefect_client(settings, k)
            with stack:
                return {run.name for run in client.read_flow_runs(limit=200)}

    def create_run(name):
        from prefect import flow

        @flow(name="e2e-backup")
        def marker():
            pass

        with k:
            stack, client = prefect_client(settings, k)
            with stack:
                client.create_flow_run(marker, name=name)

    create_run("before-the-backup")
    saved = backup.backup(settings, tmp_path / "saved.db", out=lambda line: None)
    create_run("after-the-backup")
    backup.restore(settings, saved, timeout=READY_TIMEOUT, out=lambda line: None)
    names = run_names()
    assert "before-the-backup" in names and "after-the-backup" not in names


def test_a_changed_secret_rolls_its_consumers(target):
    settings, tag, k = target
    before = generations(k)
    changed, _ = image_settings(NAMESPACE=settings.namespace, KUBE_CONTEXT=settings.kube_context,
                                PUBLIC_HOST=settings.public_host, LOGIN_PASSWORD="another-long-password-for-e2e")
    lines = run(changed, tag=tag)
    assert "secret/prefect-config configured" in lines
    after = generations(k)
    # Server and workers all read the auth string, so every one of them rolls.
    assert all(after[name] == before[name] + 1 for name in before)
    with k:
        stored = k.get("v1", "Secret", "prefect-config")["data"]["auth-string"]
    assert base64.b64decode(stored).decode().endswith(":another-long-password-for-e2e")


def test_prune_deletes_only_what_the_kit_labelled(target):
    settings, tag, k = target
    stray = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "prefect-from-an-older-render", "namespace": settings.namespace,
        "labels": {"app.kubernetes.io/managed-by": "prefect-kit"}}, "data": {"x": "eA=="}}
    foreign = {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "not-the-kits", "namespace": settings.namespace}, "data": {"x": "eA=="}}
    with k:
        for obj in (stray, foreign):
            k.dynamic.create(k.resource("v1", "Secret"), body=obj, namespace=settings.namespace)
    changed, _ = image_settings(NAMESPACE=settings.namespace, KUBE_CONTEXT=settings.kube_context,
                                PUBLIC_HOST=settings.public_host, LOGIN_PASSWORD="another-long-password-for-e2e")
    lines = run(changed, tag=tag, prune=True)
    assert "secret/prefect-from-an-older-render pruned" in lines
    with k:
        assert k.get("v1", "Secret", "prefect-from-an-older-render") is None
        assert k.get("v1", "Secret", "not-the-kits") is not None


def test_destroy_keeps_the_data_until_asked(target):
    settings, _, k = target
    destroy.run(settings, out=lambda line: None)
    with k:
        assert k.get("apps/v1", "StatefulSet", "prefect-server") is None
        assert [d["metadata"]["name"] for d in k.objects("apps/v1", "Deployment")[0]] == []
        claims = k.objects("v1", "PersistentVolumeClaim")[0]
    assert [c["metadata"]["name"] for c in claims] == ["data-prefect-server-0"]

    # It returns only once the claim is really gone (a real claim lingers until its pod has stopped).
    destroy.run(settings, delete_data=True, timeout=READY_TIMEOUT, out=lambda line: None)
    with k:
        assert k.objects("v1", "PersistentVolumeClaim")[0] == []
