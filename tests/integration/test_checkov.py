"""checkov's Kubernetes policies on the rendered set: nothing fails, and the skips are justified inline: settings
as environment variables (every pod), the service account token of the kubernetes worker (its pods only), and in
scaled mode the probes of the background services (they serve no port) and the embedded Redis's uid (the official
image's 999)."""

import json
import subprocess

import pytest

from kit import ROOT, kinds, manifests
from tests.rendering import render
from tests.services import need_program

POSTGRES = "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect"
VARIANTS = {
    "sqlite": {},
    "postgres-tls-login-proxy": {
        "DATABASE_URL": POSTGRES, "TLS_SECRET": "prefect-tls", "REGISTRY_USER": "robot",
        "REGISTRY_PASSWORD": "registry-pass", "HTTPS_PROXY": "http://proxy.company.local:3128",
    },
    "gateway": {"ROUTE": "gateway", "GATEWAY_NAME": "shared-gateway", "GATEWAY_NAMESPACE": "gateway-system"},
    "no-route": {"ROUTE": "none"},
    # REDIS_IMAGE as a company mirror gives it, by digest (a rollout pins a tag so when the registry tells).
    "scaled-embedded-redis-autoscaled": {
        "DATABASE_MODE": "scaled", "DATABASE_URL": POSTGRES,
        "REDIS_PASSWORD": "redis-pass-12345", "SERVER_REPLICAS": "2", "SERVER_MAX_REPLICAS": "4",
        "REDIS_IMAGE": "internal-cr:9999/library/redis:8.10.2@sha256:" + "0123456789abcdef" * 4,
    },
    "scaled-managed-redis": {
        "DATABASE_MODE": "scaled", "DATABASE_URL": POSTGRES,
        "REDIS_URL": "rediss+sentinel://:redis-pass@s1.company.local:26379,s2.company.local:26379/mymaster",
    },
}
# The skips of one object each, besides the two every pod or every kubernetes worker has.
OWN_SKIPS = {("CKV_K8S_8", "Deployment.prefect.prefect-services"), ("CKV_K8S_9", "Deployment.prefect.prefect-services"),
             ("CKV_K8S_40", "StatefulSet.prefect.prefect-redis")}


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_checkov_finds_no_failed_check(tmp_path, overrides):
    checkov = need_program(str(ROOT / ".venv-checkov" / "bin" / "checkov"), "checkov")
    objects = render(**overrides)
    manifests.write(objects, tmp_path)
    result = subprocess.run(
        [checkov, "--framework", "kubernetes", "--directory", str(tmp_path), "--output", "json", "--skip-download"],
        capture_output=True, text=True, timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    checked = {c["resource"] for c in report["results"]["passed_checks"]}
    resources = {f"{o['kind']}.{o['metadata']['namespace']}.{o['metadata']['name']}" for o in objects
                 if "namespace" in o["metadata"]}
    assert {f"{o['kind']}.{o['metadata']['namespace']}.{o['metadata']['name']}"
            for o in objects if o["kind"] in kinds.POD_KINDS} <= checked
    assert report["summary"]["passed"] > 200
    skipped = {(c["check_id"], c["resource"]) for c in report["results"]["skipped_checks"]}
    assert {check for check, _ in skipped} - {check for check, _ in OWN_SKIPS} == {"CKV_K8S_35", "CKV_K8S_38"}
    assert {skip for skip in skipped if skip[0] not in ("CKV_K8S_35", "CKV_K8S_38")} == {
        (check, resource) for check, resource in OWN_SKIPS if resource in resources}
    token_mounted = {f"Deployment.{o['metadata']['namespace']}.{o['metadata']['name']}" for o in objects
                     if o["kind"] == "Deployment" and o["spec"]["template"]["spec"]["automountServiceAccountToken"]}
    assert token_mounted and {resource for check, resource in skipped if check == "CKV_K8S_38"} == token_mounted
