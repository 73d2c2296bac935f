"""`inv rollout` and `inv secrets` through the real kubernetes client against the stand-in API server."""

import base64
import re
import threading
import time

import pytest

from kit import manifests, rollout, workers
from kit.cluster import describe
from kit.errors import UserError
from tests.contract.clusterkit import (NS, WORKERS, Lines, deployed, digest_of, discovery_cache,  # noqa: F401
                                      migrations_succeed, settings)
from tests.rendering import make_settings

APPLY = "application/apply-patch+yaml"


def generation(api, kind, name):
    return api.get(kind, NS, name)["metadata"]["generation"]


# What the admission check of the kubernetes pool's template sends: dry runs only, nothing is stored.
ADMISSION_CHECKS = [(f"/apis/batch/v1/namespaces/{NS}/jobs", "All", "Strict"), (f"/api/v1/namespaces/{NS}/pods", "All", "Strict")]


def admission_checks(writes):
    return [(w.path, w.query.get("dryRun"), w.query.get("fieldValidation")) for w in writes if w.method == "POST"]


def rendered(settings, tag="v1"):
    return manifests.render(settings, f"internal-cr:9999/prefect-core:{tag}")


def test_first_rollout_creates_everything_in_order_and_waits_until_ready(fakeapi, settings, prefect):
    fakeapi.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v1", timeout=10, out=lines)

    objects = rendered(settings)
    workers_first = [f"{describe(o)} created" for o in objects if not workers.is_template(o)]
    workers_last = [f"{describe(o)} created" for o in objects if workers.is_template(o)]
    assert [line for line in lines if line.endswith(" created")] == workers_first + workers_last
    # The server is ready before the pools are made, and the pools before any worker exists. A real server
    # defaults updateStrategy.rollingUpdate.partition to 0, so kubectl's viewer (and the kit's) reports a
    # partitioned roll out, as it did on a real 1.36 cluster.
    ready = lines.index('statefulset "prefect-server": partitioned roll out complete: 1 new pods have been updated')
    synced = lines.index("pools: production made true (stand-in)")
    assert lines.index(workers_first[-1]) < ready < synced < lines.index(workers_last[0])
    assert prefect.synced[0]["deployments"] == []
    assert set(prefect.synced[0]["templates"]) == {"production"}
    assert {f'deployment "{name}" successfully rolled out' for name in WORKERS} <= set(lines)
    assert lines[-1] == "ready: http://prefect.company.local/"
    writes = fakeapi.writes()
    assert {(w.method, w.content_type, w.query.get("fieldManager")) for w in writes if w.method != "POST"} == {
        ("PATCH", APPLY, "prefect-kit")}
    assert admission_checks(writes) == ADMISSION_CHECKS
    image = fakeapi.get("Deployment", NS, WORKERS[0])["spec"]["template"]["spec"]["containers"][0]["image"]
    # --tag v1, pinned to the digest the registry holds for it.
    assert image == f"internal-cr:9999/prefect-core:v1@{digest_of('v1')}"


def test_same_rollout_again_writes_nothing_but_the_apply_patches_and_restarts_nothing(deployed, settings):
    before = {name: generation(deployed, "Deployment", name) for name in WORKERS}
    lines = Lines()
    rollout.rollout(settings, tag="v1", timeout=10, out=lines)

    assert [line for line in lines if line.endswith((" created", " configured"))] == []
    assert len([line for line in lines if line.endswith(" unchanged")]) == len(rendered(settings))
    assert {(w.method, w.content_type) for w in deployed.writes() if w.method != "POST"} == {("PATCH", APPLY)}
    assert admission_checks(deployed.writes()) == ADMISSION_CHECKS
    assert not [r for r in deployed.requests if r.query.get("watch")], "ready workloads need no watch"
    assert {name: generation(deployed, "Deployment", name) for name in WORKERS} == before


def test_changed_secret_rolls_its_consumers_and_nothing_else(fakeapi):
    database = "postgresql+asyncpg://prefect:{}@db.company.local:5432/prefect"
    fakeapi.controller(True)
    rollout.rollout(make_settings(DATABASE_URL=database.format("first-password")), tag="v1", timeout=10,
                    out=migrations_succeed(fakeapi, Lines()))
    workers = {name: generation(fakeapi, "Deployment", name) for name in WORKERS}
    server = generation(fakeapi, "StatefulSet", "prefect-server")

    lines = migrations_succeed(fakeapi, Lines())
    rollout.rollout(make_settings(DATABASE_URL=database.format("second-password")), tag="v1", timeout=10, out=lines)

    # Only the server reads database-url; the workers' pods must not restart.
    assert "secret/prefect-config configured" in lines
    assert "statefulset/prefect-server configured" in lines
    assert [f"deployment/{name} unchanged" for name in WORKERS] == [l for l in lines if l.startswith("deployment/")]
    assert generation(fakeapi, "StatefulSet", "prefect-server") == server + 1
    assert {name: generation(fakeapi, "Deployment", name) for name in WORKERS} == workers
    stored = fakeapi.get("Secret", NS, "prefect-config")["data"]["database-url"]
    assert "second-password" in base64.b64decode(stored).decode()


