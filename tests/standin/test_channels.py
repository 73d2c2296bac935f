"""pods/portforward and pods/exec over the channel protocols, driven only by the kubernetes client's own
`portforward` and `stream` against a minimal HTTP server whose handler answers the pod paths with tests/standin/channels.py.

The targets are real: an echo server, an HTTP server, a server that says one line and hangs up, local commands.
"""

import concurrent.futures
import functools
import hashlib
import http.client
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward, stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, V4_CHANNEL_PROTOCOL, V5_CHANNEL_PROTOCOL

from tests.services import free_port
from tests.standin.channels import is_upgrade, serve_exec, serve_portforward

NAMESPACE = "prefect"
POD = "prefect-server-0"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}"
GUARD = 30  # seconds: a bound on waits that would otherwise hang on a bug, never a claim about speed


class PodHandler(BaseHTTPRequestHandler):
    """The pod sub-resources wired as the stand-in's handler wires them: the query parsed here, the session there."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the signature is BaseHTTPRequestHandler's
        """Silent."""

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)

        def flag(name: str) -> bool:
            return query.get(name, ["false"])[0] == "true"

        if not is_upgrade(self.headers):
            self.send_error(400, "Upgrade request required")
        elif url.path == f"{PODS}/portforward":
            ports = [int(port) for value in query["ports"] for port in value.split(",")]
            serve_portforward(self, ports, self.server.connect)
        elif url.path == f"{PODS}/exec":
            serve_exec(self, query["command"], stdin=flag("stdin"), stdout=flag("stdout"), stderr=flag("stderr"),
                       tty=flag("tty"), run=self.server.run)
        else:
            self.send_error(404)


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.accepted.release()
        while data := self.request.recv(65536):
            self.request.sendall(data)
        self.server.ended.release()


class Goodbye(socketserver.BaseRequestHandler):
    """Says one line and hangs up."""

    def handle(self):
        self.request.sendall(b"bye\n")


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature is BaseHTTPRequestHandler's
        """Silent."""


def serving(server):
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


@pytest.fixture
def pods():
    """The pod server; `started` lists every process exec started."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PodHandler)
    server.connect = lambda port: socket.create_connection(("127.0.0.1", port))
    server.started = []

    def run(command):
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        server.started.append(process)
        return process

    server.run = run
    yield serving(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(pods):
    return CoreV1Api(ApiClient(Configuration(host=f"http://127.0.0.1:{pods.server_address[1]}")))


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.accepted = threading.Semaphore(0)
    server.ended = threading.Semaphore(0)
    yield serving(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def files(tmp_path):
    """An HTTP server of tmp_path holding `blob`, 1 MiB of random bytes."""
    (tmp_path / "blob").write_bytes(os.urandom(1 << 20))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(tmp_path)))
    server.blob = (tmp_path / "blob").read_bytes()
    yield serving(server)
    server.shutdown()
    server.server_close()


def port_of(server) -> int:
    return server.server_address[1]


def tunnel(api, *ports: int):
    return portforward(api.connect_get_namespaced_pod_portforward, POD, NAMESPACE,
                       ports=",".join(str(port) for port in ports))


