"""Services the integration tests need, found through the KIT_TEST_* variables that .ci/run exports.

Outside CI a missing service skips the test; in CI (CI=true) it fails it, so a broken service start
can never pass as a green run.
"""

import os

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
