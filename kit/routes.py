"""How the UI and API are reached from outside the cluster (ROUTE): one Ingress, a Gateway API HTTPRoute, or none.

Every route only forwards to the Service: the login is asked by the proxy in the server pod
(manifests/20-server.yaml), so any ingress controller or Gateway implementation shows the same prompt and
no controller annotation is needed. The HTTPRoute lives in manifests/gateway/, which `kubectl apply -f
manifests/` does not read: the plain files keep applying on a cluster without Gateway API.
"""

from __future__ import annotations

from pathlib import Path

from kit.kinds import ROUTE_KINDS
from kit.settings import Settings

GATEWAY_FOLDER = "gateway"
# The kind of route each ROUTE renders.
ROUTE_KIND = {"ingress": "Ingress", "gateway": "HTTPRoute", "none": None}


def folders(directory: Path, settings: Settings) -> list[Path]:
    """The folders of checked-in manifests this mode renders."""
    return [directory, directory / GATEWAY_FOLDER] if settings.route == "gateway" else [directory]


def where(settings: Settings) -> str:
    """Where a person opens the UI: the public URL, or without a route how to reach it."""
    if settings.has_route:
        return f"{settings.public_url}/"
    return "no route (ROUTE=none): open the UI with `inv ui`"


def wanted(obj: dict, settings: Settings) -> bool:
    """Whether a checked-in object belongs in this mode's render: every route but the chosen one is left out."""
    return obj["kind"] not in ROUTE_KINDS or obj["kind"] == ROUTE_KIND[settings.route]


def render_route(obj: dict, settings: Settings) -> None:
    """The Ingress's class, host and TLS; or the HTTPRoute's Gateway and host."""
    spec = obj["spec"]
    if obj["kind"] == "Ingress":
        spec["ingressClassName"] = settings.ingress_class
        for rule in spec["rules"]:
            rule["host"] = settings.public_host
        if settings.tls_secret:
            spec["tls"] = [{"hosts": [settings.public_host], "secretName": settings.tls_secret}]
        return
    for parent in spec["parentRefs"]:
        parent["name"] = settings.gateway_name
        parent["namespace"] = settings.gateway_parent_namespace
        if settings.gateway_listener:
            parent["sectionName"] = settings.gateway_listener
    spec["hostnames"] = [settings.public_host]


def admit_route(policy_spec: dict, settings: Settings) -> None:
    """A NetworkPolicy's namespace peers become the route's data plane namespace, or go when there is no route.

    A rule left without peers goes too: a rule with no `from` would admit every source.
    """
    namespace = settings.route_namespace
    rules = []
    for rule in policy_spec.get("ingress", []):
        if "from" in rule:
            rule["from"] = [peer for peer in rule["from"] if namespace is not None or "namespaceSelector" not in peer]
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] = namespace
            if not rule["from"]:
                continue
        rules.append(rule)
    if "ingress" in policy_spec:
        policy_spec["ingress"] = rules
