"""checkov's Kubernetes policies on the rendered set: nothing fails, and the skips are justified inline: settings
as environment variables (every pod), and the service account token of the kubernetes worker (its pods only)."""

import json
import subprocess

import pytest

from kit import ROOT, kinds, manifests
from tests.rendering import render
from tests.services import need_program

VARIANTS = {
    "sqlite": {},
    "postgres-tls-login-proxy": {
        "DATABASE_URL": "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect",
        "TLS_SECRET": "prefect-tls", "REGISTRY_USER": "robot", "REGISTRY_PASSWORD": "registry-pass",
        "HTTPS_PROXY": "http://proxy.company.local:3128",
    },
    "gateway": {"ROUTE": "gateway", "GATEWAY_NAME": "shared-gateway", "GATEWAY_NAMESPACE": "gateway-system"},
    "no-route": {"ROUTE": "none"},
}


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
    assert {f"{o['kind']}.{o['metadata']['namespace']}.{o['metadata']['name']}"
            for o in objects if o["kind"] in kinds.POD_KINDS} <= checked
    assert report["summary"]["passed"] > 200
    skipped = {(c["check_id"], c["resource"]) for c in report["results"]["skipped_checks"]}
    assert {check for check, _ in skipped} == {"CKV_K8S_35", "CKV_K8S_38"}
    token_mounted = {f"Deployment.{o['metadata']['namespace']}.{o['metadata']['name']}" for o in objects
                     if o["kind"] == "Deployment" and o["spec"]["template"]["spec"]["automountServiceAccountToken"]}
    assert token_mounted and {resource for check, resource in skipped if check == "CKV_K8S_38"} == token_mounted
