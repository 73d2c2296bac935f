"""How the kit addresses the Prefect API: which URL, which variables, which warning."""

import pytest

from kit import prefect_api
from kit.errors import UserError
from tests.rendering import make_settings


def test_the_public_api_url_is_the_default_and_follows_tls():
    assert prefect_api.api_url(make_settings()) == "http://prefect.company.local/api"
    assert prefect_api.api_url(make_settings(TLS_SECRET="prefect-tls")) == "https://prefect.company.local/api"


def test_an_api_url_override_wins_without_its_trailing_slash():
    assert prefect_api.api_url(make_settings(), "http://127.0.0.1:4200/api/") == "http://127.0.0.1:4200/api"


@pytest.mark.parametrize("bad", ["127.0.0.1:4200/api", "ftp://host/api", "http:///api"])
def test_an_api_url_that_is_not_http_is_one_line(bad):
    with pytest.raises(UserError, match=r"^--api-url: .* is not an http\(s\) URL; e.g. http://127.0.0.1:4200/api$"):
        prefect_api.api_url(make_settings(), bad)


def test_clients_get_the_auth_string_and_never_an_api_key():
    env = prefect_api.client_env(make_settings(), "http://127.0.0.1:4200/api")
    assert env == {"PREFECT_API_URL": "http://127.0.0.1:4200/api",
                   "PREFECT_API_AUTH_STRING": "admin:correct-horse-battery"}


def test_a_set_api_key_is_warned_about_without_showing_it():
    assert prefect_api.api_key_warning({}) is None
    assert prefect_api.api_key_warning({"PREFECT_API_KEY": ""}) is None
    warning = prefect_api.api_key_warning({"PREFECT_API_KEY": "pnu_secret"})
    assert warning.startswith("warning: PREFECT_API_KEY is set") and "pnu_secret" not in warning
