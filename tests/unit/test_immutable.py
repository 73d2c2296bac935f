"""The changes the API server refuses in place, found from the live and the rendered object alone."""

import copy

from kit.immutable import refused_changes
from kit.manifests import find
from tests.rendering import render

MANAGER = "prefect-kit"


def live_from(rendered, *, owned=(), **spec_defaults):
    """The object as a real server stores it: the applied fields, the server's defaults, and managedFields."""
    live = copy.deepcopy(rendered)
    live["spec"].update(spec_defaults)
    live["metadata"]["managedFields"] = [{"manager": MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
                                          "fieldsV1": {"f:spec": {f"f:{key}": {} for key in owned}}}]
    return live


def server():
    return find(render(), "StatefulSet", "prefect-server")


def test_an_unchanged_render_is_no_refused_change_whatever_the_server_defaulted():
    rendered = server()
    live = live_from(rendered, owned=rendered["spec"], revisionHistoryLimit=10,
                     persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": "Retain"})
    live["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = "Filesystem"
    assert refused_changes(live, rendered, MANAGER) == []


def test_a_new_pod_management_policy_is_refused_even_where_the_old_one_was_a_default():
    rendered = server()
    older = copy.deepcopy(rendered)
    del older["spec"]["podManagementPolicy"]
    live = live_from(older, owned=older["spec"], podManagementPolicy="OrderedReady")
    assert refused_changes(live, rendered, MANAGER) == ['spec.podManagementPolicy: "OrderedReady" -> "Parallel"']


def test_a_field_the_kit_set_before_and_now_leaves_out_is_a_change_too():
    rendered = server()
    live = live_from(rendered, owned=rendered["spec"])
    del rendered["spec"]["podManagementPolicy"]
    assert refused_changes(live, rendered, MANAGER) == ['spec.podManagementPolicy: "Parallel" -> (none)']


def test_claim_templates_are_compared_by_name():
    rendered = server()
    live = live_from(rendered, owned=rendered["spec"])
    rendered["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert refused_changes(live, rendered, MANAGER) == [
        'spec.volumeClaimTemplates[name="data"].spec.resources.requests.storage: "1Gi" -> "5Gi"']
    del rendered["spec"]["volumeClaimTemplates"]
    (removed,) = refused_changes(live, rendered, MANAGER)
    assert removed.startswith("spec.volumeClaimTemplates: [") and removed.endswith("-> (none)")


def test_a_statefulsets_template_replicas_and_strategy_change_in_place():
    rendered = server()
    live = live_from(rendered, owned=rendered["spec"])
    rendered["spec"]["replicas"] = 2
    rendered["spec"]["template"]["spec"]["containers"][0]["image"] = "other:tag"
    rendered["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert refused_changes(live, rendered, MANAGER) == []


def test_a_deployment_selector_is_immutable_and_its_template_is_not():
    rendered = next(obj for obj in render() if obj["kind"] == "Deployment")
    live = live_from(rendered, owned=rendered["spec"])
    rendered["spec"]["template"]["spec"]["containers"][0]["image"] = "other:tag"
    assert refused_changes(live, rendered, MANAGER) == []
    rendered["spec"]["selector"]["matchLabels"]["tier"] = "new"
    assert refused_changes(live, rendered, MANAGER) == ['spec.selector.matchLabels.tier: (none) -> "new"']


def test_a_cluster_ip_the_server_allocated_is_left_alone():
    rendered = find(render(), "Service", "prefect-server")
    live = live_from(rendered, owned=rendered["spec"], clusterIP="10.96.0.12", clusterIPs=["10.96.0.12"])
    assert refused_changes(live, rendered, MANAGER) == []
    headless = find(render(), "Service", "prefect-server-headless")
    live = live_from(headless, owned=headless["spec"])
    live["spec"]["clusterIP"] = "10.96.0.13"
    assert refused_changes(live, headless, MANAGER) == ['spec.clusterIP: "10.96.0.13" -> "None"']
