"""The real image: `inv build push` on a copy of the kit builds image/Dockerfile on the (stand-in) Prefect
base with every driver that needs no vendor download and the dataframes and spark extras, pushes it to a
local registry, and the test pulls it back by digest and runs it the way the manifests do (uid 10001,
read-only root, host network); the scripts in image_checks/ do real work in it. A second release pushed
after it is rolled out on the stand-in API server and rolled back. A build with the spark-local extra runs
Spark in the container, and serves Spark Connect to the first one's client. Then each way a build or push
fails, against the real daemon and registries: one line, exit 1.

Everything a test makes on the engine is noted (tests.services.docker_made) for CI to remove exactly that."""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from kit import ROOT, history, image, rollout, settings
from kit.errors import UserError
from tests.contract.clusterkit import Lines, StandInPrefect
from tests.integration import server_pod
from tests.rendering import render
from tests.services import docker_made, free_port, need, need_program, port_open
from tests.standin import FakeApi

DRIVERS = "kerberos,freetds,odbc,mariadb,oracle"
EXTRAS = "dataframes,spark"
CHECKS = Path(__file__).parent / "image_checks"
# The packages of the spark-local extra that the spark extra leaves out: pyspark with its jars, and py4j.
SPARK_LOCAL_ONLY = {"pyspark", "py4j"}
COPIED = ("kit", "tasks.py", ".env.example", "image", "config", "flows", "manifests")
TEST_CA = "kit-test-ca"


def env_text(registry: str, **extra: str) -> str:
    values = {"REGISTRY": registry, "IMAGE_NAME": "prefect-core", "IMAGE_PREFECT_VERSION": "3.9.1", "NAMESPACE": "prefect",
              "PUBLIC_HOST": "prefect.company.local", "LOGIN_USER": "admin",
              "LOGIN_PASSWORD": "correct-horse-battery", "IMAGE_DRIVERS": DRIVERS, "TIMEZONE": "Europe/Warsaw",
              **extra}
    return "".join(f"{key}={value}\n" for key, value in values.items())


def copy_kit(source: Path, target: Path) -> Path:
    for name in COPIED:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("__pycache__", ".kit"))
        else:
            shutil.copy2(source / name, target / name)
    return target


