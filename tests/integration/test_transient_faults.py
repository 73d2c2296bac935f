"""`inv pools`, `inv status` and `inv flows` against a real Prefect server behind tests/integration/flaky_proxy.py,
which answers 503 to, or drops the answer of, the first requests of a kind: the end state is right and every object
is made once (counted on the server itself), past RETRY_DEADLINE there is one line, and a 401 is asked once.

Short deadlines keep the module quick: the pauses of the kit's policy start at 0.2 s, and Prefect's own client in
`prefect deploy` pauses 2 s before its one retry that a 2 s deadline allows.
"""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kit import ROOT, flows, pool_config, pools, prefect_api, settings
from kit.errors import UserError
from tests.integration.flaky_proxy import FlakyProxy
from tests.integration.prefect_server import clean_environment
from tests.rendering import IMAGE
from tests.services import nowhere_kubeconfig

FLAKY = """
pools:
  - name: flaky
    type: process
    queues:
      - {name: flaky-a, priority: 1}
      - {name: flaky-b, priority: 2}
"""
DROPPED = "RemoteProtocolError: Server disconnected without sending a response."


@pytest.fixture
def proxy(kit_server):
    flaky = FlakyProxy(kit_server.api_url.removesuffix("/api")).start()
    flaky.api_url = f"{flaky.url}/api"
    yield flaky
    flaky.stop()


@pytest.fixture
def pools_file(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text(FLAKY)
    return path


def patient(kit_settings, seconds=10):
    return replace(kit_settings, retry_deadline=seconds)


def on_the_server(kit_settings, kit_server):
    """Every work pool and its queues' names, read from the server itself (not through the proxy)."""
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        return {pool.name: sorted(queue.name for queue in client.read_work_queues(work_pool_name=pool.name))
                for pool in client.read_work_pools()}


def test_pools_meets_503s_and_a_lost_create_answer_and_makes_each_object_once(kit_settings, kit_server, proxy,
                                                                              pools_file):
    proxy.fail("POST /api/work_pools/", 503, times=2)
    proxy.fail("POST /api/work_pools/flaky/queues", 0)  # the first queue is created, and its answer lost
    lines = []
    pools.sync(patient(kit_settings), proxy.api_url, path=pools_file, out=lines.append)

    assert lines == [
        f"prefect: {proxy.api_url} (--api-url)",
        "prefect: POST /api/work_pools/ failed (HTTP 503); again in 0.2 s, from a fresh read of the server",
        "prefect: POST /api/work_pools/ failed (HTTP 503); again in 0.4 s, from a fresh read of the server",
        f"prefect: POST /api/work_pools/flaky/queues failed ({DROPPED}); again in 0.8 s, from a fresh read of the "
        "server",
        # The last try's plan, made from what the server held by then.
        "unchanged pool flaky",
        "unchanged queue flaky/flaky-a",
        "created queue flaky/flaky-b",
    ]
    assert proxy.statuses("POST /api/work_pools/") == [503, 503, 201]
    assert proxy.statuses("POST /api/work_pools/flaky/queues") == [0, 201], "the lost create was not sent again"
    assert on_the_server(kit_settings, kit_server)["flaky"] == ["default", "flaky-a", "flaky-b"]

    again = []
    pools.sync(patient(kit_settings), proxy.api_url, path=pools_file, out=again.append)
    assert again[1:] == ["unchanged pool flaky", "unchanged queue flaky/flaky-a", "unchanged queue flaky/flaky-b"]


def test_status_reads_again_after_a_dropped_answer_and_a_503(kit_settings, kit_server, proxy, pools_file):
    pools.sync(patient(kit_settings), kit_server.api_url, path=pools_file, out=lambda line: None)
    proxy.fail("POST /api/work_pools/filter", 0)
    proxy.fail("POST /api/work_pools/flaky/queues/filter", 503)
    lines = pools.status(patient(kit_settings), proxy.api_url)
    assert lines[1:3] == [
        f"prefect: POST /api/work_pools/filter failed ({DROPPED}); again in 0.2 s, from a fresh read of the server",
        "prefect: POST /api/work_pools/flaky/queues/filter failed (HTTP 503); again in 0.4 s, from a fresh read of "
        "the server",
    ]
    # The tables read after the retries: a row by its first column.
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line.strip()}
    assert rows["flaky"] == ["process", "not", "ready", "unlimited"]
    assert rows["flaky/flaky-b"] == ["not", "ready", "unlimited", "0"]


