"""The scaled server layout, proven with real processes on 127.0.0.1: a migration step on an empty
PostgreSQL database, then two API processes (`--no-services`) started at the same moment and one
background-services process, sharing the database and a Redis, behind a round-robin proxy. Runs, events
and cancels cross from one API process to the other, and a run survives losing the API it talked to.

The same layout with its Redis settings dropped (each process on Prefect's in-memory messaging) starts
and answers health checks just as well; the tests parametrized by `site` tell it apart: there the event
and the cancel never cross.

Select with `-m scaled`. Needs KIT_TEST_POSTGRES_URL and KIT_TEST_REDIS_URL (.ci/services/40-postgres and
50-redis). Only to keep the module short, two of Prefect's own intervals are shortened: the workers poll
every second (PREFECT_WORKER_QUERY_SECONDS, default 10) and the event persister writes every 0.5 s
(PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL, default 5).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar
from uuid import UUID

import pytest

from kit import flows, prefect_api
from tests.integration.conftest import secret_value
from tests.integration.postgres import fresh_database, plain_url, sql
from tests.integration.scaled import (ScaledLayout, fresh_redis_database, in_memory_layout, migrate, port_of,
                                      process_worker, rendered, scaled_layout)
from tests.services import need

pytestmark = pytest.mark.scaled

T = TypeVar("T")

FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "1"}
FAST_SERVICES = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5"}
RUN_TIMEOUT = 120.0
# How long the safe layout may take to carry an event or a cancel across (here: 1-3 s) ...
CROSSES_WITHIN = 30.0
# ... and how long the unsafe layout is watched not doing it (several times what the safe one needs).
NEVER_WITHIN = 10.0
# How a pool's worker reaches the APIs.
VIA = ("api-2", "proxy")

RELEASE_FLOW = '''\
import time
from pathlib import Path

from prefect import flow


@flow
def wait_for_release(release: str, deadline: float = 180) -> str:
    """Runs until the test creates the file `release`, so it is RUNNING for as long as the test needs."""
    path = Path(release)
    give_up = time.monotonic() + deadline
    while not path.exists():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.1)
    return path.read_text()
'''

# What the migration step must leave and a second run must not change: the schema (Alembic's version,
# every column and index) and the block types with their schemas. Block registration rewrites each
# block type's `updated` stamp even when nothing differs (as every single-server start does), so that one
# column is left out.
CATALOG = {
    "alembic version": "SELECT version_num FROM alembic_version",
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default"
               " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    "block types": "SELECT slug, id, name, description, code_example, logo_url, documentation_url, is_protected"
                   " FROM block_type ORDER BY slug",
    "block schemas": "SELECT id, checksum, version, block_type_id, capabilities, fields FROM block_schema ORDER BY id",
}


def catalog(database_url: str) -> dict[str, list[tuple]]:
    return dict(zip(CATALOG, sql(plain_url(database_url), *CATALOG.values())))


def registration_stamps(database_url: str) -> list[tuple]:
    """When each block type was last written: any registration rewrites every one."""
    (stamps,) = sql(plain_url(database_url), "SELECT slug, updated FROM block_type ORDER BY slug")
    return stamps


def within(seconds: float, probe: Callable[[], T]) -> T:
    """probe() every 0.25 s until it returns something true or `seconds` have passed; its last answer."""
    deadline = time.monotonic() + seconds
    while not (answer := probe()) and time.monotonic() < deadline:
        time.sleep(0.25)
    return answer


@dataclass
class Migrated:
    database_url: str
    catalog: dict[str, list[tuple]]
    registered_at: list[tuple]


@dataclass
class Site:
    """A running layout: its processes, and the deployments its workers run."""
    name: str
    layout: ScaledLayout
    crosses: bool
    deployments: dict[str, UUID]

    @property
    def api_1(self) -> str:
        return self.layout.apis[0].api_url

    @property
    def api_2(self) -> str:
        return self.layout.apis[1].api_url


@pytest.fixture(scope="module")
def auth_string(kit_settings):
    return secret_value(kit_settings, "auth-string")


@pytest.fixture(scope="module")
def postgres_url():
    return need("KIT_TEST_POSTGRES_URL", "PostgreSQL (.ci/services/40-postgres)")


@pytest.fixture(scope="module")
def redis_url():
    with fresh_redis_database(need("KIT_TEST_REDIS_URL", "Redis (.ci/services/50-redis)")) as url:
        yield url


@pytest.fixture(scope="module")
def layout_of(kit_env_file, redis_url):
    """The kit's render of the scaled layout on a database of this test module, with the kit's .env."""
    return lambda database_url: rendered(kit_env_file.read_text(), database_url, redis_url)


@pytest.fixture(scope="module")
def migrated(postgres_url, layout_of, tmp_path_factory):
    """A fresh database after the migration step, before anything else touched it."""
    with fresh_database(postgres_url) as database_url:
        migrate(tmp_path_factory.mktemp("migrate"), layout_of(database_url))
        yield Migrated(database_url, catalog(database_url), registration_stamps(database_url))


@pytest.fixture(scope="module")
def sites(migrated, postgres_url, layout_of, kit_settings, tmp_path_factory):
    """Both layouts, started at once to share the machine's start-up time: "redis" on the migrated
    database, "in-memory" on a copy of it (made before any API connects). Each has two process pools
    (their workers start on first use): one polled through API 2, one through the proxy."""
    tmp = tmp_path_factory.mktemp("sites")
    code = tmp / "flows"
    code.mkdir()
    (code / "release.py").write_text(RELEASE_FLOW)
    with ExitStack() as stack:
        copy = stack.enter_context(fresh_database(postgres_url, template=migrated.database_url))
        rendered_layouts = {"redis": layout_of(migrated.database_url), "in-memory": in_memory_layout(layout_of(copy))}
        layouts = {name: stack.enter_context(scaled_layout(tmp / name, layout, wait=False,
                                                           services_environment=FAST_SERVICES))
                   for name, layout in rendered_layouts.items()}
        running = {}
        for name, layout in layouts.items():
            layout.wait_healthy()
            deployments = {}
            with prefect_api.connect(kit_settings, layout.apis[0].api_url) as client:
                for via in VIA:
                    client.create_work_pool(work_pool=_pool(f"scaled-{via}"))
                    deployments[f"release via {via}"] = _deploy(client, f"scaled-{via}", "wait-for-release",
                                                                "release.py:wait_for_release", code)
                deployments["hello via api-2"] = _deploy(client, "scaled-api-2", "hello", "hello.py:hello",
                                                         flows.FLOWS_DIR)
            running[name] = Site(name, layout, name == "redis", deployments)
        yield running


@pytest.fixture(scope="module")
def start_worker(sites, auth_string, tmp_path_factory):
    """Starts, once, the process worker of a site's pool reached `via` API 2 or the proxy; each only when
    a test needs it, as every worker polling every second costs the busy machine CPU."""
    tmp = tmp_path_factory.mktemp("workers")
    with ExitStack() as stack:
        started = set()

        def start(site: Site, via: str) -> None:
            if (site.name, via) not in started:
                url = site.api_2 if via == "api-2" else site.layout.proxy.api_url
                stack.enter_context(process_worker(tmp / f"{site.name}-{via}", url, auth_string, f"scaled-{via}",
                                                   FAST_WORKER))
                started.add((site.name, via))

        yield start


def _pool(name: str):
    from prefect.client.schemas.actions import WorkPoolCreate

    return WorkPoolCreate(name=name, type="process")


def _deploy(client, pool: str, flow_name: str, entrypoint: str, code: Path) -> UUID:
    # Named after its pool: a deployment of the same flow and name would be this one, moved to another pool.
    return client.create_deployment(
        flow_id=client.create_flow_from_name(flow_name), name=pool, work_pool_name=pool,
        entrypoint=entrypoint,
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(code)}}])


@pytest.fixture(scope="module")
def scaled(sites) -> Site:
    return sites["redis"]


@pytest.fixture(params=["redis", "in-memory"])
def site(request, sites) -> Site:
    return sites[request.param]


def state_of(client, run_id: UUID) -> str:
    return client.read_flow_run(run_id).state.type.value


def wait_for_state(client, run_id: UUID, wanted: set[str], timeout: float = RUN_TIMEOUT) -> str:
    """The run's state type once it is one of `wanted`; fails on any other final one, or after `timeout`."""
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

    def settled() -> str:
        seen = state_of(client, run_id)
        return seen if seen in wanted | final else ""

    state = within(timeout, settled)
    assert state in wanted, f"flow run {run_id}: {state or 'still not ' + '/'.join(wanted)} after {timeout:.0f} s"
    return state


