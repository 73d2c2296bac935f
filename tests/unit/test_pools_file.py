"""The pools file: what config/pools.yaml may say, and one error line per mistake."""

import pytest

from kit import pools
from kit.errors import UserError

VALID = """
pools:
  - name: production
    type: process
    concurrency_limit: 4
    paused: false
    queues:
      - name: prod-main
        priority: 1
        concurrency_limit: 2
        description: Main
      - name: prod-secondary
"""


def problems(text):
    with pytest.raises(UserError) as raised:
        pools.parse(text, source="pools.yaml")
    return list(raised.value.problems)


def test_a_valid_file_becomes_plain_data():
    assert pools.parse(VALID) == (
        pools.Pool("production", "process", 4, False, (
            pools.Queue("prod-main", 1, 2, "Main"),
            pools.Queue("prod-secondary"),
        )),
    )


def test_the_checked_in_file_declares_the_seed_pool_and_queues():
    (production,) = pools.load()
    assert (production.name, production.type) == ("production", "process")
    assert [queue.name for queue in production.queues] == ["prod-main", "prod-secondary"]


def test_an_unknown_key_is_named_with_a_suggestion():
    assert problems(VALID.replace("priority: 1", "prority: 1")) == [
        "pools.yaml: pool 'production', queue 'prod-main': unknown key 'prority'; did you mean priority?"]


def test_a_duplicate_queue_is_refused():
    assert problems(VALID.replace("prod-secondary", "prod-main")) == [
        "pools.yaml: pool 'production': queue 'prod-main' declared twice; keep one"]


def test_a_duplicate_pool_is_refused():
    text = VALID + VALID.replace("pools:\n", "").replace("prod-", "other-")
    assert problems(text) == ["pools.yaml: pool 'production' declared twice; keep one"]


@pytest.mark.parametrize("text", [VALID.replace("concurrency_limit: 2", "concurrency_limit: -1"),
                                  VALID.replace("concurrency_limit: 4", "concurrency_limit: -3")])
def test_a_negative_limit_is_refused(text):
    (problem,) = problems(text)
    assert "concurrency_limit must be a whole number ≥ 0, or null for no limit" in problem


def test_two_queues_may_not_share_a_priority():
    text = VALID.replace("      - name: prod-secondary", "      - name: prod-secondary\n        priority: 1")
    assert problems(text) == ["pools.yaml: pool 'production': priority 1 given to two queues; give each queue its own"]


@pytest.mark.parametrize("change, expected", [
    (("type: process", "type: kubernetes"), "type 'kubernetes' is not supported; use one of process"),
    (("name: production", "name: prefect-prod"), "Prefect reserves names starting with 'prefect'"),
    (("name: prod-main", "name: Prod_Main"), "name 'Prod_Main' must be lowercase letters, digits and '-'"),
    (("priority: 1", "priority: 0"), "priority must be a whole number from 1 (the highest), not 0"),
    (("paused: false", "paused: maybe"), "paused must be true or false, not 'maybe'"),
    (("concurrency_limit: 2", "concurrency_limit: true"), "concurrency_limit must be a whole number"),
])
def test_each_bad_value_is_one_line_that_says_how_to_fix_it(change, expected):
    (problem,) = problems(VALID.replace(*change))
    assert expected in problem


def test_a_queue_name_must_leave_room_for_the_worker_deployment_name():
    long_name = "q" * (pools.MAX_QUEUE_NAME + 1)
    (problem,) = problems(VALID.replace("prod-secondary", long_name))
    assert f"at most {pools.MAX_QUEUE_NAME} characters" in problem
    assert len(pools.WORKER_PREFIX + "q" * pools.MAX_QUEUE_NAME) == 63


def test_every_problem_is_reported_at_once():
    text = VALID.replace("priority: 1", "prority: 1").replace("concurrency_limit: 4", "concurrency_limit: -1")
    assert len(problems(text)) == 2


@pytest.mark.parametrize("text, expected", [
    ("pools: [", "pools.yaml:1: not valid YAML"),
    ("pools: []", "pools.yaml: must be a mapping with a non-empty list `pools:`"),
    ("- production", "pools.yaml: must be a mapping with a non-empty list `pools:`"),
    (VALID + "extra: 1\n", "pools.yaml: unknown key 'extra'"),
])
def test_a_malformed_file_is_one_line(text, expected):
    assert problems(text)[0].startswith(expected)


def test_a_missing_file_says_what_it_is_for(tmp_path):
    with pytest.raises(UserError, match="not found; it declares the work pools"):
        pools.load(tmp_path / "pools.yaml")
