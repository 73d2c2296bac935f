"""Two delays of the workers, against a real Prefect server (`prefect server start` on a free port):

1. a process worker, started with the command the kit renders: from `create_flow_run` to the run being
   RUNNING, with Prefect's default poll interval (goal: median <= 15 s; the worker looks every 10 s);
2. `inv rollout` against the stand-in API server with real workers started for its worker pods: from a
   worker's first heartbeat (its entry's `created`) to the rollout returning (goal: median <= 2 s; the rollout
   looks at Prefect's worker list once a second).

Usage: .venv/bin/python bench/workers.py [runs]
"""

import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from timing import verdict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit import flows, manifests, pool_config, pools, prefect_api, rollout, settings  # noqa: E402
from kit.settings import WORKER_PREFIX  # noqa: E402
from tests.contract.clusterkit import digest_of  # noqa: E402
from tests.standin import FakeApi  # noqa: E402
from tests.integration.conftest import secret_value  # noqa: E402
from tests.integration.prefect_server import PREFECT, clean_environment, prefect_server, stop  # noqa: E402
from tests.rendering import IMAGE, as_process_pools, container_args, container_env  # noqa: E402
from tests.services import free_port  # noqa: E402

START_GOAL = 15.0
CONNECT_GOAL = 2.0
NS = "prefect"


def worker(kit_settings, url, objects, deployment, pod, tmp):
    """`prefect worker start` with the command and name the kubelet would give this pod."""
    (container,) = manifests.find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    args = container_args(container, container_env(container, objects, pod))
    env = clean_environment({"PREFECT_API_URL": url,
                             "PREFECT_API_AUTH_STRING": secret_value(kit_settings, "auth-string"),
                             "PREFECT_HOME": str(tmp / pod), "PREFECT_WORKER_WEBSERVER_PORT": str(free_port())})
    return subprocess.Popen([PREFECT, *args[1:]], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def time_to_running(kit_settings, url, tmp: Path, runs: int) -> list[float]:
    from prefect.client.schemas.objects import StateType

    declared = pool_config.parse(as_process_pools(pool_config.POOLS_PATH.read_text()))
    objects = manifests.render(kit_settings, IMAGE, declared)
    with prefect_api.connect(kit_settings, url) as client:
        pools.write(client, declared, {})
    os.environ["PREFECT_HOME"] = str(tmp / "deploy")
    flows.deploy(kit_settings, url, code_dir=str(flows.FLOWS_DIR), out=lambda line: None)
    process = worker(kit_settings, url, objects, WORKER_PREFIX + "prod-main", WORKER_PREFIX + "prod-main-bench", tmp)
    times = []
    try:
        with prefect_api.connect(kit_settings, url) as client:
            deployment = client.read_deployment_by_name("hello/hello")
            # Timed from a worker that is already polling, as in a cluster where it has long been up.
            while not [w for w in client.read_workers_for_work_pool("production") if w.status.value == "ONLINE"]:
                time.sleep(0.2)
            for _ in range(runs):
                start = time.perf_counter()
                run = client.create_flow_run_from_deployment(deployment.id)
                while client.read_flow_run(run.id).state.type not in (StateType.RUNNING, StateType.COMPLETED):
                    time.sleep(0.1)
                times.append(time.perf_counter() - start)
                while not client.read_flow_run(run.id).state.is_final():
                    time.sleep(0.2)
    finally:
        stop(process)
    return times


def connect_delays(kit_settings, url, tmp: Path, runs: int) -> list[float]:
    """Rollouts of a new tag each; for each, the last worker's first heartbeat to the rollout's return."""
    declared = pool_config.parse("pools:\n  - {name: bench, type: process, queues: [{name: bench-a}]}\n")
    api = FakeApi().start()
    os.environ["KUBECONFIG"] = api.write_kubeconfig(str(tmp / "kubeconfig"))
    tempfile.tempdir = str(tmp)  # the client's discovery cache
    delays = []
    try:
        api.controller(True)
        for run in range(runs):
            with ExitStack() as stack:
                # Pinned as `inv build push` records it: the registry is not what this bench times.
                tag = f"b{run}@{digest_of(f'b{run}')}"
                objects = manifests.render(kit_settings, f"{kit_settings.image_repository}:{tag}", declared)
                started = set()

                def out(line):
                    # Each new worker pod gets its real worker the moment the rollout waits for it.
                    if line.startswith("worker pod/") and line.endswith(": waiting for it to connect to Prefect"):
                        pod = line.removeprefix("worker pod/").partition(":")[0]
                        if pod not in started:
                            started.add(pod)
                            process = worker(kit_settings, url, objects, WORKER_PREFIX + "bench-a", pod, tmp)
                            stack.callback(stop, process)

                rollout.rollout(kit_settings, tag=tag, timeout=180, api_url=url, pools=declared, out=out)
                returned = time.time()
                with prefect_api.connect(kit_settings, url) as client:
                    seen = {w.name: w for w in client.read_workers_for_work_pool("bench")}
                delays.append(returned - max(seen[pod].created.timestamp() for pod in started))
    finally:
        api.stop()
    return delays


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        tmp = Path(workdir)
        env_file = tmp / ".env"
        text = settings.fill_template((ROOT / ".env.example").read_text(),
                                      {"LOGIN_PASSWORD": settings.generate_password()})
        settings.write_env_file(env_file, text)
        kit_settings = settings.load(env_file)
        with prefect_server(tmp, {"PREFECT_SERVER_API_AUTH_STRING": kit_settings.auth_string}) as server:
            starts = time_to_running(kit_settings, server.api_url, tmp, runs)
            delays = connect_delays(kit_settings, server.api_url, tmp, runs)
    print(verdict("process worker: create_flow_run -> RUNNING", starts, START_GOAL))
    print(verdict("first worker heartbeat -> rollout returned", delays, CONNECT_GOAL))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
