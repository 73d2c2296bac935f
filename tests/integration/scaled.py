"""The scaled-out Prefect server, as real processes on 127.0.0.1: a migration step run once, then N API
processes (`prefect server start --no-services`) started at the same moment and one background-services
process (`prefect server services start`), all on one PostgreSQL database and one Redis, behind a
round-robin proxy that stands in for the Kubernetes Service. Used by test_scaled.py and bench/api_load.py.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import secrets
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from tests.integration.prefect_server import PrefectServer, clean_environment, prefect_process, prefect_server
from tests.services import free_port

# What Prefect's API does on its first start when block registration is on (server/api/server.py,
# add_block_types, with the collections its memoisation loads first). Prefect has no CLI for it: `prefect
# block register` registers one module's blocks through a running API, without the collections' block
# types or the protected system ones.
REGISTER_BLOCK_TYPES = """\
import asyncio

import prefect.plugins
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration


async def register():
    prefect.plugins.load_prefect_collections()
    async with await provide_database_interface().session() as session:
        await run_block_auto_registration(session=session)


asyncio.run(register())
"""

# The migration step, once per rollout before the API processes start, as arguments to the image's
# `python`: the schema to Alembic's head, then the block types the API processes no longer register.
MIGRATION_STEPS = (
    ("-m", "prefect", "server", "database", "upgrade", "-y"),
    ("-c", REGISTER_BLOCK_TYPES),
)
MIGRATION_TIMEOUT = 300


def scaled_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The Prefect settings every process of the scaled layout runs with: API processes, the background
    services and the migration step.

    The kit's render will replace this function: the rendered pod environment becomes the one source of
    these settings, and this function is deleted.
    """
    return {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
        # A background service whose first connection times out (default 5 s) dies, and Prefect 3.9.1
        # neither logs nor restarts it: seen for the automation triggers when the services process
        # started on a busy machine, which then looked healthy and ran no automation.
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
        # The migration step migrates and registers block types, once: API processes starting together on
        # an empty database would race on both (uq_block_type__slug).
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
        # With registration off, its memo only costs start-up time: it imports every installed collection
        # to hash the block registry (~1 s of CPU per API process here).
        "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
        # Each of these defaults to an in-memory implementation that only its own process sees.
        "PREFECT_SERVER_EVENTS_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "prefect_redis.cleanup_queue",
        "PREFECT_SERVER_DOCKET_URL": redis_url,
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
        # prefect-redis reads the cleanup queue's connection on its own, defaulting to localhost:6379.
        "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_URL": redis_url,
    }


def in_memory(environment: Mapping[str, str]) -> dict[str, str]:
    """The same environment with every Redis setting dropped: the unsafe layout, several API processes
    each on its own in-memory messaging, which starts and answers health checks like the safe one."""
    return {key: value for key, value in environment.items()
            if not key.startswith("PREFECT_REDIS_") and not value.startswith(("prefect_redis.", "redis"))}


@contextmanager
def fresh_redis_database(url: str) -> Iterator[str]:
    """A Redis database of this caller's own on the server of `url` (.ci/services/50-redis makes 64):
    the first empty one whose claim key this caller could set; flushed after."""
    import redis

    token = secrets.token_hex(8)
    parts = urlsplit(url)
    for number in range(1, 64):
        database_url = parts._replace(path=f"/{number}").geturl()
        client = redis.Redis.from_url(database_url)
        if client.dbsize() == 0 and client.set("kit-test-claim", token, nx=True):
            break
        client.close()
    else:
        raise RuntimeError(f"no empty Redis database left on {parts.hostname}:{parts.port}")
    try:
        yield database_url
    finally:
        client.flushdb()
        client.close()


def migrate(tmp: Path, environment: Mapping[str, str]) -> None:
    """Run the migration step as the kit's Job would, each command to its end; raises on a failed one."""
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = clean_environment({"PREFECT_HOME": str(home), **environment})
    for arguments in MIGRATION_STEPS:
        step = subprocess.run([sys.executable, *arguments], env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=MIGRATION_TIMEOUT)
        if step.returncode:
            raise RuntimeError(f"migration step {arguments[:2]} exited with {step.returncode}:\n"
                               f"{step.stdout[-2000:]}{step.stderr[-3000:]}")


