"""The controllers a test drives explicitly: workloads, Jobs, garbage collection, claim protection, namespaces.

Nothing here runs unless a test (or FakeApi.controller's thread) calls it. Pods are made as the real controllers
make them (names, labels, ownerReferences, a StatefulSet's claim volumes) and created through the same path as
any request, so defaulting, validation and admission hold: a pod the real server would refuse is not created,
and the refusal becomes the controller's FailedCreate event, in its words.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid

from tests.standin.admission import PVC_PROTECTION
from tests.standin.apply import now
from tests.standin.errors import ApiError
from tests.standin.selectors import selector_matcher

CONTROLLER_MANAGER = "kube-controller-manager"
_WAITING_BEFORE_START = {"ImagePullBackOff", "ErrImagePull", "ContainerCreating", "CreateContainerConfigError",
                         "InvalidImageName"}
# The Job controller's condition messages (pkg/controller/job/job_controller.go).
JOB_FAILURE_MESSAGES = {"BackoffLimitExceeded": "Job has reached the specified backoff limit",
                        "DeadlineExceeded": "Job was active longer than specified deadline"}
ROOT_CA = "kube-root-ca.crt"


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def revision_of(workload: dict) -> str:
    return _hash(json.dumps(workload["spec"]["template"], sort_keys=True), 10)


def replica_set_uid(deployment: dict, revision: str) -> str:
    """The uid of the ReplicaSet a Deployment's pods belong to (ReplicaSets are not served; the link is kept)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{deployment['metadata']['uid']}/{revision}"))


# ---- Deployments and StatefulSets


def roll(registry, kind: str, ns: str, name: str, waiting: tuple | None) -> None:
    """make_ready (waiting None) / make_unready: the pods of the current template, and the status to match."""
    with registry.store.cond:
        workload = copy.deepcopy(registry.store.get((kind, ns, name)).obj)
        spec, revision = workload["spec"], revision_of(workload)
        replicas = spec.get("replicas", 1)
        pods = [pod_for(workload, index, revision, waiting) for index in range(replicas)]
        wanted = {pod["metadata"]["name"]: pod for pod in pods}
        selected = selector_matcher(spec["selector"])
        for key, stored in registry.store.of_kind("Pod", ns):
            labels = stored.obj["metadata"].get("labels") or {}
            outdated = kind == "StatefulSet" and key[2] in wanted and labels.get("controller-revision-hash") != (
                wanted[key[2]]["metadata"]["labels"]["controller-revision-hash"])
            if selected(labels) and (key[2] not in wanted or outdated):
                registry.remove_object(key)
        if kind == "StatefulSet":
            for index in range(replicas):
                for claim in claims_for(workload, index):
                    if ("PersistentVolumeClaim", ns, claim["metadata"]["name"]) not in registry.store.objects:
                        registry.system_write(claim)  # claims outlive pods and rollouts, as for real
        if kind == "Deployment":
            registry.replica_sets[replica_set_uid(workload, revision)] = workload["metadata"]["uid"]
        failure = None
        for pod in pods:
            key = ("Pod", ns, pod["metadata"]["name"])
            stored = registry.store.get(key)
            if stored is not None and ("nodeName" in stored.obj["spec"]) != ("nodeName" in pod["spec"]):
                registry.remove_object(key)  # a scheduled pod never becomes unscheduled: this one is its replacement
                stored = None
            try:
                if stored is None:
                    registry.system_write(pod)
                else:
                    registry.set_status("Pod", ns, pod["metadata"]["name"], pod["status"])
            except ApiError as error:
                failure = error.message
                _failed_create(registry, workload, revision, pod["metadata"]["name"], error.message)
                break
        created = sum(1 for pod in pods if ("Pod", ns, pod["metadata"]["name"]) in registry.store.objects)
        registry.set_status(kind, ns, name, workload_status(workload, revision, created, waiting is None, failure))


