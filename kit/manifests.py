"""Render the checked-in manifests for one deployment: parse them, change a few fields, add the Secrets.

The files under manifests/ stay valid for `kubectl apply -f`; rendering edits parsed objects (never
text) and touches only what differs between deployments: namespace, image, the route (kit.routes), the
server of the database mode (kit.server), proxies, the UI choice, a checksum of the configuration each pod
consumes, and the workers of config/pools.yaml (kit.workers).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from pathlib import Path

import yaml

from kit import pool_config, routes, secrets, server, workers
from kit.kinds import APPLY_ORDER, POD_KINDS, ROUTE_KINDS
from kit.pool_config import Pool
from kit.settings import Settings

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifests"
CHECKSUM_ANNOTATION = "prefect-kit/config-checksum"


def load(directory: Path = MANIFEST_DIR) -> list[dict]:
    """Every object of every *.yaml file in the directory, as checked in."""
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        objects += [obj for obj in yaml.safe_load_all(path.read_text()) if obj]
    return objects


def render(settings: Settings, image: str, pools: tuple[Pool, ...] | None = None,
           directory: Path = MANIFEST_DIR, redis_image: str | None = None) -> list[dict]:
    """Everything a rollout applies for these settings and pools (default: config/pools.yaml), in apply order.

    `redis_image`: the embedded Redis's image as the rollout pinned it (default: REDIS_IMAGE as it is).
    """
    declared = pool_config.load() if pools is None else pools
    folders = routes.folders(directory, settings) + server.folders(directory, settings)
    checked_in = [obj for folder in folders for obj in load(folder)]
    objects = [obj for obj in copy.deepcopy(checked_in) if routes.wanted(obj, settings)]
    objects = server.expand(workers.expand(objects, declared, settings.namespace), settings)
    objects += secrets.render_secrets(settings)
    for obj in objects:
        _render_object(obj, settings, (redis_image or settings.redis_image) if server.is_redis(obj) else image)
    configuration = [obj for obj in objects if obj["kind"] in ("Secret", "ConfigMap")]
    for obj in objects:
        if obj["kind"] in POD_KINDS:
            template = obj["spec"]["template"]
            template["metadata"].setdefault("annotations", {})[CHECKSUM_ANNOTATION] = config_checksum(
                template["spec"], configuration, salt=secrets.salt_seed(settings))
    server.name_migration(objects)
    return sorted(objects, key=lambda obj: APPLY_ORDER.index(obj["kind"]))


def render_config(settings: Settings, directory: Path = MANIFEST_DIR) -> list[dict]:
    """Only the Namespace and the Secrets, what `inv secrets` applies: neither image nor pools are needed for them."""
    return [obj for obj in render(settings, image="", pools=(), directory=directory)
            if obj["kind"] in ("Namespace", "Secret")]


def _render_object(obj: dict, settings: Settings, image: str) -> None:
    kind, metadata = obj["kind"], obj["metadata"]
    if kind == "Namespace":
        metadata["name"] = settings.namespace
        return
    metadata["namespace"] = settings.namespace
    if kind in POD_KINDS:
        # Redis speaks no HTTP: the company proxy would only restart it when it changes.
        render_pod(obj["spec"]["template"]["spec"], settings, image, proxies=not server.is_redis(obj))
    elif kind in ROUTE_KINDS:
        routes.render_route(obj, settings)
    elif kind == "NetworkPolicy":
        routes.admit_route(obj["spec"], settings)


def render_pod(pod: dict, settings: Settings, image: str, proxies: bool = True) -> None:
    """What every pod of the kit gets, flow-run pods too: the image, the pull Secret, the proxies."""
    if settings.has_registry_credentials:
        pod["imagePullSecrets"] = [{"name": secrets.PULL}]
    for container in pod["containers"]:
        container["image"] = image
        container["imagePullPolicy"] = pull_policy(image)
        env = container.setdefault("env", [])
        if _has_env(env, "PREFECT_SERVER_UI_V2_ENABLED"):
            _set_env(env, "PREFECT_SERVER_UI_V2_ENABLED", value="true" if settings.ui_v2 else "false")
        # From the Secret, as a proxy URL may carry a password; curl and some Python tools read only the
        # lowercase names.
        for name, key in (secrets.proxy_keys(settings) if proxies else {}).items():
            for variable in (name, name.lower()):
                _set_env(env, variable, valueFrom={"secretKeyRef": {"name": secrets.CONFIG, "key": key}})


def pull_policy(image: str) -> str:
    """IfNotPresent for an image pinned by digest: the digest names one set of bytes, so a node that has them
    need not ask the registry again (a registry that is down then stops no restart). A tag may move: Always."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def _has_env(env: list[dict], name: str) -> bool:
    return any(item["name"] == name for item in env)


def _set_env(env: list[dict], name: str, **source: object) -> None:
    """Set a variable to a value=… or valueFrom=…, in place when the manifest already has it."""
    for item in env:
        if item["name"] == name:
            item.clear()
            item.update(name=name, **source)
            return
    env.append({"name": name, **source})


def config_checksum(pod: dict, configuration: list[dict], salt: str) -> str:
    """A hash of the Secret and ConfigMap values this pod consumes, so it restarts exactly when they change.

    Consumed: variables from secretKeyRef, the pull Secret, and the Secrets and ConfigMaps its volumes mount
    (the proxy's config and htpasswd). Whoever may read Deployments or Pods reads this annotation, often
    without the right to read Secrets: a fast hash would let them test password guesses offline, so it is
    scrypt, salted per deployment.
    """
    data = {(obj["kind"], obj["metadata"]["name"]): obj.get("data", {}) for obj in configuration}
    used: set[tuple[str, str, str]] = set()
    for container in pod["containers"]:
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                used.add(("Secret", ref["name"], ref["key"]))
    for volume in pod.get("volumes", []):
        for kind, source, name_field in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
            if source in volume:
                name = volume[source][name_field]
                keys = [item["key"] for item in volume[source].get("items", [])] or data.get((kind, name), {})
                used |= {(kind, name, key) for key in keys}
    for pull in pod.get("imagePullSecrets", []):
        used |= {("Secret", pull["name"], key) for key in data.get(("Secret", pull["name"]), {})}
    # Secrets keep the lines of earlier versions, ConfigMaps come after them: an upgrade of the kit rolls only
    # the pods whose configuration changed.
    prefix = {"Secret": "", "ConfigMap": "configmap:"}
    consumed = "".join(f"{prefix[kind]}{name}/{key}={data.get((kind, name), {}).get(key, '')}\n"
                       for kind, name, key in sorted(used, key=lambda item: (item[0] != "Secret", *item[1:])))
    return _slow_hash(consumed, salt)


@functools.lru_cache(maxsize=64)
def _slow_hash(text: str, salt: str) -> str:
    return hashlib.scrypt(text.encode(), salt=salt.encode(), n=2**14, r=8, p=1, dklen=32).hex()


def find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"{kind}/{name}")


def to_yaml(objects: list[dict], redact: bool = True) -> str:
    shown = [secrets.redact(obj) for obj in objects] if redact else objects
    return yaml.safe_dump_all(shown, sort_keys=False, default_flow_style=False)


def write(objects: list[dict], directory: Path) -> list[Path]:
    """One file per object, numbered in apply order, readable by the owner only (they hold Secrets).

    `kubectl apply -f DIR` reads them in the same order.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("[0-9][0-9]-*.yaml"):
        stale.unlink()
    paths = []
    for number, obj in enumerate(objects):
        path = directory / f"{number:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            yaml.safe_dump(obj, stream, sort_keys=False)
        paths.append(path)
    return paths
