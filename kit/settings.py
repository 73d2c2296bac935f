"""Read `.env` into a validated, immutable Settings object.

The file is parsed, never loaded into os.environ: the kit's settings must not leak into the
environment of the tools it runs (docker, kubectl, prefect read many of the same names).
"""

from __future__ import annotations

import difflib
import io
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from kit import ROOT
from kit.errors import UserError

ENV_FILE_VARIABLE = "KIT_ENV_FILE"
PLACEHOLDER = "CHANGE_ME"
MIN_PASSWORD_LENGTH = 12
# bcrypt, which hashes the UI login for nginx, reads at most 72 bytes of a password.
MAX_PASSWORD_BYTES = 72
SERVER_NAME = "prefect-server"
# Each work queue has its worker Deployment prefect-worker-<queue> (manifests/30-workers.yaml).
WORKER_PREFIX = "prefect-worker-"
SERVER_PORT = 4200
# The embedded Redis of DATABASE_MODE=scaled without REDIS_URL: its StatefulSet and Service (manifests/redis/).
REDIS_NAME = "prefect-redis"
REDIS_PORT = 6379

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REGISTRY = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_IMAGE_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_PREFECT_RELEASE = re.compile(r"^3\.[0-9]+\.[0-9]+$")
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
_PLATFORM = re.compile(r"^linux/(amd64|arm64)$")
_SECONDS = re.compile(r"^[0-9]{1,5}$")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
# An image reference with a tag or a digest: [registry[:port]/]path[:tag][@sha256:…].
_IMAGE_REFERENCE = re.compile(r"^([a-z0-9][-a-z0-9.]*(:[0-9]{1,5})?/)?"
                              r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                              r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
# What goes into redis.conf and a URL without quoting: URL-unreserved characters (`inv init` generates such).
_REDIS_PASSWORD = re.compile(r"^[A-Za-z0-9._~-]+$")
# Keys of earlier versions of the kit. Prefect reads ./.env itself, so the kit keeps its own keys out of
# Prefect's PREFECT_ setting namespace: a future Prefect setting of the same name would act on our file.
RENAMED = {
    "PREFECT_HOST": "PUBLIC_HOST",
    "PREFECT_USER": "LOGIN_USER",
    "PREFECT_PASSWORD": "LOGIN_PASSWORD",
    "PREFECT_VERSION": "IMAGE_PREFECT_VERSION",
}


@dataclass(frozen=True)
class Settings:
    """Everything the kit reads from `.env`. Secret fields are kept out of repr()."""

    registry: str
    image_name: str
    image_prefect_version: str
    namespace: str
    public_host: str
    login_user: str
    login_password: str = field(repr=False)
    registry_user: str = ""
    registry_password: str = field(default="", repr=False)
    kube_context: str = ""
    cluster_domain: str = "cluster.local"
    route: str = "ingress"
    tls_secret: str = ""
    ingress_class: str = "nginx"
    ingress_namespace: str = "ingress-nginx"
    gateway_name: str = ""
    gateway_namespace: str = ""
    gateway_listener: str = ""
    gateway_https: bool = True
    gateway_dataplane_namespace: str = ""
    database_url: str = field(default="", repr=False)
    # Empty: sqlite without DATABASE_URL, postgres with it (the `mode` property).
    database_mode: str = ""
    server_replicas: int = 1
    # None: no autoscaler; else an HPA from server_replicas to this, on CPU.
    server_max_replicas: int | None = None
    services_replicas: int = 1
    # An existing Redis for DATABASE_MODE=scaled; empty: the embedded one. Carries its password.
    redis_url: str = field(default="", repr=False)
    redis_password: str = field(default="", repr=False)
    # A pinned tag of the official image (Redis 8.10, the newest release line its Docker library lists, and
    # offered under the OSI-approved AGPLv3 again); a company registry may mirror it.
    redis_image: str = "redis:8.10.2"
    ui_v2: bool = True
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    image_platform: str = "linux/amd64"
    image_drivers: tuple[str, ...] = ()
    image_extras: tuple[str, ...] = ()
    # The proof of concept's image had this zone; `inv init` writes it too (.env.example).
    timezone: str = "Europe/Warsaw"
    pip_index_url: str = field(default="", repr=False)
    # Seconds a request to Prefect or the cluster is tried again while the server answers as a busy one does
    # (kit.retry): long enough for a server under load or an API server restart, short enough to report an outage.
    retry_deadline: int = 30
    # Not a key: the file these settings were read from, named in messages that say where to change a value.
    source: str = field(default=".env", compare=False, metadata={"key": False})

    @property
    def image_repository(self) -> str:
        return f"{self.registry}/{self.image_name}"

    @property
    def public_url(self) -> str:
        """What a browser opens: https where the route terminates TLS (the Ingress's TLS_SECRET, or the Gateway)."""
        https = self.gateway_https if self.route == "gateway" else bool(self.tls_secret)
        return f"{'https' if https else 'http'}://{self.public_host}"

    @property
    def public_api_url(self) -> str:
        return f"{self.public_url}/api"

    @property
    def has_route(self) -> bool:
        return self.route != "none"

    @property
    def gateway_parent_namespace(self) -> str:
        """The Gateway's namespace; Gateway API's own default is the route's namespace."""
        return self.gateway_namespace or self.namespace

    @property
    def route_namespace(self) -> str | None:
        """Where the route's data plane runs, the one namespace the server's NetworkPolicy admits; None without one."""
        if self.route == "gateway":
            return self.gateway_dataplane_namespace or self.gateway_parent_namespace
        return self.ingress_namespace if self.route == "ingress" else None

    @property
    def in_cluster_api_url(self) -> str:
        return f"http://{SERVER_NAME}.{self.namespace}.svc.{self.cluster_domain}:{SERVER_PORT}/api"

    @property
    def auth_string(self) -> str:
        """The one credential for the nginx prompt and Prefect's own basic auth."""
        return f"{self.login_user}:{self.login_password}"

    @property
    def uses_external_database(self) -> bool:
        return bool(self.database_url)

    @property
    def mode(self) -> str:
        """sqlite (one pod, SQLite on its volume), postgres (one pod on PostgreSQL) or scaled (API replicas and the
        background services apart, on PostgreSQL and Redis)."""
        return self.database_mode or ("postgres" if self.database_url else "sqlite")

    @property
    def embedded_redis(self) -> bool:
        return self.mode == "scaled" and not self.redis_url

    @property
    def redis_connection_url(self) -> str:
        """The one Redis URL every Prefect Redis setting is derived from; empty outside scaled mode.

        The embedded Redis by its Service in the namespace (`.svc` resolves through the pods' search path,
        whatever the cluster domain), database 0: one Redis database per installation.
        """
        if self.mode != "scaled":
            return ""
        return self.redis_url or (f"redis://:{self.redis_password}@{REDIS_NAME}.{self.namespace}.svc:{REDIS_PORT}/0")

    @property
    def has_registry_credentials(self) -> bool:
        return bool(self.registry_user)

    @property
    def has_proxy(self) -> bool:
        return bool(self.http_proxy or self.https_proxy)


# The drivers and data-stack groups the image can be built with (image/Dockerfile's build args).
IMAGE_DRIVERS = ("kerberos", "freetds", "odbc", "mssql18", "mssql17", "mariadb", "oracle", "oracle-thick")
IMAGE_EXTRAS = ("dataframes", "spark", "spark-local")
# How the UI and API are reached from outside the cluster: an Ingress, a Gateway API HTTPRoute, or no route.
ROUTES = ("ingress", "gateway", "none")
DATABASE_MODES = ("sqlite", "postgres", "scaled")
# The schemes prefect-redis 0.3.0 connects to (prefect_redis.connection); its redis+cluster:// raises
# NotImplementedError, and the Docket reads the same URL.
REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")
_BOOLEANS = ("ui_v2", "gateway_https")
_INTEGERS = ("retry_deadline", "server_replicas", "server_max_replicas", "services_replicas")
_LOWERCASE = ("route", "database_mode")

_KEYS = {f.name.upper(): f for f in fields(Settings) if f.metadata.get("key", True)}
KEYS = tuple(_KEYS)
_REQUIRED = {name for name, f in _KEYS.items() if f.default is MISSING}


def env_file_path() -> Path:
    return Path(os.environ.get(ENV_FILE_VARIABLE) or ROOT / ".env")


def load(path: Path | None = None) -> Settings:
    """Read and validate the settings file; raise UserError listing every problem found."""
    path = path or env_file_path()
    return parse(read_env_file(path), source=str(path))


def read_env_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run `inv init` to create it, "
                        f"or point {ENV_FILE_VARIABLE} at yours") from None
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror}); check its permissions") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8; save the file as UTF-8") from None


