"""Load on real Prefect servers through the real client: concurrent clients each creating a flow run and
reading it back, over and over for a fixed time; requests per second, p50/p99 latency and errors for

  (a) one process, `prefect server start` (API and background services together), on in-memory
      messaging: the kit's single-replica mode;
  (b) the same process on Redis: only the messaging differs from (a), so (b)/(a) is what Redis costs;
  (c) one API process (`--no-services`) and the background-services process, on Redis: scaled mode
      with one replica;
  (d) two API processes behind the round-robin proxy (tests/integration/scaled.py) and the
      background-services process, on Redis: scaled mode with two replicas, (d)/(c) what the second
      replica adds.

Goals: Redis costs a single replica at most 15 % of its throughput ((b)/(a) >= 0.85), and the
two-replica setup loses no request (0 errors in (d)). A request is one client call (create or read);
the client's own retries are off, so every failed call counts as an error, in the warm-ups too.

All four run at once, each on its own copy of one migrated database and its own Redis database; the
measured time of each is cut into slices taken in turn (a, b, c, d, a, b, ...), so the machine's other
load falls on all of them alike, and each slice starts with a warm-up. The clients run in a process of
their own, so neither the proxy nor the bench's bookkeeping shares their interpreter. On a machine with
few cores the servers, PostgreSQL, Redis and the clients compete for the same CPUs: read (d) as "no
request lost, and what one machine gives", not as the gain two real nodes would bring.

Needs KIT_TEST_POSTGRES_URL and KIT_TEST_REDIS_URL (.ci/services/40-postgres and 50-redis).

Usage: .venv/bin/python bench/api_load.py [seconds per configuration] [clients] [slices]
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.postgres import fresh_database  # noqa: E402
from tests.integration.prefect_server import PrefectServer, prefect_server  # noqa: E402
from tests.integration.scaled import (fresh_redis_database, in_memory, migrate, rendered,  # noqa: E402
                                      scaled_layout)
from tests.rendering import env_text  # noqa: E402

WARMUP = 2.0
REDIS_COST_GOAL = 0.85
USER = "bench"
CONFIGURATIONS = {
    "a": "(a) 1 process, in-memory",
    "b": "(b) 1 process, Redis",
    "c": "(c) 1 API + services, Redis",
    "d": "(d) 2 APIs + services, Redis, proxy",
}


@contextmanager
def serving(configuration: str, tmp: Path, database_url: str, redis_url: str,
            auth: str) -> Iterator[tuple[str, list[PrefectServer]]]:
    """One configuration, started: the API URL the clients use, and the API processes to wait for."""
    layout = kit_layout(database_url, redis_url, auth)
    if configuration in ("a", "b"):
        # One process serving the API and running the services, as the postgres mode's server does.
        with prefect_server(tmp, in_memory(layout.api) if configuration == "a" else layout.api, wait=False) as server:
            yield server.api_url, [server]
    else:
        with scaled_layout(tmp, layout, apis=1 if configuration == "c" else 2, wait=False) as layout:
            yield layout.apis[0].api_url if configuration == "c" else layout.proxy.api_url, layout.apis


def kit_layout(database_url: str, redis_url: str, auth: str):
    """The kit's render of the scaled layout, its login the bench's."""
    user, password = auth.split(":", 1)
    return rendered(env_text(LOGIN_USER=user, LOGIN_PASSWORD=password), database_url, redis_url)


def prepare(api_url: str, auth: str) -> str:
    """A deployment on a pool no worker polls. The clients' runs are scheduled for tomorrow, so they stay
    SCHEDULED and the late-runs service has nothing to do for them while another configuration is measured."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate

    with SyncPrefectClient(api_url, auth_string=auth) as client:
        client.create_work_pool(work_pool=WorkPoolCreate(name="bench", type="process"))
        flow_id = client.create_flow_from_name("bench")
        return str(client.create_deployment(flow_id=flow_id, name="bench", work_pool_name="bench"))


def generate_load(api_url: str, auth: str, deployment_id: str, clients: int, seconds: float, results) -> None:
    """In its own process: `clients` concurrent clients for WARMUP + `seconds`; puts the latencies of the
    measured calls and the number of failed calls."""
    # Set before Prefect is imported: a failed call must count, not be retried behind the bench's back.
    os.environ["PREFECT_CLIENT_MAX_RETRIES"] = "0"
    results.put(asyncio.run(_load(api_url, auth, deployment_id, clients, seconds)))


