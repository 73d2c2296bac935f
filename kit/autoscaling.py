"""HorizontalPodAutoscalers for the kit's Deployments (the API of scaled mode, a pool's workers), and the replicas
they own: a workload with an autoscaler is rendered without spec.replicas, or every rollout would set its pod count
back. Pure, but for the two facts the rollout reads from the live objects: whose replicas to hand over to a new
autoscaler, and whose to take back from one the render no longer has.
"""

from __future__ import annotations

from kit.immutable import owned_spec_keys

KIND = "HorizontalPodAutoscaler"
API_VERSION = "autoscaling/v2"


def autoscale(workload: dict, minimum: int, maximum: int, cpu_percent: int) -> dict:
    """The autoscaler of a workload, from `minimum` to `maximum` replicas on its pods' CPU (a share of their
    requests); the workload gives up its spec.replicas to it."""
    workload["spec"].pop("replicas", None)
    metadata = workload["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": metadata["name"], "labels": dict(metadata["labels"])},
        "spec": {
            "scaleTargetRef": {"apiVersion": workload["apiVersion"], "kind": workload["kind"],
                               "name": metadata["name"]},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
        },
    }


def target(autoscaler: dict) -> tuple[str, str]:
    reference = autoscaler["spec"]["scaleTargetRef"]
    return reference["kind"], reference["name"]


def to_hand_over(live: dict | None, rendered: dict, manager: str) -> int | None:
    """The live replicas to hand to a new autoscaler before the first apply without them, or None.

    An apply that leaves out a field its manager set before removes it, and the API server defaults a
    Deployment's replicas to 1: three API pods would drop to one until the autoscaler scales back up. Applied by
    another manager first (Kubernetes' documented hand-over), the field stays as it is.
    """
    if live is None or "replicas" in rendered.get("spec", {}):
        return None
    if "replicas" not in owned_spec_keys(live, manager):
        return None
    return live.get("spec", {}).get("replicas")


def taken_back(objects: list[dict], live: dict[tuple[str, str], dict]) -> set[tuple[str, str]]:
    """The workloads whose autoscaler of the kit's is live but no longer rendered, and which render replicas again:
    the autoscaler may own their replicas by now (each scale is its write), so the apply takes them back."""
    rendered = {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}
    back = set()
    for key, obj in live.items():
        if key[0] != KIND or key in rendered:
            continue
        workload = rendered.get(target(obj))
        if workload is not None and "replicas" in workload["spec"]:
            back.add(target(obj))
    return back
