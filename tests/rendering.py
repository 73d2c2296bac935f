"""Valid settings to start from, and the objects rendered for them (in the style of Airflow's render_chart)."""

import base64

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