def _failed_create(registry, workload: dict, revision: str, pod: str, error: str) -> None:
    """The FailedCreate event of the controller that could not create a pod, in its words."""
    meta = workload["metadata"]
    if workload["kind"] == "StatefulSet":
        registry.event(workload, "FailedCreate", f"create Pod {pod} in StatefulSet {meta['name']} failed error: {error}")
    elif workload["kind"] == "Deployment":
        replica_set = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                       "metadata": {"name": f"{meta['name']}-{revision}", "namespace": meta["namespace"],
                                    "uid": replica_set_uid(workload, revision)}}
        registry.event(replica_set, "FailedCreate", f"Error creating: {error}")
    else:
        registry.event(workload, "FailedCreate", f"Error creating: {error}")


def pod_for(workload: dict, index: int, revision: str, waiting: tuple | None) -> dict:
    """A pod as the workload's controller and the kubelet would leave it: Running and Ready, or stuck `waiting`."""
    meta, template = workload["metadata"], workload["spec"]["template"]
    labels = dict(template.get("metadata", {}).get("labels", {}))
    spec = copy.deepcopy(template["spec"])
    if workload["kind"] == "Deployment":
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{meta['name']}-{revision}",
                 "uid": replica_set_uid(workload, revision)}
        name = f"{owner['name']}-{_hash(f'{revision}{index}', 5)}"
        labels["pod-template-hash"] = revision
    else:
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": meta["name"], "uid": meta["uid"]}
        name = f"{meta['name']}-{index}"
        labels.update({"controller-revision-hash": f"{meta['name']}-{revision}",
                       "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": str(index)})
        # The StatefulSet controller gives each pod a volume per claim template (updateStorage).
        claims = [(t["metadata"]["name"], c["metadata"]["name"])
                  for t, c in zip(workload["spec"].get("volumeClaimTemplates") or [], claims_for(workload, index))]
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in dict(claims)]
        volumes += [{"name": volume, "persistentVolumeClaim": {"claimName": claim}} for volume, claim in claims]
        if volumes:
            spec["volumes"] = volumes
    scheduled = not (waiting and waiting[0] == "Unschedulable")
    if scheduled:
        spec["nodeName"] = "fakeapi-node"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                     "annotations": dict(template.get("metadata", {}).get("annotations", {})),
                     "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}]},
        "spec": spec,
        "status": pod_status(spec.get("containers", []), index, now(), waiting),
    }


def claims_for(statefulset: dict, index: int) -> list[dict]:
    """The claims the StatefulSet controller makes per pod: `<template>-<set>-<ordinal>`, labelled with the
    template's labels and the set's selector (pkg/controller/statefulset/stateful_set_utils.go)."""
    meta, spec = statefulset["metadata"], statefulset["spec"]
    claims = []
    for template in spec.get("volumeClaimTemplates", []):
        labels = {**template.get("metadata", {}).get("labels", {}), **spec["selector"].get("matchLabels", {})}
        claims.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"{template['metadata']['name']}-{meta['name']}-{index}",
                         "namespace": meta["namespace"], "labels": labels},
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Bound", "accessModes": template["spec"].get("accessModes", []),
                       "capacity": template["spec"].get("resources", {}).get("requests", {})},
        })
    return claims


def _condition(type_: str, ok: bool, stamp: str, reason: str = "", message: str = "") -> dict:
    found = {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": stamp}
    return {**found, "reason": reason, "message": message} if reason else found


def pod_status(containers: list[dict], index: int, stamp: str, waiting: tuple | None) -> dict:
    if waiting is None:
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "containerID": container_id(c, index, 0),
                     "ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}
                    for c in containers]
        conditions = [_condition(t, True, stamp) for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        return {"phase": "Running", "conditions": conditions, "podIP": f"10.244.0.{10 + index}", "startTime": stamp,
                "containerStatuses": statuses}
    reason, message, restarts = waiting
    if reason == "Unschedulable":
        return {"phase": "Pending", "conditions": [_condition("PodScheduled", False, stamp, reason, message)]}
    statuses = []
    for c in containers:
        status = {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
                  "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}}}
        if restarts:
            status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": stamp,
                                                  "finishedAt": stamp, "containerID": container_id(c, index, restarts)}}
        statuses.append(status)
    unready = f"containers with unready status: [{' '.join(c['name'] for c in containers)}]"
    conditions = [_condition("Initialized", True, stamp),
                  _condition("Ready", False, stamp, "ContainersNotReady", unready),
                  _condition("ContainersReady", False, stamp, "ContainersNotReady", unready),
                  _condition("PodScheduled", True, stamp)]
    return {"phase": "Pending" if reason in _WAITING_BEFORE_START else "Running", "conditions": conditions,
            "podIP": f"10.244.0.{10 + index}", "startTime": stamp, "containerStatuses": statuses}


