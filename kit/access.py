"""Which way the kit reaches Prefect: `--api-url` when given, else the public URL when it answers, else
a port-forward to a ready server pod, open for as long as the task runs. One line says which.

Right after a first rollout there is often no DNS record or ingress yet; the port-forward makes
`inv pools`, `inv flows`, `inv status` and the rollout's own checks work then, with nothing by hand.
Deciding costs under a second: an unknown name or a refused connection fails at once, anything else
within the probe's short timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from kit import cluster, prefect_api
from kit.cluster import Cluster, pod_ready
from kit.errors import UserError
from kit.settings import SERVER_NAME, Settings

Out = Callable[[str], None]
PROBE_TIMEOUT = 0.8


class NoServerPod(UserError):
    """No server pod is ready to forward to: before a first rollout, or while the server restarts."""


@contextmanager
def prefect_url(settings: Settings, api_url: str | None = None, k: Cluster | None = None,
                out: Out = print) -> Iterator[str]:
    """The API URL to use inside the block; `k` is the cluster for the port-forward (connected if needed)."""
    if api_url:
        url = prefect_api.api_url(settings, api_url)
        out(f"prefect: {url} (--api-url)")
        yield url
        return
    public = settings.public_api_url
    reason = probe(public) if settings.has_route else "is not served (ROUTE=none)"
    if reason is None:
        out(f"prefect: {public} (the public URL)")
        yield public
        return
    with ExitStack() as stack:
        try:
            if k is None:
                k = stack.enter_context(cluster.connect(settings))
            forward = stack.enter_context(port_forward(k))
        except UserError as error:
            # The same kind of error, so that a caller can still tell "no server yet" from a failure.
            raise type(error)(f"Prefect API: the public URL {reason}, and there is no port-forward to the server "
                              f"instead: {error.problems[0]}; or pass --api-url") from None
        out(f"prefect: through a port-forward to pod/{forward.pod} ({public} {reason})")
        yield f"http://127.0.0.1:{forward.local_port}/api"


def probe(url: str) -> str | None:
    """Why the API at `url` cannot be used right now, or None when its /health answers."""
    import httpx

    try:
        # Like Prefect's own client: the environment's proxies apply.
        response = httpx.get(f"{url}/health", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as error:
        return f"does not answer: {prefect_api.describe(error)}"
    if response.status_code != 200:
        return f"answers HTTP {response.status_code} on /health"
    return None


@contextmanager
def port_forward(k: Cluster, local_port: int = 0):
    """A PortForward to a ready server pod, at the port its Service sends traffic to (the login proxy's), from
    127.0.0.1:local_port (0: a free one)."""
    from kubernetes.client.exceptions import ApiException

    from kit import manifests
    from kit.portforward import PortForward

    selector, port = server_endpoint(manifests.load())
    pods = [pod for pod in k.objects("v1", "Pod", label_selector=selector)[0] if pod_ready(pod)]
    if not pods:
        raise NoServerPod(f"no server pod is ready to port-forward to in namespace {k.namespace}; `inv status` "
                        "shows why")
    name = sorted(pod["metadata"]["name"] for pod in pods)[0]
    forward = PortForward(k.api_client, k.namespace, name, port, local_port)
    try:
        forward.start()
    except ApiException as error:
        # The websocket client's reason carries the whole answer after its first line: keep that line.
        why = str(error.reason or error.status).split(" -+-+- ")[0]
        raise UserError(f"the port-forward to pod/{name} failed: {why}; ask for `create` on pods/portforward in "
                        f"namespace {k.namespace}") from None
    try:
        yield forward
    finally:
        forward.stop()


def server_endpoint(objects: list[dict]) -> tuple[str, int]:
    """The server pods' label selector, and the container port the server Service sends traffic to.

    Read from the manifests, so a change of the port the Service targets (a proxy in front of Prefect)
    changes the port-forward with it.
    """
    from kit.manifests import find

    server = find(objects, "StatefulSet", SERVER_NAME)
    service = find(objects, "Service", SERVER_NAME)
    target = service["spec"]["ports"][0]["targetPort"]
    selector = ",".join(f"{key}={value}" for key, value in sorted(server["spec"]["selector"]["matchLabels"].items()))
    if isinstance(target, int):
        return selector, target
    ports = [port for container in server["spec"]["template"]["spec"]["containers"]
             for port in container.get("ports", []) if port.get("name") == target]
    return selector, ports[0]["containerPort"]
