"""Services the integration tests need, found through the KIT_TEST_* variables that .ci/run exports,
the local ports the tests' own servers listen on, and what the tests leave on the shared Docker engine.

Outside CI a missing service skips the test; in CI (CI=true) it fails it, so a broken service start
can never pass as a green run.
"""

import os
import socket

import pytest


def need(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    message = f"{what} is not available: set {variable} (bash .ci/run starts it and sets it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def need_program(path: str, what: str) -> str:
    if os.path.exists(path):
        return path
    message = f"{what} is not installed at {path} (bash .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nowhere_kubeconfig(path):
    """A kubeconfig whose API server nobody listens on: a test shows with it that nothing asked the cluster."""
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: nowhere
clusters: [{{name: nowhere, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]
users: [{{name: nobody, user: {{token: x}}}}]
contexts: [{{name: nowhere, context: {{cluster: nowhere, user: nobody}}}}]
""")
    return path


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def docker_made(kind: str, reference: str) -> None:
    """Note something a test made on the Docker engine, for CI's stop step to remove exactly that and nothing of
    anyone else who uses the engine (.ci/services/10-docker). kind: `container` (an id), `tag` (a name:tag only
    this run uses) or `image` (an id: removed with the one tag it may still have, e.g. a shared :latest that
    still points at it). Outside CI (no KIT_TEST_DOCKER_MADE) nothing is noted."""
    path = os.environ.get("KIT_TEST_DOCKER_MADE")
    if path:
        with open(path, "a") as made:
            made.write(f"{kind} {reference}\n")
