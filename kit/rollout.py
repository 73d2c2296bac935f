"""`inv secrets` and `inv rollout`: apply the rendered objects, then wait as `kubectl rollout status` does.

A rollout goes: the namespace and the accounts; a dry run of what each kubernetes pool's job template makes
(kit.admission); everything but the workers; wait for the server; the pools, queues and templates through
Prefect; the workers; wait for them; wait until Prefect shows every worker pod ONLINE.

The waiting is split the way kubectl splits it: one pure status viewer per kind (an object in, a message
and done out, Stalled when it will never get there), and one watch loop that knows nothing about kinds.
When a workload does not get ready, the pods say why: their waiting reason, events and last log lines.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from kit import cluster, immutable, registry, release, routes, workers
from kit.cluster import Cluster, describe, log_source, pod_ready
from kit.errors import UserError
from kit.kinds import APPLY_ORDER, BY_NAME, ROUTE_KINDS
from kit.pool_config import Pool
from kit.settings import SERVER_NAME, Settings

Out = Callable[[str], None]
DEFAULT_TIMEOUT = 300
EVENT_LINES = 5
LOG_LINES = 20
# Seconds between two looks at Prefect's worker list while waiting for workers to connect.
CONNECT_POLL = 1.0
# What the job templates' admission check needs in the cluster: applied before it, and before anything else.
ADMISSION_NEEDS = ("Namespace", "ServiceAccount")
# Waiting reasons that mean "still starting", not "stuck".
_STARTING = ("ContainerCreating", "PodInitializing")


class Stalled(Exception):
    """A workload that will not become ready without a change (kubectl's error from a status viewer)."""


def deployment_status(obj: dict) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer."""
    name, spec, status = obj["metadata"]["name"], obj.get("spec", {}), obj.get("status", {})
    if obj["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return f'deployment "{name}": waiting for the spec update to be observed', False
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise Stalled(f'deployment "{name}" exceeded its progress deadline')
    wanted = spec.get("replicas", 1)
    updated, replicas = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return f'deployment "{name}": {updated} out of {wanted} new replicas have been updated', False
    if replicas > updated:
        return f'deployment "{name}": {replicas - updated} old replicas are pending termination', False
    if available < updated:
        return f'deployment "{name}": {available} of {updated} updated replicas are available', False
    return f'deployment "{name}" successfully rolled out', True


def statefulset_status(obj: dict) -> tuple[str, bool]:
    """kubectl's StatefulSetStatusViewer; a strategy left out counts as the API's default, RollingUpdate."""
    name, spec, status = obj["metadata"]["name"], obj.get("spec", {}), obj.get("status", {})
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise Stalled(f'statefulset "{name}": rollout status is only available for the RollingUpdate strategy')
    observed = status.get("observedGeneration", 0)
    if observed == 0 or obj["metadata"].get("generation", 0) > observed:
        return f'statefulset "{name}": waiting for the spec update to be observed', False
    wanted = spec.get("replicas", 1)
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    if ready < wanted:
        return f'statefulset "{name}": waiting for {wanted - ready} pods to be ready', False
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        expected = wanted - rolling.get("partition", 0)
        if updated < expected:
            return (f'statefulset "{name}": waiting for partitioned roll out to finish: '
                    f'{updated} out of {expected} new pods have been updated'), False
        return f'statefulset "{name}": partitioned roll out complete: {updated} new pods have been updated', True
    if status.get("updateRevision") != status.get("currentRevision"):
        return (f'statefulset "{name}": waiting for the rolling update to complete {updated} pods at revision '
                f'{status.get("updateRevision")}'), False
    return f'statefulset "{name}" rolling update complete', True


VIEWERS: dict[str, Callable[[dict], tuple[str, bool]]] = {
    "Deployment": deployment_status,
    "StatefulSet": statefulset_status,
}


def image_reference(settings: Settings, tag: str | None, record: Path = release.RECORD_PATH,
                    out: Out = print) -> str:
    """The image workloads get, pinned by digest: `--tag` (its digest from this machine's record of pushes, or
    else from the registry), or what `inv build push` recorded for this commit; never latest."""
    if tag:
        build = release.image_for(settings.image_repository, tag, record)
        if build.digest:
            return build.reference
        found = registry.digest(settings, build.tag)
        if found is None:
            out(f"image: {build.reference} is not pinned to a digest (no Docker engine here to ask {settings.registry}):"
                " the nodes pull the tag as it is when each pod starts")
            return build.reference
        if not found:
            raise UserError(f"--tag: {settings.registry} has no {build.reference}; push it (`inv build push`) or "
                            "check the tag")
        return dataclasses.replace(build, digest=found).reference
    commit = release.commit_tag()
    build = release.recorded_build(settings.image_repository, commit, record)
    if build is None:
        raise UserError(f"image: nothing was built for this commit ({settings.image_repository}:{commit}); "
                        "run `inv build push` first, or pass --tag")
    if not build.digest:
        raise UserError(f"image: {build.repository}:{build.tag} was built but not pushed, so the cluster cannot "
                        "pull it; run `inv push`")
    return build.reference


def secrets(settings: Settings, *, dry_run: bool = False, out: Out = print) -> None:
    """Apply the namespace and the rendered Secrets, nothing else."""
    from kit import manifests

    objects = manifests.render_config(settings)
    with cluster.connect(settings) as k:
        apply_objects(k, objects, live_objects(k)[0], dry_run=dry_run, out=out)


def rollout(settings: Settings, *, tag: str | None = None, restart: bool = False, prune: bool = False,
            dry_run: bool = False, force_conflicts: bool = False, recreate: bool = False,
            timeout: float = DEFAULT_TIMEOUT, api_url: str | None = None, pools: tuple[Pool, ...] | None = None,
            prefect: OpenPrefect | None = None, out: Out = print) -> None:
    """Apply everything rendered in the order that keeps flow runs safe, and wait until every worker is
    connected: the server first, then the pools (with the job templates of this image) through Prefect,
    then the workers, so that no worker ever starts on a pool that is missing or has an old template.

    `pools` defaults to config/pools.yaml, `prefect` to the real Prefect API (reached by kit.access).
    """
    from kit import admission, manifests, pool_config

    declared = pool_config.load() if pools is None else pools
    image = image_reference(settings, tag, out=out)
    objects = manifests.render(settings, image, declared)
    templates = kubernetes_templates(settings, declared, image)
    open_prefect = prefect or functools.partial(prefect_session, settings, api_url)
    with cluster.connect(settings) as k:
        check_served(k, objects)
        live, unserved = live_objects(k)
        server = live.get(("StatefulSet", SERVER_NAME))
        if server is not None:
            manifests.check_database_mode(server, manifests.find(objects, "StatefulSet", SERVER_NAME))
        refused = refused_changes(objects, live)
        if refused and not recreate:
            raise UserError(*[f"{describe(obj)}: {'; '.join(changes)}: Kubernetes cannot change this in place; "
                              "`inv rollout --recreate` deletes and recreates it, keeping its data volume"
                              for obj, changes in refused])
        if dry_run:
            for obj, changes in refused:
                out(f"{describe(obj)} would be deleted and recreated ({'; '.join(changes)})")
            objects = [obj for obj in objects if all(obj is not other for other, _ in refused)]
            apply_objects(k, objects, live, dry_run=True, force_conflicts=force_conflicts, out=out)
            # The Pod's dry run needs its service account to exist; a first rollout creates it before the check.
            if ("ServiceAccount", workers.FLOW_RUN_ACCOUNT) in live:
                for name, template in templates.items():
                    admission.check(k, name, template, out)
            elif templates:
                out(f"job templates: checked by the rollout itself, once it has created serviceaccount/"
                    f"{workers.FLOW_RUN_ACCOUNT}")
            _prune(k, objects, live, unserved, prune=prune, dry_run=True, out=out)
            out("pools: not written in a dry run (`inv pools --dry-run` compares them)")
            return
        # The flow runs' Job and Pod are dry-run in the namespace, as the flow-run account (which a real API
        # server's ServiceAccount admission wants to exist), before anything else is applied.
        ahead = [obj for obj in objects if obj["kind"] in ADMISSION_NEEDS]
        rest = [obj for obj in objects if obj["kind"] not in ADMISSION_NEEDS and not workers.is_template(obj)]
        workers_last = [obj for obj in objects if workers.is_template(obj)]
        applied = apply_objects(k, ahead, live, force_conflicts=force_conflicts, out=out)
        for name, template in templates.items():
            admission.check(k, name, template, out)
        # Deleted only once every check has passed: a refused template must not leave a workload missing.
        recreate_workloads(k, refused, live, timeout, out)
        applied += apply_objects(k, rest, live, force_conflicts=force_conflicts, out=out)
        _prune(k, objects, live, unserved, prune=prune, dry_run=False, out=out)
        # --timeout covers the waiting: for the server, the pools, the workers and their connection.
        deadline = time.monotonic() + timeout
        servers = _restarted(k, [obj for obj in applied if obj["kind"] in VIEWERS], restart, out)
        wait(k, servers, timeout, out, deadline)
        with open_prefect(k, out) as session:
            for line in session.sync(declared, templates):
                out(line)
            deployed = apply_objects(k, workers_last, live, force_conflicts=force_conflicts, out=out)
            deployed = _restarted(k, deployed, restart, out)
            wait(k, deployed, timeout, out, deadline)
            wait_connected(k, session, deployed, deadline, timeout, out)
    out(f"ready: {routes.where(settings)}")


def refused_changes(objects: list[dict], live: dict) -> list[tuple[dict, list[str]]]:
    """The rendered objects whose live version differs in a field Kubernetes will not change in place, with those
    fields: found before anything is applied, so that a rollout never stops halfway on a 422."""
    found = []
    for obj in objects:
        current = live.get((obj["kind"], obj["metadata"]["name"]))
        changes = immutable.refused_changes(current, obj, cluster.FIELD_MANAGER) if current else []
        if changes:
            found.append((obj, changes))
    return found


def recreate_workloads(k: Cluster, refused: list[tuple[dict, list[str]]], live: dict, timeout: float,
                       out: Out) -> None:
    """`--recreate`: delete each refused object so that the apply creates it anew. A StatefulSet goes with its
    pods orphaned, so the new one adopts them (and rolls them to its template) and the claims, which a
    StatefulSet never deletes, stay: the data volume is mounted again. Unless its selector changed, which no
    new StatefulSet would adopt by: then its pods go with it, the claims still stay."""
    for obj, changes in refused:
        orphan = obj["kind"] == "StatefulSet" and not any(change.startswith("spec.selector") for change in changes)
        name = obj["metadata"]["name"]
        k.delete(obj["apiVersion"], obj["kind"], name, "Orphan" if orphan else "Background")
        k.wait_gone(obj["apiVersion"], obj["kind"], [name], timeout)
        live.pop((obj["kind"], name), None)
        kept = "its pods and claims kept" if orphan else "its claims kept"
        out(f"{describe(obj)} deleted to be recreated ({'; '.join(changes)}; {kept})")


def check_served(k: Cluster, objects: list[dict]) -> None:
    """Refuse before applying anything when the cluster lacks an add-on kind the render needs (Gateway API's)."""
    for kind in (BY_NAME[name] for name in dict.fromkeys(obj["kind"] for obj in objects)):
        if kind.optional and not k.serves(kind):
            raise UserError(f"ROUTE: this cluster does not serve {kind.name} ({kind.api_version}): Gateway API is "
                            "not installed; ask for it, or set ROUTE=ingress")


def kubernetes_templates(settings: Settings, declared: tuple[Pool, ...], image: str) -> dict[str, dict]:
    """The job template of each kubernetes pool, for the image being rolled out."""
    from kit import pools

    if not any(pool.type == "kubernetes" for pool in declared):
        return {}
    return pools.kubernetes_templates(settings, declared, {pool.name: image for pool in declared})


def _restarted(k: Cluster, workloads: list[dict], restart: bool, out: Out) -> list[dict]:
    if not restart:
        return workloads
    stamp = cluster.now()
    restarted = [k.restart(obj, stamp) for obj in workloads]
    for obj in restarted:
        out(f"{describe(obj)} restarted")
    return restarted


def _prune(k: Cluster, objects: list[dict], live: dict, unserved: list, *, prune: bool, dry_run: bool,
           out: Out) -> None:
    """With --prune, what the kit applied before and no longer renders; always, a route of an earlier render
    (another ROUTE, the former two Ingresses), which would serve the same host. After the new route exists."""
    if prune:
        for kind in unserved:
            out(cluster.unserved_line(kind))
    prune_stale(k, objects, live if prune else {key: obj for key, obj in live.items() if key[0] in ROUTE_KINDS},
                dry_run=dry_run, out=out)


# --- Through Prefect: the pools, and whether the workers are connected --------------------------------

class PrefectSession(Protocol):
    def sync(self, declared: tuple[Pool, ...], templates: dict[str, dict]) -> list[str]:
        """Make the pools, queues and templates true; one line per object."""

    def workers(self, pool: str) -> list[workers.Seen]:
        """The workers Prefect lists for a pool."""


OpenPrefect = Callable[[Cluster, Out], AbstractContextManager[PrefectSession]]


class _Session:
    """The real Prefect API: each call retried as `inv pools` retries it (kit.prefect_api.retried)."""

    def __init__(self, client, settings: Settings, out: Out):
        self.client = client
        self.settings = settings
        self.out = out

    def sync(self, declared: tuple[Pool, ...], templates: dict[str, dict]) -> list[str]:
        from kit import pools, prefect_api

        # The templates were admitted before anything was applied.
        return prefect_api.retried(self.settings, lambda: pools.write(self.client, declared, templates), self.out)

    def workers(self, pool: str) -> list[workers.Seen]:
        from kit import pools, prefect_api

        found = prefect_api.retried(self.settings, lambda: pools.read_workers(self.client, pool), self.out)
        return [workers.Seen(worker.name, worker.online, worker.last_heartbeat) for worker in found]


@contextmanager
def prefect_session(settings: Settings, api_url: str | None, k: Cluster, out: Out) -> Iterator[PrefectSession]:
    """The real Prefect API, by --api-url, the public URL or a port-forward, for the rest of the rollout."""
    from kit import access, prefect_api

    with access.prefect_url(settings, api_url, k, out) as url, prefect_api.connect(settings, url) as client:
        yield _Session(client, settings, out)


def wait_connected(k: Cluster, session: PrefectSession, deployments: list[dict], deadline: float, timeout: float,
                   out: Out) -> None:
    """Wait until Prefect shows each worker pod ONLINE with a heartbeat after the pod started: a Ready worker
    is not yet a connected one (its /health answers 200 for minutes before it ever reached the API)."""
    pods = {describe(obj): [pod for pod in k.pods_of(obj) if pod_ready(pod) and
                            not pod["metadata"].get("deletionTimestamp")] for obj in deployments}
    pools = {describe(obj): workers.pool_of(obj) for obj in deployments}
    shown: set[str] = set()
    while True:
        seen = {pool: session.workers(pool) for pool in set(pools.values())}
        waiting = {name: workers.unconnected(pods[name], seen[pools[name]]) for name in pods}
        for name in pods:
            for pod in pods[name]:
                line = (f"worker pod/{pod['metadata']['name']}: " +
                        ("waiting for it to connect to Prefect" if pod in waiting[name] else "connected (ONLINE in Prefect)"))
                if line not in shown:
                    shown.add(line)
                    out(line)
        if not any(waiting.values()):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(min(CONNECT_POLL, max(0.0, deadline - time.monotonic())))
    for name, pending in waiting.items():
        for pod in pending:
            out(f"{name}: pod/{pod['metadata']['name']} is Ready but Prefect lists no ONLINE worker of that name "
                f"in pool {pools[name]}")
            container, previous = log_source(pod)
            lines = _last_log_lines(k, pod["metadata"]["name"], container, previous)
            out(f"    last {len(lines)} log lines of {container}:" if lines else f"    no log lines from {container} yet")
            for line in lines:
                out(f"      {line}")
    names = ", ".join(f"pod/{pod['metadata']['name']}" for pending in waiting.values() for pod in pending)
    raise UserError(f"rollout: workers not connected to Prefect after {timeout:g}s: {names}; see their log lines "
                    "above (a 401 means an old auth string, a connection error the NetworkPolicy or the API URL), "
                    "fix it, and run `inv rollout` again")


def live_objects(k: Cluster) -> tuple[dict[tuple[str, str], dict], list]:
    """What the kit applied earlier, by (kind, name): the namespace and every labelled object in it; and the
    kinds of the kit's that this cluster does not serve."""
    namespace = k.get("v1", "Namespace", k.namespace)
    if namespace is None:
        return {}, []
    managed, unserved = k.managed()
    live = {("Namespace", k.namespace): namespace}
    live.update({(item["kind"], item["metadata"]["name"]): item for item in managed})
    return live, unserved


def apply_objects(k: Cluster, objects: list[dict], live: dict, *, dry_run: bool = False,
                  force_conflicts: bool = False, out: Out = print) -> list[dict]:
    """Server-side apply in order, one kubectl-style line per object; returns the objects as stored."""
    applied = []
    missing_namespace = ("Namespace", k.namespace) not in live
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if dry_run and missing_namespace and obj["kind"] != "Namespace":
            # The server cannot dry-run writes into a namespace that a dry run did not create.
            out(f"{describe(obj)} created (dry run; namespace {k.namespace} does not exist yet)")
            continue
        created, stored = k.apply(obj, dry_run=dry_run, force_conflicts=force_conflicts)
        word = cluster.outcome(created, live.get(key), stored)
        out(f"{describe(obj)} {word}{' (server dry run)' if dry_run else ''}")
        if dry_run and word == "configured" and key in live:
            for change in cluster.changes(live[key], stored):
                out(f"  {change}")
        applied.append(stored)
    return applied


def prune_stale(k: Cluster, objects: list[dict], live: dict, *, dry_run: bool, out: Out) -> None:
    """Delete what the kit applied before and no longer renders; the namespace is never pruned."""
    rendered = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    stale = [key for key in live if key[0] != "Namespace" and key not in rendered]
    for kind, name in sorted(stale, key=lambda key: -APPLY_ORDER.index(key[0])):
        if dry_run:
            out(f"{kind.lower()}/{name} would be pruned (dry run)")
        elif k.delete(BY_NAME[kind].api_version, kind, name):
            out(f"{kind.lower()}/{name} pruned")


def wait(k: Cluster, workloads: list[dict], timeout: float, out: Out = print, deadline: float | None = None) -> None:
    """Wait until every workload is rolled out, for `timeout` seconds (or until `deadline`, the end of a longer
    wait's `timeout`); on failure explain each unready pod and raise UserError."""
    from kit import progress

    deadline = time.monotonic() + timeout if deadline is None else deadline
    states = {(obj["kind"], obj["metadata"]["name"]): obj for obj in workloads}
    try:
        # Live lines when the rollout prints to the terminal itself; the lines as they change otherwise.
        with progress.wait_view(None if out is print else out) as view:
            for kind in dict.fromkeys(kind for kind, _ in states):
                _wait_kind(k, kind, states, view, deadline)
    except Stalled as stalled:
        failure = str(stalled)
    except TimeoutError:
        failure = f"not ready after {timeout:g}s"
    else:
        return
    # Kinds not reached before the failure still hold their state from the apply: read them again.
    current = [k.get(BY_NAME[kind].api_version, kind, name) or obj for (kind, name), obj in states.items()]
    unready = [(obj, message) for obj in current for message, done in [_verdict(obj)] if not done]
    if not unready:  # the deadline came before the last look, and everything had got there
        return
    for obj, message in unready:
        diagnose(k, obj, message, out)
    names = ", ".join(describe(obj) for obj, _ in unready)
    raise UserError(f"rollout: {failure}: {names}; see the reasons above, fix them, and run `inv rollout` again")


def _verdict(obj: dict) -> tuple[str, bool]:
    try:
        return VIEWERS[obj["kind"]](obj)
    except Stalled as stalled:
        return str(stalled), False


def _wait_kind(k: Cluster, kind: str, states: dict, view, deadline: float) -> None:
    """Watch one kind until all of its workloads are done, resuming dropped watches where they stopped."""
    from kubernetes.dynamic.exceptions import GoneError

    api_version = BY_NAME[kind].api_version
    names = {name for key_kind, name in states if key_kind == kind}

    def settled() -> bool:
        done = True
        for name in sorted(names):
            obj = states[(kind, name)]
            message, ready = VIEWERS[kind](obj)
            view.show(describe(obj), obj, message, ready)
            done = done and ready
        return done

    if settled():
        return
    version = None  # None: (re)list before watching
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            if version is None:
                items, version = k.objects(api_version, kind)
                states.update({(kind, item["metadata"]["name"]): item
                               for item in items if item["metadata"]["name"] in names})
                if settled():
                    return
            for event in k.watch(api_version, kind, resource_version=version, timeout=remaining):
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") != 410:
                        raise UserError(f"watching {kind}s: {obj.get('message', obj)}")
                    version = None  # history compacted: list again
                    break
                version = obj["metadata"]["resourceVersion"]
                name = obj["metadata"].get("name")
                if name not in names or event["type"] == "BOOKMARK":
                    continue
                if event["type"] == "DELETED":
                    raise Stalled(f"{kind.lower()}/{name} was deleted while waiting for it")
                states[(kind, name)] = obj
                if settled():
                    return
        except GoneError:
            version = None


def diagnose(k: Cluster, workload: dict, message: str, out: Out) -> None:
    """Why a workload is not ready: its unready pods' reasons, latest events and last log lines."""
    pods = k.pods_of(workload)
    events, _ = k.objects("v1", "Event", label_selector=None)
    out(f"{describe(workload)}: {message}")
    if not pods:
        # A Deployment's pod creation failures are events of its ReplicaSet, named <deployment>-<hash>.
        name = workload["metadata"]["name"]
        own = [event for event in events
               if name in (event.get("involvedObject", {}).get("name"),
                           event.get("involvedObject", {}).get("name", "").rpartition("-")[0])]
        conditions = [f"{c.get('type')}: {c.get('message')}" for c in workload.get("status", {}).get("conditions", [])
                      if c.get("status") == "False" and c.get("message")]
        out("  no pods")
        for line in conditions + [format_event(event) for event in latest(own)]:
            out(f"    {line}")
        return
    for pod in pods:
        if pod_ready(pod):
            continue
        name = pod["metadata"]["name"]
        own = [event for event in events if event.get("involvedObject", {}).get("name") == name]
        out(f"  pod/{name}: {pod_problem(pod, own)}")
        for event in latest(own):
            out(f"    {format_event(event)}")
        container, previous = log_source(pod)
        lines = _last_log_lines(k, name, container, previous)
        if lines:
            out(f"    last {len(lines)} log lines of {container}{' (previous run)' if previous else ''}:")
            for line in lines:
                out(f"      {line}")


def _last_log_lines(k: Cluster, pod: str, container: str, previous: bool) -> list[str]:
    from kubernetes.client.exceptions import ApiException

    try:
        return list(k.log_lines(pod, container, tail=LOG_LINES, previous=previous))
    except ApiException as error:
        if error.status in (400, 404):  # the container has not started yet: no log to show
            return []
        raise


def pod_problem(pod: dict, events: list[dict]) -> str:
    """The one-line reason a pod is not ready: unschedulable, a waiting container, or a failing probe."""
    status = pod.get("status", {})
    if pod["metadata"].get("deletionTimestamp"):
        return "terminating"
    for condition in status.get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message', '')}".rstrip(": ")
    containers = status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
    for container in containers:
        waiting = container.get("state", {}).get("waiting")
        if waiting and waiting.get("reason") not in _STARTING:
            text = f"{waiting.get('reason')}: {waiting['message']}" if waiting.get("message") else waiting.get("reason")
            last = container.get("lastState", {}).get("terminated")
            if last:
                text += f" (container {container['name']} last exited with code {last.get('exitCode')}"
                text += f", {last['reason']})" if last.get("reason") else ")"
            return text
    for container in status.get("containerStatuses", []):
        if "running" in container.get("state", {}) and not container.get("ready"):
            probes = [event for event in events if event.get("reason") == "Unhealthy"]
            if probes:
                failure = latest(probes, 1)[0].get("message")
                return f"container {container['name']} is running but failing its probe: {failure}"
            return f"container {container['name']} is running but its readiness probe has not passed yet"
    waiting = [c["state"]["waiting"]["reason"] for c in containers if c.get("state", {}).get("waiting")]
    return waiting[0] if waiting else status.get("phase", "Pending")


def latest(events: list[dict], count: int = EVENT_LINES) -> list[dict]:
    """The newest events, oldest first."""
    return sorted(events, key=_event_time)[-count:]


def _event_time(event: dict) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp") or ""


def format_event(event: dict) -> str:
    count = event.get("count") or 1
    repeated = f" (x{count})" if count > 1 else ""
    return f"{event.get('type', 'Normal')} {event.get('reason', '')}: {event.get('message', '').strip()}{repeated}"
