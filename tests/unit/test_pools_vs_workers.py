"""config/pools.yaml and the checked-in worker manifests must agree both ways: every declared queue has
a worker Deployment, and every worker polls a declared pool and queue with the declared type."""

from kit import manifests, pools


def option_values(command, option):
    return [command[index + 1] for index, arg in enumerate(command) if arg == option]


def workers():
    """{Deployment name: (pool, queues, type)} from the worker container commands in manifests/."""
    found = {}
    for obj in manifests.load():
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith(pools.WORKER_PREFIX):
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            command = container["args"]
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
        assert running.get(name) == wanted, f"{name}: manifests/ run {running.get(name)}, pools file says {wanted}"


def test_every_worker_polls_a_declared_pool_and_queue():
    running = set(workers())
    assert running, "manifests/ has no worker Deployment"
    assert running <= set(declared()), f"workers without a declared queue: {running - set(declared())}"
