"""`inv secrets` and `inv rollout`: apply the rendered objects, then wait as `kubectl rollout status` does.

A rollout goes: the namespace and the accounts; a dry run of what each kubernetes pool's job template makes
(kit.admission); what the server needs (Secrets, ConfigMaps, policies, Services, the embedded Redis); the
migration Job, and wait for it (postgres and scaled); the server and its route; wait for the server, then
remove the server of an earlier mode; the pools, queues and templates through Prefect; the workers; wait for
them; wait until Prefect shows every worker pod ONLINE.

The waiting itself, and what the pods say when a workload does not get ready, is kit.readiness.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from kit import autoscaling, cluster, immutable, registry, release, routes, server, workers
from kit.cluster import Cluster, describe, log_source, pod_ready
from kit.errors import UserError
from kit.kinds import APPLY_ORDER, BY_NAME, FOLLOWS_RENDER, ROUTE_KINDS
from kit.pool_config import Pool
from kit.readiness import NotReady, finished, last_log_lines, wait
from kit.settings import REDIS_NAME, Settings

Out = Callable[[str], None]
DEFAULT_TIMEOUT = 300
# Seconds between two looks at Prefect's worker list while waiting for workers to connect.
CONNECT_POLL = 1.0
# What the job templates' admission check needs in the cluster: applied before it, and before anything else.
ADMISSION_NEEDS = ("Namespace", "ServiceAccount")
# What keeps pods running, and a restart replaces them (a Job's template cannot change).
WORKLOADS = ("Deployment", "StatefulSet")


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
            out(f"image: {build.reference} is not pinned to a digest (no Docker engine here to ask "
                f"{settings.registry}): the nodes pull the tag as it is when each pod starts")
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
            dry_run: bool = False, force_conflicts: bool = False, switch_database: bool = False,
            recreate: bool = False,
            timeout: float = DEFAULT_TIMEOUT, api_url: str | None = None, pools: tuple[Pool, ...] | None = None,
            prefect: OpenPrefect | None = None, out: Out = print) -> None:
    """Apply everything rendered in the order that keeps the server serving and flow runs safe, and wait until
    every worker is connected: the migration (if any) before any server pod changes, the server, the pools (with
    the job templates of this image) through Prefect, then the workers, so that no worker ever starts on a pool
    that is missing or has an old template.

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
        server.check_switch(live, settings, switch_database)
        if settings.embedded_redis:
            redis = redis_image(settings, live, out)
            if redis != settings.redis_image:
                objects = manifests.render(settings, image, declared, redis_image=redis)
        migrations = [job for job in objects if server.is_migration(job)]
        for job in (job for job in migrations if server.migrated(live, job)):
            out(f"{describe(job)}: not run, the live server was rolled out after it")
            objects = [obj for obj in objects if obj is not job]
        migrations = [job for job in objects if server.is_migration(job)]
        forced = autoscaling.taken_back(objects, live)
        # A server StatefulSet whose volume claims come or go (--switch-database) is _recreate()'s, after the
        # migration; everything else Kubernetes refuses in place stops the rollout here, unless --recreate.
        refused = [(obj, changes) for obj, changes in refused_changes(objects, live)
                   if not (switch_database and obj["kind"] == "StatefulSet"
                           and server.needs_recreate(live.get(("StatefulSet", obj["metadata"]["name"])), obj))]
        if refused and not recreate:
            raise UserError(*[f"{describe(obj)}: {'; '.join(changes)}: Kubernetes cannot change this in place; "
                              "`inv rollout --recreate` deletes and recreates it, keeping its data volume"
                              for obj, changes in refused])
        if dry_run:
            for obj, changes in refused:
                out(f"{describe(obj)} would be deleted and recreated ({'; '.join(changes)})")
            objects = [obj for obj in objects if all(obj is not other for other, _ in refused)]
            apply_objects(k, objects, live, dry_run=True, force_conflicts=force_conflicts, forced=forced, out=out)
            # The Pod's dry run needs its service account to exist; a first rollout creates it before the check.
            if ("ServiceAccount", workers.FLOW_RUN_ACCOUNT) in live:
                for name, template in templates.items():
                    admission.check(k, name, template, out)
            elif templates:
                out(f"job templates: checked by the rollout itself, once it has created serviceaccount/"
                    f"{workers.FLOW_RUN_ACCOUNT}")
            _prune(k, objects, live, unserved, prune=prune, dry_run=True, out=out)
            _remove_superseded(k, objects, live, dry_run=True, out=out)
            out("pools: not written in a dry run (`inv pools --dry-run` compares them)")
            return
        ahead, before, servers, workers_last = phases(objects)

        def apply(batch: list[dict]) -> list[dict]:
            return apply_objects(k, batch, live, force_conflicts=force_conflicts, forced=forced, out=out)

        # The flow runs' Job and Pod are dry-run in the namespace, as the flow-run account (which a real API
        # server's ServiceAccount admission wants to exist), before anything else is applied.
        apply(ahead)
        for name, template in templates.items():
            admission.check(k, name, template, out)
        # Deleted only once every check has passed: a refused template must not leave a workload missing.
        recreate_workloads(k, refused, live, timeout, out)
        needed = apply(before)
        # --timeout covers the waiting: for the migration, the server, the pools, the workers and their connection.
        deadline = time.monotonic() + timeout
        for job in migrations:
            migrate(k, job, live, timeout, deadline, out)
        wait(k, _restarted(k, [obj for obj in needed if obj["kind"] in WORKLOADS], restart, out), timeout, out,
             deadline)
        _recreate(k, servers, live, deadline, out)
        applied = apply(servers)
        _prune(k, objects, live, unserved, prune=prune, dry_run=False, out=out)
        wait(k, _restarted(k, [obj for obj in applied if obj["kind"] in WORKLOADS], restart, out), timeout, out,
             deadline)
        _remove_superseded(k, objects, live, dry_run=False, out=out)
        with open_prefect(k, out) as session:
            for line in session.sync(declared, templates):
                out(line)
            deployed = apply(workers_last)
            deployed = _restarted(k, [obj for obj in deployed if obj["kind"] in WORKLOADS], restart, out)
            wait(k, deployed, timeout, out, deadline)
            wait_connected(k, session, deployed, deadline, timeout, out)
    out(f"ready: {routes.where(settings)}")


