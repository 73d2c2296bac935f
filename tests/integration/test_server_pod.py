"""The rendered server pod, run for real (tests/integration/server_pod.py): Prefect behind the login proxy, each
with its container's rendered args, environment and mounts, in a network namespace whose firewall is the
rendered NetworkPolicy. Clients on this machine play the route's data plane and the workers: they reach the
pod the way those do, through the port the Services target."""

import base64
import json
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
import uuid

import pytest

from kit import manifests
from tests.integration.prefect_server import PREFECT, clean_environment, stop
from tests.integration.server_pod import container_port, server_pod
from tests.rendering import VALID, render
from tests.services import free_port, need_program, port_open

LOGIN = f"{VALID['LOGIN_USER']}:{VALID['LOGIN_PASSWORD']}"
PYTHON = PREFECT.rsplit("/", 1)[0] + "/python"
# Bounds on waiting for other processes; each wait ends as soon as what it waits for has happened.
EVENT_WAIT = 120
WORKER_WAIT = 180


@pytest.fixture(scope="module")
def objects():
    return render()


@pytest.fixture(scope="module")
def pod(objects):
    with server_pod(objects) as running:
        yield running


@pytest.fixture(scope="module")
def url(pod, objects):
    """Where the Services send traffic: the pod's port that they target (named http)."""
    (port,) = manifests.find(objects, "Service", "prefect-server")["spec"]["ports"]
    return pod.url(port["targetPort"], objects)


def request(url, *, method="GET", credentials=None, body=None, headers=()):
    """(status, headers, body) of one HTTP request; credentials as user:password for a Basic header."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    call = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    if data is not None:
        call.add_header("Content-Type", "application/json")
    if credentials:
        call.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(call, timeout=60) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def client_env(pod, api_url, **extra):
    home = pod.root / f"client-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    return clean_environment({"HOME": str(home), "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
                              "PREFECT_API_AUTH_STRING": LOGIN, **extra})


def test_the_site_asks_for_the_login(url):
    status, headers, _ = request(f"{url}/")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="Prefect"'


def test_the_env_user_and_password_open_the_ui(url):
    status, _, body = request(f"{url}/", credentials=LOGIN)
    assert status == 200 and b"<html" in body.lower()
    assert request(f"{url}/ui-settings", credentials=LOGIN)[0] == 200


def test_a_wrong_password_is_refused(url):
    assert request(f"{url}/", credentials=f"{VALID['LOGIN_USER']}:wrong-password-123")[0] == 401


def test_health_needs_no_login(url):
    assert request(f"{url}/api/health")[0] == 200


def test_the_api_is_checked_by_prefect_itself(url):
    assert request(f"{url}/api/flows/filter", method="POST", body={})[0] == 401
    status, _, body = request(f"{url}/api/flows/filter", method="POST", body={}, credentials=LOGIN)
    assert (status, json.loads(body)) == (200, [])


def test_the_ui_gets_the_relative_api_url(url):
    _, _, body = request(f"{url}/ui-settings", credentials=LOGIN)
    assert json.loads(body)["api_url"] == "/api"


def test_prefects_own_port_is_closed_from_outside_the_pod(pod, objects):
    prefect = container_port(objects, "prefect")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((pod.ip, prefect), timeout=10).close()
    # It is open inside the pod, on the pod's address, as the kubelet's probes need: only the policy closes it.
    inside = pod.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{pod.ip}:{prefect}/api/health",
                     capture_output=True, text=True, timeout=60)
    assert inside.stdout == "200"


def test_a_log_batch_of_3_9_mb_goes_through_and_the_proxys_limit_is_real(url):
    def batch(total):
        flow_run = str(uuid.uuid4())
        message = "x" * 975_000
        count = total // len(message)
        logs = [{"name": "kit.test", "level": 20, "message": message, "timestamp": "2026-12-01T00:00:00Z",
                 "flow_run_id": flow_run} for _ in range(count)]
        return flow_run, json.dumps(logs).encode()

    flow_run, body = batch(3_900_000)
    assert len(body) > 3_800_000
    assert request(f"{url}/api/logs/", method="POST", body=body, credentials=LOGIN)[0] == 201
    _, _, stored = request(f"{url}/api/logs/filter", method="POST", credentials=LOGIN,
                           body={"logs": {"flow_run_id": {"any_": [flow_run]}}})
    assert len(json.loads(stored)) == 4
    assert request(f"{url}/api/logs/", method="POST", body=batch(20_000_000)[1], credentials=LOGIN)[0] == 413


SUBSCRIBER = textwrap.dedent("""
    import asyncio, datetime, sys
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    async def main():
        now = datetime.datetime.now(datetime.timezone.utc)
        wanted = EventFilter(event=EventNameFilter(name=[sys.argv[1]]),
                             occurred=EventOccurredFilter(since=now, until=now + datetime.timedelta(hours=1)))
        async with get_events_subscriber(filter=wanted) as subscriber:
            print("subscribed", flush=True)
            async for event in subscriber:
                print("received", event.id, flush=True)
                return

    asyncio.run(main())
