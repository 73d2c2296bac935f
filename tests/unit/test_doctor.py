"""`inv doctor`'s pure parts: the rights a render needs, and the line each cluster reading becomes."""

from kit import doctor, kinds
from kit.doctor import FAIL, LATER, OK, UNKNOWN, Right
from tests.rendering import make_settings, render


def test_every_rendered_kind_is_checked_for_each_verb_the_kit_uses_on_it():
    needed = doctor.rights_needed(render(), "prefect", namespace_exists=True)
    rendered = {obj["kind"] for obj in render()} - {"Namespace"}
    for kind in (kinds.BY_NAME[name] for name in rendered):
        for verb in ("list", "watch", "create", "patch", "delete"):
            assert Right(verb, kind.resource, kind.group) in needed, (verb, kind.name)


def test_diagnosis_reads_pods_logs_and_events_and_may_reach_the_server_pod():
    needed = doctor.rights_needed(render(), "prefect", namespace_exists=True)
    assert {Right("get", "pods"), Right("list", "pods"), Right("get", "pods", subresource="log"),
            Right("list", "events"), Right("create", "pods", subresource="portforward")} <= set(needed)


def test_the_namespace_is_created_when_missing_and_patched_by_name_when_there():
    missing = doctor.rights_needed(render(), "prefect", namespace_exists=False)
    there = doctor.rights_needed(render(), "prefect", namespace_exists=True)
    assert Right("create", "namespaces", cluster_scoped=True) in missing
    assert Right("patch", "namespaces", cluster_scoped=True, name="prefect") in there


def test_a_right_reads_as_kubectl_auth_can_i_names_it():
    assert Right("patch", "deployments", "apps").text == "patch deployments.apps"
    assert Right("get", "pods", subresource="log").text == "get pods/log"


def test_namespace_findings():
    assert doctor.namespace_finding("prefect", None).mark == LATER
    assert doctor.namespace_finding("prefect", UNKNOWN).mark == UNKNOWN
    restricted = {"metadata": {"labels": {doctor.ENFORCE: "restricted"}}}
    assert doctor.namespace_finding("prefect", restricted).line() == \
        "✓ namespace: prefect enforces the restricted Pod Security Standard"
    baseline = {"metadata": {"labels": {doctor.ENFORCE: "baseline"}}}
    assert doctor.namespace_finding("prefect", baseline).line() == \
        "✓ namespace: prefect exists (enforce: baseline); the rollout labels it restricted"


def test_storage_findings():
    default = {"metadata": {"name": "standard", "annotations": {doctor.DEFAULT_STORAGE_CLASS: "true"}}}
    other = {"metadata": {"name": "slow"}}
    assert doctor.storage_finding([other, default]).line() == "✓ storage: default StorageClass standard for the " \
                                                               "SQLite volume"
    missing = doctor.storage_finding([other])
    assert missing.mark == FAIL and "ask an admin to mark one default, or use PostgreSQL" in missing.text
    assert doctor.storage_finding(UNKNOWN).mark == UNKNOWN


def test_tls_findings_name_the_command_that_fixes_them():
    settings = make_settings(TLS_SECRET="prefect-tls")
    missing = doctor.tls_finding(settings, None, None)
    assert missing.mark == FAIL
    assert missing.text.endswith("create it: kubectl create namespace prefect && kubectl -n prefect create secret "
                                 "tls prefect-tls --cert=… --key=…")
    wrong = doctor.tls_finding(settings, {}, {"type": "Opaque"})
    assert wrong.mark == FAIL and "not kubernetes.io/tls" in wrong.text
    assert doctor.tls_finding(settings, {}, {"type": "kubernetes.io/tls"}).mark == OK