def test_new_image_tag_rolls_every_workload_and_leaves_the_secrets(deployed, settings):
    deployed.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v2", timeout=10, out=lines)

    assert "secret/prefect-config unchanged" in lines
    assert "statefulset/prefect-server configured" in lines
    assert all(f"deployment/{name} configured" in lines for name in WORKERS)
    for name in WORKERS:
        pods = [p for p in deployed.objects("Pod", NS)
                if p["metadata"]["labels"].get("app.kubernetes.io/instance") == name]
        assert [p["spec"]["containers"][0]["image"] for p in pods] == [
            f"internal-cr:9999/prefect-core:v2@{digest_of('v2')}"]


def test_rollout_that_never_gets_ready_times_out_and_says_why(deployed, settings):
    lines = Lines()
    lines.on(f"deployment/{WORKERS[0]} configured", lambda: deployed.make_unready(
        "Deployment", NS, WORKERS[0], "ImagePullBackOff", 'Back-off pulling image "internal-cr:9999/prefect-core:v2"'))
    lines.on("statefulset/prefect-server configured", lambda: deployed.make_ready("StatefulSet", NS, "prefect-server"))

    def other_worker_ready_and_the_first_fails_to_pull():
        deployed.make_ready("Deployment", NS, WORKERS[1])
        pod = next(p for p in deployed.objects("Pod", NS) if p["metadata"]["name"].startswith(WORKERS[0]))
        deployed.event(pod, "Failed", "Failed to pull image: manifest unknown")

    lines.on(f"deployment/{WORKERS[1]} configured", other_worker_ready_and_the_first_fails_to_pull)

    with pytest.raises(UserError, match=rf"rollout: not ready after 1s: deployment/{WORKERS[0]};"):
        rollout.rollout(settings, tag="v2", timeout=1, out=lines)

    report = "\n".join(lines)
    assert f'deployment/{WORKERS[0]}: deployment "{WORKERS[0]}": 0 of 1 updated replicas are available' in report
    assert 'ImagePullBackOff: Back-off pulling image "internal-cr:9999/prefect-core:v2"' in report
    assert "Warning Failed: Failed to pull image: manifest unknown" in report
    assert f"deployment/{WORKERS[1]}:" not in report, "a ready workload needs no diagnosis"


def test_crash_loop_shows_the_last_log_lines(deployed, settings):
    def crash():
        deployed.make_unready("StatefulSet", NS, "prefect-server", "CrashLoopBackOff",
                              "back-off 40s restarting failed container=server", restarts=3)
        deployed.log(NS, "prefect-server-0", "starting\nsqlite3.OperationalError: unable to open database file")

    lines = Lines()
    lines.on("statefulset/prefect-server configured", crash)
    with pytest.raises(UserError, match="statefulset/prefect-server"):
        rollout.rollout(settings, tag="v2", timeout=1, out=lines)

    report = "\n".join(lines)
    assert ("pod/prefect-server-0: CrashLoopBackOff: back-off 40s restarting failed container=server "
            "(container server last exited with code 1, Error)") in report
    assert "last 2 log lines of server (previous run):" in report
    assert "sqlite3.OperationalError: unable to open database file" in report


def test_a_workload_without_pods_shows_its_replica_sets_events(deployed, settings):
    replica_set = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": f"{WORKERS[0]}-5d4f8c7b9", "namespace": NS}}
    deployed.event(replica_set, "FailedCreate", 'pods "x" is forbidden: exceeded quota: compute, requested: cpu=250m')
    lines = Lines()
    lines.on("statefulset/prefect-server configured", lambda: deployed.make_ready("StatefulSet", NS, "prefect-server"))
    lines.on(f"deployment/{WORKERS[1]} configured", lambda: deployed.make_ready("Deployment", NS, WORKERS[1]))
    lines.on(f"deployment/{WORKERS[0]} configured", lambda: [deployed.delete("Pod", NS, pod["metadata"]["name"])
                                                             for pod in deployed.objects("Pod", NS)
                                                             if pod["metadata"]["name"].startswith(WORKERS[0])])
    with pytest.raises(UserError, match=rf"not ready after 1s: deployment/{WORKERS[0]};"):
        rollout.rollout(settings, tag="v2", timeout=1, out=lines)
    header = f'deployment/{WORKERS[0]}: deployment "{WORKERS[0]}": waiting for the spec update to be observed'
    start = lines.index(header)
    assert lines[start + 1:start + 3] == [
        "  no pods", '    Warning FailedCreate: pods "x" is forbidden: exceeded quota: compute, requested: cpu=250m']


