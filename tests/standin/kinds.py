"""The kinds the stand-in serves and the discovery documents that list them.

One entry per kind is the single source: URL paths, discovery, field selectors, name rules and which kinds are
custom resources all derive from KINDS and GATEWAY_API. The Gateway API kinds are served only while a test has
"installed" their CRDs (FakeApi.serve_gateway_api), so discovery and 404s change with them.
"""

from __future__ import annotations

from dataclasses import dataclass

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# Fields every object supports in a fieldSelector; kinds add their own (pkg/registry/*/strategy.go).
COMMON_FIELD_LABELS = ("metadata.name", "metadata.namespace")
GATEWAY_API_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    field_labels: tuple[str, ...] = ()
    # How metadata.name is validated: "subdomain" (DNS-1123 subdomain), "label" (DNS-1123 label), "dns1035"
    # (Services) or "path" (RBAC: any path segment), as each kind's ValidateObjectMeta call chooses.
    names: str = "subdomain"
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[str, ...] = ()  # served for GET only: `log` streams a pod's log, `status` reads the object
    crd: str = ""  # the CRD file under tests/schemas/gateway-api-v1.6.1/ of a custom resource
    stored: bool = True  # reviews are answered, never stored

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """How the real server names the resource in messages: `deployments.apps`, `secrets`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


KINDS = (
    Kind("", "v1", "namespaces", "Namespace", False, ("ns",), ("status.phase",), names="label",
         verbs=("create", "delete", "get", "list", "patch", "update", "watch"), subresources=("status",)),
    Kind("", "v1", "secrets", "Secret", True, (), ("type",)),
    Kind("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Kind("", "v1", "services", "Service", True, ("svc",), names="dns1035", subresources=("status",)),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), subresources=("status",)),
    Kind("", "v1", "pods", "Pod", True, ("po",),
         ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
          "status.phase", "status.podIP", "status.nominatedNodeName"), subresources=("log", "status", "exec", "portforward")),
    Kind("", "v1", "events", "Event", True, ("ev",),
         ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
          "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
          "reason", "reportingComponent", "type")),
    Kind("apps", "v1", "deployments", "Deployment", True, ("deploy",), subresources=("status",)),
    Kind("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), names="label", subresources=("status",)),
    Kind("batch", "v1", "jobs", "Job", True, subresources=("status",)),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), subresources=("status",)),
    Kind("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), subresources=("status",)),
    Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",),
         subresources=("status",)),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", True, names="path"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, names="path"),
    Kind("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    Kind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
         verbs=("create",), stored=False),
)
GATEWAY_API = (
    Kind(GATEWAY_API_GROUP, "v1", "gateways", "Gateway", True, ("gtw",), subresources=("status",),
         crd="gateways.yaml"),
    Kind(GATEWAY_API_GROUP, "v1", "httproutes", "HTTPRoute", True, subresources=("status",), crd="httproutes.yaml"),
)
BY_KIND = {k.kind: k for k in KINDS + GATEWAY_API}


def served(gateway_api: bool) -> tuple[Kind, ...]:
    return KINDS + (GATEWAY_API if gateway_api else ())


def by_path(kinds: tuple[Kind, ...], group: str, version: str, plural: str) -> Kind | None:
    return next((k for k in kinds if (k.group, k.version, k.plural) == (group, version, plural)), None)


# ---- discovery (plain APIResourceList documents; no aggregated discovery, like a server that does not offer it)

def version_info(version: str) -> dict:
    major, minor, *_ = version.split(".")
    return {"major": major, "minor": minor, "gitVersion": f"v{version}", "gitCommit": "fakeapi",
            "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
            "compiler": "gc", "platform": "linux/amd64"}


def discovery(path: str, host: str, kinds: tuple[Kind, ...], version: str) -> dict | None:
    """The JSON a real API server answers on a discovery path, or None when the path is not discovery."""
    path = path.rstrip("/")
    group_versions = sorted({(k.group, k.version) for k in kinds})
    if path == "/version":
        return version_info(version)
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
    if path == "/apis":
        groups = []
        for group, group_version in group_versions:
            if group:
                entry = {"groupVersion": f"{group}/{group_version}", "version": group_version}
                groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for group, group_version in group_versions:
        name = f"{group}/{group_version}" if group else group_version
        if path == ("/apis/" if group else "/api/") + name:
            return resource_list(kinds, group, group_version, name)
    return None


def resource_list(kinds: tuple[Kind, ...], group: str, version: str, group_version: str) -> dict:
    resources = []
    for kind in kinds:
        if (kind.group, kind.version) != (group, version):
            continue
        entry = {"name": kind.plural, "singularName": kind.kind.lower(), "namespaced": kind.namespaced,
                 "kind": kind.kind, "verbs": list(kind.verbs), "shortNames": list(kind.short_names)}
        if kind.crd:
            entry["categories"] = ["gateway-api"]
        resources.append(entry)
        resources += [{"name": f"{kind.plural}/{sub}", "singularName": "", "namespaced": kind.namespaced,
                       "kind": kind.kind, "verbs": ["get"]} for sub in kind.subresources]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}
