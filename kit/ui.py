"""`inv ui`: the UI on this machine through a port-forward to the server pod's login proxy, whatever route
the cluster has (or none): the browser asks for the login exactly as through the Ingress or the Gateway,
and the UI calls its API on the page's own origin, so nothing else needs to know the port.
"""

from __future__ import annotations

from collections.abc import Callable

from kit import access, cluster
from kit.errors import UserError
from kit.settings import Settings

# How long one look at the pod may wait before the next: a watch that ends is simply opened again.
WATCH_SECONDS = 300


def serve(settings: Settings, port: int = 0, out: Callable[[str], None] = print) -> None:
    """Forward 127.0.0.1:port (0: a free one) to the server pod until Ctrl-C, or until the pod goes away."""
    with cluster.connect(settings) as k, access.port_forward(k, port) as forward:
        out(f"UI: http://127.0.0.1:{forward.local_port}/ (through pod/{forward.pod}); log in as "
            f"{settings.login_user} with LOGIN_PASSWORD of {settings.source}; Ctrl-C ends it")
        while True:
            try:
                k.wait_for("v1", "Pod", forward.pod, _gone_or_unready, WATCH_SECONDS, "gone")
                break
            except cluster.WaitTimeout:
                continue  # still serving: look again
    raise UserError(f"pod/{forward.pod}: stopped serving (deleted, restarting or not ready), so the UI is closed; "
                    "run `inv ui` again once `inv status` shows the server ready")


def _gone_or_unready(pod: dict | None) -> bool:
    return pod is None or bool(pod["metadata"].get("deletionTimestamp")) or not cluster.pod_ready(pod)
