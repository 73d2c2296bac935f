"""`inv history` and `inv rollback` as pure functions: which release the workloads run, which one a rollback
picks, and when it is refused."""

import pytest

from kit import history
from kit.errors import UserError
from kit.release import Build

REPOSITORY = "internal-cr:9999/prefect-core"
SERVER, WORKER = "statefulset/prefect-server", "deployment/prefect-worker-prod-main"


def release(tag: str, digest: str, prefect: str = "3.9.1") -> Build:
    return Build(REPOSITORY, tag, "sha256:" + digest * 64, prefect, tag, f"2026-12-0{len(tag)}T10:00:00+00:00")


V1, V2, V3 = release("v1", "1"), release("v2", "2"), release("v3", "3", prefect="3.10.0")
RELEASES = [V1, V2, V3]


def running(build: Build, *workloads: str) -> dict[str, str]:
    return {workload: build.reference for workload in workloads or (SERVER, WORKER)}


@pytest.mark.parametrize("image, build, expected", [
    (V1.reference, V1, True),
    (f"{REPOSITORY}@{V1.digest}", V1, True),
    (f"{REPOSITORY}:v1", V1, True),  # not pinned: the tag decides
    (f"{REPOSITORY}:v1@{V2.digest}", V1, False),  # pinned: the digest decides
    (f"other-cr:9999/prefect-core:v1@{V1.digest}", V1, False),
    ("127.0.0.1:5000/prefect-core", Build("127.0.0.1:5000/prefect-core", "latest"), True),
])
def test_an_image_runs_a_release_by_digest_or_else_by_tag(image, build, expected):
    assert history.runs(build, image) is expected


def test_the_live_release_is_the_newest_one_a_workload_runs():
    assert history.live_release(RELEASES, running(V2)) == V2
    assert history.live_release(RELEASES, {SERVER: V1.reference, WORKER: V2.reference}) == V2
    assert history.live_release(RELEASES, running(release("v9", "9"))) is None


def test_the_table_marks_the_live_release():
    lines = history.history_lines(RELEASES, running(V2))
    assert lines[0].split() == ["TAG", "DIGEST", "COMMIT", "PREFECT", "PUSHED", "(UTC)", "LIVE"]
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2", "v3"]
    assert lines[2].endswith("   live") and not lines[1].endswith("live") and not lines[3].endswith("live")
    assert lines[1].split()[1:6] == ["sha256:111111111111", "v1", "3.9.1", "2026-12-02", "10:00"]


def test_a_release_some_workloads_run_names_them():
    lines = history.history_lines(RELEASES, {SERVER: V2.reference, WORKER: V1.reference})
    assert lines[1].endswith(f"live on {WORKER}") and lines[2].endswith(f"live on {SERVER}")


def test_an_image_not_pushed_from_here_is_named_with_its_workloads():
    stranger = release("hotfix", "9")
    lines = history.history_lines(RELEASES, running(stranger))
    assert lines[-1] == f"live: {stranger.reference} on {SERVER}, {WORKER}, not pushed from this machine"


def test_nothing_running_is_said_and_an_unread_cluster_marks_nothing():
    assert history.history_lines(RELEASES, {})[-1] == "live: nothing of the kit's runs in the namespace"
    unread = history.history_lines(RELEASES, None)
    assert len(unread) == 1 + len(RELEASES) and not [row for row in unread[1:] if "live" in row]


def test_rollback_picks_the_release_pushed_before_the_live_one():
    assert history.choose(RELEASES, V2, running(V2), to=None) == V1


def test_rollback_skips_earlier_pushes_of_the_live_digest():
    again = Build(REPOSITORY, "v2-again", V2.digest, "3.9.1")
    assert history.choose([V1, V2, again], again, running(again), to=None) == V1


def test_rollback_to_a_tag_picks_its_newest_push():
    newer_v1 = release("v1", "4")
    assert history.choose([V1, V2, newer_v1], V2, running(V2), to="v1") == newer_v1


@pytest.mark.parametrize("releases, live, images, to, message", [
    (RELEASES, V2, running(V2), "v7", "--to v7: no release of that tag was pushed from this machine"),
    (RELEASES, None, {}, None, "rollback: nothing of the kit's runs in the namespace"),
    (RELEASES, None, running(release("x", "9")), None, "which was not pushed from this machine, so there is no "
                                                        "previous release to go back to; pass --to TAG"),
    (RELEASES, V1, running(V1), None, "rollback: v1 is the oldest release pushed from this machine"),
])
def test_rollback_without_a_release_to_go_to_says_why(releases, live, images, to, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        history.choose(releases, live, images, to)


def test_an_older_prefect_than_the_live_releases_is_a_downgrade():
    problem = history.downgrade_problem(V2, V3, running(V3))
    assert problem.startswith("v2 runs Prefect 3.9.1, older than the live v3's 3.10.0, which has migrated the database")
    assert "restore a backup taken before the upgrade, or roll forward" in problem


def test_versions_compare_as_numbers_not_text():
    assert history.downgrade_problem(release("a", "a", "3.10.0"), release("b", "b", "3.9.1"), running(V1)) is None


def test_the_same_or_a_newer_prefect_is_no_downgrade():
    assert history.downgrade_problem(V1, V2, running(V2)) is None
    assert history.downgrade_problem(V3, V2, running(V2)) is None


def test_an_unknown_live_release_cannot_be_ruled_out():
    assert "its Prefect release is unknown" in history.downgrade_problem(V1, None, running(release("x", "9")))


def test_nothing_running_has_no_database_to_protect():
    assert history.downgrade_problem(V1, None, {}) is None
