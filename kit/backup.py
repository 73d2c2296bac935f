"""`inv backup` and `inv restore`: the embedded SQLite database, copied out of and into the server pod.

Nothing extra is needed in the image: the backup is SQLite's own online backup API, run by the pod's Python
through the exec stream (consistent while the server writes), and both directions stream the file's bytes
over that same stream. The scripts that run in the pod are plain text here, so a test can run them in a
container of the real image exactly as the pod runs them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from kit import cluster
from kit.errors import UserError
from kit.settings import SERVER_NAME, Settings

Out = Callable[[str], None]
DATABASE = "/data/prefect.db"
SERVER_CONTAINER = "server"
RESTORE_POD = "prefect-restore"
# Stream the file in pieces: a database of gigabytes must not sit in memory twice.
CHUNK = 1 << 20

# SQLite's online backup into the pod's /tmp (an emptyDir: the root is read-only), then its bytes to stdout.
BACKUP_SCRIPT = f"""
import os, shutil, sqlite3, sys, tempfile
fd, copy = tempfile.mkstemp(suffix=".db")
os.close(fd)
try:
    source, target = sqlite3.connect({DATABASE!r}), sqlite3.connect(copy)
    with target:
        source.backup(target)
    source.close(); target.close()
    with open(copy, "rb") as stream:
        shutil.copyfileobj(stream, sys.stdout.buffer, {CHUNK})
finally:
    os.remove(copy)
"""

# Exactly SIZE bytes from stdin into a file beside the database, checked, then put in its place with its
# journal files removed (a stale -wal file would be replayed over the restored database).
RESTORE_SCRIPT = f"""
import os, sqlite3, sys
size, target = int(sys.argv[1]), {DATABASE!r}
part = target + ".restoring"
def fail(why):
    os.remove(part)
    sys.exit(why)
with open(part, "wb") as stream:
    left = size
    while left:
        chunk = sys.stdin.buffer.read(min(left, {CHUNK}))
        if not chunk:
            fail(f"the stream ended {{left}} bytes early")
        stream.write(chunk)
        left -= len(chunk)
check = sqlite3.connect(part).execute("PRAGMA integrity_check").fetchone()[0]
if check != "ok":
    fail(f"the restored file fails its integrity check: {{check}}")
for journal in (target + "-wal", target + "-shm"):
    if os.path.exists(journal):
        os.remove(journal)
os.replace(part, target)
"""


def default_file(settings: Settings, now: datetime) -> Path:
    return Path(f"prefect-backup-{settings.namespace}-{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}.db")


def check_file(path: Path) -> None:
    """Refuse a file that is not an intact Prefect database before anything in the cluster is touched."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; give the path of a file `inv backup` wrote")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as database:
            integrity = database.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        raise UserError(f"{path}: not an SQLite database ({error}); give the path of a file `inv backup` wrote") \
            from None
    if integrity != "ok":
        raise UserError(f"{path}: fails SQLite's integrity check ({integrity}); take another backup")
    if not {"alembic_version", "flow_run"} <= tables:
        raise UserError(f"{path}: an SQLite database, but not Prefect's (no flow_run table); give a file `inv backup` "
                        "wrote")


def _refuse_postgres(settings: Settings, task: str) -> None:
    if settings.uses_external_database:
        raise UserError(f"inv {task}: the database is your PostgreSQL (DATABASE_URL), not the embedded SQLite; "
                        "back it up with pg_dump and restore with pg_restore (README: inv backup, inv restore)")


def backup(settings: Settings, out_file: Path | None = None, out: Out = print) -> Path:
    """Copy a consistent snapshot of the running server's database to a local file (mode 0600: it holds
    whatever the flows stored, block documents included)."""
    _refuse_postgres(settings, "backup")
    path = out_file or default_file(settings, cluster.now())
    with cluster.connect(settings) as k:
        pod = _ready_server_pod(k)
        part = path.with_name(path.name + ".part")
        descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            code, errors = k.run(pod, SERVER_CONTAINER, ["python", "-c", BACKUP_SCRIPT], stdout=stream.write)
        if code != 0:
            part.unlink()
            raise UserError(f"inv backup: the backup in pod/{pod} failed (exit {code}): {_last_line(errors)}")
    try:
        check_file(part)
    except UserError:
        part.unlink()
        raise
    os.replace(part, path)
    out(f"backed up the database of pod/{pod} to {path} ({path.stat().st_size:,} bytes, integrity ok)")
    return path


