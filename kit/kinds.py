"""Every kind of object the kit renders, in the order a rollout applies them.

The one list that render order, prune, destroy and status derive from: a kind added here is applied,
pruned and destroyed like every other, and a kind missing here cannot be rendered at all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    api_version: str
    # Its spec.template is a pod template: the kit sets image, pull Secret, proxies and checksum in it.
    has_pods: bool = False
    # Served only where an add-on is installed (Gateway API): a cluster without it has none to prune.
    optional: bool = False
    # Routes the public host to the Service (ROUTE picks one): a stale one is removed by every rollout, not only
    # with --prune, as two routes for one host are never wanted.
    route: bool = False
    # Acts on a workload the render shapes: a stale one is removed by every rollout once the server is ready, not
    # only with --prune (a budget left from more replicas would block node drains, an autoscaler left behind would
    # fight the rendered replicas).
    follows_render: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """The resource name RBAC and the API paths use: the kind pluralised as Kubernetes does it by default."""
        lower = self.name.lower()
        if lower.endswith("y"):
            return lower[:-1] + "ies"
        return lower + ("es" if lower.endswith("s") else "s")


# Dependencies first: a pod finds its ServiceAccount, Secrets and ConfigMaps; the migration Job runs
# before the server pods that need its schema; routes come last, when their Services exist.
KINDS = (
    Kind("Namespace", "v1"),
    Kind("ServiceAccount", "v1"),
    Kind("Secret", "v1"),
    Kind("ConfigMap", "v1"),
    Kind("Role", "rbac.authorization.k8s.io/v1"),
    Kind("RoleBinding", "rbac.authorization.k8s.io/v1"),
    Kind("NetworkPolicy", "networking.k8s.io/v1"),
    Kind("Service", "v1"),
    Kind("Job", "batch/v1", has_pods=True),
    Kind("StatefulSet", "apps/v1", has_pods=True),
    Kind("Deployment", "apps/v1", has_pods=True),
    Kind("PodDisruptionBudget", "policy/v1", follows_render=True),
    Kind("HorizontalPodAutoscaler", "autoscaling/v2", follows_render=True),
    Kind("Ingress", "networking.k8s.io/v1", route=True),
    Kind("HTTPRoute", "gateway.networking.k8s.io/v1", optional=True, route=True),
)
BY_NAME = {kind.name: kind for kind in KINDS}
APPLY_ORDER = tuple(kind.name for kind in KINDS)
# What prune and destroy look at: everything but the namespace, which may hold what is not the kit's.
NAMESPACED = tuple(kind for kind in KINDS if kind.name != "Namespace")
POD_KINDS = tuple(kind.name for kind in KINDS if kind.has_pods)
ROUTE_KINDS = tuple(kind.name for kind in KINDS if kind.route)
FOLLOWS_RENDER = tuple(kind.name for kind in KINDS if kind.follows_render)
