"""The Docker engine's build and push streams, read: steps with their times, layers with their bytes, and the
cause of a failed step.

Pure: the decoded JSON items come in, a view is told what happened (kit.progress draws it on a terminal or
as plain lines), and a failure becomes one UserError. The engine reports most failures inside its streams
instead of raising, so every stream is read to the end.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from kit.errors import UserError

# What the Dockerfile prints before a failure it explains itself (e.g. a vendor download): the best cause there is.
BUILD_MESSAGE = "kit-build: "

_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The classic builder repeats the whole RUN command in its error; the step already names it.
_RUN_FAILED = re.compile(r"^The command '.*' returned a non-zero code: (\d+)$", re.DOTALL)
_CACHED = " ---> Using cache"
_BUILDER_CHATTER = ("---> ", "Removing intermediate container", "Running in ", "Successfully built ",
                    "Successfully tagged ")
TAIL_LINES = 3


@dataclass
class Step:
    """One Dockerfile instruction as the classic builder runs it."""

    number: str  # "7/29"
    instruction: str
    started: float
    ended: float | None = None
    cached: bool = False
    failed: bool = False
    # Its own output, without the builder's chatter: where a failure's cause is found.
    lines: list[str] = field(default_factory=list)

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started

    @property
    def title(self) -> str:
        return f"step {self.number} ({shorten(self.instruction)})"


class BuildView(Protocol):
    def line(self, text: str) -> None:
        """Every line of the engine's output, as it comes (shown with --verbose)."""

    def started(self, step: Step) -> None: ...

    def finished(self, step: Step) -> None: ...


