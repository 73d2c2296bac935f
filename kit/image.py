"""Build and push the image through the Docker SDK.

Pure parts (build args, the build context, reading the daemon's JSON streams) are plain functions;
`build` and `push` are the edges that talk to the daemon. The daemon reports most failures inside its
streams instead of raising, so every stream is read to the end and its error becomes one UserError.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from kit import ROOT, release
from kit.errors import UserError
from kit.settings import Settings

DOCKERFILE = "image/Dockerfile"
# Only what the Dockerfile copies is sent to the daemon: .env, .git and .kit never leave the machine.
CONTEXT = ("image/Dockerfile", "image/requirements", "image/constraints.txt", "config/krb5.conf",
           "config/ca-certificates", "flows")
LATEST = "latest"
TAIL_LINES = 3

_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The classic builder repeats the whole RUN command in its error; the step already names it.
_RUN_FAILED = re.compile(r"^The command '.*' returned", re.DOTALL)
_BUILDER_CHATTER = ("---> ", "Removing intermediate container", "Running in ")


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


@dataclass
class BuildLog:
    """Follows the classic builder's stream: echoes it, remembers the current step and its last lines."""

    echo: Callable[[str], None]
    step: str = ""
    tail: list[str] = field(default_factory=list)
    image_id: str = ""

    def read(self, items: Iterable[dict]) -> str:
        """Consume the stream; return the built image's id, or raise UserError naming the failed step."""
        for item in items:
            if "error" in item:
                raise UserError(self.failure(item["error"]))
            if "aux" in item:
                self.image_id = item["aux"].get("ID", self.image_id)
            text = item.get("stream") or _status_line(item)
            for line in _ANSI.sub("", text).splitlines():
                self.add(line)
        if not self.image_id:
            raise UserError("image build: the Docker daemon ended the build without an image; run again with --no-cache")
        return self.image_id

    def add(self, line: str) -> None:
        if not line.strip():
            return
        self.echo(line)
        step = _STEP.match(line)
        if step:
            self.step, self.tail = f"step {step[1]} ({_shorten(step[2])})", []
        elif not line.strip().startswith(_BUILDER_CHATTER):
            self.tail = [*self.tail, line.strip()][-TAIL_LINES:]

    def failure(self, error: str) -> str:
        where = f" at {self.step}" if self.step else ""
        last = f"; last output: {' | '.join(self.tail)}" if self.tail else ""
        reason = _RUN_FAILED.sub("the command returned", _one_line(error))
        return f"image build failed{where}: {reason}{last}"


def read_push(items: Iterable[dict], reference: str, echo: Callable[[str], None]) -> str:
    """Consume a push stream; return the pushed digest, or raise UserError with the daemon's reason."""
    digest = ""
    for item in items:
        if "error" in item:
            raise UserError(f"push of {reference} failed: {_one_line(item['error'])}; {_push_hint(item['error'])}")
        digest = item.get("aux", {}).get("Digest", digest)
        line = _status_line(item)
        if line:
            echo(line)
    if not digest:
        raise UserError(f"push of {reference}: the registry did not report a digest; run `inv push` again")
    return digest


def build(settings: Settings, root: Path, tag: str = "", no_cache: bool = False, platform: str = "",
          echo: Callable[[str], None] = print) -> release.Build:
    """Build image/Dockerfile, tag it <repository>:<tag> and :latest, and record the build."""
    tag = tag or release.commit_tag(root)
    repository = settings.image_repository
    api = _client()
    context = build_context(root)
    stream = api.build(fileobj=context, custom_context=True, dockerfile=DOCKERFILE, tag=f"{repository}:{tag}",
                       buildargs=build_args(settings), nocache=no_cache, rm=True, forcerm=True,
                       network_mode="host", platform=platform or settings.image_platform, decode=True)
    image_id = BuildLog(echo).read(_guarded(stream, "image build"))
    api.tag(image_id, repository, LATEST)
    built = release.Build(repository, tag, prefect_version=settings.image_prefect_version,
                          commit=release.commit_sha(root))
    release.write_record(built, _record_path(root))
    echo(f"built {repository}:{tag} (and :{LATEST}); next: inv push")
    return built


def push(settings: Settings, root: Path, echo: Callable[[str], None] = print) -> release.Build:
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
        pushed = read_push(_guarded(stream, f"push of {reference}"), reference, echo)
        digest = digest or pushed
    built = release.pushed(recorded, digest, record_path)
    echo(f"pushed {built.reference}")
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
        raise UserError(f"Docker: no daemon answers ({_one_line(str(error))}); start Docker, or point DOCKER_HOST "
                        "at a running engine") from None


def _login(api, settings: Settings) -> dict[str, str]:
    import docker

    auth = {"username": settings.registry_user, "password": settings.registry_password}
    host = settings.registry.split("/", 1)[0]
    try:
        api.login(registry=host, reauth=True, **auth)
    except docker.errors.APIError as error:
        reason = _one_line(error.explanation or str(error))
        raise UserError(f"login to {host} as {settings.registry_user} failed ({reason}); {_push_hint(reason)}") from None
    return auth


def _guarded(stream: Iterable[dict], what: str) -> Iterable[dict]:
    """The stream, with a daemon that goes away mid-stream turned into a UserError."""
    import docker
    import requests

    try:
        yield from stream
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as error:
        raise UserError(f"{what}: the Docker daemon failed ({_one_line(str(error))}); check that it is running") from None


def _status_line(item: dict) -> str:
    """Pull and push progress as one line per layer event, without the byte counters."""
    status = item.get("status", "")
    if not status or item.get("progressDetail", {}).get("total"):
        return ""
    return f"{item['id']}: {status}" if item.get("id") else status


# Whole words: a port such as 44017 must not read as a 401.
_REFUSED_LOGIN = re.compile(r"\b(unauthorized|authentication required|denied|credentials|401)\b", re.I)


def _push_hint(error: str) -> str:
    """What to check for a failed login or push: the credentials, or where the registry is."""
    if _REFUSED_LOGIN.search(error):
        return "check REGISTRY_USER and REGISTRY_PASSWORD in .env"
    return "check REGISTRY in .env and that the registry is running and reachable"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _shorten(text: str, limit: int = 80) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
