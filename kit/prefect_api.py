"""The kit's one way to reach a Prefect API: the URL and auth string from .env, a wait for a server
that is still starting, operations retried while it answers as a busy server does (kit.retry), and one-line
errors for an unreachable API, one that kept failing, or a wrong auth string.

Prefect is configured with `temporary_settings` (a context inside this process), never through the
user's profile file, so `inv pools` does not change what the user's own `prefect` CLI talks to.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Mapping, TypeVar
from urllib.parse import urlsplit

from kit import retry
from kit.errors import UserError
from kit.settings import SERVER_PORT, Settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

# At least five probes 1, 2, 4 and 8 s apart, then every 8 s until RETRY_DEADLINE has passed (Prefect's
# transport itself retries a refused connection 3 times within ~1.5 s): a server that is still migrating its
# database (~10 s here, several times that on a busy node) is waited for, and a wrong host fails once the
# deadline has passed.
ATTEMPTS = 5
MAX_DELAY = 8.0
FIRST_DELAY = 1.0
# One probe may not hang for Prefect's default 60 s when packets to the host are dropped.
PROBE_TIMEOUT = 5.0
# Prefect's client pauses 2, 4, 8, … s between the tries of one request (prefect/client/base.py).
PREFECT_FIRST_PAUSE = 2
T = TypeVar("T")


def api_url(settings: Settings, override: str | None = None) -> str:
    """The API URL to use: --api-url when given, else the public one the route serves."""
    url = (override or settings.public_api_url).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--api-url: {override!r} is not an http(s) URL; e.g. http://127.0.0.1:{SERVER_PORT}/api")
    return url


def client_env(settings: Settings, url: str) -> dict[str, str]:
    """The two variables that point a Prefect process (CLI, worker, flow run) at this API."""
    return {"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": settings.auth_string}


def client_retry_env(deadline: float) -> dict[str, str]:
    """Prefect's own client retries for a Prefect CLI the kit runs: each request that fails as kit.retry would try
    it again, as many times as Prefect's doubling pauses fit in `deadline` (no jitter, so that they do fit)."""
    tries, paused = 0, 0
    while paused + PREFECT_FIRST_PAUSE * 2 ** tries <= deadline:
        paused += PREFECT_FIRST_PAUSE * 2 ** tries
        tries += 1
    # Prefect already retries 408, 429, 502 and 503 and every dropped or timed-out connection.
    extra = sorted(retry.TRANSIENT_STATUS - {408, 429, 502, 503})
    return {"PREFECT_CLIENT_MAX_RETRIES": str(tries), "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0",
            "PREFECT_CLIENT_RETRY_EXTRA_CODES": ",".join(map(str, extra))}


def api_key_warning(environ: Mapping[str, str]) -> str | None:
    if not environ.get("PREFECT_API_KEY"):
        return None
    return ("warning: PREFECT_API_KEY is set in your environment; it is Prefect Cloud's key and a self-hosted "
            "server rejects it (older Prefect clients send it instead of PREFECT_API_AUTH_STRING and get 401); "
            "the kit does not send it; unset it")


def unreachable_hint(settings: Settings) -> str:
    public = f"{settings.public_api_url} when it answers, else " if settings.has_route else ""
    return (f"is the server running (`inv status`)? Without --api-url the kit uses {public}a port-forward to "
            "the server pod")


