"""What an apply did, and what a dry run would change, with Secret values never shown (plain dicts)."""

import pytest

from kit import kinds, registry, release
from kit.cluster import changes, connection_reason, outcome
from kit.errors import UserError
from kit.rollout import image_reference
from tests.rendering import make_settings, render


def secret(value, version="7"):
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "prefect-config", "resourceVersion": version, "managedFields": [{"manager": "x"}]},
            "data": {"auth-string": value}}


def test_created_wins():
    assert outcome(True, None, secret("YQ==")) == "created"


def test_same_content_is_unchanged():
    assert outcome(False, secret("YQ==", "7"), secret("YQ==", "7")) == "unchanged"


def test_changed_content_is_configured():
    assert outcome(False, secret("YQ==", "7"), secret("Yg==", "8")) == "configured"


def test_a_status_write_alone_is_no_change_of_ours():
    before = {"kind": "Deployment", "metadata": {"name": "w", "resourceVersion": "7"}, "status": {"replicas": 1}}
    after = {"kind": "Deployment", "metadata": {"name": "w", "resourceVersion": "9"}, "status": {"replicas": 2}}
    assert outcome(False, before, after) == "unchanged"


def test_dry_run_answer_with_the_old_version_but_new_content_is_configured():
    assert outcome(False, secret("YQ==", "7"), secret("Yg==", "7")) == "configured"


def test_an_object_the_kit_had_not_labelled_yet_is_configured():
    assert outcome(False, None, secret("YQ==")) == "configured"


def test_secret_changes_never_show_values():
    found = changes(secret("c2VjcmV0MQ=="), secret("c2VjcmV0Mg==", "8"))
    assert found == ["data.auth-string: changed (value hidden)"]


def test_changes_ignore_server_bookkeeping_and_status():
    before = {"kind": "Deployment", "metadata": {"name": "w", "generation": 1, "resourceVersion": "1"},
              "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    after = {"kind": "Deployment", "metadata": {"name": "w", "generation": 2, "resourceVersion": "2"},
             "spec": {"replicas": 1}, "status": {"readyReplicas": 0}}
    assert changes(before, after) == []


def test_changes_name_the_field_and_both_values():
    before = {"kind": "Deployment", "metadata": {"name": "w"},
              "spec": {"template": {"spec": {"containers": [{"image": "r/x:1"}]}}}}
    after = {"kind": "Deployment", "metadata": {"name": "w", "labels": {"a": "b"}},
             "spec": {"template": {"spec": {"containers": [{"image": "r/x:2"}]}}}}
    assert changes(before, after) == [
        'metadata.labels: added {"a": "b"}',
        'spec.template.spec.containers[0].image: "r/x:1" -> "r/x:2"',
    ]


def test_every_rendered_kind_is_one_prune_and_destroy_know():
    rendered = {(obj["apiVersion"], obj["kind"]) for obj in render(REGISTRY_USER="robot", REGISTRY_PASSWORD="pw")}
    assert rendered - {("v1", "Namespace")} <= {(kind.api_version, kind.name) for kind in kinds.NAMESPACED}


def test_connection_reason_is_the_operating_system_message():
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    assert connection_reason(MaxRetryError(None, "/version", refused)) == "Connection refused"


def write_record(tmp_path, monkeypatch, **build):
    monkeypatch.setattr(release, "commit_tag", lambda: "abc1234")
    record = tmp_path / "build.json"
    if build:
        release.write_record(release.Build(**build), record)
    return record


@pytest.fixture
def settings():
    return make_settings(REGISTRY="r:5000", IMAGE_NAME="p")


def test_rollout_image_is_the_recorded_push_by_digest(tmp_path, monkeypatch, settings):
    record = write_record(tmp_path, monkeypatch, repository="r:5000/p", tag="abc1234", digest="sha256:" + "1" * 64)
    assert image_reference(settings, None, record) == "r:5000/p:abc1234@sha256:" + "1" * 64


def test_rollout_without_a_build_says_to_build_and_push(tmp_path, monkeypatch, settings):
    record = write_record(tmp_path, monkeypatch)
    with pytest.raises(UserError, match=r"run `inv build push` first, or pass --tag"):
        image_reference(settings, None, record)


def test_rollout_of_a_build_that_was_not_pushed_says_to_push(tmp_path, monkeypatch, settings):
    record = write_record(tmp_path, monkeypatch, repository="r:5000/p", tag="abc1234")
    with pytest.raises(UserError, match=r"run `inv push`"):
        image_reference(settings, None, record)


def test_rollout_with_a_tag_pins_it_to_the_digest_the_registry_answers(tmp_path, monkeypatch, settings):
    record = write_record(tmp_path, monkeypatch)
    asked = []
    monkeypatch.setattr(registry, "digest", lambda s, tag: asked.append(tag) or "sha256:" + "2" * 64)
    assert image_reference(settings, "v2", record) == "r:5000/p:v2@sha256:" + "2" * 64
    assert asked == ["v2"]
    # Already pinned, or pushed from this machine: the registry is not asked.
    assert image_reference(settings, "v3@sha256:" + "3" * 64, record) == "r:5000/p:v3@sha256:" + "3" * 64
    assert asked == ["v2"]
