"""The kubernetes pool's base job template, and the Job prefect-kubernetes itself builds from it for a flow run
(in-process: KubernetesWorkerJobConfiguration and prepare_for_flow_run, no server, no cluster)."""

import functools
import json

import kubernetes_validate
import pytest

from kit import admission, job_template, manifests, pool_config, pools, workers
from tests.rendering import IMAGE, make_settings
from tests.pod_security import violations
from tests.unit.test_schemas import VERSIONS

PROXY_PASSWORD = "proxy-pw-for-the-job-test"
SETTINGS = {"NAMESPACE": "data-team", "REGISTRY_USER": "robot", "REGISTRY_PASSWORD": "registry-pass",
            "HTTPS_PROXY": f"http://robot:{PROXY_PASSWORD}@proxy.company.local:3128", "NO_PROXY": ".company.local"}


@functools.lru_cache(maxsize=None)
def default():
    from prefect_kubernetes.worker import KubernetesWorker

    return KubernetesWorker.get_default_base_job_template()


def template(manifest=None, **settings):
    (pool,) = pool_config.load()
    if manifest is not None:
        pool = pool_config.Pool(pool.name, pool.type, queues=pool.queues,
                                job=pool_config.JobSettings(manifest=manifest))
    return job_template.render(default(), pool, make_settings(**{**SETTINGS, **settings}), IMAGE,
                               workers.template(manifests.load()))


def manifest_of(rendered):
    return rendered["job_configuration"]["job_manifest"]


def pod_of(rendered):
    return manifest_of(rendered)["spec"]["template"]["spec"]


def test_prefects_variables_and_configuration_keys_stay_as_the_default_has_them():
    rendered = template()
    assert rendered["variables"]["properties"].keys() == default()["variables"]["properties"].keys()
    assert rendered["job_configuration"].keys() == default()["job_configuration"].keys()
    assert rendered["job_configuration"]["env"] == "{{ env }}"
    assert manifest_of(rendered)["spec"]["template"]["spec"]["containers"][0]["args"] == "{{ command }}"


def test_the_image_namespace_and_pull_secret_are_fixed_in_the_manifest():
    rendered = template()
    (container,) = pod_of(rendered)["containers"]
    assert container["name"] == job_template.CONTAINER
    assert container["image"] == IMAGE
    assert rendered["job_configuration"]["namespace"] == "data-team"
    assert manifest_of(rendered)["metadata"]["namespace"] == "data-team"
    assert pod_of(rendered)["imagePullSecrets"] == [{"name": "regcred"}]


def test_the_flow_run_pod_is_the_kits_hardened_pod_without_a_token():
    pod, worker = pod_of(template()), workers.template(manifests.load())["spec"]["template"]["spec"]
    assert pod["securityContext"] == worker["securityContext"]
    assert pod["containers"][0]["securityContext"] == worker["containers"][0]["securityContext"]
    assert pod["serviceAccountName"] == workers.FLOW_RUN_ACCOUNT
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert {volume["name"]: volume for volume in pod["volumes"]} == {
        "tmp": {"name": "tmp", "emptyDir": {}}, "home": {"name": "home", "emptyDir": {}}}
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} == {"/tmp", "/home/prefect"}


def test_completions_and_parallelism_belong_to_the_job_spec_not_the_pod():
    spec = manifest_of(template())["spec"]
    assert (spec["completions"], spec["parallelism"]) == (1, 1)
    assert not {"completions", "parallelism"} & spec["template"]["spec"].keys()


def test_resources_ttl_and_backoff_are_defaults_a_deployment_may_override():
    (pool,) = pool_config.load()
    variables = template()["variables"]["properties"]
    assert {name: variables[name]["default"] for name in ("cpu_request", "memory_request", "cpu_limit", "memory_limit")} \
        == {"cpu_request": pool.job.resources["requests"]["cpu"],
            "memory_request": pool.job.resources["requests"]["memory"],
            "cpu_limit": pool.job.resources["limits"]["cpu"], "memory_limit": pool.job.resources["limits"]["memory"]}
    assert variables["finished_job_ttl"]["default"] == pool.job.ttl_seconds_after_finished
    assert variables["backoff_limit"]["default"] == 0


