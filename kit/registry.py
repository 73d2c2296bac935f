"""What the registry holds, asked through the Docker engine: whether it answers, whether the login is accepted,
and the digest a tag points at. (kit/image.py builds and pushes; this module only asks.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kit.errors import UserError
from kit.settings import Settings

# The registry is asked on the doctor's short clock: an engine that hangs must not hang the check.
TIMEOUT = 10
_ABSENT = re.compile(r"manifest unknown|not found|name unknown", re.I)
PROBE_TAG = "prefect-kit-doctor-probe"


@dataclass(frozen=True)
class RegistryState:
    daemon_problem: str = ""  # no engine to ask: nothing else is known
    logged_in: bool = False
    digest: str = ""  # of the tag asked for; empty when the registry does not have it


def state(settings: Settings, tag: str | None) -> RegistryState:
    """Ask the registry of these settings about one tag, or with no tag only whether it answers."""
    import docker

    try:
        api = docker.from_env(timeout=TIMEOUT).api
        api.ping()
    except (docker.errors.DockerException, OSError) as error:
        return RegistryState(daemon_problem=f"no Docker engine answers ({_one_line(error)})")
    auth = _auth(settings)
    if auth:
        host = settings.registry.split("/", 1)[0]
        try:
            api.login(registry=host, reauth=True, **auth)
        except docker.errors.APIError as error:
            raise UserError(f"REGISTRY_USER: login to {host} as {settings.registry_user} refused "
                            f"({_one_line(error.explanation or error)}); check REGISTRY_USER and REGISTRY_PASSWORD, "
                            "or REGISTRY") from None
    # Asking for a tag no build has tells a registry that answers from one that does not.
    found = _digest(api, settings, tag or PROBE_TAG, auth)
    return RegistryState(logged_in=auth is not None, digest=found if tag else "")


def digest(settings: Settings, tag: str) -> str | None:
    """The digest the registry holds for repository:tag, "" when it has no such tag, None when there is no
    Docker engine to ask it through."""
    import docker

    try:
        api = docker.from_env(timeout=TIMEOUT).api
        api.ping()
    except (docker.errors.DockerException, OSError):
        return None
    return _digest(api, settings, tag, _auth(settings))


def pin(settings: Settings, reference: str) -> tuple[str, str]:
    """`reference@sha256:…` when the registry tells the digest of `reference` (asked through the engine, with the
    registry login when it is REGISTRY's host), else the reference as it is and why it could not be pinned."""
    import docker

    if "@" in reference:
        return reference, ""
    first = reference.split("/", 1)[0]
    host = first if "/" in reference and ("." in first or ":" in first or first == "localhost") else "docker.io"
    auth = _auth(settings) if host == settings.registry.split("/", 1)[0] else None
    try:
        found = docker.from_env(timeout=TIMEOUT).api.inspect_distribution(reference, auth_config=auth)
    except docker.errors.APIError as error:
        return reference, f"{host} did not tell its digest ({_one_line(error.explanation or error)})"
    except (docker.errors.DockerException, OSError) as error:
        return reference, f"no Docker engine answers to ask {host} ({_one_line(error)})"
    return f"{reference}@{found['Descriptor']['digest']}", ""


def _digest(api, settings: Settings, tag: str, auth: dict | None) -> str:
    import docker

    reference = f"{settings.image_repository}:{tag}"
    try:
        found = api.inspect_distribution(reference, auth_config=auth)
    except docker.errors.APIError as error:
        reason = _one_line(error.explanation or error)
        if error.status_code == 404 or _ABSENT.search(reason):
            return ""
        raise UserError(f"REGISTRY: cannot ask {settings.registry} about {reference} ({reason}); check REGISTRY, "
                        "that the registry runs, and REGISTRY_USER/REGISTRY_PASSWORD if it needs a login") from None
    return found["Descriptor"]["digest"]


def _auth(settings: Settings) -> dict | None:
    if not settings.has_registry_credentials:
        return None
    return {"username": settings.registry_user, "password": settings.registry_password}


def _one_line(error) -> str:
    return " ".join(str(error).split())
