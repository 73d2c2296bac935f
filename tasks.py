"""Tasks of the Prefect-on-Kubernetes kit. `inv --list` shows them; `inv --help TASK` explains one.

Task bodies stay short: the logic lives in the `kit` package, one module per concern.
"""

from pathlib import Path

from kit import ROOT
from kit.cli import task


@task(help={
    "force": "replace an existing .env (its passwords are lost)",
    "registry": "registry host[:port] the cluster pulls from (REGISTRY)",
    "host": "public host name of the UI and API (PREFECT_HOST)",
    "namespace": "Kubernetes namespace (NAMESPACE)",
    "user": "login for the UI and the API (PREFECT_USER)",
    "database_url": "postgresql+asyncpg://… of an existing PostgreSQL; empty keeps SQLite (DATABASE_URL)",
})
def init(c, force=False, registry="", host="", namespace="", user="", database_url=""):
    """Write .env from .env.example, with a generated password."""
    from kit import settings

    path = settings.env_file_path()
    chosen = {"REGISTRY": registry, "PREFECT_HOST": host, "NAMESPACE": namespace, "PREFECT_USER": user,
              "DATABASE_URL": database_url}
    values = {key: value for key, value in chosen.items() if value}
    values["PREFECT_PASSWORD"] = settings.generate_password()
    text = settings.fill_template((ROOT / ".env.example").read_text(), values)
    settings.write_env_file(path, text, force=force)
    print(f"wrote {path} (mode 0600, with a generated PREFECT_PASSWORD); review it, then: inv render")


@task(help={
    "out": "write one file per object into this directory (mode 0600) instead of printing",
    "tag": "image tag to render (default: the one `inv build` gives this commit)",
})
def render(c, out="", tag=""):
    """Print every object a rollout would apply, in order (Secret values redacted)."""
    from kit import manifests, release, settings

    current = settings.load()
    image = release.image_for(current.image_repository, tag or None).reference
    objects = manifests.render(current, image)
    if out:
        paths = manifests.write(objects, Path(out))
        print(f"wrote {len(paths)} objects to {out}/ (mode 0600: they hold Secrets); kubectl apply -f {out}/")
    else:
        print("# Secret values are redacted; `inv render --out DIR` writes them.")
        print(manifests.to_yaml(objects), end="")
