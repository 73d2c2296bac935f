"""The Secrets rendered from .env: they never exist as files in the repo.

- prefect-config: what Prefect reads (auth string, database URL, in-cluster API URL; in scaled mode the Redis URL
  every Prefect Redis setting is derived from);
- prefect-login-auth: the htpasswd line the server pod's login proxy checks on the UI (key `auth`);
- prefect-redis: the embedded Redis's password, as the redis.conf line its pod mounts and as the value redis-cli
  reads (only in scaled mode without REDIS_URL);
- regcred: the image pull Secret, when the registry needs a login.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json

from kit.settings import REDIS_NAME, SERVER_NAME, Settings

CONFIG = "prefect-config"
LOGIN = "prefect-login-auth"
REDIS = REDIS_NAME
PULL = "regcred"
SQLITE_URL = "sqlite+aiosqlite:////data/prefect.db"
REDACTED = "<redacted>"
# nginx checks the hash on every request of the UI (dozens per page load): a moderate cost.
BCRYPT_ROUNDS = 10
# $2b$, as the kit wrote before it used passlib: an upgraded kit renders the same Secret, so it changes nothing.
BCRYPT_IDENT = "2b"


def render_secrets(settings: Settings) -> list[dict]:
    secrets = [
        _secret(CONFIG, {
            "auth-string": settings.auth_string,
            "database-url": settings.database_url or SQLITE_URL,
            "api-url": settings.in_cluster_api_url,
            **({"redis-url": settings.redis_connection_url} if settings.redis_connection_url else {}),
            **{proxy_key(name): value for name, value in pod_proxy(settings).items()},
        }),
        _secret(LOGIN, {"auth": htpasswd_line(settings.login_user, settings.login_password, salt_seed(settings))}),
    ]
    if settings.embedded_redis:
        secrets.append(_secret(REDIS, {"auth.conf": f"requirepass {settings.redis_password}\n",
                                       "password": settings.redis_password}, component="redis"))
    if settings.has_registry_credentials:
        pull = _secret(PULL, {".dockerconfigjson": docker_config(settings)})
        pull["type"] = "kubernetes.io/dockerconfigjson"
        secrets.append(pull)
    return secrets


def pod_proxy(settings: Settings) -> dict[str, str]:
    """The company proxy for pods, with the cluster-internal names exempt so Prefect talks to itself directly."""
    if not settings.has_proxy:
        return {}
    internal = ["localhost", "127.0.0.1", ".svc", f".{settings.cluster_domain}", SERVER_NAME,
                f"{SERVER_NAME}.{settings.namespace}"]
    own = [item for item in settings.no_proxy.split(",") if item]
    values = {"HTTP_PROXY": settings.http_proxy, "HTTPS_PROXY": settings.https_proxy,
              "NO_PROXY": ",".join(dict.fromkeys(own + internal))}
    return {name: value for name, value in values.items() if value}


def proxy_keys(settings: Settings) -> dict[str, str]:
    """The proxy variables pods get, and the key of prefect-config that holds each."""
    return {name: proxy_key(name) for name in pod_proxy(settings)}


def proxy_key(variable: str) -> str:
    return variable.lower().replace("_", "-")


def salt_seed(settings: Settings) -> str:
    """What the htpasswd salt is derived from: the deployment, never the password.

    A random salt would change the Secret on every render, so a no-change rollout would still
    rewrite it. Deriving the salt from the password instead would let anyone holding the hash test
    guesses without paying for bcrypt. So: same deployment and password, same line; a new password
    (or user, host, namespace), a new line.
    """
    return f"{settings.namespace}/{settings.public_host}/{settings.login_user}"


@functools.lru_cache(maxsize=32)
def htpasswd_line(user: str, password: str, seed: str) -> str:
    """The htpasswd line nginx checks, the same for the same inputs (the salt comes from the seed)."""
    from passlib.apache import HtpasswdFile
    from passlib.hash import bcrypt
    from passlib.utils.binary import bcrypt64

    salt = bcrypt64.encode_bytes(hashlib.sha256(f"prefect-kit htpasswd salt:{seed}".encode()).digest()[:16])
    hashed = bcrypt.using(salt=salt.decode(), rounds=BCRYPT_ROUNDS, ident=BCRYPT_IDENT).hash(password)
    file = HtpasswdFile()
    file.set_hash(user, hashed)
    # One line without its newline, as the Secret has always held it.
    return file.to_string().decode().rstrip("\n")


def docker_config(settings: Settings) -> str:
    host = settings.registry.split("/", 1)[0]
    credentials = f"{settings.registry_user}:{settings.registry_password}"
    return json.dumps({"auths": {host: {
        "username": settings.registry_user,
        "password": settings.registry_password,
        "auth": base64.b64encode(credentials.encode()).decode(),
    }}}, sort_keys=True)


def redact(obj: dict) -> dict:
    """A copy of a Secret with every value replaced, for printing."""
    if obj.get("kind") != "Secret":
        return obj
    return {**obj, "data": {key: REDACTED for key in obj.get("data", {})}}


def _secret(name: str, values: dict[str, str], component: str = "config") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "prefect",
                "app.kubernetes.io/part-of": "prefect",
                "app.kubernetes.io/managed-by": "prefect-kit",
                "app.kubernetes.io/component": component,
            },
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }
