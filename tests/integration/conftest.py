"""Fixtures shared by the integration tests: kit settings from a rendered .env, and a real Prefect
server started with the auth string exactly as the prefect-config Secret carries it."""

import pytest

from kit import ROOT, manifests, secrets, settings
from tests.integration.prefect_server import prefect_server
from tests.rendering import decoded


@pytest.fixture(scope="session")
def kit_env_file(tmp_path_factory):
    """A .env written the way `inv init` writes it: .env.example with a generated password."""
    path = tmp_path_factory.mktemp("kit-env") / ".env"
    text = settings.fill_template((ROOT / ".env.example").read_text(), {"LOGIN_PASSWORD": settings.generate_password()})
    settings.write_env_file(path, text)
    return path


@pytest.fixture(scope="session")
def kit_settings(kit_env_file):
    return settings.load(kit_env_file)


def secret_value(kit_settings, key: str) -> str:
    """One value of the rendered prefect-config Secret, decoded as the pod would see it."""
    config = manifests.find(secrets.render_secrets(kit_settings), "Secret", secrets.CONFIG)
    return decoded(config, key)


@pytest.fixture(scope="module")
def kit_server(kit_settings, tmp_path_factory):
    """A real Prefect server (temporary SQLite) checking the kit's auth string; one per test module."""
    env = {"PREFECT_SERVER_API_AUTH_STRING": secret_value(kit_settings, "auth-string")}
    with prefect_server(tmp_path_factory.mktemp("prefect-server"), env) as server:
        yield server