def phases(objects: list[dict]) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """The render in the rollout's batches: what the admission check needs; what the server needs (everything
    before the workloads, the embedded Redis among them); the server's workloads with what acts on them and the
    route; the workers with their autoscalers. The migration Job is none of them: migrate() applies it."""
    ahead = [obj for obj in objects if obj["kind"] in ADMISSION_NEEDS]
    workers_last = [obj for obj in objects if workers.is_workers(obj)]
    rest = [obj for obj in objects if obj["kind"] not in ADMISSION_NEEDS and not workers.is_workers(obj)
            and not server.is_migration(obj)]
    first_workload = min(APPLY_ORDER.index(kind) for kind in WORKLOADS)
    servers = [obj for obj in rest if server.is_workload(obj) or APPLY_ORDER.index(obj["kind"]) > first_workload
               and obj["kind"] not in WORKLOADS]
    before = [obj for obj in rest if not any(obj is other for other in servers)]
    return ahead, before, servers, workers_last


def migrate(k: Cluster, job: dict, live: dict, timeout: float, deadline: float, out: Out) -> None:
    """Run the migration Job and wait for it; a failed one stops the rollout before any server pod changed.

    A Job of this name that failed before (the database was down, say) is deleted and run again: its template
    cannot change, and this one is the same.
    """
    name = job["metadata"]["name"]
    earlier = live.get(("Job", name))
    if earlier is not None and (finished(earlier) or {}).get("type") == "Failed":
        k.delete("batch/v1", "Job", name, "Background")
        k.wait_gone("batch/v1", "Job", [name], max(0.0, deadline - time.monotonic()))
        out(f"job/{name} failed at an earlier rollout: deleted, to run it again")
        earlier = None
    (stored,) = apply_objects(k, [job], {("Job", name): earlier} if earlier else {}, out=out)
    try:
        wait(k, [stored], timeout, out, deadline)
    except NotReady as failed:
        raise UserError(f"rollout: the database migration job/{name} did not complete: {failed.failure}; nothing of "
                        "the server was changed, its pods keep serving: see the log lines above, fix the cause "
                        "(DATABASE_URL, the database's rights or reach), and run `inv rollout` again") from None


def _recreate(k: Cluster, servers: list[dict], live: dict, deadline: float, out: Out) -> None:
    """With --switch-database between SQLite and PostgreSQL: the server StatefulSet goes before its successor is
    applied, as its volume claim templates cannot change (the claim itself stays)."""
    for obj in servers:
        name = obj["metadata"]["name"]
        if obj["kind"] == "StatefulSet" and server.needs_recreate(live.get(("StatefulSet", name)), obj):
            k.delete("apps/v1", "StatefulSet", name, "Foreground")
            k.wait_gone("apps/v1", "StatefulSet", [name], max(0.0, deadline - time.monotonic()))
            out(f"statefulset/{name} deleted: its volume claim templates cannot change (--switch-database); "
                "its claims stay")


def redis_image(settings: Settings, live: dict, out: Out) -> str:
    """REDIS_IMAGE pinned by digest when the registry tells it (or an earlier rollout did), else the tag alone."""
    reference = settings.redis_image
    running = live.get(("StatefulSet", REDIS_NAME))
    image = running["spec"]["template"]["spec"]["containers"][0]["image"] if running else ""
    if "@" not in reference and image.startswith(f"{reference}@"):
        out(f"redis image: {image} (pinned at an earlier rollout)")
        return image
    pinned, why = registry.pin(settings, reference)
    out(f"redis image: {pinned}" + (f", the tag alone: {why}" if why else " (pinned by the registry's digest)"))
    return pinned