""")
EMITTER = textwrap.dedent("""
    import asyncio, sys
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    async def main():
        async with get_events_client() as client:
            event = Event(event=sys.argv[1], resource={"prefect.resource.id": "kit.test.proxy"})
            await client.emit(event)
            print(event.id, flush=True)

    asyncio.run(main())
""")


def test_an_events_subscriber_through_the_proxy_receives_what_another_client_emits(pod, url):
    name = f"kit.test.{uuid.uuid4().hex[:8]}"
    subscriber = subprocess.Popen([PYTHON, "-c", SUBSCRIBER, name], env=client_env(pod, f"{url}/api"),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert subscriber.stdout.readline().strip() == "subscribed"
        emitted = subprocess.run([PYTHON, "-c", EMITTER, name], env=client_env(pod, f"{url}/api"),
                                 capture_output=True, text=True, timeout=EVENT_WAIT)
        assert emitted.returncode == 0, emitted.stderr
        received = subscriber.communicate(timeout=EVENT_WAIT)[0]
        assert f"received {emitted.stdout.strip()}" in received
    finally:
        stop(subscriber)
    assert " /api/events/out HTTP/1.1\" 101 " in pod.log("proxy")
    assert " /api/events/in HTTP/1.1\" 101 " in pod.log("proxy")


def test_a_worker_through_the_proxy_heartbeats_over_its_websocket_and_is_online(pod, url):
    pool = f"edge-{uuid.uuid4().hex[:6]}"
    worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
                              env=client_env(pod, f"{url}/api"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + WORKER_WAIT
        statuses = []
        while "ONLINE" not in statuses:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, f"no ONLINE worker in pool {pool}: {statuses}"
            status, _, body = request(f"{url}/api/work_pools/{pool}/workers/filter", method="POST", body={},
                                      credentials=LOGIN)
            statuses = [entry["status"] for entry in json.loads(body)] if status == 200 else []
            time.sleep(0.5)
    finally:
        stop(worker)
    assert f" /api/work_pools/{pool}/workers/connect HTTP/1.1\" 101 " in pod.log("proxy")


def test_a_controller_that_knows_no_nginx_annotation_still_gets_the_login(pod, objects, tmp_path):
    """Debian's haproxy doing plain host routing to the Service's target port, as any ingress controller does."""
    haproxy = need_program("/usr/sbin/haproxy", "haproxy")
    (service_port,) = manifests.find(objects, "Service", "prefect-server")["spec"]["ports"]
    listen = free_port()
    (tmp_path / "haproxy.cfg").write_text(textwrap.dedent(f"""
        defaults
            mode http
            timeout connect 5s
            timeout client 60s
            timeout server 60s
        frontend routes
            bind 127.0.0.1:{listen}
            use_backend prefect if {{ hdr(host) -i {VALID['PUBLIC_HOST']} }}
        backend prefect
            server pod {pod.ip}:{container_port(objects, service_port['targetPort'])}
    """))
    process = subprocess.Popen([haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        route = f"http://127.0.0.1:{listen}"
        host = {"Host": VALID["PUBLIC_HOST"]}
        deadline = time.monotonic() + 20
        while not port_open(listen):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
            time.sleep(0.05)
        status, headers, _ = request(f"{route}/", headers=host)
        assert (status, headers["WWW-Authenticate"]) == (401, 'Basic realm="Prefect"')
        assert request(f"{route}/", headers=host, credentials=LOGIN)[0] == 200
        assert request(f"{route}/api/health", headers=host)[0] == 200
        assert request(f"{route}/", headers={"Host": "another.company.local"})[0] == 503, "routing by host"
    finally:
        stop(process)

