"""The server's workloads per database mode, all made from the one server pod template of manifests/20-server.yaml,
and the migration Job that runs before them. Pure: parsed objects and settings in, objects out.

- sqlite: the StatefulSet prefect-server as checked in, SQLite on its volume; it migrates on start (a Job could not
  mount the ReadWriteOnce claim the server pod holds, maybe on another node).
- postgres: the same StatefulSet without the volume: one pod running the API and the background services.
- scaled: instead of it, Deployment prefect-api (`--no-services`, SERVER_REPLICAS, the login proxy in each pod,
  spread across nodes) and Deployment prefect-services (`prefect server services start`: no proxy, no port), every
  part they must share in Redis; manifests/scaled/ holds the API's disruption budget and the services' policy,
  manifests/redis/ the embedded Redis.

postgres and scaled server pods never migrate or register block types on start: the Job prefect-migrate-<hash>
does, once, and the rollout applies them only once it completed. The hash covers everything the Job's pod runs and
reads, so a new image or database is a new Job, and no Job's template is ever changed in place.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from kit import autoscaling, secrets
from kit.errors import UserError
from kit.settings import SERVER_NAME, Settings

API = "prefect-api"
SERVICES = "prefect-services"
HEADLESS = f"{SERVER_NAME}-headless"
MIGRATION_PREFIX = "prefect-migrate-"
# On the server workloads: the migration they were rolled out after. A rollout whose Job a live server already
# names runs none, even once the Job's TTL removed it.
MIGRATION_ANNOTATION = "prefect-kit/migration"
SCALED_FOLDER, REDIS_FOLDER = "scaled", "redis"
SERVER_CONTAINER = "server"
DATA_VOLUME = "data"
COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
# Long enough to read a failed migration's log after a weekend; `inv rollout --prune` removes it sooner.
MIGRATION_TTL = 3 * 24 * 3600
API_CPU_PERCENT = 70
# The components of the server's objects in any mode: what one mode has and another lacks is removed by every
# rollout once the new server is ready, so two sets of background services never run on together.
SERVER_COMPONENTS = ("server", "services", "redis")

# postgres and scaled: what the Job does once, the server pods never do.
MIGRATED_BY_THE_JOB = {
    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    # Several API pods starting at once on an empty database race to register block types (uq_block_type__slug).
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    # With registration off, its memo only costs start-up time: it imports every installed collection to hash
    # the block registry (about a second of CPU per process).
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
    # A background service whose first connection times out (default 5 s) dies, and Prefect 3.9.1 neither logs
    # nor restarts it: seen for the automation triggers of a services process started on a busy machine.
    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
}
# scaled: each defaults to an in-memory implementation that only its own process sees.
SHARED_IN_REDIS = {
    "PREFECT_SERVER_EVENTS_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
    "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "prefect_redis.cleanup_queue",
}
# scaled: the connections, all from the one URL in prefect-config: the Docket (default memory://, one process's),
# the messaging connection, and the worker cleanup queue's, which prefect-redis 0.3.0 reads apart (default
# localhost:6379, where a services pod would log a connection error every 5 s).
REDIS_URL_SETTINGS = ("PREFECT_SERVER_DOCKET_URL", "PREFECT_REDIS_MESSAGING_URL",
                      "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_URL")
REDIS_URL_KEY = "redis-url"

# The Job's one command, as arguments to the image's python: the schema to Alembic's head (what `prefect server
# database upgrade -y` does), then the block types, as the API registers them on start when it may (collections
# first, prefect/server/api/server.py). Prefect has no CLI for the second: `prefect block register` registers one
# module's blocks through a running API, without the collections' or the protected system ones.
MIGRATION_SCRIPT = """\
import asyncio
import subprocess
import sys

upgrade = subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"])
if upgrade.returncode:
    sys.exit(upgrade.returncode)

import prefect.plugins
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration


async def register():
    prefect.plugins.load_prefect_collections()
    async with await provide_database_interface().session() as session:
        await run_block_auto_registration(session=session)


asyncio.run(register())
print("block types registered")
"""
MIGRATION_ARGS = ["python", "-c", MIGRATION_SCRIPT]


def folders(directory: Path, settings: Settings) -> list[Path]:
    """The folders of checked-in manifests this mode adds to manifests/."""
    return ([directory / SCALED_FOLDER] if settings.mode == "scaled" else []) + \
        ([directory / REDIS_FOLDER] if settings.embedded_redis else [])


def expand(objects: list[dict], settings: Settings) -> list[dict]:
    """The objects with the checked-in server StatefulSet replaced by this mode's workloads and migration Job."""
    expanded = []
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key == ("StatefulSet", SERVER_NAME):
            expanded += workloads(obj, settings)
        elif key == ("Service", HEADLESS) and settings.mode == "scaled":
            continue  # the StatefulSet's own DNS names: no StatefulSet, no names
        elif key == ("PodDisruptionBudget", API) and settings.server_replicas < 2:
            continue  # a budget of one pod would block every node drain
        else:
            expanded.append(obj)
    return expanded