async def _load(api_url: str, auth: str, deployment_id: str, clients: int,
                seconds: float) -> tuple[list[float], int]:
    from datetime import datetime, timedelta, timezone
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient
    from prefect.states import Scheduled

    measured_from = time.monotonic() + WARMUP
    until = measured_from + seconds
    latencies: list[float] = []
    errors = 0

    async def call(operation) -> object | None:
        nonlocal errors
        started = time.monotonic()
        try:
            answer = await operation
        except Exception:
            errors += 1  # in the warm-up too: no request may be lost at any time
            return None
        if started >= measured_from:
            latencies.append(time.monotonic() - started)
        return answer

    async def client_loop() -> None:
        # One client each, with its own connections, as separate users or workers would have.
        async with PrefectClient(api_url, auth_string=auth) as client:
            while time.monotonic() < until:
                tomorrow = Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1))
                run = await call(client.create_flow_run_from_deployment(UUID(deployment_id), state=tomorrow))
                if run is not None:
                    await call(client.read_flow_run(run.id))

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return latencies, errors


def load(api_url: str, auth: str, deployment_id: str, clients: int, seconds: float) -> tuple[list[float], int]:
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    process = spawn.Process(target=generate_load, args=(api_url, auth, deployment_id, clients, seconds, results))
    process.start()
    answer = results.get(timeout=WARMUP + seconds + 300)
    process.join()
    return answer


def summary(latencies: list[float], errors: int, seconds: float) -> dict:
    latencies = sorted(latencies)
    return {"requests": len(latencies), "rate": len(latencies) / seconds, "errors": errors,
            "p50": statistics.median(latencies) * 1000, "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000}


def main(seconds: float, clients: int, slices: int) -> None:
    postgres = os.environ.get("KIT_TEST_POSTGRES_URL")
    redis = os.environ.get("KIT_TEST_REDIS_URL")
    if not (postgres and redis):
        sys.exit("set KIT_TEST_POSTGRES_URL and KIT_TEST_REDIS_URL (bash .ci/run starts both and sets them)")
    auth = f"{USER}:{secrets.token_urlsafe(18)}"
    latencies = {configuration: [] for configuration in CONFIGURATIONS}
    errors = collections.Counter()
    with tempfile.TemporaryDirectory() as workdir, fresh_database(postgres) as template, ExitStack() as stack:
        tmp = Path(workdir)
        migrate(tmp / "migrate", kit_layout(template, stack.enter_context(fresh_redis_database(redis)), auth))
        urls, starting = {}, []
        for configuration in CONFIGURATIONS:
            database_url = stack.enter_context(fresh_database(postgres, template=template))
            redis_url = stack.enter_context(fresh_redis_database(redis))
            urls[configuration], servers = stack.enter_context(
                serving(configuration, tmp / configuration, database_url, redis_url, auth))
            starting += servers
        for server in starting:
            server.wait_healthy()
        deployments = {configuration: prepare(url, auth) for configuration, url in urls.items()}
        # Slices taken in turn, so a change in the machine's other load falls on every configuration alike.
        for _ in range(slices):
            for configuration in CONFIGURATIONS:
                measured, failed = load(urls[configuration], auth, deployments[configuration], clients,
                                        seconds / slices)
                latencies[configuration] += measured
                errors[configuration] += failed
    figures = {configuration: summary(latencies[configuration], errors[configuration], seconds)
               for configuration in CONFIGURATIONS}
    print(f"{clients} clients creating and reading flow runs, {seconds:g} s per configuration in {slices} slices "
          f"taken in turn (each after {WARMUP:g} s of warm-up)\n")
    print(f"{'configuration':<38}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for configuration, label in CONFIGURATIONS.items():
        f = figures[configuration]
        print(f"{label:<38}{f['requests']:>9}{f['rate']:>9.1f}{f['p50']:>9.1f}{f['p99']:>9.1f}{f['errors']:>8}")
    redis_cost = figures["b"]["rate"] / figures["a"]["rate"]
    print(f"\n(b)/(a) throughput: {redis_cost:.3f} "
          f"({'meets' if redis_cost >= REDIS_COST_GOAL else 'misses'} the >= {REDIS_COST_GOAL:g} goal)")
    print(f"(d)/(c) throughput: {figures['d']['rate'] / figures['c']['rate']:.3f}")
    print(f"errors: {sum(f['errors'] for f in figures.values())} in all, {figures['d']['errors']} in (d) "
          f"({'meets' if figures['d']['errors'] == 0 else 'misses'} the 0 goal)")


if __name__ == "__main__":
    arguments = [float(sys.argv[1]) if len(sys.argv) > 1 else 30.0, int(sys.argv[2]) if len(sys.argv) > 2 else 8,
                 int(sys.argv[3]) if len(sys.argv) > 3 else 3]
    main(*arguments)
