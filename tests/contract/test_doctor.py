"""`inv doctor`'s cluster checks through the real client against the stand-in: each ✗ and ? names the check
and the fix, and only a ✗ fails the run."""

import subprocess
import sys
from pathlib import Path

import pytest

from kit import ROOT, doctor, rollout
from kit.doctor import FAIL, LATER, OK, UNKNOWN
from tests.contract.clusterkit import NS, Lines, discovery_cache, settings  # noqa: F401
from tests.rendering import env_text, make_settings
from tests.services import free_port

INGRESS_CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
                 "spec": {"controller": "k8s.io/ingress-nginx"}}
GATEWAY = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "shared", "namespace": "gateway-system"},
           "spec": {"gatewayClassName": "envoy", "listeners": [
               {"name": "https", "protocol": "HTTPS", "port": 443,
                "tls": {"certificateRefs": [{"name": "wildcard"}]}}]}}
DEFAULT_CLASS = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                 "metadata": {"name": "standard", "annotations": {doctor.DEFAULT_STORAGE_CLASS: "true"}},
                 "provisioner": "rancher.io/local-path"}


def by_subject(findings):
    found = {}
    for finding in findings:
        found.setdefault(finding.subject, []).append(finding)
    return found


@pytest.fixture
def ready(fakeapi, settings):
    """A cluster a first rollout can go to: a default StorageClass, an IngressClass, the namespace and Secrets."""
    fakeapi.put(DEFAULT_CLASS)
    fakeapi.put(INGRESS_CLASS)
    rollout.secrets(settings, out=Lines())
    return fakeapi


def test_a_cluster_ready_for_a_rollout_is_all_ticks(ready, settings):
    findings = by_subject(doctor.check_cluster(settings))
    assert [f.mark for fs in findings.values() for f in fs] == [OK] * 5
    assert findings["cluster"][0].text == f"context 'fakeapi' ({ready.url}) answers: Kubernetes v1.33.0"
    assert findings["rights"][0].text.startswith("all ") and "verbs a rollout uses are allowed" in \
        findings["rights"][0].text
    assert findings["namespace"][0].text == f"{NS} enforces the restricted Pod Security Standard"
    assert findings["storage"][0].text == "default StorageClass standard for the SQLite volume"
    assert findings["INGRESS_CLASS"][0].text == "IngressClass nginx (k8s.io/ingress-nginx)"


def test_each_access_review_asks_for_one_verb_on_one_resource_in_the_namespace(ready, settings):
    ready.clear_requests()
    doctor.check_cluster(settings)
    reviews = [r.body["spec"]["resourceAttributes"] for r in ready.requests if r.path.endswith("accessreviews")]
    assert {"verb": "patch", "resource": "deployments", "group": "apps", "subresource": "", "name": "",
            "namespace": NS} in reviews
    assert {"verb": "patch", "resource": "namespaces", "group": "", "subresource": "", "name": NS} in reviews


def test_one_forbidden_verb_is_one_failure_naming_it(ready, settings):
    ready.forbid("patch", "deployments", group="apps")
    (rights,) = by_subject(doctor.check_cluster(settings))["rights"]
    assert rights.line() == (f"✗ rights: may not patch deployments.apps in namespace {NS}; ask a cluster admin for "
                             "a Role allowing it (README: Troubleshooting, 403)")


def test_cluster_scoped_reads_a_namespaced_user_may_not_make_are_unknown_not_failed(ready, settings):
    ready.forbid("list", "storageclasses", group="storage.k8s.io")
    (storage,) = by_subject(doctor.check_cluster(settings))["storage"]
    assert storage.mark == UNKNOWN and storage.text.startswith("cannot list StorageClasses with these rights")


def test_no_default_storage_class_fails_for_sqlite_only(fakeapi, settings):
    rollout.secrets(settings, out=Lines())
    (storage,) = by_subject(doctor.check_cluster(settings))["storage"]
    assert storage.mark == FAIL and "the server's SQLite claim would stay Pending" in storage.text
    postgres = make_settings(DATABASE_URL="postgresql+asyncpg://prefect:pw@db.company.local:5432/prefect")
    assert "storage" not in by_subject(doctor.check_cluster(postgres))


