"""Admission and RBAC, through the real client: PodSecurity, ServiceAccount, claim protection, access reviews."""

import re

import pytest
from kubernetes import client
from kubernetes.dynamic import exceptions as errors

from tests.standin.samples import (IMAGE, NS, RESTRICTED_CONTAINER, RESTRICTED_POD, apply, claim, deployment, job,
                                   pod, pod_spec, resource, secret, status_of)

VIOLATIONS = ('allowPrivilegeEscalation != false (container "worker" must set '
              'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "worker" must '
              'set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "worker" must '
              'set securityContext.runAsNonRoot=true), seccompProfile (pod or container "worker" must set '
              'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


def label_namespace(fakeapi, **levels):
    labels = {f"pod-security.kubernetes.io/{mode}": level for mode, level in levels.items()}
    fakeapi.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels}})


def compliant_spec():
    return pod_spec([{"name": "worker", "image": IMAGE, "securityContext": RESTRICTED_CONTAINER}],
                    securityContext=RESTRICTED_POD, automountServiceAccountToken=False)


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


def test_restricted_enforce_refuses_a_pod_with_the_real_message(fakeapi, core):
    label_namespace(fakeapi, enforce="restricted")
    for dry_run in ("All", None):
        with pytest.raises(client.ApiException) as raised:
            core.create_namespaced_pod(NS, pod(), dry_run=dry_run)
        status = status_of(raised.value)
        # Real: 403 Forbidden, dry runs too (admission runs for them).
        assert (status["code"], status["reason"]) == (403, "Forbidden")
        assert status["message"] == f'pods "runner" is forbidden: violates PodSecurity "restricted:latest": {VIOLATIONS}'
    assert core.create_namespaced_pod(NS, pod(spec=compliant_spec())).metadata.name == "runner"


def test_enforce_never_refuses_a_workload_and_warn_says_what_would_be_refused(fakeapi, dyn):
    label_namespace(fakeapi, enforce="restricted", warn="restricted")
    kind = resource(dyn, "Deployment", "apps/v1")
    response = dyn.create(kind, body=deployment(), namespace=NS, serialize=False)
    # Real: 201 with `Warning: 299 - "would violate PodSecurity \"restricted:latest\": ..."`.
    assert response.status == 201
    assert response.headers["Warning"] == (
        '299 - "would violate PodSecurity \\"restricted:latest\\": ' + VIOLATIONS.replace('"', '\\"') + '"')
    compliant = deployment(name="compliant", spec=compliant_spec())
    assert "Warning" not in dyn.create(kind, body=compliant, namespace=NS, serialize=False).headers


def test_warn_alone_admits_a_pod_and_says_why_enforce_would_not(fakeapi, dyn):
    label_namespace(fakeapi, warn="restricted")
    response = dyn.create(resource(dyn, "Pod"), body=pod(), namespace=NS, serialize=False)
    assert response.status == 201
    assert response.headers["Warning"].startswith('299 - "would violate PodSecurity \\"restricted:latest\\": ')


def test_a_refused_pod_is_its_controllers_failed_create(fakeapi, dyn):
    label_namespace(fakeapi, enforce="restricted")
    apply(dyn, deployment())
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    assert fakeapi.objects("Pod", NS) == []
    (event,) = fakeapi.objects("Event", NS)
    # Real: the ReplicaSet controller's event, the admission's message after "Error creating: ".
    assert (event["involvedObject"]["kind"], event["reason"]) == ("ReplicaSet", "FailedCreate")
    assert re.fullmatch(r'Error creating: pods "prefect-worker-prod-main-[0-9a-f]{10}-[0-9a-f]{5}" is forbidden: '
                        r'violates PodSecurity "restricted:latest": ' + re.escape(VIOLATIONS), event["message"])
    conditions = {c["type"]: c for c in fakeapi.get("Deployment", NS, "prefect-worker-prod-main")["status"][
        "conditions"]}
    assert (conditions["ReplicaFailure"]["status"], conditions["ReplicaFailure"]["reason"]) == ("True", "FailedCreate")
    apply(dyn, job(spec=pod_spec([{"name": "worker", "image": IMAGE}], restartPolicy="Never")))
    fakeapi.job_running(NS, "flow-run")
    job_events = [e for e in fakeapi.objects("Event", NS) if e["involvedObject"]["kind"] == "Job"]
    assert [e["message"].split(":")[0] for e in job_events] == ["Error creating"]
    assert "active" not in fakeapi.get("Job", NS, "flow-run")["status"]


