"""The server pod's login proxy on this machine: the rendered nginx.conf, served by Debian's nginx in front
of a real `prefect server start`, both on 127.0.0.1.

The config and the container's args are used as rendered, with one substitution: each of the proxy
container's mount paths becomes a folder of the test (filled as the kubelet fills the volume), and the two
ports of the pod become free ones. As root, nginx runs as the pod's uid 10001, so the folders must be
enough for it, as the emptyDir is in the pod.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kit import manifests, settings
from tests.integration.prefect_server import PrefectServer, prefect_server, stop
from tests.rendering import decoded
from tests.services import free_port, need_program

POD_UID = 10001
START_TIMEOUT = 20.0


def pod_of(objects: list[dict]) -> dict:
    return manifests.find(objects, "StatefulSet", settings.SERVER_NAME)["spec"]["template"]["spec"]


def container(objects: list[dict], name: str) -> dict:
    return next(c for c in pod_of(objects)["containers"] if c["name"] == name)


def port_of(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def resolve_env(container: dict, objects: list[dict]) -> dict[str, str]:
    """The environment Kubernetes would give this container, Secret references resolved."""
    env = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = decoded(manifests.find(objects, "Secret", ref["name"]), ref["key"]) if ref \
            else item["value"]
    return env


def fill_volume(volume: dict, objects: list[dict], folder: Path) -> None:
    """Write a Secret or ConfigMap volume's files as the kubelet does (items, or every key); emptyDirs stay empty."""
    for kind, source, name_field in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
        if source not in volume:
            continue
        obj = manifests.find(objects, kind, volume[source][name_field])
        items = volume[source].get("items") or [{"key": key, "path": key} for key in obj["data"]]
        for item in items:
            value = decoded(obj, item["key"]) if kind == "Secret" else obj["data"][item["key"]]
            (folder / item["path"]).write_text(value)


@dataclass
class Proxy:
    url: str
    server: PrefectServer
    root: Path
    access_log: Path
    process: subprocess.Popen

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


@contextmanager
def login_proxy(objects: list[dict], tmp: Path, server_env: dict[str, str] | None = None) -> Iterator[Proxy]:
    """Prefect with the server container's rendered environment, behind nginx with the rendered config."""
    nginx = need_program(shutil.which("nginx") or "/usr/sbin/nginx", "nginx")
    server_container, proxy = container(objects, "server"), container(objects, "proxy")
    env = resolve_env(server_container, objects)
    # The pod's paths (/data, /var/lib/prefect-ui, /home/prefect) are volumes there; here, temporary folders.
    env.update(HOME=str(tmp), PREFECT_SERVER_UI_STATIC_DIRECTORY=str(tmp / "ui"), PREFECT_SERVER_UI_ENABLED="true",
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
               **(server_env or {}))
    with prefect_server(tmp, env) as server:
        # Not under tmp: pytest's folders are private to root, and nginx runs as the pod's uid.
        root = Path(tempfile.mkdtemp(prefix="kit-proxy-"))
        try:
            with _nginx(nginx, objects, proxy, server_container, server, root) as running:
                yield running
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _nginx(nginx: str, objects: list[dict], proxy: dict, server_container: dict, server: PrefectServer,
           root: Path) -> Iterator[Proxy]:
    listen, upstream = free_port(), int(server.api_url.rsplit(":", 1)[1].split("/")[0])
    paths = {mount["mountPath"]: root / mount["name"] for mount in proxy["volumeMounts"]}
    ports = {f"listen {port_of(proxy, 'http')};": f"listen 127.0.0.1:{listen};",
             f"127.0.0.1:{port_of(server_container, 'prefect')}": f"127.0.0.1:{upstream}"}

    def local(text: str) -> str:
        for pod_value, local_value in {**{k: str(v) for k, v in paths.items()}, **ports}.items():
            text = text.replace(pod_value, local_value)
        return text

    volumes = {volume["name"]: volume for volume in pod_of(objects)["volumes"]}
    for mount in proxy["volumeMounts"]:
        folder = paths[mount["mountPath"]]
        folder.mkdir()
        fill_volume(volumes[mount["name"]], objects, folder)
    config = next(folder / "nginx.conf" for folder in paths.values() if (folder / "nginx.conf").exists())
    config.write_text(local(config.read_text()))
    access_log = root / "access.log"
    # stdout is the access log in the pod (kubectl logs -c proxy); here, a file the tests can read.
    output = open(access_log, "wb")
    as_pod = {}
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, POD_UID, POD_UID)
        as_pod = {"user": POD_UID, "group": POD_UID, "extra_groups": []}
    process = subprocess.Popen([nginx if arg == "nginx" else local(arg) for arg in proxy["args"]],
                               stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **as_pod)
    output.close()
    url = f"http://127.0.0.1:{listen}"
    try:
        _wait_until_answering(f"{url}/healthz", process, access_log)
        yield Proxy(url, server, root, access_log, process)
    finally:
        stop(process)


def _wait_until_answering(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not answer {url} within {START_TIMEOUT:.0f} s:\n{log.read_text(errors='replace')}")
