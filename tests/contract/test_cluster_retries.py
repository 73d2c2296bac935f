"""The cluster edge under transient faults, through the real client against the stand-in: a 503 and a dropped
connection mid-apply are retried and the rollout ends right; past RETRY_DEADLINE one line; what another try cannot
fix (403, 422, an object the schema refuses) is tried once. `fakeapi.fail(prefix, 0)` carries a request out and
then drops the connection, so its answer is lost: the retry meets what the lost try did.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from kit import ROOT, backup, cluster, rollout
from kit.errors import UserError
from tests.contract.clusterkit import NS, WORKERS, Lines, deployed, discovery_cache, settings  # noqa: F401
from tests.rendering import IMAGE, env_text, make_settings

SECRET = f"/api/v1/namespaces/{NS}/secrets/prefect-config"
SERVER = f"/apis/apps/v1/namespaces/{NS}/statefulsets/prefect-server"
WORKER = f"/apis/apps/v1/namespaces/{NS}/deployments/{WORKERS[0]}"


def statuses(api, method, path):
    return [r.status for r in api.requests if (r.method, r.path) == (method, path)]


def test_a_rollout_meeting_503s_and_a_lost_apply_answer_still_ends_ready(fakeapi):
    fakeapi.controller(True)
    fakeapi.fail(SERVER, 503, times=2)
    fakeapi.fail(WORKER, 0)  # applied, then the connection is dropped: the kit never hears that it was
    lines = Lines()
    rollout.rollout(make_settings(RETRY_DEADLINE="10"), tag="v1", timeout=10, out=lines)

    assert lines[-1] == "ready: http://prefect.company.local/"
    assert statuses(fakeapi, "PATCH", SERVER) == [503, 503, 201]
    assert statuses(fakeapi, "PATCH", WORKER) == [0, 200], "applied again after the lost answer, changing nothing"
    assert f'deployment "{WORKERS[0]}" successfully rolled out' in lines
    assert [d["metadata"]["name"] for d in fakeapi.objects("Deployment", NS)] == sorted(WORKERS)


def test_a_dropped_connection_mid_wait_is_retried_once_the_server_answered(deployed, settings):
    deployed.controller(True)
    lines = Lines()
    lines.on(f"deployment/{WORKERS[1]} configured", lambda: (
        deployed.clear_requests(), deployed.fail(f"/apis/apps/v1/namespaces/{NS}/deployments", 0, times=2)))
    rollout.rollout(settings, tag="v2", timeout=10, out=lines)
    assert f'deployment "{WORKERS[1]}" successfully rolled out' in lines
    # The wait's list, dropped twice and then answered: urllib3 does not send it again by itself (the kit turns
    # that off), so the kit's pauses are the only ones.
    assert [r.status for r in deployed.requests if r.path.endswith("/deployments")][:3] == [0, 0, 200]


def test_past_the_deadline_a_503_is_one_line_naming_the_request(fakeapi):
    fakeapi.fail(SECRET, 503, times=1000)
    with pytest.raises(UserError) as raised:
        rollout.secrets(make_settings(RETRY_DEADLINE="1"), out=Lines())
    assert raised.value.problems == (
        f"KUBE_CONTEXT: the API server of context 'fakeapi' ({fakeapi.url}) kept failing on PATCH {SECRET} (HTTP 503: "
        "the server is currently unable to handle the request), retried for 1 s (RETRY_DEADLINE); check it (`kubectl "
        "get --raw /readyz`), then run this again",)
    assert len(statuses(fakeapi, "PATCH", SECRET)) > 1


def test_past_the_deadline_a_dropped_connection_is_one_line_through_inv(fakeapi, env_file):
    env_file(env_text(RETRY_DEADLINE="1"))
    fakeapi.fail(SECRET, 0, times=1000)
    done = subprocess.run([str(Path(sys.executable).parent / "inv"), "secrets"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (
        f"error: KUBE_CONTEXT: the API server of context 'fakeapi' ({fakeapi.url}) kept failing on PATCH {SECRET} "
        "(Remote end closed connection without response), retried for 1 s (RETRY_DEADLINE); check it (`kubectl get "
        "--raw /readyz`), then run this again\n")
    assert len(statuses(fakeapi, "PATCH", SECRET)) > 1
    assert fakeapi.get("Secret", NS, "prefect-config"), "each try was carried out; only the answers were lost"


def test_with_retry_deadline_0_the_first_503_is_the_error(fakeapi):
    fakeapi.fail(SECRET, 503)
    with pytest.raises(UserError, match=r"failed: the server is currently unable to handle the request; try again$"):
        rollout.secrets(make_settings(RETRY_DEADLINE="0"), out=Lines())
    assert statuses(fakeapi, "PATCH", SECRET) == [503]


def test_a_403_is_tried_once(fakeapi, settings):
    fakeapi.deny(403, SECRET)
    with pytest.raises(UserError, match=r"is not allowed to do this: .*cannot patch resource \"secrets\""):
        rollout.secrets(settings, out=Lines())
    assert statuses(fakeapi, "PATCH", SECRET) == [403]


def test_a_422_is_tried_once(fakeapi, settings):
    rollout.secrets(settings, out=Lines())
    invalid = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "namespace": NS,
                                                                     "labels": {"app": "not valid!"}}}
    with pytest.raises(UserError, match=r"^configmap/bad: the API server rejected it: "), \
            cluster.connect(settings) as k:
        k.apply(invalid)
    assert statuses(fakeapi, "PATCH", f"/api/v1/namespaces/{NS}/configmaps/bad") == [422]


def test_a_500_for_an_object_the_schema_does_not_know_is_tried_once(fakeapi, settings):
    from kit import manifests

    worker = next(obj for obj in manifests.render(settings, IMAGE) if obj["kind"] == "Deployment")
    worker["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    rollout.secrets(settings, out=Lines())
    with pytest.raises(UserError, match="failed to create typed patch object"), cluster.connect(settings) as k:
        k.apply(worker)
    assert statuses(fakeapi, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{worker['metadata']['name']}") == \
        [500]


def test_a_create_and_a_delete_whose_answers_were_lost_are_done_once(deployed, settings):
    pods = f"/api/v1/namespaces/{NS}/pods"
    pod = backup.restore_pod(deployed.get("StatefulSet", NS, "prefect-server"))
    name = pod["metadata"]["name"]
    deployed.fail(pods, 0)
    with cluster.connect(settings) as k:
        created = k.create(pod)
        assert created["metadata"]["name"] == name and created["metadata"]["uid"]
        # The retry met AlreadyExists: the pod the lost try made, read back rather than reported as a conflict.
        assert statuses(deployed, "POST", pods) == [0, 409]
        assert statuses(deployed, "GET", f"{pods}/{name}") == [200]
        deployed.fail(f"{pods}/{name}", 0)
        assert k.delete("v1", "Pod", name) is True, "gone by the try whose answer was lost"
    assert statuses(deployed, "DELETE", f"{pods}/{name}") == [0, 404]
    assert deployed.get("Pod", NS, name) is None
