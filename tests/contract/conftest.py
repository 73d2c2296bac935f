"""Fixtures of the contract layer: the stand-in API server, reached through a kubeconfig as a user reaches a cluster."""

from tests.standin.fixtures import fakeapi  # noqa: F401
