"""Requests in general, through the real client: discovery, auth, reads and writes, decoding, injected failures.

Each test states what a real API server answers, so a reader can compare.
"""

import json

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.dynamic import exceptions as errors

from tests.standin.samples import MANAGER, NS, apply, deployment, resource, secret, status_of

NEW_KINDS = [("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("rbac.authorization.k8s.io/v1", "Role"),
             ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("batch/v1", "Job"), ("policy/v1", "PodDisruptionBudget"),
             ("autoscaling/v2", "HorizontalPodAutoscaler"), ("storage.k8s.io/v1", "StorageClass"),
             ("networking.k8s.io/v1", "IngressClass"), ("authorization.k8s.io/v1", "SelfSubjectAccessReview")]


def test_discovery_answers_the_dynamic_and_typed_clients(dyn, api_client, namespace):
    assert resource(dyn, "Ingress", "networking.k8s.io/v1").namespaced
    assert not resource(dyn, "Namespace").namespaced
    assert resource(dyn, "Pod").subresources["log"]
    assert dyn.version["kubernetes"]["gitVersion"] == "v1.33.0"
    assert [n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items] == [NS]


def test_discovery_lists_the_kinds_the_next_issues_need(dyn):
    found = {(api_version, kind): resource(dyn, kind, api_version) for api_version, kind in NEW_KINDS}
    assert {k: r.namespaced for k, r in found.items() if not r.namespaced} == {
        ("storage.k8s.io/v1", "StorageClass"): False, ("networking.k8s.io/v1", "IngressClass"): False,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): False}
    assert found[("authorization.k8s.io/v1", "SelfSubjectAccessReview")].verbs == ["create"]


MINIMAL = {
    "ServiceAccount": {},
    "ConfigMap": {"data": {"a": "1"}},
    "Role": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    "RoleBinding": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                    "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": NS}]},
    "Job": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "flow", "image": "f:1"}]}}}},
    "PodDisruptionBudget": {"spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "worker"}}}},
    "HorizontalPodAutoscaler": {"spec": {"maxReplicas": 3, "scaleTargetRef": {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "w"}}},
    "StorageClass": {"provisioner": "example.com/disk"},
    "IngressClass": {"spec": {"controller": "k8s.io/ingress-nginx"}},
}


@pytest.mark.parametrize(("api_version", "kind"), [k for k in NEW_KINDS if k[1] in MINIMAL])
def test_the_new_kinds_can_be_applied_read_and_deleted(fakeapi, dyn, namespace, api_version, kind):
    endpoint = resource(dyn, kind, api_version)
    body = {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "example", **({"namespace": NS} if endpoint.namespaced else {})}, **MINIMAL[kind]}
    created = apply(dyn, body)
    assert created.metadata.uid
    assert dyn.get(endpoint, "example", NS if endpoint.namespaced else None).metadata.uid == created.metadata.uid
    dyn.delete(endpoint, "example", NS if endpoint.namespaced else None)
    assert fakeapi.get(kind, NS if endpoint.namespaced else None, "example") is None


def test_version_is_configurable(fakeapi, api_client):
    fakeapi.set_version("1.36.2")
    info = client.VersionApi(api_client).get_code()
    assert (info.major, info.minor, info.git_version) == ("1", "36", "v1.36.2")


def test_a_new_namespace_gets_what_its_controllers_add(fakeapi, namespace):
    # A real cluster's service account and root CA controllers fill every new namespace with these two.
    assert [a["metadata"]["name"] for a in fakeapi.objects("ServiceAccount", NS)] == ["default"]
    assert [c["metadata"]["name"] for c in fakeapi.objects("ConfigMap", NS)] == ["kube-root-ca.crt"]
    assert namespace["metadata"]["labels"] == {"kubernetes.io/metadata.name": NS}
    assert (namespace["spec"], namespace["status"]) == ({"finalizers": ["kubernetes"]}, {"phase": "Active"})


