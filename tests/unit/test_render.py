"""Rendered-manifest tests: each asserts one property of the objects `inv render` produces."""

import base64
import json
import stat

import bcrypt
import pytest
import yaml

from kit import kinds, manifests, secrets, server as server_mode, workers
from kit.errors import UserError
from kit.manifests import find
from tests.rendering import IMAGE, decoded, make_settings, render

POSTGRES = "postgresql+asyncpg://prefect:db-pass-123@postgres.company.local:5432/prefect"


def pods(objects):
    return [obj["spec"]["template"]["spec"] for obj in objects if obj["kind"] in kinds.POD_KINDS]


def containers(objects):
    return [container for pod in pods(objects) for container in pod["containers"]]


def env_of(container):
    return {item["name"]: item for item in container.get("env", [])}


def server(objects):
    return find(objects, "StatefulSet", "prefect-server")


def secret_value(objects, name, key):
    return decoded(find(objects, "Secret", name), key)


def test_objects_come_in_dependency_order():
    order = [obj["kind"] for obj in render()]
    assert order == sorted(order, key=kinds.APPLY_ORDER.index)
    assert order[0] == "Namespace" and order[-1] == "Ingress"
    assert render(ROUTE="gateway", GATEWAY_NAME="shared")[-1]["kind"] == "HTTPRoute"


