"""Settings: what a valid .env gives, and the one-line error every bad input gets."""

import os
import re
import stat
import subprocess
import sys

import pytest

from kit import settings
from kit.errors import UserError
from tests.rendering import VALID, env_text, make_settings

ROOT = settings.ROOT
PG = "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect"
REDIS_PASSWORD = "redis-pass-12345"
SCALED = {"DATABASE_MODE": "scaled", "DATABASE_URL": PG, "REDIS_PASSWORD": REDIS_PASSWORD}


def problems_of(text: str) -> tuple[str, ...]:
    with pytest.raises(UserError) as caught:
        settings.parse(text)
    return caught.value.problems


def test_valid_file_gives_settings_with_defaults():
    s = make_settings()
    assert s.namespace == "prefect"
    assert s.image_repository == "internal-cr:9999/prefect-core"
    assert s.public_api_url == "http://prefect.company.local/api"
    assert s.in_cluster_api_url == "http://prefect-server.prefect.svc.cluster.local:4200/api"
    assert s.auth_string == "admin:correct-horse-battery"
    assert not s.uses_external_database and not s.has_registry_credentials and s.ui_v2


def test_scaled_mode_derives_one_redis_url_for_every_connection():
    embedded = make_settings(**SCALED)
    assert (embedded.mode, embedded.embedded_redis) == ("scaled", True)
    assert embedded.redis_connection_url == f"redis://:{REDIS_PASSWORD}@prefect-redis.prefect.svc:6379/0"
    managed = make_settings(**SCALED, REDIS_URL="rediss://:pw@redis.company.local:6380/2")
    assert (managed.embedded_redis, managed.redis_connection_url) == (False, "rediss://:pw@redis.company.local:6380/2")
    assert make_settings(DATABASE_URL=PG, REDIS_PASSWORD=REDIS_PASSWORD).redis_connection_url == ""


def test_a_redis_password_outside_the_embedded_redis_is_kept_but_unused():
    """`inv init` writes one into every .env, so that a later switch to scaled needs none."""
    assert make_settings(REDIS_PASSWORD=REDIS_PASSWORD).mode == "sqlite"


@pytest.mark.parametrize("url, hosts", [
    ("redis://:pw@redis.company.local:6379/0", ["redis.company.local"]),
    ("rediss://redis.company.local/0", ["redis.company.local"]),
    ("redis+sentinel://:pw@s1.company.local:26379,s2.company.local:26379/mymaster", ["s1.company.local",
                                                                                     "s2.company.local"]),
    ("redis://[::1]:6379/0", ["::1"]),
])
def test_the_hosts_of_a_redis_url(url, hosts):
    assert settings.redis_hosts(url) == hosts


def test_redis_urls_prefect_redis_accepts_are_accepted():
    for url in ("redis://redis.company.local:6379/0", "rediss://:pw@redis.company.local:6380/1",
                "redis+sentinel://s1:26379,s2:26379/mymaster", "rediss+sentinel://:pw@s1:26379/mymaster/2"):
        assert make_settings(**SCALED, REDIS_URL=url).redis_url == url


def test_tls_makes_the_public_url_https():
    assert make_settings(TLS_SECRET="prefect-tls").public_api_url == "https://prefect.company.local/api"


def test_route_defaults_to_ingress_and_a_gateway_listener_to_https():
    assert make_settings().route == "ingress"
    gateway = make_settings(ROUTE="Gateway", GATEWAY_NAME="shared")
    assert (gateway.route, gateway.public_url) == ("gateway", "https://prefect.company.local")
    assert make_settings(ROUTE="gateway", GATEWAY_NAME="shared", GATEWAY_HTTPS="false").public_url == \
        "http://prefect.company.local"
    assert not make_settings(ROUTE="none").has_route


def test_values_are_literal_without_variable_expansion():
    assert make_settings(LOGIN_PASSWORD="'pa$HOME-word-123'").login_password == "pa$HOME-word-123"


