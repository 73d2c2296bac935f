"""Tasks of the Prefect-on-Kubernetes kit. `inv --list` shows them; `inv --help TASK` explains one.

Task bodies stay short: the logic lives in the `kit` package, one module per concern.
"""

from pathlib import Path

from kit import ROOT
from kit.cli import ask, task


@task(help={
    "force": "replace an existing .env (its passwords are lost)",
    "registry": "registry host[:port] the cluster pulls from (REGISTRY)",
    "host": "public host name of the UI and API (PUBLIC_HOST)",
    "namespace": "Kubernetes namespace (NAMESPACE)",
    "user": "login for the UI and the API (LOGIN_USER)",
    "database_url": "postgresql+asyncpg://… of an existing PostgreSQL; empty keeps SQLite (DATABASE_URL)",
})
def init(c, force=False, registry="", host="", namespace="", user="", database_url=""):
    """Write .env from .env.example, with a generated password."""
    from kit import settings

    path = settings.env_file_path()
    chosen = {"REGISTRY": registry, "PUBLIC_HOST": host, "NAMESPACE": namespace, "LOGIN_USER": user,
              "DATABASE_URL": database_url}
    values = {key: value for key, value in chosen.items() if value}
    values["LOGIN_PASSWORD"] = settings.generate_password()
    # The embedded Redis's too, so that a later switch to DATABASE_MODE=scaled needs no new secret.
    values["REDIS_PASSWORD"] = settings.generate_password()
    text = settings.fill_template((ROOT / ".env.example").read_text(), values)
    settings.write_env_file(path, text, force=force)
    print(f"wrote {path} (mode 0600, with a generated LOGIN_PASSWORD and REDIS_PASSWORD); review it, then: inv render")


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


API_URL = ("Prefect API to use, e.g. http://127.0.0.1:4200/api (default: the public URL when it answers, "
           "else a port-forward to the server pod)")


@task(help={
    "api_url": API_URL,
    "dry_run": "print what would change (the job templates still dry-run in the cluster), change nothing",
    "prune": "delete queues config/pools.yaml no longer declares (never a pool's default queue)",
    "force": "with --prune, also delete queues that still have scheduled flow runs; recreate a pool of "
             "another type that has none",
    "tag": "image for the kubernetes pools' flow runs (default: the one their workers run in the cluster)",
})
def pools(c, api_url="", dry_run=False, prune=False, force=False, tag=""):
    """Make the work pools, queues and job templates of config/pools.yaml true on the Prefect server."""
    from kit import pools as work_pools, settings

    work_pools.sync(settings.load(), api_url or None, dry_run=dry_run, prune=prune, force=force, tag=tag or None)


@task(help={
    "api_url": "API URL the profile points at (default: the public one, PUBLIC_HOST)",
    "activate": "also make it the active profile of your prefect CLI",
})
def profile(c, api_url="", activate=False):
    """Write a Prefect profile (named NAMESPACE) pointing your prefect CLI at the server."""
    from kit import profile as prefect_profile, settings

    name, path = prefect_profile.write(settings.load(), api_url or None, activate=activate)
    use = ("it is now active" if activate
           else f"use it with `prefect profile use {name}` or `prefect --profile {name} …`")
    print(f"wrote profile {name} to {path} (PREFECT_API_URL, PREFECT_API_AUTH_STRING); {use}")


@task(help={
    "api_url": API_URL,
    "code_dir": "where flow runs find flows/ (default: the image's copy, /opt/prefect/flows)",
})
def flows(c, api_url="", code_dir=""):
    """Deploy the flows of flows/prefect.yaml to their work queues."""
    from kit import flows as prefect_flows, settings

    prefect_flows.deploy(settings.load(), api_url or None, code_dir or prefect_flows.IMAGE_FLOWS_DIR)


@task(help={
    "tag": "image tag (default: the git short sha of HEAD, with -dirty for uncommitted changes)",
    "no_cache": "rebuild every layer instead of reusing cached ones",
    "platform": "platform to build for (default IMAGE_PLATFORM, linux/amd64): your cluster's, not your laptop's",
    "verbose": "print the Docker engine's own output too, not only one line per step",
})
def build(c, tag="", no_cache=False, platform="", verbose=False):
    """Build the image (drivers and extras from .env), tag it :<git sha> and :latest."""
    from kit import image, settings

    image.build(settings.load(), ROOT, tag=tag, no_cache=no_cache, platform=platform, verbose=verbose)


@task
def push(c):
    """Push the image `inv build` made (logging in with REGISTRY_USER), record its digest and the release."""
    from kit import image, settings

    image.push(settings.load(), ROOT)


@task
def history(c):
    """List the releases pushed from this machine and mark the one the cluster runs."""
    from kit import history as releases, settings

    releases.show(settings.load())


@task(help={
    "to": "roll out the newest release of this tag instead of the one before the live release",
    "force": "roll back even to an older Prefect release than the live one (its database schema is newer)",
    "timeout": "seconds to wait for the server and workers to become ready (default 300)",
})
def rollback(c, to="", force=False, timeout=300):
    """Roll out the release pushed before the live one (or --to TAG), with the rollout's waits and diagnostics."""
    from kit import history as releases, settings

    releases.rollback(settings.load(), to=to or None, force=force, timeout=timeout)


