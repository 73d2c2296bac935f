"""`inv backup` and `inv restore` through the real client against the stand-in: the exec stream carries the
database's bytes out and in (the stand-in runs the pod's command locally, on a local file standing in for
/data/prefect.db), and restore's order: server to zero, restore pod on the claim, file in, pod gone, server
back and ready."""

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from kit import backup
from kit.errors import UserError
from tests.contract.clusterkit import NS, Lines, deployed, discovery_cache, settings  # noqa: F401
from tests.rendering import make_settings

SERVER_POD = "prefect-server-0"


def prefect_like_database(path, runs):
    """An SQLite file with the tables check_file looks for, holding these flow run names."""
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE alembic_version (version_num TEXT)")
        database.execute("CREATE TABLE flow_run (name TEXT)")
        database.executemany("INSERT INTO flow_run VALUES (?)", [(name,) for name in runs])
    return path


def run_names(path):
    with sqlite3.connect(path) as database:
        return {row[0] for row in database.execute("SELECT name FROM flow_run")}


@pytest.fixture
def database(tmp_path):
    (tmp_path / "pod-data").mkdir()
    return prefect_like_database(tmp_path / "pod-data" / "prefect.db", ["before"])


@pytest.fixture
def pod_runs_locally(deployed, database):
    """Exec in the server and restore pods runs the command here, on the local stand-in for /data/prefect.db."""
    commands = []

    def run(command, container):
        commands.append((command, container))
        program, flag, script, *args = command
        assert (program, flag) == ("python", "-c")
        local = script.replace(backup.DATABASE, str(database))  # the one substitution: where the volume is
        return subprocess.Popen([sys.executable, "-c", local, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    for pod in (SERVER_POD, backup.RESTORE_POD):
        deployed.on_exec(NS, pod, run)
    return commands


def test_backup_copies_a_consistent_file_out_through_exec(deployed, pod_runs_locally, tmp_path, settings):
    lines = Lines()
    path = backup.backup(settings, tmp_path / "saved.db", out=lines)
    assert run_names(path) == {"before"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert pod_runs_locally == [(["python", "-c", backup.BACKUP_SCRIPT], "server")]
    assert lines == [f"backed up the database of pod/{SERVER_POD} to {path} ({path.stat().st_size:,} bytes, "
                     "integrity ok)"]


def test_backup_is_refused_with_postgres_pointing_at_pg_dump(deployed):
    with pytest.raises(UserError, match=r"^inv backup: the database is your PostgreSQL \(DATABASE_URL\).*pg_dump"):
        backup.backup(make_settings(DATABASE_URL="postgresql+asyncpg://prefect:pw@db.company.local:5432/prefect"))


def test_a_failing_backup_leaves_no_file(deployed, pod_runs_locally, database, tmp_path, settings):
    database.unlink()
    database.mkdir()  # sqlite3 cannot open a directory: the script fails in the pod
    with pytest.raises(UserError, match=rf"^inv backup: the backup in pod/{SERVER_POD} failed \(exit 1\)"):
        backup.backup(settings, tmp_path / "saved.db")
    assert list(tmp_path.glob("saved.db*")) == []


def test_restore_stops_the_server_copies_the_file_in_and_starts_it_again(deployed, pod_runs_locally, database,
                                                                         tmp_path, settings):
    saved = prefect_like_database(tmp_path / "saved.db", ["from-the-backup"])
    deployed.controller(True)
    restore_pod_started = threading.Thread(target=play_kubelet_for_the_restore_pod, args=(deployed,), daemon=True)
    restore_pod_started.start()
    lines = Lines()
    backup.restore(settings, saved, timeout=20, out=lines)

    assert run_names(database) == {"from-the-backup"}
    assert lines[:3] == ["statefulset/prefect-server scaled to 0",
                         f"restored {saved} ({saved.stat().st_size:,} bytes) into the data volume",
                         "statefulset/prefect-server scaled to 1"]
    assert lines[-1].startswith('statefulset "prefect-server"') and "complete" in lines[-1]
    assert deployed.get("Pod", NS, backup.RESTORE_POD) is None
    pod = deployed.get("Pod", NS, SERVER_POD)
    assert pod["status"]["phase"] == "Running"
    # The restore pod held the server's claim, with the server's image and securityContext.
    created = next(r.body for r in deployed.requests if r.method == "POST" and r.path.endswith("/pods"))
    assert created["spec"]["volumes"][0] == {"name": "data",
                                             "persistentVolumeClaim": {"claimName": "data-prefect-server-0"}}
    server = deployed.get("StatefulSet", NS, "prefect-server")["spec"]["template"]["spec"]
    assert created["spec"]["securityContext"] == server["securityContext"]
    assert created["spec"]["containers"][0]["image"] == server["containers"][0]["image"]


def test_restore_refuses_a_file_that_is_not_a_prefect_database_before_touching_the_cluster(deployed, tmp_path,
                                                                                           settings):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as database:
        database.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(UserError, match="an SQLite database, but not Prefect's"):
        backup.restore(settings, other, timeout=5)
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(UserError, match="not an SQLite database"):
        backup.restore(settings, tmp_path / "text.db", timeout=5)
    assert deployed.writes() == []


def test_restore_asks_first_and_a_no_changes_nothing(deployed, tmp_path, settings):
    saved = prefect_like_database(tmp_path / "saved.db", ["x"])
    lines = Lines()
    backup.restore(settings, saved, timeout=5, confirm=lambda question: False, out=lines)
    assert lines == ["nothing restored"] and deployed.writes() == []


def play_kubelet_for_the_restore_pod(api, seconds=20.0):
    """The stand-in runs no containers: once the restore pod exists, report it running, as the kubelet would."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pod = api.get("Pod", NS, backup.RESTORE_POD)
        if pod is not None:
            api.set_status("Pod", NS, backup.RESTORE_POD, {"phase": "Running", "containerStatuses": [
                {"name": "server", "image": pod["spec"]["containers"][0]["image"], "imageID": "", "ready": True,
                 "started": True, "restartCount": 0, "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}}}]})
            return
        time.sleep(0.02)
