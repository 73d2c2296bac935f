"""pods/portforward and pods/exec for the stand-in API server: a real websocket speaking the channel protocols.

The kubernetes client's own code (kubernetes/stream/ws_client.py: `portforward` and `stream`) runs against these
functions as it runs against a cluster. The stand-in's handler calls them with the BaseHTTPRequestHandler whose
request is the upgrade, the query already parsed; each completes the handshake on that connection (through the
`websockets` sans-I/O protocol), serves until the session ends and returns; the connection is then closed.

    is_upgrade(headers) -> bool
    serve_portforward(handler, ports, connect)      connect(port) -> a connected socket (raises OSError if not)
    serve_exec(handler, command, *, stdin, stdout, stderr, tty, run)
                                                    run(command) -> a Popen with binary pipes on all three streams

The wire, as a kubelet speaks it (and, for exec over v5, the API server's stream translator):
- Subprotocol: the first one the client offers, in the client's order, that the sub-resource supports: exec takes
  v5.channel.k8s.io and v4.channel.k8s.io, portforward v4.channel.k8s.io. The client offers v5 then v4, so exec
  runs v5 and portforward v4. A request offering none of them is refused with 400.
- Every message is binary: one byte of channel, then the payload. Output leaves in the pieces one read gave (at most
  32 KiB, the runtime's copy buffer), so a client meets frame boundaries anywhere, inside a UTF-8 character too.
- portforward: channels 2i (data) and 2i+1 (error) serve the i-th port of `ports=`; the first message on each is the
  port, 2 bytes little-endian. Each websocket dials its own TCP connection per port. A port that cannot be dialled
  gets the kubelet's "error forwarding port …" text on its error channel (the client then closes its socket for that
  port). When every port's target has closed or failed, the server closes the websocket: the client's sockets see
  EOF. v4 cannot close one channel, so a port whose target hung up sees EOF only when the last port is done.
- exec: channel 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize (read and ignored). An empty message on the lowest
  writable channel says the session is up. On v5 the client's [255, 0] closes the command's stdin (v4 cannot). Once
  the command has exited and all its output is sent, channel 3 carries the metav1.Status: Success, Failure with
  reason NonZeroExitCode and the exit code in details.causes, or InternalError when the command could not start. A
  channel the client did not ask for is not sent (the command's output there is read and dropped); without stdin
  the command reads EOF. Before the upgrade, a request for no stream at all is refused with the kubelet's 400.
- The server ends a session with a close frame and waits for the client's (at most CLOSE_TIMEOUT), as the API
  server's stream translator does, so output still in flight is never cut off by a reset. A client that leaves ends the
  session: the targets are disconnected, the command is killed.

Not modelled: the base64 and pre-v4 subprotocols, a client offering no subprotocol, tty (refused with 400: no
terminal is allocated), resize, the kubelet's 4 h idle timeout, the second the runtime keeps the client's direction
open after a target closes, and the SPDY-over-websocket tunnel that kubectl itself uses for port-forward.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.exceptions import NegotiationError
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
PORTFORWARD_PROTOCOLS = (V4,)
EXEC_PROTOCOLS = (V5, V4)

STDIN, STDOUT, STDERR, STATUS = range(4)
CLOSE_SIGNAL = 255  # v5: the client's [255, channel] closes that channel
CHUNK = 32 * 1024
CLOSE_TIMEOUT = 10.0  # seconds a client may take to answer the server's close frame


def is_upgrade(headers) -> bool:
    """A websocket upgrade request, tested as the API server tests it (wsstream.IsWebSocketRequest)."""
    connection = {token.strip().lower() for token in (headers.get("Connection") or "").split(",")}
    return (headers.get("Upgrade") or "").lower() == "websocket" and "upgrade" in connection


def serve_portforward(handler, ports: list[int], connect: Callable[[int], socket.socket]) -> None:
    """Serve one pods/portforward websocket: a data and an error channel per port, a TCP connection per port."""
    channels = _open(handler, PORTFORWARD_PROTOCOLS)
    if channels is None:
        return
    for index, port in enumerate(ports):
        prefix = port.to_bytes(2, "little")
        channels.send(2 * index, prefix)
        channels.send(2 * index + 1, prefix)
    targets: dict[int, socket.socket] = {}
    for index, port in enumerate(ports):
        try:
            targets[2 * index] = connect(port)
        except OSError as error:
            channels.send(2 * index + 1, forward_error(_pod_name(handler), port, error).encode())

    def deliver(channel: int, data: bytes) -> None:
        target = targets.get(channel)
        if target is not None:
            try:
                target.sendall(data)
            except OSError:
                pass  # the target is gone; its pump ends that port

    def disconnect() -> None:
        for target in targets.values():
            _shut(target)

    pumps = [_pump(target.recv, channels, channel) for channel, target in targets.items()]
    try:
        _run(channels, handler.rfile, pumps, finish=lambda: None, deliver=deliver, end=disconnect)
    finally:
        for target in targets.values():
            target.close()


def serve_exec(handler, command: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool,
               run: Callable[[list[str]], subprocess.Popen]) -> None:
    """Serve one pods/exec websocket: run(command), its streams over channels 0-2, its end as a Status on 3.

    run must start the command with stdin, stdout and stderr on pipes in binary mode (subprocess.PIPE, no text=).
    """
    if tty:
        _refuse(handler, "the stand-in allocates no terminal: exec with tty=false")
        return
    if not (stdin or stdout or stderr):
        _refuse(handler, "you must specify at least 1 of stdin, stdout, stderr")
        return
    channels = _open(handler, EXEC_PROTOCOLS)
    if channels is None:
        return
    channels.send(STDOUT if stdout else STDERR if stderr else STATUS)
    try:
        process = run(command)
    except OSError as error:
        status = internal_error(start_failure(command, error))
        _run(channels, handler.rfile, [], finish=lambda: channels.send(STATUS, _encode(status)),
             deliver=_ignore, end=lambda: None)
        return
    with process:
        if not stdin:
            _close(process.stdin)

        def deliver(channel: int, data: bytes) -> None:
            if channel == STDIN and stdin:
                try:
                    process.stdin.write(data)
                    process.stdin.flush()
                except (OSError, ValueError):
                    pass  # the command no longer reads its stdin, or the client closed it

        def close_channel(channel: int) -> None:
            if channel == STDIN:
                _close(process.stdin)

        def end() -> None:
            _close(process.stdin)
            if process.poll() is None:
                process.kill()  # the client left before the command ended

        def finish() -> None:
            channels.send(STATUS, _encode(exec_status(command, process.wait())))

        pumps = [_pump(functools.partial(os.read, process.stdout.fileno()), channels, STDOUT if stdout else None),
                 _pump(functools.partial(os.read, process.stderr.fileno()), channels, STDERR if stderr else None)]
        _run(channels, handler.rfile, pumps, finish=finish, deliver=deliver, close_channel=close_channel, end=end)


# ---- the Status documents and error texts, as the kubelet and the container runtime word them

def exec_status(command: list[str], returncode: int) -> dict:
    """The Status the kubelet writes on the error channel when the command has exited."""
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = returncode if returncode > 0 else 128 - returncode  # killed by a signal: the runtime reports 128 + N
    return {
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error(message: str) -> dict:
    """apierrors.NewInternalError as JSON: what the kubelet writes when the exec itself failed."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


