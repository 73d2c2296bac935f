"""The `fakeapi` fixture: a started stand-in, reached through a kubeconfig as a user reaches a cluster.

Conftests import it by name, which is how pytest finds a fixture outside a conftest.
"""

import pytest

from tests.standin import FakeApi


@pytest.fixture
def fakeapi(tmp_path, monkeypatch):
    """A started FakeApi; KUBECONFIG points at a kubeconfig whose current context `fakeapi` reaches it."""
    api = FakeApi().start()
    api.kubeconfig = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("KUBECONFIG", api.kubeconfig)
    yield api
    api.stop()