def container_id(container: dict, index: int, run: int) -> str:
    return "containerd://" + hashlib.sha256(f"{container['name']}/{index}/{run}".encode()).hexdigest()


def workload_status(workload: dict, revision: str, created: int, ready: bool, failure: str | None) -> dict:
    """The status the Deployment or StatefulSet controller reports once it has acted on the current spec."""
    name, replicas = workload["metadata"]["name"], workload["spec"].get("replicas", 1)
    ready = ready and failure is None
    done = {"readyReplicas": created, "availableReplicas": created} if ready and created else {}
    status = {"observedGeneration": workload["metadata"]["generation"], "replicas": created,
              "updatedReplicas": created, **done}
    if workload["kind"] == "StatefulSet":
        return {**status, "currentReplicas": created, "currentRevision": f"{name}-{revision}",
                "updateRevision": f"{name}-{revision}", "collisionCount": 0,
                **({} if ready else {"availableReplicas": 0})}
    stamp = now()
    replica_set = f"{name}-{revision}"
    if ready:
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{replica_set}" has successfully progressed.')
    else:
        status["unavailableReplicas"] = replicas
        available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{replica_set}" is progressing.')
    conditions = [("Available", available), ("Progressing", progressing)]
    if failure is not None:
        conditions.append(("ReplicaFailure", ("True", "FailedCreate", failure)))
    status["conditions"] = [
        {"type": type_, "status": s, "reason": r, "message": m, "lastUpdateTime": stamp, "lastTransitionTime": stamp}
        for type_, (s, r, m) in conditions]
    return status


# ---- Jobs


def _job_pod(job: dict, index: int, stamp: str, state: str) -> dict:
    """A pod as the Job controller labels it, in state "running", "succeeded" or "failed"."""
    meta, template = job["metadata"], job["spec"]["template"]
    seed = f"{meta['uid']}/{index}"
    name = f"{meta['name']}-{_hash(seed, 5)}"
    containers = template["spec"]["containers"]
    if state == "running":
        status = pod_status(containers, index, stamp, None)
    else:
        code, reason = (0, "Completed") if state == "succeeded" else (1, "Error")
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
                     "restartCount": 0, "containerID": container_id(c, index, 0),
                     "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": stamp,
                                              "finishedAt": stamp, "containerID": container_id(c, index, 0)}}}
                    for c in containers]
        conditions = [_condition("Initialized", True, stamp),
                      _condition("Ready", False, stamp, "PodCompleted", ""),
                      _condition("ContainersReady", False, stamp, "PodCompleted", ""),
                      _condition("PodScheduled", True, stamp)]
        status = {"phase": "Succeeded" if state == "succeeded" else "Failed", "conditions": conditions,
                  "podIP": f"10.244.0.{10 + index}", "startTime": stamp, "containerStatuses": statuses}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": dict(template.get("metadata", {}).get("labels", {})),
                     "annotations": dict(template.get("metadata", {}).get("annotations", {})),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                          "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
        "spec": {**copy.deepcopy(template["spec"]), "nodeName": "fakeapi-node"},
        "status": status,
    }


def _job_pods(registry, job: dict, count: int, state: str) -> int:
    """Create (or move to `state`) count pods of the job; the number that exist afterwards."""
    stamp = now()
    ns = job["metadata"]["namespace"]
    for index in range(count):
        pod = _job_pod(job, index, stamp, state)
        key = ("Pod", ns, pod["metadata"]["name"])
        try:
            if key in registry.store.objects:
                registry.set_status("Pod", ns, pod["metadata"]["name"], pod["status"])
            else:
                registry.system_write(pod)
        except ApiError as error:
            registry.event(job, "FailedCreate", f"Error creating: {error.message}")
            return index
    return count


