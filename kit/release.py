"""Which image a rollout uses: the tag `inv build` gives this commit, what build/push recorded, and every
release pushed from this machine.

The records live in .kit/ (git-ignored): build.json is the last build (so `inv push` and `inv rollout` use
exactly the image `inv build` made without the user retyping a tag), releases.jsonl one line per push, oldest
first (what `inv history` lists and `inv rollback` picks from).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

from kit import ROOT
from kit.errors import UserError

RECORD_PATH = ROOT / ".kit" / "build.json"
HISTORY_NAME = "releases.jsonl"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Build:
    repository: str
    tag: str
    digest: str = ""
    # The Prefect release of the base image it was built on (IMAGE_PREFECT_VERSION at build time).
    prefect_version: str = ""
    # The git commit it was built from; empty outside a checkout.
    commit: str = ""
    # When `inv push` pushed it (UTC, ISO 8601); empty until then.
    pushed_at: str = ""

    @property
    def reference(self) -> str:
        """repository:tag, pinned by digest once a push recorded one."""
        pinned = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}:{self.tag}{pinned}"


def commit_tag(repo: Path = ROOT) -> str:
    """The git short sha of HEAD, with -dirty when tracked files have uncommitted changes."""
    sha = _git(repo, "rev-parse", "--short", "HEAD")
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def commit_sha(repo: Path = ROOT) -> str:
    """The git short sha of HEAD, or empty outside a git checkout (a build given its own --tag)."""
    try:
        return _git(repo, "rev-parse", "--short", "HEAD")
    except UserError:
        return ""


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise UserError(f"{repo.resolve()}: not a git checkout with a commit, so there is no image tag for it; "
                        "commit first, or pass --tag") from None
    return done.stdout.strip()


def read_record(path: Path = RECORD_PATH) -> Build | None:
    try:
        return _build_from(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        raise UserError(f"{path}: not a build record the kit wrote; delete it and run `inv build push`") from None


def write_record(build: Build, path: Path = RECORD_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(build), indent=2) + "\n")


def history_path(record: Path = RECORD_PATH) -> Path:
    return record.with_name(HISTORY_NAME)


def read_history(record: Path = RECORD_PATH) -> list[Build]:
    """Every release pushed from this machine, oldest first."""
    path = history_path(record)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    releases = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            releases.append(_build_from(json.loads(line)))
        except (ValueError, TypeError):
            raise UserError(f"{path}:{number}: not a release the kit recorded; remove that line") from None
    return releases


def pushed(build: Build, digest: str, record: Path = RECORD_PATH, at: datetime | None = None) -> Build:
    """Record a push: the build record pinned by its digest, and one more line in the release history."""
    release = replace(build, digest=digest,
                      pushed_at=(at or datetime.now(timezone.utc)).isoformat(timespec="seconds"))
    write_record(release, record)
    with history_path(record).open("a") as history:
        history.write(json.dumps(asdict(release)) + "\n")
    return release


def recorded_build(repository: str, tag: str, path: Path = RECORD_PATH) -> Build | None:
    """The build of this repository and tag that this machine made: the last build, else the newest push."""
    build = read_record(path)
    if build and build.repository == repository and build.tag == tag:
        return build
    releases = [release for release in read_history(path) if release.repository == repository and release.tag == tag]
    return releases[-1] if releases else None


def image_for(repository: str, tag: str | None = None, path: Path = RECORD_PATH) -> Build:
    """The image a rollout should use: an explicit tag (`TAG` or `TAG@sha256:…`), else this commit's, pinned by
    digest when this machine pushed it."""
    tag, _, digest = (tag or "").partition("@")
    if tag and not _TAG.match(tag) or digest and not _DIGEST.match(digest):
        shown = f"{tag}@{digest}" if digest else tag
        raise UserError(f"--tag: {shown!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128), "
                        "optionally pinned as TAG@sha256:<64 hex digits>")
    if digest:
        return Build(repository, tag, digest)
    tag = tag or commit_tag()
    return recorded_build(repository, tag, path) or Build(repository, tag)


def _build_from(data: dict) -> Build:
    """A Build from its JSON, ignoring what a newer kit may have added; records of older kits lack fields."""
    known = {f.name for f in fields(Build)}
    return Build(**{key: value for key, value in data.items() if key in known})
