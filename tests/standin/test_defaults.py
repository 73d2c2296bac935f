"""The defaults a real API server fills in, read back through the typed APIs and the DynamicClient.

Each expected value is the real one, from the SetDefaults_ function named beside it (pkg/apis/*/v1/defaults.go).
"""

import pytest
from kubernetes import client

from tests.standin.samples import NS, apply, deployment, job, pod, pod_spec, service, statefulset


@pytest.fixture
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


def test_a_statefulset_gets_a_partitioned_rolling_update_and_the_other_real_defaults(dyn, apps, namespace):
    apply(dyn, statefulset())
    spec = apps.read_namespaced_stateful_set("prefect-server", NS).spec
    # SetDefaults_StatefulSet: RollingUpdate with partition 0, OrderedReady, 10 revisions, claims retained.
    assert (spec.update_strategy.type, spec.update_strategy.rolling_update.partition) == ("RollingUpdate", 0)
    assert (spec.pod_management_policy, spec.revision_history_limit, spec.replicas) == ("OrderedReady", 10, 1)
    retention = spec.persistent_volume_claim_retention_policy
    assert (retention.when_deleted, retention.when_scaled) == ("Retain", "Retain")
    (template,) = spec.volume_claim_templates
    # The claim defaults reach the templates; the v1 conversion gives them their type.
    assert (template.api_version, template.kind, template.spec.volume_mode, template.status.phase) == (
        "v1", "PersistentVolumeClaim", "Filesystem", "Pending")