def receive(sock, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        assert chunk, f"EOF with {left} of {size} bytes still to come"
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_to_eof(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


class TunnelConnection(http.client.HTTPConnection):
    """An HTTP connection over a port-forward socket instead of a TCP connection of its own."""

    def __init__(self, host, sock, **kwargs):
        super().__init__(host, **kwargs)
        self._tunnel_socket = sock

    def connect(self):
        self.sock = self._tunnel_socket


def fetch_through(api, server, path: str) -> tuple[int, bytes]:
    """urllib GET of path on server, through a port-forward of its own."""
    port = port_of(server)
    sock = tunnel(api, port).socket(port)
    sock.settimeout(GUARD)

    class Through(urllib.request.HTTPHandler):
        def http_open(self, request):
            return self.do_open(functools.partial(TunnelConnection, sock=sock), request)

    with urllib.request.build_opener(Through).open(f"http://{POD}:{port}{path}", timeout=GUARD) as response:
        return response.status, response.read()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- portforward

def test_concurrent_tunnels_each_dial_their_own_connection_and_close_it(api, echo):
    count = 4
    together = threading.Barrier(count, timeout=GUARD)

    def converse(number: int) -> bytes:
        forward = tunnel(api, port_of(echo))
        sock = forward.socket(port_of(echo))
        sock.settimeout(GUARD)
        message = f"hello from tunnel {number}\n".encode()
        sock.sendall(message)
        answer = receive(sock, len(message))
        together.wait()  # every tunnel is open at once
        sock.close()
        assert forward.error(port_of(echo)) is None
        return answer

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(converse, range(count)))

    assert answers == [f"hello from tunnel {number}\n".encode() for number in range(count)]
    for _ in range(count):
        assert echo.accepted.acquire(timeout=GUARD)
        assert echo.ended.acquire(timeout=GUARD), "a client's close must close its connection to the target"
    assert not echo.accepted.acquire(blocking=False), "one target connection per tunnel, no more"


def test_urllib_fetches_through_concurrent_tunnels(api, files):
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: fetch_through(api, files, "/blob"), range(3)))

    assert [(status, sha(body)) for status, body in answers] == [(200, sha(files.blob))] * 3


def test_megabytes_cross_both_ways_intact(api, echo):
    payload = os.urandom(4 << 20)
    sock = tunnel(api, port_of(echo)).socket(port_of(echo))
    sock.settimeout(GUARD)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = pool.submit(sock.sendall, payload)  # while the echo comes back: neither side may wait for the other
        received = receive(sock, len(payload))
        sent.result(timeout=GUARD)

    sock.close()
    assert sha(received) == sha(payload)


def test_one_tunnel_forwards_several_ports_on_their_own_channels(api, echo, files):
    forward = tunnel(api, port_of(files), port_of(echo))
    web, talk = forward.socket(port_of(files)), forward.socket(port_of(echo))
    for sock in (web, talk):
        sock.settimeout(GUARD)
    page = TunnelConnection(POD, sock=web)

    page.request("GET", "/blob")
    talk.sendall(b"ping\n")

    assert receive(talk, 5) == b"ping\n"
    response = page.getresponse()
    assert (response.status, sha(response.read())) == (200, sha(files.blob))
    web.close()
    talk.close()
    assert echo.ended.acquire(timeout=GUARD)


def test_a_target_that_hangs_up_closes_the_clients_socket(api):
    server = serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Goodbye))
    try:
        sock = tunnel(api, port_of(server)).socket(port_of(server))
        sock.settimeout(GUARD)
        assert read_to_eof(sock) == b"bye\n"
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_port_reaches_the_client_on_its_error_channel(api):
    port = free_port()  # nothing listens there
    forward = tunnel(api, port)
    sock = forward.socket(port)
    sock.settimeout(GUARD)

    assert sock.recv(1) == b""
    error = forward.error(port)
    assert error.startswith(f"error forwarding port {port} to pod {POD}, uid : ")
    assert f"dial tcp4 127.0.0.1:{port}: connect: connection refused" in error


# ---- exec

UPPER = "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper()); print(f'read {len(data)}', file=sys.stderr)"
COPY = "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)"


def execute(api, command, **streams):
    options = {"stdin": False, "stdout": True, "stderr": True, "tty": False, **streams}
    return stream(api.connect_get_namespaced_pod_exec, POD, NAMESPACE, command=command, **options)


def stdout_bytes(client) -> bytes:
    """stdout as it arrives, until the server closes: how a caller (binary=True, not preloaded) reads a file out."""
    pieces, deadline = [], time.monotonic() + GUARD
    while client.is_open() and time.monotonic() < deadline:
        client.update(timeout=GUARD)
        pieces.append(client.read_stdout(timeout=0))
    assert not client.is_open(), "the server ends the session once the command has exited"
    pieces.append(client.read_stdout(timeout=0))
    return b"".join(pieces)


def finished(client):
    client.run_forever(timeout=GUARD)
    assert not client.is_open(), "the server ends the session once the command has exited"
    return client