def test_everything_lands_in_the_configured_namespace():
    objects = render(NAMESPACE="data-team")
    assert find(objects, "Namespace", "data-team")
    assert {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"} == {"data-team"}


@pytest.mark.parametrize("mode", ["enforce", "warn", "audit"])
def test_the_namespace_holds_every_pod_to_the_restricted_pod_security_standard(mode):
    labels = find(render(NAMESPACE="data-team"), "Namespace", "data-team")["metadata"]["labels"]
    assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"


def test_every_object_carries_the_kit_labels():
    for obj in render(REGISTRY_USER="robot", REGISTRY_PASSWORD="registry-pass"):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "prefect-kit", obj["metadata"]["name"]
        assert labels["app.kubernetes.io/part-of"] == "prefect"


def test_every_container_runs_the_given_image():
    assert {container["image"] for container in containers(render())} == {IMAGE}


def test_headless_service_is_really_headless_and_nothing_is_a_node_port():
    objects = render()
    assert find(objects, "Service", "prefect-server-headless")["spec"]["clusterIP"] == "None"
    assert find(objects, "Service", "prefect-server")["spec"]["type"] == "ClusterIP"
    assert server(objects)["spec"]["serviceName"] == "prefect-server-headless"
    assert not [obj for obj in objects if obj["kind"] == "Service" and obj["spec"].get("type") == "NodePort"]


def test_server_probes_follow_the_official_chart():
    container = server(render())["spec"]["template"]["spec"]["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/api/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"


def test_workers_are_checked_on_their_health_port():
    for worker in (obj for obj in render() if obj["kind"] == "Deployment"):
        container = worker["spec"]["template"]["spec"]["containers"][0]
        assert "--with-healthcheck" in container["args"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "health"}
        assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_every_container_has_requests_and_limits():
    for container in containers(render()):
        assert set(container["resources"]) == {"requests", "limits"}
        for part in container["resources"].values():
            assert set(part) == {"cpu", "memory"}


@pytest.mark.parametrize("field, value", [
    ("runAsNonRoot", True), ("runAsUser", 10001), ("runAsGroup", 10001), ("fsGroup", 10001),
    ("seccompProfile", {"type": "RuntimeDefault"}),
])
def test_pods_run_as_a_high_non_root_uid(field, value):
    for pod in pods(render()):
        assert pod["securityContext"][field] == value


@pytest.mark.parametrize("field, value", [
    ("allowPrivilegeEscalation", False), ("readOnlyRootFilesystem", True), ("capabilities", {"drop": ["ALL"]}),
])
def test_containers_are_locked_down(field, value):
    for container in containers(render()):
        assert container["securityContext"][field] == value


def test_no_pod_gets_service_links_and_only_the_kubernetes_worker_account_a_token():
    for pod in pods(render()):
        assert pod["enableServiceLinks"] is False
        assert pod["automountServiceAccountToken"] is (pod.get("serviceAccountName") == workers.WORKER_ACCOUNT)


def test_writable_places_are_empty_dirs_under_the_read_only_root():
    for pod in pods(render()):
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert {"/tmp", "/home/prefect"} <= mounts
        assert {v["name"] for v in pod["volumes"]} >= {"tmp", "home"}
    server_env = env_of(server(render())["spec"]["template"]["spec"]["containers"][0])
    assert server_env["PREFECT_SERVER_UI_STATIC_DIRECTORY"]["value"] == "/var/lib/prefect-ui"
    assert server_env["PREFECT_SERVER_ANALYTICS_ENABLED"]["value"] == "false"


def test_no_object_carries_prefect_api_key():
    assert "PREFECT_API_KEY" not in manifests.to_yaml(render(), redact=False)


def test_server_checks_the_auth_string_and_clients_send_it():
    objects = render()
    server_env = env_of(server(objects)["spec"]["template"]["spec"]["containers"][0])
    assert server_env["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "prefect-config", "key": "auth-string"}
    for worker in (obj for obj in objects if obj["kind"] == "Deployment"):
        worker_env = env_of(worker["spec"]["template"]["spec"]["containers"][0])
        assert worker_env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]["key"] == "auth-string"
        assert worker_env["PREFECT_API_URL"]["valueFrom"]["secretKeyRef"]["key"] == "api-url"
    assert secret_value(objects, "prefect-config", "auth-string") == "admin:correct-horse-battery"
    assert secret_value(objects, "prefect-config", "api-url") == \
        "http://prefect-server.prefect.svc.cluster.local:4200/api"


def test_ui_reaches_the_api_on_its_own_origin_whatever_the_route():
    """Seen in headless Chromium with Prefect 3.9.1 (UI V1 and V2) behind the proxy: a relative URL works."""
    for overrides in ({}, {"TLS_SECRET": "prefect-tls"}, {"ROUTE": "gateway", "GATEWAY_NAME": "shared"},
                      {"ROUTE": "none"}):
        container = server(render(**overrides))["spec"]["template"]["spec"]["containers"][0]
        assert env_of(container)["PREFECT_SERVER_UI_API_URL"]["value"] == "/api"


def test_classic_ui_is_a_setting():
    container = server(render(UI_V2="false"))["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["PREFECT_SERVER_UI_V2_ENABLED"]["value"] == "false"


def test_sqlite_mode_keeps_the_database_on_a_volume():
    objects = render()
    statefulset = server(objects)
    assert statefulset["spec"]["replicas"] == 1
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in mounts
    assert secret_value(objects, "prefect-config", "database-url") == "sqlite+aiosqlite:////data/prefect.db"


def test_postgres_mode_needs_no_volume():
    objects = render(DATABASE_URL=POSTGRES)
    statefulset = server(objects)
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert "/data" not in {m["mountPath"] for m in statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert secret_value(objects, "prefect-config", "database-url") == POSTGRES


def test_switching_a_live_server_to_or_from_sqlite_is_refused_unless_asked_for():
    scaled = {"DATABASE_MODE": "scaled", "DATABASE_URL": POSTGRES, "REDIS_PASSWORD": "redis-pass-12345"}
    live = {mode: {(obj["kind"], obj["metadata"]["name"]): obj for obj in render(**overrides)}
            for mode, overrides in (("sqlite", {}), ("postgres", {"DATABASE_URL": POSTGRES}), ("scaled", scaled))}
    wanted = {"sqlite": make_settings(), "postgres": make_settings(DATABASE_URL=POSTGRES),
              "scaled": make_settings(**scaled)}
    for was in live:
        assert server_mode.live_mode(live[was]) == was
        for mode in wanted:
            server_mode.check_switch(live[was], wanted[mode], switch_database=True)
            if "sqlite" in (was, mode) and was != mode:
                with pytest.raises(UserError, match="^DATABASE_MODE: the live server "):
                    server_mode.check_switch(live[was], wanted[mode], switch_database=False)
            else:
                server_mode.check_switch(live[was], wanted[mode], switch_database=False)
    assert server_mode.live_mode({}) is None


def test_pull_secret_exists_only_with_registry_credentials():
    assert not [obj for obj in render() if obj["metadata"]["name"] == "regcred"]
    assert all("imagePullSecrets" not in pod for pod in pods(render()))
    objects = render(REGISTRY="internal-cr:9999/team", REGISTRY_USER="robot", REGISTRY_PASSWORD="registry-pass")
    pull = find(objects, "Secret", "regcred")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(decoded(pull, ".dockerconfigjson"))["auths"]
    assert auths["internal-cr:9999"]["auth"] == base64.b64encode(b"robot:registry-pass").decode()
    assert all(pod["imagePullSecrets"] == [{"name": "regcred"}] for pod in pods(objects))


def test_proxy_reaches_every_container_from_the_secret_with_the_cluster_exempt():
    objects = render(HTTPS_PROXY="http://robot:proxy-pass@proxy.company.local:3128", NO_PROXY=".company.local")
    for container in containers(objects):
        env = env_of(container)
        for name, key in (("HTTPS_PROXY", "https-proxy"), ("https_proxy", "https-proxy"), ("NO_PROXY", "no-proxy")):
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "prefect-config", "key": key}
        assert "HTTP_PROXY" not in env
    assert secret_value(objects, "prefect-config", "https-proxy") == "http://robot:proxy-pass@proxy.company.local:3128"
    exempt = secret_value(objects, "prefect-config", "no-proxy").split(",")
    assert {".company.local", ".svc", ".cluster.local", "prefect-server", "localhost"} <= set(exempt)
    assert "proxy-pass" not in manifests.to_yaml(objects)
    assert not [c for c in containers(render()) if "NO_PROXY" in env_of(c)]


def test_proxy_change_restarts_every_pod():
    before, after = checksums(render()), checksums(render(HTTP_PROXY="http://proxy.company.local:3128"))
    assert all(before[name] != after[name] for name in before)


def test_htpasswd_line_verifies_and_does_not_change_between_renders():
    line = secret_value(render(), "prefect-login-auth", "auth")
    user, hashed = line.split(":", 1)
    assert user == "admin" and hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(b"correct-horse-battery", hashed.encode())
    assert not bcrypt.checkpw(b"wrong-horse-battery", hashed.encode())
    assert secret_value(render(), "prefect-login-auth", "auth") == line


def test_htpasswd_line_is_one_line_that_an_htpasswd_reader_checks():
    from passlib.apache import HtpasswdFile

    line = secret_value(render(), "prefect-login-auth", "auth")
    assert "\n" not in line
    parsed = HtpasswdFile.from_string(line)
    assert parsed.users() == ["admin"]
    assert parsed.check_password("admin", "correct-horse-battery")
    assert not parsed.check_password("admin", "wrong-horse-battery")


def test_htpasswd_line_is_the_one_earlier_releases_rendered():
    # What the kit rendered for these settings before it made the line with passlib: an upgraded kit must not
    # change a deployed Secret (the value was recorded from that release).
    assert secret_value(render(), "prefect-login-auth", "auth") == \
        "admin:$2b$10$JakmuE6i6Cl2gm/TB2UBruAsW6b.26HH54PX0gs/HC4Q999Y.LHOu"


def test_htpasswd_salt_does_not_depend_on_the_password():
    first = secret_value(render(), "prefect-login-auth", "auth").split("$")[3][:22]
    second = secret_value(render(LOGIN_PASSWORD="another-password-42"), "prefect-login-auth", "auth")
    assert second.split("$")[3][:22] == first
    assert secret_value(render(NAMESPACE="other"), "prefect-login-auth", "auth").split("$")[3][:22] != first


def test_same_settings_render_identically():
    assert manifests.to_yaml(render(), redact=False) == manifests.to_yaml(render(), redact=False)


def checksums(objects):
    return {obj["metadata"]["name"]: obj["spec"]["template"]["metadata"]["annotations"][manifests.CHECKSUM_ANNOTATION]
            for obj in objects if obj["kind"] in kinds.POD_KINDS}


def test_database_change_restarts_only_the_server():
    before, after = checksums(render()), checksums(render(DATABASE_URL=POSTGRES))
    assert before["prefect-server"] != after["prefect-server"]
    assert before["prefect-worker-prod-main"] == after["prefect-worker-prod-main"]


def test_password_change_restarts_every_pod():
    before, after = checksums(render()), checksums(render(LOGIN_PASSWORD="another-password-42"))
    assert all(before[name] != after[name] for name in before)


def test_secret_values_are_valid_base64():
    for secret in (obj for obj in render(REGISTRY_USER="robot", REGISTRY_PASSWORD="registry-pass")
                   if obj["kind"] == "Secret"):
        for value in secret["data"].values():
            base64.b64decode(value, validate=True)


def test_printed_yaml_redacts_every_secret_value():
    shown = manifests.to_yaml(render(DATABASE_URL=POSTGRES))
    assert "correct-horse-battery" not in shown
    for secret in (obj for obj in yaml.safe_load_all(shown) if obj["kind"] == "Secret"):
        assert set(secret["data"].values()) == {secrets.REDACTED}


def test_written_files_are_private_and_apply_in_order(tmp_path):
    objects = render()
    paths = manifests.write(objects, tmp_path / "out")
    assert [yaml.safe_load(p.read_text()) for p in sorted(paths)] == objects
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


def test_config_alone_is_the_namespace_and_the_secrets_as_a_full_render_has_them():
    settings = make_settings()
    config = manifests.render_config(settings)
    assert [obj["kind"] for obj in config] == ["Namespace", "Secret", "Secret"]
    assert config == [obj for obj in manifests.render(settings, IMAGE) if obj["kind"] in ("Namespace", "Secret")]


def test_a_broken_server_pod_is_replaced_by_the_next_rollout():
    assert server(render())["spec"]["podManagementPolicy"] == "Parallel"


def test_checksum_is_no_fast_hash_of_the_password():
    """Whoever reads Deployments sees the annotation: it must not be a plain hash to test guesses against."""
    import hashlib

    objects = render()
    worker = find(objects, "Deployment", "prefect-worker-prod-main")["spec"]["template"]
    config = find(objects, "Secret", "prefect-config")["data"]
    guess = f"prefect-config/api-url={config['api-url']}\nprefect-config/auth-string={config['auth-string']}\n"
    annotation = worker["metadata"]["annotations"][manifests.CHECKSUM_ANNOTATION]
    assert annotation not in (hashlib.sha256(guess.encode()).hexdigest(), hashlib.sha512(guess.encode()).hexdigest())
    assert annotation == manifests.config_checksum(worker["spec"], [obj for obj in objects if obj["kind"] == "Secret"],
                                                   salt="prefect/prefect.company.local/admin")


@pytest.mark.parametrize("image, policy", [(IMAGE, "IfNotPresent"), ("internal-cr:9999/prefect-core:abc1234", "Always")])
def test_a_digest_pinned_image_is_pulled_only_when_missing_and_a_tag_always(image, policy):
    objects = manifests.render(make_settings(), image)
    assert {container["imagePullPolicy"] for container in containers(objects)} == {policy}


def test_the_cluster_domain_comes_from_the_settings_for_the_api_url_and_the_proxy_exemptions():
    objects = render(CLUSTER_DOMAIN="k8s.company.internal", HTTPS_PROXY="http://proxy.company.local:3128")
    assert secret_value(objects, "prefect-config", "api-url") == \
        "http://prefect-server.prefect.svc.k8s.company.internal:4200/api"
    assert ".k8s.company.internal" in secret_value(objects, "prefect-config", "no-proxy").split(",")
    assert ".cluster.local" not in secret_value(objects, "prefect-config", "no-proxy").split(",")


def test_every_probe_states_its_timeout_instead_of_the_one_second_default():
    for container in containers(render()):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert container[probe]["timeoutSeconds"] >= 5, (container["name"], probe)
