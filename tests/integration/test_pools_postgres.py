"""The Prefect server on a real PostgreSQL, with the database URL exactly as the prefect-config Secret
carries it: it migrates an empty database and serves, and `inv pools` waits for it while it starts."""

import asyncio
import dataclasses
import secrets as random
from urllib.parse import urlsplit

import pytest

from kit import pool_config, pools
from tests.integration.conftest import secret_value
from tests.integration.prefect_server import prefect_server
from tests.rendering import as_process_pools
from tests.services import need


def plain_url(url: str, database: str) -> str:
    """The asyncpg-style URL (no SQLAlchemy driver suffix) of another database on the same server."""
    return urlsplit(url)._replace(scheme="postgresql", path=f"/{database}").geturl()


def sql(url: str, *statements: str) -> list[list[tuple]]:
    import asyncpg

    async def run():
        connection = await asyncpg.connect(url)
        try:
            return [[tuple(row) for row in await connection.fetch(statement)] for statement in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.fixture
def empty_database():
    """A database made for this test only, so every run starts from an empty one; dropped after."""
    url = need("KIT_TEST_POSTGRES_URL", "PostgreSQL (.ci/services/40-postgres)")
    name = f"kit_test_{random.token_hex(4)}"
    admin = plain_url(url, urlsplit(url).path.strip("/"))
    sql(admin, f"CREATE DATABASE {name}")
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        sql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def process_pools(tmp_path):
    """The shipped pools as a process pool: the database is what this test is about, not the cluster."""
    path = tmp_path / "pools.yaml"
    path.write_text(as_process_pools(pool_config.POOLS_PATH.read_text()))
    return path


def test_prefect_migrates_postgresql_and_inv_pools_waits_for_it(kit_settings, empty_database, tmp_path):
    settings = dataclasses.replace(kit_settings, database_url=empty_database)
    database_url = secret_value(settings, "database-url")
    assert database_url.startswith("postgresql+asyncpg://")
    env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
           "PREFECT_SERVER_API_AUTH_STRING": secret_value(settings, "auth-string")}
    with prefect_server(tmp_path, env, wait=False) as server:
        # Straight after the start: the kit's backoff must carry it over the migration.
        lines = []
        pools.sync(settings, server.api_url, path=process_pools(tmp_path), out=lines.append)
        assert lines[1] == "created pool production", server.log_tail()
    pools_rows, queue_rows = sql(plain_url(empty_database, urlsplit(empty_database).path.strip("/")),
                                 "SELECT name, type FROM work_pool",
                                 "SELECT name FROM work_queue ORDER BY priority")
    assert pools_rows == [("production", "process")]
    assert [name for (name,) in queue_rows] == ["prod-main", "prod-secondary", "default"]
