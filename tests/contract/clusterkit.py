"""What the cluster contract tests share: names, a recorder for printed lines, and their fixtures.

Test modules import the fixtures by name, which is how pytest finds fixtures outside a conftest.
"""

import hashlib
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from kit import registry, rollout, workers
from tests.rendering import make_settings

NS = "prefect"
WORKERS = ("prefect-worker-prod-main", "prefect-worker-prod-secondary")


class Lines(list):
    """The lines a kit function prints, with actions to run the moment a given line appears (once), or every
    line that starts and ends so (each time, given the line)."""

    def __init__(self):
        super().__init__()
        self.hooks = {}
        self.shaped = []

    def on(self, line, action):
        self.hooks[line] = action

    def on_every(self, start, end, action):
        self.shaped.append((start, end, action))

    def __call__(self, line):
        self.append(line)
        if line in self.hooks:
            self.hooks.pop(line)()
        for start, end, action in self.shaped:
            if line.startswith(start) and line.endswith(end):
                action(line)


def migrations_succeed(api, lines: Lines) -> Lines:
    """Each migration Job the rollout creates completes at once, as the Job controller and a reachable database
    would make it (the stand-in runs no controller unless told)."""
    lines.on_every("job/prefect-migrate-", " created",
                   lambda line: api.job_succeeded(NS, line.split()[0].removeprefix("job/")))
    return lines


@pytest.fixture(autouse=True)
def discovery_cache(tmp_path, monkeypatch):
    """DynamicClient caches discovery under the temp dir: each test, and any `inv` it runs, gets its own.

    And no registry in this layer: a `--tag` is pinned to a digest made from its name, as a registry would
    answer, in this process; an `inv` the test runs finds no Docker engine and rolls the tag out unpinned.
    (tests/integration/test_doctor_registry.py pins through a real registry.)
    """
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(registry, "digest", lambda settings, tag: digest_of(tag))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def digest_of(tag: str) -> str:
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


class StandInPrefect:
    """The Prefect half of a rollout, played by the test, for the cluster contract tests (the real Prefect API
    is the integration tests'): it records when the rollout reaches it and what the cluster held then, and
    lists a worker for every running worker pod, ONLINE now, unless `connected` is False."""

    def __init__(self, api):
        self.api = api
        self.connected = True
        self.synced: list[dict] = []  # per sync: the pools and templates, and the worker Deployments that existed

    def __call__(self, k, out):
        return self._session()

    @contextmanager
    def _session(self):
        yield self

    def sync(self, declared, templates):
        deployments = [d["metadata"]["name"] for d in self.api.objects("Deployment", NS)]
        self.synced.append({"pools": declared, "templates": templates, "deployments": deployments})
        return [f"pools: {', '.join(pool.name for pool in declared)} made true (stand-in)"]

    def workers(self, pool):
        if not self.connected:
            return []
        now = datetime.now(timezone.utc)
        return [workers.Seen(pod["metadata"]["name"], True, now) for pod in self.api.objects("Pod", NS)
                if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]


@pytest.fixture(autouse=True)
def prefect(fakeapi, monkeypatch):
    """Every rollout of a contract test meets the stand-in Prefect half instead of the real API (autouse
    through tests/contract/conftest.py)."""
    stand_in = StandInPrefect(fakeapi)
    monkeypatch.setattr(rollout, "prefect_session", lambda settings, api_url, k, out: stand_in(k, out))
    return stand_in


@pytest.fixture
def settings():
    return make_settings()


@pytest.fixture
def deployed(fakeapi, settings):
    """A first rollout of tag v1 that got ready, then the controller off and the request log cleared."""
    fakeapi.controller(True)
    rollout.rollout(settings, tag="v1", timeout=10, out=Lines())
    fakeapi.controller(False)
    fakeapi.clear_requests()
    return fakeapi
