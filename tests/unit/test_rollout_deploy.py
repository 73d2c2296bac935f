"""`inv deploy` orders the other tasks' functions and stops at the first failure, saying where.

Each step is proven by its own tests; here they are replaced by recorders, so only the ordering is tested.
"""

import pytest

from kit import deploy, doctor, flows, image, release, rollout, status
from kit.errors import UserError
from tests.rendering import make_settings


@pytest.fixture
def steps(monkeypatch):
    done = []

    def record(name, result=None):
        def step(*args, **kwargs):
            done.append((name, kwargs.get("tag")))
            if name in failing:
                raise UserError(f"{name}: it broke")
            return result
        return step

    failing = set()
    monkeypatch.setattr(doctor, "run", lambda load, out: done.append(("doctor", None)) or "doctor" not in failing)
    monkeypatch.setattr(image, "build", record("build"))
    pushed = release.Build("internal-cr:9999/prefect-core", "abc1234", "sha256:1")
    monkeypatch.setattr(image, "push", record("push", pushed))
    monkeypatch.setattr(rollout, "secrets", record("secrets"))
    monkeypatch.setattr(rollout, "rollout", record("rollout"))
    monkeypatch.setattr(flows, "deploy", record("flows"))
    monkeypatch.setattr(status, "show", record("status"))
    return done, failing


def test_deploy_runs_every_step_in_order_and_rolls_out_the_pushed_tag(steps):
    done, _ = steps
    lines = []
    deploy.deploy(make_settings(), out=lines.append)
    # The rollout makes the pools true itself, between the server and the workers.
    assert [name for name, _ in done] == ["doctor", "build", "push", "secrets", "rollout", "flows", "status"]
    assert ("rollout", "abc1234") in done
    assert [line for line in lines if line.startswith("==> ")] == [
        "==> doctor", "==> build", "==> push", "==> secrets", "==> rollout", "==> flows", "==> status"]


def test_deploy_stops_before_building_when_doctor_finds_a_failure(steps):
    done, failing = steps
    failing.add("doctor")
    with pytest.raises(UserError) as raised:
        deploy.deploy(make_settings(), out=lambda line: None)
    assert [name for name, _ in done] == ["doctor"]
    assert raised.value.problems[0].startswith("doctor: a check above is ✗")


def test_deploy_stops_at_the_first_failure_and_says_where(steps):
    done, failing = steps
    failing.add("rollout")
    with pytest.raises(UserError) as raised:
        deploy.deploy(make_settings(), out=lambda line: None)
    assert [name for name, _ in done] == ["doctor", "build", "push", "secrets", "rollout"]
    assert raised.value.problems == (
        "rollout: it broke",
        "deploy: stopped at `rollout` (the steps before it are done); fix the above and run `inv deploy` again")
