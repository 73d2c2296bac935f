"""What a real API server refuses, through the real client: each test states the real status and message.

The messages are those of pkg/apis/*/validation and k8s.io/apimachinery's field errors; the cases are those the
kit can run into (a changed StatefulSet, a renamed selector, a mistyped name) and those a real 1.36 server showed.
"""

import pytest
from kubernetes import client
from kubernetes.dynamic import exceptions as errors

from tests.standin.samples import NS, apply, claim, deployment, job, pod, pod_spec, resource, secret, service, \
    statefulset, status_of

STATEFULSET_FORBIDDEN = (
    'StatefulSet.apps "prefect-server" is invalid: spec: Forbidden: updates to statefulset spec for fields other '
    "than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
    "'minReadySeconds' are forbidden")
DNS_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def refused(dyn, body, error=errors.UnprocessibleEntityError, **options):
    with pytest.raises(error) as raised:
        apply(dyn, body, **options)
    return status_of(raised.value)


def changed(body, path, value):
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "serviceName"), "another-headless"),
    (("spec", "podManagementPolicy"), "Parallel"),
    (("spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage"), "2Gi"),
])
def test_a_statefulset_refuses_changes_beyond_its_mutable_fields(dyn, namespace, path, value):
    apply(dyn, statefulset())
    status = refused(dyn, changed(statefulset(), path, value))
    # Real: 422 Invalid, the message of ValidateStatefulSetUpdate (the change a real 1.36 server refused).
    assert (status["code"], status["reason"], status["message"]) == (422, "Invalid", STATEFULSET_FORBIDDEN)
    assert status["details"]["causes"] == [{"reason": "FieldValueForbidden", "field": "spec", "message": (
        STATEFULSET_FORBIDDEN.split("spec: ", 1)[1])}]


