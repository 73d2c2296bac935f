"""The scaled-out Prefect server, as real processes on 127.0.0.1: the kit's migration Job's command run once,
then N API processes (`prefect server start --no-services`) started at the same moment and one
background-services process (`prefect server services start`), all on one PostgreSQL database and one Redis,
behind a round-robin proxy that stands in for the Kubernetes Service. Every command and environment is the
kit's render of DATABASE_MODE=scaled (rendered()). Used by test_scaled.py and bench/api_load.py.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import os
import re
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

from kit import manifests, server
from kit.settings import fill_template, parse
from tests.integration.prefect_server import PrefectServer, clean_environment, prefect_process, prefect_server
from tests.rendering import container_env
from tests.services import free_port

MIGRATION_TIMEOUT = 300
# Set by each container's filesystem, not by the layout: each process here has a PREFECT_HOME of its own and
# no UI build (prefect_process sets both).
POD_FILESYSTEM = ("HOME", "PREFECT_SERVER_UI_STATIC_DIRECTORY")


@dataclass(frozen=True)
class Rendered:
    """The scaled layout as the kit renders it: each part's environment (Secret references resolved, as the
    kubelet resolves them), what follows `prefect` in its container, and the migration Job's arguments to the
    image's `python`."""
    api: dict[str, str]
    api_flags: list[str]
    services: dict[str, str]
    services_args: list[str]
    migration: dict[str, str]
    migration_args: list[str]


def rendered(env_text: str, database_url: str, redis_url: str) -> Rendered:
    """The render of DATABASE_MODE=scaled on this database and Redis, for the settings file `env_text`."""
    values = {"DATABASE_MODE": "scaled", "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    unset = "".join(f"{key}=\n" for key in values if not re.search(rf"^{key}=", env_text, re.M))
    objects = manifests.render(parse(fill_template(env_text + unset, values)), "stand-in:local", pools=())

    def pod(kind: str, name: str) -> dict:
        return manifests.find(objects, kind, name)["spec"]["template"]["spec"]

    def environment(container: dict) -> dict[str, str]:
        return {name: value for name, value in container_env(container, objects).items() if name not in POD_FILESYSTEM}

    api = server.server_container(pod("Deployment", server.API))
    (services,) = pod("Deployment", server.SERVICES)["containers"]
    (job,) = [obj for obj in objects if server.is_migration(obj)]
    (migration,) = job["spec"]["template"]["spec"]["containers"]
    assert api["args"][:3] == ["prefect", "server", "start"] and migration["args"][0] == "python"
    return Rendered(environment(api), _without_address(api["args"][3:]), environment(services), services["args"][1:],
                    environment(migration), migration["args"][1:])


def _without_address(flags: list[str]) -> list[str]:
    """The flags of `prefect server start` but its address: the processes here pick their own."""
    flags = list(flags)
    for option in ("--host", "--port"):
        if option in flags:
            del flags[flags.index(option):flags.index(option) + 2]
    return flags


def in_memory(environment: Mapping[str, str]) -> dict[str, str]:
    """The same environment with every Redis setting dropped: the unsafe layout, several API processes
    each on its own in-memory messaging, which starts and answers health checks like the safe one."""
    return {key: value for key, value in environment.items()
            if not key.startswith("PREFECT_REDIS_") and not value.startswith(("prefect_redis.", "redis"))}


def in_memory_layout(layout: Rendered) -> Rendered:
    """The rendered layout with its API and services processes in_memory()."""
    return dataclasses.replace(layout, api=in_memory(layout.api), services=in_memory(layout.services))


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


def migrate(tmp: Path, layout: Rendered) -> None:
    """Run the migration Job's command with its environment, as its pod would, to its end; raises if it fails."""
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = clean_environment({"PREFECT_HOME": str(home), **layout.migration})
    step = subprocess.run([sys.executable, *layout.migration_args], env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=MIGRATION_TIMEOUT)
    if step.returncode:
        raise RuntimeError(f"the migration exited with {step.returncode}:\n{step.stdout[-2000:]}{step.stderr[-3000:]}")


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
def scaled_layout(tmp: Path, layout: Rendered, apis: int = 2, services_environment: Mapping[str, str] = {},
                  wait: bool = True) -> Iterator[ScaledLayout]:
    """`apis` API processes started at the same moment plus one background-services process, as `layout`
    renders them (its database already migrated), and the round-robin proxy in front of the APIs.
    `services_environment` adds settings for the services process only; wait=False returns while the
    APIs start (ScaledLayout.wait_healthy waits for them)."""
    with ExitStack() as stack:
        servers = [stack.enter_context(prefect_server(tmp / f"api-{index}", layout.api, wait=False,
                                                      args=layout.api_flags))
                   for index in range(apis)]
        services, services_log = stack.enter_context(prefect_process(
            tmp / "services", layout.services_args, {**layout.services, **services_environment},
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