def inv(project: Path, env_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real `inv` command on a copy of the kit (its tasks.py, its kit/ and its files)."""
    return subprocess.run([str(ROOT / ".venv/bin/inv"), "--search-root", str(project), *args], cwd=project,
                          env={**os.environ, settings.ENV_FILE_VARIABLE: str(env_file), **env},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return done.stderr.splitlines()


def note_image(api, reference: str) -> None:
    """Note an image a test made, by its id and its own tag, for CI's cleanup of exactly what this run made."""
    docker_made("image", api.inspect_image(reference)["Id"])
    docker_made("tag", reference)


def note_failed_build(verbose_output: str) -> None:
    """Note the images a failed `inv build --verbose` made: each step's result, not the cache it reused, nor a
    FROM step's (the base image, or a stage of its own build noted already)."""
    made = True
    for line in verbose_output.splitlines():
        if line.startswith("Step "):
            made = " : FROM " not in line
        elif line == " ---> Using cache":
            made = False
        elif made and re.fullmatch(r" ---> [0-9a-f]{12}", line):
            docker_made("image", line.split()[-1])


@pytest.fixture(scope="module")
def api():
    """The engine of KIT_TEST_DOCKER, also for the kit in this process and the `inv` it runs (DOCKER_HOST)."""
    import docker

    engine = need("KIT_TEST_DOCKER", "a Docker engine")
    need("KIT_TEST_BASE_IMAGE", "the Prefect base image (or its stand-in)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", engine)
        yield docker.from_env(timeout=None).api


@pytest.fixture(scope="module")
def kit_copy(tmp_path_factory, api):
    """A copy of the kit whose build also trusts a throwaway CA, so the image can be checked for it."""
    project = copy_kit(ROOT, tmp_path_factory.mktemp("kit"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={TEST_CA}", "-keyout", str(project / "ca.key"),
                    "-out", str(project / f"config/ca-certificates/{TEST_CA}.crt")], check=True, capture_output=True)
    return project


@pytest.fixture(scope="module")
def registry():
    return need("KIT_TEST_REGISTRY", "a local registry")


@pytest.fixture(scope="module")
def shipped(api, kit_copy, registry, tmp_path_factory):
    """`inv build --tag T push`, run once for the whole module."""
    env_file = tmp_path_factory.mktemp("env") / "test.env"
    env_file.write_text(env_text(registry, IMAGE_EXTRAS=EXTRAS))
    tag = f"it-{uuid.uuid4().hex[:8]}"
    done = inv(kit_copy, env_file, "build", "--tag", tag, "push")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    record = json.loads((kit_copy / ".kit/build.json").read_text())
    note_image(api, f"{record['repository']}:{tag}")
    return done, record


@pytest.fixture(scope="module")
def pulled(api, shipped):
    """The pushed image, its local tags removed and pulled back by the recorded digest."""
    _, record = shipped
    repository = record["repository"]
    for tag in (record["tag"], image.LATEST):
        api.remove_image(f"{repository}:{tag}")
    api.pull(repository, tag=record["digest"])
    return f"{repository}@{record['digest']}"


@pytest.fixture(scope="module")
def run(api, pulled):
    """Run a command in the image as a pod of the manifests would: uid 10001, read-only root, tmpfs home."""
    return runner(pulled)


def runner(reference: str):
    """A function that runs a command in the image like a pod would, with image_checks/ at /checks and a
    writable /out whose files it returns by name."""
    import docker

    client = docker.from_env()

    def run_command(*command: str, out: Path | None = None) -> str:
        volumes = {str(CHECKS): {"bind": "/checks", "mode": "ro"}}
        if out is not None:
            out.chmod(0o777)  # for uid 10001
            volumes[str(out)] = {"bind": "/out", "mode": "rw"}
        container = client.containers.run(reference, list(command), network_mode="host", detach=True,
                                          read_only=True, tmpfs={"/tmp": "", "/home/prefect": ""}, volumes=volumes)
        docker_made("container", container.id)
        try:
            code = container.wait()["StatusCode"]
            output = container.logs(stdout=True, stderr=True).decode().strip()
        finally:
            container.remove(force=True)
        assert code == 0, f"{' '.join(command)} exited with {code}: {output[-3000:]}"
        return output

    return run_command


def test_inv_build_push_runs_each_task_once(shipped):
    done, record = shipped
    lines = done.stdout.splitlines()
    [built] = [line for line in lines if line.startswith("built ")]
    assert re.fullmatch(rf"built {re.escape(record['repository'])}:{record['tag']} \(and :latest\) in \S+; "
                        "next: inv push", built)
    steps = [line for line in lines if line.startswith("step ")]
    assert steps and all(re.fullmatch(r"step +\d+/\d+ +(\d\S*|cached) {2}\S.*", line) for line in steps), steps
    assert [line for line in lines if line.startswith("pushed ")] == [
        f"pushed {record['repository']}:{record['tag']}@{record['digest']}"]


def test_recorded_digest_is_the_one_the_registry_serves(shipped, registry):
    _, record = shipped
    assert registry_digest(registry, record["tag"]) == record["digest"]


@pytest.fixture
def stand_in(tmp_path):
    """The contract tests' stand-in API server, with a kubeconfig for the `inv` this test runs."""
    api = FakeApi().start()
    api.kubeconfig = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    yield api
    api.stop()


def test_after_a_second_push_a_rollback_rolls_out_the_first_digest(api, shipped, kit_copy, registry, stand_in,
                                                                   tmp_path, monkeypatch):
    """Two releases pushed to a real registry (the second one a change under flows/, so it rebuilds in seconds
    while the first build's layers are still cached: this test comes before any that removes them), rolled out
    on the stand-in, then `inv rollback`, and `inv history` marking what runs."""
    _, first = shipped
    project = copy_kit(kit_copy, tmp_path / "kit")
    shutil.copytree(kit_copy / ".kit", project / ".kit")
    (project / "flows/second_release.py").write_text('"""A flow the first release does not have."""\n')
    env_file = tmp_path / "test.env"
    env_file.write_text(env_text(registry, IMAGE_EXTRAS=EXTRAS))
    second_tag = f"it2-{uuid.uuid4().hex[:8]}"
    done = inv(project, env_file, "build", "--tag", second_tag, "push")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    note_image(api, f"{first['repository']}:{second_tag}")

    releases = [json.loads(line) for line in (project / ".kit/releases.jsonl").read_text().splitlines()]
    assert [(r["tag"], r["prefect_version"]) for r in releases] == [(first["tag"], "3.9.1"), (second_tag, "3.9.1")]
    assert releases[0]["digest"] == first["digest"] != releases[1]["digest"]
    assert [registry_digest(registry, r["tag"]) for r in releases] == [r["digest"] for r in releases]

    # The cluster half in this process, so that the Prefect half of each rollout is the contract tests'
    # stand-in (no worker pod here ever connects to a real Prefect); the tags are pinned through the registry.
    monkeypatch.setenv("KUBECONFIG", stand_in.kubeconfig)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    prefect = StandInPrefect(stand_in)
    monkeypatch.setattr(rollout, "prefect_session", lambda settings, api_url, k, out: prefect(k, out))
    record = project / ".kit/releases.jsonl"
    loaded = settings.load(env_file)
    stand_in.controller(True)
    rollout.rollout(loaded, tag=second_tag, timeout=30, out=Lines())
    assert live_tags(shown(loaded, record)) == [second_tag]

    lines = Lines()
    history.rollback(loaded, timeout=30, record=record, out=lines)
    assert lines[0].startswith(f"rolling back to {first['repository']}:{first['tag']}@{first['digest']} (pushed ")
    server = stand_in.get("StatefulSet", "prefect", "prefect-server")
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"{first['repository']}:{first['tag']}@{first['digest']}"
    assert live_tags(shown(loaded, record)) == [first["tag"]]


def shown(loaded, record: Path) -> str:
    lines = Lines()
    history.show(loaded, record=record, out=lines)
    return "\n".join(lines)


def registry_digest(registry: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{registry}/v2/prefect-core/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request) as answer:
        return answer.headers["Docker-Content-Digest"]


def live_tags(history: str) -> list[str]:
    return [line.split()[0] for line in history.splitlines() if line.endswith("   live")]


def test_prefect_is_the_pinned_version(run):
    assert "Version:              3.9.1" in run("prefect", "version")


def test_vendor_free_drivers_import(run):
    assert run("python", "-c", "import pyodbc, pymssql, oracledb, gssapi, MySQLdb, pymysql; print('imported')") == \
        "imported"


def test_python_packages_are_consistent(run):
    assert run("pip", "check") == "No broken requirements found."


def test_every_package_the_image_adds_imports_without_its_test_suite_and_symbols(run):
    """The build deletes the packages' tests/ folders and strips their libraries; no import may notice."""
    pinned = [line.split("==")[0] for line in (ROOT / "image/constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")]
    in_image = [name for name in pinned if name not in SPARK_LOCAL_ONLY]
    report = run("python", "-W", "ignore", "/checks/import_all.py", *in_image).splitlines()
    assert len(report) == len(in_image)
    assert [line for line in report if "FAILED" in line or "NO MODULES" in line] == []
    assert run("sh", "-c", "find /usr/local/lib/python3.11/site-packages/pandas -name tests | wc -l") == "0"


def test_dataframes_stack_does_real_work(run):
    assert run("python", "-W", "ignore", "/checks/dataframes.py") == "delta=60.75 parquet=3 duckdb=4.0 zstd=True"


@pytest.fixture(scope="module")
def spark_local(api, kit_copy, registry):
    """The image built with IMAGE_EXTRAS=spark-local (not pushed: the tests above cover pushing)."""
    current = settings.parse(env_text(registry, IMAGE_DRIVERS="", IMAGE_EXTRAS="spark-local"))
    built = image.build(current, kit_copy, tag=f"spark-{uuid.uuid4().hex[:8]}", echo=lambda line: None)
    note_image(api, f"{built.repository}:{built.tag}")
    return f"{built.repository}:{built.tag}"


def spark_result(run_command, master: str, out: Path) -> str:
    """The query's answer from the file it writes: Spark's logs and progress bars share the output with it."""
    output = run_command("python", "-W", "ignore", "/checks/spark_query.py", master, "/out/result", out=out)
    assert (out / "result").exists(), output[-3000:]
    return (out / "result").read_text()


def test_spark_local_runs_spark_inside_the_container(spark_local, tmp_path):
    assert spark_result(runner(spark_local), "local", tmp_path) == "45"


def test_spark_client_queries_a_spark_connect_server(spark_local, run, tmp_path):
    """The spark extra's client in the main image, against a Spark Connect server run by the spark-local one."""
    import docker

    port = free_port()
    server = docker.from_env().containers.run(
        spark_local, ["spark-submit", "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                      "--master", "local[1]", "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
                      "--conf", f"spark.connect.grpc.binding.port={port}"],
        detach=True, network_mode="host", read_only=True, tmpfs={"/tmp": "", "/home/prefect": ""})
    docker_made("container", server.id)
    try:
        deadline = time.monotonic() + 120
        while not port_open(port):
            server.reload()
            assert server.status == "running" and time.monotonic() < deadline, server.logs().decode()[-3000:]
            time.sleep(0.5)
        assert spark_result(run, f"sc://127.0.0.1:{port}", tmp_path) == "45"
    finally:
        server.remove(force=True)


def test_kerberos_client_and_its_config_are_in_place(run):
    assert run("klist", "-V").startswith("Kerberos 5 version")
    assert run("cat", "/etc/krb5.conf") == (ROOT / "config/krb5.conf").read_text().strip()


def test_runs_as_the_non_root_user_of_the_manifests(run):
    assert run("sh", "-c", 'echo "$(id -u):$(id -g) $HOME $(pwd)"') == "10001:10001 /home/prefect /opt/prefect/flows"


def test_pods_args_run_under_the_base_images_tini(run):
    """The manifests set only args, so the entrypoint reaps the processes flow runs leave behind."""
    assert run("sh", "-c", "cat /proc/1/comm") == "tini"


def test_the_login_proxy_runs_in_the_image_as_the_server_pod_runs_it(pulled, tmp_path):
    """nginx from the image with the rendered args and mounts, as uid 10001 on a read-only root: it starts under
    tini, answers its probe, asks for the login, and logs to stdout."""
    import docker

    objects = render()
    pod, proxy = server_pod.pod_of(objects), server_pod.container(objects, "proxy")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    # Host networking: the pod's port becomes a free one, the only change to the rendered config.
    port = free_port()
    listen = f"listen {server_pod.container_port(objects, 'http')};"
    binds, tmpfs = {}, {}
    for mount in proxy["volumeMounts"]:
        if "emptyDir" in volumes[mount["name"]]:
            tmpfs[mount["mountPath"]] = "uid=10001,gid=10001"
            continue
        folder = tmp_path / mount["name"]
        folder.mkdir(mode=0o755)
        server_pod.fill_volume(volumes[mount["name"]], objects, folder,
                               lambda text: text.replace(listen, f"listen 127.0.0.1:{port};"))
        for path in folder.iterdir():
            path.chmod(0o644)
        binds[str(folder)] = {"bind": mount["mountPath"], "mode": "ro"}
    client = docker.from_env()
    started = client.containers.run(pulled, proxy["args"], detach=True, network_mode="host", read_only=True,
                                    user="10001:10001", volumes=binds, tmpfs=tmpfs)
    docker_made("container", started.id)
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            started.reload()
            assert started.status == "running" and time.monotonic() < deadline, started.logs().decode()[-3000:]
            time.sleep(0.1)
        probe = proxy["readinessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=10) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert refused.value.code == 401
        assert started.exec_run(["cat", "/proc/1/comm"]).output.decode().strip() == "tini"
        assert '"GET / HTTP/1.1" 401' in started.logs().decode()
    finally:
        started.remove(force=True)


def test_flows_are_copied_readable(run, kit_copy):
    expected = sorted(path.name for path in (kit_copy / "flows").iterdir() if path.name != "__pycache__")
    assert run("ls", "-1", "/opt/prefect/flows").splitlines() == expected
    assert run("sh", "-c", "cat /opt/prefect/flows/* > /dev/null && echo readable") == "readable"


def test_time_zone_is_the_build_arg(run):
    assert run("cat", "/etc/timezone") == "Europe/Warsaw"
    assert run("date", "+%Z") in ("CET", "CEST")


def test_company_ca_is_trusted_by_the_os_requests_and_httpx(run):
    script = (
        "import ssl, httpx, requests\n"
        "def names(context): return {dict(x[0] for x in c['subject']).get('commonName') for c in context.get_ca_certs()}\n"
        "verify = requests.Session().merge_environment_settings('https://x', {}, None, None, None)['verify']\n"
        f"print('{TEST_CA}' in names(ssl.create_default_context()),"
        f" '{TEST_CA}' in names(ssl.create_default_context(cafile=verify)),"
        f" '{TEST_CA}' in names(httpx.create_ssl_context()))\n"
    )
    assert run("python", "-c", script) == "True True True"


def test_failing_run_step_is_named_with_its_last_output(kit_copy, registry, tmp_path):
    project = copy_kit(kit_copy, tmp_path / "kit")
    with open(project / "image/Dockerfile", "a") as dockerfile:
        dockerfile.write('RUN echo "kit-test: about to fail" && exit 3\n')
    env_file = tmp_path / "test.env"
    env_file.write_text(env_text(registry))
    done = inv(project, env_file, "build", "--tag", "failing", "--verbose")
    note_failed_build(done.stdout)
    assert done.returncode == 1
    [line] = error_lines(done)
    # The appended step is the last one, whatever the number of steps before it.
    assert re.fullmatch(r'error: image build failed at step (\d+)/\1 \(RUN echo "kit-test: about to fail" && exit 3\): '
                        r"the command returned a non-zero code: 3; last output: kit-test: about to fail", line)
    assert not (project / ".kit/build.json").exists()


def test_unreachable_vendor_download_names_the_url(kit_copy, registry, tmp_path):
    # Oracle's and Microsoft's sites cannot be reached from here: the oracle-thick branch runs up to its
    # download (its apt packages included) and must stop there with the URL, not hang or go on.
    env_file = tmp_path / "test.env"
    env_file.write_text(env_text(registry, IMAGE_DRIVERS="oracle-thick"))
    done = inv(kit_copy, env_file, "build", "--tag", "vendor", "--verbose")
    note_failed_build(done.stdout)
    assert done.returncode == 1
    [line] = error_lines(done)
    assert line.startswith("error: image build failed at step ")
    assert line.endswith("cannot download https://download.oracle.com/otn_software/linux/instantclient/"
                         "instantclient-basiclite-linuxx64.zip; it must be reachable from the build "
                         "(HTTPS_PROXY, config/ca-certificates)")


def test_no_docker_daemon_is_one_line(kit_copy, registry, tmp_path):
    env_file = tmp_path / "test.env"
    env_file.write_text(env_text(registry))
    done = inv(kit_copy, env_file, "build", "--tag", "nodaemon", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    assert done.returncode == 1
    assert len(error_lines(done)) == 1
    assert error_lines(done)[0].startswith("error: Docker: no daemon answers (")
    assert error_lines(done)[0].endswith("start Docker, or point DOCKER_HOST at a running engine")


@pytest.fixture
def small_build(api, kit_copy, tmp_path):
    """A copy of the kit with a recorded build of a one-file image, to push to REGISTRY of the env file."""

    def make(registry: str, **extra: str) -> tuple[Path, Path]:
        project = copy_kit(kit_copy, tmp_path / "kit")
        env_file = tmp_path / "test.env"
        env_file.write_text(env_text(registry, **extra))
        tag = f"small-{uuid.uuid4().hex[:8]}"
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w") as tar:
            data = tag.encode()
            info = tarfile.TarInfo("marker")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        repository = f"{registry}/prefect-core"
        api.import_image_from_data(layer.getvalue(), repository=repository, tag=tag)
        note_image(api, f"{repository}:{tag}")
        api.tag(f"{repository}:{tag}", repository, image.LATEST)
        (project / ".kit").mkdir()
        (project / ".kit/build.json").write_text(json.dumps({"repository": repository, "tag": tag}))
        return project, env_file

    return make


def test_push_with_the_right_credentials_logs_in_and_records_the_digest(small_build):
    user = need("KIT_TEST_AUTH_REGISTRY_USER", "the registry with a login")
    password = need("KIT_TEST_AUTH_REGISTRY_PASSWORD", "the registry with a login")
    project, env_file = small_build(need("KIT_TEST_AUTH_REGISTRY", "the registry with a login"),
                                    REGISTRY_USER=user, REGISTRY_PASSWORD=password)
    done = inv(project, env_file, "push")
    assert done.returncode == 0, done.stderr
    assert json.loads((project / ".kit/build.json").read_text())["digest"].startswith("sha256:")
    assert password not in done.stdout + done.stderr


def test_push_with_wrong_credentials_is_one_line(small_build):
    registry = need("KIT_TEST_AUTH_REGISTRY", "the registry with a login")
    project, env_file = small_build(registry, REGISTRY_USER=need("KIT_TEST_AUTH_REGISTRY_USER", "its user"),
                                    REGISTRY_PASSWORD="not-the-password")
    done = inv(project, env_file, "push")
    assert done.returncode == 1
    assert error_lines(done) == [
        f"error: login to {registry} as kit-ci failed (login attempt to http://{registry}/v2/ failed "
        f"with status: 401 Unauthorized); check REGISTRY_USER and REGISTRY_PASSWORD in {env_file}"]
    assert "not-the-password" not in done.stdout + done.stderr


def test_push_without_credentials_to_a_registry_that_needs_them_is_one_line(small_build):
    registry = need("KIT_TEST_AUTH_REGISTRY", "the registry with a login")
    project, env_file = small_build(registry)
    done = inv(project, env_file, "push")
    assert done.returncode == 1
    [line] = error_lines(done)
    assert line.startswith(f"error: push of {registry}/prefect-core:small-")
    assert line.endswith(f"check REGISTRY_USER and REGISTRY_PASSWORD in {env_file}")


def test_push_to_a_closed_port_is_one_line(small_build):
    port = free_port()
    project, env_file = small_build(f"127.0.0.1:{port}")
    done = inv(project, env_file, "push")
    assert done.returncode == 1
    [line] = error_lines(done)
    assert line.startswith(f"error: push of 127.0.0.1:{port}/prefect-core:small-")
    assert f"dial tcp 127.0.0.1:{port}: connect: connection refused" in line
    assert line.endswith(f"check REGISTRY in {env_file} and that the registry is running and reachable")


def test_registry_that_stops_in_the_middle_of_a_push_is_one_error(api, shipped, tmp_path):
    program = need_program("/usr/bin/docker-registry", "Debian's docker-registry")
    port = free_port()
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/storage\nhttp:\n  addr: 127.0.0.1:{port}\n")
    log = open(tmp_path / "registry.log", "w")
    server = subprocess.Popen([program, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        _, record = shipped
        repository = f"127.0.0.1:{port}/prefect-core"
        for tag in (record["tag"], image.LATEST):  # a repository of this test's own port: both tags are its own
            api.tag(f"{record['repository']}@{record['digest']}", repository, tag)
            docker_made("tag", f"{repository}:{tag}")
        current = settings.parse(env_text(f"127.0.0.1:{port}"))
        (tmp_path / ".kit").mkdir()
        (tmp_path / ".kit/build.json").write_text(json.dumps({"repository": repository, "tag": record["tag"]}))

        def stop_once_uploads_begin():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "PATCH /v2/prefect-core/blobs/uploads" not in \
                    (tmp_path / "registry.log").read_text():
                time.sleep(0.05)
            server.send_signal(signal.SIGKILL)

        stopper = threading.Thread(target=stop_once_uploads_begin)
        stopper.start()
        with pytest.raises(UserError) as caught:
            image.push(current, tmp_path, echo=lambda line: None)
        stopper.join()
    finally:
        server.kill()
        server.wait()
        log.close()
    [problem] = caught.value.problems
    assert problem.startswith(f"push of {repository}:{record['tag']} failed: ")
    assert problem.endswith("check REGISTRY in .env and that the registry is running and reachable")
    assert "\n" not in problem
