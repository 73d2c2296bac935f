"""The pools file: what config/pools.yaml may say, and one error line per mistake."""

import pytest

from kit import pool_config as pools
from kit.errors import UserError
from kit.pool_config import JobSettings, WorkerSettings
from tests.rendering import as_process_pools

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


def test_the_checked_in_file_declares_the_seed_pool_and_queues_as_kubernetes():
    (production,) = pools.load()
    assert (production.name, production.type) == ("production", "kubernetes")
    assert [queue.name for queue in production.queues] == ["prod-main", "prod-secondary"]


def test_a_process_pool_is_a_one_line_change_of_the_checked_in_file():
    text = pools.POOLS_PATH.read_text()
    changed = as_process_pools(text)
    assert len(set(text.splitlines()) ^ set(changed.splitlines())) == 2, "one line out, one line in"
    (production,) = pools.parse(changed)
    assert (production.type, production.job) == ("process", None)


KUBERNETES = """
pools:
  - name: production
    type: kubernetes
    worker:
      replicas: 2
      limit: 5
      resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {memory: 1Gi}}
    job:
      resources: {limits: {memory: 4Gi}}
      ttl_seconds_after_finished: 600
      manifest: {spec: {activeDeadlineSeconds: 3600}}
    queues:
      - name: prod-main
        worker: {replicas: 3, resources: {limits: {memory: 2Gi}}}
      - name: prod-secondary
"""


def test_worker_and_job_settings_become_plain_data_with_the_job_defaults_filled_in():
    (pool,) = pools.parse(KUBERNETES)
    assert pool.worker == WorkerSettings(2, 5, {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                "limits": {"memory": "1Gi"}})
    assert pool.job == JobSettings(
        {"requests": pools.DEFAULT_JOB_RESOURCES["requests"],
         "limits": {**pools.DEFAULT_JOB_RESOURCES["limits"], "memory": "4Gi"}},
        600, {"spec": {"activeDeadlineSeconds": 3600}})


def test_a_queue_overrides_the_pools_worker_settings_key_by_key():
    (pool,) = pools.parse(KUBERNETES)
    main, secondary = pool.queues
    assert pool.worker_for(main) == WorkerSettings(3, 5, {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                          "limits": {"memory": "2Gi"}})
    assert pool.worker_for(secondary) == pool.worker


def test_a_kubernetes_pool_without_a_job_section_gets_the_defaults():
    (pool,) = pools.parse("pools:\n  - {name: k8s, type: kubernetes, queues: [{name: q}]}\n")
    assert pool.job == JobSettings()
    assert pool.job.ttl_seconds_after_finished == pools.DEFAULT_JOB_TTL


def test_a_queue_declared_in_two_pools_is_refused():
    text = VALID + "  - name: other\n    type: process\n    queues:\n      - name: prod-main\n"
    assert problems(text) == [
        "pools.yaml: queue 'prod-main' declared in pools 'production' and 'other'; its worker is Deployment "
        "prefect-worker-prod-main, so a queue name may appear in one pool only: rename one"]


@pytest.mark.parametrize("change, expected", [
    (("replicas: 2", "replicas: two"), "worker: replicas must be a whole number ≥ 0, not 'two'"),
    (("replicas: 2", "replicas: -1"), "worker: replicas must be a whole number ≥ 0, not -1"),
    (("limit: 5", "limit: 0"), "worker: limit must be a whole number ≥ 1 (flow runs at once per worker pod)"),
    (("limit: 5", "limit: true"), "worker: limit must be a whole number ≥ 1"),
    (("cpu: 100m", "cpu: lots"), "worker: resources: requests: cpu 'lots' is not a Kubernetes quantity"),
    (("memory: 256Mi", "memory: 256MB"), "resources: requests: memory '256MB' is not a Kubernetes quantity"),
    (("limit: 5", "limits: 5"), "worker: unknown key 'limits'; did you mean limit?"),
    (("ttl_seconds_after_finished: 600", "ttl_seconds_after_finished: soon"),
     "job: ttl_seconds_after_finished must be a whole number ≥ 0, or null"),
    (("manifest: {spec: {activeDeadlineSeconds: 3600}}", "manifest: [1]"), "job: manifest must be a mapping"),
    (("manifest: {spec:", "manifest: {kind: Pod, spec:"), "job: manifest: kind must be Job, not 'Pod'"),
    (("resources: {limits: {memory: 4Gi}}", "resources: {limits: {memory: 100Mi}}"),
     "job: resources: requests: memory 512Mi is more than its limit 100Mi"),
    (("worker: {replicas: 3,", "worker: {replica: 3,"), "queue 'prod-main': worker: unknown key 'replica'"),
])
def test_each_bad_worker_or_job_setting_is_one_line(change, expected):
    (problem,) = problems(KUBERNETES.replace(*change))
    assert expected in problem


def test_a_job_section_on_a_process_pool_is_refused():
    (problem,) = problems(KUBERNETES.replace("type: kubernetes", "type: process"))
    assert problem == ("pools.yaml: pool 'production': job: only a kubernetes pool runs its flow runs as Jobs; "
                       "remove it, or set type: kubernetes")


@pytest.mark.parametrize("value, expected", [("500m", "0.5"), ("2", "2"), (1, "1"), ("1.5", "1.5"), ("512Mi", "536870912"),
                                             ("1Gi", "1073741824"), ("2k", "2000"), ("x", None), (True, None)])
def test_quantities_are_read_as_kubernetes_reads_them(value, expected):
    assert pools.quantity(value) == (None if expected is None else pools.Decimal(expected))


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
    (("type: process", "type: docker"), "type 'docker' is not supported; use one of process, kubernetes"),
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
