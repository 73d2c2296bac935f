"""The backup and restore scripts of kit/backup.py, run as the pod runs them: in a container of the Prefect
image (uid 10001, read-only root, /tmp an emptyDir, the database on a volume at /data), next to a real Prefect
server writing to that database, and fed through `docker exec`'s stdin and stdout as the exec stream feeds them."""

import os
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from kit import backup
from tests.services import docker_made, free_port, need

START_TIMEOUT = 120


def docker(*args, stdin=None, check=True):
    engine = need("KIT_TEST_DOCKER", "a Docker engine")
    done = subprocess.run(["docker", "-H", engine, *args], input=stdin, capture_output=True, timeout=300)
    if check and done.returncode:
        raise AssertionError(f"docker {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done


def as_the_pod(volume, command, environment=(), name=None):
    """`docker run` with the pod's constraints: non-root, read-only root, tmpfs /tmp and HOME, host network;
    detached when named, else interactive (stdin in, stdout out) and removed after."""
    image = need("KIT_TEST_BASE_IMAGE", "the Prefect base image (or its stand-in)")
    options = ["--network", "host", "--read-only", "--user", "10001:10001", "--tmpfs", "/tmp",
               "--tmpfs", "/home/prefect", "-e", "HOME=/home/prefect", "-v", f"{volume}:/data"]
    options += [option for variable in environment for option in ("-e", variable)]
    options += ["-d", "--name", name] if name else ["--rm", "-i"]
    return ["run", *options, image, *command]


class Server:
    """`prefect server start` on the volume's SQLite database, in a container, as the server pod runs it."""

    def __init__(self, volume):
        self.volume, self.port, self.name = volume, free_port(), f"kit-backup-{uuid.uuid4().hex[:8]}"

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.port}/api"

    def start(self):
        environment = [f"PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///{backup.DATABASE}",
                       "PREFECT_SERVER_ANALYTICS_ENABLED=false", "PREFECT_SERVER_UI_ENABLED=false"]
        command = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        docker(*as_the_pod(self.volume, command, environment, name=self.name))
        docker_made("container", self.name)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            running = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
            assert running == b"true" and time.monotonic() < deadline, self.log()
            time.sleep(0.5)

    def _healthy(self):
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2):
                return True
        except OSError:
            return False

    def log(self):
        return docker("logs", self.name, check=False).stderr.decode(errors="replace")[-3000:]

    def stop(self):
        docker("rm", "-f", self.name, check=False)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """The data volume: a directory the pod's uid owns, as fsGroup makes it."""
    data = tmp_path_factory.mktemp("data")
    os.chown(data, 10001, 10001)
    return data


@pytest.fixture(scope="module")
def server(volume):
    """One server for the module (a start costs tens of seconds on a busy machine); the last test restarts it."""
    running = Server(volume)
    running.start()
    yield running
    running.stop()


def create_runs(url, count, tag):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    @flow(name="backed-up")
    def backed_up():
        pass

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return [client.create_flow_run(backed_up, name=f"{tag}-{index}").name for index in range(count)]


def run_names(url):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return {run.name for run in client.read_flow_runs(limit=200)}


def restore_command(saved):
    return ["python", "-c", backup.RESTORE_SCRIPT, str(saved.stat().st_size)]


def take_backup(server, target):
    done = docker("exec", "-i", server.name, "python", "-c", backup.BACKUP_SCRIPT)
    target.write_bytes(done.stdout)
    return target


def test_a_backup_taken_while_runs_are_written_is_intact(server, tmp_path):
    create_runs(server.api_url, 5, "before")
    writing, written = threading.Event(), []

    def writer():
        while not writing.is_set():
            written.extend(create_runs(server.api_url, 3, f"during-{len(written)}"))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        copies = [take_backup(server, tmp_path / f"copy-{index}.db") for index in range(3)]
    finally:
        writing.set()
        thread.join(60)
    assert written, "no flow run was written while the backups ran"
    for copy in copies:
        backup.check_file(copy)  # integrity_check "ok", and Prefect's tables


def test_a_truncated_stream_leaves_the_database_in_place(server, volume, tmp_path):
    saved = take_backup(server, tmp_path / "saved.db")
    before = (volume / "prefect.db").stat().st_ino

    short = docker(*as_the_pod(volume, restore_command(saved)),
                   stdin=saved.read_bytes()[:4096], check=False)
    assert short.returncode != 0 and b"the stream ended" in short.stderr
    assert (volume / "prefect.db").stat().st_ino == before, "the database file was replaced"
    assert not (volume / "prefect.db.restoring").exists()


def test_a_restore_brings_back_what_the_backup_held_and_drops_what_came_after(server, volume, tmp_path):
    create_runs(server.api_url, 2, "before")
    saved = take_backup(server, tmp_path / "saved.db")
    create_runs(server.api_url, 2, "after")
    server.stop()

    restored = docker(*as_the_pod(volume, restore_command(saved)),
                      stdin=saved.read_bytes(), check=False)
    assert restored.returncode == 0, restored.stderr.decode()
    assert not (volume / "prefect.db-wal").exists()

    server.start()
    names = run_names(server.api_url)
    assert {"before-0", "before-1"} <= names
    assert not {"after-0", "after-1"} & names
