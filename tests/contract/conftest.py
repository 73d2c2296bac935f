"""Fixtures of the contract layer: the stand-in API server, reached through a kubeconfig as a user reaches a cluster."""

import pytest

from tests.contract.fakeapi import FakeApi


@pytest.fixture
def fakeapi(tmp_path, monkeypatch):
    """A started FakeApi; KUBECONFIG points at a kubeconfig whose current context `fakeapi` reaches it."""
    api = FakeApi().start()
    api.kubeconfig = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("KUBECONFIG", api.kubeconfig)
    yield api
    api.stop()
