"""The rendered server pod on this machine: a real `prefect server start` and the login proxy (Debian's nginx
with the rendered nginx.conf, as the pod's uid 10001), each with its container's rendered args and environment,
in a network namespace of their own that plays the pod's network.

What the render leaves to the kubelet is done here the kubelet's way: each volume a container mounts is a
folder filled from the rendered Secret or ConfigMap (its items, or every key), and the only substitution in
the rendered text (args, environment, nginx.conf) is that each mount path becomes its folder. The ports are
the pod's own: the namespace has its own loopback and address (POD_IP). Its firewall is the rendered
NetworkPolicy's: from outside, only the container ports the policy admits, by name, are open; everything
else is refused, as for a peer that the policy's `from` admits (the route's data plane, the workers).

Needs root (namespaces, and running as another uid), `ip` and `iptables`: .ci/run installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kit import manifests, settings
from tests.integration.prefect_server import PREFECT, clean_environment, stop
from tests.rendering import container_env, decoded
from tests.services import need_program

POD_UID = 10001
# Run as the pod's uid. Not Prefect: the test venv's interpreter may live under root's home, which another uid
# cannot reach (the image tests run Prefect as 10001 in the real image).
AS_POD_UID = ("nginx",)
START_TIMEOUT = 180.0


def pod_of(objects: list[dict]) -> dict:
    return manifests.find(objects, "StatefulSet", settings.SERVER_NAME)["spec"]["template"]["spec"]


def container(objects: list[dict], name: str) -> dict:
    return next(c for c in pod_of(objects)["containers"] if c["name"] == name)


def container_port(objects: list[dict], name: str) -> int:
    """A named port of the pod, as a Service's targetPort or a NetworkPolicy port resolves it."""
    return next(port["containerPort"] for c in pod_of(objects)["containers"] for port in c.get("ports", [])
                if port["name"] == name)


def admitted_ports(objects: list[dict]) -> list[int]:
    policy = manifests.find(objects, "NetworkPolicy", settings.SERVER_NAME)
    return sorted({container_port(objects, port["port"]) if isinstance(port["port"], str) else port["port"]
                   for rule in policy["spec"]["ingress"] for port in rule.get("ports", [])})


def resolve_env(container: dict, objects: list[dict]) -> dict[str, str]:
    """The environment Kubernetes would give this container, Secret references resolved."""
    return container_env(container, objects)


def fill_volume(volume: dict, objects: list[dict], folder: Path, local: Callable[[str], str]) -> None:
    """A Secret or ConfigMap volume's files as the kubelet writes them (a ConfigMap's text made local); an emptyDir
    stays empty."""
    for kind, source, name_field in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
        if source not in volume:
            continue
        obj = manifests.find(objects, kind, volume[source][name_field])
        items = volume[source].get("items") or [{"key": key, "path": key} for key in obj["data"]]
        for item in items:
            value = decoded(obj, item["key"]) if kind == "Secret" else local(obj["data"][item["key"]])
            (folder / item["path"]).write_text(value)


@dataclass
class Pod:
    ip: str
    namespace: str
    root: Path
    logs: dict[str, Path]

    def url(self, port_name: str, objects: list[dict]) -> str:
        return f"http://{self.ip}:{container_port(objects, port_name)}"

    def log(self, container_name: str) -> str:
        return self.logs[container_name].read_text(errors="replace")

    def run(self, *command: str, **options) -> subprocess.CompletedProcess:
        """A command inside the pod's network (as another container of the pod would run it)."""
        return subprocess.run(["ip", "netns", "exec", self.namespace, *command], **options)


