"""What the stand-in's own tests apply, and the few calls they all make through the real client."""

import json

from kubernetes import watch

NS = "prefect"
MANAGER = "prefect-kit"
IMAGE = "prefecthq/prefect:3.9.1-python3.12"
# What a pod needs to pass `restricted` PodSecurity, as the kit's manifests set it.
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_spec(containers=None, **extra) -> dict:
    return {"containers": containers or [{"name": "worker", "image": IMAGE}], **extra}


def deployment(image=IMAGE, replicas=1, labels=None, name="prefect-worker-prod-main", spec=None) -> dict:
    labels = labels if labels is not None else {"app.kubernetes.io/part-of": "prefect"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {"metadata": {"labels": {"app": "worker"}},
                         "spec": spec or pod_spec([{"name": "worker", "image": image}])},
        },
    }


def statefulset(name="prefect-server", claims=True, spec=None) -> dict:
    body = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceName": f"{name}-headless",
            "selector": {"matchLabels": {"app": "server"}},
            "template": {"metadata": {"labels": {"app": "server"}},
                         "spec": spec or pod_spec([{"name": "server", "image": IMAGE,
                                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}])},
        },
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{
            "metadata": {"name": "data", "labels": {"app.kubernetes.io/managed-by": "prefect-kit"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    return body


def job(name="flow-run", restart="Never", spec=None) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
            "spec": {"template": {"metadata": {"labels": {"app": "flow"}},
                                  "spec": spec or pod_spec([{"name": "flow", "image": IMAGE}], restartPolicy=restart)}}}


def service(name="prefect-server", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": "server"}, "ports": [{"name": "http", "port": 4200}], **spec}}


def secret(value="c2VjcmV0", name="prefect-config", **extra) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "data": {"auth-string": value}, **extra}


def claim(name="data", storage="1Gi") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}}


def pod(name="runner", spec=None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": spec or pod_spec()}


def resource(dyn, kind, api_version="v1"):
    return dyn.resources.get(api_version=api_version, kind=kind)


def apply(dyn, body, manager=MANAGER, **options):
    kind = resource(dyn, body["kind"], body["apiVersion"])
    return dyn.server_side_apply(kind, body=body, field_manager=manager, **options)


def status_of(error) -> dict:
    """The Status body of a refused request."""
    return json.loads(error.body)


def first_event(dyn, kind, api_version, **options):
    watcher = watch.Watch()
    # The timeout only bounds a failing test; a passing one returns at the first event.
    for event in dyn.watch(resource(dyn, kind, api_version), namespace=NS, watcher=watcher, timeout=5, **options):
        watcher.stop()
        return event
    return None
