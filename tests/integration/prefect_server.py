"""A real Prefect server for tests: `prefect server start` on a free 127.0.0.1 port, its own
PREFECT_HOME (so a temporary SQLite database unless the environment names another), stopped after;
other `prefect` processes (background services, workers) are started the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from tests.services import free_port

PREFECT = str(Path(sys.executable).parent / "prefect")
START_TIMEOUT = 90.0


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    log: Path
    process: subprocess.Popen

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s:\n{self.log_tail()}")


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """os.environ without the caller's PREFECT_* settings (a developer's profile must not leak in), plus extra."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(extra)
    return env


@contextmanager
def prefect_process(tmp: Path, args: Sequence[str], env: Mapping[str, str] = {},
                    name: str = "prefect-server") -> Iterator[tuple[subprocess.Popen, Path]]:
    """`prefect ARGS` in its own session with `env` on top of a clean environment and PREFECT_HOME under
    tmp, its output in tmp/NAME.log; yields the process and the log, and stops it after."""
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    log = tmp / f"{name}.log"
    process_env = clean_environment({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI build is copied at every start and no test here looks at the UI.
        "PREFECT_SERVER_UI_ENABLED": "false",
        **env,
    })
    with open(log, "wb") as output:
        process = subprocess.Popen([PREFECT, *args], env=process_env, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=tmp, start_new_session=True)
    try:
        yield process, log
    finally:
        stop(process)


@contextmanager
def prefect_server(tmp: Path, env: Mapping[str, str] = {}, wait: bool = True,
                   args: Sequence[str] = ()) -> Iterator[PrefectServer]:
    """Start a server with `env` on top of a clean environment; wait=False returns while it starts.
    `args` go after `prefect server start` (e.g. --no-services)."""
    port = free_port()
    command = ["server", "start", "--host", "127.0.0.1", "--port", str(port), *args]
    with prefect_process(tmp, command, env) as (process, log):
        server = PrefectServer(f"http://127.0.0.1:{port}/api", tmp / "prefect-home", log, process)
        if wait:
            server.wait_healthy()
        yield server


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, to the process group this helper started (the server forks its services)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