def test_secrets_stay_out_of_repr():
    shown = repr(make_settings(DATABASE_URL="postgresql+asyncpg://u:dbsecret@db/prefect"))
    assert "correct-horse-battery" not in shown and "dbsecret" not in shown


def test_retry_deadline_is_whole_seconds_and_0_turns_retrying_off():
    assert make_settings().retry_deadline == 30
    assert [make_settings(RETRY_DEADLINE=value).retry_deadline for value in ("5", "0")] == [5, 0]
    for word in ("soon", "2.5", "-1"):
        assert problems_of(env_text(RETRY_DEADLINE=word)) == (
            "RETRY_DEADLINE: must be a whole number of seconds, e.g. 30 (0 turns retrying off)",)


def test_every_problem_is_reported_at_once():
    found = problems_of(env_text(NAMESPACE="Bad_NS", PUBLIC_HOST="http://x", LOGIN_PASSWORD="short"))
    assert [p.split(":")[0] for p in found] == ["NAMESPACE", "PUBLIC_HOST", "LOGIN_PASSWORD"]


def test_sync_database_driver_is_refused_with_the_async_form_and_no_password():
    (problem,) = problems_of(env_text(DATABASE_URL="postgresql://prefect:s3cret@db.company.local:5432/prefect"))
    assert "postgresql+asyncpg://prefect:***@db.company.local:5432/prefect" in problem
    assert "s3cret" not in problem


