"""The rendered credentials against the real programs that check them: Prefect's server and nginx."""

import base64
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from kit import manifests
from tests.integration.prefect_server import PREFECT, clean_environment, prefect_server, stop
from tests.rendering import VALID, container_env, decoded, render
from tests.services import free_port, need_program


def resolve_env(container: dict, objects: list[dict]) -> dict[str, str]:
    """The environment Kubernetes would give this container, Secret references resolved."""
    return container_env(container, objects)


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


@pytest.fixture(scope="module")
def nginx(objects, tmp_path_factory):
    """nginx checking the rendered htpasswd line, as ingress-nginx does with the `auth` key."""
    binary = need_program(shutil.which("nginx") or "/usr/sbin/nginx", "nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    (tmp / "htpasswd").write_text(decoded(manifests.find(objects, "Secret", "prefect-login-auth"), "auth"))
    (tmp / "www").mkdir()
    (tmp / "www" / "index.html").write_text("ok")
    port = free_port()
    # As root, nginx's workers switch to an unprivileged user that could not read the temporary folder.
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(f"""
        {user}
        daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
        events {{}}
        http {{
            access_log off;
            client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
            uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
            server {{
                listen 127.0.0.1:{port};
                # A file, not `return`: return answers before nginx's access phase would check the password.
                location / {{ auth_basic Prefect; auth_basic_user_file {tmp}/htpasswd; root {tmp}/www; }}
            }}
        }}
    """)
    process = subprocess.Popen([binary, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
            except urllib.error.HTTPError:
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"nginx exited: {(tmp / 'error.log').read_text()}")
                subprocess.run(["sleep", "0.1"])
        yield url
    finally:
        stop(process)


def test_nginx_asks_for_credentials(nginx):
    assert status_of(nginx) == 401


def test_nginx_accepts_the_env_user_and_password(nginx):
    assert status_of(nginx, f"{VALID['LOGIN_USER']}:{VALID['LOGIN_PASSWORD']}") == 200


def test_nginx_refuses_a_wrong_password(nginx):
    assert status_of(nginx, f"{VALID['LOGIN_USER']}:wrong-password-123") == 401
