"""The three database modes as rendered: each test asserts one property of one object (or of every pod).

Expectations come from the render itself and the one server pod template, never from a second copy.
"""

import functools

import pytest
import yaml

from kit import kinds, manifests, secrets, server
from kit.manifests import find
from tests import pod_security
from tests.rendering import IMAGE, decoded, make_settings

POSTGRES = "postgresql+asyncpg://prefect:db-pass-123@db.company.local:5432/prefect"
REDIS_PASSWORD = "redis-pass-12345"
MODES = {
    "sqlite": {},
    "postgres": {"DATABASE_URL": POSTGRES},
    "scaled": {"DATABASE_MODE": "scaled", "DATABASE_URL": POSTGRES, "REDIS_PASSWORD": REDIS_PASSWORD},
}
SCALED = MODES["scaled"]
MANAGED_REDIS = "rediss://:managed-pass@redis.company.local:6380/3"


@functools.lru_cache(maxsize=None)
def _render(overrides: tuple, redis_image: str | None) -> list[dict]:
    return manifests.render(make_settings(**dict(overrides)), IMAGE, redis_image=redis_image)


def render(redis_image=None, **overrides):
    """Renders are pure and the tests only read them: one per input."""
    return _render(tuple(sorted(overrides.items())), redis_image)


def scaled(**overrides):
    return render(**{**SCALED, **overrides})


def names(objects):
    return {(obj["kind"], obj["metadata"]["name"]) for obj in objects}


def pod(obj):
    return obj["spec"]["template"]["spec"]


def only_container(obj):
    (container,) = pod(obj)["containers"]
    return container


def container(obj, name):
    return next(c for c in pod(obj)["containers"] if c["name"] == name)


def env_of(container_spec):
    return {item["name"]: item for item in container_spec.get("env", [])}


def job(objects):
    (found,) = [obj for obj in objects if obj["kind"] == "Job"]
    return found


def selects(selector, obj):
    labels = obj["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


def pod_objects(objects):
    return [obj for obj in objects if obj["kind"] in kinds.POD_KINDS]


# --- the modes --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, mode", [
    ({}, "sqlite"), ({"DATABASE_URL": POSTGRES}, "postgres"), ({"DATABASE_MODE": "postgres", "DATABASE_URL": POSTGRES},
                                                              "postgres"), (SCALED, "scaled"),
])
def test_an_empty_mode_is_sqlite_without_a_database_url_and_postgres_with_one(overrides, mode):
    assert make_settings(**overrides).mode == mode


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_has_exactly_its_server_workloads(mode):
    workloads = {name for name in names(render(**MODES[mode])) if name[0] in ("StatefulSet", "Deployment")
                 and not name[1].startswith("prefect-worker-")}
    assert workloads == {"sqlite": {("StatefulSet", "prefect-server")},
                         "postgres": {("StatefulSet", "prefect-server")},
                         "scaled": {("Deployment", "prefect-api"), ("Deployment", "prefect-services"),
                                    ("StatefulSet", "prefect-redis")}}[mode]


def test_sqlite_migrates_on_start_and_runs_no_job():
    objects = render()
    assert not [obj for obj in objects if obj["kind"] == "Job"]
    env = env_of(container(find(objects, "StatefulSet", "prefect-server"), "server"))
    assert not set(server.MIGRATED_BY_THE_JOB) & set(env)


@pytest.mark.parametrize("mode", ["postgres", "scaled"])
def test_server_pods_never_migrate_or_register_block_types_on_start(mode):
    for obj in pod_objects(render(**MODES[mode])):
        if server.is_workload(obj):
            env = env_of(pod(obj)["containers"][0])
            assert {name: env[name]["value"] for name in server.MIGRATED_BY_THE_JOB} == server.MIGRATED_BY_THE_JOB


@pytest.mark.parametrize("mode", ["postgres", "scaled"])
def test_the_migration_job_runs_the_kits_one_migration_command(mode):
    migrate = only_container(job(render(**MODES[mode])))
    assert migrate["args"] == server.MIGRATION_ARGS
    assert migrate["args"][-1] == server.MIGRATION_SCRIPT
    assert "prefect\", \"server\", \"database\", \"upgrade\", \"-y\"" in server.MIGRATION_SCRIPT


