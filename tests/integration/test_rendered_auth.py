"""The rendered credentials against the real Prefect server that checks them (the login proxy's check of the
htpasswd line is proven with the whole server pod: test_server_pod.py)."""

import base64
import subprocess
import urllib.error
import urllib.request

import pytest

from kit import manifests
from tests.integration.prefect_server import PREFECT, clean_environment, prefect_server
from tests.integration.server_pod import resolve_env
from tests.rendering import render


def container_of(objects, kind, name):
    return manifests.find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]


def status_of(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def objects():
    return render()


@pytest.fixture(scope="module")
def server(objects, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    env = resolve_env(container_of(objects, "StatefulSet", "prefect-server"), objects)
    # The pod's paths (/data, /var/lib/prefect-ui, /home/prefect) are volumes there; here, temporary folders.
    env.update(HOME=str(tmp), PREFECT_SERVER_UI_STATIC_DIRECTORY=str(tmp / "ui"),
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp / 'prefect.db'}")
    with prefect_server(tmp, env) as running:
        yield running


def test_server_refuses_the_api_without_credentials(server):
    assert status_of(f"{server.api_url}/admin/version") == 401


def test_server_refuses_a_wrong_password(server):
    assert status_of(f"{server.api_url}/admin/version", "admin:not-the-password") == 401


def test_server_accepts_the_rendered_auth_string(server, objects):
    auth_string = resolve_env(container_of(objects, "Deployment", "prefect-worker-prod-main"),
                              objects)["PREFECT_API_AUTH_STRING"]
    assert status_of(f"{server.api_url}/admin/version", auth_string) == 200


def test_probe_paths_need_no_credentials(server):
    assert status_of(f"{server.api_url}/health") == 200
    assert status_of(f"{server.api_url}/ready") == 200


def test_prefect_cli_with_the_worker_environment_talks_to_the_server(server, objects):
    worker_env = resolve_env(container_of(objects, "Deployment", "prefect-worker-prod-main"), objects)
    env = clean_environment({"PREFECT_API_URL": server.api_url, "HOME": str(server.home),
                             "PREFECT_HOME": str(server.home),
                             "PREFECT_API_AUTH_STRING": worker_env["PREFECT_API_AUTH_STRING"]})
    listed = subprocess.run([PREFECT, "work-pool", "ls"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    del env["PREFECT_API_AUTH_STRING"]
    refused = subprocess.run([PREFECT, "work-pool", "ls"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