def test_forbid_refuses_the_requests_and_access_reviews_agree(fakeapi, dyn, api_client, namespace):
    fakeapi.forbid("patch", "secrets", namespace=NS)
    with pytest.raises(errors.ForbiddenError) as raised:
        apply(dyn, secret())
    # Real (the RBAC authorizer): 403 naming user, verb, resource, group and namespace.
    assert status_of(raised.value)["message"] == (
        'secrets "prefect-config" is forbidden: User "contract-tester" cannot patch resource "secrets" in API group '
        '"" in the namespace "prefect"')
    assert dyn.get(resource(dyn, "Secret"), namespace=NS).items == []  # list is still allowed
    authorization = client.AuthorizationV1Api(api_client)

    def review(verb, resource_name, group=""):
        body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=NS, verb=verb, resource=resource_name,
                                                            group=group)))
        return authorization.create_self_subject_access_review(body).status

    assert review("patch", "secrets").allowed is False
    assert review("get", "secrets").allowed is True
    assert review("patch", "deployments", "apps").allowed is True
    fakeapi.allow()
    assert review("patch", "secrets").allowed is True


def test_a_forbidden_subresource_is_its_own_permission(fakeapi, api_client, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.make_ready("Deployment", NS, "prefect-worker-prod-main")
    (worker,) = fakeapi.objects("Pod", NS)
    fakeapi.forbid("get", "pods", subresource="log")
    core = client.CoreV1Api(api_client)
    with pytest.raises(client.ApiException) as raised:
        core.read_namespaced_pod_log(worker["metadata"]["name"], NS)
    assert status_of(raised.value)["message"] == (
        f'pods "{worker["metadata"]["name"]}" is forbidden: User "contract-tester" cannot get resource "pods/log" in '
        'API group "" in the namespace "prefect"')
    assert core.read_namespaced_pod(worker["metadata"]["name"], NS).metadata.name == worker["metadata"]["name"]


def test_a_pod_needs_its_service_account_and_gets_its_token_volume(fakeapi, core, namespace):
    with pytest.raises(client.ApiException) as raised:
        core.create_namespaced_pod(NS, pod(spec=pod_spec(serviceAccountName="prefect-worker")))
    # Real (the ServiceAccount admission plugin): 403.
    assert status_of(raised.value)["message"] == (
        'pods "runner" is forbidden: error looking up service account prefect/prefect-worker: serviceaccount '
        '"prefect-worker" not found')
    created = core.create_namespaced_pod(NS, pod()).to_dict()
    # Real: the projected token, CA and namespace volume, mounted read-only into every container.
    (volume,) = created["spec"]["volumes"]
    assert volume["name"].startswith("kube-api-access-")
    token, root_ca, downward = volume["projected"]["sources"]
    assert (token["service_account_token"]["expiration_seconds"], root_ca["config_map"]["name"]) == (
        3607, "kube-root-ca.crt")
    assert downward["downward_api"]["items"][0]["field_ref"]["field_path"] == "metadata.namespace"
    (mount,) = created["spec"]["containers"][0]["volume_mounts"]
    assert (mount["name"], mount["mount_path"], mount["read_only"]) == (
        volume["name"], "/var/run/secrets/kubernetes.io/serviceaccount", True)


def test_every_new_claim_is_protected(dyn, namespace):
    # Real (StorageObjectInUseProtection): the finalizer is added on create.
    assert apply(dyn, claim()).metadata.finalizers == ["kubernetes.io/pvc-protection"]
