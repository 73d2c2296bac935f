"""What the cluster contract tests share: names, a recorder for printed lines, and their fixtures.

Test modules import the fixtures by name, which is how pytest finds fixtures outside a conftest.
"""

import tempfile

import pytest

from kit import rollout
from tests.rendering import make_settings

NS = "prefect"
WORKERS = ("prefect-worker-prod-main", "prefect-worker-prod-secondary")


class Lines(list):
    """The lines a kit function prints, with actions to run the moment a given line appears."""

    def __init__(self):
        super().__init__()
        self.hooks = {}

    def on(self, line, action):
        self.hooks[line] = action

    def __call__(self, line):
        self.append(line)
        if line in self.hooks:
            self.hooks.pop(line)()


@pytest.fixture(autouse=True)
def discovery_cache(tmp_path, monkeypatch):
    """DynamicClient caches discovery under the temp dir: each test, and any `inv` it runs, gets its own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


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
