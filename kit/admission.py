"""Before a kubernetes pool's job template is written: ask the cluster whether it would run what the
template makes, so that a template it refuses fails here, in one line, and not later in silence.

Without this, a Job whose pods PodSecurity refuses is created, every pod is refused (FailedCreate), and
the flow run stays PENDING with no error in Prefect. Two server-side dry runs (nothing is stored):
the Job itself, for the schema (strict field validation), and a Pod made from the Job's pod template,
since PodSecurity's enforce mode judges Pods only (a workload object only gets warnings).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kit import job_template
from kit.cluster import Cluster, status_message
from kit.errors import UserError
from kit.pool_config import POOLS_FILE

_WARNING = re.compile(r'^\d{3} \S+ "(?P<text>.*)"$')


def check(k: Cluster, pool: str, template: dict, out: Callable[[str], None] = print) -> None:
    """Raise one UserError line when the cluster would refuse the flow runs of this template."""
    from kubernetes.client.exceptions import ApiException

    try:
        job = job_template.flow_run_job(template)
    except ValueError as error:  # prefect-kubernetes' own check of the manifest (pydantic)
        problem = next((line.strip() for line in str(error).splitlines() if "Value error" in line), str(error))
        problem = problem.split(" [type=")[0].removeprefix("Value error, ")
        raise UserError(f"pool {pool}: prefect-kubernetes cannot make a Job of its template: {problem}; "
                        f"change job.manifest in {POOLS_FILE}; nothing was written") from None
    _blank_settings(job)
    for obj in (job, job_template.pod_of(job)):
        try:
            warnings = k.dry_run_create(obj)
        except ApiException as error:
            raise UserError(refusal(pool, obj["kind"], error.status, status_message(error), k.namespace)) from None
        for warning in warnings:
            match = _WARNING.match(warning)
            out(f"warning: pool {pool}: the cluster warns about its flow runs' {obj['kind']}: "
                f"{match['text'] if match else warning}")


def _blank_settings(job: dict) -> None:
    """prefect-kubernetes copies the current process's PREFECT_* settings into the Job: here that is this
    machine's (a user's profile may hold a key), which have no business in a request to the API server, and
    neither schema nor PodSecurity look at a variable's value."""
    for container in job["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            if item["name"].startswith("PREFECT_") and "value" in item:
                item["value"] = ""


def refusal(pool: str, kind: str, status: int, message: str, namespace: str) -> str:
    """The one line for a refused dry run: what the cluster said, and what to change."""
    fix = f"change job.manifest of pool {pool} in {POOLS_FILE}; nothing was written"
    if status == 403 and "violates PodSecurity" in message:
        return f"pool {pool}: the cluster would refuse every flow run's pod: {message}; {fix}"
    if status == 403 and "error looking up service account" in message:
        return (f"pool {pool}: its flow runs' service account is not in namespace {namespace} yet ({message}); "
                "`inv rollout` creates it")
    if status == 403:
        return (f"pool {pool}: checking that the cluster admits its flow runs needs `create` on jobs and pods in "
                f"namespace {namespace} (a dry run: nothing is created), and the cluster said: {message}; "
                "ask for that right (README: Troubleshooting)")
    if status == 404:
        return f"pool {pool}: namespace {namespace} does not exist yet; run `inv rollout` first"
    if status in (400, 422):
        return f"pool {pool}: the API server refuses its flow runs' {kind}: {message}; {fix}"
    return f"pool {pool}: checking its flow runs' {kind} with the API server failed ({status}): {message}; try again"