@dataclass
class BuildLog:
    """Follows the classic builder's stream: tells the view each step's start and end, keeps the current
    step's output, and turns an error item into one line naming the step and the cause."""

    view: BuildView
    settings_file: str = ".env"
    clock: Callable[[], float] = time.monotonic
    steps: list[Step] = field(default_factory=list)
    image_id: str = ""
    _partial: str = ""

    @property
    def step(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def read(self, items: Iterable[dict]) -> str:
        """Consume the stream; return the built image's id, or raise UserError naming the failed step."""
        for item in items:
            if "error" in item:
                self._flush()
                raise UserError(self.failure(item["error"]))
            if "aux" in item:
                self.image_id = item["aux"].get("ID", self.image_id)
                self._finish()
            if item.get("stream"):
                self._feed(_ANSI.sub("", item["stream"]))
            elif _status_line(item):  # pulling the base image: its layers' events, each a line of its own
                self._feed(_status_line(item) + "\n")
        self._flush()
        self._finish()
        if not self.image_id:
            raise UserError("image build: the Docker daemon ended the build without an image; "
                            "run again with --no-cache")
        return self.image_id

    def _feed(self, text: str) -> None:
        """Whole lines only: the engine splits a line over several items (apt's `E`, `: `, message, newline)."""
        *lines, self._partial = re.split(r"\r?\n|\r", self._partial + text)
        for line in lines:
            self.add(line)

    def _flush(self) -> None:
        if self._partial:
            self.add(self._partial)
            self._partial = ""

    def add(self, line: str) -> None:
        if not line.strip():
            return
        self.view.line(line)
        header = _STEP.match(line)
        if header:
            self._finish()
            self.steps.append(Step(header[1], header[2], self.clock()))
            self.view.started(self.steps[-1])
        elif self.step is None or self.step.ended is not None:
            return
        elif line.startswith(_CACHED):
            self.step.cached = True
        elif not line.strip().startswith(_BUILDER_CHATTER):
            self.step.lines.append(line.strip())

    def _finish(self, failed: bool = False) -> None:
        step = self.step
        if step is not None and step.ended is None:
            step.ended, step.failed = self.clock(), failed
            self.view.finished(step)

    def failure(self, error: str) -> str:
        self._finish(failed=True)
        where = f" at {self.step.title}" if self.step else ""
        run = _RUN_FAILED.match(one_line(error))
        if not run:
            return f"image build failed{where}: {one_line(error)}"
        lines = self.step.lines if self.step else []
        cause = failure_cause(lines, self.settings_file)
        if cause:
            return f"image build failed{where}: {cause}"
        tail = lines[-TAIL_LINES:]
        last = f"; last output: {' | '.join(tail)}" if tail else ""
        return f"image build failed{where}: the command returned a non-zero code: {run[1]}{last}"


@dataclass(frozen=True)
class _Cause:
    """A kind of failure that pip, apt, Python or a compiler prints, and what to do about it."""

    pattern: re.Pattern
    # (the first match, the host named on the matching lines, all the lines) -> the cause
    say: Callable[[re.Match, str, list[str]], str]
    hint: str = ""  # may name {file}, the settings file in use


def _at(host: str) -> str:
    return f" ({host})" if host else ""


def _proxy_failure(match: re.Match, host: str, lines: list[str]) -> str:
    return f"cannot connect to the proxy{_at(match['why'] or '')}"


def _conflict(match: re.Match, host: str, lines: list[str]) -> str:
    """pip's explanation of an unsolvable set of requirements: the lines under 'The conflict is caused by:'."""
    reasons = []
    for line in lines[lines.index(match.string) + 1:]:
        if line.startswith(("To fix this", "ERROR:")):
            break
        reasons.append(line)
    return f"conflicting requirements: {'; '.join(reasons)}"


_CA_HINT = "put your company's root CA (PEM, *.crt) into config/ca-certificates/ and build again"
_PROXY_HINT = "the build cannot reach it: check HTTP_PROXY, HTTPS_PROXY and NO_PROXY in {file}"
# Most telling first: a missing CA makes pip find no release and then report an unsolvable conflict, and a
# proxy apt cannot reach makes it report packages it cannot find. The first kind found in the output wins.
_CAUSES = (
    _Cause(re.compile(re.escape(BUILD_MESSAGE) + r"(?P<text>.+)"), lambda m, h, lines: m["text"]),
    _Cause(re.compile(r"certificate verify failed: (?P<why>[^()'\"]+?)\s*(?:\(_ssl|['\")>]|$)"),
           lambda m, h, lines: f"certificate verify failed: {m['why']}{_at(h)}", _CA_HINT),
    _Cause(re.compile(r"Certificate verification failed: (?P<why>[^.]+)"),
           lambda m, h, lines: f"certificate verification failed: {m['why']}{_at(h)}", _CA_HINT),
    _Cause(re.compile(r"SSLError\(.*?\[[A-Z0-9]+: [A-Z_]+\] (?P<why>[^()'\"]+?)\s*\("),
           lambda m, h, lines: f"TLS failed: {m['why']}{_at(h)}",
           "check the CA certificates in config/ca-certificates/ (PEM, *.crt)"),
    _Cause(re.compile(r"407 +Proxy Authentication Required"),
           lambda m, h, lines: f"the proxy answered 407 Proxy Authentication Required{_at(h)}",
           "give the proxy's login in HTTP_PROXY and HTTPS_PROXY in {file}: http://USER:PASSWORD@proxy:port"),
    _Cause(re.compile(r"Could not resolve (?:host: )?'?(?P<name>[A-Za-z0-9.-]+)'?"),
           lambda m, h, lines: f"cannot resolve {m['name']}", _PROXY_HINT),
    _Cause(re.compile(r"Failed to resolve '(?P<name>[^']+)'"), lambda m, h, lines: f"cannot resolve {m['name']}",
           _PROXY_HINT),
    _Cause(re.compile(r"\[Errno -\d+\] (?P<why>Temporary failure in name resolution|Name or service not known)"),
           lambda m, h, lines: f"{m['why']}{_at(h)}", _PROXY_HINT),
    _Cause(re.compile(r"Cannot connect to proxy(?:.*\[Errno \d+\] (?P<why>[^'\")]+))?"), _proxy_failure, _PROXY_HINT),
    _Cause(re.compile(r"Could not connect to (?P<where>\S+).*?\((?:\d+: )?(?P<why>[^)]+)\)"),
           lambda m, h, lines: f"cannot connect to {m['where']}: {m['why']}", _PROXY_HINT),
    _Cause(re.compile(r"(?:\[Errno \d+\] |urlopen error )(?P<why>Connection refused|Connection timed out|timed out|"
                      r"Network is unreachable|No route to host)"),
           lambda m, h, lines: f"{m['why']}{_at(h)}", _PROXY_HINT),
    _Cause(re.compile(r"Connection to (?P<name>\S+) timed out"),
           lambda m, h, lines: f"connection to {m['name']} timed out", _PROXY_HINT),
    _Cause(re.compile(r"Failed to fetch (?P<url>\S+)\s+(?P<why>.+)"),
           lambda m, h, lines: f"apt could not fetch {m['url']}: {m['why'].strip()}",
           "check the Debian mirror and HTTP_PROXY in {file}"),
    _Cause(re.compile(r"^The conflict is caused by:$"), _conflict,
           "check the pins in image/constraints.txt and image/requirements/"),
    _Cause(re.compile(r"fatal error: (?P<why>.+)"), lambda m, h, lines: f"compiler: {m['why']}",
           "a -dev package the compile needs is missing from the builder stage of image/Dockerfile"),
    _Cause(re.compile(r"No matching distribution found for (?P<name>\S+)"),
           lambda m, h, lines: f"pip found no release of {m['name']}",
           "check its name (image/requirements/), its pin (image/constraints.txt) and PIP_INDEX_URL in {file}"),
    _Cause(re.compile(r"^E: (?P<why>.+)"), lambda m, h, lines: f"apt: {m['why']}"),
    _Cause(re.compile(r"^ERROR: (?P<why>(?!ResolutionImpossible).+)"), lambda m, h, lines: f"pip: {m['why']}"),
)
_HOST = re.compile(r"host='(?P<host>[^']+)'|https?://(?P<url_host>[A-Za-z0-9.-]+)")


def failure_cause(lines: list[str], settings_file: str = ".env") -> str | None:
    """The one line that explains a failed RUN step's output, with what to do, or None when nothing does."""
    for cause in _CAUSES:
        matches = [(line, found) for line in lines for found in [cause.pattern.search(line)] if found]
        if not matches:
            continue
        hosts = [found["host"] or found["url_host"] for line, _ in matches for found in _HOST.finditer(line)]
        text = cause.say(matches[0][1], hosts[0] if hosts else "", lines)
        hint = cause.hint.format(file=settings_file)
        return shorten(f"{text}; {hint}" if hint else text, 400)
    return None


@dataclass
class Layer:
    """One layer of a push, as the engine reports it."""

    id: str
    status: str = ""
    current: int = 0
    total: int = 0

    @property
    def done(self) -> bool:
        return self.status in ("Pushed", "Layer already exists") or self.status.startswith("Mounted from")

    @property
    def uploaded(self) -> bool:
        return self.status == "Pushed"


class PushView(Protocol):
    def layer(self, layer: Layer) -> None:
        """A layer's status or byte count changed."""

    def message(self, text: str) -> None:
        """A line about the push as a whole (the repository, the digest)."""


def read_push(items: Iterable[dict], reference: str, view: PushView, settings_file: str = ".env") -> str:
    """Consume a push stream; return the pushed digest, or raise UserError with the daemon's reason."""
    digest = ""
    layers: dict[str, Layer] = {}
    for item in items:
        if "error" in item:
            raise UserError(f"push of {reference} failed: {one_line(item['error'])}; "
                            f"{push_hint(item['error'], settings_file)}")
        digest = item.get("aux", {}).get("Digest", digest)
        status = item.get("status", "")
        if not status:
            continue
        if not item.get("id"):
            view.message(status)
            continue
        layer = layers.setdefault(item["id"], Layer(item["id"]))
        progress = item.get("progressDetail") or {}
        # The engine reports a layer's bytes while it pushes it, and nothing more once it is done.
        layer.status = status
        layer.current, layer.total = progress.get("current", layer.current), progress.get("total", layer.total)
        if layer.uploaded:
            layer.current = layer.total = max(layer.total, layer.current)
        view.layer(layer)
    if not digest:
        raise UserError(f"push of {reference}: the registry did not report a digest; run `inv push` again")
    return digest


# Whole words: a port such as 44017 must not read as a 401.
_REFUSED_LOGIN = re.compile(r"\b(unauthorized|authentication required|denied|credentials|401)\b", re.I)


def push_hint(error: str, settings_file: str = ".env") -> str:
    """What to check for a failed login or push: the credentials, or where the registry is."""
    if _REFUSED_LOGIN.search(error):
        return f"check REGISTRY_USER and REGISTRY_PASSWORD in {settings_file}"
    return f"check REGISTRY in {settings_file} and that the registry is running and reachable"


def _status_line(item: dict) -> str:
    """A pull or push event as one line, without its byte counters."""
    status = item.get("status", "")
    if not status or item.get("progressDetail", {}).get("total"):
        return ""
    return f"{item['id']}: {status}" if item.get("id") else status


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def shorten(text: str, limit: int = 80) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
