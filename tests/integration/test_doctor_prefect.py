"""`inv doctor`'s Prefect check against a real Prefect server, reached as the kit's tasks reach it when the public
URL does not answer: through the stand-in's real pods/portforward to the server pod. Up, a wrong auth string,
down, and no server yet."""

import dataclasses
from urllib.parse import urlsplit

import pytest

from kit import access, doctor, manifests
from kit.doctor import FAIL, LATER, OK
from tests.contract.clusterkit import NS, discovery_cache  # noqa: F401
from tests.rendering import IMAGE
from tests.services import free_port
from tests.standin.fixtures import fakeapi  # noqa: F401

POD = "prefect-server-0"


@pytest.fixture
def server_pod(fakeapi, kit_settings):
    """The rendered server, ready in the stand-in; its proxy port is forwarded by the test."""
    for obj in manifests.render(kit_settings, IMAGE):
        if obj["kind"] in ("Namespace", "Secret", "ConfigMap", "Service", "StatefulSet"):
            fakeapi.put(obj)
    fakeapi.make_ready("StatefulSet", NS, "prefect-server")
    return access.server_endpoint(manifests.load())[1]


def test_a_server_that_takes_the_auth_string_is_a_tick(fakeapi, server_pod, kit_settings, kit_server):
    fakeapi.forward(NS, POD, server_pod, urlsplit(kit_server.api_url).port)
    (finding,) = doctor.check_prefect(kit_settings)
    assert finding.mark == OK, finding.line()
    assert finding.text.startswith("Prefect 3.9.1 at through a port-forward to pod/prefect-server-0 (")
    assert finding.text.endswith("takes the auth string")


def test_another_password_than_the_servers_names_the_setting_and_the_fix(fakeapi, server_pod, kit_settings,
                                                                        kit_server):
    fakeapi.forward(NS, POD, server_pod, urlsplit(kit_server.api_url).port)
    wrong = dataclasses.replace(kit_settings, login_password="not-the-servers-password")
    (finding,) = doctor.check_prefect(wrong)
    assert finding.mark == FAIL and finding.subject == "LOGIN_PASSWORD"
    assert "(401): the server runs with another auth string; roll them out (`inv rollout`)" in finding.text
    assert "not-the-servers-password" not in finding.line()


def test_a_server_pod_whose_prefect_does_not_answer_is_a_failure(fakeapi, server_pod, kit_settings):
    fakeapi.forward(NS, POD, server_pod, free_port())
    (finding,) = doctor.check_prefect(kit_settings)
    assert finding.mark == FAIL and finding.subject == "Prefect API" and "does not answer" in finding.text


def test_no_server_yet_is_fine_before_a_first_rollout(fakeapi, kit_settings):
    (finding,) = doctor.check_prefect(kit_settings)
    assert finding.line() == "· Prefect API: no server running yet (fine before a first rollout)"
