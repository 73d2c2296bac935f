"""The image's pure parts: the Dockerfile's agreement with the kit, build args, the build context, and
how the daemon's build and push streams become progress lines or one error line."""

import re
import subprocess
import tarfile

import pytest

from kit import ROOT, image, settings
from kit.errors import UserError
from tests.rendering import make_settings

DOCKERFILE = (ROOT / "image/Dockerfile").read_text()


def test_prefect_version_agrees_in_dockerfile_env_example_and_requirements():
    dockerfile = re.search(r"^ARG PREFECT_VERSION=(\S+)$", DOCKERFILE, re.M)[1]
    env_example = re.search(r"^IMAGE_PREFECT_VERSION=(\S+)$", (ROOT / ".env.example").read_text(), re.M)[1]
    requirements = re.search(r"^prefect==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)[1]
    assert dockerfile == env_example == requirements


def test_dockerfile_defaults_the_time_zone_as_the_settings_do():
    assert re.search(r"^ARG TIMEZONE=(\S+)$", DOCKERFILE, re.M)[1] == make_settings().timezone


def test_base_image_is_the_official_one_for_that_version_and_python_311():
    assert "ARG BASE_IMAGE=prefecthq/prefect:${PREFECT_VERSION}-python3.11\n" in DOCKERFILE


def test_dockerfile_builds_with_the_classic_builder():
    # The Docker SDK never uses BuildKit: a syntax directive, RUN --mount and heredocs would fail there.
    assert not DOCKERFILE.startswith("# syntax=")
    instructions = "\n".join(line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#"))
    assert "--mount" not in instructions
    assert not re.search(r"<<-?\s*['\"]?[A-Z]+", instructions)


def test_hadolint_finds_nothing():
    done = subprocess.run([str(ROOT / ".venv/bin/hadolint"), "--config", str(ROOT / ".hadolint.yaml"),
                           str(ROOT / "image/Dockerfile")], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("name", settings.IMAGE_DRIVERS + settings.IMAGE_EXTRAS)
def test_every_choice_the_settings_accept_is_known_to_the_dockerfile(name):
    builder = DOCKERFILE.split("AS builder", 1)[1].split("COPY image/requirements", 1)[0]
    cases = re.findall(r"^\s+([a-z0-9|-]+)\)", builder, re.M)
    assert name in "|".join(cases).split("|")


def test_requirement_groups_are_the_base_or_a_choice_of_the_settings():
    groups = {path.stem for path in (ROOT / "image/requirements").glob("*.txt")}
    assert "base" in groups
    assert groups - {"base"} <= set(settings.IMAGE_DRIVERS + settings.IMAGE_EXTRAS)


def test_constraints_pin_every_package_exactly():
    lines = [line for line in (ROOT / "image/constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", line) for line in lines), lines


def test_build_args_come_from_settings():
    args = image.build_args(make_settings(IMAGE_DRIVERS="kerberos,odbc", IMAGE_EXTRAS="dataframes",
                                          TIMEZONE="Europe/Warsaw"))
    assert args == {"PREFECT_VERSION": "3.9.1", "DRIVERS": "kerberos,odbc", "EXTRAS": "dataframes",
                    "TIMEZONE": "Europe/Warsaw"}


def test_proxies_reach_the_build_in_both_spellings_and_the_index_by_its_own_name():
    args = image.build_args(make_settings(HTTPS_PROXY="http://proxy.company.local:3128", NO_PROXY="localhost,.local",
                                          PIP_INDEX_URL="https://nexus.company.local/simple"))
    assert args["HTTPS_PROXY"] == args["https_proxy"] == "http://proxy.company.local:3128"
    assert args["NO_PROXY"] == args["no_proxy"] == "localhost,.local"
    assert "HTTP_PROXY" not in args
    # PIP_INDEX_URL itself would make pip use an empty index when unset.
    assert args["PIP_INDEX"] == "https://nexus.company.local/simple" and "PIP_INDEX_URL" not in args


@pytest.fixture
def project(tmp_path):
    """A minimal project tree with the files the build context takes, plus some it must leave out."""
    files = {
        "image/Dockerfile": "FROM scratch\n", "image/requirements/base.txt": "prefect-shell\n",
        "image/constraints.txt": "prefect-shell==0.3.7\n", "config/krb5.conf": "[libdefaults]\n",
        "config/ca-certificates/README.md": "readme\n", "config/ca-certificates/company.crt": "pem\n",
        "flows/hello.py": "print('hi')\n", "flows/__pycache__/hello.cpython-311.pyc": "x",
        ".env": "LOGIN_PASSWORD=secret\n", "tasks.py": "",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "flows/hello.py").chmod(0o600)
    return tmp_path


def test_build_context_holds_only_what_the_dockerfile_copies(project):
    with tarfile.open(fileobj=image.build_context(project)) as tar:
        files = {member.name for member in tar.getmembers() if member.isfile()}
    assert files == {"image/Dockerfile", "image/requirements/base.txt", "image/constraints.txt", "config/krb5.conf",
                     "config/ca-certificates/company.crt", "flows/hello.py"}


def test_build_context_makes_files_readable_for_the_image_user(project):
    with tarfile.open(fileobj=image.build_context(project)) as tar:
        flow = tar.getmember("flows/hello.py")
        folder = tar.getmember("flows")
    assert (flow.mode, flow.uid, folder.mode) == (0o644, 0, 0o755)


def test_build_context_names_a_missing_input(project):
    (project / "config/krb5.conf").unlink()
    with pytest.raises(UserError, match=r"^config/krb5.conf: missing from .*; the image build needs it"):
        image.build_context(project)


def follow(items):
    echoed = []
    return image.BuildLog(echoed.append).read(items), echoed


def test_build_log_echoes_the_build_and_returns_the_image_id():
    image_id, echoed = follow([{"stream": "Step 1/2 : FROM base\n"}, {"stream": "\n"}, {"stream": " ---> abc\n"},
                               {"aux": {"ID": "sha256:123"}}, {"stream": "Successfully built 123\n"}])
    assert image_id == "sha256:123"
    assert echoed == ["Step 1/2 : FROM base", " ---> abc", "Successfully built 123"]


def test_failed_step_is_named_with_its_last_lines_on_one_line():
    items = [
        {"stream": "Step 7/29 : RUN pip install -r /tmp/requirements/base.txt\n"},
        {"stream": " ---> Running in 5666c35dd46c\n"},
        {"stream": "Collecting prefect-shell\n"},
        {"stream": "\x1b[91mERROR: No matching distribution found for prefect-shel\n\x1b[0m"},
        {"stream": "Removing intermediate container 5666c35dd46c\n"},
        {"error": "The command '/bin/bash -euo pipefail -c pip install -r /tmp/requirements/base.txt' returned a "
                  "non-zero code: 1", "errorDetail": {"code": 1}},
    ]
    with pytest.raises(UserError) as caught:
        follow(items)
    assert caught.value.problems == (
        "image build failed at step 7/29 (RUN pip install -r /tmp/requirements/base.txt): the command returned a "
        "non-zero code: 1; last output: Collecting prefect-shell | "
        "ERROR: No matching distribution found for prefect-shel",
    )


def test_error_outside_a_run_step_is_passed_on():
    with pytest.raises(UserError, match=r"^image build failed at step 1/2 \(FROM prefecthq/prefect:3.9.1-python3.11\): "
                                        r"pull access denied for prefecthq/prefect$"):
        follow([{"stream": "Step 1/2 : FROM prefecthq/prefect:3.9.1-python3.11\n"},
                {"error": "pull access denied for prefecthq/prefect"}])


def test_stream_that_ends_without_an_image_is_an_error():
    with pytest.raises(UserError, match="ended the build without an image"):
        follow([{"stream": "Step 1/2 : FROM base\n"}])


def test_push_stream_gives_the_digest_and_layer_events_without_byte_counters():
    echoed = []
    digest = image.read_push([
        {"status": "The push refers to repository [127.0.0.1:5000/prefect-core]"},
        {"status": "Pushing", "id": "a1", "progressDetail": {"current": 512, "total": 1024}},
        {"status": "Pushed", "id": "a1", "progressDetail": {}},
        {"status": "abc: digest: sha256:feed size: 1234"},
        {"aux": {"Tag": "abc", "Digest": "sha256:feed", "Size": 1234}},
    ], "127.0.0.1:5000/prefect-core:abc", echoed.append)
    assert digest == "sha256:feed"
    assert echoed == ["The push refers to repository [127.0.0.1:5000/prefect-core]", "a1: Pushed",
                      "abc: digest: sha256:feed size: 1234"]


@pytest.mark.parametrize("error, hint", [
    ("unauthorized: authentication required", "check REGISTRY_USER and REGISTRY_PASSWORD in .env"),
    ("no basic auth credentials", "check REGISTRY_USER and REGISTRY_PASSWORD in .env"),
    ('Get "https://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
     "check REGISTRY in .env and that the registry is running and reachable"),
    ('Get "http://127.0.0.1:44017/v2/": dial tcp 127.0.0.1:44017: connect: connection refused',
     "check REGISTRY in .env and that the registry is running and reachable"),
    ("received unexpected HTTP status: 401 Unauthorized", "check REGISTRY_USER and REGISTRY_PASSWORD in .env"),
])
def test_push_error_in_the_stream_becomes_one_line_with_a_hint(error, hint):
    with pytest.raises(UserError) as caught:
        image.read_push([{"status": "Preparing", "id": "a1"}, {"error": error, "errorDetail": {"message": error}}],
                        "r/prefect-core:abc", lambda line: None)
    assert caught.value.problems == (f"push of r/prefect-core:abc failed: {error}; {hint}",)