def test_a_missing_tls_secret_says_how_to_create_it(ready):
    (tls,) = by_subject(doctor.check_cluster(make_settings(TLS_SECRET="prefect-tls")))["TLS_SECRET"]
    assert tls.line() == (f"✗ TLS_SECRET: no Secret prefect-tls in namespace {NS}; create it: kubectl -n {NS} "
                          "create secret tls prefect-tls --cert=… --key=…")


def test_before_the_first_rollout_the_namespace_is_not_there_yet_and_may_be_created(fakeapi, settings):
    fakeapi.put(DEFAULT_CLASS)
    fakeapi.forbid("create", "namespaces")
    findings = by_subject(doctor.check_cluster(settings))
    assert findings["namespace"][0].mark == LATER
    assert [f.text for f in findings["rights"]] == [
        f"may not create namespaces in namespace {NS}; ask a cluster admin for a Role allowing it (README: "
        "Troubleshooting, 403)"]


def test_an_unreachable_cluster_is_one_failure_and_nothing_more_of_the_cluster(fakeapi, settings):
    fakeapi.stop()
    (only,) = doctor.check_cluster(settings)
    assert only.mark == FAIL and only.subject == "cluster" and "cannot reach the API server" in only.text


def test_an_ingress_class_the_cluster_lacks_fails_naming_the_setting(ready):
    (route,) = by_subject(doctor.check_cluster(make_settings(INGRESS_CLASS="traefik")))["INGRESS_CLASS"]
    assert route.mark == FAIL and route.text.startswith("no IngressClass traefik in this cluster")


def gateway_settings(**extra):
    return make_settings(ROUTE="gateway", GATEWAY_NAME="shared", GATEWAY_NAMESPACE="gateway-system", **extra)


def test_a_gateway_route_on_a_cluster_without_gateway_api_fails(ready):
    (route,) = by_subject(doctor.check_cluster(gateway_settings()))["ROUTE"]
    assert route.line() == ("✗ ROUTE: gateway, but this cluster does not serve Gateway API "
                            "(gateway.networking.k8s.io/v1); install it, or set ROUTE=ingress")


def test_the_gateway_and_its_listener_are_checked(ready):
    ready.serve_gateway_api(True)
    (missing,) = by_subject(doctor.check_cluster(gateway_settings()))["GATEWAY_NAME"]
    assert missing.mark == FAIL and missing.text.startswith("no Gateway shared in namespace gateway-system")
    ready.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gateway-system"}})
    ready.put(GATEWAY)
    (found,) = by_subject(doctor.check_cluster(gateway_settings()))["GATEWAY_NAME"]
    assert found.line() == "✓ GATEWAY_NAME: Gateway gateway-system/shared (https)"
    (listener,) = by_subject(doctor.check_cluster(gateway_settings(GATEWAY_LISTENER="http")))["GATEWAY_LISTENER"]
    assert listener.line() == "✗ GATEWAY_LISTENER: Gateway gateway-system/shared has no listener http; it has: https"


def test_no_route_needs_nothing_of_the_cluster_and_no_dns(ready):
    settings = make_settings(ROUTE="none")
    (route,) = by_subject(doctor.check_cluster(settings))["ROUTE"]
    assert route.mark == OK
    assert doctor.check_public_host(settings) == []


def test_inv_doctor_exits_1_only_on_a_failure(ready, env_file, monkeypatch):
    path = env_file(env_text())
    # No engine to ask the registry through: its line is a `?`, which must not fail the run.
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    inv = [str(Path(sys.executable).parent / "inv"), "doctor"]
    done = subprocess.run(inv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert lines[0] == f"✓ {path}: valid", "the settings file in use is named"
    assert "? registry: not asked: no Docker engine answers" in done.stdout
    assert not [line for line in lines if line.startswith(FAIL)], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr

    ready.forbid("delete", "secrets")
    failed = subprocess.run(inv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert f"✗ rights: may not delete secrets in namespace {NS}; ask a cluster admin" in failed.stdout
