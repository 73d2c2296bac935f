"""`kubectl port-forward` in-process: a listener on 127.0.0.1 whose every accepted connection is carried
to a port of a pod through the API server (`kubernetes.stream.portforward`), for as long as the
`with` block runs.

The client's tunnel carries a single connection (its socket is one end of a socketpair), so each
accepted connection gets a tunnel of its own, as kubectl opens a stream per connection.
"""

from __future__ import annotations

import os
import select
import socket
import threading

from kit.errors import UserError

# Bytes moved per read; the client's own proxy thread reads 1 MiB at a time as well.
_CHUNK = 1 << 20


class PortForward:
    """Forward 127.0.0.1:<local_port> to `port` of `pod` in `namespace`; use it as a context manager."""

    def __init__(self, api_client, namespace: str, pod: str, port: int, local_port: int = 0):
        from kubernetes import client

        # A client of its own: kubernetes.stream swaps the call_api of the client it is given while it opens
        # a tunnel, which must not happen under the feet of the caller's watches and requests.
        self._api = client.CoreV1Api(client.ApiClient(api_client.configuration))
        self.namespace, self.pod, self.port, self._bind = namespace, pod, port, local_port
        self._open_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @property
    def local_port(self) -> int:
        return self._listener.getsockname()[1]

    def tunnel(self):
        """One websocket tunnel to the pod's port; raises the client's ApiException when it is refused."""
        from kubernetes.stream import portforward

        with self._open_lock:
            return portforward(self._api.connect_get_namespaced_pod_portforward, self.pod, self.namespace,
                               ports=str(self.port))

    def start(self) -> PortForward:
        """Listen; fails here, not at the first connection, when the cluster refuses port-forwarding (403)
        or the pod is gone."""
        self.tunnel().close()
        try:
            self._listener = socket.create_server(("127.0.0.1", self._bind))
        except OSError as error:
            raise UserError(f"--port: cannot listen on 127.0.0.1:{self._bind} ({os.strerror(error.errno)}); "
                            "choose another port, or leave --port out for a free one") from None
        threading.Thread(target=self._accept, name=f"port-forward {self.pod}:{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._listener.close()
        with self._connections_lock:
            for connection in list(self._connections):
                _close(connection)

    def __enter__(self) -> PortForward:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
        forward = None
        try:
            forward = self.tunnel()
            _pump(connection, forward.socket(self.port))
        except Exception:  # noqa: BLE001 - a failed tunnel ends this one connection; its client sees it closed
            pass
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            _close(connection)
            if forward is not None:
                forward.close()


def _pump(local: socket.socket, remote) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {local.fileno(): remote, remote.fileno(): local}
    while True:
        readable, _, _ = select.select([local, remote], [], [])
        for source in readable:
            data = source.recv(_CHUNK)
            if not data:
                return
            peers[source.fileno()].sendall(data)


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()
