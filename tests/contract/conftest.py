"""Fixtures of the contract layer: the stand-in API server, reached through a kubeconfig as a user reaches a cluster,
and the stand-in Prefect half every rollout of this layer meets (the real one is the integration tests')."""

from tests.contract.clusterkit import prefect  # noqa: F401
from tests.standin.fixtures import fakeapi  # noqa: F401
