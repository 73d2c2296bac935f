"""`inv history` and `inv rollback` through the real kubernetes client against the stand-in API server: the live
release is read from the workloads, and a rollback is the same rollout with the earlier release's digest."""

import pytest

from kit import history, release, rollout
from kit.errors import UserError
from tests.contract.clusterkit import NS, WORKERS, Lines, discovery_cache, settings  # noqa: F401

REPOSITORY = "internal-cr:9999/prefect-core"
WORKLOADS = [("StatefulSet", "prefect-server"), *(("Deployment", name) for name in WORKERS)]


@pytest.fixture
def record(tmp_path):
    """A build record whose history holds v1 and v2 (Prefect 3.9.1), v3 (Prefect 3.10.0) pushed in that order."""
    path = tmp_path / ".kit" / "build.json"
    for tag, digest, prefect in (("v1", "1", "3.9.1"), ("v2", "2", "3.9.1"), ("v3", "3", "3.10.0")):
        release.pushed(release.Build(REPOSITORY, tag, prefect_version=prefect, commit=tag), "sha256:" + digest * 64,
                       path)
    return path


def pushed(record, tag):
    return next(build for build in release.read_history(record) if build.tag == tag)


def reference(record, tag):
    return pushed(record, tag).reference


def images(api):
    return {api.get(kind, NS, name)["spec"]["template"]["spec"]["containers"][0]["image"] for kind, name in WORKLOADS}


def live_row(lines):
    return [line.split()[0] for line in lines if line.endswith("   live")]


@pytest.fixture
def live(fakeapi, settings, record):
    """The cluster running one release of the record, rolled out as `inv rollout --tag TAG@DIGEST` does."""
    fakeapi.controller(True)

    def roll_out(tag):
        rollout.rollout(settings, tag=f"{tag}@{pushed(record, tag).digest}", timeout=10, out=Lines())
        return fakeapi

    return roll_out


def test_history_marks_the_release_the_workloads_run(live, settings, record):
    live("v2")
    lines = Lines()
    history.show(settings, record, out=lines)
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2", "v3"]
    assert live_row(lines) == ["v2"]


def test_rollback_rolls_out_the_previous_release_by_digest_and_waits(live, settings, record):
    api = live("v2")
    lines = Lines()
    history.rollback(settings, record=record, timeout=10, out=lines)

    assert lines[0].startswith(f"rolling back to {reference(record, 'v1')} (pushed ")
    assert lines[0].endswith(" UTC, Prefect 3.9.1)")
    assert "statefulset/prefect-server configured" in lines
    assert lines[-1] == "ready: http://prefect.company.local/"
    assert images(api) == {reference(record, "v1")}
    shown = Lines()
    history.show(settings, record, out=shown)
    assert live_row(shown) == ["v1"]


def test_rollback_to_a_named_tag(live, settings, record):
    api = live("v3")
    history.rollback(settings, to="v3", record=record, timeout=10, out=Lines())
    assert images(api) == {reference(record, "v3")}


def test_rollback_across_a_prefect_downgrade_is_refused_and_changes_nothing(live, settings, record):
    api = live("v3")
    api.clear_requests()
    with pytest.raises(UserError) as refused:
        history.rollback(settings, record=record, timeout=10, out=Lines())
    [problem] = refused.value.problems
    assert problem.startswith("rollback: v2 runs Prefect 3.9.1, older than the live v3's 3.10.0, which has migrated "
                              "the database; an older server cannot run on a newer schema")
    assert problem.endswith("; --force rolls back anyway")
    assert api.writes() == []
    assert images(api) == {reference(record, "v3")}


def test_rollback_with_force_crosses_the_downgrade_with_a_warning(live, settings, record):
    api = live("v3")
    lines = Lines()
    history.rollback(settings, force=True, record=record, timeout=10, out=lines)
    assert lines[0].startswith("warning: rolling back with --force although v2 runs Prefect 3.9.1")
    assert images(api) == {reference(record, "v2")}


def test_a_live_image_pushed_elsewhere_needs_a_named_tag_and_force(fakeapi, settings, record):
    fakeapi.controller(True)
    rollout.rollout(settings, tag="from-a-colleague", timeout=10, out=Lines())
    with pytest.raises(UserError, match="was not pushed from this machine, so there is no previous release"):
        history.rollback(settings, record=record, timeout=10, out=Lines())
    with pytest.raises(UserError, match="its Prefect release is unknown and v1 .* may be older; --force"):
        history.rollback(settings, to="v1", record=record, timeout=10, out=Lines())
    history.rollback(settings, to="v1", force=True, record=record, timeout=10, out=Lines())
    assert images(fakeapi) == {reference(record, "v1")}


def test_history_of_an_unreachable_cluster_still_lists_the_releases_then_fails(fakeapi, settings, record):
    fakeapi.deny(401)
    lines = Lines()
    with pytest.raises(UserError, match="rejected the credentials"):
        history.show(settings, record, out=lines)
    assert [line.split()[0] for line in lines[1:4]] == ["v1", "v2", "v3"]
    assert lines[-1] == "live: unknown, the cluster cannot be read"
