"""`inv doctor`'s registry checks against the real engine and registries: up, down, a wrong login, an image
absent (· before a first push) and present."""

import io
import tarfile
import uuid

import pytest

from kit import doctor, registry
from kit.doctor import FAIL, LATER, OK, UNKNOWN
from kit.errors import UserError
from tests.rendering import make_settings
from tests.services import docker_made, free_port, need


@pytest.fixture(scope="module")
def api():
    import docker

    engine = need("KIT_TEST_DOCKER", "a Docker engine")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", engine)
        yield docker.from_env(timeout=60).api


@pytest.fixture(scope="module")
def pushed(api):
    """A one-file image pushed to the open registry under a fresh tag: cheap, and no other test's tag."""
    open_registry = need("KIT_TEST_REGISTRY", "a local registry")
    repository, tag = f"{open_registry}/prefect-core", f"doctor-{uuid.uuid4().hex[:8]}"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        marker = tarfile.TarInfo("marker")
        tar.addfile(marker, io.BytesIO(b""))
    imported = api.import_image_from_data(layer.getvalue(), repository=repository, tag=tag)
    assert "error" not in imported, imported
    docker_made("tag", f"{repository}:{tag}")
    stream = list(api.push(repository, tag=tag, stream=True, decode=True))
    assert not [item for item in stream if "error" in item], stream
    yield tag, next(item["aux"]["Digest"] for item in stream if "aux" in item)
    api.remove_image(f"{repository}:{tag}", force=True)


def test_a_pushed_tag_is_found_with_its_digest(pushed):
    tag, digest = pushed
    settings = make_settings(REGISTRY=need("KIT_TEST_REGISTRY", "a local registry"))
    state = registry.state(settings, tag)
    assert state.digest == digest and not state.logged_in


def test_an_absent_tag_is_not_there_yet_before_a_first_push(api):
    settings = make_settings(REGISTRY=need("KIT_TEST_REGISTRY", "a local registry"))
    assert registry.state(settings, "never-pushed").digest == ""
    (finding, image_finding) = doctor.check_registry(settings)
    assert finding.mark == OK and image_finding.mark == LATER
    assert image_finding.text.endswith("is not pushed yet: `inv build push`")


def test_a_registry_that_does_not_answer_is_a_failure_naming_the_setting(api):
    settings = make_settings(REGISTRY=f"127.0.0.1:{free_port()}")
    (finding,) = doctor.check_registry(settings)
    assert finding.mark == FAIL
    assert finding.text.startswith(f"REGISTRY: cannot ask 127.0.0.1:")
    assert "connection refused" in finding.text


def test_the_login_is_checked_and_a_wrong_one_names_the_user_settings(api):
    host = need("KIT_TEST_AUTH_REGISTRY", "a registry with a login")
    user = need("KIT_TEST_AUTH_REGISTRY_USER", "its user")
    password = need("KIT_TEST_AUTH_REGISTRY_PASSWORD", "its password")
    good = make_settings(REGISTRY=host, REGISTRY_USER=user, REGISTRY_PASSWORD=password)
    assert registry.state(good, "never-pushed").logged_in
    wrong = make_settings(REGISTRY=host, REGISTRY_USER=user, REGISTRY_PASSWORD="not-the-password-1")
    with pytest.raises(UserError) as refused:
        registry.state(wrong, "never-pushed")
    (problem,) = refused.value.problems
    assert problem.startswith(f"REGISTRY_USER: login to {host} as {user} refused")
    assert "not-the-password-1" not in problem


def test_no_engine_means_the_registry_was_not_asked(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    (finding,) = doctor.check_registry(make_settings())
    assert finding.mark == UNKNOWN and finding.text.startswith("not asked: no Docker engine answers")


def test_a_rollout_tag_is_pinned_to_the_digest_the_registry_holds(pushed, tmp_path):
    from kit import rollout

    tag, digest = pushed
    settings = make_settings(REGISTRY=need("KIT_TEST_REGISTRY", "a local registry"))
    record = tmp_path / "no-record.json"  # nothing pushed from this machine: the registry is asked
    assert rollout.image_reference(settings, tag, record) == f"{settings.image_repository}:{tag}@{digest}"
    with pytest.raises(UserError, match=rf"^--tag: {settings.registry} has no {settings.image_repository}:never"):
        rollout.image_reference(settings, "never-pushed", record)


def test_without_an_engine_the_tag_is_rolled_out_unpinned_and_the_rollout_says_so(monkeypatch, tmp_path):
    from kit import rollout

    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    lines = []
    reference = rollout.image_reference(make_settings(), "v7", tmp_path / "none.json", out=lines.append)
    assert reference == "internal-cr:9999/prefect-core:v7"
    assert lines == ["image: internal-cr:9999/prefect-core:v7 is not pinned to a digest (no Docker engine here to "
                     "ask internal-cr:9999): the nodes pull the tag as it is when each pod starts"]
