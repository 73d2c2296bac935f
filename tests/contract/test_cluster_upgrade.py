"""Upgrades that cannot wedge: a live install of an earlier release (its own render, applied as that release
applied it) rolled forward with the current kit, against the stand-in, which refuses immutable changes with the
real server's 422. A change Kubernetes cannot make in place is refused before anything is applied, naming the
field; `--recreate` deletes and recreates the workload and the data claim stays, mounted by the new pod."""

from pathlib import Path

import pytest
import yaml

from kit import cluster, rollout
from kit.errors import UserError
from tests.contract.clusterkit import NS, Lines, discovery_cache, settings  # noqa: F401

RELEASES = Path(__file__).parent / "releases"
CLAIM = "data-prefect-server-0"


def install(fakeapi, settings, release):
    """The objects of an earlier release's `inv render`, server-side applied by the kit's field manager as that
    release did it, its workloads made ready (the StatefulSet's claim included)."""
    objects = [obj for obj in yaml.safe_load_all((RELEASES / release).read_text()) if obj]
    with cluster.connect(settings) as k:
        for obj in objects:
            k.apply(obj)
    for obj in objects:
        if obj["kind"] in ("StatefulSet", "Deployment"):
            fakeapi.make_ready(obj["kind"], NS, obj["metadata"]["name"])
    return fakeapi.get("PersistentVolumeClaim", NS, CLAIM)


def test_the_release_before_this_round_rolls_forward_with_no_change_refused(fakeapi, settings):
    claim = install(fakeapi, settings, "cb26220.yaml")
    fakeapi.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v1", timeout=20, out=lines)
    assert not [line for line in lines if "recreated" in line]
    assert "statefulset/prefect-server configured" in lines
    assert fakeapi.get("PersistentVolumeClaim", NS, CLAIM)["metadata"]["uid"] == claim["metadata"]["uid"]


def test_a_change_kubernetes_refuses_in_place_is_one_line_and_nothing_is_applied(fakeapi, settings):
    install(fakeapi, settings, "before-344e545.yaml")
    fakeapi.clear_requests()
    with pytest.raises(UserError) as raised:
        rollout.rollout(settings, tag="v1", timeout=20, out=Lines())
    # The real server would answer the apply: 422 StatefulSet.apps "prefect-server" is invalid: spec: Forbidden:
    # updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy',
    # 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden
    assert raised.value.problems == (
        'statefulset/prefect-server: spec.podManagementPolicy: "OrderedReady" -> "Parallel": Kubernetes cannot '
        "change this in place; `inv rollout --recreate` deletes and recreates it, keeping its data volume",)
    assert fakeapi.writes() == []


def test_recreate_keeps_the_data_claim_and_the_new_pod_mounts_it(fakeapi, settings):
    claim = install(fakeapi, settings, "before-344e545.yaml")
    fakeapi.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v1", recreate=True, timeout=20, out=lines)

    assert lines.index('statefulset/prefect-server deleted to be recreated (spec.podManagementPolicy: "OrderedReady" '
                       '-> "Parallel"; its pods and claims kept)') < lines.index("statefulset/prefect-server created")
    assert fakeapi.get("StatefulSet", NS, "prefect-server")["spec"]["podManagementPolicy"] == "Parallel"
    assert fakeapi.get("PersistentVolumeClaim", NS, CLAIM)["metadata"]["uid"] == claim["metadata"]["uid"]
    pod = fakeapi.get("Pod", NS, "prefect-server-0")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}} in pod["spec"]["volumes"]
    assert lines[-1] == "ready: http://prefect.company.local/"


def test_a_dry_run_says_what_would_be_recreated_and_changes_nothing(fakeapi, settings):
    install(fakeapi, settings, "before-344e545.yaml")
    fakeapi.clear_requests()
    lines = Lines()
    rollout.rollout(settings, tag="v1", recreate=True, dry_run=True, out=lines)
    assert 'statefulset/prefect-server would be deleted and recreated (spec.podManagementPolicy: "OrderedReady" -> ' \
           '"Parallel")' in lines
    assert all(write.query.get("dryRun") == "All" for write in fakeapi.writes())
