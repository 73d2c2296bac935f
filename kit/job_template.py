"""The base job template of a kubernetes work pool: Prefect's own default for the kubernetes worker type
(kit.pools reads it), with the kit's Job in its job_configuration.job_manifest. Pure: no I/O
(prefect-kubernetes is only imported, for the Job it builds from a template).

Prefect's variables stay as they are, so deployments keep their job_variables. What must hold for every
flow run is written into the manifest itself, where no variable reaches it: the image the rollout
deploys (by digest), the namespace, the pull Secret, the hardened pod of the kit (taken from the worker
template, so it is written once), the flow-run account without a token, the proxies from the Secret.
What a deployment may reasonably change (requests and limits, how long a finished Job stays) becomes
the default of Prefect's own variable for it.
"""

from __future__ import annotations

import copy
import uuid

from kit import manifests, secrets, workers
from kit.pool_config import Pool
from kit.settings import Settings

# The container prefect-kubernetes fills in: it must stay the first and keep this name.
CONTAINER = "prefect-job"
AUTH_VARIABLE = "PREFECT_API_AUTH_STRING"
# The kit's labels for flow-run pods. prefect-kubernetes adds its own (app.kubernetes.io/name becomes the
# deployment's name, managed-by becomes "prefect"), so these two are what selects them (NetworkPolicy).
FLOW_RUN_LABELS = {"app.kubernetes.io/part-of": "prefect", "app.kubernetes.io/component": "flow-run"}
# Names of the dry-run objects the admission check sends.
CHECK_NAME = "prefect-kit-admission-check"


def render(default: dict, pool: Pool, settings: Settings, image: str, worker_template: dict) -> dict:
    """The base job template of one kubernetes pool: `default` with the kit's Job and defaults."""
    template = copy.deepcopy(default)
    configuration = template["job_configuration"]
    # The worker creates the Job in configuration.namespace: both must name the kit's namespace.
    configuration["namespace"] = settings.namespace
    manifest = configuration["job_manifest"]
    manifest["metadata"]["namespace"] = settings.namespace
    spec = manifest["spec"]
    pod = spec["template"]["spec"]
    # Prefect's default puts these in the pod spec, which has no such fields: they belong to the Job.
    for field in ("completions", "parallelism"):
        spec[field] = pod.pop(field, 1)
    spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(FLOW_RUN_LABELS)
    worker_pod = worker_template["spec"]["template"]["spec"]
    (worker_container,) = worker_pod["containers"]
    pod.update(
        serviceAccountName=workers.FLOW_RUN_ACCOUNT,
        automountServiceAccountToken=False,
        enableServiceLinks=False,
        securityContext=copy.deepcopy(worker_pod["securityContext"]),
        volumes=copy.deepcopy(worker_pod["volumes"]),
    )
    container = pod["containers"][0]
    container.update(
        securityContext=copy.deepcopy(worker_container["securityContext"]),
        volumeMounts=copy.deepcopy(worker_container["volumeMounts"]),
        # A list, not Prefect's "{{ env }}": the worker puts its variables in front of these (HOME for the
        # writable home, then the proxies render_pod adds); job_variables env still reaches the Job.
        env=[copy.deepcopy(item) for item in worker_container["env"] if item["name"] == "HOME"],
    )
    manifests.render_pod(pod, settings, image)
    _set_defaults(template["variables"]["properties"], pool)
    configuration["job_manifest"] = merge(manifest, pool.job.manifest)
    return template


def _set_defaults(variables: dict, pool: Pool) -> None:
    resources = pool.job.resources
    defaults = {
        "cpu_request": resources["requests"].get("cpu"), "memory_request": resources["requests"].get("memory"),
        "cpu_limit": resources["limits"].get("cpu"), "memory_limit": resources["limits"].get("memory"),
        "finished_job_ttl": pool.job.ttl_seconds_after_finished,
        # 0: an evicted flow run is rescheduled by Prefect instead of retried by Kubernetes.
        "backoff_limit": 0,
    }
    for name, value in defaults.items():
        variables[name]["default"] = value


def merge(base, override):
    """`override` deep-merged into `base`: mappings key by key, lists of named items by name (as
    `kubectl apply` merges containers, env, volumes), any other value replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if _named_items(base) and _named_items(override):
        merged = [copy.deepcopy(item) for item in base]
        names = [item["name"] for item in merged]
        for item in override:
            if item["name"] in names:
                index = names.index(item["name"])
                merged[index] = merge(merged[index], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(override)


def _named_items(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and "name" in item for item in value)


def flow_run_job(template: dict) -> dict:
    """The Job the kubernetes worker creates from this template for a flow run with Prefect's defaults:
    built by prefect-kubernetes itself, with the auth string as the Secret reference the worker's settings
    make of it, and a fixed name for a dry run."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.utilities.templating import apply_values
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    defaults = {name: spec["default"] for name, spec in template["variables"]["properties"].items()
                if "default" in spec}
    configuration = KubernetesWorkerJobConfiguration(**apply_values(template["job_configuration"], defaults))
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name=CHECK_NAME))
    job = configuration.job_manifest
    for container in job["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            if item["name"] == AUTH_VARIABLE:
                item.pop("value", None)
                item["valueFrom"] = {"secretKeyRef": {"name": secrets.CONFIG, "key": "auth-string"}}
    job["metadata"].pop("generateName", None)
    job["metadata"]["name"] = CHECK_NAME
    return job


def pod_of(job: dict) -> dict:
    """The Pod the Job controller would create for this Job: the one PodSecurity admission judges."""
    template = job["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": job["metadata"]["name"], "namespace": job["metadata"]["namespace"],
                         "labels": dict(template.get("metadata", {}).get("labels", {}))},
            "spec": copy.deepcopy(template["spec"])}
