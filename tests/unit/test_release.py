"""Which image a render or rollout uses: this commit's tag, pinned by digest once a push recorded one."""

import subprocess

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
