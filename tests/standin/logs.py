"""Pod logs as the kubelet serves them through the API server: tailLines, container, previous, follow.

Tests append lines (FakeApi.log); the kubelet's refusals hold (400 for a container waiting to start, or for
previous=true without a terminated previous run); an unscheduled pod has an empty log.
"""

from __future__ import annotations

from tests.standin.errors import bad_request
from tests.standin.handler import Answer
from tests.standin.store import Store


def is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def log_refusal(pod: dict, container: str, previous: bool) -> str | None:
    """Why the kubelet refuses a container's log, in its words (validateContainerLogStatus, pkg/kubelet)."""
    subject = f'container "{container}" in pod "{pod["metadata"]["name"]}"'
    statuses = pod.get("status", {}).get("containerStatuses", []) + pod.get("status", {}).get(
        "initContainerStatuses", [])
    status = next((c for c in statuses if c["name"] == container), None)
    if status is None:
        return f"{subject} is not available"
    state, last = status.get("state", {}), status.get("lastState", {}).get("terminated") or {}
    if previous:
        return None if last.get("containerID") else f"previous terminated {subject} not found"
    if "running" in state:
        return None
    if "terminated" in state or last:
        return None if state.get("terminated", {}).get("containerID") or last.get("containerID") else (
            f"{subject} is terminated")
    if "waiting" in state:
        reason = state["waiting"].get("reason", "")
        why = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}
        return f"{subject} is waiting to start: {why.get(reason, reason)}"
    return f"{subject} is waiting to start - no logs yet"


class PodLogs:
    """The lines each pod has logged, and the answers of GET …/pods/<name>/log."""

    def __init__(self, store: Store):
        self.store = store
        self.lines: dict[tuple[str, str], list[str]] = {}

    def append(self, ns: str, pod: str, text: str) -> None:
        with self.store.cond:
            self.lines.setdefault((ns, pod), []).extend(text.splitlines())
            self.store.cond.notify_all()

    def forget(self, ns: str, pod: str) -> None:
        self.lines.pop((ns, pod), None)

    def answer(self, pod: dict, query: dict) -> Answer:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        spec = pod.get("spec", {})
        containers = [c["name"] for c in spec.get("containers", [])]
        known = [c["name"] for c in spec.get("initContainers", [])] + containers
        container = query.get("container")
        if container is None and len(containers) > 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(containers)}]")
        if container is not None and container not in known:
            raise bad_request(f"container {container} is not valid for pod {name}")
        if not spec.get("nodeName"):
            return Answer(200, "", content_type="text/plain")  # no kubelet to ask: an empty log, as for real
        refusal = log_refusal(pod, container or containers[0], is_true(query.get("previous")))
        if refusal:
            raise bad_request(refusal)
        lines = self.lines.get((ns, name), [])
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        shown = lines[len(lines) - min(tail, len(lines)):] if tail is not None else list(lines)
        if not is_true(query.get("follow")):
            return Answer(200, "".join(f"{line}\n" for line in shown), content_type="text/plain")
        return Answer(200, stream=self._follow(ns, name, shown, len(lines), self.store.epoch),
                      content_type="text/plain")

    def _follow(self, ns: str, name: str, shown: list[str], sent: int, epoch: int):
        """Like `kubectl logs -f`: the lines there are, then each appended one until the pod goes away."""
        for line in shown:
            yield f"{line}\n".encode()
        while True:
            with self.store.cond:
                more = self.store.wait(
                    lambda: self.lines.get((ns, name), [])[sent:] or ("Pod", ns, name) not in self.store.objects,
                    epoch, None)
                if more is True:
                    return
                sent += len(more)
            for line in more:
                yield f"{line}\n".encode()
