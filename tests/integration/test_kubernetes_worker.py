"""The kubernetes pool against a real Prefect server and the stand-in API server: `inv pools` with the image its
workers run and the template admitted first; the Job prefect-kubernetes builds for a real flow run, and the
body its worker sends to the API server; and the rollout's last wait, for workers really connecting.

Each test uses pools and queues of its own, as the Prefect server is shared by the module.
"""

import asyncio
import dataclasses
import json
import subprocess
import time

import kubernetes_validate
import pytest
from prefect.exceptions import ObjectNotFound

from kit import manifests, pool_config, pools, prefect_api, rollout
from kit.errors import UserError
from kit.settings import WORKER_PREFIX
from tests.contract.clusterkit import NS, Lines, discovery_cache  # noqa: F401
from tests.standin.fixtures import fakeapi  # noqa: F401
from tests.integration.conftest import secret_value
from tests.integration.prefect_server import PREFECT, clean_environment, stop
from tests.rendering import container_args, container_env
from tests.pod_security import violations
from tests.services import free_port
from tests.unit.test_schemas import VERSIONS

IMAGE = "internal-cr:9999/prefect-core:v7@sha256:" + "7" * 64
PROXY_PASSWORD = "proxy-pw-in-the-integration-test"


def pools_file(tmp_path, text):
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    return path


def with_workers_running(api, settings, declared, image=IMAGE):
    """The namespace, the accounts and the worker Deployments of `declared` in the stand-in, as a rollout left them."""
    for obj in manifests.render(settings, image, declared):
        if obj["kind"] in ("Namespace", "ServiceAccount", "Deployment"):
            api.put(obj)


def test_inv_pools_writes_the_template_with_the_image_its_workers_run_after_the_cluster_admitted_it(
        fakeapi, kit_settings, kit_server, tmp_path):
    path = pools_file(tmp_path, "pools:\n  - {name: batch, type: kubernetes, queues: [{name: batch-etl}]}\n")
    with_workers_running(fakeapi, kit_settings, pool_config.load(path))
    lines = Lines()
    pools.sync(kit_settings, kit_server.api_url, path=path, out=lines)
    assert lines == [f"prefect: {kit_server.api_url} (--api-url)", "created pool batch", "created queue batch/batch-etl"]
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        template = client.read_work_pool("batch").base_job_template
    (container,) = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    checks = [(r.path, r.query.get("dryRun")) for r in fakeapi.requests if r.method == "POST"]
    assert checks == [(f"/apis/batch/v1/namespaces/{NS}/jobs", "All"), (f"/api/v1/namespaces/{NS}/pods", "All")]

    again = Lines()
    pools.sync(kit_settings, kit_server.api_url, path=path, out=again)
    assert again[1:] == ["unchanged pool batch", "unchanged queue batch/batch-etl"]


def test_a_template_the_api_server_refuses_writes_nothing_to_prefect(fakeapi, kit_settings, kit_server, tmp_path):
    path = pools_file(tmp_path, """pools:
  - name: refused
    type: kubernetes
    job: {manifest: {spec: {template: {spec: {containers: [{name: prefect-job, cpus: 2}]}}}}}
    queues: [{name: refused-q}]
""")
    with_workers_running(fakeapi, kit_settings, pool_config.load(path))
    with pytest.raises(UserError) as raised:
        pools.sync(kit_settings, kit_server.api_url, path=path, out=Lines())
    (problem,) = raised.value.problems
    assert problem.startswith("pool refused: the API server refuses its flow runs' Job: ")
    with prefect_api.connect(kit_settings, kit_server.api_url) as client, pytest.raises(ObjectNotFound):
        client.read_work_pool("refused")


def test_inv_pools_without_workers_in_the_cluster_or_a_tag_says_what_to_do(fakeapi, kit_settings, kit_server, tmp_path):
    path = pools_file(tmp_path, "pools:\n  - {name: idle, type: kubernetes, queues: [{name: idle-q}]}\n")
    fakeapi.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    with pytest.raises(UserError) as raised:
        pools.sync(kit_settings, kit_server.api_url, path=path, out=Lines())
    assert raised.value.problems == (
        f"pool idle: none of its workers runs in namespace {NS}, so there is no image for its job template; "
        "`inv rollout` makes the pools itself, or pass --tag",)


@pytest.fixture
def proxied(kit_settings):
    return dataclasses.replace(kit_settings, https_proxy=f"http://robot:{PROXY_PASSWORD}@proxy.company.local:3128")


@pytest.fixture
def flow_run(proxied, kit_server):
    """A kubernetes pool with the kit's template, and a flow run of a deployment on it."""
    declared = pool_config.parse("pools:\n  - {name: jobs, type: kubernetes, queues: [{name: jobs-q}]}\n")
    templates = pools.kubernetes_templates(proxied, declared, {"jobs": IMAGE})
    with prefect_api.connect(proxied, kit_server.api_url) as client:
        pools.write(client, declared, templates)
        flow_id = client.create_flow_from_name("kit-job-test")
        deployment = client.create_deployment(flow_id, "kit-job-test", work_pool_name="jobs", work_queue_name="jobs-q")
        return client.create_flow_run_from_deployment(deployment), client.read_work_pool("jobs")


