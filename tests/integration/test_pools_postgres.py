"""The Prefect server on a real PostgreSQL, with the database URL exactly as the prefect-config Secret
carries it: it migrates an empty database and serves, and `inv pools` waits for it while it starts."""

import dataclasses

import pytest

from kit import pool_config, pools
from tests.integration.conftest import secret_value
from tests.integration.postgres import fresh_database, plain_url, sql
from tests.integration.prefect_server import prefect_server
from tests.rendering import as_process_pools
from tests.services import need


@pytest.fixture
def empty_database():
    with fresh_database(need("KIT_TEST_POSTGRES_URL", "PostgreSQL (.ci/services/40-postgres)")) as url:
        yield url


def process_pools(tmp_path):
    """The shipped pools as a process pool: the database is what this test is about, not the cluster."""
    path = tmp_path / "pools.yaml"
    path.write_text(as_process_pools(pool_config.POOLS_PATH.read_text()))
    return path


def test_prefect_migrates_postgresql_and_inv_pools_waits_for_it(kit_settings, empty_database, tmp_path):
    # A migration on a busy machine takes several times the ~10 s it takes on an idle one: the deadline a user
    # there would set, so that the test proves the waiting and not the machine's speed.
    settings = dataclasses.replace(kit_settings, database_url=empty_database, retry_deadline=180)
    database_url = secret_value(settings, "database-url")
    assert database_url.startswith("postgresql+asyncpg://")
    env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
           "PREFECT_SERVER_API_AUTH_STRING": secret_value(settings, "auth-string")}
    with prefect_server(tmp_path, env, wait=False) as server:
        # Straight after the start: the kit's backoff must carry it over the migration.
        lines = []
        pools.sync(settings, server.api_url, path=process_pools(tmp_path), out=lines.append)
        assert lines[1] == "created pool production", server.log_tail()
    pools_rows, queue_rows = sql(plain_url(empty_database),
                                 "SELECT name, type FROM work_pool",
                                 "SELECT name FROM work_queue ORDER BY priority")
    assert pools_rows == [("production", "process")]
    assert [name for (name,) in queue_rows] == ["prod-main", "prod-secondary", "default"]
