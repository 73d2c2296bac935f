"""A local HTTP proxy in front of a real server, for transient faults: a thread of the test process on a free
127.0.0.1 port that passes every request on and answers what the server answered, except the first `times` requests
of a kind a test names with `fail`:

- `fail("POST /api/work_pools/", 503)`: answered 503 without being passed on (a server too busy to take it);
- `fail("POST /api/deployments/", 0)`: passed on, then the connection is closed without the answer (the server did
  it, and the client cannot know).

A kind is a pattern over `METHOD PATH` (fnmatch: `*` matches any part of a path). `seen` logs every request with
the status its client got (0: dropped); `statuses(kind)` lists those of one kind.
"""

from __future__ import annotations

import fnmatch
import http.client
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Headers that describe one connection, not the message: never passed through.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
UPSTREAM_TIMEOUT = 120


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int  # what the client got; 0 when its connection was dropped


class FlakyProxy:
    def __init__(self, upstream: str):
        """`upstream`: the server's origin, e.g. http://127.0.0.1:4200 (paths are passed on as they come)."""
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.url = ""
        self.seen: list[Seen] = []
        self._faults: list[list] = []  # [pattern, code, times left]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FlakyProxy:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=lambda: self._server.serve_forever(poll_interval=0.05), name="flaky-proxy",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, kind: str, code: int, times: int = 1) -> None:
        """The next `times` requests of `kind` ("METHOD /path", fnmatch) fail with `code`; 0 drops their answer."""
        with self._lock:
            self._faults.append([kind, code, times])

    def statuses(self, kind: str) -> list[int]:
        with self._lock:
            return [seen.status for seen in self.seen if fnmatch.fnmatchcase(f"{seen.method} {seen.path}", kind)]

    def _fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                kind, code, times = fault
                if times > 0 and fnmatch.fnmatchcase(f"{method} {path}", kind):
                    fault[2] -= 1
                    return code
        return None

    def _saw(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.seen.append(Seen(method, path, status))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect of a server
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the signature is BaseHTTPRequestHandler's
        """Silent: FlakyProxy.seen is the log tests read."""

    def do_GET(self):
        proxy: FlakyProxy = self.server.proxy
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code = proxy._fault(self.command, path)
        if code:
            proxy._saw(self.command, path, code)
            self._answer(code, [("Content-Type", "application/json")],
                         json.dumps({"detail": f"injected by FlakyProxy: {code}"}).encode())
            return
        status, headers, data = self._pass_on(proxy, body)
        if code == 0:
            proxy._saw(self.command, path, 0)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        proxy._saw(self.command, path, status)
        self._answer(status, headers, data)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _pass_on(self, proxy: FlakyProxy, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            return response.status, [(name, value) for name, value in response.getheaders()
                                     if name.lower() not in HOP_BY_HOP], data
        finally:
            upstream.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
