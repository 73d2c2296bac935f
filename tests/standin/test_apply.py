"""Server-side apply and field ownership, through the real client, against what a real API server answers.

The list-merge tests are the ones a stand-in with atomic lists would fail: two managers owning different entries
of containers and env, a conflict on one entry's field, an applier dropping only its own entry.
"""

import pytest
from kubernetes import client
from kubernetes.dynamic import exceptions as errors

from tests.standin.samples import MANAGER, NS, apply, deployment, first_event, resource, secret, status_of

WORKER = "prefect-worker-prod-main"


def with_containers(*containers):
    body = deployment()
    body["spec"]["template"]["spec"]["containers"] = list(containers)
    return body


def owned(obj, manager):
    """The FieldsV1 tree a manager owns in a stored object."""
    entries = obj["metadata"]["managedFields"] if isinstance(obj, dict) else obj.to_dict()["metadata"]["managedFields"]
    return next(e["fieldsV1"] for e in entries if e["manager"] == manager)


def containers_of(obj):
    return (obj if isinstance(obj, dict) else obj.to_dict())["spec"]["template"]["spec"]["containers"]


def test_apply_creates_then_an_identical_apply_changes_nothing(fakeapi, dyn, namespace):
    created = apply(dyn, deployment())
    again = apply(dyn, deployment())
    assert [r.status for r in fakeapi.requests if r.method == "PATCH"] == [201, 200]
    assert again.metadata.resourceVersion == created.metadata.resourceVersion
    assert again.metadata.generation == created.metadata.generation == 1
    # The first event after the created version is the next real change: the no-op left no trace.
    changed = apply(dyn, deployment(image="prefecthq/prefect:3.9.2-python3.12"))
    event = first_event(dyn, "Deployment", "apps/v1", resource_version=created.metadata.resourceVersion)
    assert (event["type"], event["object"].metadata.resourceVersion) == ("MODIFIED", changed.metadata.resourceVersion)


def test_apply_merges_changes_bumps_generation_on_spec_and_drops_fields_no_longer_applied(fakeapi, dyn, namespace):
    created = apply(dyn, deployment(labels={"app.kubernetes.io/part-of": "prefect", "old": "yes"}))
    updated = apply(dyn, deployment(image="prefecthq/prefect:3.9.2-python3.12"))
    assert updated.metadata.generation == 2
    assert int(updated.metadata.resourceVersion) > int(created.metadata.resourceVersion)
    assert updated.metadata.labels.to_dict() == {"app.kubernetes.io/part-of": "prefect"}
    assert updated.spec.template.spec.containers[0].image.endswith("3.9.2-python3.12")
    relabelled = apply(dyn, deployment(image="prefecthq/prefect:3.9.2-python3.12", labels={"new": "yes"}))
    assert relabelled.metadata.generation == 2  # metadata only: the spec did not change


def test_status_is_kept_from_the_server_and_set_only_by_tests(fakeapi, dyn, namespace):
    body = deployment()
    apply(dyn, body)
    fakeapi.set_status("Deployment", NS, body["metadata"]["name"], {"observedGeneration": 1, "replicas": 1})
    applied = apply(dyn, {**body, "status": {"replicas": 7}})
    assert applied.status.replicas == 1


