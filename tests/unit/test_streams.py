"""How the daemon's build and push streams are read: steps with their times, layers with their bytes, and a
failure's cause as the end of one error line. Fed with streams recorded from the real engine (streams/)."""

import itertools
import json
import re
from pathlib import Path

import pytest

from kit import image, streams
from kit.errors import UserError

RECORDED = Path(__file__).parent / "streams"
DOCKERFILE = (image.ROOT / image.DOCKERFILE).read_text()


def recorded(name: str) -> list[dict]:
    return [json.loads(line) for line in (RECORDED / f"{name}.jsonl").read_text().splitlines()]


class Recorder:
    def __init__(self):
        self.lines, self.events = [], []

    def line(self, text):
        self.lines.append(text)

    def started(self, step):
        self.events.append(("started", step.number, step.started))

    def finished(self, step):
        self.events.append(("finished", step.number, step.elapsed(0), step.cached, step.failed))


def ticking():
    """A clock that advances one second per reading."""
    return itertools.count().__next__


def read(name: str, settings_file: str = ".env"):
    view = Recorder()
    log = streams.BuildLog(view, settings_file, clock=ticking())
    try:
        return log.read(recorded(name)), view, log
    except UserError as error:
        return error.problems, view, log


def test_each_step_is_started_and_finished_once_with_its_time():
    image_id, view, log = read("build-success")
    assert image_id == "sha256:a5d87ca2795526ae26e7a6deb898b7bb970a1bb91d3e61c6aadf9ba2b03cac66"
    assert [event[:2] for event in view.events] == [
        ("started", "1/4"), ("finished", "1/4"), ("started", "2/4"), ("finished", "2/4"),
        ("started", "3/4"), ("finished", "3/4"), ("started", "4/4"), ("finished", "4/4")]
    # The clock is read once at each step's start and end: every step took one tick.
    assert {event[2] for event in view.events if event[0] == "finished"} == {1}
    assert [step.instruction for step in log.steps] == [
        "FROM prefecthq/prefect:3.9.1-python3.11", 'RUN echo "step two" && sleep 1',
        "COPY hello.txt /tmp/hello.txt", "RUN cat /tmp/hello.txt && sleep 2"]


def test_a_steps_own_output_is_kept_without_the_builders_chatter():
    _, view, log = read("build-success")
    assert [step.lines for step in log.steps] == [[], ["step two"], [], ["hi"]]
    assert "Removing intermediate container 736b3d476ee7" in view.lines, "the raw output is there for --verbose"


def test_cached_steps_are_marked():
    _, view, _ = read("build-cached")
    assert [event[3] for event in view.events if event[0] == "finished"] == [False, True, True, True]


def test_a_line_the_engine_splits_over_several_items_is_one_line():
    _, view, log = read("build-apt-proxy")
    assert "E: Package 'krb5-user' has no installation candidate" in view.lines
    assert "E: Unable to locate package libkrb5-dev" in log.steps[-1].lines


@pytest.mark.parametrize("name, cause", [
    # pip without the company CA: its later "ResolutionImpossible" is a consequence, not the cause.
    ("build-pip-certificate", "certificate verify failed: self-signed certificate in certificate chain (pypi.org); "
                              "put your company's root CA (PEM, *.crt) into config/ca-certificates/ and build again"),
    ("build-pip-no-ca-bundle", "TLS failed: no certificate or crl found (pypi.org); "
                               "check the CA certificates in config/ca-certificates/ (PEM, *.crt)"),
    ("build-pip-proxy-refused", "cannot connect to the proxy (Connection refused); the build cannot reach it: check "
                                "HTTP_PROXY, HTTPS_PROXY and NO_PROXY in staging.env"),
    # apt only warns that it could not fetch the lists; the packages it then cannot find are the consequence.
    ("build-apt-proxy", "cannot resolve proxy.company.invalid; the build cannot reach it: check HTTP_PROXY, "
                        "HTTPS_PROXY and NO_PROXY in staging.env"),
    ("build-pip-no-such-package", "pip found no release of prefect-shel; check its name (image/requirements/), its "
                                  "pin (image/constraints.txt) and PIP_INDEX_URL in staging.env"),
    ("build-pip-conflict", "conflicting requirements: The user requested prefect==2.20.0; prefect-shell 0.3.7 depends "
                           "on prefect>=3.6.17; check the pins in image/constraints.txt and image/requirements/"),
])
def test_a_failed_run_step_ends_its_one_line_with_the_cause(name, cause):
    problems, view, log = read(name, settings_file="staging.env")
    [problem] = problems
    step = log.steps[-1]
    assert problem == f"image build failed at step {step.number} ({streams.shorten(step.instruction)}): {cause}"
    assert view.events[-1][0] == "finished" and view.events[-1][4], "the failed step is finished as failed"


def test_an_error_outside_a_run_step_is_passed_on():
    [problem], _, _ = read("build-copy-missing")
    assert problem == ("image build failed at step 3/5 (COPY ca/ /usr/local/share/ca-certificates/): COPY failed: "
                       "file not found in build context or excluded by .dockerignore: stat ca/: file does not exist")