def test_proxies_reach_the_job_from_the_secret_and_home_is_writable():
    env = {item["name"]: item for item in pod_of(template())["containers"][0]["env"]}
    assert env["HOME"] == {"name": "HOME", "value": "/home/prefect"}
    assert env["HTTPS_PROXY"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-config", "key": "https-proxy"}
    assert env["no_proxy"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-config", "key": "no-proxy"}


@functools.lru_cache(maxsize=None)
def flow_run_job_text():
    """Built under the kubernetes worker's own Prefect settings, which it copies into every Job."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings = make_settings(**SETTINGS)
    worker_env = {PREFECT_API_URL: settings.in_cluster_api_url, PREFECT_API_AUTH_STRING: settings.auth_string}
    with temporary_settings(updates=worker_env):
        return json.dumps(job_template.flow_run_job(template()))


def flow_run_job():
    return json.loads(flow_run_job_text())


@pytest.mark.parametrize("version", VERSIONS)
def test_the_job_prefect_kubernetes_builds_validates_strictly(version):
    job = flow_run_job()
    kubernetes_validate.validate(job, version, strict=True)
    kubernetes_validate.validate(job_template.pod_of(job), version, strict=True)


def test_the_job_prefect_kubernetes_builds_meets_every_restricted_rule():
    assert violations(flow_run_job()["spec"]["template"]["spec"]) == []


def test_the_job_carries_no_password_in_plain_text_and_the_auth_string_by_reference():
    job = flow_run_job()
    text = json.dumps(job)
    settings = make_settings(**SETTINGS)
    assert settings.login_password not in text and PROXY_PASSWORD not in text and "registry-pass" not in text
    env = {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PREFECT_API_AUTH_STRING"] == {"name": "PREFECT_API_AUTH_STRING", "valueFrom": {
        "secretKeyRef": {"name": "prefect-config", "key": "auth-string"}}}


def test_flow_run_pods_carry_the_kit_labels_but_not_its_managed_by():
    labels = flow_run_job()["spec"]["template"]["metadata"]["labels"]
    assert {key: labels[key] for key in job_template.FLOW_RUN_LABELS} == job_template.FLOW_RUN_LABELS
    assert labels["app.kubernetes.io/managed-by"] != "prefect-kit"


def test_prefects_default_template_alone_fails_restricted():
    """The check above can fail: Prefect's own default pod sets no securityContext at all."""
    pod = job_template.flow_run_job(default())["spec"]["template"]["spec"]
    found = violations(pod)
    assert 'allowPrivilegeEscalation != false (container "prefect-job" must set ' \
           'securityContext.allowPrivilegeEscalation=false)' in found
    assert len(found) >= 3


def test_an_override_is_merged_into_the_kits_job_lists_by_name():
    rendered = template({"spec": {"activeDeadlineSeconds": 7200, "template": {"spec": {
        "nodeSelector": {"pool": "batch"},
        "containers": [{"name": "prefect-job", "env": [{"name": "EXTRA", "value": "1"}]}]}}}})
    spec = manifest_of(rendered)["spec"]
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["template"]["spec"]["nodeSelector"] == {"pool": "batch"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == IMAGE, "the rest of the kit's container stays"
    assert [item["name"] for item in container["env"]][-1] == "EXTRA"
    assert container["env"][0] == {"name": "HOME", "value": "/home/prefect"}


def test_an_override_may_weaken_the_pod_and_restricted_then_says_so():
    rendered = template({"spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": False}}}}})
    pod = job_template.flow_run_job(rendered)["spec"]["template"]["spec"]
    assert violations(pod) == ["runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"]


def test_merge_replaces_values_and_lists_without_names():
    assert job_template.merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}, "d": 4}) == {"a": {"b": 1, "c": [3]}, "d": 4}
    assert job_template.merge([{"name": "x", "v": 1}], [{"name": "y"}, {"name": "x", "v": 2}]) == [
        {"name": "x", "v": 2}, {"name": "y"}]


def test_a_dry_run_refusal_is_one_line_naming_the_violation():
    message = ('pods "prefect-kit-admission-check" is forbidden: violates PodSecurity "restricted:latest": '
               'runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)')
    assert admission.refusal("production", "Pod", 403, message, "prefect") == (
        f"pool production: the cluster would refuse every flow run's pod: {message}; change job.manifest of pool "
        "production in config/pools.yaml; nothing was written")
    assert "needs `create` on jobs and pods in namespace prefect (a dry run: nothing is created)" in \
        admission.refusal("production", "Job", 403, 'jobs.batch is forbidden: User "u" cannot create', "prefect")
    missing = ('pods "prefect-kit-admission-check" is forbidden: error looking up service account '
               'prefect/prefect-flow-run: serviceaccount "prefect-flow-run" not found')
    assert admission.refusal("production", "Pod", 403, missing, "prefect") == (
        f"pool production: its flow runs' service account is not in namespace prefect yet ({missing}); "
        "`inv rollout` creates it")
    assert admission.refusal("production", "Job", 422, 'Job.batch "x" is invalid: spec.x: unknown', "prefect") == (
        'pool production: the API server refuses its flow runs\' Job: Job.batch "x" is invalid: spec.x: unknown; '
        "change job.manifest of pool production in config/pools.yaml; nothing was written")


def test_the_default_template_is_kept_under_the_versions_that_made_it(tmp_path):
    first = pools.default_template(tmp_path)
    (kept,) = tmp_path.glob("kubernetes-job-template-*.json")
    assert first == default() and json.loads(kept.read_text()) == default()
    kept.write_text(json.dumps({"kept": True}))
    assert pools.default_template(tmp_path) == {"kept": True}, "read back, not made again"


def test_the_kit_builds_templates_with_the_prefect_kubernetes_its_image_runs():
    import re
    from importlib.metadata import version

    from kit import ROOT

    def pinned(path):
        return re.search(r"^prefect-kubernetes==(\S+)$", (ROOT / path).read_text(), re.M)[1]

    assert pinned("requirements.txt") == pinned("image/constraints.txt") == version("prefect-kubernetes")
