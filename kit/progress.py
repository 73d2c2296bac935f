"""How `inv build`, `inv push` and the rollout's waits show their progress: live lines drawn with rich on a
terminal, plain lines otherwise (CI logs, pipes, `inv deploy > log`).

The views only draw what kit.streams tells them; they decide nothing. Build: one line per Dockerfile step with
its time (on a terminal the running step ticks), the engine's raw output with --verbose, and a failed step's
last lines before the error. Push: bytes per layer as they go (on a terminal), one line per uploaded layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kit.streams import Layer, Step, shorten

Out = Callable[[str], None]
# A failed step's output the user has not seen (without --verbose) ends with these lines.
FAILED_STEP_LINES = 15


def duration(seconds: float) -> str:
    """0.4s, 12.3s, 2m05s, 1h02m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def step_line(step: Step, now: float) -> str:
    """`step  7/29   1m12s  RUN pip install …`: the step, its time (or cached, or failed), its instruction."""
    if step.failed:
        state = f"failed after {duration(step.elapsed(now))}"
    else:
        state = "cached" if step.cached else duration(step.elapsed(now))
    return f"step {step.number:>5}  {state:>7}  {shorten(step.instruction, 100)}"


def size(count: int) -> str:
    from rich.filesize import decimal

    return decimal(count)


class PlainBuild:
    """A line per finished step; with verbose, the engine's output as it comes."""

    def __init__(self, echo: Out, verbose: bool, clock: Callable[[], float] = time.monotonic):
        self.echo, self.verbose, self.clock = echo, verbose, clock

    def line(self, text: str) -> None:
        if self.verbose:
            self.echo(text)

    def started(self, step: Step) -> None:
        pass

    def finished(self, step: Step) -> None:
        self.echo(step_line(step, self.clock()))
        if step.failed and not self.verbose:
            for line in step.lines[-FAILED_STEP_LINES:]:
                self.echo(f"    {line}")


class LiveBuild(PlainBuild):
    """The finished steps as lines, and below them the running step with its ticking time and last output."""

    def __init__(self, console, verbose: bool, clock: Callable[[], float] = time.monotonic):
        super().__init__(self._print, verbose, clock)
        from rich.live import Live

        self.console = console
        self.current: Step | None = None
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text), soft_wrap=True)

    def started(self, step: Step) -> None:
        self.current = step

    def finished(self, step: Step) -> None:
        self.current = None
        super().finished(step)

    def __rich__(self):
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        # One terminal line each, cut to its width: a line that wraps would not be redrawn in place.
        grid = Table.grid()
        grid.add_column(no_wrap=True, overflow="ellipsis")
        if self.current is not None:
            grid.add_row(Spinner("dots", Text(step_line(self.current, self.clock()))))
            if self.current.lines and not self.verbose:
                grid.add_row(Text(f"    {self.current.lines[-1]}", style="dim"))
        return grid


class PlainPush:
    """A line per uploaded layer with its bytes, and one for the layers the registry already had."""

    def __init__(self, echo: Out):
        self.echo = echo
        self.done: set[str] = set()
        self.existing = 0

    def layer(self, layer: Layer) -> None:
        if not layer.done or layer.id in self.done:
            return
        self.done.add(layer.id)
        if layer.uploaded:
            self.echo(f"{layer.id}: pushed {size(layer.total)}")
        else:
            self.existing += 1

    def message(self, text: str) -> None:
        self.close()
        self.echo(text)

    def close(self) -> None:
        if self.existing:
            self.echo(f"{self.existing} layer{'s' if self.existing > 1 else ''} already in the registry")
            self.existing = 0


class LivePush:
    """One bar per layer: its status and the bytes sent so far."""

    def __init__(self, console):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.tasks: dict[str, object] = {}
        self.live = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             console=console)

    def layer(self, layer: Layer) -> None:
        # A layer the registry already has reports no bytes: it shows as a full bar of nothing.
        total = (layer.total or 1) if layer.done else (layer.total or None)
        completed = total if layer.done else layer.current
        if layer.id not in self.tasks:
            self.tasks[layer.id] = self.live.add_task("", total=total)
        self.live.update(self.tasks[layer.id], description=f"{layer.id}: {layer.status}", completed=completed,
                         total=total)

    def message(self, text: str) -> None:
        from rich.text import Text

        self.live.console.print(Text(text), soft_wrap=True)

    def close(self) -> None:
        pass


def _terminal():
    """rich's console for stdout when it is a terminal, else None."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else None


class PlainWait:
    """The rollout's wait as kubectl prints it: a workload's status message each time it changes."""

    def __init__(self, echo: Out):
        self.echo = echo
        self.shown: dict[str, str] = {}

    def show(self, name: str, obj: dict, message: str, done: bool) -> None:
        if self.shown.get(name) != message:
            self.shown[name] = message
            self.echo(message)


class LiveWait(PlainWait):
    """One live line per workload being waited for (ready/desired, time waited, its status); a workload that
    is done leaves its last message as a plain line."""

    def __init__(self, console, clock: Callable[[], float] = time.monotonic):
        super().__init__(self._print)
        from rich.live import Live

        self.console, self.clock = console, clock
        self.waiting: dict[str, tuple[dict, str, float]] = {}
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text), soft_wrap=True)

    def show(self, name: str, obj: dict, message: str, done: bool) -> None:
        if done:
            self.waiting.pop(name, None)
            super().show(name, obj, message, done)
        else:
            started = self.waiting.get(name, (None, None, self.clock()))[2]
            self.waiting[name] = (obj, message, started)

    def __rich__(self):
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid()
        grid.add_column(no_wrap=True, overflow="ellipsis")
        for name, (obj, message, started) in self.waiting.items():
            grid.add_row(Spinner("dots", Text(wait_line(name, obj, message, self.clock() - started))))
        return grid


def wait_line(name: str, obj: dict, message: str, waited: float) -> str:
    """`deployment/prefect-worker-prod-main  0/1 ready  12.3s  <status message>`."""
    status, desired = obj.get("status", {}), obj.get("spec", {}).get("replicas", 1)
    return f"{name}  {status.get('readyReplicas', 0)}/{desired} ready  {duration(waited):>6}  {message}"


@contextmanager
def wait_view(echo: Out | None = None) -> Iterator[PlainWait]:
    """Live lines on a terminal when no echo is given; plain lines to echo (or stdout) otherwise."""
    console = _terminal() if echo is None else None
    if console is None:
        yield PlainWait(echo or print)
        return
    view = LiveWait(console)
    with view.live:
        yield view


@contextmanager
def build_view(echo: Out | None = None, verbose: bool = False) -> Iterator[PlainBuild]:
    """Live on a terminal when no echo is given; plain lines to echo (or stdout) otherwise."""
    console = _terminal() if echo is None else None
    if console is None:
        yield PlainBuild(echo or print, verbose)
        return
    view = LiveBuild(console, verbose)
    with view.live:
        yield view


@contextmanager
def push_view(echo: Out | None = None) -> Iterator[PlainPush | LivePush]:
    """Live bars on a terminal when no echo is given; plain lines to echo (or stdout) otherwise."""
    console = _terminal() if echo is None else None
    if console is None:
        view = PlainPush(echo or print)
        yield view
        view.close()
        return
    view = LivePush(console)
    with view.live:
        yield view
