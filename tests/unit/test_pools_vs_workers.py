"""config/pools.yaml and manifests/30-workers.yaml must agree both ways: every declared queue has a worker
Deployment, and every worker polls a declared pool and queue with the declared type."""

import yaml

from kit import ROOT, pools

WORKERS = ROOT / "manifests" / "30-workers.yaml"


def option_values(command, option):
    return [command[index + 1] for index, arg in enumerate(command) if arg == option]


def workers():
    """{Deployment name: (pool, queues, type)} from the worker container commands."""
    found = {}
    for obj in yaml.safe_load_all(WORKERS.read_text()):
        if obj and obj["kind"] == "Deployment":
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            command = container["command"]
            assert command[:3] == ["prefect", "worker", "start"], obj["metadata"]["name"]
            (pool,) = option_values(command, "--pool")
            (worker_type,) = option_values(command, "--type")
            found[obj["metadata"]["name"]] = (pool, option_values(command, "--work-queue"), worker_type)
    return found


def declared():
    """{Deployment name a queue needs: (pool, [queue], type)} from the pools file."""
    return {pools.WORKER_PREFIX + queue.name: (pool.name, [queue.name], pool.type)
            for pool in pools.load() for queue in pool.queues}


def test_every_declared_queue_has_a_worker_polling_exactly_it():
    running, wanted_workers = workers(), declared()
    assert wanted_workers, "the pools file declares no queue"
    for name, wanted in wanted_workers.items():
        assert running.get(name) == wanted, f"{name}: {WORKERS.name} runs {running.get(name)}, pools file says {wanted}"


def test_every_worker_polls_a_declared_pool_and_queue():
    running = set(workers())
    assert running, f"{WORKERS.name} has no worker Deployment"
    assert running <= set(declared()), f"workers without a declared queue: {running - set(declared())}"
