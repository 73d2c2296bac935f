"""How the kit decides its way to Prefect, against real sockets: the probe of the public URL, and the way
the rest goes (the port-forward itself needs the stand-in's portforward: tests/integration/test_kubernetes_worker.py)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kit import access, manifests
from kit.errors import UserError
from tests.rendering import make_settings
from tests.services import free_port


class Health(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature is BaseHTTPRequestHandler's
        """Silent."""

    def do_GET(self):
        found = self.path == "/api/health"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", "4" if found else "0")
        self.end_headers()
        if found:
            self.wfile.write(b"true")


@pytest.fixture
def health():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_whose_health_answers_is_used(health):
    assert access.probe(f"{health}/api") is None


def test_a_url_that_answers_something_else_is_not(health):
    assert access.probe(f"{health}/elsewhere") == "answers HTTP 404 on /health"


@pytest.mark.parametrize("url", [f"http://127.0.0.1:{free_port()}/api", "http://prefect.kit-test.invalid/api"])
def test_a_refused_connection_or_an_unknown_name_is_a_reason_at_once(url):
    reason = access.probe(url)
    assert reason.startswith("does not answer: ConnectError: "), reason


def test_api_url_wins_and_says_so(health):
    lines = []
    with access.prefect_url(make_settings(), f"{health}/api/", out=lines.append) as url:
        assert url == f"{health}/api"
    assert lines == [f"prefect: {health}/api (--api-url)"]


def test_without_the_public_url_or_a_cluster_the_one_line_says_both(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UserError) as raised:
        with access.prefect_url(make_settings(PUBLIC_HOST="prefect.kit-test.invalid"), out=lambda line: None):
            pass
    (problem,) = raised.value.problems
    assert problem.startswith("Prefect API: the public URL does not answer: ConnectError: ")
    assert "there is no port-forward to the server instead: KUBE_CONTEXT: no kubeconfig at " in problem


def test_the_port_forward_goes_where_the_server_service_sends_traffic():
    objects = manifests.load()
    # The login proxy's port (named http), as the route's: /api passes it to Prefect unasked.
    assert access.server_endpoint(objects) == ("app.kubernetes.io/component=server,app.kubernetes.io/name=prefect",
                                               8080)
    # Which port that is stays the Service's to say: pointed at Prefect's own, the port-forward follows.
    manifests.find(objects, "Service", "prefect-server")["spec"]["ports"][0]["targetPort"] = "prefect"
    assert access.server_endpoint(objects)[1] == 4200
