"""What `inv build` and `inv push` show: plain lines when stdout is not a terminal, rich's live lines when it
is; fed with the recorded engine streams of streams/."""

import io
import itertools

from rich.console import Console

from kit import progress, streams
from tests.unit.test_streams import recorded


def ticking():
    return itertools.count().__next__


def build_lines(name, verbose=False):
    lines = []
    view = progress.PlainBuild(lines.append, verbose, clock=ticking())
    try:
        streams.BuildLog(view, clock=ticking()).read(recorded(name))
    except streams.UserError:
        pass
    return lines


def test_a_plain_build_is_one_line_per_step_with_its_time():
    assert build_lines("build-success") == [
        "step   1/4     1.0s  FROM prefecthq/prefect:3.9.1-python3.11",
        'step   2/4     1.0s  RUN echo "step two" && sleep 1',
        "step   3/4     1.0s  COPY hello.txt /tmp/hello.txt",
        "step   4/4     1.0s  RUN cat /tmp/hello.txt && sleep 2",
    ]


def test_cached_steps_say_so_instead_of_a_time():
    assert [line.split()[2] for line in build_lines("build-cached")] == ["1.0s", "cached", "cached", "cached"]


def test_verbose_adds_the_engines_own_output():
    lines = build_lines("build-success", verbose=True)
    assert " ---> Running in 736b3d476ee7" in lines and "step two" in lines
    assert lines.index("step   4/4     1.0s  RUN cat /tmp/hello.txt && sleep 2") > lines.index("hi")


def test_a_failed_step_shows_its_last_output_lines_the_user_has_not_seen():
    lines = build_lines("build-pip-certificate")
    failed = next(index for index, line in enumerate(lines) if "failed after" in line)
    assert lines[failed].startswith("step   6/6  failed after 1.0s  RUN pip list")
    shown = lines[failed + 1:]
    assert 0 < len(shown) <= progress.FAILED_STEP_LINES and all(line.startswith("    ") for line in shown)
    assert any("CERTIFICATE_VERIFY_FAILED" in line for line in shown)


def test_durations_read_as_a_person_says_them():
    assert [progress.duration(s) for s in (0.42, 12.34, 125, 3725)] == ["0.4s", "12.3s", "2m05s", "1h02m"]


def test_a_plain_push_is_a_line_per_uploaded_layer_with_its_bytes():
    lines = []
    view = progress.PlainPush(lines.append)
    streams.read_push(recorded("push"), "127.0.0.1:5000/kit-d1-record:rec", view)
    view.close()
    assert lines[0] == "The push refers to repository [127.0.0.1:5000/kit-d1-record]"
    assert lines[1:5] == ["f8d78e831502: pushed 1.5 MB", "ae7731824c18: pushed 3.0 MB",
                          "94cfda38a4db: pushed 239.9 MB", "edc0c237c548: pushed 582.2 MB"]
    assert lines[5].startswith("rec: digest: sha256:3aa79bbd")


def test_layers_the_registry_has_are_one_line_before_the_digest():
    lines = []
    view = progress.PlainPush(lines.append)
    streams.read_push(recorded("push-again"), "127.0.0.1:5000/kit-d1-record:rec", view)
    view.close()
    assert lines[1:] == ["4 layers already in the registry",
                         "rec: digest: sha256:3aa79bbd7cd24f85b2cd49f51c8f4c49811fde36e2b58cabd25d0c12c9640329 "
                         "size: 1164"]


def terminal():
    return Console(file=io.StringIO(), force_terminal=True, width=120, highlight=False)


def test_on_a_terminal_the_running_step_shows_its_ticking_time_and_last_output():
    console = terminal()
    view = progress.LiveBuild(console, verbose=False, clock=lambda: 7.5)
    log = streams.BuildLog(view, clock=lambda: 0.0)
    log.add("Step 7/29 : RUN pip install -r /tmp/requirements/base.txt")
    log.add("Collecting prefect-shell")
    console.print(view)
    drawn = console.file.getvalue()
    assert "step  7/29     7.5s  RUN pip install -r /tmp/requirements/base.txt" in drawn
    assert "Collecting prefect-shell" in drawn


def test_on_a_terminal_push_shows_bytes_per_layer():
    view = progress.LivePush(terminal())
    streams.read_push(recorded("push"), "127.0.0.1:5000/kit-d1-record:rec", view)
    done = {task.description: (task.completed, task.total) for task in view.live.tasks}
    assert done["edc0c237c548: Pushed"][0] == done["edc0c237c548: Pushed"][1] > 100_000_000


def test_without_a_terminal_the_views_are_plain_lines(capsys):
    with progress.build_view() as build, progress.push_view() as push:
        assert isinstance(build, progress.PlainBuild) and isinstance(push, progress.PlainPush)
        build.finished(streams.Step("1/1", "FROM base", started=0.0, ended=2.0))
    assert capsys.readouterr().out == "step   1/1     2.0s  FROM base\n"


def deployment(ready, desired=1):
    return {"kind": "Deployment", "metadata": {"name": "prefect-worker-prod-main"}, "spec": {"replicas": desired},
            "status": {"readyReplicas": ready}}


def test_a_plain_wait_prints_a_workloads_message_only_when_it_changes():
    lines = []
    view = progress.PlainWait(lines.append)
    for message, done in (("0 of 1 updated replicas are available", False),
                          ("0 of 1 updated replicas are available", False), ("successfully rolled out", True)):
        view.show("deployment/prefect-worker-prod-main", deployment(int(done)), message, done)
    assert lines == ["0 of 1 updated replicas are available", "successfully rolled out"]


def test_a_live_wait_line_shows_ready_of_desired_and_the_time_waited():
    assert progress.wait_line("deployment/w", deployment(1, 2), "1 of 2 updated replicas are available", 12.34) == \
        "deployment/w  1/2 ready   12.3s  1 of 2 updated replicas are available"


def test_a_live_wait_draws_the_waiting_and_leaves_the_finished_as_lines():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    view = progress.LiveWait(console, clock=ticking())
    view.show("deployment/w", deployment(0), "0 of 1 updated replicas are available", False)
    console.print(view)
    assert "deployment/w  0/1 ready" in screen.getvalue()
    view.show("deployment/w", deployment(1), 'deployment "w" successfully rolled out', True)
    assert view.waiting == {}
    assert screen.getvalue().rstrip().endswith('deployment "w" successfully rolled out')
