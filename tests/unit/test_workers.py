"""The workers as rendered from config/pools.yaml and the one template: one property of the rendered set each.

Expectations are derived from the pools file given to the render, never counted by hand.
"""

import functools

import pytest

from kit import kinds, manifests, pool_config, workers
from kit.errors import UserError
from kit.manifests import find
from tests.rendering import IMAGE, make_settings

POOLS = """
pools:
  - name: batch
    type: kubernetes
    worker: {limit: 4}
    queues:
      - name: etl
      - name: reports
        worker: {replicas: 2, limit: 1, resources: {limits: {memory: 3Gi}}}
      - name: backfill
  - name: local
    type: process
    worker: {resources: {requests: {memory: 1Gi}, limits: {memory: 4Gi}}}
    queues:
      - name: scripts
"""


def render(text=POOLS, **settings):
    return _render(text, tuple(sorted(settings.items())))


@functools.lru_cache(maxsize=None)
def _render(text, settings):
    """Renders are pure and the tests only read them: one per input (each costs a checksum per pod)."""
    declared = pool_config.parse(text)
    return declared, manifests.render(make_settings(**dict(settings)), IMAGE, declared)


def worker_deployments(objects):
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Deployment"}


def container(deployment):
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def option(args, name):
    values = [args[index + 1] for index, arg in enumerate(args) if arg == name]
    return values[0] if len(values) == 1 else (None if not values else values)


def env_of(deployment):
    return {item["name"]: item for item in container(deployment)["env"]}


def test_the_template_file_holds_one_deployment_and_no_copy_per_queue():
    deployments = [obj for obj in manifests.load() if obj["kind"] == "Deployment"]
    assert [obj["metadata"]["name"] for obj in deployments] == ["prefect-worker-prod-main"]


def test_each_declared_queue_gets_one_deployment_polling_exactly_it():
    declared, objects = render()
    wanted = {workers.WORKER_PREFIX + queue.name: (pool, queue) for pool in declared for queue in pool.queues}
    found = worker_deployments(objects)
    assert set(found) == set(wanted)
    for name, (pool, queue) in wanted.items():
        args = container(found[name])["args"]
        assert args[:3] == ["prefect", "worker", "start"]
        assert (option(args, "--pool"), option(args, "--work-queue"), option(args, "--type")) == \
            (pool.name, queue.name, pool.type), name
        limit = pool.worker_for(queue).limit
        assert option(args, "--limit") == (None if limit is None else str(limit)), name


def test_the_checked_in_pools_file_renders_the_seed_queues_as_kubernetes_workers():
    objects = manifests.render(make_settings(), IMAGE)
    declared = pool_config.load()
    assert set(worker_deployments(objects)) == {workers.WORKER_PREFIX + q.name for p in declared for q in p.queues}
    assert {option(container(d)["args"], "--type") for d in worker_deployments(objects).values()} == {"kubernetes"}


def test_each_deployment_selects_its_own_pods_by_instance():
    _, objects = render()
    for name, deployment in worker_deployments(objects).items():
        assert deployment["metadata"]["labels"][workers.INSTANCE] == name
        assert deployment["spec"]["selector"]["matchLabels"][workers.INSTANCE] == name
        assert deployment["spec"]["template"]["metadata"]["labels"][workers.INSTANCE] == name


def test_replicas_and_resources_come_from_the_pool_then_the_queue_then_the_template():
    declared, objects = render()
    template = container(workers.template(manifests.load()))["resources"]
    found = worker_deployments(objects)
    for pool in declared:
        for queue in pool.queues:
            deployment = found[workers.WORKER_PREFIX + queue.name]
            settings = pool.worker_for(queue)
            assert deployment["spec"]["replicas"] == (1 if settings.replicas is None else settings.replicas)
            for part in ("requests", "limits"):
                assert container(deployment)["resources"][part] == {**template[part], **settings.resources.get(part, {})}