def test_exec_streams_stdin_in_and_stdout_and_stderr_out(api):
    client = execute(api, [sys.executable, "-c", UPPER], stdin=True, _preload_content=False)
    assert client.subprotocol == V5_CHANNEL_PROTOCOL

    client.write_stdin("hello, pod\n")
    client.close_channel(0)  # v5: the command reads EOF

    finished(client)
    assert client.read_stdout() == "HELLO, POD\n"
    assert client.read_stderr() == "read 11\n"
    assert yaml.safe_load(client.peek_channel(ERROR_CHANNEL)) == {"metadata": {}, "status": "Success"}
    assert client.returncode == 0


@pytest.mark.parametrize("subprotocol", [V5_CHANNEL_PROTOCOL, V4_CHANNEL_PROTOCOL])
@pytest.mark.parametrize("code", [0, 3])
def test_the_exit_code_reaches_returncode(api, code, subprotocol):
    command = [sys.executable, "-c", f"import sys; print('exiting'); sys.exit({code})"]
    client = execute(api, command, _preload_content=False, _headers={"sec-websocket-protocol": subprotocol})
    assert client.subprotocol == subprotocol

    finished(client)
    assert client.read_stdout() == "exiting\n"
    assert client.returncode == code


def test_a_failed_command_ends_with_the_kubelets_failure_status(api):
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    client = finished(execute(api, command, _preload_content=False))

    assert yaml.safe_load(client.peek_channel(ERROR_CHANNEL)) == {
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command [{' '.join(command)}], "
                   "exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }


def test_the_preloaded_form_returns_the_output(api):
    assert execute(api, [sys.executable, "-c", "print('ready')"]) == "ready\n"


def test_binary_output_passes_unchanged_with_binary_true(api, tmp_path):
    payload = bytes(range(256)) + os.urandom(1 << 20)  # not UTF-8
    (tmp_path / "db").write_bytes(payload)
    command = [sys.executable, "-c", "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read()); "
               "print('stderr was not asked for', file=sys.stderr)", str(tmp_path / "db")]

    output = execute(api, command, stderr=False, binary=True)

    assert isinstance(output, bytes) and sha(output) == sha(payload)


def test_binary_stdin_round_trips_and_stdout_reads_in_pieces(api):
    payload = bytes(range(256)) + os.urandom(1 << 20)
    client = execute(api, [sys.executable, "-c", COPY], stdin=True, binary=True, _preload_content=False)
    client.write_stdin(payload)
    client.close_channel(0)

    assert sha(stdout_bytes(client)) == sha(payload)
    assert client.read_stderr(timeout=0) == b""
    assert client.returncode == 0


def test_a_command_that_cannot_start_ends_with_an_internal_error(api):
    client = finished(execute(api, ["/nonexistent/sqlite3"], _preload_content=False))

    status = yaml.safe_load(client.peek_channel(ERROR_CHANNEL))
    assert (status["status"], status["reason"], status["code"]) == ("Failure", "InternalError", 500)
    assert 'exec: "/nonexistent/sqlite3": executable file not found in $PATH' in status["message"]


def test_a_client_that_leaves_ends_the_command(api, pods):
    command = [sys.executable, "-c", "import signal; print('up', flush=True); signal.pause()"]
    client = execute(api, command, stdin=True, _preload_content=False)
    assert client.readline_stdout(timeout=GUARD) == "up"
    client.close()

    assert pods.started[0].wait(timeout=GUARD) == -signal.SIGKILL


@pytest.mark.parametrize("subresource", ["exec", "portforward"])
def test_a_subprotocol_the_subresource_lacks_is_refused(api, subresource):
    with pytest.raises(ApiException) as refused:
        if subresource == "exec":
            execute(api, ["true"], _headers={"sec-websocket-protocol": "base64.channel.k8s.io"})
        else:
            portforward(api.connect_get_namespaced_pod_portforward, POD, NAMESPACE, ports="4200",
                        _headers={"sec-websocket-protocol": V5_CHANNEL_PROTOCOL})

    assert "400" in refused.value.reason and "requested protocol(s) are not supported" in refused.value.reason


def test_tty_is_refused_before_the_upgrade(api):
    with pytest.raises(ApiException) as refused:
        execute(api, ["sh"], stdin=True, stderr=False, tty=True)

    assert "400" in refused.value.reason and "no terminal" in refused.value.reason