def workloads(statefulset: dict, settings: Settings) -> list[dict]:
    """The server of this mode, from the checked-in StatefulSet."""
    if settings.mode == "sqlite":
        return [statefulset]
    _drop_data_volume(statefulset["spec"])
    env = server_container(statefulset["spec"]["template"]["spec"])["env"]
    env += [{"name": name, "value": value} for name, value in MIGRATED_BY_THE_JOB.items()]
    if settings.mode == "postgres":
        return [migration_job(statefulset), statefulset]
    env += [{"name": name, "value": value} for name, value in SHARED_IN_REDIS.items()]
    env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": secrets.CONFIG, "key": REDIS_URL_KEY}}}
            for name in REDIS_URL_SETTINGS]
    api = api_deployment(statefulset, settings.server_replicas)
    scaled = [migration_job(statefulset), api, services_deployment(statefulset, settings.services_replicas)]
    if settings.server_max_replicas:
        scaled.append(autoscaling.autoscale(api, settings.server_replicas, settings.server_max_replicas,
                                            API_CPU_PERCENT))
    return scaled


def server_container(pod: dict) -> dict:
    return next(container for container in pod["containers"] if container["name"] == SERVER_CONTAINER)


def api_deployment(statefulset: dict, replicas: int) -> dict:
    """The API alone in each pod (`--no-services`), with the proxy, replaced one surplus pod at a time (none is
    taken down before its successor is ready), spread across nodes where the scheduler can."""
    api = _deployment(statefulset, API, "server", replicas)
    spec = api["spec"]
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    server_container(pod)["args"].append("--no-services")
    pod["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": dict(spec["selector"]["matchLabels"])},
        # Counted per revision: during a rollout the old pods do not skew where the new ones go.
        "matchLabelKeys": ["pod-template-hash"],
    }]
    return api


def services_deployment(statefulset: dict, replicas: int) -> dict:
    """The background services (scheduler, late runs, triggers, event persister, ...): the server container
    alone, serving no port, so nothing to probe and nothing that may reach it."""
    services = _deployment(statefulset, SERVICES, "services", replicas)
    annotations = services["metadata"].setdefault("annotations", {})
    reason = "the background services serve no port, so there is no endpoint to probe"
    annotations.update({f"checkov.io/skip{len(annotations) + 1}": f"CKV_K8S_8={reason}",
                        f"checkov.io/skip{len(annotations) + 2}": f"CKV_K8S_9={reason}"})
    _only_container(services["spec"]["template"]["spec"], "services", ["prefect", "server", "services", "start"])
    return services


def migration_job(statefulset: dict) -> dict:
    """The Job that migrates the database and registers the block types; named by name_migration() once its pod
    template is complete."""
    template = copy.deepcopy(statefulset["spec"]["template"])
    template["metadata"]["labels"][COMPONENT] = "migration"
    pod = template["spec"]
    _only_container(pod, "migrate", MIGRATION_ARGS)
    pod["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": MIGRATION_PREFIX, "labels": dict(template["metadata"]["labels"]),
                     "annotations": dict(statefulset["metadata"].get("annotations", {}))},
        # One attempt: a migration that failed must be read, not retried into the same wall.
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": MIGRATION_TTL, "template": template},
    }


def name_migration(objects: list[dict]) -> None:
    """Name the migration Job after everything its pod runs and reads (its template carries the configuration
    checksum by now), and note on the server workloads that they come after it."""
    jobs = [obj for obj in objects if is_migration(obj)]
    if not jobs:
        return
    (job,) = jobs
    digest = hashlib.sha256(json.dumps(job["spec"], sort_keys=True).encode()).hexdigest()[:10]
    job["metadata"]["name"] = MIGRATION_PREFIX + digest
    for obj in objects:
        if is_workload(obj):
            obj["metadata"].setdefault("annotations", {})[MIGRATION_ANNOTATION] = job["metadata"]["name"]


def is_migration(obj: dict) -> bool:
    return obj["kind"] == "Job" and obj["metadata"]["name"].startswith(MIGRATION_PREFIX)


def is_workload(obj: dict) -> bool:
    """The server's workloads of any mode: the StatefulSet, or the API and services Deployments."""
    return (obj["kind"], obj["metadata"]["name"]) in (("StatefulSet", SERVER_NAME), ("Deployment", API),
                                                      ("Deployment", SERVICES))