def test_apply_without_field_manager_is_invalid(dyn, namespace):
    kind = resource(dyn, "Deployment", "apps/v1")
    with pytest.raises(errors.UnprocessibleEntityError) as raised:
        dyn.server_side_apply(kind, body=deployment())
    assert status_of(raised.value)["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')


def test_an_object_read_back_cannot_be_applied_as_it_is(dyn, namespace):
    stored = apply(dyn, deployment()).to_dict()
    with pytest.raises(errors.BadRequestError) as raised:
        apply(dyn, stored)
    assert status_of(raised.value)["message"] == "metadata.managedFields must be nil"


def test_a_patch_with_a_content_type_no_patch_accepts_is_415(dyn, namespace):
    apply(dyn, deployment())
    kind = resource(dyn, "Deployment", "apps/v1")
    with pytest.raises(errors.DynamicApiError) as raised:
        dyn.patch(kind, body=deployment(), content_type="application/json")
    assert raised.value.status == 415


def test_an_applied_field_the_schema_does_not_declare_fails_as_for_real(dyn, namespace):
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(errors.InternalServerError) as raised:
        apply(dyn, body)
    # Real: structured-merge-diff cannot type the patch, and the plain error becomes a 500 without a reason.
    assert status_of(raised.value)["message"] == (
        f"failed to create typed patch object ({NS}/{WORKER}; apps/v1, Kind=Deployment): "
        '.spec.template.spec.containers[name="worker"].imagePulPolicy: field not declared in schema')


def test_duplicate_list_map_keys_cannot_be_applied(dyn, namespace):
    body = with_containers({"name": "worker", "image": "a:1", "env": [{"name": "X", "value": "1"},
                                                                      {"name": "X", "value": "2"}]})
    with pytest.raises(errors.InternalServerError) as raised:
        apply(dyn, body)
    # Real (kubernetes#121575): `.spec.template.spec.containers[name="c"].env: duplicate entries for key [name="FOO"]`.
    assert status_of(raised.value)["message"].endswith(
        '.spec.template.spec.containers[name="worker"].env: duplicate entries for key [name="X"]')


def test_a_field_owned_by_another_manager_conflicts_unless_forced(fakeapi, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.set_owner("Deployment", NS, WORKER, ".spec.replicas", "kubectl-client-side-apply")
    apply(dyn, deployment(replicas=1))  # same value: shared ownership, no conflict
    with pytest.raises(errors.ConflictError) as raised:
        apply(dyn, deployment(replicas=3))
    assert status_of(raised.value)["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas')
    forced = apply(dyn, deployment(replicas=3), force_conflicts=True)
    assert forced.spec.replicas == 3
    assert [m.manager for m in forced.metadata.managedFields] == [MANAGER]


def test_two_managers_own_different_entries_of_containers_and_env(fakeapi, dyn, namespace):
    apply(dyn, with_containers({"name": "worker", "image": "a:1", "env": [{"name": "X", "value": "1"}]}))
    both = apply(dyn, with_containers({"name": "sidecar", "image": "s:1"},
                                      {"name": "worker", "image": "a:1", "env": [{"name": "Y", "value": "2"}]}),
                 manager="mesh-injector").to_dict()
    assert [(c["name"], c.get("env")) for c in containers_of(both)] == [
        ("sidecar", None), ("worker", [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])]
    # The real FieldsV1 encoding: list-map entries by key, `.` for an entry that also has fields.
    mine = owned(both, MANAGER)["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert mine == {'k:{"name":"worker"}': {".": {}, "f:env": {'k:{"name":"X"}': {".": {}, "f:name": {}, "f:value": {}}},
                                            "f:image": {}, "f:name": {}}}
    theirs = owned(both, "mesh-injector")["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert sorted(theirs) == ['k:{"name":"sidecar"}', 'k:{"name":"worker"}']
    assert list(theirs['k:{"name":"worker"}']["f:env"]) == ['k:{"name":"Y"}']


def test_a_conflict_names_the_list_entry_and_force_takes_only_that_field(fakeapi, dyn, namespace):
    apply(dyn, with_containers({"name": "worker", "image": "a:1"}))
    apply(dyn, with_containers({"name": "sidecar", "image": "s:1"}), manager="mesh-injector")
    with pytest.raises(errors.ConflictError) as raised:
        apply(dyn, with_containers({"name": "worker", "image": "a:2"}, {"name": "sidecar", "image": "s:1"}),
              manager="mesh-injector")
    # Real: the path of the one field in the one entry, in structured-merge-diff's syntax.
    assert status_of(raised.value)["message"] == (
        'Apply failed with 1 conflict: conflict with "prefect-kit": .spec.template.spec.containers[name="worker"].image')
    assert status_of(raised.value)["details"]["causes"] == [{
        "reason": "FieldManagerConflict", "message": 'conflict with "prefect-kit"',
        "field": '.spec.template.spec.containers[name="worker"].image'}]
    forced = apply(dyn, with_containers({"name": "worker", "image": "a:2"}, {"name": "sidecar", "image": "s:1"}),
                   manager="mesh-injector", force_conflicts=True).to_dict()
    mine = owned(forced, MANAGER)["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"worker"}']
    assert mine == {".": {}, "f:name": {}}  # the image went to the forcing manager; the entry stays shared


def test_an_applier_dropping_its_entry_removes_only_that_entry(fakeapi, dyn, namespace):
    apply(dyn, with_containers({"name": "worker", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
                               {"name": "helper", "image": "h:1"}))
    apply(dyn, with_containers({"name": "worker", "image": "a:1", "env": [{"name": "Y", "value": "2"}]},
                               {"name": "sidecar", "image": "s:1"}), manager="mesh-injector")
    dropped = apply(dyn, with_containers({"name": "worker", "image": "a:1"}))
    # Real: X and helper were only prefect-kit's, so they go; Y and sidecar are mesh-injector's, so they stay.
    assert [(c["name"], c.get("env")) for c in containers_of(dropped)] == [
        ("worker", [{"name": "Y", "value": "2"}]), ("sidecar", None)]


def test_atomic_lists_are_owned_and_replaced_whole(fakeapi, dyn, namespace):
    apply(dyn, with_containers({"name": "worker", "image": "a:1", "args": ["prefect", "worker", "start"]}))
    with pytest.raises(errors.ConflictError) as raised:
        apply(dyn, with_containers({"name": "worker", "image": "a:1", "args": ["sleep", "1"]}), manager="debugger")
    # args is `x-kubernetes-list-type: atomic`: one field, whole.
    assert status_of(raised.value)["message"].endswith('.spec.template.spec.containers[name="worker"].args')
    mine = owned(apply(dyn, with_containers({"name": "worker", "image": "a:1", "args": ["prefect"]})), MANAGER)
    assert "f:args" in mine["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"worker"}']


def test_sets_are_owned_value_by_value(dyn, namespace):
    body = secret()
    body["metadata"]["finalizers"] = ["example.com/keep"]
    stored = apply(dyn, body)
    # metadata.finalizers is `x-kubernetes-list-type: set`: its entries are `v:` paths.
    assert owned(stored, MANAGER)["f:metadata"]["f:finalizers"] == {'v:"example.com/keep"': {}}


def test_set_owner_takes_one_list_entry_field(fakeapi, dyn, namespace):
    apply(dyn, with_containers({"name": "worker", "image": "a:1"}))
    fakeapi.set_owner("Deployment", NS, WORKER, '.spec.template.spec.containers[name="worker"].image', "kubectl-edit")
    with pytest.raises(errors.ConflictError) as raised:
        apply(dyn, with_containers({"name": "worker", "image": "a:2"}))
    assert status_of(raised.value)["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: '
        '.spec.template.spec.containers[name="worker"].image')


def test_defaulted_fields_belong_to_no_applier_but_to_a_creator(fakeapi, dyn, api_client, namespace):
    applied = apply(dyn, deployment()).to_dict()
    assert applied["spec"]["revisionHistoryLimit"] == 10
    assert "f:revisionHistoryLimit" not in owned(applied, MANAGER)["f:spec"]
    created = client.AppsV1Api(api_client).create_namespaced_deployment(
        NS, deployment(name="created"), field_manager="kubectl-create")
    # Real: an Update (create) owns what it changed, the defaults included (kubectl create shows them so).
    creator = created.metadata.managed_fields[0]
    assert (creator.manager, creator.operation) == ("kubectl-create", "Update")
    assert "f:revisionHistoryLimit" in creator.fields_v1["f:spec"]


def test_a_merge_patch_by_another_manager_survives_the_next_apply(dyn, namespace):
    apply(dyn, deployment())
    restart = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}
    patched = dyn.patch(resource(dyn, "Deployment", "apps/v1"), body=restart, name=WORKER,
                        namespace=NS, field_manager="kubectl-rollout")
    assert patched.metadata.generation == 2
    reapplied = apply(dyn, deployment())
    assert reapplied.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] == "now"
    assert reapplied.metadata.resourceVersion == patched.metadata.resourceVersion


def test_dry_run_answers_the_would_be_object_and_stores_nothing(fakeapi, dyn, namespace):
    answered = apply(dyn, deployment(), dry_run="All")
    assert answered.metadata.name == WORKER
    assert fakeapi.objects("Deployment") == []
    stored = apply(dyn, deployment())
    would_be = apply(dyn, deployment(image="other:1"), dry_run="All")
    assert would_be.spec.template.spec.containers[0].image == "other:1"
    assert fakeapi.get("Deployment", NS, WORKER)["metadata"]["resourceVersion"] == (
        stored.metadata.resourceVersion)


def test_managed_fields_are_sorted_as_the_real_server_sorts_them(fakeapi, dyn, namespace):
    apply(dyn, deployment())
    fakeapi.set_owner("Deployment", NS, WORKER, ".spec.replicas", "kubectl-edit")
    apply(dyn, deployment(labels={"app.kubernetes.io/part-of": "prefect", "team": "data"}), manager="labeller")
    entries = fakeapi.get("Deployment", NS, WORKER)["metadata"]["managedFields"]
    # Real (sortEncodedManagedFields): by operation first, Apply before Update; then time and manager.
    assert [e["operation"] for e in entries] == ["Apply", "Apply", "Update"]
    assert {e["manager"] for e in entries[:2]} == {MANAGER, "labeller"}
