"""`inv pools` against a real Prefect server: create, no-change, one update, prune, and the errors.

Writes are counted by the server's own `updated` timestamps: Prefect stamps an object on every write,
even one that sets the values it already has, so an unchanged stamp means no write reached it.
The kubernetes pool's template with a cluster behind it is tests/integration/test_kubernetes_worker.py's.
"""

import pytest
from prefect.exceptions import ObjectNotFound

from kit import pool_config, pools, prefect_api
from kit.errors import UserError
from tests.rendering import IMAGE
from tests.services import free_port


def write_pools(tmp_path, text):
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    return path


def stamps(kit_settings, url, pool):
    """When the server last wrote the pool and each of its queues."""
    with prefect_api.connect(kit_settings, url) as client:
        live = client.read_work_pool(pool)
        queues = client.read_work_queues(work_pool_name=pool)
    return {"(pool)": live.updated, **{queue.name: queue.updated for queue in queues}}


def queues_of(kit_settings, url, pool):
    with prefect_api.connect(kit_settings, url) as client:
        return {queue.name: (queue.priority, queue.concurrency_limit, queue.description)
                for queue in client.read_work_queues(work_pool_name=pool)}


def synced(kit_settings, url, **options):
    """What `inv pools --api-url URL` prints, without its first line (which way it reached Prefect)."""
    lines = []
    pools.sync(kit_settings, url, out=lines.append, **options)
    assert lines[0] == f"prefect: {url} (--api-url)"
    return lines[1:]


def write(kit_settings, url, declared, templates, **options):
    with prefect_api.connect(kit_settings, url) as client:
        return pools.write(client, declared, templates, **options)


def test_the_kits_job_template_is_accepted_and_a_second_run_writes_nothing(kit_settings, kit_server):
    url = kit_server.api_url
    declared = pool_config.load()
    templates = pools.kubernetes_templates(kit_settings, declared, {"production": IMAGE})
    assert write(kit_settings, url, declared, templates, dry_run=True) == [
        "would create pool production",
        "would create queue production/prod-main",
        "would create queue production/prod-secondary",
    ]
    with pytest.raises(ObjectNotFound):
        stamps(kit_settings, url, "production")  # the dry run wrote nothing
    assert write(kit_settings, url, declared, templates) == [
        "created pool production",
        "created queue production/prod-main",
        "created queue production/prod-secondary",
    ]
    with prefect_api.connect(kit_settings, url) as client:
        stored = client.read_work_pool("production")
    assert stored.type == "kubernetes"
    assert stored.base_job_template == templates["production"], "the server keeps the template as written"
    assert queues_of(kit_settings, url, "production") == {
        "prod-main": (1, None, "Main production flows"),
        "prod-secondary": (2, None, "Secondary production flows"),
        "default": (3, None, "The work pool's default queue."),
    }
    before = stamps(kit_settings, url, "production")
    assert write(kit_settings, url, declared, templates) == [
        "unchanged pool production",
        "unchanged queue production/prod-main",
        "unchanged queue production/prod-secondary",
    ]
    assert stamps(kit_settings, url, "production") == before


def test_a_new_image_rewrites_the_template_and_nothing_else(kit_settings, kit_server):
    url = kit_server.api_url
    declared = pool_config.load()
    newer = IMAGE.replace("abc1234", "def5678")
    templates = pools.kubernetes_templates(kit_settings, declared, {"production": newer})
    write(kit_settings, url, declared, pools.kubernetes_templates(kit_settings, declared, {"production": IMAGE}))
    before = stamps(kit_settings, url, "production")
    assert write(kit_settings, url, declared, templates) == [
        "updated pool production: base job template (job_configuration.job_manifest.spec.template.spec."
        "containers[0].image)",
        "unchanged queue production/prod-main",
        "unchanged queue production/prod-secondary",
    ]
    after = stamps(kit_settings, url, "production")
    assert [name for name in before if before[name] != after[name]] == ["(pool)"]


ANALYTICS = """
pools:
  - name: analytics
    type: process
    queues:
      - {name: etl, priority: 1}
      - {name: reports, priority: 2, concurrency_limit: 3}
"""


def test_a_changed_priority_is_exactly_one_write(kit_settings, kit_server, tmp_path):
    url = kit_server.api_url
    synced(kit_settings, url, path=write_pools(tmp_path, ANALYTICS))
    before = stamps(kit_settings, url, "analytics")
    # 5 is free, so Prefect has no other queue to move down: the one write is ours.
    changed = write_pools(tmp_path, ANALYTICS.replace("priority: 2", "priority: 5"))
    assert synced(kit_settings, url, path=changed) == [
        "unchanged pool analytics",
        "unchanged queue analytics/etl",
        "updated queue analytics/reports: priority 2 → 5",
    ]
    after = stamps(kit_settings, url, "analytics")
    assert [name for name in before if before[name] != after[name]] == ["reports"]
    assert queues_of(kit_settings, url, "analytics")["reports"] == (5, 3, "")


PRUNABLE = """
pools:
  - name: prunable
    type: process
    queues:
      - {name: keep}
"""