def job_running(registry, ns: str, name: str, pods: int) -> None:
    with registry.store.cond:
        job = copy.deepcopy(registry.store.get(("Job", ns, name)).obj)
        running = _job_pods(registry, job, pods, "running")
        status = dict(job.get("status") or {})
        status.setdefault("startTime", now())
        status.update({"ready": running, "terminating": 0, "uncountedTerminatedPods": {}})
        status["active"] = running
        if not running:
            status.pop("active")
        registry.set_status("Job", ns, name, status)


def job_finished(registry, ns: str, name: str, succeeded: bool, reason: str = "", message: str | None = None) -> None:
    """The pods terminated and the status the Job controller writes: SuccessCriteriaMet and Complete, or
    FailureTarget and Failed (the conditions of 1.31+)."""
    with registry.store.cond:
        job = copy.deepcopy(registry.store.get(("Job", ns, name)).obj)
        spec, stamp = job["spec"], now()
        status = {"startTime": (job.get("status") or {}).get("startTime", stamp), "ready": 0, "terminating": 0,
                  "uncountedTerminatedPods": {}}
        if succeeded:
            status["succeeded"] = _job_pods(registry, job, spec.get("completions") or 1, "succeeded")
            status["completionTime"] = stamp
            reason, message = "CompletionsReached", "Reached expected number of succeeded pods"
            types = ("SuccessCriteriaMet", "Complete")
        else:
            # restartPolicy Never: a new pod per attempt, all kept; OnFailure: one pod, restarted in place.
            never = spec["template"]["spec"].get("restartPolicy") == "Never"
            status["failed"] = _job_pods(registry, job, spec.get("backoffLimit", 6) + 1 if never else 1, "failed")
            message = message if message is not None else JOB_FAILURE_MESSAGES.get(reason, "")
            types = ("FailureTarget", "Failed")
        status["conditions"] = [{"type": t, "status": "True", "reason": reason, "message": message,
                                 "lastProbeTime": stamp, "lastTransitionTime": stamp} for t in types]
        registry.set_status("Job", ns, name, status)


# ---- garbage collection, claim protection, namespaces


def dependents(registry, owner: dict) -> tuple[list[tuple], list[tuple]]:
    """(objects owned directly by owner, objects owned through one of its ReplicaSets)."""
    uid = owner["metadata"].get("uid")
    sets = {rs for rs, deployment in registry.replica_sets.items() if deployment == uid}
    direct, indirect = [], []
    for key, stored in registry.store.objects.items():
        refs = {ref.get("uid") for ref in stored.obj["metadata"].get("ownerReferences") or []}
        if uid in refs:
            direct.append(key)
        elif refs & sets:
            indirect.append(key)
    return direct, indirect


def in_use(registry, ns: str, claim: str) -> bool:
    """Whether a pod that has not finished mounts the claim (the pvc-protection controller's rule)."""
    return any(stored.obj.get("status", {}).get("phase") not in ("Succeeded", "Failed")
               and any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                       for v in stored.obj.get("spec", {}).get("volumes") or [])
               for _, stored in registry.store.of_kind("Pod", ns))


def release_claims(registry, ns: str) -> None:
    """The pvc-protection controller: a deleted claim no pod uses loses its finalizer, and with it goes."""
    for key, stored in registry.store.of_kind("PersistentVolumeClaim", ns):
        meta = stored.obj["metadata"]
        if meta.get("deletionTimestamp") and PVC_PROTECTION in (meta.get("finalizers") or []) and not in_use(
                registry, ns, key[2]):
            registry.drop_finalizer(key, PVC_PROTECTION)


def namespace_contents(namespace: str) -> list[dict]:
    """What the service account and root CA controllers put into every new namespace."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": ROOT_CA, "namespace": namespace, "annotations": {
             "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when "
                                          "using internal endpoints such as the internal service IP or "
                                          "kubernetes.default.svc. No other usage is guaranteed across "
                                          "distributions of Kubernetes clusters."}},
         "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nZmFrZWFwaQ==\n-----END CERTIFICATE-----\n"}},
    ]