def port_of(server: PrefectServer) -> int:
    return urlsplit(server.api_url).port


@dataclass
class ScaledLayout:
    apis: list[PrefectServer]
    services_log: Path
    proxy: RoundRobinProxy

    def wait_healthy(self) -> None:
        for server in self.apis:
            server.wait_healthy()

    def kill_api(self, index: int) -> None:
        """SIGKILL to every process of one API, as when its pod's node is lost: no shutdown of any kind."""
        process = self.apis[index].process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def scaled_layout(tmp: Path, environment: Mapping[str, str], apis: int = 2,
                  services_environment: Mapping[str, str] = {}, wait: bool = True) -> Iterator[ScaledLayout]:
    """`apis` API processes started at the same moment plus one background-services process, all with
    `environment` (its database already migrated), and the round-robin proxy in front of the APIs.
    `services_environment` adds settings for the services process only; wait=False returns while the
    APIs start (ScaledLayout.wait_healthy waits for them)."""
    with ExitStack() as stack:
        servers = [stack.enter_context(prefect_server(tmp / f"api-{index}", environment, wait=False,
                                                      args=["--no-services"]))
                   for index in range(apis)]
        services, services_log = stack.enter_context(prefect_process(
            tmp / "services", ["server", "services", "start"], {**environment, **services_environment},
            "prefect-services"))
        # Runs first on the way out: every process shuts down at once, not one after the other.
        stack.callback(_terminate, [server.process for server in servers] + [services])
        layout = ScaledLayout(servers, services_log,
                              stack.enter_context(RoundRobinProxy([port_of(server) for server in servers])))
        if wait:
            layout.wait_healthy()
        yield layout


def _terminate(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


@contextmanager
def process_worker(tmp: Path, api_url: str, auth_string: str, pool: str,
                   environment: Mapping[str, str] = {}) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`prefect worker start --pool POOL --type process` against `api_url`, as the kit's worker pods run;
    its flow runs inherit its environment. Yields the process and its log."""
    env = {"PREFECT_API_URL": api_url, "PREFECT_API_AUTH_STRING": auth_string, **environment}
    with prefect_process(tmp, ["worker", "start", "--pool", pool, "--type", "process"], env, "worker") as started:
        yield started


class RoundRobinProxy:
    """A TCP proxy on a free 127.0.0.1 port in front of the API processes, as a Kubernetes Service is:
    each new connection goes to the next backend in turn, and a backend that refuses the connection is
    skipped, as the endpoint of a pod that is gone drops out of the Service. It counts, per backend port,
    the connections it handed over (`opened`) and those still open (`open`)."""

    def __init__(self, ports: Sequence[int]):
        self.ports = list(ports)
        self.port = free_port()
        self.opened: collections.Counter[int] = collections.Counter()
        self.open: collections.Counter[int] = collections.Counter()
        self._turn = itertools.cycle(self.ports)
        self._ends: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="round-robin-proxy", daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        serving = asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result()
        return self

    def __exit__(self, *exc_info) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        # Closing every connection ends each relay on its own (a cancelled one makes asyncio log an error).
        self._server.close()
        for end in list(self._ends):
            end.close()
        await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not asyncio.current_task()))

    async def _connect(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in self.ports:
            port = next(self._turn)
            try:
                return (port, *await asyncio.open_connection("127.0.0.1", port))
            except OSError:
                continue
        return None

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            client_writer.close()
            return
        port, reader, writer = upstream
        self._ends |= {writer, client_writer}
        self.opened[port] += 1
        self.open[port] += 1
        directions = [asyncio.ensure_future(_pipe(client_reader, writer)),
                      asyncio.ensure_future(_pipe(reader, client_writer))]
        try:
            # HTTP and websockets never half-close: when one side is done, so is the connection.
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for direction in directions:
                direction.cancel()
            await asyncio.gather(*directions, return_exceptions=True)
            for end in (writer, client_writer):
                end.close()
            self._ends -= {writer, client_writer}
            self.open[port] -= 1


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