@contextmanager
def server_pod(objects: list[dict]) -> Iterator[Pod]:
    if os.geteuid() != 0:
        message = "the server pod test needs root (network namespaces, the pod's uid); bash .ci/run runs as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for program in ("ip", "iptables", "setpriv"):
        need_program(shutil.which(program) or f"/usr/sbin/{program}", program)
    nginx = need_program(shutil.which("nginx") or "/usr/sbin/nginx", "nginx")
    programs = {"prefect": PREFECT, "nginx": nginx}
    # Not under pytest's folders, which are private to root: the containers run as the pod's uid.
    root = Path(tempfile.mkdtemp(prefix="kit-pod-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        pod = stack.enter_context(_network(admitted_ports(objects), root))
        pod_spec = pod_of(objects)
        volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
        # The data volume comes from the StatefulSet's claim template: a folder too.
        paths = {mount["mountPath"]: root / "volumes" / mount["name"]
                 for c in pod_spec["containers"] for mount in c.get("volumeMounts", [])}
        # One pass, longest path first, whole path segments only: /tmp must not touch /tmp/kit-pod-….
        mounted = re.compile("(?:" + "|".join(re.escape(path) for path in sorted(paths, key=len, reverse=True))
                             + r")(?![\w.-])")

        def local(text: str) -> str:
            return mounted.sub(lambda match: str(paths[match.group(0)]), text)

        for folder in paths.values():
            folder.mkdir(parents=True, exist_ok=True)
            fill_volume(volumes.get(folder.name, {}), objects, folder, local)
        for path in [root, *root.rglob("*")]:
            os.chown(path, POD_UID, POD_UID)
        for spec in pod_spec["containers"]:
            env = clean_environment({name: local(value) for name, value in resolve_env(spec, objects).items()})
            command = [programs.get(spec["args"][0], spec["args"][0]), *(local(arg) for arg in spec["args"][1:])]
            log = pod.logs[spec["name"]] = root / f"{spec['name']}.log"
            log.touch()
            # Its own log, as a container's stdout is: nginx opens /dev/stdout again, as the pod's uid.
            os.chown(log, POD_UID, POD_UID)
            as_pod = ["setpriv", f"--reuid={POD_UID}", f"--regid={POD_UID}", "--clear-groups"] \
                if spec["args"][0] in AS_POD_UID else []
            with open(log, "wb") as output:
                process = subprocess.Popen(["ip", "netns", "exec", pod.namespace, *as_pod, *command], env=env,
                                           stdout=output, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
            stack.callback(stop, process)
        _wait_ready(pod, objects)
        yield pod


@contextmanager
def _network(admitted: list[int], root: Path) -> Iterator[Pod]:
    """A network namespace with one veth to this machine: the node's end 10.231.N.1, the pod's 10.231.N.2."""
    suffix = uuid.uuid4().hex[:6]
    namespace, node_end, pod_end = f"kit-pod-{suffix}", f"kpn{suffix}", f"kpp{suffix}"
    subnet = f"10.231.{int(suffix[:2], 16)}"
    commands = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", node_end, "type", "veth", "peer", "name", pod_end],
        ["ip", "link", "set", pod_end, "netns", namespace],
        ["ip", "addr", "add", f"{subnet}.1/30", "dev", node_end],
        ["ip", "link", "set", node_end, "up"],
        ["ip", "netns", "exec", namespace, "ip", "addr", "add", f"{subnet}.2/30", "dev", pod_end],
        ["ip", "netns", "exec", namespace, "ip", "link", "set", pod_end, "up"],
        ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
        # The NetworkPolicy: inside the pod everything is open; from outside, only the admitted ports.
        ["ip", "netns", "exec", namespace, "iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        *(["ip", "netns", "exec", namespace, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j",
           "ACCEPT"] for port in admitted),
        ["ip", "netns", "exec", namespace, "iptables", "-A", "INPUT", "-p", "tcp", "-j", "REJECT", "--reject-with",
         "tcp-reset"],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield Pod(f"{subnet}.2", namespace, root, {})
    finally:
        subprocess.run(["ip", "link", "del", node_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _wait_ready(pod: Pod, objects: list[dict]) -> None:
    """Until Prefect answers through the proxy, as the pod's two readiness probes together say."""
    url = f"{pod.url('http', objects)}/api/health"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    logs = "\n".join(f"--- {name}:\n{pod.log(name)[-3000:]}" for name in pod.logs)
    raise RuntimeError(f"the server pod did not answer {url} within {START_TIMEOUT:.0f} s:\n{logs}")