def start_release_run(kit_settings, site: Site, start_worker, via: str, tmp_path: Path) -> tuple[UUID, Path]:
    """A run of the release flow on the worker reaching the APIs `via` API 2 or the proxy, once RUNNING."""
    release = tmp_path / "release"
    with prefect_api.connect(kit_settings, site.api_2) as client:
        run = client.create_flow_run_from_deployment(site.deployments[f"release via {via}"],
                                                     parameters={"release": str(release)})
        start_worker(site, via)
        wait_for_state(client, run.id, {"RUNNING"})
    return run.id, release


def alembic_head() -> str:
    """The newest revision of the PostgreSQL migrations the installed Prefect ships."""
    import prefect.server.database
    from alembic.script import ScriptDirectory

    migrations = Path(prefect.server.database.__file__).parent / "_migrations"
    return ScriptDirectory(str(migrations), version_locations=[str(migrations / "versions" / "postgresql")]
                           ).get_current_head()


def test_the_migration_step_migrates_an_empty_database_and_registers_the_block_types(migrated):
    from prefect.server.models.block_registration import COLLECTIONS_BLOCKS_DATA_PATH

    collections = json.loads(COLLECTIONS_BLOCKS_DATA_PATH.read_text())["collections"].values()
    shipped = {slug for collection in collections for slug in collection["block_types"]}
    registered = {row[0] for row in migrated.catalog["block types"]}
    protected = {row[0] for row in migrated.catalog["block types"] if row[-1]}
    assert migrated.catalog["alembic version"] == [(alembic_head(),)]
    assert shipped <= registered, f"block types missing: {sorted(shipped - registered)}"
    assert protected == {"secret", "webhook", "local-file-system"}
    # prefect-redis's own block type comes from the installed collections, as on a server's start.
    assert "redis-database" in registered


