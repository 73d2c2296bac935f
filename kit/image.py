"""Build and push the image through the Docker SDK.

Pure parts (build args, the build context) are plain functions, and kit.streams reads the daemon's JSON
streams; `build` and `push` are the edges that talk to the daemon, showing progress through kit.progress.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kit import ROOT, progress, release
from kit.errors import UserError
from kit.settings import Settings
from kit.streams import BuildLog, one_line, push_hint, read_push

DOCKERFILE = "image/Dockerfile"
# Only what the Dockerfile copies is sent to the daemon: .env, .git and .kit never leave the machine.
CONTEXT = ("image/Dockerfile", "image/requirements", "image/constraints.txt", "config/krb5.conf",
           "config/ca-certificates", "flows")
LATEST = "latest"


def build_args(settings: Settings) -> dict[str, str]:
    """The Dockerfile's build args for these settings (proxies in both spellings: apt reads lower case)."""
    args = {
        "PREFECT_VERSION": settings.image_prefect_version,
        "DRIVERS": ",".join(settings.image_drivers),
        "EXTRAS": ",".join(settings.image_extras),
        "TIMEZONE": settings.timezone,
    }
    if settings.pip_index_url:
        args["PIP_INDEX"] = settings.pip_index_url
    for name, value in (("HTTP_PROXY", settings.http_proxy), ("HTTPS_PROXY", settings.https_proxy),
                        ("NO_PROXY", settings.no_proxy)):
        if value:
            args[name] = args[name.lower()] = value
    return args


def build_context(root: Path) -> io.BytesIO:
    """A tar of the files the Dockerfile copies, readable by the image's non-root user whatever the
    local umask (a flow saved 0600 would otherwise be unreadable for uid 10001)."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name)
        if "__pycache__" in name.parts or name.suffix == ".pyc":
            return None
        if name.parent == Path("config/ca-certificates") and name.suffix != ".crt":
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative in CONTEXT:
            path = root / relative
            if not path.exists():
                raise UserError(f"{relative}: missing from {root}; the image build needs it (restore it from git)")
            tar.add(path, arcname=relative, filter=normalise)
    buffer.seek(0)
    return buffer


def build(settings: Settings, root: Path, tag: str = "", no_cache: bool = False, platform: str = "",
          verbose: bool = False, echo: Callable[[str], None] | None = None) -> release.Build:
    """Build image/Dockerfile, tag it <repository>:<tag> and :latest, and record the build.

    Progress goes to the terminal (live) or stdout (plain lines), or as plain lines to echo when given.
    """
    tag = tag or release.commit_tag(root)
    repository = settings.image_repository
    api = _client()
    context = build_context(root)
    started = time.monotonic()
    stream = api.build(fileobj=context, custom_context=True, dockerfile=DOCKERFILE, tag=f"{repository}:{tag}",
                       buildargs=build_args(settings), nocache=no_cache, rm=True, forcerm=True,
                       network_mode="host", platform=platform or settings.image_platform, decode=True)
    with progress.build_view(echo, verbose) as view:
        image_id = BuildLog(view, settings.source).read(_guarded(stream, "image build"))
    api.tag(image_id, repository, LATEST)
    built = release.Build(repository, tag, prefect_version=settings.image_prefect_version,
                          commit=release.commit_sha(root))
    release.write_record(built, _record_path(root))
    (echo or print)(f"built {repository}:{tag} (and :{LATEST}) in {progress.duration(time.monotonic() - started)}; "
                    "next: inv push")
    return built


def push(settings: Settings, root: Path, echo: Callable[[str], None] | None = None) -> release.Build:
    """Push the recorded build's tag and :latest; record and return the build pinned by its digest, and add it
    to the release history."""
    record_path = _record_path(root)
    recorded = release.read_record(record_path)
    if not recorded or recorded.repository != settings.image_repository:
        raise UserError(f"{settings.image_repository}: no build of it recorded in {record_path}; "
                        "run `inv build` first (or `inv build push`)")
    api = _client()
    auth = _login(api, settings) if settings.has_registry_credentials else None
    digest = ""
    for tag in (recorded.tag, LATEST):
        reference = f"{recorded.repository}:{tag}"
        stream = api.push(recorded.repository, tag=tag, auth_config=auth, stream=True, decode=True)
        with progress.push_view(echo) as view:
            pushed = read_push(_guarded(stream, f"push of {reference}"), reference, view, settings.source)
        digest = digest or pushed
    built = release.pushed(recorded, digest, record_path)
    (echo or print)(f"pushed {built.reference}")
    return built


def _record_path(root: Path) -> Path:
    """The build record of the project at root (tests build copies of the kit)."""
    return root / release.RECORD_PATH.relative_to(ROOT)


def _client():
    import docker

    try:
        # No read timeout: a build step may compile for minutes without printing anything.
        return docker.from_env(timeout=None).api
    except docker.errors.DockerException as error:
        raise UserError(f"Docker: no daemon answers ({one_line(str(error))}); start Docker, or point DOCKER_HOST "
                        "at a running engine") from None


def _login(api, settings: Settings) -> dict[str, str]:
    import docker

    auth = {"username": settings.registry_user, "password": settings.registry_password}
    host = settings.registry.split("/", 1)[0]
    try:
        api.login(registry=host, reauth=True, **auth)
    except docker.errors.APIError as error:
        reason = one_line(error.explanation or str(error))
        raise UserError(f"login to {host} as {settings.registry_user} failed ({reason}); "
                        f"{push_hint(reason, settings.source)}") from None
    return auth


def _guarded(stream: Iterable[dict], what: str) -> Iterable[dict]:
    """The stream, with a daemon that goes away mid-stream turned into a UserError."""
    import docker
    import requests

    try:
        yield from stream
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as error:
        raise UserError(f"{what}: the Docker daemon failed ({one_line(str(error))}); "
                        "check that it is running") from None
