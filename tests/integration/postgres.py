"""The test PostgreSQL server (KIT_TEST_POSTGRES_URL, .ci/services/40-postgres): SQL through asyncpg, and
databases made for one test or module only, so every run starts from an empty one."""

import asyncio
import secrets as random
import time
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit


def plain_url(url: str, database: str | None = None) -> str:
    """The asyncpg-style URL (no SQLAlchemy driver suffix) of the same database, or another on its server."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql", path=f"/{database or parts.path.strip('/')}").geturl()


def sql(url: str, *statements: str) -> list[list[tuple]]:
    import asyncpg

    async def run():
        connection = await asyncpg.connect(url)
        try:
            return [[tuple(row) for row in await connection.fetch(statement)] for statement in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


@contextmanager
def fresh_database(url: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server of `url` (its role has CREATEDB), as a URL of the same form: empty, or
    a copy of the database of `template` (which nothing may be connected to); dropped after, even while
    something still holds a connection to it."""
    name = f"kit_test_{random.token_hex(4)}"
    admin = plain_url(url)
    copy = f" TEMPLATE {urlsplit(template).path.strip('/')}" if template else ""
    sql(admin, f"CREATE DATABASE {name}{copy}")
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        drop(admin, name)


def drop(admin: str, name: str, attempts: int = 40) -> None:
    import asyncpg

    for attempt in range(attempts):
        try:
            sql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except asyncpg.exceptions.InsufficientPrivilegeError:
            # An autovacuum worker is in the database: its process belongs to no role, so this role may
            # not end it, and it ends by itself within moments.
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)