def test_progress_deadline_stops_the_wait_at_once(deployed, settings):
    def stuck():
        status = deployed.get("Deployment", NS, WORKERS[0])["status"]
        status["observedGeneration"] += 1
        status["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        deployed.set_status("Deployment", NS, WORKERS[0], status)

    lines = Lines()
    lines.on("statefulset/prefect-server configured", lambda: deployed.make_ready("StatefulSet", NS, "prefect-server"))
    lines.on(f"deployment/{WORKERS[0]} configured", stuck)
    with pytest.raises(UserError, match=f'rollout: deployment "{WORKERS[0]}" exceeded its progress deadline: '
                                        f'deployment/{WORKERS[0]}, deployment/{WORKERS[1]};'):
        rollout.rollout(settings, tag="v2", timeout=30, out=lines)


def test_wait_resumes_a_dropped_watch_and_still_sees_the_workloads_get_ready(deployed, settings):
    def drop_then_ready():
        # The server is waited for before the workers are even applied: one dropped watch in each wait.
        for count, workloads in ((1, [("StatefulSet", "prefect-server")]), (3, [("Deployment", n) for n in WORKERS])):
            wait_for_watches(deployed, count)
            deployed.drop_watches()
            for kind, name in workloads:
                deployed.make_ready(kind, NS, name)

    threading.Thread(target=drop_then_ready, daemon=True).start()
    lines = Lines()
    rollout.rollout(settings, tag="v2", timeout=10, out=lines)

    assert f'deployment "{WORKERS[1]}" successfully rolled out' in lines
    watches = [r for r in deployed.requests if r.query.get("watch") == "true"]
    assert len(watches) >= 2 and all(w.query.get("resourceVersion") for w in watches)


def test_wait_lists_again_when_the_watch_history_is_gone(deployed, settings):
    def compact_then_ready():
        for count, workloads in ((1, [("StatefulSet", "prefect-server")]), (3, [("Deployment", n) for n in WORKERS])):
            wait_for_watches(deployed, count)
            deployed.compact()
            deployed.drop_watches()
            for kind, name in workloads:
                deployed.make_ready(kind, NS, name)

    threading.Thread(target=compact_then_ready, daemon=True).start()
    lines = Lines()
    rollout.rollout(settings, tag="v2", timeout=10, out=lines)
    assert f'deployment "{WORKERS[1]}" successfully rolled out' in lines


def test_wait_retries_an_api_server_that_answers_503_while_restarting(deployed, settings):
    deployed.controller(True)
    lines = Lines()
    lines.on(f"deployment/{WORKERS[1]} configured",
             lambda: deployed.fail(f"/apis/apps/v1/namespaces/{NS}/deployments", 503, times=2))
    rollout.rollout(settings, tag="v2", timeout=10, out=lines)
    assert f'deployment "{WORKERS[1]}" successfully rolled out' in lines
    assert [r.status for r in deployed.requests if r.path.endswith("/deployments")].count(503) == 2


def wait_for_watches(api, count, seconds=5.0):
    deadline = time.monotonic() + seconds
    while len([r for r in api.requests if r.query.get("watch") == "true"]) < count:
        assert time.monotonic() < deadline, "the rollout never started watching"
        time.sleep(0.01)


def test_field_manager_conflict_is_reported_and_force_takes_the_field_back(deployed, settings):
    edited = deployed.get("Deployment", NS, WORKERS[0])
    edited["spec"]["replicas"] = 3
    deployed.put(edited)
    deployed.set_owner("Deployment", NS, WORKERS[0], ".spec.replicas", "kubectl-edit")

    with pytest.raises(UserError, match=r"conflict with \"kubectl-edit\".*`inv rollout --force-conflicts`"):
        rollout.rollout(settings, tag="v1", timeout=1, out=Lines())

    deployed.controller(True)
    rollout.rollout(settings, tag="v1", force_conflicts=True, timeout=10, out=Lines())
    assert deployed.get("Deployment", NS, WORKERS[0])["spec"]["replicas"] == 1


def test_prune_deletes_what_the_kit_no_longer_renders_and_nothing_else(fakeapi):
    fakeapi.controller(True)
    rollout.rollout(make_settings(REGISTRY_USER="robot", REGISTRY_PASSWORD="registry-secret"), tag="v1", timeout=10,
                    out=Lines())
    assert fakeapi.get("Secret", NS, "regcred")
    foreign = fakeapi.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-secret", "namespace": NS},
                           "data": {"x": "eA=="}})

    lines = Lines()
    rollout.rollout(make_settings(), tag="v1", prune=True, timeout=10, out=lines)

    assert "secret/regcred pruned" in lines
    assert fakeapi.get("Secret", NS, "regcred") is None
    assert fakeapi.get("Secret", NS, "team-secret") == foreign
    assert fakeapi.get("Namespace", None, NS)