def parse(text: str, source: str = ".env") -> Settings:
    """Validate the text of a settings file; every problem becomes one line of the UserError."""
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    problems: list[str] = []
    renamed: set[str] = set()  # new names of old keys: the rename line says all there is to say about them
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            problems.append(f"{source}:{line}: not a KEY=value line; quote values that contain spaces or '#'")
            continue
        if binding.key is None:
            continue
        key = binding.key
        if key in RENAMED:
            problems.append(f"{key}: renamed to {RENAMED[key]} (keys starting with PREFECT_ are Prefect's own "
                            f"settings, which Prefect also reads from .env); rename it in {source}:{line}")
            renamed.add(RENAMED[key])
            continue
        if key not in _KEYS:
            hint = difflib.get_close_matches(key, _KEYS, n=1)
            fix = f"did you mean {hint[0]}?" if hint else "remove it (see .env.example for the keys)"
            problems.append(f"{key}: not a setting of this kit ({source}:{line}); {fix}")
            continue
        if key in values:
            problems.append(f"{key}: set twice ({source}:{line}); keep one line")
            continue
        values[key] = (binding.value or "").strip()

    for key in sorted(key for key in _REQUIRED - renamed if not values.get(key)):
        problems.append(f"{key}: missing or empty; set it in {source} (see .env.example)")

    for key, value in values.items():
        if PLACEHOLDER in value:
            problems.append(f"{key}: still the placeholder from .env.example; set a real value "
                            "(`inv init` generates passwords)")

    problems += _check(values)
    if problems:
        raise UserError(*problems)
    return _build(values, source)