def test_the_worker_names_itself_after_its_pod():
    _, objects = render()
    for deployment in worker_deployments(objects).values():
        args = container(deployment)["args"]
        assert option(args, "--name") == "$(POD_NAME)"
        assert env_of(deployment)["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_no_worker_creates_its_own_pool():
    _, objects = render()
    for deployment in worker_deployments(objects).values():
        assert "--no-create-pool-if-not-found" in container(deployment)["args"]


def test_only_the_kubernetes_worker_mounts_a_token_and_has_an_account():
    declared, objects = render()
    types = {workers.WORKER_PREFIX + q.name: p.type for p in declared for q in p.queues}
    for obj in objects:
        if obj["kind"] not in kinds.POD_KINDS:
            continue
        pod = obj["spec"]["template"]["spec"]
        kubernetes = types.get(obj["metadata"]["name"]) == "kubernetes"
        assert pod["automountServiceAccountToken"] is kubernetes, obj["metadata"]["name"]
        assert pod.get("serviceAccountName") == (workers.WORKER_ACCOUNT if kubernetes else None)


def test_the_kubernetes_worker_watches_its_namespace_and_hands_jobs_the_auth_string_by_reference():
    _, objects = render(NAMESPACE="data-team")
    env = env_of(find(objects, "Deployment", "prefect-worker-etl"))
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["value"] == "data-team"
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"]["value"] == "prefect-config"
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY"]["value"] == "auth-string"
    assert env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-config",
                                                                           "key": "auth-string"}


def test_a_process_worker_has_none_of_the_kubernetes_settings_nor_their_checkov_skip():
    _, objects = render()
    scripts = find(objects, "Deployment", "prefect-worker-scripts")
    assert not [name for name in env_of(scripts) if name.startswith(workers.KUBERNETES_SETTINGS)]
    assert not [value for value in scripts["metadata"]["annotations"].values() if value.startswith("CKV_K8S_38")]


def test_no_secret_stands_in_a_workers_plain_prefect_settings():
    """The kubernetes worker copies its PREFECT_* settings into every Job: only non-secret values may be plain."""
    _, objects = render(LOGIN_PASSWORD="a-password-for-this-test", HTTPS_PROXY="http://robot:proxy-pw@proxy:3128")
    for deployment in worker_deployments(objects).values():
        for name, item in env_of(deployment).items():
            if name.startswith("PREFECT_") and "value" in item:
                assert "a-password-for-this-test" not in item["value"] and "proxy-pw" not in item["value"], name
        assert "valueFrom" in env_of(deployment)["PREFECT_API_AUTH_STRING"]


RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def test_the_workers_role_grants_exactly_what_prefect_kubernetes_uses_in_its_namespace():
    _, objects = render(NAMESPACE="data-team")
    role = find(objects, "Role", workers.WORKER_ACCOUNT)
    assert role["metadata"]["namespace"] == "data-team"
    assert role["rules"] == RULES
    binding = find(objects, "RoleBinding", workers.WORKER_ACCOUNT)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": workers.WORKER_ACCOUNT}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": workers.WORKER_ACCOUNT,
                                    "namespace": "data-team"}]
    assert not [obj for obj in objects if obj["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_the_flow_run_account_has_no_token_and_no_role():
    _, objects = render()
    account = find(objects, "ServiceAccount", workers.FLOW_RUN_ACCOUNT)
    assert account["automountServiceAccountToken"] is False
    assert find(objects, "ServiceAccount", workers.WORKER_ACCOUNT)["automountServiceAccountToken"] is False
    subjects = [s["name"] for obj in objects if obj["kind"] == "RoleBinding" for s in obj["subjects"]]
    assert workers.FLOW_RUN_ACCOUNT not in subjects


def test_without_a_kubernetes_pool_there_are_no_accounts_or_role():
    _, objects = render("pools:\n  - {name: local, type: process, queues: [{name: scripts}]}\n")
    assert not [obj for obj in objects if workers.kubernetes_only(obj)]
    assert {obj["kind"] for obj in objects} & {"ServiceAccount", "Role", "RoleBinding"} == set()


def test_a_request_above_its_limit_with_the_templates_values_is_one_line():
    text = "pools:\n  - {name: local, type: process, worker: {resources: {requests: {memory: 8Gi}}}, queues: [{name: q}]}\n"
    with pytest.raises(UserError) as raised:
        render(text)
    assert raised.value.problems == (
        "Deployment prefect-worker-q: worker: resources: requests: memory 8Gi is more than its limit 1Gi; raise the "
        "limit or lower the request (in config/pools.yaml, or the template's in manifests/30-workers.yaml)",)


def test_worker_args_keep_the_template_order_and_drop_an_unset_limit():
    pool = pool_config.Pool("p", "process", queues=(pool_config.Queue("q"),))
    args = ["prefect", "worker", "start", "--pool", "x", "--limit", "3", "--type", "kubernetes", "--with-healthcheck"]
    assert workers.worker_args(args, pool, pool.queues[0], pool.worker) == [
        "prefect", "worker", "start", "--pool", "p", "--type", "process", "--with-healthcheck", "--work-queue", "q"]
