"""Routes through the real client against the stand-in API server: the upgrade from the annotation-based layout,
and a stale route removed by every rollout when ROUTE changes."""

import functools
import subprocess

import pytest

from kit import ROOT, manifests, rollout, workers
from kit.errors import UserError
from tests.contract.clusterkit import NS, WORKERS, Lines, discovery_cache  # noqa: F401
from tests.rendering import make_settings

# The last commit of the annotation-based layout: two ingress-nginx Ingresses, prefect-api and prefect-ui
# (the login in nginx.ingress.kubernetes.io/auth-* annotations), and no proxy in the server pod.
ANNOTATION_LAYOUT = "6044767"


@pytest.fixture
def annotation_layout(tmp_path):
    """manifests/ as that commit had it, rendered by today's kit exactly as that layout was."""
    folder = tmp_path / "manifests-before"
    folder.mkdir()
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{ANNOTATION_LAYOUT}:manifests"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.fail(f"the upgrade test needs the git history of the kit ({ANNOTATION_LAYOUT}): {listed.stderr}")
    for name in listed.stdout.split():
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{ANNOTATION_LAYOUT}:manifests/{name}"],
                               capture_output=True, text=True, check=True)
        (folder / name).write_text(shown.stdout)
    return folder


def ingresses(api):
    return {obj["metadata"]["name"]: obj for obj in api.objects("Ingress", NS)}


def test_upgrade_from_the_annotation_layout_replaces_the_ingresses_and_restarts_only_the_server(
        fakeapi, annotation_layout, monkeypatch):
    settings = make_settings()
    fakeapi.controller(True)
    with monkeypatch.context() as before:
        before.setattr(manifests, "render", functools.partial(manifests.render, directory=annotation_layout))
        # That layout's workers were one checked-in Deployment per queue, and it had no pools to sync.
        before.setattr(workers, "expand", lambda objects, pools, namespace: objects)
        rollout.rollout(settings, tag="v1", timeout=10, pools=(), out=Lines())
    assert set(ingresses(fakeapi)) == {"prefect-api", "prefect-ui"}
    assert ingresses(fakeapi)["prefect-ui"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-type"]

    lines = Lines()
    rollout.rollout(settings, tag="v1", timeout=10, out=lines)

    assert "configmap/prefect-proxy created" in lines
    assert "statefulset/prefect-server configured" in lines
    # The Services keep their port named http, which now is the proxy's; the workers become the kubernetes
    # workers of config/pools.yaml, in place.
    assert {"service/prefect-server unchanged", "service/prefect-server-headless unchanged"} <= set(lines)
    assert [f"deployment/{name} configured" for name in WORKERS] == [l for l in lines if l.startswith("deployment/")]
    # The new route exists before the old ones go, so the host is never without one.
    created = lines.index("ingress/prefect-server created")
    assert created < lines.index("ingress/prefect-api pruned") and created < lines.index("ingress/prefect-ui pruned")
    assert list(ingresses(fakeapi)) == ["prefect-server"]
    assert "annotations" not in ingresses(fakeapi)["prefect-server"]["metadata"]
    containers = fakeapi.get("StatefulSet", NS, "prefect-server")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["server", "proxy"]
    assert lines[-1] == "ready: http://prefect.company.local/"

    again = Lines()
    rollout.rollout(settings, tag="v1", timeout=10, out=again)
    assert [line for line in again if line.endswith((" created", " configured", " pruned"))] == []


def test_a_route_the_render_no_longer_has_goes_without_prune_and_foreign_ones_stay(fakeapi):
    fakeapi.controller(True)
    rollout.rollout(make_settings(), tag="v1", timeout=10, out=Lines())
    foreign = fakeapi.put({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "metadata": {"name": "team-dashboard", "namespace": NS},
                           "spec": {"rules": [{"host": "dashboard.company.local"}]}})

    lines = Lines()
    rollout.rollout(make_settings(ROUTE="none"), tag="v1", timeout=10, out=lines)

    assert "ingress/prefect-server pruned" in lines
    assert list(ingresses(fakeapi)) == ["team-dashboard"] and ingresses(fakeapi)["team-dashboard"] == foreign
    assert lines[-1] == "ready: no route (ROUTE=none): open the UI with `inv ui`"


def test_a_dry_run_only_says_which_route_would_go(fakeapi):
    fakeapi.controller(True)
    rollout.rollout(make_settings(), tag="v1", timeout=10, out=Lines())
    lines = Lines()
    rollout.rollout(make_settings(ROUTE="none"), tag="v1", dry_run=True, out=lines)
    assert "ingress/prefect-server would be pruned (dry run)" in lines
    assert list(ingresses(fakeapi)) == ["prefect-server"]


def test_gateway_on_a_cluster_without_gateway_api_is_refused_before_anything_is_applied(fakeapi):
    with pytest.raises(UserError, match=r"ROUTE: this cluster does not serve HTTPRoute \(gateway.networking.k8s.io/v1\)"):
        rollout.rollout(make_settings(ROUTE="gateway", GATEWAY_NAME="shared"), tag="v1", timeout=10, out=Lines())
    assert fakeapi.writes() == []


def test_switching_between_ingress_and_gateway_replaces_the_route(fakeapi):
    fakeapi.serve_gateway_api(True)
    fakeapi.controller(True)
    rollout.rollout(make_settings(), tag="v1", timeout=10, out=Lines())
    gateway = make_settings(ROUTE="gateway", GATEWAY_NAME="shared", GATEWAY_NAMESPACE="gateway-system")

    lines = Lines()
    rollout.rollout(gateway, tag="v1", timeout=10, out=lines)
    assert lines.index("httproute/prefect-server created") < lines.index("ingress/prefect-server pruned")
    (route,) = fakeapi.objects("HTTPRoute", NS)
    assert route["spec"]["parentRefs"][0]["name"] == "shared"
    assert ingresses(fakeapi) == {}
    assert lines[-1] == "ready: https://prefect.company.local/"

    back = Lines()
    rollout.rollout(make_settings(), tag="v1", timeout=10, out=back)
    assert "httproute/prefect-server pruned" in back
    assert fakeapi.objects("HTTPRoute", NS) == []
