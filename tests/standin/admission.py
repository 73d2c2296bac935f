"""Admission as a real API server runs it for the kinds served here, and one model of RBAC.

- RBAC (`Rbac`): everything is allowed until a test forbids a verb on a resource; from then on the real requests
  answer 403 and SelfSubjectAccessReviews of it answer allowed=false, so checks and calls agree.
- ServiceAccount (mutating, pods): `serviceAccountName` defaults to `default`, which must exist; unless the pod
  or its service account opts out, the projected API token volume is mounted into every container.
- StorageObjectInUseProtection (mutating): every new claim carries the `kubernetes.io/pvc-protection` finalizer.
- PodSecurity (validating): a namespace's `pod-security.kubernetes.io/enforce` level refuses pods (dry runs
  too) with 403; its `warn` level adds a `would violate PodSecurity` warning to pods and to pod templates of
  workloads, which enforce never refuses (tests/pod_security.py holds the checks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tests import pod_security as standards
from tests.standin.kinds import Kind

PVC_PROTECTION = "kubernetes.io/pvc-protection"
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "Job")


@dataclass(frozen=True)
class Rule:
    verb: str
    resource: str
    group: str
    namespace: str | None  # None: every namespace and the cluster scope
    subresource: str

    def matches(self, verb: str, resource: str, group: str, namespace: str | None, subresource: str) -> bool:
        return (self.verb in ("*", verb) and self.resource in ("*", resource) and self.group == group
                and self.namespace in (None, namespace) and self.subresource == subresource)


class Rbac:
    """Which requests the test user may make: all, but what forbid() took away."""

    def __init__(self):
        self._forbidden: list[Rule] = []

    def forbid(self, verb: str, resource: str, group: str = "", namespace: str | None = None,
               subresource: str = "") -> None:
        self._forbidden.append(Rule(verb, resource, group, namespace, subresource))

    def clear(self) -> None:
        self._forbidden.clear()

    def allows(self, verb: str, resource: str, group: str, namespace: str | None, subresource: str = "") -> bool:
        return not any(rule.matches(verb, resource, group, namespace, subresource) for rule in self._forbidden)

    def review(self, spec: dict) -> dict:
        """The status of a SelfSubjectAccessReview, as the RBAC authorizer answers it."""
        attributes = spec.get("resourceAttributes")
        if attributes is None:  # a non-resource URL: RBAC allows what a user's ClusterRoles allow; here all
            return {"allowed": True, "reason": _ALLOWED}
        allowed = self.allows(attributes.get("verb", ""), attributes.get("resource", ""),
                              attributes.get("group", ""), attributes.get("namespace") or None,
                              attributes.get("subresource", ""))
        return {"allowed": True, "reason": _ALLOWED} if allowed else {"allowed": False}


_ALLOWED = 'RBAC: allowed by ClusterRoleBinding "fakeapi-admin" of ClusterRole "cluster-admin" to User "contract-tester"'


def pod_security_levels(namespace: dict | None) -> tuple[str, str]:
    """(enforce, warn) of a namespace, "privileged" where no label says otherwise."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    return (labels.get("pod-security.kubernetes.io/enforce", "privileged"),
            labels.get("pod-security.kubernetes.io/warn", "privileged"))


def _level(namespace: dict, mode: str) -> str:
    labels = namespace["metadata"].get("labels") or {}
    return labels.get(f"pod-security.kubernetes.io/{mode}-version", "latest")


def check_pod_security(kind: Kind, obj: dict, namespace: dict | None) -> tuple[str | None, list[str]]:
    """(the reason to refuse, the warnings) PodSecurity admission gives a pod or a workload's pod template."""
    if kind.kind == "Pod":
        spec, annotations = obj.get("spec") or {}, obj["metadata"].get("annotations")
    elif kind.kind in _POD_TEMPLATE_KINDS:
        template = (obj.get("spec") or {}).get("template") or {}
        spec, annotations = template.get("spec") or {}, (template.get("metadata") or {}).get("annotations")
    else:
        return None, []
    enforce, warn = pod_security_levels(namespace)
    if kind.kind == "Pod" and enforce in standards.LEVELS:
        failed = standards.violations(spec, annotations, enforce)
        if failed:
            return (f'violates PodSecurity "{enforce}:{_level(namespace, "enforce")}": {", ".join(failed)}', [])
    if warn in standards.LEVELS:
        failed = standards.violations(spec, annotations, warn)
        if failed:
            return None, [f'would violate PodSecurity "{warn}:{_level(namespace, "warn")}": {", ".join(failed)}']
    return None, []


def token_volume_name(pod: dict) -> str:
    """kube-api-access-<5 characters>, as the ServiceAccount admission plugin names the token volume."""
    seed = f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"
    return "kube-api-access-" + hashlib.sha256(seed.encode()).hexdigest()[:5]


def service_account(pod: dict, account: dict | None) -> str | None:
    """The ServiceAccount plugin's changes to a new pod; the reason to refuse it when its account is missing."""
    spec = pod.setdefault("spec", {})
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = name
    if account is None:
        return (f"error looking up service account {pod['metadata'].get('namespace')}/{name}: serviceaccount "
                f'"{name}" not found')
    automount = spec.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True))
    if automount is False or any(TOKEN_MOUNT == m.get("mountPath")
                                 for c in spec.get("containers") or [] for m in c.get("volumeMounts") or []):
        return None
    volume = token_volume_name(pod)
    spec.setdefault("volumes", []).append({"name": volume, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}})
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            container.setdefault("volumeMounts", []).append({"name": volume, "readOnly": True,
                                                             "mountPath": TOKEN_MOUNT})
    return None


def protect_claim(claim: dict) -> None:
    finalizers = claim["metadata"].setdefault("finalizers", [])
    if PVC_PROTECTION not in finalizers:
        finalizers.append(PVC_PROTECTION)