def test_two_api_processes_started_together_after_the_migration_both_serve_it(scaled, migrated, kit_settings):
    for api in scaled.layout.apis:
        with prefect_api.connect(kit_settings, api.api_url) as client:
            served = {block_type.slug for block_type in client.read_block_types()}
        assert served == {row[0] for row in migrated.catalog["block types"]}
        log = api.log.read_text(errors="replace")
        assert "Traceback" not in log and "Error" not in log, api.log_tail()
    # Neither registered block types itself: what they serve is what the migration step wrote.
    assert registration_stamps(migrated.database_url) == migrated.registered_at


def test_a_second_migration_step_on_a_database_at_head_changes_nothing(scaled, migrated, layout_of, tmp_path):
    """As on every rollout after the first, with the API processes serving meanwhile."""
    migrate(tmp_path, layout_of(migrated.database_url))
    assert catalog(migrated.database_url) == migrated.catalog


def test_a_run_created_through_api_1_completes_on_a_worker_polling_api_2(scaled, start_worker, kit_settings):
    with prefect_api.connect(kit_settings, scaled.api_1) as client:
        run = client.create_flow_run_from_deployment(scaled.deployments["hello via api-2"])
    start_worker(scaled, "api-2")
    with prefect_api.connect(kit_settings, scaled.api_2) as client:
        assert wait_for_state(client, run.id, {"COMPLETED"}) == "COMPLETED"


def test_every_part_that_must_be_shared_uses_the_redis_it_was_given(scaled, redis_url):
    """Each is configured on its own (the cleanup queue even with its own URL); a forgotten one would fall
    back to memory or to localhost:6379. Concurrency lease storage is configured too, but nothing here
    takes a concurrency slot."""
    import redis

    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        keys = set(client.scan_iter(count=1000))
    parts = {
        "event messaging (the events stream)": lambda key: key == "events",
        "messaging cache": lambda key: key.startswith("message:messaging-cache:"),
        "causal ordering of the triggers": lambda key: key.startswith("triggers:"),
        "Docket of the API processes (named by PREFECT_SERVER_DOCKET_NAME)": lambda key: key == "prefect-server:stream",
        # `prefect server services start` names its Docket "prefect", whatever the setting says.
        "Docket of the background services": lambda key: key == "prefect:stream",
        "worker cleanup queue": lambda key: key.startswith("prefect:worker-cleanup"),
    }
    assert [part for part, used in parts.items() if not any(map(used, keys))] == []