def test_create_refuses_a_second_object_of_the_same_name(fakeapi, dyn, namespace):
    secrets = resource(dyn, "Secret")
    dyn.create(secrets, body=secret(), namespace=NS)
    with pytest.raises(errors.ConflictError) as raised:
        dyn.create(secrets, body=secret(), namespace=NS)
    # Real: 409 AlreadyExists, `secrets "prefect-config" already exists`.
    assert (status_of(raised.value)["reason"], status_of(raised.value)["message"]) == (
        "AlreadyExists", 'secrets "prefect-config" already exists')
    assert [(r.method, r.status) for r in fakeapi.writes()] == [("POST", 201), ("POST", 409)]


def test_a_secret_value_that_is_not_base64_is_rejected(fakeapi, dyn, namespace):
    with pytest.raises(errors.BadRequestError) as raised:
        apply(dyn, secret("not base64!"))
    assert "illegal base64 data at input byte 3" in raised.value.body
    assert fakeapi.objects("Secret") == []


def test_a_write_into_a_missing_namespace_is_not_found(dyn):
    with pytest.raises(errors.NotFoundError) as raised:
        apply(dyn, secret())
    assert status_of(raised.value)["message"] == 'namespaces "prefect" not found'


def test_a_namespace_being_deleted_takes_no_new_objects(fakeapi, dyn):
    fakeapi.put({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NS, "deletionTimestamp": "2026-11-26T06:00:00Z"}})
    with pytest.raises(errors.ForbiddenError) as raised:
        apply(dyn, secret())
    # Real (the NamespaceLifecycle admission plugin): 403 with this message.
    assert status_of(raised.value)["message"] == (
        'secrets "prefect-config" is forbidden: unable to create new content in namespace prefect because it is '
        "being terminated")


def test_unknown_fields_of_a_create_are_dropped_with_a_warning(fakeapi, dyn, api_client, namespace):
    body = secret()
    body["metadata"]["colour"] = "blue"
    response = dyn.create(resource(dyn, "Secret"), body=body, namespace=NS, serialize=False)
    # Real (fieldValidation defaults to Warn): 201, the field dropped, `Warning: 299 - "unknown field ..."`.
    assert response.status == 201
    assert response.headers["Warning"] == '299 - "unknown field \\"metadata.colour\\""'
    assert "colour" not in fakeapi.get("Secret", NS, "prefect-config")["metadata"]
    strict = {**secret(name="strict"), "metadata": {"name": "strict", "colour": "blue"}}
    with pytest.raises(errors.BadRequestError) as raised:
        dyn.create(resource(dyn, "Secret"), body=strict, namespace=NS, query_params=[("fieldValidation", "Strict")])
    assert status_of(raised.value)["message"] == 'strict decoding error: unknown field "metadata.colour"'


def test_delete_by_label_selector_deletes_only_what_it_selects(fakeapi, dyn, namespace):
    fakeapi.put({**secret(), "metadata": {"name": "kept", "namespace": NS}})
    managed = {"app.kubernetes.io/managed-by": "prefect-kit"}
    fakeapi.put({**secret(), "metadata": {"name": "doomed", "namespace": NS, "labels": managed}})
    dyn.delete(resource(dyn, "Secret"), namespace=NS, label_selector="app.kubernetes.io/managed-by=prefect-kit")
    assert [s["metadata"]["name"] for s in fakeapi.objects("Secret", NS)] == ["kept"]


def test_replace_with_a_stale_resource_version_conflicts(dyn, namespace):
    first = apply(dyn, secret()).to_dict()
    apply(dyn, secret("bmV3"))
    with pytest.raises(errors.ConflictError) as raised:
        dyn.replace(resource(dyn, "Secret"), body=first)
    assert "the object has been modified" in raised.value.body


