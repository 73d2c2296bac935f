"""The rollout and the workers of config/pools.yaml, through the real client against the stand-in API server:
the wait for workers to connect, the kubernetes worker's RBAC coming and going with its pools, running Jobs
left alone, and the dry-run admission of a job template before anything is applied.

The Prefect half is the stand-in of tests/contract/clusterkit.py; tests/integration has the real one.
"""

import pytest

from kit import job_template, pool_config, pools, rollout, workers
from kit.errors import UserError
from tests.contract.clusterkit import NS, WORKERS, Lines, deployed, discovery_cache, settings  # noqa: F401

PROCESS = "pools:\n  - {name: production, type: process, queues: [{name: prod-main}, {name: prod-secondary}]}\n"


def kubernetes_pool(manifest):
    (pool,) = pool_config.load()
    return (pool_config.Pool(pool.name, pool.type, queues=pool.queues, job=pool_config.JobSettings(manifest=manifest)),)


def worker_pods(api):
    return [pod for pod in api.objects("Pod", NS) if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]


def test_a_worker_that_never_connects_times_out_naming_its_pod_with_its_log_lines(deployed, settings, prefect):
    prefect.connected = False
    deployed.controller(True)

    def worker_logs():
        for pod in worker_pods(deployed):
            deployed.log(NS, pod["metadata"]["name"], "Worker 'x' started!\nhttpx.ConnectError: [Errno 111] refused")

    lines = Lines()
    lines.on(f'deployment "{WORKERS[1]}" successfully rolled out', worker_logs)
    with pytest.raises(UserError) as raised:
        rollout.rollout(settings, tag="v2", timeout=2, out=lines)
    pods = sorted(pod["metadata"]["name"] for pod in worker_pods(deployed))
    (problem,) = raised.value.problems
    assert problem.startswith(f"rollout: workers not connected to Prefect after 2s: pod/{pods[0]}, pod/{pods[1]}; ")
    for pod in pods:
        assert f"worker pod/{pod}: waiting for it to connect to Prefect" in lines
    header = next(line for line in lines if line.startswith(f"deployment/{WORKERS[0]}: pod/"))
    assert header.endswith("is Ready but Prefect lists no ONLINE worker of that name in pool production")
    start = lines.index(header)
    assert lines[start + 1:start + 4] == ["    last 2 log lines of worker:", "      Worker 'x' started!",
                                          "      httpx.ConnectError: [Errno 111] refused"]
    assert "ready: http://prefect.company.local/" not in lines


def test_a_connected_worker_ends_the_rollout(deployed, settings):
    deployed.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v2", timeout=10, out=lines)
    connected = [line for line in lines if line.endswith(": connected (ONLINE in Prefect)")]
    assert sorted(connected) == sorted(f"worker pod/{pod['metadata']['name']}: connected (ONLINE in Prefect)"
                                       for pod in worker_pods(deployed))
    assert lines.index(connected[-1]) == len(lines) - 2 and lines[-1] == "ready: http://prefect.company.local/"


def kits(api, kind):
    return [obj for obj in api.objects(kind, NS)
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "prefect-kit"]


def test_the_kubernetes_workers_rbac_goes_with_the_last_kubernetes_pool(deployed, settings):
    assert {obj["metadata"]["name"] for kind in ("ServiceAccount", "Role", "RoleBinding")
            for obj in kits(deployed, kind)} == {workers.WORKER_ACCOUNT, workers.FLOW_RUN_ACCOUNT}
    deployed.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v1", prune=True, timeout=10, pools=pool_config.parse(PROCESS), out=lines)
    assert {"serviceaccount/prefect-worker pruned", "serviceaccount/prefect-flow-run pruned", "role/prefect-worker pruned",
            "rolebinding/prefect-worker pruned"} <= set(lines)
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert kits(deployed, kind) == []
    pod = deployed.get("Deployment", NS, WORKERS[0])["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod


def flow_run_job(api, settings, name):
    """A running Job the kubernetes worker made for a flow run from the kit's template, with its pod."""
    template = pools.kubernetes_templates(settings, pool_config.load(), {"production": "internal-cr:9999/prefect-core:v1"})
    job = job_template.flow_run_job(template["production"])
    job["metadata"]["name"] = name
    api.put(job)
    api.job_running(NS, name)
    (pod,) = [p for p in api.objects("Pod", NS) if p["metadata"]["labels"].get("job-name") == name]
    return api.get("Job", NS, name), pod


def test_a_worker_restart_leaves_running_flow_run_jobs_alone(deployed, settings):
    job, pod = flow_run_job(deployed, settings, "hello-abcde")
    deployed.controller(True)
    lines = Lines()
    rollout.rollout(settings, tag="v2", restart=True, prune=True, timeout=10, out=lines)
    assert f"deployment/{WORKERS[0]} restarted" in lines
    assert deployed.get("Job", NS, "hello-abcde") == job
    assert deployed.get("Pod", NS, pod["metadata"]["name"]) == pod
    touched = [r for r in deployed.writes() if "/jobs" in r.path or r.path.endswith(pod["metadata"]["name"])]
    assert [(r.method, r.query.get("dryRun")) for r in touched] == [("POST", "All")], "only the admission dry run"


def test_a_job_template_the_api_server_refuses_stops_the_rollout_before_anything_but_namespace_and_accounts(
        fakeapi, settings):
    bad = kubernetes_pool({"spec": {"template": {"spec": {"containers": [{"name": "prefect-job", "cpus": 2}]}}}})
    with pytest.raises(UserError) as raised:
        rollout.rollout(settings, tag="v1", timeout=10, pools=bad, out=Lines())
    (problem,) = raised.value.problems
    assert problem.startswith("pool production: the API server refuses its flow runs' Job: ")
    assert "cpus" in problem and problem.endswith(
        "; change job.manifest of pool production in config/pools.yaml; nothing was written")
    applies = [w for w in fakeapi.writes() if w.method == "PATCH"]
    assert [w.path for w in applies] == [f"/api/v1/namespaces/{NS}"] + [
        f"/api/v1/namespaces/{NS}/serviceaccounts/{name}" for name in (workers.WORKER_ACCOUNT, workers.FLOW_RUN_ACCOUNT)]
    assert fakeapi.objects("Secret", NS) == [] and fakeapi.objects("StatefulSet", NS) == []


def test_a_template_prefect_kubernetes_cannot_use_is_one_line(fakeapi, settings):
    restarting = kubernetes_pool({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}})
    with pytest.raises(UserError) as raised:
        rollout.rollout(settings, tag="v1", timeout=10, pools=restarting, out=Lines())
    assert raised.value.problems == (
        "pool production: prefect-kubernetes cannot make a Job of its template: Job has incompatible values for the "
        "following attributes: /spec/template/spec/restartPolicy must have value 'Never'; change job.manifest in "
        "config/pools.yaml; nothing was written",)


def test_a_job_template_podsecurity_refuses_is_one_line_before_any_flow_run(fakeapi, settings):
    """The kit's namespace enforces the restricted profile; the stand-in's PodSecurity refuses the dry-run Pod."""
    weak = kubernetes_pool({"spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": False}}}}})
    with pytest.raises(UserError) as raised:
        rollout.rollout(settings, tag="v1", timeout=10, pools=weak, out=Lines())
    assert raised.value.problems == (
        'pool production: the cluster would refuse every flow run\'s pod: pods "prefect-kit-admission-check" is '
        'forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true (pod must not set '
        "securityContext.runAsNonRoot=false); change job.manifest of pool production in config/pools.yaml; "
        "nothing was written",)
    assert fakeapi.objects("StatefulSet", NS) == []
