"""The Gateway API kinds, served only while a test has "installed" their official v1.6.1 CRDs."""

import json

import pytest
from kubernetes.dynamic import exceptions as errors
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from tests.standin.samples import NS, apply, resource, status_of

GATEWAY_API = "gateway.networking.k8s.io/v1"


def route(hostname="prefect.company.local", path="/api"):
    return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": {"name": "prefect-api", "namespace": NS},
            "spec": {"parentRefs": [{"name": "shared-gateway", "namespace": "gateways"}],
                     "hostnames": [hostname],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "prefect-server", "port": 4200}]}]}}


def gateway(*listeners):
    return {"apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": {"name": "shared-gateway", "namespace": NS},
            "spec": {"gatewayClassName": "nginx", "listeners": list(listeners) or [
                {"name": "http", "protocol": "HTTP", "port": 80}]}}


def test_without_the_crds_there_is_no_gateway_api(fakeapi, dyn, namespace):
    groups = json.loads(dyn.request("get", "/apis", serialize=False).data)["groups"]
    assert "gateway.networking.k8s.io" not in [g["name"] for g in groups]
    with pytest.raises(ResourceNotFoundError):
        dyn.resources.get(api_version=GATEWAY_API, kind="HTTPRoute")
    with pytest.raises(errors.NotFoundError):
        dyn.request("get", f"/apis/{GATEWAY_API}/namespaces/{NS}/httproutes")


def test_installed_crds_serve_routes_with_their_schema_defaults(fakeapi, dyn, namespace):
    fakeapi.serve_gateway_api(True)
    stored = apply(dyn, route()).to_dict()["spec"]
    # The CRD's structural defaults, as a real API server applies them.
    assert stored["parentRefs"] == [{"name": "shared-gateway", "namespace": "gateways",
                                     "group": "gateway.networking.k8s.io", "kind": "Gateway"}]
    assert stored["rules"][0]["backendRefs"] == [{"name": "prefect-server", "port": 4200, "group": "",
                                                  "kind": "Service", "weight": 1}]
    assert apply(dyn, route()).metadata.resourceVersion == apply(dyn, route()).metadata.resourceVersion


def test_a_host_name_with_a_scheme_is_refused_by_the_schema(fakeapi, dyn, namespace):
    fakeapi.serve_gateway_api(True)
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        apply(dyn, route(hostname="http://prefect.company.local"))
    # Real (a real 1.36 server refused this): the CRD's pattern, in kube-openapi's words.
    pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    assert status_of(raised.value)["message"] == (
        'HTTPRoute.gateway.networking.k8s.io "prefect-api" is invalid: spec.hostnames[0]: Invalid value: '
        f'"http://prefect.company.local": spec.hostnames[0] in body should match \'{pattern}\'')


def test_a_path_prefix_without_its_slash_breaks_the_crds_rule(fakeapi, dyn, namespace):
    fakeapi.serve_gateway_api(True)
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        apply(dyn, route(path="api"))
    # Real (the CEL rule a real 1.36 server applied): the rule's message, the value's type as the value.
    assert status_of(raised.value)["message"] == (
        'HTTPRoute.gateway.networking.k8s.io "prefect-api" is invalid: spec.rules[0].matches[0].path: Invalid value: '
        "\"object\": value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']")


def test_a_service_backend_needs_its_port(fakeapi, dyn, namespace):
    fakeapi.serve_gateway_api(True)
    body = route()
    del body["spec"]["rules"][0]["backendRefs"][0]["port"]
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        apply(dyn, body)
    assert status_of(raised.value)["message"].endswith(
        'spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port for Service reference')


def test_gateway_listeners_follow_the_crds_rules(fakeapi, dyn, namespace):
    fakeapi.serve_gateway_api(True)
    http = {"name": "http", "protocol": "HTTP", "port": 80}
    assert apply(dyn, gateway(http)).spec.listeners[0].name == "http"
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        apply(dyn, gateway(http, {**http, "name": "again"}))
    # Real: the CRD's CEL rule on the list, the value's type as the value.
    assert status_of(raised.value)["message"] == (
        'Gateway.gateway.networking.k8s.io "shared-gateway" is invalid: spec.listeners: Invalid value: "array": '
        "Combination of port, protocol and hostname must be unique for each listener")
    twice = {**gateway(http, {**http, "port": 8080}), "metadata": {"name": "twice", "namespace": NS}}
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        dyn.create(resource(dyn, "Gateway", GATEWAY_API), body=twice, namespace=NS)  # an apply could not type it
    assert status_of(raised.value)["message"].endswith("Listener name must be unique within the Gateway")


def test_removing_the_crds_removes_their_objects_and_paths(fakeapi, dyn, namespace):
    fakeapi.serve_gateway_api(True)
    apply(dyn, route())
    fakeapi.serve_gateway_api(False)
    assert fakeapi.objects("HTTPRoute") == []
    with pytest.raises(errors.NotFoundError):
        dyn.request("get", f"/apis/{GATEWAY_API}/namespaces/{NS}/httproutes/prefect-api")