@pytest.mark.parametrize("mode", ["postgres", "scaled"])
def test_the_migration_job_has_the_servers_environment_image_and_security_but_no_port_probe_or_proxy(mode):
    objects = render(**MODES[mode])
    migration = job(objects)
    source = next(obj for obj in objects if server.is_workload(obj))
    server_container = container(source, "server")
    migrate = only_container(migration)
    assert migrate["env"] == server_container["env"]
    assert (migrate["image"], migrate["securityContext"], migrate["resources"]) == (
        server_container["image"], server_container["securityContext"], server_container["resources"])
    assert pod(migration)["securityContext"] == pod(source)["securityContext"]
    assert not {"ports", "startupProbe", "livenessProbe", "readinessProbe"} & set(migrate)
    assert {volume["name"] for volume in pod(migration)["volumes"]} == {m["name"] for m in migrate["volumeMounts"]}


def test_the_migration_job_runs_once_is_kept_a_few_days_and_is_labelled_as_a_migration():
    migration = job(render(**MODES["postgres"]))
    assert migration["spec"]["backoffLimit"] == 0
    assert pod(migration)["restartPolicy"] == "Never"
    assert 2 * 86400 <= migration["spec"]["ttlSecondsAfterFinished"] <= 7 * 86400
    assert migration["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    assert migration["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "prefect-kit"


@pytest.mark.parametrize("mode", ["postgres", "scaled"])
def test_every_server_workload_names_the_migration_it_is_rolled_out_after(mode):
    objects = render(**MODES[mode])
    name = job(objects)["metadata"]["name"]
    assert name.startswith(server.MIGRATION_PREFIX)
    assert {obj["metadata"]["annotations"][server.MIGRATION_ANNOTATION] for obj in objects
            if server.is_workload(obj)} == {name}


def test_the_migration_job_is_named_after_what_it_runs_and_reads():
    first = job(render(**MODES["postgres"]))["metadata"]["name"]
    assert job(render(**MODES["postgres"]))["metadata"]["name"] == first
    other_image = manifests.render(make_settings(**MODES["postgres"]), IMAGE.replace("abc1234", "def5678"))
    other_database = render(DATABASE_URL=POSTGRES.replace("db-pass-123", "db-pass-456"))
    assert job(other_image)["metadata"]["name"] != first
    assert job(other_database)["metadata"]["name"] != first


def test_the_migration_job_leaves_no_database_password_in_plain_text():
    assert "db-pass-123" not in yaml.safe_dump(job(render(**MODES["postgres"])))


def test_postgres_keeps_the_one_server_pod_without_a_volume():
    statefulset = find(render(**MODES["postgres"]), "StatefulSet", "prefect-server")
    assert statefulset["spec"]["replicas"] == 1 and "volumeClaimTemplates" not in statefulset["spec"]
    assert "--no-services" not in container(statefulset, "server")["args"]


# --- scaled: the API -----------------------------------------------------------------------------------------

def test_the_api_pods_run_the_server_template_without_the_services():
    template = container(find(render(**MODES["postgres"]), "StatefulSet", "prefect-server"), "server")
    api = container(find(scaled(), "Deployment", "prefect-api"), "server")
    assert api["args"] == template["args"] + ["--no-services"]
    assert {key: value for key, value in api.items() if key not in ("args", "env")} == \
        {key: value for key, value in template.items() if key not in ("args", "env")}


def test_every_api_pod_has_the_login_proxy_of_every_server_pod():
    proxy = container(find(render(**MODES["postgres"]), "StatefulSet", "prefect-server"), "proxy")
    assert container(find(scaled(), "Deployment", "prefect-api"), "proxy") == proxy


@pytest.mark.parametrize("replicas", ["1", "3"])
def test_the_api_runs_server_replicas(replicas):
    assert find(scaled(SERVER_REPLICAS=replicas), "Deployment", "prefect-api")["spec"]["replicas"] == int(replicas)


def test_the_api_rolls_one_surplus_pod_at_a_time_and_never_below_its_replicas():
    assert find(scaled(), "Deployment", "prefect-api")["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_the_api_pods_spread_across_nodes_where_they_can():
    api = find(scaled(), "Deployment", "prefect-api")
    (spread,) = pod(api)["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"], spread["maxSkew"]) == (
        "kubernetes.io/hostname", "ScheduleAnyway", 1)
    assert spread["labelSelector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]


def test_the_services_and_the_policy_of_the_server_select_the_api_pods_and_not_the_background_services():
    objects = scaled()
    api, services = find(objects, "Deployment", "prefect-api"), find(objects, "Deployment", "prefect-services")
    selectors = [find(objects, "Service", "prefect-server")["spec"]["selector"],
                 find(objects, "NetworkPolicy", "prefect-server")["spec"]["podSelector"]["matchLabels"]]
    assert all(selects(selector, api) and not selects(selector, services) for selector in selectors)


def test_scaled_has_no_statefulset_dns_service():
    assert ("Service", "prefect-server-headless") not in names(scaled())
    assert ("Service", "prefect-server-headless") in names(render(**MODES["postgres"]))


# --- scaled: the background services ------------------------------------------------------------------------

def test_the_background_services_run_alone_with_no_port_and_no_proxy():
    services = find(scaled(), "Deployment", "prefect-services")
    only = only_container(services)
    assert only["args"] == ["prefect", "server", "services", "start"]
    assert not {"ports", "startupProbe", "livenessProbe", "readinessProbe"} & set(only)
    assert not [volume for volume in pod(services)["volumes"] if volume["name"].startswith("proxy")]


@pytest.mark.parametrize("replicas", ["1", "2"])
def test_the_background_services_run_services_replicas(replicas):
    assert find(scaled(SERVICES_REPLICAS=replicas), "Deployment", "prefect-services")["spec"]["replicas"] == \
        int(replicas)


def test_nothing_may_reach_the_background_services():
    objects = scaled()
    policy = find(objects, "NetworkPolicy", "prefect-services")
    assert policy["spec"]["ingress"] == [] and policy["spec"]["policyTypes"] == ["Ingress"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], find(objects, "Deployment", "prefect-services"))
    assert not [obj for obj in objects if obj["kind"] == "Service"
                and selects(obj["spec"]["selector"], find(objects, "Deployment", "prefect-services"))]


def test_probes_are_skipped_for_checkov_only_where_there_is_no_port_with_the_reason():
    for obj in scaled():
        skipped = [value for key, value in obj["metadata"].get("annotations", {}).items()
                   if key.startswith("checkov.io/skip") and value.startswith(("CKV_K8S_8=", "CKV_K8S_9="))]
        assert bool(skipped) == ((obj["kind"], obj["metadata"]["name"]) == ("Deployment", "prefect-services")), \
            obj["metadata"]["name"]
        assert all("serve no port" in value for value in skipped)


# --- scaled: Redis, from one URL ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["prefect-api", "prefect-services"])
def test_every_shared_part_of_a_scaled_server_process_is_in_redis(name):
    env = env_of(pod(find(scaled(), "Deployment", name))["containers"][0])
    assert {key: env[key]["value"] for key in server.SHARED_IN_REDIS} == server.SHARED_IN_REDIS
    for key in server.REDIS_URL_SETTINGS:
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": secrets.CONFIG, "key": server.REDIS_URL_KEY}


def test_every_redis_connection_setting_prefect_and_prefect_redis_read_is_derived():
    """Both connections prefect-redis opens (messaging, and the worker cleanup queue's own) and the Docket's."""
    assert set(server.REDIS_URL_SETTINGS) == {"PREFECT_SERVER_DOCKET_URL", "PREFECT_REDIS_MESSAGING_URL",
                                              "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_URL"}


def test_no_pod_outside_scaled_mode_has_a_redis_setting():
    for mode in ("sqlite", "postgres"):
        for obj in pod_objects(render(**MODES[mode])):
            for spec in pod(obj)["containers"]:
                assert not [name for name in env_of(spec) if "REDIS" in name or name in server.SHARED_IN_REDIS]


def test_the_embedded_redis_url_reaches_its_service_with_its_password():
    objects = scaled()
    url = decoded(find(objects, "Secret", "prefect-config"), "redis-url")
    assert url == f"redis://:{REDIS_PASSWORD}@prefect-redis.prefect.svc:6379/0"
    service = find(objects, "Service", "prefect-redis")
    assert service["spec"]["ports"][0]["port"] == 6379
    assert selects(service["spec"]["selector"], find(objects, "StatefulSet", "prefect-redis"))


def test_a_managed_redis_is_used_as_given_and_no_redis_is_embedded():
    objects = scaled(REDIS_URL=MANAGED_REDIS)
    assert decoded(find(objects, "Secret", "prefect-config"), "redis-url") == MANAGED_REDIS
    assert not [obj for obj in objects if server.is_redis(obj)]


def test_the_redis_url_is_never_in_plain_text():
    assert "managed-pass" not in manifests.to_yaml(scaled(REDIS_URL=MANAGED_REDIS))
    assert REDIS_PASSWORD not in manifests.to_yaml(scaled())
    assert REDIS_PASSWORD not in yaml.safe_dump([obj for obj in scaled() if obj["kind"] != "Secret"])


def test_the_embedded_redis_checks_its_password_from_its_secret():
    objects = scaled()
    statefulset = find(objects, "StatefulSet", "prefect-redis")
    redis = only_container(statefulset)
    config = find(objects, "ConfigMap", "prefect-redis")["data"]["redis.conf"]
    mounts = {mount["name"]: mount["mountPath"] for mount in redis["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod(statefulset)["volumes"]}
    (item,) = volumes["auth"]["secret"]["items"]
    assert f"include {mounts['auth']}/{item['path']}" in config.splitlines()
    assert decoded(find(objects, "Secret", volumes["auth"]["secret"]["secretName"]), item["key"]) == \
        f"requirepass {REDIS_PASSWORD}\n"
    assert redis["args"] == ["redis-server", f"{mounts['config']}/redis.conf"]
    assert volumes["config"]["configMap"]["name"] == "prefect-redis"


def test_the_embedded_redis_keeps_an_append_only_file_on_its_volume():
    objects = scaled()
    statefulset = find(objects, "StatefulSet", "prefect-redis")
    config = find(objects, "ConfigMap", "prefect-redis")["data"]["redis.conf"].splitlines()
    data = next(mount["mountPath"] for mount in only_container(statefulset)["volumeMounts"] if mount["name"] == "data")
    assert {"appendonly yes", f"dir {data}"} <= set(config)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_the_embedded_redis_is_probed_by_redis_cli_with_the_password_from_the_secret():
    redis = only_container(find(scaled(), "StatefulSet", "prefect-redis"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "redis-cli" in " ".join(redis[probe]["exec"]["command"])
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-redis", "key": "password"}


def test_the_embedded_redis_runs_as_the_official_images_user():
    statefulset = find(scaled(), "StatefulSet", "prefect-redis")
    context = pod(statefulset)["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"], context["runAsNonRoot"]) == (
        999, 999, 999, True)


def test_only_the_api_and_the_background_services_reach_redis_on_its_port():
    objects = scaled()
    policy = find(objects, "NetworkPolicy", "prefect-redis")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    admitted = {name for name in ("prefect-api", "prefect-services", "prefect-worker-prod-main")
                if selects(peer["podSelector"]["matchLabels"], find(objects, "Deployment", name))
                and all(find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"].get(e["key"])
                        in e["values"] for e in peer["podSelector"]["matchExpressions"])}
    assert admitted == {"prefect-api", "prefect-services"}
    assert not selects(peer["podSelector"]["matchLabels"] | {"app.kubernetes.io/component": "migration"},
                       find(objects, "Deployment", "prefect-api"))
    (port,) = rule["ports"]
    redis = only_container(find(objects, "StatefulSet", "prefect-redis"))
    assert [p["containerPort"] for p in redis["ports"] if p["name"] == port["port"]] == [6379]


def test_the_embedded_redis_runs_its_image_pinned_as_the_rollout_gives_it():
    assert only_container(find(scaled(), "StatefulSet", "prefect-redis"))["image"] == "redis:8.10.2"
    pinned = "redis:8.10.2@sha256:" + "1" * 64
    objects = scaled(redis_image=pinned)
    assert only_container(find(objects, "StatefulSet", "prefect-redis"))["image"] == pinned
    assert {c["image"] for obj in pod_objects(objects) if not server.is_redis(obj) for c in pod(obj)["containers"]} \
        == {IMAGE}


def test_the_embedded_redis_gets_no_company_proxy_and_keeps_its_pods_when_it_changes():
    plain, proxied = scaled(), scaled(HTTPS_PROXY="http://proxy.company.local:3128")
    assert "HTTPS_PROXY" not in env_of(only_container(find(proxied, "StatefulSet", "prefect-redis")))
    assert checksum(plain, "prefect-redis") == checksum(proxied, "prefect-redis")


def checksum(objects, name):
    obj = next(o for o in objects if o["kind"] in kinds.POD_KINDS and o["metadata"]["name"] == name)
    return obj["spec"]["template"]["metadata"]["annotations"][manifests.CHECKSUM_ANNOTATION]


def test_a_new_redis_password_rolls_redis_and_the_server_but_no_worker():
    before, after = scaled(), scaled(REDIS_PASSWORD="another-redis-pass")
    for name in ("prefect-redis", "prefect-api", "prefect-services"):
        assert checksum(before, name) != checksum(after, name), name
    assert checksum(before, "prefect-worker-prod-main") == checksum(after, "prefect-worker-prod-main")


# --- budgets and autoscalers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("replicas, budget", [("1", False), ("2", True), ("5", True)])
def test_the_api_gets_a_disruption_budget_from_two_replicas_on(replicas, budget):
    assert (("PodDisruptionBudget", "prefect-api") in names(scaled(SERVER_REPLICAS=replicas))) is budget


def test_the_disruption_budget_keeps_all_but_one_api_pod_and_covers_nothing_else():
    objects = scaled(SERVER_REPLICAS="3")
    budget = find(objects, "PodDisruptionBudget", "prefect-api")["spec"]
    assert budget["maxUnavailable"] == 1
    covered = {obj["metadata"]["name"] for obj in pod_objects(objects) if selects(budget["selector"]["matchLabels"], obj)}
    assert covered == {"prefect-api"}
    postgres = find(render(**MODES["postgres"]), "StatefulSet", "prefect-server")
    assert not selects(budget["selector"]["matchLabels"], postgres)


def test_an_autoscaler_owns_the_api_replicas_between_server_replicas_and_the_maximum():
    objects = scaled(SERVER_REPLICAS="2", SERVER_MAX_REPLICAS="6")
    autoscaler = find(objects, "HorizontalPodAutoscaler", "prefect-api")["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "prefect-api"}
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (2, 6)
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in find(objects, "Deployment", "prefect-api")["spec"]


def test_without_a_maximum_there_is_no_autoscaler_and_the_render_sets_the_replicas():
    objects = scaled(SERVER_REPLICAS="2")
    assert not [obj for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"]
    assert find(objects, "Deployment", "prefect-api")["spec"]["replicas"] == 2


def test_no_workload_an_autoscaler_owns_sets_its_replicas():
    objects = scaled(SERVER_REPLICAS="2", SERVER_MAX_REPLICAS="6")
    owned = {(a["spec"]["scaleTargetRef"]["kind"], a["spec"]["scaleTargetRef"]["name"]) for a in objects
             if a["kind"] == "HorizontalPodAutoscaler"}
    assert owned
    for obj in objects:
        if (obj["kind"], obj["metadata"]["name"]) in owned:
            assert "replicas" not in obj["spec"]


# --- every pod, every mode ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["sqlite", "postgres", "scaled", "scaled-managed-redis", "scaled-autoscaled"])
def test_every_pod_passes_the_restricted_pod_security_standard(variant):
    objects = {"scaled-managed-redis": lambda: scaled(REDIS_URL=MANAGED_REDIS),
               "scaled-autoscaled": lambda: scaled(SERVER_REPLICAS="2", SERVER_MAX_REPLICAS="4")}.get(
        variant, lambda: render(**MODES[variant]))()
    for obj in pod_objects(objects):
        assert pod_security.violations(pod(obj), obj["spec"]["template"]["metadata"].get("annotations")) == [], \
            obj["metadata"]["name"]


@pytest.mark.parametrize("mode", MODES)
def test_every_object_of_every_mode_carries_the_kit_labels(mode):
    for obj in render(**MODES[mode]):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "prefect-kit" and labels["app.kubernetes.io/part-of"] == \
            "prefect", obj["metadata"]["name"]


@pytest.mark.parametrize("mode", MODES)
def test_each_workloads_selector_matches_its_own_pods_only(mode):
    objects = render(**MODES[mode])
    workloads = [obj for obj in objects if obj["kind"] in ("StatefulSet", "Deployment")]
    for workload in workloads:
        assert [other["metadata"]["name"] for other in workloads
                if selects(workload["spec"]["selector"]["matchLabels"], other)] == [workload["metadata"]["name"]]