def refused_changes(objects: list[dict], live: dict) -> list[tuple[dict, list[str]]]:
    """The rendered objects whose live version differs in a field Kubernetes will not change in place, with those
    fields: found before anything is applied, so that a rollout never stops halfway on a 422. A migration Job is
    none of them: it is named after its template, so a live one of its name has the same (and migrate() runs one
    that failed anew)."""
    found = []
    for obj in objects:
        if server.is_migration(obj):
            continue
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
    (another ROUTE, the former two Ingresses), which would serve the same host. After the new route exists. The
    server objects of another mode wait for _remove_superseded()."""
    if prune:
        for kind in unserved:
            out(cluster.unserved_line(kind))
    stale = {key: obj for key, obj in live.items()
             if not _follows_server(key, obj) and (prune or key[0] in ROUTE_KINDS)}
    prune_stale(k, objects, stale, dry_run=dry_run, out=out)


def _remove_superseded(k: Cluster, objects: list[dict], live: dict, *, dry_run: bool, out: Out) -> None:
    """Once this render's server is ready, by every rollout: another mode's server (the StatefulSet, or the API and
    services Deployments), an embedded Redis no longer used, a disruption budget or autoscaler no longer rendered.
    Two sets of background services never run on together longer than a switch."""
    prune_stale(k, objects, {key: obj for key, obj in live.items() if _follows_server(key, obj)}, dry_run=dry_run,
                out=out)


def _follows_server(key: tuple[str, str], obj: dict) -> bool:
    return server.replaced_with_mode(obj) or key[0] in FOLLOWS_RENDER


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
                state = ("waiting for it to connect to Prefect" if pod in waiting[name]
                         else "connected (ONLINE in Prefect)")
                line = f"worker pod/{pod['metadata']['name']}: {state}"
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
            lines = last_log_lines(k, pod["metadata"]["name"], container, previous)
            out(f"    last {len(lines)} log lines of {container}:" if lines
                else f"    no log lines from {container} yet")
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
                  force_conflicts: bool = False, forced: set[tuple[str, str]] = frozenset(),
                  out: Out = print) -> list[dict]:
    """Server-side apply in order, one kubectl-style line per object; returns the objects as stored.

    `forced`: workloads whose replicas the kit takes back from an autoscaler it no longer renders.
    """
    applied = []
    missing_namespace = ("Namespace", k.namespace) not in live
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if dry_run and missing_namespace and obj["kind"] != "Namespace":
            # The server cannot dry-run writes into a namespace that a dry run did not create.
            out(f"{describe(obj)} created (dry run; namespace {k.namespace} does not exist yet)")
            continue
        replicas = None if dry_run else autoscaling.to_hand_over(live.get(key), obj, cluster.FIELD_MANAGER)
        if replicas is not None:
            k.apply(_replicas_only(obj, replicas), manager=cluster.HANDOVER_MANAGER)
            out(f"{describe(obj)}: its {replicas} replicas handed over to its autoscaler")
        created, stored = k.apply(obj, dry_run=dry_run, force_conflicts=force_conflicts or key in forced)
        if key in forced and not dry_run:
            # The hand-over manager lets go too, or the next change of the replicas would conflict with it.
            k.apply(_replicas_only(obj, None), manager=cluster.HANDOVER_MANAGER)
            out(f"{describe(obj)}: replicas taken back from the autoscaler it no longer has")
        word = cluster.outcome(created, live.get(key), stored)
        out(f"{describe(obj)} {word}{' (server dry run)' if dry_run else ''}")
        if dry_run and word == "configured" and key in live:
            for change in cluster.changes(live[key], stored):
                out(f"  {change}")
        applied.append(stored)
    return applied


def _replicas_only(obj: dict, replicas: int | None) -> dict:
    """An apply configuration of nothing but the replicas (None: of nothing at all)."""
    partial = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
               "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}}
    if replicas is not None:
        partial["spec"] = {"replicas": replicas}
    return partial


def prune_stale(k: Cluster, objects: list[dict], live: dict, *, dry_run: bool, out: Out) -> None:
    """Delete what the kit applied before and no longer renders; the namespace is never pruned."""
    rendered = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    stale = [key for key in live if key[0] != "Namespace" and key not in rendered]
    for kind, name in sorted(stale, key=lambda key: -APPLY_ORDER.index(key[0])):
        if dry_run:
            out(f"{kind.lower()}/{name} would be pruned (dry run)")
        # A Job's pods would otherwise stay, orphaned: the API's default for Jobs.
        elif k.delete(BY_NAME[kind].api_version, kind, name, "Background" if kind == "Job" else None):
            out(f"{kind.lower()}/{name} pruned")