def start_failure(command: list[str], error: OSError) -> str:
    """The runtime's words for a command that could not start."""
    cause = ("executable file not found in $PATH" if isinstance(error, FileNotFoundError)
             else (error.strerror or str(error)).lower())
    return (f"error executing command in container: failed to exec in container: OCI runtime exec failed: exec "
            f'failed: unable to start container process: exec: "{command[0] if command else ""}": {cause}: unknown')


def forward_error(pod: str, port: int, error: OSError) -> str:
    """The kubelet's error-channel text for a port containerd 2 could not dial (in a host-network sandbox)."""
    reason = (error.strerror or str(error)).lower()  # Go words an errno in lower case
    return (f"error forwarding port {port} to pod {pod}, uid : failed to execute portforward in network namespace "
            f'"host": IPv4: dial tcp4 127.0.0.1:{port}: connect: {reason} '
            f"IPv6: dial tcp6 [::1]:{port}: connect: {reason}")


def _encode(status: dict) -> bytes:
    return json.dumps(status, separators=(",", ":")).encode()


def _pod_name(handler) -> str:
    """The pod of …/pods/NAME/portforward (the runtime names the sandbox; the pod's name stands in for it)."""
    return urlsplit(handler.path).path.rstrip("/").split("/")[-2]


# ---- the session: pumps feed the channels while the handler's thread reads the client

def _run(channels: _Channels, rfile, pumps: list[Callable[[], None]], *, finish: Callable[[], object],
         deliver: Callable[[int, bytes], None], end: Callable[[], None],
         close_channel: Callable[[int], None] | None = None) -> None:
    """Run the pumps; once all are done, finish() and close. When the client is done, end() stops what still runs."""
    threads = [threading.Thread(target=pump, daemon=True) for pump in pumps]
    for thread in threads:
        thread.start()

    def conclude() -> None:
        for thread in threads:
            thread.join()
        finish()
        channels.close()

    closer = threading.Thread(target=conclude, daemon=True)
    closer.start()
    try:
        channels.serve(rfile, deliver, close_channel)
    finally:
        end()
        closer.join()


def _pump(read: Callable[[int], bytes], channels: _Channels, channel: int | None) -> Callable[[], None]:
    """Copy a target's output to one channel (None: read and drop) until EOF or the connection closing."""
    def pump() -> None:
        while True:
            try:
                data = read(CHUNK)
            except OSError:
                return
            if not data or (channel is not None and not channels.send(channel, data)):
                return
    return pump


def _ignore(channel: int, data: bytes) -> None:
    """Client data on a session that has nothing to feed."""


def _close(pipe) -> None:
    try:
        pipe.close()
    except OSError:
        pass  # the command is gone; what it did not read is lost, as with a real pipe


