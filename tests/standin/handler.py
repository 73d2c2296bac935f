"""The HTTP side: what a request and an answer are, and the handler that speaks HTTP/1.1 to the real client.

Answers are JSON (or text for logs), chunked when they stream (watches, `follow` logs); warnings go out as
`Warning: 299 - "..."` headers, as the real server sends them.
"""

from __future__ import annotations

import json
import socket
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.standin.errors import ApiError
from tests.standin.store import StreamDropped

APPLY_TYPE = "application/apply-patch+yaml"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: object
    user_agent: str = ""
    status: int = 0
    # Every value of repeated parameters (exec's `command=` comes once per argument).
    values: dict[str, list[str]] = field(default_factory=dict)
    # FakeApi.fail(..., 0): carried out, then the connection is closed without the answer (its status stays 0).
    dropped: bool = False


@dataclass
class Answer:
    code: int
    body: object = None
    stream: object = None  # an iterator of byte chunks, sent with chunked encoding as it is produced
    content_type: str = "application/json"
    warnings: list[str] = field(default_factory=list)
    # A websocket sub-resource (exec, portforward): called with the handler, it takes the connection over.
    upgrade: object = None


def parse_body(raw: bytes, content_type: str):
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return yaml.safe_load(text) if content_type == APPLY_TYPE else json.loads(text)
    except (ValueError, yaml.YAMLError):
        return text


def warning_header(text: str) -> str:
    """RFC 7234 warn-code 299 with the agent "-", as k8s.io/apiserver/pkg/warning writes each warning."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch streams, as the real server speaks
    # Headers and body go out in separate writes: with Nagle's algorithm on, each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the signature is BaseHTTPRequestHandler's
        """Silent: FakeApi.requests is the log tests read."""

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a client hanging up mid-answer (a stopped watch, a follow) is routine for a server

    def do_GET(self):
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        values = parse_qs(url.query, keep_blank_values=True)
        query = {k: v[0] for k, v in values.items()}
        request = Request(self.command, url.path, query, content_type, parse_body(raw, content_type),
                          self.headers.get("User-Agent", ""), values=values)
        try:
            answer = self.server.api.answer(request, self.headers.get("Authorization", ""))
        except ApiError as error:
            answer = Answer(error.code, error.status())
        except Exception as error:  # noqa: BLE001 - a bug of the stand-in: say so, where the test shows it
            traceback.print_exc()
            answer = Answer(500, ApiError(500, "InternalError", f"stand-in bug: {error!r}").status())
        if request.dropped:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        request.status = answer.code
        if answer.upgrade is not None:
            answer.upgrade(self)
            self.close_connection = True
        elif answer.stream is None:
            self._send(answer)
        else:
            self._stream(answer)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _headers(self, answer: Answer) -> None:
        self.send_response(answer.code)
        self.send_header("Content-Type", answer.content_type)
        for warning in answer.warnings:
            self.send_header("Warning", warning_header(warning))

    def _send(self, answer: Answer) -> None:
        data = (answer.body if isinstance(answer.body, str) else json.dumps(answer.body)).encode()
        self._headers(answer)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, answer: Answer) -> None:
        self._headers(answer)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in answer.stream:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except StreamDropped:
            # No final chunk: the client sees the connection end mid-stream, as when the API server restarts.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
