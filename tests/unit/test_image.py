"""The image's pure parts: the Dockerfile's agreement with the kit, build args and the build context.
(How the daemon's streams are read: test_streams.py.)"""

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