def test_list_selects_by_label_and_by_the_fields_the_real_server_indexes(fakeapi, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.put({**secret(), "metadata": {"name": "other", "namespace": NS, "labels": {"tier": "x"}}})
    fakeapi.put(secret())
    secrets = resource(dyn, "Secret")
    assert [s.metadata.name for s in dyn.get(secrets, namespace=NS, label_selector="tier in (x,y)").items] == ["other"]
    assert [s.metadata.name for s in dyn.get(secrets, namespace=NS, label_selector="!tier").items] == [
        "prefect-config"]
    named = dyn.get(secrets, namespace=NS, field_selector="metadata.name=other")
    assert [s.metadata.name for s in named.items] == ["other"]
    raw = json.loads(dyn.get(secrets, namespace=NS, serialize=False).data)
    # No kind in items, as for real; `type` is the server's default (Opaque).
    assert [sorted(item) for item in raw["items"]] == [["data", "metadata", "type"]] * 2
    with pytest.raises(errors.BadRequestError):
        dyn.get(secrets, namespace=NS, field_selector="data.auth-string=x")


def test_events_are_found_by_the_object_they_are_about(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_unready("Deployment", NS, "prefect-worker-prod-main", "ImagePullBackOff", "pull failed")
    (pod,) = fakeapi.objects("Pod", NS)
    fakeapi.event(pod, "Failed", "Failed to pull image")
    fakeapi.event(fakeapi.get("Deployment", NS, "prefect-worker-prod-main"), "ScalingReplicaSet", "scaled", "Normal")
    found = client.CoreV1Api(api_client).list_namespaced_event(
        NS, field_selector=f"involvedObject.name={pod['metadata']['name']},involvedObject.kind=Pod")
    assert [(e.reason, e.type, e.involved_object.uid) for e in found.items] == [
        ("Failed", "Warning", pod["metadata"]["uid"])]


def test_a_wrong_token_is_unauthorized(fakeapi, tmp_path):
    bad = config.new_client_from_config(
        config_file=fakeapi.write_kubeconfig(str(tmp_path / "bad"), token="wrong"), context=fakeapi.context)
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(bad).list_namespace()
    assert raised.value.status == 401


def test_deny_answers_401_or_403_with_real_status_bodies(fakeapi, dyn, api_client, namespace):
    resource(dyn, "Secret")
    fakeapi.deny(403, "/api/v1/namespaces/prefect/secrets")
    with pytest.raises(errors.ForbiddenError) as raised:
        apply(dyn, secret())
    assert status_of(raised.value)["message"] == (
        'secrets "prefect-config" is forbidden: User "contract-tester" cannot patch resource "secrets" in API group '
        '"" in the namespace "prefect"')
    fakeapi.allow()
    fakeapi.deny(401)
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api_client).list_namespace()
    assert raised.value.status == 401


def test_fail_answers_the_next_requests_with_an_error_then_recovers(fakeapi, api_client, namespace):
    core = client.CoreV1Api(api_client)
    fakeapi.fail("/api/v1/namespaces", 503, times=2)
    for _ in range(2):
        with pytest.raises(client.ApiException) as raised:
            core.list_namespace()
        assert raised.value.status == 503
    assert core.list_namespace().items


def test_fail_with_code_0_carries_the_request_out_and_loses_its_answer(fakeapi, dyn, namespace):
    # Real: a server or proxy that dies after the write closes the connection without an answer; the client cannot
    # tell whether the write happened (urllib3 does not resend a PATCH by itself).
    resource(dyn, "Secret")
    fakeapi.fail(f"/api/v1/namespaces/{NS}/secrets", 0)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        apply(dyn, secret())
    assert fakeapi.get("Secret", NS, "prefect-config")["data"] == secret()["data"], "the write was carried out"
    assert [r.status for r in fakeapi.writes()] == [0]
    assert apply(dyn, secret()).metadata.name == "prefect-config", "the next request is answered"


def test_the_request_log_shows_what_the_client_sent(fakeapi, dyn, namespace):
    resource(dyn, "Deployment", "apps/v1")
    fakeapi.clear_requests()
    apply(dyn, deployment())
    (write,) = fakeapi.writes()
    assert (write.method, write.path, write.content_type) == (
        "PATCH", "/apis/apps/v1/namespaces/prefect/deployments/prefect-worker-prod-main",
        "application/apply-patch+yaml")
    assert write.query["fieldManager"] == MANAGER
    assert write.body == deployment()
