"""`inv history` and `inv rollback`: the releases pushed from this machine, which one the cluster runs, and
rolling back to an earlier one through the same rollout (its waits, its diagnostics).

What runs is read from the workloads' images, never remembered: another machine may have rolled out since.
The choice of a release and the refusal of a Prefect downgrade are pure functions of the history and
those images.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kit import cluster, release, rollout, server
from kit.errors import UserError
from kit.kinds import BY_NAME
from kit.release import Build
from kit.settings import Settings
from kit.status import WORKLOAD_KINDS, table

Out = Callable[[str], None]


def live_images(k: cluster.Cluster) -> dict[str, str]:
    """The image each of the kit's workloads runs, by `kind/name`; the embedded Redis runs an image of its own."""
    workloads = [obj for kind in WORKLOAD_KINDS for obj in k.objects(BY_NAME[kind].api_version, kind)[0]
                 if not server.is_redis(obj)]
    return {cluster.describe(obj): obj["spec"]["template"]["spec"]["containers"][0]["image"] for obj in workloads}


def runs(build: Build, image: str) -> bool:
    """Whether an image reference is this release: the same digest, or the same tag when it is not pinned."""
    name, _, digest = image.partition("@")
    host_and_path, _, last = name.rpartition("/")
    last, _, tag = last.partition(":")  # a registry's port is before the last "/", a tag after it
    if f"{host_and_path}/{last}".lstrip("/") != build.repository:
        return False
    return build.digest == digest if digest else build.tag == (tag or "latest")


def live_release(releases: list[Build], images: dict[str, str]) -> Build | None:
    """The newest release that a workload runs, if any of them runs one pushed from here."""
    running = [build for build in releases if any(runs(build, image) for image in images.values())]
    return running[-1] if running else None


def history_lines(releases: list[Build], images: dict[str, str] | None) -> list[str]:
    """The releases as a table, oldest first, each marked with the workloads that run it; images None: the
    cluster could not be read."""
    rows = []
    for build in releases:
        on = [workload for workload, image in images.items() if runs(build, image)] if images else []
        mark = ("live" if len(on) == len(images) else f"live on {', '.join(on)}") if on else ""
        rows.append((build.tag, build.digest[:19] or "(not pushed)", build.commit or "-", build.prefect_version or "?",
                     _when(build.pushed_at), mark))
    lines = table(("TAG", "DIGEST", "COMMIT", "PREFECT", "PUSHED (UTC)", "LIVE"), rows) if rows else []
    if images is not None:
        strangers = sorted({image for image in images.values()
                            if not any(runs(build, image) for build in releases)})
        for image in strangers:
            where = ", ".join(workload for workload, running in images.items() if running == image)
            lines.append(f"live: {image} on {where}, not pushed from this machine")
        if not images:
            lines.append("live: nothing of the kit's runs in the namespace")
    return lines


def _when(pushed_at: str) -> str:
    return datetime.fromisoformat(pushed_at).strftime("%Y-%m-%d %H:%M") if pushed_at else "-"


def choose(releases: list[Build], live: Build | None, images: dict[str, str], to: str | None) -> Build:
    """The release `inv rollback` rolls out: the newest one tagged `to`, else the one pushed before the live one."""
    if to:
        tagged = [build for build in releases if build.tag == to]
        if not tagged:
            raise UserError(f"--to {to}: no release of that tag was pushed from this machine (`inv history` lists "
                            f"them); `inv rollout --tag {to}` rolls out any tag")
        return tagged[-1]
    if not images:
        raise UserError("rollback: nothing of the kit's runs in the namespace, so there is nothing to roll back; "
                        "`inv rollout --tag TAG` rolls out a release")
    if live is None:
        raise UserError(f"rollback: the cluster runs {', '.join(sorted(set(images.values())))}, which was not pushed "
                        "from this machine, so there is no previous release to go back to; pass --to TAG "
                        "(`inv history` lists them)")
    earlier = [build for build in releases[: releases.index(live)] if build.digest != live.digest]
    if not earlier:
        raise UserError(f"rollback: {live.tag} is the oldest release pushed from this machine; nothing to roll back "
                        "to (`inv history`)")
    return earlier[-1]


def downgrade_problem(target: Build, live: Build | None, images: dict[str, str]) -> str | None:
    """Why rolling out target could wedge the server on its database, or None.

    The live server has migrated the database to its Prefect release's schema, and Prefect's migrations only
    go forward: an older server cannot run on a newer schema.
    """
    if not images:
        return None
    if live is None or not live.prefect_version:
        return (f"the live image was not pushed from this machine, so its Prefect release is unknown and "
                f"{target.tag} (Prefect {target.prefect_version or '?'}) may be older")
    if not target.prefect_version or _version(target.prefect_version) < _version(live.prefect_version):
        return (f"{target.tag} runs Prefect {target.prefect_version or '(unknown)'}, older than the live "
                f"{live.tag}'s {live.prefect_version}, which has migrated the database; an older server cannot run "
                "on a newer schema: restore a backup taken before the upgrade, or roll forward "
                "(README: inv history, inv rollback)")
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def show(settings: Settings, record: Path = release.RECORD_PATH, out: Out = print) -> None:
    """Print the history with the live release marked; raise UserError (after the table) when the cluster
    cannot be read."""
    releases = _releases(settings, record)
    problem = None
    try:
        with cluster.connect(settings) as k:
            images = live_images(k)
    except UserError as error:
        problem, images = error, None
    if not releases:
        out(f"no release of {settings.image_repository} was pushed from this machine yet (`inv build push`)")
    for line in history_lines(releases, images):
        out(line)
    if problem:
        out("live: unknown, the cluster cannot be read")
        raise problem


def rollback(settings: Settings, *, to: str | None = None, force: bool = False,
             timeout: float = rollout.DEFAULT_TIMEOUT, record: Path = release.RECORD_PATH, out: Out = print) -> None:
    """Roll out the previous release (or the newest one tagged `to`), refusing a Prefect downgrade unless forced."""
    releases = _releases(settings, record)
    with cluster.connect(settings) as k:
        images = live_images(k)
    live = live_release(releases, images)
    target = choose(releases, live, images, to)
    problem = downgrade_problem(target, live, images)
    if problem and not force:
        raise UserError(f"rollback: {problem}; --force rolls back anyway")
    if problem:
        out(f"warning: rolling back with --force although {problem}")
    out(f"rolling back to {target.reference} (pushed {_when(target.pushed_at)} UTC, Prefect "
        f"{target.prefect_version or '?'})")
    rollout.rollout(settings, tag=f"{target.tag}@{target.digest}", timeout=timeout, out=out)


def _releases(settings: Settings, record: Path) -> list[Build]:
    return [build for build in release.read_history(record) if build.repository == settings.image_repository]
