"""The database modes' rollouts through the real kubernetes client against the stand-in API server: the migration
Job before any server pod, a failed one stopping the rollout with the server untouched, no Job when nothing
changed, and switching modes."""

import pytest

from kit import rollout, server
from kit.errors import UserError
from tests.contract.clusterkit import NS, Lines, deployed, discovery_cache, migrations_succeed, settings  # noqa: F401
from tests.rendering import make_settings

PG = "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect"
POSTGRES = {"DATABASE_URL": PG}
SCALED = {"DATABASE_MODE": "scaled", "DATABASE_URL": PG, "REDIS_PASSWORD": "redis-pass-12345"}
SERVER_WORKLOADS = {"postgres": [("StatefulSet", "prefect-server")],
                    "scaled": [("Deployment", server.API), ("Deployment", server.SERVICES)]}


def created_job(lines):
    (line,) = [line for line in lines if line.startswith(f"job/{server.MIGRATION_PREFIX}")
               and line.endswith(" created")]
    return line.split()[0].removeprefix("job/")


def writes_to(api, plural):
    return [w for w in api.writes() if f"/{plural}" in w.path and not w.query.get("dryRun")]


def first_rollout(api, **values):
    api.controller(True)
    lines = migrations_succeed(api, Lines())
    rollout.rollout(make_settings(**values), tag="v1", timeout=10, out=lines)
    return lines


@pytest.mark.parametrize("mode, values", [("postgres", POSTGRES), ("scaled", SCALED)])
def test_the_migration_job_completes_before_any_server_workload_is_applied(fakeapi, mode, values):
    lines = first_rollout(fakeapi, **values)

    job = created_job(lines)
    completed = lines.index(f'job "{job}" completed')
    assert lines.index(f"job/{job} created") < completed
    for kind, name in SERVER_WORKLOADS[mode]:
        assert completed < lines.index(f"{kind.lower()}/{name} created")
        stored = fakeapi.get(kind, NS, name)
        assert stored["metadata"]["annotations"][server.MIGRATION_ANNOTATION] == job
    # The requests say the same as the lines: the Job was written first, and read until it completed.
    writes = [w.path for w in fakeapi.writes() if not w.query.get("dryRun")]
    first_server_write = min(i for i, path in enumerate(writes) if "/statefulsets/prefect-server" in path
                             or f"/deployments/{server.API}" in path)
    assert max(i for i, path in enumerate(writes) if "/jobs/" in path) < first_server_write
    assert fakeapi.get("Job", NS, job)["spec"]["backoffLimit"] == 0


def test_scaled_has_the_embedded_redis_ready_before_the_server_and_says_its_tag_goes_unpinned(fakeapi):
    lines = first_rollout(fakeapi, **SCALED)

    # The migration needs only the database: it runs while Redis starts; the API and services need both.
    assert lines.index("statefulset/prefect-redis created") < lines.index(f"job/{created_job(lines)} created")
    assert lines.index('statefulset "prefect-redis": partitioned roll out complete: 1 new pods have been updated') \
        < lines.index(f"deployment/{server.API} created")
    (said,) = [line for line in lines if line.startswith("redis image: ")]
    assert said.startswith("redis image: redis:") and ", the tag alone: no Docker engine answers" in said


def test_a_failed_migration_stops_the_rollout_with_its_log_and_leaves_the_server_untouched(fakeapi):
    first_rollout(fakeapi, **POSTGRES)
    fakeapi.controller(False)
    before = fakeapi.get("StatefulSet", NS, "prefect-server")
    fakeapi.clear_requests()

    def fail(line):
        name = line.split()[0].removeprefix("job/")
        fakeapi.job_failed(NS, name)
        (pod,) = [pod for pod in fakeapi.objects("Pod", NS) if pod["metadata"]["labels"].get("job-name") == name]
        fakeapi.log(NS, pod["metadata"]["name"], "Running upgrade 7a73514ca2d6 -> 3c841a1800a1\n"
                    "asyncpg.exceptions.InsufficientPrivilegeError: permission denied for schema public")

    lines = Lines()
    lines.on_every("job/prefect-migrate-", " created", fail)
    with pytest.raises(UserError, match=r"rollout: the database migration job/prefect-migrate-\w+ did not complete: "
                                        r"job \"prefect-migrate-\w+\" failed \(BackoffLimitExceeded"):
        rollout.rollout(make_settings(**POSTGRES), tag="v2", timeout=10, out=lines)

    report = "\n".join(lines)
    assert "asyncpg.exceptions.InsufficientPrivilegeError: permission denied for schema public" in report
    assert "last 2 log lines of migrate:" in report
    assert writes_to(fakeapi, "statefulsets") == [] and writes_to(fakeapi, "deployments") == []
    after = fakeapi.get("StatefulSet", NS, "prefect-server")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]