def _check(values: dict[str, str]) -> list[str]:
    problems = []

    def rule(key: str, ok, fix: str) -> None:
        value = values.get(key, "")
        if value and PLACEHOLDER not in value and not ok(value):
            problems.append(f"{key}: {fix}")

    rule("NAMESPACE", _DNS_LABEL.match,
         "must be a DNS label (lowercase letters, digits and '-', at most 63), e.g. prefect")
    rule("CLUSTER_DOMAIN", _DNS_SUBDOMAIN.match, "must be a DNS domain such as cluster.local (the kubelet's "
         "--cluster-domain)")
    rule("PUBLIC_HOST", _DNS_SUBDOMAIN.match,
         "must be a host name without scheme, port or path, e.g. prefect.company.local")
    rule("REGISTRY", _REGISTRY.match, "must be a registry host[:port][/path] in lowercase, e.g. internal-cr:9999")
    rule("IMAGE_NAME", _IMAGE_NAME.match, "must be a lowercase image name, e.g. prefect-core")
    rule("IMAGE_PREFECT_VERSION", _PREFECT_RELEASE.match, "must be an exact Prefect 3 release, e.g. 3.9.1")
    rule("LOGIN_USER", _USER.match, "must be 1-64 letters, digits, '.', '_' or '-' (no ':')")
    rule("LOGIN_PASSWORD", lambda v: len(v) >= MIN_PASSWORD_LENGTH,
         f"is shorter than {MIN_PASSWORD_LENGTH} characters; use a longer one (`inv init` generates one)")
    rule("LOGIN_PASSWORD", lambda v: len(v.encode()) <= MAX_PASSWORD_BYTES,
         f"is longer than {MAX_PASSWORD_BYTES} bytes, the most bcrypt (the UI login's hash) reads; use a shorter one")
    for key, other in (("REGISTRY_PASSWORD", "REGISTRY_USER"), ("REGISTRY_USER", "REGISTRY_PASSWORD")):
        rule(key, lambda v, other=other: values.get(other), f"is set without {other}; set both or neither")
    rule("TLS_SECRET", _DNS_SUBDOMAIN.match,
         "must be the name of a kubernetes.io/tls Secret in the namespace, e.g. prefect-tls")
    rule("INGRESS_CLASS", _DNS_SUBDOMAIN.match,
         "must be an IngressClass name (a DNS subdomain: lowercase letters, digits, '-' and '.'), e.g. nginx; "
         "`kubectl get ingressclass` lists them")
    rule("INGRESS_NAMESPACE", _DNS_LABEL.match, "must be the namespace of the ingress controller, e.g. ingress-nginx")
    rule("UI_V2", lambda v: v.lower() in _TRUE + _FALSE, "must be true or false")
    problems += _check_route(values)
    rule("HTTP_PROXY", _is_proxy_url, "must be a proxy URL such as http://proxy.company.local:3128")
    rule("HTTPS_PROXY", _is_proxy_url, "must be a proxy URL such as http://proxy.company.local:3128")
    rule("NO_PROXY", lambda v: "" not in _split(v) and " " not in v, "must be a comma-separated list without spaces")
    rule("IMAGE_PLATFORM", _PLATFORM.match, "must be linux/amd64 or linux/arm64")
    rule("RETRY_DEADLINE", _SECONDS.match, "must be a whole number of seconds, e.g. 30 (0 turns retrying off)")
    rule("TIMEZONE", _TIMEZONE.match, "must be a tz database name, e.g. Europe/Warsaw")
    rule("PIP_INDEX_URL", lambda v: urlsplit(v).scheme in ("http", "https") and urlsplit(v).hostname,
         "must be the URL of a package index, e.g. https://pypi.company.local/simple")
    for key, allowed in (("IMAGE_DRIVERS", IMAGE_DRIVERS), ("IMAGE_EXTRAS", IMAGE_EXTRAS)):
        unknown = [item for item in _split(values.get(key, "")) if item not in allowed]
        if unknown:
            problems.append(f"{key}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if {"spark", "spark-local"} <= set(_split(values.get("IMAGE_EXTRAS", ""))):
        problems.append("IMAGE_EXTRAS: spark and spark-local both install pyspark; keep one "
                        "(spark-local also connects to Spark Connect servers)")
    database_problem = check_database_url(values.get("DATABASE_URL", ""))
    if database_problem:
        problems.append(f"DATABASE_URL: {database_problem}")
    problems += _check_database_mode(values)
    return problems


def _check_database_mode(values: dict[str, str]) -> list[str]:
    """The database mode and what it allows: replicas, an autoscaler and Redis only where they are safe."""
    given = values.get("DATABASE_MODE", "").lower()
    if given and given not in DATABASE_MODES:
        return [f"DATABASE_MODE: unknown mode {values['DATABASE_MODE']!r}; choose sqlite (the embedded database, one "
                "pod), postgres (one pod on DATABASE_URL) or scaled (API replicas on DATABASE_URL and Redis); empty: "
                "sqlite without DATABASE_URL, postgres with it"]
    mode = given or ("postgres" if values.get("DATABASE_URL") else "sqlite")
    problems = []
    if mode == "sqlite" and values.get("DATABASE_URL"):
        problems.append("DATABASE_URL: set, but DATABASE_MODE is sqlite (the embedded database); empty DATABASE_URL, "
                        "or set DATABASE_MODE=postgres or scaled")
    if mode != "sqlite" and not values.get("DATABASE_URL"):
        problems.append(f"DATABASE_URL: missing; DATABASE_MODE={mode} runs on PostgreSQL: set "
                        "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE, or DATABASE_MODE=sqlite")
    counts = {}
    for key, least in (("SERVER_REPLICAS", 1), ("SERVER_MAX_REPLICAS", 1), ("SERVICES_REPLICAS", 1)):
        value = values.get(key, "")
        if value and PLACEHOLDER not in value:
            if not value.isdigit() or int(value) < least:
                problems.append(f"{key}: must be a whole number of at least {least}, not {value!r}")
            else:
                counts[key] = int(value)
    # Why each is refused outside scaled: in one sentence a person can act on.
    alone = {"sqlite": "SQLite allows one writer", "postgres": "each would run on in-memory messaging of its own, "
             "so the replicas would not see each other's events and cancels (they would look healthy)"}
    if mode != "scaled":
        if counts.get("SERVER_REPLICAS", 1) > 1:
            problems.append(f"SERVER_REPLICAS: {counts['SERVER_REPLICAS']} API replicas need DATABASE_MODE=scaled "
                            f"(PostgreSQL and Redis): with {mode}, {alone[mode]}; set DATABASE_MODE=scaled, or 1")
        if "SERVER_MAX_REPLICAS" in counts:
            problems.append(f"SERVER_MAX_REPLICAS: an autoscaler adds API replicas, which need DATABASE_MODE=scaled "
                            f"(PostgreSQL and Redis): with {mode}, {alone[mode]}; set DATABASE_MODE=scaled, "
                            "or empty it")
        if counts.get("SERVICES_REPLICAS", 1) > 1:
            problems.append(f"SERVICES_REPLICAS: only DATABASE_MODE=scaled runs the background services apart, and "
                            "several of them only on Redis (the Docket's memory:// is one process's); set "
                            "DATABASE_MODE=scaled, or 1")
        if values.get("REDIS_URL"):
            problems.append(f"REDIS_URL: set, but DATABASE_MODE is {mode}; only DATABASE_MODE=scaled uses Redis: set "
                            "it, or empty REDIS_URL")
    elif "SERVER_MAX_REPLICAS" in counts and counts["SERVER_MAX_REPLICAS"] < counts.get("SERVER_REPLICAS", 1):
        problems.append(f"SERVER_MAX_REPLICAS: {counts['SERVER_MAX_REPLICAS']} is below SERVER_REPLICAS "
                        f"({counts.get('SERVER_REPLICAS', 1)}), the autoscaler's minimum; raise it, or empty it for "
                        "no autoscaler")
    redis_problem = check_redis_url(values.get("REDIS_URL", ""))
    if redis_problem:
        problems.append(f"REDIS_URL: {redis_problem}")
    password = values.get("REDIS_PASSWORD", "")
    if password and PLACEHOLDER not in password:
        if len(password) < MIN_PASSWORD_LENGTH:
            problems.append(f"REDIS_PASSWORD: is shorter than {MIN_PASSWORD_LENGTH} characters; use a longer one "
                            "(`inv init` generates one)")
        elif not _REDIS_PASSWORD.match(password):
            problems.append("REDIS_PASSWORD: may hold letters, digits and '._~-' only (it goes into redis.conf and a "
                            "URL as it is); `inv init` generates one")
    elif mode == "scaled" and not values.get("REDIS_URL") and not password:
        problems.append("REDIS_PASSWORD: missing; the embedded Redis (DATABASE_MODE=scaled without REDIS_URL) needs "
                        "one: `inv init` generates one, or set REDIS_URL to your own Redis")
    image = values.get("REDIS_IMAGE", "")
    pinned = _IMAGE_REFERENCE.match(image) and re.search(r"[:@][^/]*$", image)
    if image and PLACEHOLDER not in image and not pinned:
        problems.append(f"REDIS_IMAGE: {image!r} must be an image with a tag or digest, e.g. redis:8.10.2 or "
                        "internal-cr:9999/library/redis:8.10.2 (a mirror of the official image)")
    return problems


def check_redis_url(url: str) -> str | None:
    """Why the URL cannot be prefect-redis's connection, or None. Never echoes the password."""
    if not url:
        return None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("redis+cluster", "rediss+cluster"):
        return ("Redis Cluster is not supported: prefect-redis 0.3.0 raises NotImplementedError for "
                f"{scheme}://; use a standalone Redis (redis://, rediss://) or Sentinel (redis+sentinel://)")
    if scheme not in REDIS_SCHEMES:
        return ("must be redis://[:PASSWORD@]HOST:6379/0, rediss://… for TLS, or "
                "redis+sentinel://HOST:26379,…/MASTER for Sentinel "
                "(percent-encode special characters in the password)")
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        if "sentinel" not in scheme:
            parts.port  # raises on a port that is not a number
    except ValueError:
        return f"is not a URL; use {scheme}://[:PASSWORD@]HOST:PORT/DB (percent-encode special characters)"
    if not hosts:
        return f"needs a host: {scheme}://[:PASSWORD@]HOST:PORT/DB"
    if "sentinel" in scheme and not parts.path.strip("/"):
        return f"needs the master's name after the Sentinel hosts: {scheme}://HOST:26379,HOST2:26379/MASTER"
    return None


def _check_route(values: dict[str, str]) -> list[str]:
    route = values.get("ROUTE", "").lower() or "ingress"
    if route not in ROUTES:
        return [f"ROUTE: unknown route {values['ROUTE']!r}; choose ingress (an Ingress of INGRESS_CLASS), gateway "
                "(an HTTPRoute on an existing Gateway) or none (no route: reach the server through a port-forward)"]
    if route != "gateway":
        # A Gateway named in .env with another ROUTE is a half-made switch; the other GATEWAY_ keys may stay.
        return [f"GATEWAY_NAME: set, but ROUTE is {route}; set ROUTE=gateway to route through that Gateway, "
                "or empty GATEWAY_NAME"] if values.get("GATEWAY_NAME") else []
    problems = []
    if not values.get("GATEWAY_NAME"):
        problems.append("GATEWAY_NAME: missing; ROUTE=gateway attaches the HTTPRoute to an existing Gateway: name it "
                        "(`kubectl get gateways -A` lists them)")
    if values.get("TLS_SECRET"):
        problems.append("TLS_SECRET: not used with ROUTE=gateway, where TLS terminates at the Gateway (its listener "
                        "holds the certificate); empty it, and set GATEWAY_HTTPS=false if the listener is plain http")
    checks = {
        "GATEWAY_NAME": (_DNS_SUBDOMAIN, "must be the name of a Gateway (a DNS subdomain), e.g. shared-gateway"),
        "GATEWAY_NAMESPACE": (_DNS_LABEL, "must be the Gateway's namespace (a DNS label), e.g. gateway-system"),
        "GATEWAY_LISTENER": (_DNS_SUBDOMAIN, "must be the name of one of the Gateway's listeners, e.g. https"),
        "GATEWAY_DATAPLANE_NAMESPACE": (_DNS_LABEL, "must be a namespace (a DNS label), e.g. envoy-gateway-system"),
    }
    for key, (pattern, fix) in checks.items():
        if values.get(key) and PLACEHOLDER not in values[key] and not pattern.match(values[key]):
            problems.append(f"{key}: {fix}")
    https = values.get("GATEWAY_HTTPS", "")
    if https and https.lower() not in _TRUE + _FALSE:
        problems.append("GATEWAY_HTTPS: must be true (the Gateway's listener serves https) or false")
    return problems


def check_database_url(url: str) -> str | None:
    """Why the URL cannot be Prefect's database, or None. Never echoes the password."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # raises on a port that is not a number
    except ValueError:
        return ("is not a URL; use postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE "
                "(percent-encode special characters)")
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        fixed = redact_url(url).replace(f"{parts.scheme}://", "postgresql+asyncpg://", 1)
        return f"uses the synchronous driver '{parts.scheme}://'; Prefect needs the async one: {fixed}"
    if parts.scheme != "postgresql+asyncpg":
        return ("must be a PostgreSQL URL (postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE), "
                "or empty for the embedded SQLite database")
    if not parts.hostname or not parts.path.strip("/") or not parts.username:
        return "needs a user, a host and a database: postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE"
    return None


def redis_hosts(url: str) -> list[str]:
    """The host names a Redis URL connects to: one, or a Sentinel URL's members."""
    members = urlsplit(url).netloc.rpartition("@")[2].split(",")
    return [re.sub(r":[0-9]*$", "", member).strip("[]") for member in members if member]


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _is_proxy_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")] if value else []


def _build(values: dict[str, str], source: str) -> Settings:
    kwargs: dict[str, object] = {"source": source}
    for key, value in values.items():
        name = _KEYS[key].name
        if not value and name not in _REQUIRED:
            continue  # an empty optional key keeps its default
        if name in _BOOLEANS:
            kwargs[name] = value.lower() in _TRUE
        elif name in _INTEGERS:
            kwargs[name] = int(value)
        elif name in ("image_drivers", "image_extras"):
            kwargs[name] = tuple(_split(value))
        elif name in _LOWERCASE:
            kwargs[name] = value.lower()
        else:
            kwargs[name] = value
    return Settings(**kwargs)


def fill_template(template: str, values: dict[str, str]) -> str:
    """The text of .env.example with the given KEY=value lines replaced, comments kept."""
    unknown = values.keys() - _KEYS.keys()
    if unknown:
        raise ValueError(f"not settings: {sorted(unknown)}")
    lines = []
    for line in template.splitlines(keepends=True):
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in values:
            line = f"{key}={_quote(values[key])}\n"
        lines.append(line)
    return "".join(lines)


def _quote(value: str) -> str:
    if not value or all(c.isalnum() or c in "-_.:/@%+,=" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def generate_password() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def write_env_file(path: Path, text: str, force: bool = False) -> None:
    """Write a new settings file readable by its owner only; never replace one unless forced."""
    if path.exists() and not force:
        raise UserError(f"{path}: already exists; edit it, or pass --force to replace it (its passwords are lost)")
    parse(text, source=str(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(path, flags, 0o600)
    os.chmod(path, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(text)
