"""`inv flows`: deploy the flows in flows/ with Prefect's own mechanism (flows/prefect.yaml and
`prefect deploy --all`), against the kit's API URL and auth string.

A busy server is retried by Prefect's own client inside `prefect deploy`, request by request, within
RETRY_DEADLINE (kit.prefect_api.client_retry_env), rather than by running the whole command again: only the
client knows which request failed and how, so a 401 or a refused deployment is never repeated. A request tried
again after its answer was lost does no harm, as the writes of a deploy are upserts (a flow by its name, a
deployment by its flow and name).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kit import ROOT, access, prefect_api
from kit.errors import UserError
from kit.settings import Settings

FLOWS_DIR = ROOT / "flows"
# Where the image keeps its copy of flows/ (image/Dockerfile), which workers in the cluster run.
IMAGE_FLOWS_DIR = "/opt/prefect/flows"


def declared_pools(prefect_yaml: Path) -> set[str]:
    """The work pools the deployments of a prefect.yaml send their runs to."""
    import yaml

    try:
        document = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"{prefect_yaml}: not found; it lists the deployments `inv flows` makes") from None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", error)
        raise UserError(f"{prefect_yaml}: not valid YAML ({problem}); fix the syntax") from None
    deployments = document.get("deployments") or []
    return {(item.get("work_pool") or {}).get("name") for item in deployments if isinstance(item, dict)} - {None}


def deploy(settings: Settings, api_url: str | None = None, code_dir: str = IMAGE_FLOWS_DIR,
           flows_dir: Path = FLOWS_DIR, out: Callable[[str], None] = print) -> None:
    """Run `prefect deploy --all` in flows_dir; flow runs will find the code in code_dir."""
    pools = declared_pools(flows_dir / "prefect.yaml")
    with access.prefect_url(settings, api_url, out=out) as url:
        _check_pools(settings, url, pools, flows_dir, out)
        env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_KEY"}
        env.update(prefect_api.client_env(settings, url), **prefect_api.client_retry_env(settings.retry_deadline),
                   KIT_FLOWS_DIR=code_dir)
        done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=flows_dir,
                              env=env)
    if done.returncode:
        raise UserError(f"{flows_dir.name}/prefect.yaml: `prefect deploy --all` failed (exit {done.returncode}); "
                        f"its output above says why (a busy server's answers were retried for up to "
                        f"{settings.retry_deadline:g} s, RETRY_DEADLINE)")


def _check_pools(settings: Settings, url: str, pools: set[str], flows_dir: Path, out: Callable[[str], None]) -> None:
    """Connecting first gives the kit's one-line errors (unreachable, 401) instead of a Prefect traceback."""
    from prefect.exceptions import ObjectNotFound

    def check(client) -> None:
        for pool in sorted(pools):
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                raise UserError(f"pool {pool}: named in {flows_dir.name}/prefect.yaml but not on the server; "
                                "run `inv rollout` (or `inv pools`) first") from None

    with prefect_api.connect(settings, url) as client:
        prefect_api.retried(settings, lambda: check(client), out)