def test_a_migration_that_failed_earlier_is_run_again(fakeapi):
    first_rollout(fakeapi, **POSTGRES)
    lines = Lines()
    lines.on_every("job/prefect-migrate-", " created",
                   lambda line: fakeapi.job_failed(NS, line.split()[0].removeprefix("job/")))
    with pytest.raises(UserError, match="did not complete"):
        rollout.rollout(make_settings(**POSTGRES), tag="v2", timeout=10, out=lines)

    again = migrations_succeed(fakeapi, Lines())
    rollout.rollout(make_settings(**POSTGRES), tag="v2", timeout=10, out=again)
    job = created_job(again)
    assert again.index(f"job/{job} failed at an earlier rollout: deleted, to run it again") < again.index(
        f"job/{job} created") < again.index("statefulset/prefect-server configured")


def test_a_rollout_without_changes_runs_no_migration_even_once_the_ttl_removed_the_job(fakeapi):
    job = created_job(first_rollout(fakeapi, **POSTGRES))
    for removed in (False, True):
        if removed:
            fakeapi.delete("Job", NS, job)
        fakeapi.clear_requests()
        lines = Lines()
        rollout.rollout(make_settings(**POSTGRES), tag="v1", timeout=10, out=lines)

        assert f"job/{job}: not run, the live server was rolled out after it" in lines
        assert writes_to(fakeapi, "jobs") == [] and not [line for line in lines if line.startswith("job/") and
                                                         line.endswith(" created")]
        assert "statefulset/prefect-server unchanged" in lines
    assert fakeapi.get("Job", NS, job) is None


def test_postgres_to_scaled_and_back_removes_the_previous_server_only_once_the_new_one_is_ready(fakeapi):
    first_rollout(fakeapi, **POSTGRES)

    def ready(kind, name):
        stored = fakeapi.get(kind, NS, name)
        return stored["status"].get("readyReplicas", 0) == stored["spec"]["replicas"]

    seen_at_removal = {}
    to_scaled = migrations_succeed(fakeapi, Lines())
    to_scaled.on("statefulset/prefect-server pruned", lambda: seen_at_removal.update(
        scaled=[ready(kind, name) for kind, name in SERVER_WORKLOADS["scaled"]]))
    rollout.rollout(make_settings(**SCALED), tag="v1", timeout=10, out=to_scaled)

    assert seen_at_removal["scaled"] == [True, True]
    assert to_scaled.index(f'deployment "{server.SERVICES}" successfully rolled out') < to_scaled.index(
        "statefulset/prefect-server pruned")
    assert fakeapi.get("StatefulSet", NS, "prefect-server") is None
    assert fakeapi.get("Service", NS, server.HEADLESS) is None
    assert fakeapi.get("Service", NS, "prefect-server") is not None, "the API's Service stays, selecting the API pods"

    back = migrations_succeed(fakeapi, Lines())
    back.on(f"deployment/{server.API} pruned", lambda: seen_at_removal.update(
        postgres=ready("StatefulSet", "prefect-server")))
    rollout.rollout(make_settings(**POSTGRES), tag="v1", timeout=10, out=back)

    assert seen_at_removal["postgres"] is True
    removed = [line for line in back if line.endswith(" pruned")]
    assert {f"deployment/{server.API} pruned", f"deployment/{server.SERVICES} pruned",
            "statefulset/prefect-redis pruned"} <= set(removed)
    assert all(back.index(line) > back.index('statefulset "prefect-server": partitioned roll out complete: 1 new pods '
                                             'have been updated') for line in removed)
    assert [d["metadata"]["name"] for d in fakeapi.objects("Deployment", NS)
            if d["metadata"]["name"] in (server.API, server.SERVICES)] == []
    assert [o for kind in ("StatefulSet", "Service", "NetworkPolicy", "Secret") for o in fakeapi.objects(kind, NS)
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == "redis"] == []


def test_sqlite_to_scaled_is_refused_without_the_flag_and_keeps_the_claim_with_it(deployed):
    with pytest.raises(UserError, match=r"DATABASE_MODE: the live server keeps its data in SQLite on its volume.*"
                                        r"`inv rollout --switch-database`"):
        rollout.rollout(make_settings(**SCALED), tag="v1", out=Lines())
    assert deployed.writes() == []

    deployed.controller(True)
    claims = [claim["metadata"]["name"] for claim in deployed.objects("PersistentVolumeClaim", NS)]
    lines = migrations_succeed(deployed, Lines())
    rollout.rollout(make_settings(**SCALED), tag="v1", timeout=10, switch_database=True, out=lines)

    assert lines.index(f'deployment "{server.API}" successfully rolled out') < lines.index(
        "statefulset/prefect-server pruned")
    assert claims and set(claims) <= {claim["metadata"]["name"] for claim in deployed.objects("PersistentVolumeClaim", NS)}