def test_past_the_deadline_inv_pools_is_one_line(kit_server, proxy, tmp_path):
    env_file = tmp_path / "staging.env"
    text = settings.fill_template((ROOT / ".env.example").read_text(),
                                  {"LOGIN_PASSWORD": "never-asked-for-it", "RETRY_DEADLINE": "1"})
    settings.write_env_file(env_file, text)
    # config/pools.yaml's kubernetes pool needs a cluster only for its template's dry run, after the first read.
    kubeconfig = nowhere_kubeconfig(tmp_path / "kubeconfig")
    proxy.fail("GET /api/work_pools/production", 503, times=1000)
    done = subprocess.run([str(Path(sys.executable).parent / "inv"), "pools", "--api-url", proxy.api_url, "--tag", "v1"],
                          cwd=ROOT, env=clean_environment({"KIT_ENV_FILE": str(env_file), "KUBECONFIG": str(kubeconfig)}),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == (
        f"error: Prefect API {proxy.api_url}: GET /api/work_pools/production kept failing (HTTP 503), retried for 1 s "
        "(RETRY_DEADLINE); is the server overloaded or restarting (`inv status`)? Run the command again once it "
        "answers\n")
    assert len(proxy.statuses("GET /api/work_pools/production")) > 1
    assert "never-asked-for-it" not in done.stdout + done.stderr


def test_a_401_is_asked_once(kit_settings, proxy, pools_file):
    wrong = replace(patient(kit_settings), login_password="not-the-password")
    with pytest.raises(UserError, match=r"LOGIN_USER/LOGIN_PASSWORD: .* answered 401 Unauthorized"):
        pools.sync(wrong, proxy.api_url, path=pools_file, out=lambda line: None)
    with pytest.raises(UserError, match=r"LOGIN_USER/LOGIN_PASSWORD: .* answered 401 Unauthorized"):
        flows.deploy(wrong, proxy.api_url, out=lambda line: None)
    assert [(seen.method, seen.path, seen.status) for seen in proxy.seen] == [
        ("GET", "/api/health", 200), ("GET", "/api/work_pools/flaky", 401),
        ("GET", "/api/health", 200), ("GET", "/api/work_pools/production", 401)]


def hello_deployments(kit_settings, kit_server):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["hello"])))
        flows_named = client.read_flows()
    return [deployment.name for deployment in found], [flow.name for flow in flows_named]


@pytest.fixture
def production_pool(kit_settings, kit_server):
    """config/pools.yaml's pools on the server, as a rollout leaves them, for flows/prefect.yaml's deployment."""
    declared = pool_config.load()
    with prefect_api.connect(kit_settings, kit_server.api_url) as client:
        pools.write(client, declared, pools.kubernetes_templates(kit_settings, declared, {"production": IMAGE}))


def test_flows_meets_a_503_and_a_lost_deployment_answer_and_makes_one_deployment(kit_settings, kit_server, proxy,
                                                                                 production_pool):
    proxy.fail("POST /api/flows/", 503)
    proxy.fail("POST /api/deployments/", 0)  # the deployment is made, and its answer lost
    flows.deploy(patient(kit_settings, 2), proxy.api_url, out=lambda line: None)

    assert proxy.statuses("POST /api/flows/") == [503, 201]
    assert proxy.statuses("POST /api/deployments/") == [0, 200], "sent again: an upsert, which found it made"
    assert hello_deployments(kit_settings, kit_server) == (["hello"], ["hello"])


def test_past_the_deadline_flows_fails_in_one_line_of_the_kits(kit_settings, proxy, production_pool):
    proxy.fail("GET /api/deployments/name/hello/hello", 503, times=1000)  # its first look: does it exist?
    with pytest.raises(UserError) as raised:
        flows.deploy(patient(kit_settings, 2), proxy.api_url, out=lambda line: None)
    assert raised.value.problems == (
        "flows/prefect.yaml: `prefect deploy --all` failed (exit 1); its output above says why (a busy server's "
        "answers were retried for up to 2 s, RETRY_DEADLINE)",)
    # Prefect's client fits one retry, 2 s after the first try, into a 2 s deadline.
    assert proxy.statuses("GET /api/deployments/name/hello/hello") == [503, 503]
