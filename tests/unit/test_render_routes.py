"""Rendered-manifest tests of the three route modes (ROUTE=ingress|gateway|none) and the server NetworkPolicy
that follows the route; the HTTPRoute against the official Gateway API v1.6.1 CRD schema."""

import functools
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kit import kinds, manifests
from kit.manifests import find
from tests.rendering import render

GATEWAY = {"ROUTE": "gateway", "GATEWAY_NAME": "shared-gateway"}
MODES = {"ingress": {}, "ingress-tls": {"TLS_SECRET": "prefect-tls"}, "gateway": GATEWAY,
         "gateway-listener": {**GATEWAY, "GATEWAY_NAMESPACE": "gateway-system", "GATEWAY_LISTENER": "https"},
         "none": {"ROUTE": "none"}}
CRD = Path(__file__).parent.parent / "schemas" / "gateway-api-v1.6.1" / "httproutes.yaml"
# The kit's workers and flow-run pods: prefect-kubernetes gives a flow-run pod its deployment's name label.
WORKLOADS = {"app.kubernetes.io/part-of": "prefect"}


def routes(objects):
    return [obj for obj in objects if obj["kind"] in kinds.ROUTE_KINDS]


def server_policy_rule(objects):
    (rule,) = find(objects, "NetworkPolicy", "prefect-server")["spec"]["ingress"]
    return rule


@pytest.mark.parametrize("overrides", MODES.values(), ids=MODES.keys())
def test_each_mode_renders_at_most_one_route_and_no_controller_annotation(overrides):
    objects = render(**overrides)
    expected = {"ingress": ["Ingress"], "gateway": ["HTTPRoute"], "none": []}[overrides.get("ROUTE", "ingress")]
    assert [obj["kind"] for obj in routes(objects)] == expected
    assert "nginx.ingress.kubernetes.io" not in manifests.to_yaml(objects, redact=False)


def test_no_checked_in_file_carries_a_controller_annotation():
    texts = [path.read_text() for path in manifests.MANIFEST_DIR.rglob("*.yaml")]
    assert texts and not [text for text in texts if "nginx.ingress.kubernetes.io" in text]


def test_ingress_has_the_class_the_host_and_one_path_to_the_proxys_service_port():
    (ingress,) = routes(render(PUBLIC_HOST="flows.example.org", INGRESS_CLASS="traefik"))
    assert ingress["spec"]["ingressClassName"] == "traefik"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "flows.example.org"
    assert rule["http"]["paths"] == [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "prefect-server", "port": {"name": "http"}}}}]
    assert "tls" not in ingress["spec"] and "annotations" not in ingress["metadata"]


def test_tls_secret_adds_tls_to_the_ingress():
    objects = render(TLS_SECRET="prefect-tls")
    (ingress,) = routes(objects)
    assert ingress["spec"]["tls"] == [{"hosts": ["prefect.company.local"], "secretName": "prefect-tls"}]


def test_httproute_attaches_to_the_gateway_with_the_public_host():
    (route,) = routes(render(**MODES["gateway-listener"], PUBLIC_HOST="flows.example.org"))
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "shared-gateway", "namespace": "gateway-system",
                                            "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["flows.example.org"]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "prefect-server", "port": 4200}]


def test_httproute_without_a_listener_or_namespace_uses_every_listener_of_the_gateway_in_its_own_namespace():
    (route,) = routes(render(**GATEWAY, NAMESPACE="data-team"))
    (parent,) = route["spec"]["parentRefs"]
    assert parent["namespace"] == "data-team" and "sectionName" not in parent


def test_httproute_backend_is_the_service_port_that_targets_the_proxy():
    objects = render(**GATEWAY)
    (route,) = routes(objects)
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    service = find(objects, "Service", backend["name"])
    (port,) = [port for port in service["spec"]["ports"] if port["port"] == backend["port"]]
    assert port["targetPort"] == "http"


@pytest.mark.parametrize("overrides, url", [
    ({}, "http://prefect.company.local"), ({"TLS_SECRET": "prefect-tls"}, "https://prefect.company.local"),
    (GATEWAY, "https://prefect.company.local"), ({**GATEWAY, "GATEWAY_HTTPS": "false"}, "http://prefect.company.local"),
])
def test_public_url_has_the_scheme_the_route_serves(overrides, url):
    from tests.rendering import make_settings

    assert make_settings(**overrides).public_url == url


@pytest.mark.parametrize("overrides, namespace", [
    ({"INGRESS_NAMESPACE": "traefik"}, "traefik"),
    (GATEWAY, "prefect"),
    ({**GATEWAY, "GATEWAY_NAMESPACE": "gateway-system"}, "gateway-system"),
    ({**GATEWAY, "GATEWAY_NAMESPACE": "gateway-system", "GATEWAY_DATAPLANE_NAMESPACE": "envoy-gateway-system"},
     "envoy-gateway-system"),
])
def test_server_admits_the_routes_data_plane_and_the_kits_pods_on_the_proxy_port_only(overrides, namespace):
    rule = server_policy_rule(render(**overrides))
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        {"podSelector": {"matchLabels": WORKLOADS, "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": ["worker", "flow-run"]}]}},
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_without_a_route_only_the_kits_pods_reach_the_server():
    (peer,) = server_policy_rule(render(ROUTE="none"))["from"]
    assert set(peer) == {"podSelector"}