def worker_settings(settings, url):
    """The Prefect settings of the kubernetes worker's pod (kit.workers renders them), which it copies into Jobs."""
    from prefect.settings import (PREFECT_API_AUTH_STRING, PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED,
                                  temporary_settings)

    # Logs stay here: they would be sent after the test, when its server is gone.
    return temporary_settings(updates={PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: settings.auth_string,
                                       PREFECT_LOGGING_TO_API_ENABLED: False})


def assert_a_safe_job(job, settings):
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert violations(job["spec"]["template"]["spec"]) == []
    text = json.dumps(job)
    assert settings.login_password not in text and PROXY_PASSWORD not in text


def test_the_job_prefect_kubernetes_builds_for_a_flow_run_is_valid_restricted_and_keeps_secrets_out(
        proxied, kit_server, flow_run):
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    run, pool = flow_run

    async def prepared():
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
                pool.base_job_template, {}, client=client)
        configuration.prepare_for_flow_run(run, work_pool=pool, worker_name="prefect-worker-jobs-q-5d8c-x2kfp")
        return configuration

    with worker_settings(proxied, kit_server.api_url):
        job = asyncio.run(prepared()).job_manifest
    # Before the worker swaps it for the Secret reference, the auth string is the only secret in the Job.
    env = {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env.pop("PREFECT_API_AUTH_STRING")["value"] == proxied.auth_string
    job["spec"]["template"]["spec"]["containers"][0]["env"] = list(env.values())
    assert_a_safe_job(job, proxied)
    assert env["HTTPS_PROXY"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-config", "key": "https-proxy"}


def test_the_body_the_kubernetes_worker_sends_when_it_creates_the_job(fakeapi, proxied, kit_server, flow_run,
                                                                      monkeypatch):
    from prefect.exceptions import InfrastructureError
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    run, pool = flow_run
    fakeapi.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    worker_pod = manifests.find(manifests.render(proxied, IMAGE), "Deployment", WORKER_PREFIX + "prod-main")
    for item in worker_pod["spec"]["template"]["spec"]["containers"][0]["env"]:
        if item["name"].startswith("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_"):
            monkeypatch.setenv(item["name"], item["value"])  # as the worker's pod has them
    monkeypatch.setenv("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_CREATE_JOB_RETRY_MAX_RETRIES", "1")
    # kubernetes_asyncio reads KUBECONFIG once, at import: point it at this test's stand-in.
    from kubernetes_asyncio.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", fakeapi.kubeconfig)

    async def submit():
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
                pool.base_job_template, {}, client=client)
        configuration.prepare_for_flow_run(run, work_pool=pool)
        try:
            await KubernetesWorker(work_pool_name="jobs").run(run, configuration)
        except InfrastructureError as error:
            # The stand-in names Jobs only by metadata.name; the worker sends generateName, as a real one takes.
            assert "name or generateName is required" in str(error)

    with worker_settings(proxied, kit_server.api_url):
        asyncio.run(submit())
    (sent,) = [r.body for r in fakeapi.requests if r.method == "POST" and r.path == f"/apis/batch/v1/namespaces/{NS}/jobs"]
    assert_a_safe_job(sent, proxied)
    env = {item["name"]: item for item in sent["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PREFECT_API_AUTH_STRING"] == {"name": "PREFECT_API_AUTH_STRING", "valueFrom": {
        "secretKeyRef": {"name": "prefect-config", "key": "auth-string"}}}


# --- The rollout's last wait: workers that connect, and workers that do not ----------------------------

ONLINE_POOLS = "pools:\n  - {name: %s, type: process, queues: [{name: %s-a}, {name: %s-b}]}\n"


def timed(lines):
    """Lines that also remember when each was printed."""
    at = {}

    def out(line):
        at.setdefault(line, time.time())
        lines(line)

    return out, at


def start_workers(api, settings, declared, deployment, url, tmp_path, processes):
    """A real `prefect worker start` per pod of a worker Deployment in the stand-in, with the pod's own command
    and name."""
    objects = manifests.render(settings, f"internal-cr:9999/{settings.image_name}:v1", declared)
    for pod in api.objects("Pod", NS):
        if pod["metadata"]["labels"].get("app.kubernetes.io/instance") != deployment:
            continue
        (container,) = pod["spec"]["containers"]
        args = container_args(container, container_env(container, objects, pod["metadata"]["name"]))
        env = clean_environment({"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": secret_value(settings, "auth-string"),
                                 "PREFECT_HOME": str(tmp_path / pod["metadata"]["name"]),
                                 "PREFECT_WORKER_WEBSERVER_PORT": str(free_port())})
        log = open(tmp_path / f"{pod['metadata']['name']}.log", "wb")
        processes.append(subprocess.Popen([PREFECT, *args[1:]], env=env, cwd=tmp_path, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))


def test_a_rollout_returns_after_every_workers_first_heartbeat_and_not_before(fakeapi, kit_settings, kit_server,
                                                                              tmp_path):
    declared = pool_config.parse(ONLINE_POOLS % ("online", "online", "online"))
    fakeapi.controller(True)
    processes = []
    lines = Lines()
    out, at = timed(lines)
    for queue in ("online-a", "online-b"):
        name = WORKER_PREFIX + queue
        lines.on(f'deployment "{name}" successfully rolled out', lambda name=name: start_workers(
            fakeapi, kit_settings, declared, name, kit_server.api_url, tmp_path, processes))
    try:
        rollout.rollout(kit_settings, tag="v1", timeout=180, api_url=kit_server.api_url, pools=declared, out=out)
        with prefect_api.connect(kit_settings, kit_server.api_url) as client:
            seen = {worker.name: worker for worker in client.read_workers_for_work_pool("online")}
    finally:
        for process in processes:
            stop(process)
    pods = [p["metadata"]["name"] for p in fakeapi.objects("Pod", NS)
            if p["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]
    assert len(pods) == 2 and set(pods) <= set(seen)
    ready = at["ready: http://prefect.company.local/"]
    for pod in pods:
        first_heartbeat = seen[pod].created.timestamp()
        waiting = at[f"worker pod/{pod}: waiting for it to connect to Prefect"]
        connected = at[f"worker pod/{pod}: connected (ONLINE in Prefect)"]
        assert waiting < first_heartbeat <= connected <= ready, (waiting, first_heartbeat, connected, ready)


def test_a_rollout_whose_workers_never_connect_times_out_naming_them_with_their_log_lines(
        fakeapi, kit_settings, kit_server):
    declared = pool_config.parse(ONLINE_POOLS % ("silent", "silent", "silent"))
    fakeapi.controller(True)

    def logs():
        for pod in fakeapi.objects("Pod", NS):
            if pod["metadata"]["name"].startswith(WORKER_PREFIX):
                fakeapi.log(NS, pod["metadata"]["name"], "httpx.ConnectError: All connection attempts failed")

    lines = Lines()
    lines.on(f'deployment "{WORKER_PREFIX}silent-b" successfully rolled out', logs)
    with pytest.raises(UserError) as raised:
        rollout.rollout(kit_settings, tag="v1", timeout=15, api_url=kit_server.api_url, pools=declared, out=lines)
    pods = sorted(p["metadata"]["name"] for p in fakeapi.objects("Pod", NS) if p["metadata"]["name"].startswith(WORKER_PREFIX))
    (problem,) = raised.value.problems
    assert problem.startswith(f"rollout: workers not connected to Prefect after 15s: pod/{pods[0]}, pod/{pods[1]}; ")
    for pod in pods:
        header = next(line for line in lines if line.endswith(f"pod/{pod} is Ready but Prefect lists no ONLINE worker "
                                                              "of that name in pool silent"))
        assert lines[lines.index(header) + 2] == "      httpx.ConnectError: All connection attempts failed"


def test_inv_pools_and_inv_flows_reach_prefect_through_a_port_forward_when_the_public_url_does_not_answer(
        fakeapi, kit_settings, kit_server, tmp_path, monkeypatch):
    """The stand-in's real pods/portforward (the client's websocket protocol) carries the kit's port-forward from
    the server pod's port, the one its Service targets, to a real Prefect server."""
    from urllib.parse import urlsplit

    from kit import access, flows

    declared = pool_config.load()  # the shipped pools: flows/prefect.yaml's deployment goes to production
    objects = manifests.render(kit_settings, IMAGE, declared)
    for obj in objects:
        if obj["kind"] in ("Namespace", "ServiceAccount", "Secret", "ConfigMap", "Deployment", "StatefulSet"):
            fakeapi.put(obj)
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    fakeapi.forward(NS, "prefect-server-0", access.server_endpoint(manifests.load())[1], urlsplit(kit_server.api_url).port)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    lines = Lines()
    pools.sync(kit_settings, out=lines)
    assert lines[0].startswith(f"prefect: through a port-forward to pod/prefect-server-0 ({kit_settings.public_api_url} "
                               "does not answer: ConnectError: ")
    assert lines[1:] == ["created pool production", "created queue production/prod-main",
                         "created queue production/prod-secondary"]
    deployed = Lines()
    flows.deploy(kit_settings, out=deployed)
    assert deployed[0].startswith("prefect: through a port-forward to pod/prefect-server-0 ")
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        assert client.read_deployment_by_name("hello/hello").work_pool_name == "production"
