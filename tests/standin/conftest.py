"""Fixtures of the stand-in's own tests: the server, the real client reaching it, and a namespace to write into."""

import pytest
from kubernetes import config
from kubernetes.dynamic import DynamicClient

from tests.standin.fixtures import fakeapi  # noqa: F401
from tests.standin.samples import NS


@pytest.fixture
def api_client(fakeapi):  # noqa: F811 - the fixture imported above
    return config.new_client_from_config(config_file=fakeapi.kubeconfig, context=fakeapi.context)


@pytest.fixture
def dyn(api_client, tmp_path):
    return DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))


@pytest.fixture
def namespace(fakeapi):  # noqa: F811
    return fakeapi.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