@contextmanager
def connect(settings: Settings, url: str, attempts: int | None = None,
            first_delay: float = FIRST_DELAY) -> Iterator["SyncPrefectClient"]:
    """A synchronous Prefect client for `url`, once the API answers; HTTP failures become one-line UserErrors."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import (PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL,
                                  PREFECT_CLIENT_MAX_RETRIES, temporary_settings)

    warning = api_key_warning(os.environ)
    if warning:
        print(warning, file=sys.stderr)
    # One settings context, because each costs ~0.2 s when a .env lies in the working directory (Prefect
    # parses it again for every settings model). The key is dropped, not only outranked, so nothing Prefect
    # does in this process sends it. The client's own retries (per request, up to a minute on a 503) are off:
    # the probe below waits for a server that is starting, and `retried` runs a whole operation again.
    updates = {PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: settings.auth_string, PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(updates=updates, restore_defaults={PREFECT_API_KEY}):
        _wait_until_healthy(settings, url, attempts, first_delay)
        try:
            with get_client(sync_client=True) as client:
                yield client
        except retry.GaveUp as gave_up:
            if not isinstance(gave_up.error, httpx.HTTPError):
                raise
            raise UserError(f"Prefect API {url}: {request_of(gave_up.error)} kept failing ({cause(gave_up.error)}), "
                            f"retried for {gave_up.deadline:g} s (RETRY_DEADLINE); is the server overloaded or "
                            "restarting (`inv status`)? Run the command again once it answers") from None
        except httpx.HTTPStatusError as error:
            if error.response.status_code == 401:
                raise UserError(
                    f"LOGIN_USER/LOGIN_PASSWORD: {url} answered 401 Unauthorized; the server's auth string "
                    f"differs from {settings.source}: fix it there, or roll it out to the server (`inv rollout`)"
                ) from None
            if error.response.status_code < 500:
                raise
            raise UserError(f"Prefect API {url}: {describe(error)} midway; run the command again") from None
        except httpx.TransportError as error:
            raise UserError(f"Prefect API {url}: {describe(error)} midway; run the command again") from None


def _wait_until_healthy(settings: Settings, url: str, attempts: int | None, first_delay: float) -> None:
    """Probe /health until it answers: `attempts` times, or (None) at least ATTEMPTS times and until
    RETRY_DEADLINE has passed."""
    from prefect.client.orchestration import get_client

    patience = 0.0 if attempts is not None else settings.retry_deadline
    attempts = attempts or ATTEMPTS
    started, delay, attempt = time.monotonic(), first_delay, 0
    with get_client(sync_client=True, httpx_settings={"timeout": PROBE_TIMEOUT}) as probe:
        while True:
            attempt += 1
            error = probe.api_healthcheck()
            if error is None:
                return
            if getattr(getattr(error, "response", None), "status_code", None) == 404:
                # Something answers, but not a Prefect API: most often the URL lacks its /api suffix.
                raise UserError(f"Prefect API {url}: no Prefect API at this URL (/health answered HTTP 404); "
                                f"did you mean {url.rstrip('/')}/api?")
            if attempt >= attempts and time.monotonic() - started + delay > patience:
                break
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
    raise UserError(f"Prefect API {url}: unreachable after {attempt} attempts ({describe(error)}); "
                    + unreachable_hint(settings))


def retried(settings: Settings, operation: Callable[[], T], out: Callable[[str], None]) -> T:
    """operation() on a connected client, run again from its start (a re-read and a re-plan) while Prefect answers
    as a busy or restarting server does, until RETRY_DEADLINE; each new try is announced on `out`."""
    import httpx

    def is_transient(error: BaseException) -> bool:
        # Only Prefect's own answers: the cluster requests an operation makes (an admission dry run) have theirs.
        return isinstance(error, httpx.HTTPError) and retry.transient(error)

    def announce(error: BaseException, pause: float) -> None:
        out(f"prefect: {request_of(error)} failed ({cause(error)}); again in {pause:.1f} s, from a fresh read of "
            "the server")

    return retry.call(lambda retrying: operation(), settings.retry_deadline, is_transient=is_transient,
                      on_retry=announce)


def request_of(error: Exception) -> str:
    """The request an httpx error is about, as `POST /api/work_pools/`."""
    try:
        request = error.request
    except RuntimeError:  # httpx's way of saying that an error was made without its request
        return "a request"
    return f"{request.method} {request.url.path}"


def cause(error: Exception) -> str:
    """What went wrong with a request, without naming it: `HTTP 503`, `RemoteProtocolError: Server disconnected …`."""
    response = getattr(error, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def describe(error: Exception) -> str:
    response = getattr(error, "response", None)
    if response is not None:
        return f"{response.request.url.path} answered HTTP {response.status_code}"
    return cause(error)