def test_example_file_documents_every_key():
    example = (ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert documented == set(settings.KEYS)
    for paragraph in example.split("\n\n"):
        lines = paragraph.strip().splitlines()
        keys = [line for line in lines if not line.startswith("#")]
        assert not keys or lines[0].startswith("#"), f"{keys} have no comment above them in .env.example"


@pytest.mark.parametrize("name, ignored", [(".env", True), ("staging.env", True), ("config/prod.env", True),
                                           (".env.local", True), (".env.example", False)])
def test_git_ignores_every_settings_file_but_the_example(name, ignored):
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--quiet", "--no-index", name])
    assert done.returncode == (0 if ignored else 1)


# Keys for which `inv init` makes a choice other than Settings' default; the README's table says so.
INIT_CHOICES = {"IMAGE_DRIVERS"}


def test_inv_init_writes_the_default_of_every_optional_key():
    written = settings.parse(settings.fill_template((ROOT / ".env.example").read_text(),
                                                    {"LOGIN_PASSWORD": "correct-horse-battery"}))
    defaults = make_settings()
    optional = [key for key in settings.KEYS if key not in VALID and key not in INIT_CHOICES]
    assert {key: getattr(written, key.lower()) for key in optional} == \
        {key: getattr(defaults, key.lower()) for key in optional}


def test_the_readme_states_the_defaults_settings_use():
    readme = (ROOT / "README.md").read_text()
    stated = dict(re.findall(r"^\| `([A-Z0-9_]+)` \|.*\bdefault `([^`]+)`", readme, re.M))
    assert {"TIMEZONE", "IMAGE_PLATFORM", "INGRESS_CLASS", "UI_V2"} <= stated.keys()
    defaults = {key: getattr(make_settings(), key.lower()) for key in stated}
    assert stated == {key: str(value).lower() if isinstance(value, bool) else str(value)
                      for key, value in defaults.items()}
    for key in INIT_CHOICES:
        example = re.search(rf"^{key}=(.*)$", (ROOT / ".env.example").read_text(), re.M)[1]
        assert f"`inv init` writes `{example}`" in readme


def test_example_file_itself_is_refused_for_its_placeholder():
    (problem,) = problems_of((ROOT / ".env.example").read_text())
    assert problem.startswith("LOGIN_PASSWORD: still the placeholder")


# Each bad input: (file text or bytes, the key or place the one-line error must name).
BAD_INPUTS = {
    "missing key": (env_text(NAMESPACE=None), "NAMESPACE: missing"),
    "empty password": (env_text(LOGIN_PASSWORD=""), "LOGIN_PASSWORD: missing"),
    "placeholder password": (env_text(LOGIN_PASSWORD="CHANGE_ME"), "LOGIN_PASSWORD: still the placeholder"),
    "short password": (env_text(LOGIN_PASSWORD="elevenchars"), "LOGIN_PASSWORD: is shorter than 12"),
    "password beyond bcrypt": (env_text(LOGIN_PASSWORD="ż" * 37), "LOGIN_PASSWORD: is longer than 72 bytes"),
    "sync database url": (env_text(DATABASE_URL="postgresql://u:p@db/prefect"), "DATABASE_URL: uses the synchronous"),
    "malformed database url": (env_text(DATABASE_URL="postgresql+asyncpg://db"), "DATABASE_URL: needs a user"),
    "bad database port": (env_text(DATABASE_URL="postgresql+asyncpg://u:p@db:port/x"), "DATABASE_URL: is not a URL"),
    "other database": (env_text(DATABASE_URL="mysql://u:p@db/prefect"), "DATABASE_URL: must be a PostgreSQL URL"),
    "invalid namespace": (env_text(NAMESPACE="Prefect_NS"), "NAMESPACE: must be a DNS label"),
    "host with scheme": (env_text(PUBLIC_HOST="https://prefect.company.local"), "PUBLIC_HOST: must be a host name"),
    "host with space": (env_text(PUBLIC_HOST="'prefect company.local'"), "PUBLIC_HOST: must be a host name"),
    "duplicate key": (env_text() + "NAMESPACE=other\n", "NAMESPACE: set twice"),
    "unknown key": (env_text() + "NAMSPACE=x\n", "NAMSPACE: not a setting of this kit"),
    "not utf-8": (env_text().encode() + b"LOGIN_USER=\xff\xfe\n", "not valid UTF-8"),
    "broken line": (env_text() + "just words\n", "not a KEY=value line"),
    "prefect 2": (env_text(IMAGE_PREFECT_VERSION="2.10.20"), "IMAGE_PREFECT_VERSION: must be an exact Prefect 3"),
    "user with colon": (env_text(LOGIN_USER="ad:min"), "LOGIN_USER: must be"),
    "half registry login": (env_text(REGISTRY_USER="robot"), "REGISTRY_USER: is set without REGISTRY_PASSWORD"),
    "uppercase registry": (env_text(REGISTRY="Internal-CR:9999"), "REGISTRY: must be"),
    "bad proxy": (env_text(HTTPS_PROXY="proxy.company.local:3128"), "HTTPS_PROXY: must be a proxy URL"),
    "unknown driver": (env_text(IMAGE_DRIVERS="kerberos,db2"), "IMAGE_DRIVERS: unknown db2"),
    "both spark extras": (env_text(IMAGE_EXTRAS="spark,dataframes,spark-local"),
                          "IMAGE_EXTRAS: spark and spark-local both install pyspark; keep one"),
    "ui flag": (env_text(UI_V2="maybe"), "UI_V2: must be true or false"),
    "cluster domain with a scheme": (env_text(CLUSTER_DOMAIN="https://cluster.local"), "CLUSTER_DOMAIN: must be a DNS"),
    "unknown route": (env_text(ROUTE="nodeport"), "ROUTE: unknown route 'nodeport'; choose ingress"),
    "gateway without a name": (env_text(ROUTE="gateway"), "GATEWAY_NAME: missing; ROUTE=gateway attaches"),
    "ingress class not a DNS subdomain": (env_text(INGRESS_CLASS="Nginx_Internal"), "INGRESS_CLASS: must be an"),
    "gateway namespace not a DNS label": (env_text(ROUTE="gateway", GATEWAY_NAME="shared",
                                                   GATEWAY_NAMESPACE="gateway.system"),
                                          "GATEWAY_NAMESPACE: must be the Gateway's namespace (a DNS label)"),
    "tls secret with gateway": (env_text(ROUTE="gateway", GATEWAY_NAME="shared", TLS_SECRET="prefect-tls"),
                                "TLS_SECRET: not used with ROUTE=gateway, where TLS terminates at the Gateway"),
    "gateway name without gateway": (env_text(GATEWAY_NAME="shared"), "GATEWAY_NAME: set, but ROUTE is ingress"),
    "gateway https flag": (env_text(ROUTE="gateway", GATEWAY_NAME="shared", GATEWAY_HTTPS="tls"),
                           "GATEWAY_HTTPS: must be true"),
    "gateway listener": (env_text(ROUTE="gateway", GATEWAY_NAME="shared", GATEWAY_LISTENER="HTTPS 443"),
                         "GATEWAY_LISTENER: must be the name of one of the Gateway's listeners"),
    "unknown database mode": (env_text(DATABASE_MODE="cluster"), "DATABASE_MODE: unknown mode 'cluster'; choose sqlite"),
    "sqlite with a database url": (env_text(DATABASE_MODE="sqlite", DATABASE_URL=PG),
                                   "DATABASE_URL: set, but DATABASE_MODE is sqlite"),
    "postgres without a database url": (env_text(DATABASE_MODE="postgres"),
                                        "DATABASE_URL: missing; DATABASE_MODE=postgres runs on PostgreSQL"),
    "scaled without a database url": (env_text(DATABASE_MODE="scaled", REDIS_PASSWORD=REDIS_PASSWORD),
                                      "DATABASE_URL: missing; DATABASE_MODE=scaled runs on PostgreSQL"),
    "api replicas on sqlite": (env_text(SERVER_REPLICAS="2"),
                               "SERVER_REPLICAS: 2 API replicas need DATABASE_MODE=scaled (PostgreSQL and Redis): "
                               "with sqlite, SQLite allows one writer"),
    "api replicas on postgres": (env_text(DATABASE_URL=PG, SERVER_REPLICAS="3"),
                                 "with postgres, each would run on in-memory messaging of its own, so the replicas "
                                 "would not see each other's events and cancels"),
    "autoscaler outside scaled": (env_text(DATABASE_URL=PG, SERVER_MAX_REPLICAS="4"),
                                  "SERVER_MAX_REPLICAS: an autoscaler adds API replicas, which need DATABASE_MODE=scaled"),
    "services replicas outside scaled": (env_text(DATABASE_URL=PG, SERVICES_REPLICAS="2"),
                                         "SERVICES_REPLICAS: only DATABASE_MODE=scaled runs the background services "
                                         "apart, and several of them only on Redis"),
    "redis outside scaled": (env_text(DATABASE_URL=PG, REDIS_URL="redis://redis.company.local:6379/0"),
                             "REDIS_URL: set, but DATABASE_MODE is postgres; only DATABASE_MODE=scaled uses Redis"),
    "replicas not a number": (env_text(**SCALED, SERVER_REPLICAS="two"),
                              "SERVER_REPLICAS: must be a whole number of at least 1, not 'two'"),
    "no services": (env_text(**SCALED, SERVICES_REPLICAS="0"), "SERVICES_REPLICAS: must be a whole number of at least 1"),
    "autoscaler below its minimum": (env_text(**SCALED, SERVER_REPLICAS="3", SERVER_MAX_REPLICAS="2"),
                                     "SERVER_MAX_REPLICAS: 2 is below SERVER_REPLICAS (3), the autoscaler's minimum"),
    "redis cluster": (env_text(**SCALED, REDIS_URL="redis+cluster://:pw@redis.company.local:6379"),
                      "REDIS_URL: Redis Cluster is not supported: prefect-redis 0.3.0 raises NotImplementedError"),
    "redis cluster over tls": (env_text(**SCALED, REDIS_URL="rediss+cluster://redis.company.local:6379"),
                               "REDIS_URL: Redis Cluster is not supported"),
    "not a redis url": (env_text(**SCALED, REDIS_URL="http://redis.company.local:6379"),
                        "REDIS_URL: must be redis://[:PASSWORD@]HOST:6379/0"),
    "redis url without a host": (env_text(**SCALED, REDIS_URL="redis://"), "REDIS_URL: needs a host"),
    "redis port not a number": (env_text(**SCALED, REDIS_URL="redis://redis.company.local:port/0"),
                                "REDIS_URL: is not a URL"),
    "sentinel without its master": (env_text(**SCALED, REDIS_URL="redis+sentinel://s1:26379,s2:26379"),
                                    "REDIS_URL: needs the master's name after the Sentinel hosts"),
    "embedded redis without a password": (env_text(DATABASE_MODE="scaled", DATABASE_URL=PG),
                                          "REDIS_PASSWORD: missing; the embedded Redis"),
    "short redis password": (env_text(**{**SCALED, "REDIS_PASSWORD": "short-pass"}),
                             "REDIS_PASSWORD: is shorter than 12 characters"),
    "redis password with a space": (env_text(**{**SCALED, "REDIS_PASSWORD": "'redis pass 1234'"}),
                                    "REDIS_PASSWORD: may hold letters, digits and '._~-' only"),
    "redis image without a tag": (env_text(**SCALED, REDIS_IMAGE="internal-cr:9999/library/redis"),
                                  "REDIS_IMAGE: 'internal-cr:9999/library/redis' must be an image with a tag or digest"),
    # A .env of an earlier version of the kit: the old key is named with its new name, nothing else is said.
    **{f"old key {old}": (env_text(**{new: None, old: VALID[new]}), f"{old}: renamed to {new} ")
       for old, new in settings.RENAMED.items()},
}


@pytest.mark.parametrize("content, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gives_a_one_line_error_and_exit_1(tmp_path, content, expected):
    path = tmp_path / "bad.env"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_inv("render", env_file=path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_env_file_says_how_to_create_one(tmp_path):
    result = run_inv("render", env_file=tmp_path / "absent.env")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'absent.env'}: not found; run `inv init` to create it, " \
        "or point KIT_ENV_FILE at yours"


def test_init_writes_a_private_file_that_renders_at_once(tmp_path):
    path = tmp_path / "new.env"
    assert run_inv("init", "--host", "prefect.example.org", env_file=path).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    created = settings.load(path)
    assert created.public_host == "prefect.example.org"
    assert len(created.login_password) >= 32
    assert len(created.redis_password) >= 32 and created.redis_password != created.login_password
    assert created.login_password not in run_inv("init", env_file=path).stdout
    rendered = run_inv("render", env_file=path)
    assert rendered.returncode == 0 and "kind: StatefulSet" in rendered.stdout
    assert created.login_password not in rendered.stdout


def test_init_never_replaces_an_existing_file_without_force(tmp_path):
    path = tmp_path / "existing.env"
    path.write_text(env_text())
    result = run_inv("init", env_file=path)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert path.read_text() == env_text()
    assert run_inv("init", "--force", env_file=path).returncode == 0
    assert settings.load(path).login_password != VALID["LOGIN_PASSWORD"]


def test_init_refuses_a_bad_flag_and_writes_nothing(tmp_path):
    path = tmp_path / "never.env"
    result = run_inv("init", "--namespace", "Not Valid", env_file=path)
    assert result.returncode == 1 and result.stderr.startswith("error: NAMESPACE:")
    assert not path.exists()


def run_inv(*args: str, env_file) -> subprocess.CompletedProcess:
    env = {**os.environ, settings.ENV_FILE_VARIABLE: str(env_file)}
    inv = os.path.join(os.path.dirname(sys.executable), "inv")
    return subprocess.run([inv, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
