"""Fixtures shared by every test layer."""

import pytest

from kit import settings


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    """Write a settings file and point the kit at it; returns a function taking the file's text."""
    path = tmp_path / "test.env"
    monkeypatch.setenv(settings.ENV_FILE_VARIABLE, str(path))

    def write(text: str):
        path.write_text(text)
        return path

    return write
