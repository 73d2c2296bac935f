"""`inv ui` through the real client against the stand-in: a port-forward to the server pod's proxy port that
answers, prints the URL and the user (never the password), and ends with one line when the pod goes away."""

import re
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kit import access, manifests, ui
from kit.errors import UserError
from tests.contract.clusterkit import NS, Lines, deployed, discovery_cache, settings  # noqa: F401

POD = "prefect-server-0"


@pytest.fixture
def proxy(deployed):
    """A local HTTP server standing in for the pod's login proxy, where the stand-in's kubelet forwards to."""

    class Login(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Prefect"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Login)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, port = access.server_endpoint(manifests.load())
    deployed.forward(NS, POD, port, server.server_address[1])
    yield server
    server.shutdown()


def start(settings, port=0):
    lines, failure = [], []
    opened = threading.Event()

    def run():
        try:
            ui.serve(settings, port, out=lambda line: (lines.append(line), opened.set()))
        except UserError as error:
            failure.extend(error.problems)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert opened.wait(10), "inv ui printed nothing"
    return lines, failure, thread


def test_the_ui_answers_through_the_port_forward_as_the_proxy_does(proxy, settings):
    lines, failure, thread = start(settings)
    (line,) = lines
    url = re.match(r"UI: (http://127\.0\.0\.1:\d+/) \(through pod/prefect-server-0\); log in as admin with "
                   r"LOGIN_PASSWORD of \.env; Ctrl-C ends it$", line)[1]
    assert settings.login_password not in line
    with pytest.raises(urllib.error.HTTPError) as asked:
        urllib.request.urlopen(url, timeout=10)
    assert asked.value.code == 401 and asked.value.headers["WWW-Authenticate"] == 'Basic realm="Prefect"'
    assert thread.is_alive() and failure == []


def test_the_ui_ends_with_one_line_when_the_pod_goes_away(proxy, deployed, settings):
    _, failure, thread = start(settings)
    deployed.delete("Pod", NS, POD)
    thread.join(20)
    assert not thread.is_alive()
    assert failure == [f"pod/{POD}: stopped serving (deleted, restarting or not ready), so the UI is closed; run "
                       "`inv ui` again once `inv status` shows the server ready"]


def test_a_port_that_is_taken_is_one_line(proxy, settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as raised:
            ui.serve(settings, port, out=Lines())
    (problem,) = raised.value.problems
    assert problem.startswith(f"--port: cannot listen on 127.0.0.1:{port} (Address already in use)")


def test_without_a_ready_server_pod_there_is_nothing_to_open(deployed, settings):
    deployed.delete("Pod", NS, POD)
    with pytest.raises(UserError, match=f"^no server pod is ready to port-forward to in namespace {NS}"):
        ui.serve(settings, out=Lines())
