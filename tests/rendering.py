"""Valid settings to start from, and the objects rendered for them (in the style of Airflow's render_chart)."""

import base64
import re

from kit import manifests, settings

VALID = {
    "REGISTRY": "internal-cr:9999",
    "IMAGE_NAME": "prefect-core",
    "IMAGE_PREFECT_VERSION": "3.9.1",
    "NAMESPACE": "prefect",
    "PUBLIC_HOST": "prefect.company.local",
    "LOGIN_USER": "admin",
    "LOGIN_PASSWORD": "correct-horse-battery",
}
IMAGE = "internal-cr:9999/prefect-core:abc1234@sha256:" + "0" * 64


def env_text(**overrides: str) -> str:
    values = {**VALID, **overrides}
    return "".join(f"{key}={value}\n" for key, value in values.items() if value is not None)


def make_settings(**overrides: str) -> settings.Settings:
    return settings.parse(env_text(**overrides))


def render(**overrides: str) -> list[dict]:
    return manifests.render(make_settings(**overrides), IMAGE)


def decoded(secret: dict, key: str) -> str:
    """A value of a rendered Secret, as the pod reading it sees it."""
    return base64.b64decode(secret["data"][key]).decode()


def container_env(container: dict, objects: list[dict], pod_name: str = "") -> dict[str, str]:
    """The environment the kubelet gives this container: Secret references resolved from the rendered
    Secrets, the pod's own name where the downward API asks for it."""
    env = {}
    for item in container.get("env", []):
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = decoded(manifests.find(objects, "Secret", ref["name"]), ref["key"])
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
        else:
            env[item["name"]] = item["value"]
    return env


def container_args(container: dict, env: dict[str, str]) -> list[str]:
    """The args with $(VAR) expanded from the container's environment, as the kubelet expands them."""
    args = []
    for arg in container["args"]:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        args.append(arg)
    return args


def as_process_pools(text: str) -> str:
    """A pools file with its kubernetes pools made process pools: the one-line change the README promises."""
    return re.sub(r"^(\s+)type: kubernetes$", r"\1type: process", text, flags=re.M)
