"""DATABASE_MODE=scaled against a real cluster: the migration Job, two API replicas Ready, the services and the
embedded Redis; a flow run COMPLETES, and deleting one API pod while it runs does not fail it.

Opt-in as test_cluster_e2e.py (KIT_E2E_KUBECONFIG), and it needs more:
- KIT_E2E_KIT_IMAGE, the kit's own image: it carries prefect-redis and flows/ (the official image has neither);
- a PostgreSQL: KIT_E2E_DATABASE_URL (postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB, reachable from the cluster,
  a database of its own: the test migrates it), or KIT_E2E_POSTGRES_IMAGE (a Debian-based postgres image the
  cluster can pull, e.g. a mirror of postgres:17.2; uid 999): the test runs it in its namespace, on an emptyDir;
- optional KIT_E2E_REDIS_IMAGE: the embedded Redis's image, when the cluster cannot pull REDIS_IMAGE's default.
Everything happens in a fresh namespace that is deleted at the end.
"""

import os
import secrets
import time
import uuid

import pytest

from kit import cluster, rollout, server
from kit.cluster import pod_ready
from tests.e2e.test_cluster_e2e import (KIT_IMAGE, KUBECONFIG, READY_TIMEOUT, image_settings, prefect_client, run,
                                        run_in_process, wait_for_run)

DATABASE_URL = os.environ.get("KIT_E2E_DATABASE_URL", "")
POSTGRES_IMAGE = os.environ.get("KIT_E2E_POSTGRES_IMAGE", "")
REDIS_IMAGE = os.environ.get("KIT_E2E_REDIS_IMAGE", "")
POSTGRES = "e2e-postgres"
API_REPLICAS = 2

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="needs a test cluster: set KIT_E2E_KUBECONFIG (tests/README.md: End-to-end)"),
    pytest.mark.skipif(not KIT_IMAGE, reason="needs the kit's own image, which carries prefect-redis: set "
                                             "KIT_E2E_KIT_IMAGE"),
    pytest.mark.skipif(not (DATABASE_URL or POSTGRES_IMAGE),
                       reason="needs a PostgreSQL: set KIT_E2E_DATABASE_URL, or KIT_E2E_POSTGRES_IMAGE to an image "
                              "the cluster can pull (tests/README.md)"),
]


def postgres_objects(namespace: str, password: str) -> list[dict]:
    """A throwaway PostgreSQL that passes the namespace's restricted profile, and its Service."""
    labels = {"app.kubernetes.io/name": POSTGRES}
    container = {
        "name": "postgres", "image": POSTGRES_IMAGE, "ports": [{"containerPort": 5432}],
        "env": [{"name": "POSTGRES_USER", "value": "prefect"}, {"name": "POSTGRES_PASSWORD", "value": password},
                {"name": "POSTGRES_DB", "value": "prefect"}, {"name": "PGDATA", "value": "/data/pgdata"}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "prefect", "-d", "prefect"]}, "periodSeconds": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "run", "mountPath": "/var/run/postgresql"}],
    }
    pod = {"securityContext": {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                               "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [container], "volumes": [{"name": "data", "emptyDir": {}}, {"name": "run", "emptyDir": {}}]}
    metadata = {"name": POSTGRES, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": pod}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
         "spec": {"selector": labels, "ports": [{"port": 5432, "targetPort": 5432}]}},
    ]


def wait_available(k, name: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while (k.get("apps/v1", "Deployment", name).get("status", {}).get("availableReplicas") or 0) < 1:
        assert time.monotonic() < deadline, f"deployment/{name} not available after {timeout} s"
        time.sleep(2)


@pytest.fixture(scope="module")
def target():
    """Scaled settings for a fresh namespace (its PostgreSQL first, when the test runs one), the image tag, and the
    cluster handle; the namespace goes at the end."""
    namespace = f"prefect-kit-e2e-scaled-{uuid.uuid4().hex[:6]}"
    password = secrets.token_hex(16)
    database = DATABASE_URL or f"postgresql+asyncpg://prefect:{password}@{POSTGRES}.{namespace}.svc:5432/prefect"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", KUBECONFIG)
        settings, tag = image_settings(
            NAMESPACE=namespace, KUBE_CONTEXT=os.environ.get("KIT_E2E_CONTEXT", ""),
            PUBLIC_HOST=f"{namespace}.e2e.invalid", DATABASE_MODE="scaled", DATABASE_URL=database,
            SERVER_REPLICAS=str(API_REPLICAS), REDIS_PASSWORD=secrets.token_hex(16),
            **({"REDIS_IMAGE": REDIS_IMAGE} if REDIS_IMAGE else {}))
        k = cluster.connect(settings)
        try:
            if not DATABASE_URL:
                rollout.secrets(settings, out=lambda line: None)  # the namespace, with its restricted profile
                with k:
                    for obj in postgres_objects(namespace, password):
                        k.apply(obj)
                    wait_available(k, POSTGRES)
            yield settings, tag, k
        finally:
            with k:
                k.delete("v1", "Namespace", namespace)


def api_pods(k) -> list[dict]:
    selector = f"{server.INSTANCE}={server.API}"
    return [pod for pod in k.objects("v1", "Pod", label_selector=selector)[0]
            if pod_ready(pod) and not pod["metadata"].get("deletionTimestamp")]


def test_the_rollout_migrates_once_then_gets_two_api_replicas_and_the_services_ready(target):
    settings, tag, k = target
    lines = run(settings, tag=tag)

    (job,) = [line.split()[0] for line in lines if line.startswith(f"job/{server.MIGRATION_PREFIX}")
              and line.endswith(" created")]
    assert lines.index(f'job "{job.removeprefix("job/")}" completed') < lines.index(f"deployment/{server.API} created")
    assert f'deployment "{server.SERVICES}" successfully rolled out' in lines
    with k:
        assert len(api_pods(k)) == API_REPLICAS
        assert k.get("apps/v1", "StatefulSet", "prefect-redis")["status"].get("readyReplicas") == 1
        assert k.get("apps/v1", "StatefulSet", "prefect-server") is None
    again = run(settings, tag=tag)
    assert f"{job}: not run, the live server was rolled out after it" in again


def test_a_flow_run_completes_though_an_api_pod_is_deleted_while_it_runs(target):
    settings, _, k = target
    with k:
        stack, client = prefect_client(settings, k)
        with stack:
            run_id = run_in_process(client, seconds=60).id
            wait_for_run(client, run_id, until=lambda state: state.is_running() or state.is_final())
        # The port-forward went to the first API pod: the last one goes, and the client comes back through another.
        victim = sorted(pod["metadata"]["name"] for pod in api_pods(k))[-1]
        k.delete("v1", "Pod", victim)
        stack, client = prefect_client(settings, k)
        with stack:
            assert wait_for_run(client, run_id).type.value == "COMPLETED"
