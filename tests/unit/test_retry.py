"""The retry policy on its own: which failures are transient, the pauses, the deadline (a clock that moves only when
the policy pauses, never the real one), and the Prefect CLI's retries fitted into the same deadline."""

import httpx
import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from kit import prefect_api, retry
from kit.errors import UserError


def answered(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/work_pools/")
    return httpx.HTTPStatusError("answered", request=request, response=httpx.Response(code, request=request))


DROPPED = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_a_busy_servers_answers_are_transient(code):
    assert retry.transient(ApiException(status=code))
    assert retry.transient(answered(code))


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 410, 422, 501])
def test_answers_another_try_cannot_change_are_not(code):
    assert not retry.transient(ApiException(status=code))
    assert not retry.transient(answered(code))


@pytest.mark.parametrize("error", [DROPPED, urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out"),
                                   httpx.RemoteProtocolError("Server disconnected without sending a response."),
                                   httpx.ReadTimeout("timed out"), httpx.ConnectError("[Errno 111] Connection refused"),
                                   ConnectionResetError(104, "Connection reset by peer")])
def test_a_lost_connection_is_transient_only_once_the_server_has_answered(error):
    assert retry.transient(error, answered=True)
    assert not retry.transient(error, answered=False), "a server that never answered is unreachable, not busy"


@pytest.mark.parametrize("error", [UserError("pool x: refused"), ValueError("a bug"), ApiException(status=0),
                                   retry.GaveUp(DROPPED, 30)])
def test_anything_else_is_not_transient(error):
    # ApiException(status=0) is how the kubernetes client reports a TLS failure: no answer, and no busy server.
    assert not retry.transient(error)


def test_the_pauses_double_up_to_their_ceiling():
    pauses = retry.pauses()
    assert [next(pauses) for _ in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


class Clock:
    """Time that passes only when the policy pauses."""

    def __init__(self):
        self.now = 100.0
        self.pauses = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.pauses.append(seconds)
        self.now += seconds


def failing(*errors, result="done"):
    """An operation that raises the errors in turn, then returns result; it records the `retrying` it was given."""
    seen = []

    def operation(retrying):
        seen.append(retrying)
        if len(seen) <= len(errors):
            raise errors[len(seen) - 1]
        return result

    operation.seen = seen
    return operation


def test_transient_failures_are_tried_again_after_each_pause_and_told_of():
    clock, told = Clock(), []
    operation = failing(ApiException(status=503), DROPPED)
    result = retry.call(operation, 30, clock=clock, sleep=clock.sleep,
                        on_retry=lambda error, pause: told.append((type(error).__name__, pause)))
    assert result == "done"
    assert operation.seen == [False, True, True], "from the second try on, an earlier one may have been carried out"
    assert clock.pauses == [0.2, 0.4]
    assert told == [("ApiException", 0.2), ("ProtocolError", 0.4)]


def test_what_is_not_transient_is_raised_at_once():
    clock = Clock()
    operation = failing(ApiException(status=503), ApiException(status=403))
    with pytest.raises(ApiException) as raised:
        retry.call(operation, 30, clock=clock, sleep=clock.sleep)
    assert raised.value.status == 403
    assert len(operation.seen) == 2 and clock.pauses == [0.2]


def test_past_the_deadline_it_gives_up_with_the_last_error():
    clock = Clock()
    last = ApiException(status=504)
    operation = failing(*[ApiException(status=503)] * 3, last)
    with pytest.raises(retry.GaveUp) as raised:
        retry.call(operation, 1, what="PATCH /api/v1/namespaces/prefect/secrets/x", clock=clock, sleep=clock.sleep)
    # Counted from the first failure; the last pause is cut to what is left, so the last try comes at the deadline.
    assert clock.pauses == pytest.approx([0.2, 0.4, 0.4])
    assert len(operation.seen) == 4
    assert (raised.value.error, raised.value.deadline, raised.value.what) == (
        last, 1, "PATCH /api/v1/namespaces/prefect/secrets/x")


def test_a_deadline_of_0_raises_the_first_failure_itself():
    clock = Clock()
    operation = failing(DROPPED)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        retry.call(operation, 0, clock=clock, sleep=clock.sleep)
    assert len(operation.seen) == 1 and clock.pauses == []


def test_the_transient_test_is_the_callers_to_choose():
    clock = Clock()
    operation = failing(DROPPED)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        retry.call(operation, 30, is_transient=lambda error: retry.transient(error, answered=False), clock=clock,
                   sleep=clock.sleep)
    assert len(operation.seen) == 1


@pytest.mark.parametrize("deadline, tries", [(0, 0), (1, 0), (2, 1), (5, 1), (6, 2), (30, 4), (61, 4), (62, 5)])
def test_the_prefect_cli_retries_as_often_as_its_pauses_fit_in_the_deadline(deadline, tries):
    # Prefect's client pauses 2, 4, 8, 16, … s: four retries take 30 s.
    env = prefect_api.client_retry_env(deadline)
    assert env == {"PREFECT_CLIENT_MAX_RETRIES": str(tries), "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0",
                   "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500,504"}