def add_queue(kit_settings, url, name, scheduled_run=False):
    with prefect_api.connect(kit_settings, url) as client:
        client.create_work_queue(name, work_pool_name="prunable")
        if scheduled_run:
            flow_id = client.create_flow_from_name("kit-prune-test")
            deployment = client.create_deployment(flow_id, name, work_pool_name="prunable", work_queue_name=name)
            client.create_flow_run_from_deployment(deployment)


def test_prune_deletes_undeclared_queues_but_not_default_nor_busy_ones_unless_forced(kit_settings, kit_server, tmp_path):
    url = kit_server.api_url
    path = write_pools(tmp_path, PRUNABLE)
    synced(kit_settings, url, path=path)
    add_queue(kit_settings, url, "old")
    add_queue(kit_settings, url, "busy", scheduled_run=True)

    assert "kept queue prunable/old: not in config/pools.yaml (`inv pools --prune` deletes it)" in \
        synced(kit_settings, url, path=path)
    with pytest.raises(UserError, match=r"queue prunable/busy: has 1 scheduled flow runs, so --prune keeps it"):
        synced(kit_settings, url, path=path, prune=True)
    assert set(queues_of(kit_settings, url, "prunable")) == {"keep", "old", "busy", "default"}, \
        "a refused prune must not delete anything"

    lines = synced(kit_settings, url, path=path, prune=True, force=True)
    assert {"deleted queue prunable/old", "deleted queue prunable/busy"} <= set(lines)
    assert set(queues_of(kit_settings, url, "prunable")) == {"keep", "default"}


def test_an_existing_pool_of_another_type_is_refused_and_force_recreates_it(kit_settings, kit_server, tmp_path):
    from prefect.client.schemas.actions import WorkPoolCreate

    url = kit_server.api_url
    with prefect_api.connect(kit_settings, url) as client:
        client.create_work_pool(WorkPoolCreate(name="typed", type="kubernetes"))
    path = write_pools(tmp_path, "pools:\n  - {name: typed, type: process, queues: [{name: typed-q}]}\n")
    with pytest.raises(UserError) as raised:
        synced(kit_settings, url, path=path)
    (problem,) = raised.value.problems
    assert problem.startswith("pool typed: exists with type 'kubernetes' but config/pools.yaml declares 'process', "
                              "and Prefect cannot change a pool's type; give the pool a new name")
    assert synced(kit_settings, url, path=path, force=True) == ["recreated pool typed", "created queue typed/typed-q"]
    with prefect_api.connect(kit_settings, url) as client:
        assert client.read_work_pool("typed").type == "process"


def test_a_wrong_auth_string_is_one_401_line(kit_settings, kit_server):
    from dataclasses import replace

    wrong = replace(kit_settings, login_password="not-the-password")
    with pytest.raises(UserError) as raised:
        write(wrong, kit_server.api_url, pool_config.load(), {})
    (problem,) = raised.value.problems
    assert problem.startswith(f"LOGIN_USER/LOGIN_PASSWORD: {kit_server.api_url} answered 401 Unauthorized")
    assert "not-the-password" not in problem


def test_an_unreachable_api_says_how_to_port_forward(kit_settings):
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(UserError) as raised:
        with prefect_api.connect(kit_settings, url, attempts=2, first_delay=0.05):
            pass
    (problem,) = raised.value.problems
    assert problem.startswith(f"Prefect API {url}: unreachable after 2 attempts (ConnectError: ")
    assert problem.endswith("is the server running (`inv status`)? Without --api-url the kit uses "
                            "http://prefect.company.local/api when it answers, else a port-forward to the server pod")


def test_a_url_without_the_api_suffix_is_named_at_once(kit_settings, kit_server):
    root = kit_server.api_url.removesuffix("/api")
    with pytest.raises(UserError) as raised:
        with prefect_api.connect(kit_settings, root, attempts=5, first_delay=5):
            pass
    assert raised.value.problems == (f"Prefect API {root}: no Prefect API at this URL (/health answered HTTP 404); "
                                     f"did you mean {root}/api?",)


def test_a_prefect_api_key_is_warned_about_and_not_sent(kit_settings, kit_server, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    key = "pnu_cloud_key_that_this_server_does_not_know"
    monkeypatch.setenv("PREFECT_API_KEY", key)
    # As if the user's profile held it too: Prefect read its environment when it was imported.
    with temporary_settings(updates={PREFECT_API_KEY: key}):
        with prefect_api.connect(kit_settings, kit_server.api_url) as client:
            assert PREFECT_API_KEY.value() is None
            client.read_work_pools()
    warning = capsys.readouterr().err
    assert warning.startswith("warning: PREFECT_API_KEY is set in your environment")
    assert key not in warning


def test_status_without_a_reachable_api_is_one_line_not_an_exception(kit_settings):
    url = f"http://127.0.0.1:{free_port()}/api"
    way, line = pools.status(kit_settings, url)
    assert way == f"prefect: {url} (--api-url)"
    assert line.startswith(f"prefect: Prefect API {url}: unreachable after 2 attempts")
