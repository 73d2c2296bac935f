"""Which image a rollout uses: the tag `inv build` gives this commit, and what build/push recorded.

The record lives in .kit/build.json (git-ignored), so `inv push` and `inv rollout` use exactly
the image `inv build` made without the user retyping a tag.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from kit import ROOT
from kit.errors import UserError

RECORD_PATH = ROOT / ".kit" / "build.json"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Build:
    repository: str
    tag: str
    digest: str = ""

    @property
    def reference(self) -> str:
        """repository:tag, pinned by digest once a push recorded one."""
        pinned = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}:{self.tag}{pinned}"


def commit_tag(repo: Path = ROOT) -> str:
    """The git short sha of HEAD, with -dirty when tracked files have uncommitted changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            raise UserError(
                f"{repo.resolve()}: not a git checkout with a commit, so there is no image tag for it; "
                "commit first, or pass --tag"
            ) from None
        return done.stdout.strip()

    sha = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def read_record(path: Path = RECORD_PATH) -> Build | None:
    try:
        return Build(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        raise UserError(f"{path}: not a build record the kit wrote; delete it and run `inv build push`") from None


def write_record(build: Build, path: Path = RECORD_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(build), indent=2) + "\n")


def recorded_build(repository: str, tag: str, path: Path = RECORD_PATH) -> Build | None:
    """The recorded build of this repository and tag, if `inv build` made it."""
    build = read_record(path)
    if build and build.repository == repository and build.tag == tag:
        return build
    return None


def image_for(repository: str, tag: str | None = None, path: Path = RECORD_PATH) -> Build:
    """The image a rollout should use: an explicit tag, else this commit's, pinned by digest when pushed."""
    if tag and not _TAG.match(tag):
        raise UserError(f"--tag: {tag!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    tag = tag or commit_tag()
    return recorded_build(repository, tag, path) or Build(repository, tag)
