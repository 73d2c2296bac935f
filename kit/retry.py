"""The kit's one retry policy: which failures another try can fix, how long to pause between tries, and when to
stop. The Prefect edge (kit.prefect_api) and the cluster edge (kit.cluster) both retry through `call`.

Every kit operation against Prefect and the cluster is idempotent (read, plan, apply), so what a busy or
restarting server answers (429, a 5xx, a dropped connection, a timeout) is tried again after a growing pause,
until RETRY_DEADLINE seconds have passed since the operation first failed; then it fails with GaveUp. Anything
else (401, 403, 404, 409, 422, a plan the kit refuses: every other exception) fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

# What a server answers while it is overloaded, restarting or behind a proxy that lost its upstream. A 501 or 505
# is the same answer on every try.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
FIRST_PAUSE = 0.2
# A server back after a restart is noticed within this; the pauses need no jitter, as each kit task is one client.
MAX_PAUSE = 5.0


class GaveUp(Exception):
    """An operation still failing transiently when its deadline passed; `error` is its last failure."""

    def __init__(self, error: BaseException, deadline: float, what: str = ""):
        super().__init__(f"{what or 'an operation'} kept failing for {deadline:g} s: {error}")
        self.error = error
        self.deadline = deadline
        self.what = what


def status_of(error: BaseException) -> int | None:
    """The HTTP status a server answered with, for the kubernetes client's and httpx's (Prefect's) errors."""
    response = getattr(error, "response", None)
    code = getattr(response, "status_code", None)  # httpx
    if code is None:
        code = getattr(error, "status", None)  # kubernetes' ApiException; 0 when no answer came (TLS)
    return code if isinstance(code, int) and code else None


def is_transport_error(error: BaseException) -> bool:
    """No answer: a refused, dropped or timed-out connection, as httpx or urllib3 (the kubernetes client) report it."""
    import httpx
    import urllib3.exceptions

    return isinstance(error, (httpx.TransportError, urllib3.exceptions.HTTPError, ConnectionError))


def transient(error: BaseException, answered: bool = True) -> bool:
    """Whether another try may succeed. A connection error counts only once the server has `answered` before: a
    server that never answered is unreachable (a wrong address, a stopped cluster), which waiting does not fix."""
    if isinstance(error, GaveUp):
        return False  # already retried, by an inner operation: its deadline is the one
    status = status_of(error)
    if status is not None:
        return status in TRANSIENT_STATUS
    return answered and is_transport_error(error)


def pauses(first: float = FIRST_PAUSE, longest: float = MAX_PAUSE) -> Iterator[float]:
    """The pauses between tries: doubling from `first`, never longer than `longest`."""
    pause = first
    while True:
        yield pause
        pause = min(pause * 2, longest)


def call(operation: Callable[[bool], T], deadline: float, *, what: str = "",
         is_transient: Callable[[BaseException], bool] = transient,
         on_retry: Callable[[BaseException, float], None] | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> T:
    """operation(retrying) until it returns, or raises what is not transient, or `deadline` seconds have passed since
    its first failure (then GaveUp, naming `what`). `retrying` is True from the second try on: an earlier try may
    have been carried out with its answer lost. A deadline of 0 turns retrying off: the first failure is raised as
    it is. on_retry(error, pause) is told before each pause."""
    first_failure = None
    waits = pauses()
    while True:
        try:
            return operation(first_failure is not None)
        except Exception as error:
            if deadline <= 0 or not is_transient(error):
                raise
            now = clock()
            first_failure = now if first_failure is None else first_failure
            left = first_failure + deadline - now
            if left <= 0:
                raise GaveUp(error, deadline, what) from error
            pause = min(next(waits), left)
            if on_retry is not None:
                on_retry(error, pause)
            sleep(pause)
