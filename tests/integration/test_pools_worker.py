"""A real process worker, started with the exact command the kit renders for prod-main of a process pool,
runs the example flow that `inv flows` deployed to prod-main; `inv status`'s Prefect half then shows the
worker online under its pod's name."""

import os
import re
import subprocess
import time
import urllib.request

import pytest

from kit import flows, manifests, pool_config, pools, prefect_api
from kit.settings import WORKER_PREFIX
from tests.integration.conftest import secret_value
from tests.integration.prefect_server import PREFECT, clean_environment, stop
from tests.rendering import IMAGE, as_process_pools, container_args, container_env
from tests.services import free_port

QUEUE = "prod-main"
POD = f"{WORKER_PREFIX}{QUEUE}-5d8c6b7f9-x2kfp"
RUN_TIMEOUT = 120
PROCESS_POOLS = pool_config.parse(as_process_pools(pool_config.POOLS_PATH.read_text()))


def rendered_command(kit_settings, queue=QUEUE, pod=POD):
    """The worker's command as the kubelet runs it: rendered for a process pool, $(POD_NAME) expanded."""
    objects = manifests.render(kit_settings, IMAGE, PROCESS_POOLS)
    (container,) = manifests.find(objects, "Deployment", WORKER_PREFIX + queue)["spec"]["template"]["spec"]["containers"]
    return container_args(container, container_env(container, objects, pod))


@pytest.fixture(scope="module")
def deployed(kit_settings, kit_server, tmp_path_factory):
    """The shipped pools as process pools, and the flows of flows/ deployed to run from this checkout."""
    home = tmp_path_factory.mktemp("deploy-home")
    with pytest.MonkeyPatch.context() as patch:
        # `prefect deploy` keeps state under PREFECT_HOME; the developer's own must stay untouched.
        patch.setenv("PREFECT_HOME", str(home))
        with prefect_api.connect(kit_settings, kit_server.api_url) as client:
            pools.write(client, PROCESS_POOLS, {})
        flows.deploy(kit_settings, kit_server.api_url, code_dir=str(flows.FLOWS_DIR), out=lambda line: None)


@pytest.fixture(scope="module")
def worker(kit_settings, kit_server, deployed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("worker")
    health_port = free_port()
    command = rendered_command(kit_settings)
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


def test_the_worker_command_comes_from_the_template(kit_settings):
    assert rendered_command(kit_settings) == [
        "prefect", "worker", "start", "--pool", "production", "--work-queue", QUEUE, "--type", "process",
        "--name", POD, "--with-healthcheck", "--no-create-pool-if-not-found"]


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


def test_status_then_shows_the_worker_online_under_its_pods_name_and_the_queue_ready(kit_settings, kit_server, worker):
    lines = pools.status(kit_settings, kit_server.api_url, pods={POD})
    assert row(lines, "production") == ["production", "process", "ready", "unlimited"], lines
    assert row(lines, "production/prod-main") == ["production/prod-main", "ready", "unlimited", "0"], lines
    (worker,) = [line for line in lines if line.startswith(f"{WORKER_PREFIX}")]
    assert cells(worker)[:3] == [POD, "production", "online"] and cells(worker)[3].endswith("s ago"), lines


def cells(line):
    """The columns of a table row: cells are three or more spaces apart."""
    return [cell for cell in re.split(r"\s{3,}", line.strip())]


def row(lines, first):
    return next(cells(line) for line in lines if cells(line)[0] == first)


def test_status_shows_the_worker_as_stale_once_its_pod_is_gone(kit_settings, kit_server, worker):
    lines = pools.status(kit_settings, kit_server.api_url, pods={f"{WORKER_PREFIX}{QUEUE}-5d8c6b7f9-newer"})
    assert row(lines, POD)[2] == "stale (its pod is gone)", lines


def test_the_worker_answers_the_health_probe_of_its_manifest(worker):
    _, health_port, _ = worker
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health", timeout=5) as response:
        assert response.status == 200


SLEEPY = '''
import time

from prefect import flow


@flow
def sleepy(seconds: int = 60):
    time.sleep(seconds)
'''


def test_stopping_a_process_worker_kills_its_running_flow_run_and_leaves_it_running_in_prefect(kit_settings, kit_server, deployed, tmp_path):
    """What a rollout does to a process pool's running flows: the kubelet's SIGTERM reaches the worker (tini
    forwards it to the worker's process group), and Prefect 3.9.1's worker kills its flow-run processes on the
    way out, leaving their runs RUNNING in Prefect. There is no drain to wait for: the README says so, and
    kubernetes pools avoid it."""
    import signal

    from prefect.client.schemas.objects import StateType

    (tmp_path / "sleepy.py").write_text(SLEEPY)
    queue = "prod-secondary"
    pod = f"{WORKER_PREFIX}{queue}-7f9c5d6b8-q4m2n"
    env = clean_environment({
        "PREFECT_API_URL": kit_server.api_url, "PREFECT_API_AUTH_STRING": secret_value(kit_settings, "auth-string"),
        "PREFECT_HOME": str(tmp_path), "PREFECT_WORKER_WEBSERVER_PORT": str(free_port()),
        "PREFECT_WORKER_QUERY_SECONDS": "2"})
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        flow_id = client.create_flow_from_name("sleepy")
        deployment = client.create_deployment(
            flow_id, "sleepy", work_pool_name="production", work_queue_name=queue, entrypoint="sleepy.py:sleepy",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}])
        run = client.create_flow_run_from_deployment(deployment)
        log = tmp_path / "worker.log"
        with open(log, "wb") as output:
            worker = subprocess.Popen([PREFECT, *rendered_command(kit_settings, queue, pod)[1:]], env=env, cwd=tmp_path,
                                      stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while client.read_flow_run(run.id).state.type != StateType.RUNNING:
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            child = client.read_flow_run(run.id).infrastructure_pid.rpartition(":")[2]
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(RUN_TIMEOUT)
        finally:
            stop(worker)
        # The worker killed its flow run's process on its way out, and nothing is left to report its end.
        assert not os.path.exists(f"/proc/{child}"), "the flow run's process outlived its worker"
        states = [state.type for state in client.read_flow_run_states(run.id)]
    assert states[-1] == StateType.RUNNING and StateType.COMPLETED not in states, f"{states}\n{log.read_text()[-3000:]}"
