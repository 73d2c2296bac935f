"""`inv destroy`: delete what the kit made in the namespace, and wait until it is gone."""

from __future__ import annotations

import time

from kit.cluster import Cluster, connect, describe, unserved_line
from kit.errors import UserError
from kit.kinds import APPLY_ORDER, POD_KINDS
from kit.settings import Settings


def run(settings: Settings, *, delete_data: bool = False, confirm=None, timeout: float = 300,
            out=print) -> None:
    """Delete every object the kit labelled in the namespace (PersistentVolumeClaims only with delete_data), and
    wait, as `kubectl delete` does, until they are gone: workloads go Foreground, so they are gone once their
    pods are, and a claim lingers until no pod mounts it. An immediate rollout then meets nothing half-deleted.

    The namespace stays: it may hold things that are not the kit's. confirm(question) -> bool is asked
    once the list is shown; None means yes.
    """
    with connect(settings) as k:
        managed, unserved = k.managed()
        for kind in unserved:
            out(unserved_line(kind))
        # Dependants first, the reverse of the apply order: routes before Services, pods' owners before Secrets.
        doomed = sorted(managed, key=lambda item: -APPLY_ORDER.index(item["kind"]))
        claims = k.objects("v1", "PersistentVolumeClaim")[0]
        if delete_data:
            doomed += claims
        if not doomed:
            out(f"namespace {k.namespace}: nothing of the kit's to delete")
            return
        out(f"in namespace {k.namespace} of context '{k.context}':")
        for item in doomed:
            out(f"  {describe(item)}")
        if confirm is not None and not confirm(f"delete these {len(doomed)} objects?"):
            out("nothing deleted")
            return
        deleted = []
        for item in doomed:
            propagation = "Foreground" if item["kind"] in POD_KINDS else None
            if k.delete(item["apiVersion"], item["kind"], item["metadata"]["name"], propagation):
                deleted.append(item)
                out(f"{describe(item)} deleted")
        _wait_until_gone(k, deleted, timeout, out)
        if not delete_data:
            for claim in claims:
                out(f"{describe(claim)} kept (the server's data; `inv destroy --delete-data` deletes it)")
        out(f"namespace/{k.namespace} kept (`kubectl delete namespace {k.namespace}` removes it with all it holds)")


def _wait_until_gone(k: Cluster, deleted: list[dict], timeout: float, out) -> None:
    deadline = time.monotonic() + timeout
    remaining = []
    for item in deleted:
        name = item["metadata"]["name"]
        try:
            k.wait_for(item["apiVersion"], item["kind"], name, lambda obj: obj is None,
                       max(0.0, deadline - time.monotonic()), "gone")
        except UserError:
            remaining.append(describe(item))
    if remaining:
        raise UserError(f"destroy: still there after {timeout:g}s: {', '.join(remaining)}; its finalizers or "
                        "pods hold it (`kubectl describe` it), then run `inv destroy` again")
    out(f"all {len(deleted)} gone")