def restore(settings: Settings, path: Path, *, timeout: float, confirm=None, out: Out = print) -> None:
    """Put a backup in place of the server's database: server to zero, a short-lived pod on the data claim
    copies the file in, server back up (waited for as a rollout waits). confirm(question) -> bool; None is yes."""
    from kit import readiness

    _refuse_postgres(settings, "restore")
    check_file(path)
    with cluster.connect(settings) as k:
        server = k.get("apps/v1", "StatefulSet", SERVER_NAME)
        if server is None:
            raise UserError(f"statefulset/{SERVER_NAME}: not in namespace {k.namespace}; roll out first "
                            "(`inv rollout`), then restore")
        question = (f"replace the database of statefulset/{SERVER_NAME} in namespace {k.namespace} of context "
                    f"'{k.context}' with {path}? The server stops until the restore is done, and what it stored "
                    "since the backup is lost")
        if confirm is not None and not confirm(question):
            out("nothing restored")
            return
        replicas = server["spec"].get("replicas", 1)
        k.scale(server, 0)
        out(f"statefulset/{SERVER_NAME} scaled to 0")
        k.wait_gone("v1", "Pod", [f"{SERVER_NAME}-{index}" for index in range(replicas)], timeout)
        pod = restore_pod(server)
        k.create(pod)
        try:
            k.wait_for("v1", "Pod", RESTORE_POD, _running, timeout, "running")
            size = path.stat().st_size
            with open(path, "rb") as stream:
                code, errors = k.run(RESTORE_POD, SERVER_CONTAINER, ["python", "-c", RESTORE_SCRIPT, str(size)],
                                     stdin=iter(lambda: stream.read(CHUNK), b""))
            if code != 0:
                raise UserError(f"inv restore: copying {path} into the data volume failed (exit {code}): "
                                f"{_last_line(errors)}; the server is scaled to 0: run `inv restore` again, or "
                                f"`inv rollout` to start it on its old database")
            out(f"restored {path} ({size:,} bytes) into the data volume")
        finally:
            k.delete("v1", "Pod", RESTORE_POD)
            k.wait_gone("v1", "Pod", [RESTORE_POD], timeout)
        scaled = k.scale(server, replicas)
        out(f"statefulset/{SERVER_NAME} scaled to {replicas}")
        readiness.wait(k, [scaled], timeout, out)


def restore_pod(server: dict) -> dict:
    """A pod that holds the server's data claim and nothing else: the server's image, securityContext and volume,
    asleep until the file has been copied in."""
    template = server["spec"]["template"]["spec"]
    container = next(c for c in template["containers"] if c["name"] == SERVER_CONTAINER)
    claim = server["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    mounts = [m for m in container["volumeMounts"] if m["name"] in (claim, "tmp")]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": RESTORE_POD, "namespace": server["metadata"]["namespace"],
                     "labels": {"app.kubernetes.io/name": "prefect", "app.kubernetes.io/part-of": "prefect",
                                "app.kubernetes.io/component": "restore"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": template["securityContext"],
            "imagePullSecrets": template.get("imagePullSecrets", []),
            "containers": [{
                "name": SERVER_CONTAINER, "image": container["image"],
                "imagePullPolicy": container.get("imagePullPolicy", "IfNotPresent"),
                # args only: the image's tini stays PID 1, as in every pod of the kit.
                "args": ["python", "-c", "import time; time.sleep(3600)"],
                "securityContext": container["securityContext"],
                "resources": container["resources"],
                "volumeMounts": mounts,
            }],
            "volumes": [{"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-{SERVER_NAME}-0"}},
                        {"name": "tmp", "emptyDir": {}}],
        },
    }


def _running(pod: dict | None) -> bool:
    statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
    return any("running" in status.get("state", {}) for status in statuses)


def _ready_server_pod(k: cluster.Cluster) -> str:
    pod = k.get("v1", "Pod", f"{SERVER_NAME}-0")
    if pod is None or not cluster.pod_ready(pod):
        raise UserError(f"pod/{SERVER_NAME}-0: not running and ready, so there is nothing to back up from; "
                        "`inv status` shows why")
    return pod["metadata"]["name"]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
