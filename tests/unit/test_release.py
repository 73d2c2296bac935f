"""Which image a render or rollout uses: this commit's tag, pinned by digest once a push recorded one."""

import subprocess
from datetime import datetime, timezone

import pytest

from kit import release
from kit.errors import UserError

REPOSITORY = "internal-cr:9999/prefect-core"


@pytest.fixture
def repo(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "file.txt").write_text("one\n")
    git("add", "file.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return tmp_path, git("rev-parse", "--short", "HEAD").strip()


def test_clean_checkout_is_tagged_with_its_short_sha(repo):
    path, sha = repo
    assert release.commit_tag(path) == sha


def test_changed_tracked_file_marks_the_tag_dirty(repo):
    path, sha = repo
    (path / "untracked.txt").write_text("ignored for the tag\n")
    assert release.commit_tag(path) == sha
    (path / "file.txt").write_text("two\n")
    assert release.commit_tag(path) == f"{sha}-dirty"


def test_folder_without_a_commit_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a git checkout with a commit"):
        release.commit_tag(tmp_path)


def test_without_a_record_the_image_is_this_commits_tag(tmp_path):
    build = release.image_for(REPOSITORY, "abc1234", tmp_path / "build.json")
    assert build.reference == f"{REPOSITORY}:abc1234"


def test_a_pushed_build_is_pinned_by_digest(tmp_path):
    record = tmp_path / "build.json"
    release.write_record(release.Build(REPOSITORY, "abc1234", "sha256:" + "a" * 64), record)
    assert release.image_for(REPOSITORY, "abc1234", record).reference == f"{REPOSITORY}:abc1234@sha256:{'a' * 64}"
    assert release.image_for(REPOSITORY, "def5678", record).reference == f"{REPOSITORY}:def5678"
    assert release.image_for("other/repo", "abc1234", record).reference == "other/repo:abc1234"


def test_a_damaged_record_says_how_to_recover(tmp_path):
    record = tmp_path / "build.json"
    record.write_text("{not json")
    with pytest.raises(UserError, match="delete it and run `inv build push`"):
        release.image_for(REPOSITORY, "abc1234", record)


def test_a_malformed_tag_is_refused():
    with pytest.raises(UserError, match="--tag: 'v1 beta' is not an image tag"):
        release.image_for(REPOSITORY, "v1 beta")


def test_a_digest_given_with_the_tag_pins_it_without_a_record(tmp_path):
    digest = "sha256:" + "b" * 64
    build = release.image_for(REPOSITORY, f"v1@{digest}", tmp_path / "build.json")
    assert build.reference == f"{REPOSITORY}:v1@{digest}"


def test_a_malformed_digest_is_refused():
    with pytest.raises(UserError, match=r"--tag: 'v1@sha256:abc' is not an image tag .* TAG@sha256:<64 hex digits>"):
        release.image_for(REPOSITORY, "v1@sha256:abc")


def test_every_push_is_one_more_line_of_the_history(tmp_path):
    record = tmp_path / "build.json"
    first = release.Build(REPOSITORY, "abc1234", prefect_version="3.9.1", commit="abc1234")
    at = datetime(2026, 12, 1, 21, 40, tzinfo=timezone.utc)
    pushed = release.pushed(first, "sha256:" + "a" * 64, record, at)
    release.pushed(release.Build(REPOSITORY, "def5678", prefect_version="3.9.2"), "sha256:" + "d" * 64, record, at)
    assert pushed.pushed_at == "2026-12-01T21:40:00+00:00" and pushed.digest == "sha256:" + "a" * 64
    assert [(r.tag, r.prefect_version) for r in release.read_history(record)] == [("abc1234", "3.9.1"),
                                                                                  ("def5678", "3.9.2")]
    assert release.read_history(record)[0] == pushed
    assert release.read_record(record).tag == "def5678", "the build record is the last push"


def test_a_tag_this_machine_pushed_earlier_is_pinned_by_its_newest_digest(tmp_path):
    record = tmp_path / "build.json"
    for digest in ("a", "b"):
        release.pushed(release.Build(REPOSITORY, "hotfix"), "sha256:" + digest * 64, record)
    release.write_record(release.Build(REPOSITORY, "later"), record)
    assert release.image_for(REPOSITORY, "hotfix", record).digest == "sha256:" + "b" * 64


def test_a_damaged_history_line_is_named(tmp_path):
    record = tmp_path / "build.json"
    release.history_path(record).write_text('{"repository": "r", "tag": "t"}\nnot json\n')
    with pytest.raises(UserError, match=r"releases.jsonl:2: not a release the kit recorded; remove that line"):
        release.read_history(record)


def test_a_build_record_of_an_earlier_kit_still_reads(tmp_path):
    record = tmp_path / "build.json"
    record.write_text('{"repository": "%s", "tag": "abc1234", "digest": ""}' % REPOSITORY)
    assert release.read_record(record) == release.Build(REPOSITORY, "abc1234")


def test_a_commit_outside_a_checkout_is_empty(tmp_path_factory, repo):
    path, sha = repo
    assert release.commit_sha(path) == sha
    assert release.commit_sha(tmp_path_factory.mktemp("not-a-checkout")) == ""
