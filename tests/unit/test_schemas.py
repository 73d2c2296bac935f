"""Every rendered object against the official Kubernetes schemas, strictly (unknown fields fail)."""

import functools
import itertools

import kubernetes_validate
import pytest

from kit import manifests, server
from tests.rendering import render

# The oldest release the kit supports, and the newest the schema package knows.
VERSIONS = ("1.29", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
POSTGRES = "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect"
SCALED = {"DATABASE_MODE": "scaled", "DATABASE_URL": POSTGRES, "REDIS_PASSWORD": "redis-pass-12345"}
# The database modes, scaled with the embedded Redis (and a budget and an autoscaler) and with a managed one.
DATABASES = {
    "sqlite": {},
    "postgres": {"DATABASE_URL": POSTGRES},
    "scaled": {**SCALED, "SERVER_REPLICAS": "2", "SERVER_MAX_REPLICAS": "4"},
    "scaled-managed-redis": {**SCALED, "REDIS_URL": "rediss://:pw@redis.company.local:6380/0"},
}
TLS = {"http": "", "https": "prefect-tls"}
LOGIN = {"open-registry": {}, "registry-login": {"REGISTRY_USER": "robot", "REGISTRY_PASSWORD": "registry-pass"}}
PROXY = {"direct": {}, "proxy": {"HTTP_PROXY": "http://proxy.company.local:3128", "NO_PROXY": ".company.local"}}


@functools.lru_cache(maxsize=None)
def rendered(database, tls, login, proxy):
    """One render per combination, validated against each version."""
    return render(**DATABASES[database], TLS_SECRET=TLS[tls], **LOGIN[login], **PROXY[proxy])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("database, tls, login, proxy", list(itertools.product(DATABASES, TLS, LOGIN, PROXY)))
def test_rendered_objects_validate_strictly(version, database, tls, login, proxy):
    for obj in rendered(database, tls, login, proxy):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("folder", ["", server.SCALED_FOLDER, server.REDIS_FOLDER])
def test_checked_in_files_validate_on_their_own(folder):
    objects = manifests.load(manifests.MANIFEST_DIR / folder)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)


def test_strict_validation_catches_a_misspelt_field():
    statefulset = manifests.find(render(), "StatefulSet", "prefect-server")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, VERSIONS[0], strict=True)