def test_a_statefulset_refuses_another_selector_and_takes_new_replicas_and_templates(dyn, namespace):
    apply(dyn, statefulset())
    other = statefulset()
    other["spec"]["selector"]["matchLabels"] = other["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    assert refused(dyn, other)["message"] == STATEFULSET_FORBIDDEN
    scaled = changed(statefulset(), ("spec", "replicas"), 2)
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "prefecthq/prefect:3.9.2-python3.12"
    scaled["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    assert apply(dyn, scaled).spec.replicas == 2


def test_switching_strategies_by_apply_trips_over_the_defaulted_rolling_update(dyn, namespace):
    apply(dyn, deployment())
    recreate = deployment()
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    # Real: the applier never owned the defaulted rollingUpdate, so it stays and ValidateDeploymentStrategy refuses.
    assert refused(dyn, recreate)["message"] == (
        'Deployment.apps "prefect-worker-prod-main" is invalid: spec.strategy.rollingUpdate: Forbidden: may not be '
        "specified when strategy `type` is 'Recreate'")
    apply(dyn, statefulset())
    on_delete = statefulset()
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert refused(dyn, on_delete)["message"] == (
        'StatefulSet.apps "prefect-server" is invalid: spec.updateStrategy.rollingUpdate: Invalid value: '
        "apps.RollingUpdateStatefulSetStrategy{Partition:0, MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed "
        "for updateStrategy 'RollingUpdate'")


def test_a_deployment_selector_is_immutable(dyn, namespace):
    apply(dyn, deployment())
    other = deployment()
    other["spec"]["selector"]["matchLabels"] = other["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    # Real (ValidateDeploymentUpdate via ValidateImmutableField), the selector printed with %#v:
    assert refused(dyn, other)["message"] == (
        'Deployment.apps "prefect-worker-prod-main" is invalid: spec.selector: Invalid value: '
        'v1.LabelSelector{MatchLabels:map[string]string{"app":"other"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")


def test_a_job_selector_template_and_completion_mode_are_immutable(dyn, api_client, namespace):
    batch = client.BatchV1Api(api_client)
    stored = batch.create_namespaced_job(NS, job())
    stored.spec.template.spec.containers[0].image = "prefecthq/prefect:3.9.2-python3.12"
    with pytest.raises(client.ApiException) as raised:
        batch.replace_namespaced_job("flow-run", NS, stored)
    status = status_of(raised.value)
    # Real: `spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable` (the %#v is long).
    assert (status["code"], [c["field"] for c in status["details"]["causes"]]) == (422, ["spec.template"])
    assert status["message"].endswith("field is immutable")
    renamed = batch.read_namespaced_job("flow-run", NS)
    renamed.spec.selector.match_labels = {"batch.kubernetes.io/controller-uid": "another"}
    with pytest.raises(client.ApiException) as raised:
        batch.replace_namespaced_job("flow-run", NS, renamed)
    # Real (ValidateJob, then ValidateJobUpdate): no longer the generated selector, nor one matching the
    # template, and immutable.
    causes = status_of(raised.value)["details"]["causes"]
    assert [(c["field"], c["message"].rsplit(": ", 1)[1]) for c in causes] == [
        ("spec.selector", "`selector` not auto-generated"),
        ("spec.template.metadata.labels", "`selector` does not match template `labels`"),
        ("spec.selector", "field is immutable")]


def test_a_job_with_its_own_selector_must_say_so(dyn, namespace):
    body = job()
    body["spec"]["selector"] = {"matchLabels": {"app": "flow"}}
    status = refused(dyn, body)
    # Real (ValidateGeneratedSelector): the server adds the controller-uid, and the result is not the generated one.
    assert status["message"].startswith('Job.batch "flow-run" is invalid: spec.selector: Invalid value: '
                                        'v1.LabelSelector{MatchLabels:map[string]string{"app":"flow", '
                                        '"batch.kubernetes.io/controller-uid":')
    assert status["message"].endswith("`selector` not auto-generated")


def test_a_job_must_not_restart_always(dyn, namespace):
    # Real: `spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"`.
    assert refused(dyn, job(restart="Always"))["message"] == (
        'Job.batch "flow-run" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": '
        'supported values: "OnFailure", "Never"')


def test_a_service_keeps_its_cluster_ip(dyn, namespace):
    first = apply(dyn, service()).to_dict()["spec"]["clusterIP"]
    status = refused(dyn, service(clusterIP="None"))
    # Real (validateUpgradeDowngradeClusterIPs): the new clusterIPs printed with %#v.
    assert status["message"] == (
        'Service "prefect-server" is invalid: spec.clusterIPs[0]: Invalid value: []string{"None"}: may not change '
        "once set")
    assert first != "None"


def test_a_claim_spec_is_immutable_but_a_bound_claim_may_grow(fakeapi, dyn, namespace):
    apply(dyn, claim())
    changed_modes = changed(claim(), ("spec", "accessModes"), ["ReadWriteMany"])
    assert refused(dyn, changed_modes)["message"].startswith(
        'PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after creation except '
        "resources.requests and volumeAttributesClassName for bound claims\n")
    fakeapi.set_status("PersistentVolumeClaim", NS, "data", {"phase": "Bound", "capacity": {"storage": "1Gi"}})
    assert apply(dyn, claim(storage="2Gi")).spec.resources.requests.storage == "2Gi"
    assert refused(dyn, claim(storage="1Gi"))["message"] == (
        'PersistentVolumeClaim "data" is invalid: spec.resources.requests.storage: Forbidden: field can not be less '
        "than previous value")


def test_a_role_binding_cannot_change_its_role(dyn, namespace):
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "worker", "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "worker"},
               "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": NS}]}
    apply(dyn, binding)
    other = changed(binding, ("roleRef", "name"), "admin")
    # Real (ValidateRoleBindingUpdate), the internal rbac.RoleRef printed with %#v:
    assert refused(dyn, other)["message"] == (
        'RoleBinding.rbac.authorization.k8s.io "worker" is invalid: roleRef: Invalid value: '
        'rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"admin"}: cannot change roleRef')


def test_immutable_secrets_and_config_maps_keep_their_data(dyn, namespace):
    apply(dyn, secret(immutable=True))
    status = refused(dyn, secret("bmV3", immutable=True))
    # Real (ValidateSecretUpdate): `data: Forbidden: field is immutable when `immutable` is set`.
    assert status["message"] == ('Secret "prefect-config" is invalid: data: Forbidden: field is immutable when '
                                 "`immutable` is set")
    assert "immutable: Forbidden" in refused(dyn, secret(immutable=False))["message"]
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS},
                "immutable": True, "data": {"a": "1"}}
    apply(dyn, settings)
    assert refused(dyn, changed(settings, ("data", "a"), "2"))["message"] == (
        'ConfigMap "settings" is invalid: data: Forbidden: field is immutable when `immutable` is set')


def test_a_selector_must_match_its_template(dyn, namespace):
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    # Real: the template's labels printed with %#v.
    assert refused(dyn, body)["message"] == (
        'Deployment.apps "prefect-worker-prod-main" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"other"}: `selector` does not match template `labels`')


def test_a_volume_mount_must_name_a_volume(dyn, api_client, namespace):
    mounting = [{"name": "worker", "image": "w:1", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]
    assert refused(dyn, deployment(spec=pod_spec(mounting)))["message"] == (
        'Deployment.apps "prefect-worker-prod-main" is invalid: spec.template.spec.containers[0].volumeMounts[0].name:'
        ' Not found: "cache"')
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api_client).create_namespaced_pod(NS, pod(spec=pod_spec(mounting)))
    assert status_of(raised.value)["message"] == (
        'Pod "runner" is invalid: spec.containers[0].volumeMounts[0].name: Not found: "cache"')


