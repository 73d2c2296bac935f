"""The defaults a real API server fills in, taken from its defaulting functions.

Each function mirrors a `SetDefaults_*` of pkg/apis/{core,apps,batch,networking,autoscaling,rbac,storage}/v1*/
defaults.go (and the declarative `+default` markers they stand beside): a field is set only when absent, so
defaulting twice changes nothing. `default(kind, obj)` applies what belongs to a kind, the pod template's
defaults included; custom resources get their CRD schema's structural defaults instead. What the registry
strategies add on create (a Job's generated selector, a Service's cluster IP) is here too, as pure functions
of what they need (the uid, the allocated address).
"""

from __future__ import annotations

import copy

from tests.standin import schema
from tests.standin.kinds import Kind

DEFAULT_MODE = 420  # 0644, the default mode of secret, configMap, downwardAPI and projected volumes
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
# SetDefaults_HorizontalPodAutoscaler: the CPU target of an HPA without metrics, and its behavior rules.
_HPA_METRICS = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                            "averageUtilization": 80}}}]
_HPA_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                 "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                              {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_HPA_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default(kind: Kind, obj: dict, version: str) -> None:
    """Fill in obj's defaults in place."""
    if kind.crd:
        schema.apply_defaults(obj, schema.root(schema.schema_version(version), kind))
        return
    function = _BY_KIND.get(kind.kind)
    if function is not None:
        function(obj)


def image_pull_policy(image: str) -> str:
    """Always for :latest or no tag (and no digest), else IfNotPresent (SetDefaults_Container, ParseImageName)."""
    name, _, digest = image.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    return "Always" if (tag or ("" if digest else "latest")) == "latest" else "IfNotPresent"


def _container(container: dict) -> None:
    if container.get("image") is not None:
        container.setdefault("imagePullPolicy", image_pull_policy(container["image"]))
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})  # a struct, never nil: the real server always answers it
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in container:
            _probe(container[probe])
    lifecycle = container.get("lifecycle") or {}
    for handler in (lifecycle.get("postStart"), lifecycle.get("preStop")):
        if handler and "httpGet" in handler:
            _http_get(handler["httpGet"])
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")


def _probe(probe: dict) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if "httpGet" in probe:
        _http_get(probe["httpGet"])


def _http_get(action: dict) -> None:
    action.setdefault("path", "/")
    action.setdefault("scheme", "HTTP")


_VOLUME_SOURCES = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
                   "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk",
                   "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim",
                   "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd", "scaleIO", "secret",
                   "storageos", "vsphereVolume")


def _volume(volume: dict) -> None:
    if not any(source in volume for source in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", DEFAULT_MODE)
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")
    for projection in (volume.get("projected") or {}).get("sources") or []:
        token = projection.get("serviceAccountToken")
        if token is not None:
            token.setdefault("expirationSeconds", 3600)


def pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec and what it reaches: containers, probes, ports, volumes."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            _container(container)
    for volume in spec.get("volumes") or []:
        _volume(volume)


def _template(obj: dict) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    pod_spec(template.setdefault("spec", {}))


def _pod(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)  # SetDefaults_Pod: on Pods only, not on templates
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            resources = container.get("resources") or {}
            if resources.get("limits"):
                requests = resources.setdefault("requests", {})
                for name, value in resources["limits"].items():
                    requests.setdefault(name, value)
    obj.setdefault("status", {"phase": "Pending"})


def _namespace(obj: dict) -> None:
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _secret(obj: dict) -> None:
    obj.setdefault("type", "Opaque")


def _service(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {}).setdefault("timeoutSeconds", 10800)
    spec.setdefault("type", "ClusterIP")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
        # The REST layer's IP family defaults, on a single-stack IPv4 cluster such as kind's default.
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj.setdefault("status", {"loadBalancer": {}})


def cluster_ip(obj: dict, allocate) -> None:
    """The Service REST create: a free address from the service range, or None for a headless Service."""
    spec = obj.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0] or allocate()
    spec["clusterIP"] = ip
    spec.setdefault("clusterIPs", [ip])


def _claim_spec(spec: dict) -> None:
    spec.setdefault("volumeMode", "Filesystem")


def _claim(obj: dict) -> None:
    _claim_spec(obj.setdefault("spec", {}))
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _deployment(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(obj)


def _statefulset(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(obj)
    for claim in spec.get("volumeClaimTemplates") or []:
        # The v1 conversion gives each template its type, and the claim defaults apply to it.
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        _claim(claim)


def _job(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels")
    if labels and not obj["metadata"].get("labels"):
        obj["metadata"]["labels"] = copy.deepcopy(labels)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    _template(obj)


def job_selector(obj: dict) -> None:
    """The Job strategy's generateSelector, unless spec.manualSelector: controller-uid selects, names label."""
    spec = obj["spec"]
    if spec.get("manualSelector"):
        return
    meta = obj["metadata"]
    labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
    for label in JOB_NAME_LABELS:
        labels.setdefault(label, meta["name"])
    for label in CONTROLLER_UID_LABELS:
        labels.setdefault(label, meta["uid"])
    selector = spec.setdefault("selector", {})
    selector.setdefault("matchLabels", {}).setdefault("batch.kubernetes.io/controller-uid", meta["uid"])


def _network_policy(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
        for port in rule.get("ports") or []:
            port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def _ingress(obj: dict) -> None:
    obj.setdefault("status", {"loadBalancer": {}})


def _ingress_class(obj: dict) -> None:
    parameters = (obj.get("spec") or {}).get("parameters")
    if parameters is not None:
        parameters.setdefault("scope", "Cluster")


def _hpa(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = copy.deepcopy(_HPA_METRICS)
    behavior = spec.get("behavior")
    if behavior is not None:
        for direction, rules in (("scaleUp", _HPA_SCALE_UP), ("scaleDown", _HPA_SCALE_DOWN)):
            given = behavior.get(direction) or {}
            behavior[direction] = {**copy.deepcopy(rules), **given}


def _role_binding(obj: dict) -> None:
    role_ref = obj.setdefault("roleRef", {})
    if not role_ref.get("apiGroup"):
        role_ref["apiGroup"] = "rbac.authorization.k8s.io"
    for subject in obj.get("subjects") or []:
        if not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


def _storage_class(obj: dict) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


_BY_KIND = {
    "Namespace": _namespace, "Secret": _secret, "Service": _service, "PersistentVolumeClaim": _claim,
    "Pod": _pod, "Deployment": _deployment, "StatefulSet": _statefulset, "Job": _job,
    "NetworkPolicy": _network_policy, "Ingress": _ingress, "IngressClass": _ingress_class,
    "HorizontalPodAutoscaler": _hpa, "RoleBinding": _role_binding, "StorageClass": _storage_class,
}