def test_a_statefulset_on_delete_gets_no_rolling_update(dyn, namespace):
    body = statefulset(claims=False)
    body["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert apply(dyn, body).to_dict()["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_a_deployment_gets_its_rolling_update_history_and_deadline(dyn, apps, namespace):
    apply(dyn, deployment())
    spec = apps.read_namespaced_deployment("prefect-worker-prod-main", NS).spec
    # SetDefaults_Deployment: 25%/25%, 10 revisions, 600 s progress deadline.
    rolling = spec.strategy.rolling_update
    assert (spec.strategy.type, rolling.max_surge, rolling.max_unavailable) == ("RollingUpdate", "25%", "25%")
    assert (spec.revision_history_limit, spec.progress_deadline_seconds) == (10, 600)
    recreate = deployment(name="recreated")
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert apply(dyn, recreate).to_dict()["spec"]["strategy"] == {"type": "Recreate"}


def test_pod_templates_and_containers_get_the_pod_spec_defaults(dyn, namespace):
    probe = {"httpGet": {"port": "http"}}
    container = {"name": "worker", "image": "registry.local:5000/worker", "ports": [{"name": "http",
                                                                                     "containerPort": 8080}],
                 "readinessProbe": probe, "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}
    body = deployment(spec=pod_spec([container], volumes=[{"name": "config", "secret": {"secretName": "s"}}]))
    spec = apply(dyn, body).to_dict()["spec"]["template"]["spec"]
    # SetDefaults_PodSpec.
    assert {k: spec[k] for k in ("restartPolicy", "dnsPolicy", "schedulerName", "terminationGracePeriodSeconds",
                                 "securityContext")} == {
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30, "securityContext": {}}
    assert "enableServiceLinks" not in spec  # SetDefaults_Pod sets it on Pods, never on templates
    (worker,) = spec["containers"]
    # SetDefaults_Container: no tag is :latest, so Always; the termination message; resources is never nil.
    assert {k: worker[k] for k in ("imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy",
                                   "resources")} == {
        "imagePullPolicy": "Always", "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File", "resources": {}}
    assert worker["ports"][0]["protocol"] == "TCP"
    # SetDefaults_Probe and SetDefaults_HTTPGetAction.
    assert worker["readinessProbe"] == {"httpGet": {"port": "http", "path": "/", "scheme": "HTTP"},
                                        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                        "failureThreshold": 3}
    assert spec["volumes"] == [{"name": "config", "secret": {"secretName": "s", "defaultMode": 420}}]


@pytest.mark.parametrize(("image", "policy"), [
    ("prefecthq/prefect:3.9.1-python3.12", "IfNotPresent"),
    ("prefecthq/prefect:latest", "Always"),
    ("internal-cr:9999/prefect-core", "Always"),
    ("internal-cr:9999/prefect-core@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy_follows_the_tag(dyn, namespace, image, policy):
    # SetDefaults_Container with ParseImageName: a registry port is not a tag; a digest without a tag is not latest.
    stored = apply(dyn, deployment(image=image)).to_dict()
    assert stored["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_a_pod_gets_service_links_its_service_account_and_a_pending_phase(fakeapi, core, namespace):
    created = core.create_namespaced_pod(NS, pod(spec=pod_spec(automountServiceAccountToken=False)))
    # SetDefaults_Pod, and the ServiceAccount admission plugin (a real cluster runs it for every pod).
    assert (created.spec.enable_service_links, created.spec.service_account_name, created.spec.service_account) == (
        True, "default", "default")
    assert created.status.phase == "Pending"


def test_a_service_gets_an_address_and_keeps_it(fakeapi, dyn, core, namespace):
    stored = apply(dyn, service()).to_dict()["spec"]
    # SetDefaults_Service, and the Service REST: an address from the service range, single-stack IPv4.
    assert {k: stored[k] for k in ("type", "sessionAffinity", "internalTrafficPolicy", "ipFamilyPolicy",
                                   "ipFamilies")} == {
        "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}
    assert stored["clusterIPs"] == [stored["clusterIP"]] and stored["clusterIP"].startswith("10.96.")
    assert stored["ports"] == [{"name": "http", "port": 4200, "protocol": "TCP", "targetPort": 4200}]
    again = apply(dyn, service()).to_dict()["spec"]
    assert again["clusterIP"] == stored["clusterIP"]  # the applier never sets it, so it stays
    replaced = core.read_namespaced_service("prefect-server", NS)
    replaced.spec.cluster_ip = replaced.spec.cluster_ips = None
    assert core.replace_namespaced_service("prefect-server", NS, replaced).spec.cluster_ip == stored["clusterIP"]
    headless = apply(dyn, service("prefect-server-headless", clusterIP="None")).to_dict()["spec"]
    assert (headless["clusterIP"], headless["clusterIPs"]) == ("None", ["None"])


def test_a_job_gets_its_counts_modes_and_a_generated_selector(dyn, api_client, namespace):
    stored = client.BatchV1Api(api_client).create_namespaced_job(NS, job())
    spec, uid = stored.spec, stored.metadata.uid
    # SetDefaults_Job (completions and parallelism 1, backoffLimit 6, NonIndexed, not suspended, and
    # podReplacementPolicy TerminatingOrFailed without a podFailurePolicy).
    assert (spec.completions, spec.parallelism, spec.backoff_limit, spec.completion_mode, spec.suspend,
            spec.pod_replacement_policy) == (1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    # The Job strategy's generateSelector: the controller-uid selects; names and uids label the template.
    assert spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert spec.template.metadata.labels == {
        "app": "flow", "job-name": "flow-run", "batch.kubernetes.io/job-name": "flow-run",
        "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid}
    assert stored.metadata.labels == {"app": "flow"}  # a Job without labels takes its template's


def test_kinds_with_small_defaults(fakeapi, dyn, namespace):
    secret = apply(dyn, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}})
    assert secret.type == "Opaque"  # SetDefaults_Secret
    claim = apply(dyn, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c",
                                                                                         "namespace": NS},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    assert (claim.spec.volumeMode, claim.status.phase) == ("Filesystem", "Pending")  # SetDefaults_PersistentVolumeClaim*
    ingress_only = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "in", "namespace": NS},
                    "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 4200}]}]}}
    stored = apply(dyn, ingress_only).to_dict()["spec"]
    # SetDefaults_NetworkPolicy: Ingress always, Egress when there are egress rules; port protocol TCP.
    assert (stored["policyTypes"], stored["ingress"][0]["ports"]) == (["Ingress"], [{"port": 4200, "protocol": "TCP"}])
    both = {**ingress_only, "metadata": {"name": "both", "namespace": NS},
            "spec": {"podSelector": {}, "egress": [{}]}}
    assert apply(dyn, both).spec.policyTypes == ["Ingress", "Egress"]
    storage = apply(dyn, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
                          "provisioner": "example.com/disk"})
    assert (storage.reclaimPolicy, storage.volumeBindingMode) == ("Delete", "Immediate")  # SetDefaults_StorageClass


def test_an_hpa_gets_its_minimum_and_cpu_target_and_a_given_behavior_is_completed(dyn, namespace):
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "workers", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
                     "maxReplicas": 4, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}
    spec = apply(dyn, body).to_dict()["spec"]
    # SetDefaults_HorizontalPodAutoscaler and its behavior rules.
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                                             "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert spec["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                                       {"type": "Percent", "value": 100, "periodSeconds": 15}]


def test_a_role_binding_gets_its_api_groups(dyn, namespace):
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "worker", "namespace": NS},
            "roleRef": {"kind": "Role", "name": "worker"},
            "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": NS}, {"kind": "User", "name": "u"}]}
    stored = apply(dyn, body).to_dict()
    # SetDefaults_RoleBinding and SetDefaults_Subject: a ServiceAccount's group stays the core group ("").
    assert stored["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s.get("apiGroup") for s in stored["subjects"]] == [None, "rbac.authorization.k8s.io"]