def test_prune_in_a_dry_run_only_says_what_it_would_delete(fakeapi):
    fakeapi.controller(True)
    rollout.rollout(make_settings(REGISTRY_USER="robot", REGISTRY_PASSWORD="registry-secret"), tag="v1", timeout=10,
                    out=Lines())
    lines = Lines()
    rollout.rollout(make_settings(), tag="v1", prune=True, dry_run=True, out=lines)
    assert "secret/regcred would be pruned (dry run)" in lines
    assert fakeapi.get("Secret", NS, "regcred")


def test_without_prune_nothing_is_deleted(fakeapi):
    fakeapi.controller(True)
    rollout.rollout(make_settings(REGISTRY_USER="robot", REGISTRY_PASSWORD="registry-secret"), tag="v1", timeout=10,
                    out=Lines())
    rollout.rollout(make_settings(), tag="v1", timeout=10, out=Lines())
    assert fakeapi.get("Secret", NS, "regcred")
    assert not [w for w in fakeapi.writes() if w.method == "DELETE"]


def test_dry_run_changes_nothing_and_hides_secret_values(deployed):
    lines = Lines()
    rollout.rollout(make_settings(LOGIN_PASSWORD="a-brand-new-password"), tag="v2", dry_run=True, out=lines)

    assert "secret/prefect-config configured (server dry run)" in lines
    assert "  data.auth-string: changed (value hidden)" in lines
    (image,) = [line for line in lines if line.startswith("  spec.template.spec.containers[0].image: ")][:1]
    assert image.startswith('  spec.template.spec.containers[0].image: "internal-cr:9999/prefect-core:v1@sha256:')
    assert ' -> "internal-cr:9999/prefect-core:v2@sha256:' in image
    assert not any("a-brand-new-password" in line for line in lines)
    assert all(w.query.get("dryRun") == "All" for w in deployed.writes())
    stored = deployed.get("Deployment", NS, WORKERS[0])["spec"]["template"]["spec"]["containers"][0]["image"]
    assert stored == f"internal-cr:9999/prefect-core:v1@{digest_of('v1')}"


def test_dry_run_into_a_missing_namespace_reports_creations_without_writing(fakeapi, settings):
    lines = Lines()
    rollout.rollout(settings, tag="v1", dry_run=True, out=lines)
    (namespace, first, *_) = rendered(settings)
    assert lines[0] == "namespace/prefect created (server dry run)"
    assert lines[1] == f"{describe(first)} created (dry run; namespace prefect does not exist yet)"
    assert fakeapi.objects("Namespace") == []


def test_restart_stamps_the_pod_templates_and_a_later_rollout_keeps_the_stamp(deployed, settings):
    deployed.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v1", restart=True, timeout=10, out=lines)
    assert "statefulset/prefect-server restarted" in lines
    annotations = deployed.get("Deployment", NS, WORKERS[0])["spec"]["template"]["metadata"]["annotations"]
    stamp = annotations["kubectl.kubernetes.io/restartedAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), "kubectl's RFC 3339 form"

    again = Lines()
    rollout.rollout(settings, tag="v1", timeout=10, out=again)
    assert f"deployment/{WORKERS[0]} unchanged" in again
    annotations = deployed.get("Deployment", NS, WORKERS[0])["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == stamp


def test_database_mode_switch_is_refused_before_anything_is_applied(deployed):
    switched = make_settings(DATABASE_URL="postgresql+asyncpg://prefect:pw@db.company.local:5432/prefect")
    with pytest.raises(UserError, match="DATABASE_MODE: the live server keeps its data in SQLite on its volume"):
        rollout.rollout(switched, tag="v1", out=Lines())
    assert deployed.writes() == []


def test_secrets_applies_the_namespace_and_the_secrets_only(fakeapi, settings):
    lines = Lines()
    rollout.secrets(settings, out=lines)
    assert lines == ["namespace/prefect created", "secret/prefect-config created", "secret/prefect-login-auth created"]
    assert fakeapi.objects("Deployment") == []

    again = Lines()
    rollout.secrets(settings, out=again)
    assert again == ["namespace/prefect unchanged", "secret/prefect-config unchanged",
                     "secret/prefect-login-auth unchanged"]