def test_without_a_known_cause_the_last_lines_are_shown():
    items = [
        {"stream": "Step 7/29 : RUN ./configure && make\n"},
        {"stream": " ---> Running in 5666c35dd46c\n"},
        {"stream": "checking for gcc... gcc\nmake: *** [Makefile:12: all] Error 2\n"},
        {"stream": "Removing intermediate container 5666c35dd46c\n"},
        {"error": "The command '/bin/sh -c ./configure && make' returned a non-zero code: 2"},
    ]
    with pytest.raises(UserError) as caught:
        streams.BuildLog(Recorder()).read(items)
    assert caught.value.problems == ("image build failed at step 7/29 (RUN ./configure && make): the command returned "
                                     "a non-zero code: 2; last output: checking for gcc... gcc | "
                                     "make: *** [Makefile:12: all] Error 2",)


def test_the_dockerfiles_own_explanation_outranks_what_the_tools_printed():
    lines = ["urllib.error.URLError: <urlopen error [Errno -3] Temporary failure in name resolution>",
             f"{streams.BUILD_MESSAGE}cannot download https://download.oracle.com/x.zip; it must be reachable"]
    assert streams.failure_cause(lines) == "cannot download https://download.oracle.com/x.zip; it must be reachable"


def test_every_message_the_dockerfile_prints_on_failure_carries_the_marker():
    messages = re.findall(r'echo "([^"]*)" >&2', DOCKERFILE)
    assert messages
    assert [message for message in messages if not message.startswith(streams.BUILD_MESSAGE)] == []


@pytest.mark.parametrize("line, cause", [
    ("Err:1 http://deb.debian.org/debian bookworm InRelease 407  Proxy Authentication Required [IP: 10.0.0.1 3128]",
     "the proxy answered 407 Proxy Authentication Required (deb.debian.org)"),
    ("  Certificate verification failed: The certificate is NOT trusted. The certificate issuer is unknown.",
     "certificate verification failed: The certificate is NOT trusted"),
    ("      src/gssapi/raw/python_gssapi_krb5.h:1:10: fatal error: gssapi/gssapi_krb5.h: No such file or directory",
     "compiler: gssapi/gssapi_krb5.h: No such file or directory"),
])
def test_causes_of_other_tools_are_recognised(line, cause):
    assert streams.failure_cause(["noise before", line, "noise after"]).startswith(f"{cause}; ")


def test_output_without_a_known_cause_has_none():
    assert streams.failure_cause(["checking for gcc... gcc", "make: *** Error 2"]) is None


def test_stream_that_ends_without_an_image_is_an_error():
    with pytest.raises(UserError, match="ended the build without an image"):
        streams.BuildLog(Recorder()).read([{"stream": "Step 1/2 : FROM base\n"}])


class PushRecorder:
    def __init__(self):
        self.layers, self.messages = [], []

    def layer(self, layer):
        self.layers.append((layer.id, layer.status, layer.current, layer.total))

    def message(self, text):
        self.messages.append(text)


def test_push_reports_each_layers_bytes_as_they_go_and_gives_the_digest():
    view = PushRecorder()
    digest = streams.read_push(recorded("push"), "127.0.0.1:5000/kit-d1-record:rec", view)
    assert digest == "sha256:3aa79bbd7cd24f85b2cd49f51c8f4c49811fde36e2b58cabd25d0c12c9640329"
    sent = [current for layer, status, current, total in view.layers if layer == "edc0c237c548" and status == "Pushing"]
    assert len(sent) > 2 and sent == sorted(sent), "the bytes of a layer grow as it goes"
    final = {layer: (status, current, total) for layer, status, current, total in view.layers}
    assert final["edc0c237c548"][0] == "Pushed"
    assert final["edc0c237c548"][1] == final["edc0c237c548"][2] > 100_000_000, "a pushed layer keeps its size"
    assert view.messages == ["The push refers to repository [127.0.0.1:5000/kit-d1-record]",
                             f"rec: digest: {digest} size: 1164"]


def test_a_push_of_layers_the_registry_has_reports_them_as_existing():
    view = PushRecorder()
    streams.read_push(recorded("push-again"), "127.0.0.1:5000/kit-d1-record:rec", view)
    assert {status for _, status, _, _ in view.layers} == {"Preparing", "Layer already exists"}


@pytest.mark.parametrize("error, hint", [
    ("unauthorized: authentication required", "check REGISTRY_USER and REGISTRY_PASSWORD in staging.env"),
    ("no basic auth credentials", "check REGISTRY_USER and REGISTRY_PASSWORD in staging.env"),
    ('Get "https://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
     "check REGISTRY in staging.env and that the registry is running and reachable"),
    ('Get "http://127.0.0.1:44017/v2/": dial tcp 127.0.0.1:44017: connect: connection refused',
     "check REGISTRY in staging.env and that the registry is running and reachable"),
    ("received unexpected HTTP status: 401 Unauthorized", "check REGISTRY_USER and REGISTRY_PASSWORD in staging.env"),
])
def test_push_error_in_the_stream_becomes_one_line_with_a_hint_naming_the_settings_file(error, hint):
    with pytest.raises(UserError) as caught:
        streams.read_push([{"status": "Preparing", "id": "a1"}, {"error": error, "errorDetail": {"message": error}}],
                          "r/prefect-core:abc", PushRecorder(), "staging.env")
    assert caught.value.problems == (f"push of r/prefect-core:abc failed: {error}; {hint}",)
