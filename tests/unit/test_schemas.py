"""Every rendered object against the official Kubernetes schemas, strictly (unknown fields fail)."""

import itertools

import kubernetes_validate
import pytest

from kit import manifests
from tests.rendering import render

# The oldest release the kit supports, and the newest the schema package knows.
VERSIONS = ("1.29", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
DATABASES = {"sqlite": "", "postgres": "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect"}
TLS = {"http": "", "https": "prefect-tls"}
LOGIN = {"open-registry": {}, "registry-login": {"REGISTRY_USER": "robot", "REGISTRY_PASSWORD": "registry-pass"}}
PROXY = {"direct": {}, "proxy": {"HTTP_PROXY": "http://proxy.company.local:3128", "NO_PROXY": ".company.local"}}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("database, tls, login, proxy", list(itertools.product(DATABASES, TLS, LOGIN, PROXY)))
def test_rendered_objects_validate_strictly(version, database, tls, login, proxy):
    objects = render(DATABASE_URL=DATABASES[database], TLS_SECRET=TLS[tls], **LOGIN[login], **PROXY[proxy])
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_checked_in_files_validate_on_their_own():
    for obj in manifests.load():
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)


def test_strict_validation_catches_a_misspelt_field():
    statefulset = manifests.find(render(), "StatefulSet", "prefect-server")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, VERSIONS[0], strict=True)