def test_a_statefulset_pod_template_is_checked_when_its_pod_is_made(fakeapi, dyn, namespace):
    # Real: the StatefulSet API does not validate its pod template (the TODO in ValidatePodTemplateSpecForStatefulSet);
    # the controller's pod create is refused, and its FailedCreate event says why. Claim templates are volumes.
    server = statefulset(spec=pod_spec([{"name": "server", "image": "s:1", "volumeMounts": [
        {"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}]}]))
    apply(dyn, server)
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    assert fakeapi.objects("Pod", NS) == []
    (event,) = fakeapi.objects("Event", NS)
    assert (event["reason"], event["message"]) == ("FailedCreate", (
        'create Pod prefect-server-0 in StatefulSet prefect-server failed error: Pod "prefect-server-0" is invalid: '
        'spec.containers[0].volumeMounts[1].name: Not found: "cache"'))
    assert fakeapi.get("StatefulSet", NS, "prefect-server")["status"]["replicas"] == 0


def test_names_must_be_what_their_kind_allows(dyn, namespace):
    bad_secret = secret(name="Prefect_Config")
    assert refused(dyn, bad_secret)["message"] == (
        f'Secret "Prefect_Config" is invalid: metadata.name: Invalid value: "Prefect_Config": {DNS_SUBDOMAIN}')
    # A StatefulSet's name is a DNS label (its pods' hostnames): no dots.
    assert refused(dyn, statefulset(name="prefect.server"))["message"] == (
        'StatefulSet.apps "prefect.server" is invalid: metadata.name: Invalid value: "prefect.server": must not '
        "contain dots")
    # A Service's name is a DNS-1035 label: it starts with a letter.
    assert refused(dyn, service(name="4200-server"))["message"] == (
        'Service "4200-server" is invalid: metadata.name: Invalid value: "4200-server": a DNS-1035 label must consist '
        "of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an "
        "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')")


def test_label_keys_and_values_must_be_valid(dyn, namespace):
    status = refused(dyn, deployment(labels={"team/../x": "ok", "tier": "not ok!"}))
    # Real (ValidateLabels): each error at metadata.labels, the bad key or value as the value (in Go's map order).
    assert sorted(c["message"] for c in status["details"]["causes"]) == [
        'Invalid value: "not ok!": a valid label must be an empty string or consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
        "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        'Invalid value: "team/../x": a valid label key must consist of alphanumeric characters, \'-\', \'_\' or \'.\', '
        "and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
        "and '/' (e.g. 'example.com/MyName')"]
    assert {c["field"] for c in status["details"]["causes"]} == {"metadata.labels"}


def test_container_and_port_names_must_be_valid_and_unique(dyn, api_client, namespace):
    containers = [{"name": "Worker", "image": "w:1", "ports": [{"name": "HTTP", "containerPort": 8080}]}]
    causes = refused(dyn, deployment(spec=pod_spec(containers)))["details"]["causes"]
    assert [(c["field"], c["message"]) for c in causes] == [
        ("spec.template.spec.containers[0].name", f'Invalid value: "Worker": {DNS_LABEL}'),
        ("spec.template.spec.containers[0].ports[0].name",
         'Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)'),
        ("spec.template.spec.containers[0].ports[0].name", 'Invalid value: "HTTP": must contain at least one letter '
                                                           "(a-z)")]
    twice = [{"name": "worker", "image": "w:1"}, {"name": "worker", "image": "w:2"}]
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api_client).create_namespaced_pod(NS, pod(spec=pod_spec(twice)))
    # Real: a create (not an apply, which cannot even type it) answers the duplicate as a field error.
    assert status_of(raised.value)["message"] == (
        'Pod "runner" is invalid: spec.containers[1].name: Duplicate value: "worker"')


def test_an_object_being_deleted_takes_no_new_finalizers(fakeapi, dyn, namespace):
    body = secret()
    body["metadata"]["finalizers"] = ["example.com/keep"]
    apply(dyn, body)
    dyn.delete(resource(dyn, "Secret"), "prefect-config", NS)
    body["metadata"]["finalizers"] = ["example.com/keep", "example.com/more"]
    # Real (ValidateObjectMetaUpdate): `found new finalizers []string{"example.com/more"}`.
    assert refused(dyn, body)["message"] == (
        'Secret "prefect-config" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the '
        'object is being deleted, found new finalizers []string{"example.com/more"}')