def test_admitted_port_is_the_proxys_and_never_prefects():
    """NetworkPolicy names a port by the pod's container port name: it must resolve to the proxy alone."""
    objects = render()
    pod = find(objects, "StatefulSet", "prefect-server")["spec"]["template"]["spec"]
    by_name = {port["name"]: (container["name"], port["containerPort"])
               for container in pod["containers"] for port in container["ports"]}
    admitted = {by_name[port["port"]] for port in server_policy_rule(objects)["ports"]}
    assert admitted == {("proxy", 8080)}
    assert ("server", 4200) in by_name.values()


def test_the_workers_stay_closed_whatever_the_route():
    for overrides in MODES.values():
        assert find(render(**overrides), "NetworkPolicy", "prefect-worker")["spec"]["ingress"] == []


@pytest.mark.parametrize("overrides", MODES.values(), ids=MODES.keys())
def test_every_core_object_validates_strictly_in_every_mode(overrides):
    for obj in render(**overrides):
        if obj["kind"] != "HTTPRoute":
            kubernetes_validate.validate(obj, "1.29", strict=True)


@functools.cache
def httproute_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (served,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return strict(served["schema"]["openAPIV3Schema"])


def strict(schema):
    """The CRD's schema with unknown fields refused, as kubectl's --validate=strict does for a CRD."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def cel_problems(route: dict) -> list[str]:
    """The CRD's CEL rules (x-kubernetes-validations) that the kit's HTTPRoute could break: only an API server
    evaluates them, so they are checked here by hand."""
    problems = []
    parents = [(p.get("group"), p.get("kind"), p["name"], p.get("namespace")) for p in route["spec"]["parentRefs"]]
    if len(set(parents)) < len(parents) and not all(p.get("sectionName") for p in route["spec"]["parentRefs"]):
        problems.append("sectionName must be specified when parentRefs includes 2 or more references to the same parent")
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches", []):
            path = match.get("path", {})
            if path.get("type") in ("Exact", "PathPrefix"):
                value = path["value"]
                if not value.startswith("/"):
                    problems.append(f"{value!r}: value must be an absolute path and start with '/'")
                for part in ("//", "/./", "/../", "%2f", "%2F", "#"):
                    if part in value:
                        problems.append(f"{value!r}: must not contain {part!r}")
                if value.endswith(("/..", "/.")):
                    problems.append(f"{value!r}: must not end with '/..' or '/.'")
                if not re.fullmatch(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+", value):
                    problems.append(f"{value!r}: must only contain valid characters")
        for backend in rule.get("backendRefs", []):
            if not backend.get("group") and backend.get("kind", "Service") == "Service" and "port" not in backend:
                problems.append(f"{backend['name']}: Must have port for Service reference")
    return problems


@pytest.mark.parametrize("overrides", [MODES["gateway"], MODES["gateway-listener"]], ids=["gateway", "listener"])
def test_httproute_validates_against_the_gateway_api_crd_and_its_cel_rules(overrides):
    (route,) = routes(render(**overrides))
    jsonschema.validate(route, httproute_schema())
    assert cel_problems(route) == []


def test_the_crd_schema_and_the_cel_checks_catch_what_a_real_api_server_refused():
    """Seen on a real 1.36 API server with these CRDs: a host name with a scheme, a PathPrefix without '/'."""
    (route,) = routes(render(**GATEWAY))
    route["spec"]["hostnames"] = ["https://prefect.company.local"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(route, httproute_schema())
    (route,) = routes(render(**GATEWAY))
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = "api"
    route["spec"]["rules"][0]["backendRefs"][0].pop("port")
    assert cel_problems(route) == ["'api': value must be an absolute path and start with '/'",
                                   "prefect-server: Must have port for Service reference"]
    (route,) = routes(render(**GATEWAY))
    route["spec"]["parentRefs"][0]["sectionNmae"] = "https"
    with pytest.raises(jsonschema.ValidationError, match="sectionNmae"):
        jsonschema.validate(route, httproute_schema())


def test_plain_kubectl_apply_of_manifests_leaves_the_httproute_out_and_its_own_folder_applies_as_it_is():
    """`kubectl apply -f manifests/` (not recursive) must work on a cluster without Gateway API."""
    assert "HTTPRoute" not in {obj["kind"] for obj in manifests.load()}
    (route,) = manifests.load(manifests.MANIFEST_DIR / "gateway")
    jsonschema.validate(route, httproute_schema())
    assert cel_problems(route) == []
