"""pods/portforward and pods/exec as the stand-in serves them at its pod paths, through the client's own
portforward and stream functions (the protocols themselves are proven in test_channels.py)."""

import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward, stream

from tests.standin.samples import NS

POD = "prefect-server-0"


@pytest.fixture
def core(fakeapi):
    return client.CoreV1Api(config.new_client_from_config(config_file=fakeapi.kubeconfig, context=fakeapi.context))


@pytest.fixture
def running_pod(fakeapi):
    fakeapi.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    pod = fakeapi.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": NS},
                       "spec": {"automountServiceAccountToken": False,
                                "containers": [{"name": "server", "image": "prefecthq/prefect:3.9.1-python3.12"}]}})
    fakeapi.set_status("Pod", NS, POD, {"phase": "Running"})
    return pod


@pytest.fixture
def http_server():
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello through the tunnel"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def get_through(sock) -> bytes:
    sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def test_a_forwarded_pod_port_reaches_the_local_port_the_test_named(fakeapi, core, running_pod, http_server):
    fakeapi.forward(NS, POD, 4200, http_server)
    tunnel = portforward(core.connect_get_namespaced_pod_portforward, POD, NS, ports="4200")
    assert get_through(tunnel.socket(4200)).endswith(b"hello through the tunnel")
    tunnel.close()


def test_a_port_nothing_listens_on_is_the_kubelets_error_on_the_tunnel(fakeapi, core, running_pod):
    tunnel = portforward(core.connect_get_namespaced_pod_portforward, POD, NS, ports="9999")
    sock = tunnel.socket(9999)
    assert sock.recv(1) == b""
    # The kubelet: "error forwarding port 9999 to pod ..., uid : ... connect: connection refused"
    assert "9999" in tunnel.error(9999) and "refused" in tunnel.error(9999)
    tunnel.close()


def test_exec_runs_what_the_test_maps_the_command_onto(fakeapi, core, running_pod):
    seen = []

    def run(command, container):
        seen.append((command, container))
        return subprocess.Popen([sys.executable, *command[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    fakeapi.on_exec(NS, POD, run)
    session = stream(core.connect_get_namespaced_pod_exec, POD, NS, container="server",
                     command=["python", "-c", "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)"],
                     stdin=True, stdout=True, stderr=True, tty=False, binary=True, _preload_content=False)
    session.write_stdin(b"backup")
    session.close_channel(0)
    out = b""
    while session.is_open():
        session.update(timeout=5)
        out += session.read_stdout(timeout=0)
    assert out + session.read_stdout(timeout=0) == b"BACKUP"
    assert session.returncode == 3
    assert seen == [(["python", "-c", "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)"],
                     "server")]


def test_exec_into_a_container_the_pod_does_not_have_is_refused(fakeapi, core, running_pod):
    with pytest.raises(ApiException) as refused:
        stream(core.connect_get_namespaced_pod_exec, POD, NS, container="proxy", command=["true"],
               stdin=False, stdout=True, stderr=True, tty=False)
    assert "container proxy is not valid for pod prefect-server-0" in str(refused.value)


def test_a_pod_that_is_not_running_has_no_streams(fakeapi, core, running_pod):
    fakeapi.set_status("Pod", NS, POD, {"phase": "Pending"})
    with pytest.raises(ApiException) as refused:
        stream(core.connect_get_namespaced_pod_exec, POD, NS, command=["true"], stdin=False, stdout=True,
               stderr=True, tty=False)
    assert "unable to upgrade connection" in str(refused.value)


def test_exec_is_authorized_as_create_on_pods_exec(fakeapi, core, running_pod):
    fakeapi.forbid("create", "pods", subresource="exec")
    with pytest.raises(ApiException) as refused:
        stream(core.connect_get_namespaced_pod_exec, POD, NS, command=["true"], stdin=False, stdout=True,
               stderr=True, tty=False)
    # The client shows the handshake's answer, the Status JSON-escaped inside it.
    assert "Handshake status 403" in str(refused.value)
    assert 'cannot create resource \\"pods/exec\\"' in str(refused.value)