def is_redis(obj: dict) -> bool:
    return obj["metadata"].get("labels", {}).get(COMPONENT) == "redis"


def replaced_with_mode(obj: dict) -> bool:
    """Whether a live object belongs to the server of some mode, and goes once another mode's server is ready."""
    return obj["metadata"].get("labels", {}).get(COMPONENT) in SERVER_COMPONENTS


def migrated(live: dict[tuple[str, str], dict], job: dict) -> bool:
    """Whether a live server workload was rolled out after this very migration."""
    name = job["metadata"]["name"]
    return any(is_workload(obj) and obj["metadata"].get("annotations", {}).get(MIGRATION_ANNOTATION) == name
               for obj in live.values())


# --- Switching modes ----------------------------------------------------------------------------------------

def live_mode(live: dict[tuple[str, str], dict]) -> str | None:
    """The mode the live server runs in; None before the first rollout."""
    statefulset = live.get(("StatefulSet", SERVER_NAME))
    if statefulset is not None:
        return "sqlite" if statefulset.get("spec", {}).get("volumeClaimTemplates") else "postgres"
    if ("Deployment", API) in live or ("Deployment", SERVICES) in live:
        return "scaled"
    return None


def check_switch(live: dict[tuple[str, str], dict], settings: Settings, switch_database: bool) -> None:
    """Refuse a switch from or to SQLite, whose data would not follow, unless asked for (--switch-database);
    postgres and scaled share their database, so switching between them is an ordinary rollout."""
    was, wanted = live_mode(live), settings.mode
    if was in (None, wanted) or {was, wanted} == {"postgres", "scaled"} or switch_database:
        return
    if was == "sqlite":
        raise UserError(
            f"DATABASE_MODE: the live server keeps its data in SQLite on its volume, and this rollout would start "
            f"it on PostgreSQL ({wanted}) with none of it: Prefect has no SQLite to PostgreSQL migration; keep a "
            "copy (`inv backup`), then `inv rollout --switch-database` (the volume claim stays), or set "
            "DATABASE_MODE=sqlite and empty DATABASE_URL")
    raise UserError(
        f"DATABASE_MODE: the live server runs on PostgreSQL ({was}), and this rollout would start it on an SQLite "
        "volume with none of that data; `inv rollout --switch-database` if you mean it, or set DATABASE_URL (and "
        "DATABASE_MODE) back")


def needs_recreate(live: dict | None, rendered: dict) -> bool:
    """Whether the live server StatefulSet must be deleted before the rendered one can be applied: its volume
    claims (SQLite's) come or go, and a StatefulSet's volumeClaimTemplates cannot change."""
    if live is None:
        return False
    return bool(live.get("spec", {}).get("volumeClaimTemplates")) != bool(rendered["spec"].get("volumeClaimTemplates"))


# --- Helpers ------------------------------------------------------------------------------------------------

def _deployment(statefulset: dict, name: str, component: str, replicas: int) -> dict:
    """A Deployment with the StatefulSet's pod template, its own component and instance labels."""
    source = copy.deepcopy(statefulset)
    labels = {**source["metadata"]["labels"], COMPONENT: component, INSTANCE: name}
    selector = {**source["spec"]["selector"]["matchLabels"], COMPONENT: component, INSTANCE: name}
    template = source["spec"]["template"]
    template["metadata"]["labels"].update({COMPONENT: component, INSTANCE: name})
    metadata = {"name": name, "labels": labels}
    if source["metadata"].get("annotations"):
        metadata["annotations"] = source["metadata"]["annotations"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template}}


def _only_container(pod: dict, name: str, args: list[str]) -> None:
    """The pod runs the server container alone, renamed, with these args and neither ports nor probes; the volumes
    it does not mount go."""
    container = server_container(pod)
    for key in ("ports", "startupProbe", "livenessProbe", "readinessProbe"):
        container.pop(key, None)
    container.update(name=name, args=list(args))
    pod["containers"] = [container]
    mounted = {mount["name"] for mount in container.get("volumeMounts", [])}
    pod["volumes"] = [volume for volume in pod.get("volumes", []) if volume["name"] in mounted]


def _drop_data_volume(spec: dict) -> None:
    """On PostgreSQL the server keeps nothing on disk, so it gets no volume."""
    spec.pop("volumeClaimTemplates", None)
    for container in spec["template"]["spec"]["containers"]:
        container["volumeMounts"] = [m for m in container.get("volumeMounts", []) if m["name"] != DATA_VOLUME]