@task(help={"dry_run": "ask the API server what would change (dryRun=All) and change nothing; values stay hidden"})
def secrets(c, dry_run=False):
    """Apply the namespace and the rendered Secrets to the cluster, nothing else."""
    from kit import rollout as kit_rollout, settings

    kit_rollout.secrets(settings.load(), dry_run=dry_run)


@task(help={
    "tag": "image tag to roll out (default: what `inv build push` recorded for this commit, pinned by digest)",
    "restart": "restart every pod even when nothing changed, as `kubectl rollout restart` does",
    "prune": "delete objects the kit applied before and no longer renders (found by its labels)",
    "dry_run": "ask the API server what would change (dryRun=All) and change nothing; Secret values stay hidden",
    "force_conflicts": "take back fields another field manager (kubectl edit, another tool) has changed",
    "switch_database": "start the server on another database than the live one's, to or from SQLite, whose "
                       "data does not follow (README: Switching database modes)",
    "recreate": "delete and recreate a workload whose change Kubernetes cannot make in place (data volume kept)",
    "timeout": "seconds to wait for the migration, the server, the workers and their connection to Prefect "
               "(default 300)",
    "api_url": API_URL,
})
def rollout(c, tag="", restart=False, prune=False, dry_run=False, force_conflicts=False, switch_database=False,
            recreate=False, timeout=300, api_url=""):
    """Apply everything, make the pools true, and wait until every worker is connected to Prefect."""
    from kit import rollout as kit_rollout, settings

    kit_rollout.rollout(settings.load(), tag=tag or None, restart=restart, prune=prune, dry_run=dry_run,
                        force_conflicts=force_conflicts, switch_database=switch_database, recreate=recreate,
                        timeout=timeout, api_url=api_url or None)


@task(help={"api_url": API_URL})
def status(c, api_url=""):
    """Show the kit's pods and workloads, the public URL, and the work pools with their workers."""
    from kit import settings, status as kit_status

    kit_status.show(settings.load(), api_url or None)


@task
def doctor(c):
    """Check every precondition of a rollout at once: settings, cluster, rights, storage, registry, DNS."""
    import invoke

    from kit import doctor as checks, settings

    if not checks.run(settings.load):
        raise invoke.Exit(code=1)


@task(help={
    "no_cache": "rebuild every image layer instead of reusing cached ones",
    "timeout": "seconds the rollout waits for the server, the workers and their connection (default 300)",
    "api_url": API_URL,
})
def deploy(c, no_cache=False, timeout=300, api_url=""):
    """Doctor, build, push, Secrets, rollout (pools included), flows, status: stops at the first failure."""
    from kit import deploy as kit_deploy, settings

    kit_deploy.deploy(settings.load(), no_cache=no_cache, timeout=timeout, api_url=api_url or None)


@task(help={
    "worker": "show the worker of this work queue (e.g. prod-main) instead of the server",
    "services": "DATABASE_MODE=scaled: show the background services instead of the API",
    "follow": "keep streaming new lines until the pod stops (Ctrl-C to leave)",
    "tail": "lines of history to show (default 100)",
})
def logs(c, worker="", services=False, follow=False, tail=100):
    """Show the recent log of the Prefect server, or of one worker."""
    from kit import logs as pod_logs, settings

    pod_logs.show(settings.load(), worker=worker, services=services, tail=tail, follow=follow)


@task(help={"port": "local port to listen on (default: a free one)"})
def ui(c, port=0):
    """Open the UI on this machine: a port-forward to the server pod's login proxy, until Ctrl-C."""
    from kit import settings, ui as server_ui

    try:
        server_ui.serve(settings.load(), port)
    except KeyboardInterrupt:
        print("UI closed")


@task(help={"out": "file to write (default: prefect-backup-<namespace>-<UTC time>.db in the current directory)"})
def backup(c, out=""):
    """Copy a consistent snapshot of the embedded SQLite database out of the running server pod."""
    from kit import backup as database, settings

    database.backup(settings.load(), Path(out) if out else None)


@task(help={
    "yes": "do not ask for confirmation",
    "timeout": "seconds to wait for each step: the server stopping, the restore pod, the server ready (default 300)",
})
def restore(c, file, yes=False, timeout=300):
    """Replace the embedded SQLite database with a backup: the server stops, the file goes in, it starts again."""
    from kit import backup as database, settings

    database.restore(settings.load(), Path(file), timeout=timeout, confirm=None if yes else ask)


@task(help={
    "yes": "do not ask for confirmation",
    "delete_data": "also delete the server's PersistentVolumeClaims: the SQLite database is lost",
    "timeout": "seconds to wait until what was deleted is gone (default 300)",
})
def destroy(c, yes=False, delete_data=False, timeout=300):
    """Delete what the kit created in the namespace and wait until it is gone; keeps the data unless --delete-data."""
    from kit import destroy as teardown, settings

    teardown.run(settings.load(), delete_data=delete_data, confirm=None if yes else ask, timeout=timeout)