def test_an_event_emitted_through_api_1_reaches_a_subscriber_of_api_2(scaled, auth_string):
    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient, PrefectEventSubscriber
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    sent = Event(event=f"kit.test.{uuid.uuid4().hex}", resource={"prefect.resource.id": "kit.test"})

    async def send_and_receive() -> Event:
        only_ours = EventFilter(event=EventNameFilter(name=[sent.event]))
        async with PrefectEventSubscriber(api_url=scaled.api_2, filter=only_ours) as subscriber:
            async with PrefectEventsClient(api_url=scaled.api_1) as emitter:
                await emitter.emit(sent)
            return await asyncio.wait_for(subscriber.__anext__(), CROSSES_WITHIN)

    with temporary_settings({PREFECT_API_AUTH_STRING: auth_string}):
        received = asyncio.run(send_and_receive())
    assert (received.id, received.event) == (sent.id, sent.event)


def test_an_event_posted_through_api_1_is_found_through_api_2(site, kit_settings):
    from prefect.events import Event
    from prefect.events.filters import EventFilter, EventNameFilter

    posted = Event(event=f"kit.test.{uuid.uuid4().hex}", resource={"prefect.resource.id": "kit.test"})
    with prefect_api.connect(kit_settings, site.api_1) as client:
        client.request("POST", "/events", json=[posted.model_dump(mode="json")]).raise_for_status()

    with prefect_api.connect(kit_settings, site.api_2) as client:
        def found() -> list:
            # The client's default limit (100) is more than Prefect 3.9.1's server accepts (50).
            return client.read_events(EventFilter(event=EventNameFilter(name=[posted.event])), limit=50).events

        if site.crosses:
            assert [event.id for event in within(CROSSES_WITHIN, found)] == [posted.id]
        else:
            assert within(NEVER_WITHIN, found) == [], "the in-memory layout carried an event across"


def test_a_cancel_sent_through_api_1_stops_a_run_on_a_worker_polling_api_2(site, start_worker, kit_settings,
                                                                           tmp_path):
    from prefect.states import Cancelling

    run_id, release = start_release_run(kit_settings, site, start_worker, "api-2", tmp_path)
    try:
        with prefect_api.connect(kit_settings, site.api_1) as client:
            client.set_flow_run_state(run_id, Cancelling())
        with prefect_api.connect(kit_settings, site.api_2) as client:
            if site.crosses:
                assert wait_for_state(client, run_id, {"CANCELLED"}, CROSSES_WITHIN) == "CANCELLED"
            else:
                changed = within(NEVER_WITHIN, lambda: state_of(client, run_id) != "CANCELLING")
                assert not changed, f"the in-memory layout carried a cancel across: {state_of(client, run_id)}"
    finally:
        release.write_text("released")  # lets a run that was not stopped end on its own


# Last: it leaves the redis layout with one API.
def test_a_run_survives_kill_9_of_the_api_its_worker_talked_to(scaled, start_worker, kit_settings, tmp_path):
    run_id, release = start_release_run(kit_settings, scaled, start_worker, "proxy", tmp_path)
    proxy = scaled.layout.proxy
    ports = [port_of(api) for api in scaled.layout.apis]
    assert all(proxy.opened[port] for port in ports), f"the worker and its run did not reach both APIs: {proxy.opened}"
    # The API holding the most of the worker's and the run's connections through the proxy is killed.
    victim = max(range(len(ports)), key=lambda index: proxy.open[ports[index]])
    survivor = scaled.layout.apis[1 - victim]
    assert proxy.open[ports[victim]] > 0, f"no connection open through the proxy: {proxy.open}"
    scaled.layout.kill_api(victim)
    release.write_text("released")
    with prefect_api.connect(kit_settings, survivor.api_url) as client:
        assert wait_for_state(client, run_id, {"COMPLETED"}) == "COMPLETED"
