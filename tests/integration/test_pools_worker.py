"""A real worker, started with the exact command of manifests/workers.yaml, runs the example flow that
`inv flows` deployed to prod-main; `inv status`'s Prefect half then shows the worker online."""

import subprocess
import time
import urllib.request

import pytest

from kit import flows, manifests, pools, prefect_api
from tests.integration.conftest import secret_value
from tests.integration.prefect_server import PREFECT, clean_environment, stop
from tests.services import free_port

QUEUE = "prod-main"
RUN_TIMEOUT = 120


def manifest_command(queue):
    worker = manifests.find(manifests.load(), "Deployment", pools.WORKER_PREFIX + queue)
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    return container["args"]


@pytest.fixture(scope="module")
def deployed(kit_settings, kit_server, tmp_path_factory):
    """The declared pools, and the flows of flows/ deployed to run from this checkout."""
    home = tmp_path_factory.mktemp("deploy-home")
    with pytest.MonkeyPatch.context() as patch:
        # `prefect deploy` keeps state under PREFECT_HOME; the developer's own must stay untouched.
        patch.setenv("PREFECT_HOME", str(home))
        pools.sync(kit_settings, kit_server.api_url)
        flows.deploy(kit_settings, kit_server.api_url, code_dir=str(flows.FLOWS_DIR))


@pytest.fixture(scope="module")
def worker(kit_settings, kit_server, deployed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("worker")
    health_port = free_port()
    command = manifest_command(QUEUE)
    env = clean_environment({
        # What the pod gets from the prefect-config Secret, with the URL of this test's server.
        "PREFECT_API_URL": kit_server.api_url,
        "PREFECT_API_AUTH_STRING": secret_value(kit_settings, "auth-string"),
        "PREFECT_HOME": str(tmp),
        "PREFECT_WORKER_WEBSERVER_PORT": str(health_port),
        # Only to keep the test short: the worker polls every 10 s by default.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    })
    log = tmp / "worker.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([PREFECT, *command[1:]], env=env, cwd=tmp, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, health_port, log
    finally:
        stop(process)


def test_the_worker_command_comes_from_the_manifest():
    assert manifest_command(QUEUE) == ["prefect", "worker", "start", "--pool", "production", "--work-queue", QUEUE,
                                       "--type", "process", "--with-healthcheck"]


def test_the_example_flow_runs_to_completed_on_the_manifest_worker(kit_settings, kit_server, worker):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    process, _, log = worker
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        deployment = client.read_deployment_by_name("hello/hello")
        assert (deployment.work_pool_name, deployment.work_queue_name) == ("production", QUEUE)
        run = client.create_flow_run_from_deployment(deployment.id)
        deadline = time.monotonic() + RUN_TIMEOUT
        while not client.read_flow_run(run.id).state.is_final():
            assert process.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"flow run not finished:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        state = client.read_flow_run(run.id).state
        assert state.type.value == "COMPLETED", f"{state}\n{log.read_text()[-3000:]}"
        # The server stores a run's logs a moment after the run reports its final state.
        for _ in range(30):
            messages = [entry.message for entry in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))]
            if any(message.startswith("hello, prefect-kit, from ") for message in messages):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the flow's own log line never arrived: {messages}")


def test_status_then_shows_the_worker_online_and_the_queue_ready(kit_settings, kit_server, worker):
    lines = pools.status(kit_settings, kit_server.api_url)
    assert "pool production (process): ready, concurrency unlimited" in lines, lines
    assert "  queue prod-main: ready, 0 late runs" in lines, lines
    workers = [line for line in lines if line.startswith("  worker ")]
    assert len(workers) == 1 and ": online, last heartbeat " in workers[0], lines


def test_the_worker_answers_the_health_probe_of_its_manifest(worker):
    _, health_port, _ = worker
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health", timeout=5) as response:
        assert response.status == 200