def _shut(sock: socket.socket) -> None:
    """Wake whatever thread is blocked on the socket: shutdown, unlike close, interrupts a blocked recv."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected


# ---- the websocket

def _refuse(handler, message: str) -> None:
    """Answer before the upgrade, as the kubelet's http.Error does."""
    body = f"{message}\n".encode()
    handler.close_connection = True
    handler.send_response(400)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _first_offered(supported: tuple[str, ...]):
    """wsstream's rule: the first subprotocol in the client's order that the server supports."""
    def select(protocol: ServerProtocol, offered: list[str]) -> str:
        for name in offered:
            if name in supported:
                return name
        raise NegotiationError(f"requested protocol(s) are not supported: {offered}; supports {list(supported)}")
    return select


def _open(handler, supported: tuple[str, ...]) -> _Channels | None:
    """Complete the opening handshake on the handler's connection; None if refused (the refusal is sent)."""
    handler.close_connection = True  # after an upgrade nothing more on this connection is HTTP
    handler.connection.settimeout(None)  # a session idles far longer than a request may (the kubelet allows 4 h)
    # Small frames must leave at once, as from Go, whose TCP connections all run without Nagle's algorithm.
    handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    protocol = ServerProtocol(select_subprotocol=_first_offered(supported), max_size=None)
    # The handler has parsed the request already: replay it, so that the protocol checks it and moves to OPEN.
    head = [handler.requestline, *(f"{name}: {value}" for name, value in handler.headers.items()), "", ""]
    protocol.receive_data("\r\n".join(head).encode("latin-1"))
    events = protocol.events_received()
    if not events:
        _refuse(handler, f"not a websocket handshake: {protocol.handshake_exc}")
        return None
    response = protocol.accept(events[0])
    protocol.send_response(response)
    handler.connection.sendall(b"".join(protocol.data_to_send()))
    return _Channels(handler.connection, protocol) if response.status_code == 101 else None


class _Channels:
    """One upgraded connection: channel messages out in the order they are made, the client's frames in.

    Sending and receiving never wait for each other (as in the kubelet, where reads and writes run apart): the
    protocol object is held only to make or parse frames, never while the socket blocks. A client blocked writing
    a large message to a server blocked writing output would otherwise deadlock.
    """

    def __init__(self, sock: socket.socket, protocol: ServerProtocol):
        self._sock = sock
        self._protocol = protocol
        self.subprotocol = protocol.subprotocol
        self._state = threading.Lock()  # the protocol object is not thread-safe
        self._writing = threading.Lock()  # one writer at a time, so bytes leave in the order frames were made
        self._ended = threading.Event()  # the client's side is over: close handshake done, EOF, or error

    def send(self, channel: int, data: bytes = b"") -> bool:
        """Send one message on a channel; False once the connection is closing or gone (the sender stops)."""
        with self._writing:
            with self._state:
                if self._protocol.state is not OPEN:
                    return False
                self._protocol.send_binary(bytes([channel]) + data)
                out = self._protocol.data_to_send()
            return self._write(out)

    def close(self) -> None:
        """Start the closing handshake and wait for the client's answer (cut off after CLOSE_TIMEOUT)."""
        with self._writing:
            with self._state:
                if self._protocol.state is OPEN:
                    self._protocol.send_close()
                out = self._protocol.data_to_send()
            self._write(out)
        if not self._ended.wait(CLOSE_TIMEOUT):
            _shut(self._sock)

    def serve(self, rfile, deliver: Callable[[int, bytes], None],
              close_channel: Callable[[int], None] | None) -> None:
        """Read the client until its side is over, handing each data frame's payload to deliver(channel, data)."""
        channel = None  # a fragmented message's channel: only its first frame carries it
        try:
            while True:
                try:
                    data = rfile.read1(2 * CHUNK)
                except OSError:
                    data = b""
                with self._state:
                    if data:
                        self._protocol.receive_data(data)
                    else:
                        self._protocol.receive_eof()
                    events = self._protocol.events_received()
                    out = self._protocol.data_to_send()  # the protocol's answers: pong, close, EOF
                if out:
                    with self._writing:
                        self._write(out)
                for frame in events:
                    if frame.opcode in (OP_BINARY, OP_TEXT) and frame.data:
                        if self.subprotocol == V5 and frame.data[0] == CLOSE_SIGNAL:
                            if close_channel is not None and len(frame.data) == 2:
                                close_channel(frame.data[1])
                            continue
                        channel, payload = frame.data[0], frame.data[1:]
                    elif frame.opcode == OP_CONT:
                        payload = frame.data
                    else:
                        continue  # control frames: the protocol has answered them
                    deliver(channel, payload)
                if not data or SEND_EOF in out:
                    return
        finally:
            self._ended.set()

    def _write(self, out: list[bytes]) -> bool:
        try:
            for data in out:
                if data == SEND_EOF:
                    self._sock.shutdown(socket.SHUT_WR)  # after the closing handshake the server ends TCP first
                else:
                    self._sock.sendall(data)
        except OSError:
            _shut(self._sock)  # the client is gone: end the reader too
            return False
        return True
