"""Rendered-manifest tests of the login proxy in the server pod: its container, its config and what it mounts."""

import copy
import re

from kit import manifests, secrets
from kit.manifests import find
from tests.rendering import make_settings, render

PROXY_PORT = 8080


def pod(objects):
    return find(objects, "StatefulSet", "prefect-server")["spec"]["template"]["spec"]


def container(objects, name):
    return next(c for c in pod(objects)["containers"] if c["name"] == name)


def nginx_conf(objects):
    return find(objects, "ConfigMap", "prefect-proxy")["data"]["nginx.conf"]


def location(conf, prefix):
    """The body of one `location` block of the config."""
    match = re.search(r"location " + re.escape(prefix) + r" \{(.*?)\n\s*\}", conf, re.S)
    assert match, prefix
    return match.group(1)


def test_server_pod_runs_prefect_and_the_proxy_from_the_same_image():
    assert [(c["name"], c["image"]) for c in pod(render())["containers"]] == [
        ("server", "internal-cr:9999/prefect-core:abc1234@sha256:" + "0" * 64),
        ("proxy", "internal-cr:9999/prefect-core:abc1234@sha256:" + "0" * 64)]


def test_proxy_is_started_with_args_only_so_tini_stays_pid_1():
    proxy = container(render(), "proxy")
    assert "command" not in proxy
    assert proxy["args"] == ["nginx", "-c", "/etc/prefect-proxy/config/nginx.conf", "-e", "stderr"]


def test_proxy_has_probes_of_its_own_on_its_port():
    proxy = container(render(), "proxy")
    assert proxy["ports"] == [{"name": "http", "containerPort": PROXY_PORT, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert proxy[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "location = /healthz" in nginx_conf(render())


def test_prefect_keeps_its_port_for_the_kubelets_probes():
    server = container(render(), "server")
    assert server["args"][-4:] == ["--host", "0.0.0.0", "--port", "4200"]
    assert server["ports"] == [{"name": "prefect", "containerPort": 4200, "protocol": "TCP"}]
    assert {server[probe]["httpGet"]["port"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")} == {
        "prefect"}


def test_both_services_target_the_proxy_never_prefect():
    objects = render()
    for name in ("prefect-server", "prefect-server-headless"):
        (port,) = find(objects, "Service", name)["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (4200, "http")


def test_the_config_and_the_login_are_mounted_read_only_and_only_the_state_folder_is_writable():
    objects = render()
    mounts = {m["mountPath"]: m for m in container(objects, "proxy")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(objects)["volumes"]}
    config, login, state = (mounts[path] for path in
                            ("/etc/prefect-proxy/config", "/etc/prefect-proxy/login", "/var/lib/prefect-proxy"))
    assert config["readOnly"] and login["readOnly"] and not state.get("readOnly")
    assert volumes[config["name"]]["configMap"] == {"name": "prefect-proxy"}
    assert volumes[login["name"]]["secret"] == {"secretName": "prefect-login-auth", "defaultMode": 0o440,
                                                "items": [{"key": "auth", "path": "htpasswd"}]}
    assert volumes[state["name"]] == {"name": state["name"], "emptyDir": {}}


def test_every_path_nginx_uses_is_a_mount_of_its_container():
    """The root filesystem is read-only: a path outside the mounts would fail at start or at the first upload."""
    objects = render()
    conf = nginx_conf(objects)
    mounted = [m["mountPath"] for m in container(objects, "proxy")["volumeMounts"]]
    paths = set(re.findall(r"\s(/[\w./-]+);", conf))
    assert "/dev/stdout" in paths and len(paths) > 1
    assert [path for path in paths if path != "/dev/stdout" and not any(path.startswith(m + "/") for m in mounted)] == []
    assert re.search(r"^error_log stderr ", conf, re.M)


def test_the_whole_site_asks_for_the_login_but_the_api_is_left_to_prefect():
    conf = nginx_conf(render())
    root, api = location(conf, "/"), location(conf, "/api/")
    assert "auth_basic Prefect;" in root
    assert "auth_basic_user_file /etc/prefect-proxy/login/htpasswd;" in root
    assert "auth_basic" not in api
    assert "proxy_pass http://127.0.0.1:4200;" in root and "proxy_pass http://127.0.0.1:4200;" in api
    assert len(re.findall(r"\blocation\b", conf)) == 3, "a new location must say how it is authenticated"


def test_websockets_long_reads_large_batches_and_forwarded_headers_reach_prefect():
    conf = nginx_conf(render())
    for directive in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header Connection $connection_upgrade;", "proxy_read_timeout 1h;",
                      "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                      "proxy_set_header X-Forwarded-Proto $forwarded_proto;",
                      "proxy_set_header X-Forwarded-Host $forwarded_host;"):
        assert directive in conf
    (size,) = re.findall(r"client_max_body_size (\d+)m;", conf)
    assert int(size) * 1024 * 1024 > 4_000_000, "Prefect's largest log batch (PREFECT_LOGGING_TO_API_BATCH_SIZE)"


def checksum_of(objects, kind, name, configuration):
    return manifests.config_checksum(find(objects, kind, name)["spec"]["template"]["spec"], configuration,
                                     salt=secrets.salt_seed(make_settings()))


def test_checksum_covers_the_mounted_htpasswd_and_proxy_config_of_the_server_only():
    objects = render()
    configuration = [obj for obj in objects if obj["kind"] in ("Secret", "ConfigMap")]
    before = {name: checksum_of(objects, kind, name, configuration)
              for kind, name in (("StatefulSet", "prefect-server"), ("Deployment", "prefect-worker-prod-main"))}
    for kind, name, key, value in (("Secret", "prefect-login-auth", "auth", "YWRtaW46eA=="),
                                   ("ConfigMap", "prefect-proxy", "nginx.conf", "events {}\n")):
        changed = copy.deepcopy(configuration)
        find(changed, kind, name)["data"][key] = value
        assert checksum_of(objects, "StatefulSet", "prefect-server", changed) != before["prefect-server"], name
        assert checksum_of(objects, "Deployment", "prefect-worker-prod-main", changed) == \
            before["prefect-worker-prod-main"], name


def test_rendered_checksum_is_the_one_over_the_rendered_configuration():
    objects = render()
    configuration = [obj for obj in objects if obj["kind"] in ("Secret", "ConfigMap")]
    annotation = find(objects, "StatefulSet", "prefect-server")["spec"]["template"]["metadata"]["annotations"]
    assert annotation[manifests.CHECKSUM_ANNOTATION] == checksum_of(objects, "StatefulSet", "prefect-server",
                                                                   configuration)
