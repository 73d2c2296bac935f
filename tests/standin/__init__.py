"""A stand-in Kubernetes API server: real HTTP on 127.0.0.1, driven by the real `kubernetes` client.

No API server can run on these machines, so the cluster code is tested through the real client (typed APIs and
`kubernetes.dynamic.DynamicClient`) against this server, which answers as a real one does for the calls the kit
makes and the kinds its next issues need: the same status codes, reasons and messages, the same defaults, the
same refusals. `from tests.standin import FakeApi`; tests get a started one from the `fakeapi` fixture
(tests/standin/fixtures.py), which also writes a kubeconfig with the context `fakeapi` and points KUBECONFIG at it.

Modules, one concern each: kinds (what is served, discovery), schema (the official schemas), fields and apply
(field sets and ownership, server-side apply), defaults, validation, admission (PodSecurity, ServiceAccount,
claim protection, RBAC), registry (the write and delete paths every rule sits on), controllers (what tests drive
explicitly), store (objects, resourceVersions, watches), logs, handler (HTTP), server (FakeApi: the request
paths and the handle). tests/pod_security.py holds the Pod
Security Standards checks, shared with render tests.

What it models (answers like a 1.33 API server; `set_version("1.36.2")` makes it another, schemas included)
    Discovery: /version, /api, /apis and each group version (plain APIResourceList).
    Kinds: Namespace, Secret, ConfigMap, ServiceAccount, Service, PersistentVolumeClaim, Pod (+ `log`, `exec`, `portforward`), Event,
    Deployment, StatefulSet, Job, NetworkPolicy, Ingress, IngressClass, PodDisruptionBudget,
    HorizontalPodAutoscaler (autoscaling/v2), Role, RoleBinding, StorageClass, SelfSubjectAccessReview (create
    only); Gateway and HTTPRoute (gateway.networking.k8s.io/v1) only while `serve_gateway_api(True)`: before,
    their paths answer 404 and discovery does not list them, as on a cluster without the CRDs. The `status`
    subresource of the kinds that have one answers GET.
    Verbs: GET / LIST (labelSelector, fieldSelector on the fields the real server indexes, 400 otherwise) /
    WATCH, POST, PUT (409 on a stale resourceVersion), PATCH (apply, merge; strategic merge as merge), DELETE
    (one object or a collection; propagationPolicy Background, Foreground or Orphan). Auth: the kubeconfig's
    bearer token (401 otherwise). Writes into a missing namespace answer 404, into a terminating one 403.
    Decoding: Secret `data` must be base64 (400); unknown fields of a create, replace or patch are dropped with
    a `Warning: unknown field "..."` header (fieldValidation Warn, the default; Strict answers 400).
    Server-side apply: ?fieldManager is required (422; 415 for a content type no patch accepts); an object read
    back cannot be applied (managedFields, 400); what cannot become a typed object fails as for real with a 500
    (`failed to create typed patch object (...): .spec...: field not declared in schema`, duplicate list-map
    keys). The applied configuration is merged by the official schemas' list types: list-maps (containers,
    initContainers, env, ports, volumes, volumeMounts, ...) entry by entry, so two managers can own different
    entries; sets by value; atomic lists (args, command, volumeClaimTemplates) and atomic maps (selectors,
    secretKeyRef) whole. What a manager applied before and omits now is removed unless another manager owns it
    or something under it. A change to a field another manager owns answers 409 (the real message, per list
    entry: `.spec.template.spec.containers[name="worker"].image`) unless ?force=true, which takes it over.
    managedFields use the real FieldsV1 encoding (`f:`, `k:{"name":"x"}`, `v:`, `.`), keyed by manager and
    operation and sorted as the real server sorts them. Defaulted fields are owned by no applier; a create or
    update owns every field it changed, defaults included, as for real. An apply (or any write) that changes
    nothing stores nothing: same resourceVersion, no watch event. A change under `spec` bumps generation;
    `status` from clients is ignored; ?dryRun=All runs every rule and stores nothing.
    Defaults (defaults.py, from the real SetDefaults_ functions): pod specs and containers (restartPolicy,
    dnsPolicy, schedulerName, terminationGracePeriodSeconds, securityContext, imagePullPolicy, termination
    message, resources, probes, httpGet scheme and path, port protocols, volume defaultModes, enableServiceLinks
    on Pods), Deployment (strategy 25%/25%, revisionHistoryLimit, progressDeadlineSeconds), StatefulSet
    (RollingUpdate with partition 0, OrderedReady, revisionHistoryLimit, claim retention, claim templates'
    volumeMode, type and phase), Job (completions, parallelism, backoffLimit, completionMode, suspend,
    podReplacementPolicy, labels from the template, the generated selector and job-name/controller-uid labels),
    Service (type, sessionAffinity, an allocated clusterIP/clusterIPs kept across writes, ipFamilies,
    ipFamilyPolicy, internalTrafficPolicy, port protocol and targetPort), Secret type, Namespace label, finalizer
    and phase, PVC volumeMode and phase, NetworkPolicy policyTypes and port protocol, HPA minReplicas, metrics and
    behavior, RoleBinding apiGroups, StorageClass reclaimPolicy and volumeBindingMode, IngressClass parameter
    scope; custom resources get their CRD schema's structural defaults.
    Validation (422, the real messages): the official schemas (kubernetes-validate for built-ins, the Gateway API
    v1.6.1 CRDs with jsonschema, plus their CEL rules the kit can trip over: path values start with '/', a
    Service backendRef has a port, listener rules); object names per kind, label keys and values, annotation
    keys; pod specs (container, port and volume names, duplicates, volumeMounts naming a volume, mount paths,
    restartPolicy); workload selectors that must match their template's labels; immutable fields (StatefulSet
    spec beyond replicas/ordinals/template/updateStrategy/persistentVolumeClaimRetentionPolicy/minReadySeconds,
    Deployment and Job selectors, Job template and completionMode, Service clusterIPs, PVC spec beyond
    resources.requests, RoleBinding roleRef, Secret and ConfigMap data with `immutable: true`, Secret type, new
    finalizers on an object being deleted).
    Admission: RBAC (`forbid` takes a permission away: its requests answer 403 with the real message, and
    SelfSubjectAccessReviews answer allowed=false; everything else is allowed), ServiceAccount (pods get
    serviceAccountName `default`, which must exist, and the projected token volume unless automount is off),
    claim protection (the `kubernetes.io/pvc-protection` finalizer), PodSecurity (enforce refuses pods, dry runs
    too, with 403 and the real message; warn adds the real `would violate PodSecurity` warning to pods and to
    workloads, which enforce never refuses). A new namespace gets its `default` ServiceAccount and the
    `kube-root-ca.crt` ConfigMap, as its controllers add them.
    Deletion: finalizers hold an object (deletionTimestamp set) until they are removed; garbage collection of
    owned objects (a Deployment's, StatefulSet's or Job's pods) with Background or Foreground, ownerReferences
    dropped with Orphan; a claim stays Terminating while a pod that mounts it exists (a new claim of that name
    answers 409 AlreadyExists meanwhile). A Namespace deletion removes its contents at once.
    Watches: the initial ADDED state, selector transitions, timeoutSeconds with a BOOKMARK, ERROR 410 Expired
    after compact(), streams cut mid-way by drop_watches(). Pod logs: tailLines, container, previous, follow,
    the kubelet's 400s.

The handle (`FakeApi`). `kind` is the Kind ("Deployment"); `ns` is None for cluster-scoped kinds. Every object
passed in or returned is a plain dict copy.
    start() / stop(); url, kubeconfig, context, token; write_kubeconfig(path, token=None)
    set_version(version); serve_gateway_api(installed=True)
    put(obj) -> dict                    create or replace as another client would (manager "test"), through
                                        every rule; status and metadata.deletionTimestamp kept as given
    get(kind, ns, name) -> dict | None; objects(kind, ns=None) -> list (sorted by namespace and name)
    delete(kind, ns, name, propagation="Background") -> dict
    set_status(kind, ns, name, status)  replace `.status` (new resourceVersion, MODIFIED event)
    set_owner(kind, ns, name, field_path, manager)
                                        `manager` (an Update manager, e.g. "kubectl-edit") now owns the field at
                                        field_path, written as conflicts print it (`.spec.replicas`,
                                        `.spec.template.spec.containers[name="worker"].image`; names without dots)
    requests, writes(), clear_requests()  every request so far (method, path, query, content_type, body, status)
    fail(path_prefix, code, times=1)    the next requests under path_prefix answer code (429, 500, 503, 504, ...);
                                        code 0 carries them out, then closes the connection without an answer (a
                                        server gone mid-request: the answer is lost; their status in `requests` is 0)
    deny(code, path_prefix="/")         401 or 403 for every matching request
    forbid(verb, resource, group="", namespace=None, subresource="")
                                        RBAC without that permission ("*" matches any verb or resource)
    allow()                             lifts every deny() and forbid()
    drop_watches(); compact(); log(ns, pod, text); event(obj, reason, message, type="Warning") -> dict
    forward(ns, pod, port, to)          pods/portforward to `port` of a Running pod reaches 127.0.0.1:`to`
                                        (tests/standin/channels.py speaks the client's real websocket protocol;
                                        a port not forwarded is the kubelet's connection-refused error)
    on_exec(ns, pod, run)               pods/exec of a Running pod runs run(command, container) -> Popen with
                                        binary pipes: stdin, stdout, stderr and the exit status over the real
                                        protocol; authorized as `create` on pods/exec, as since 1.31
    Controller helpers, never run unless a test calls them:
    make_ready(kind, ns, name)          Deployment/StatefulSet: pods for the current template (Running, Ready;
                                        a StatefulSet's with its claim volumes, after its claims), outdated pods
                                        deleted, status as the real controller reports it; a pod the server
                                        refuses (PodSecurity, an invalid spec) is not created, the refusal is the
                                        controller's FailedCreate event and a Deployment's ReplicaFailure
    make_unready(kind, ns, name, reason, message="", restarts=0)
                                        pods stuck waiting with `reason` (CrashLoopBackOff, ImagePullBackOff, ...),
                                        or Pending and Unschedulable for reason="Unschedulable"
    job_running(ns, name, pods=1); job_succeeded(ns, name);
    job_failed(ns, name, reason="BackoffLimitExceeded", message=None)
                                        a Job's pods (labelled as the Job controller labels them) and status:
                                        active/ready, startTime; succeeded, completionTime and the conditions
                                        SuccessCriteriaMet + Complete; failed and FailureTarget + Failed
    controller(on=True)                 a thread that calls make_ready on every Deployment and StatefulSet whose
                                        generation it has not observed

Not modelled (the e2e suite against a real cluster covers what only a real cluster can):
    ReplicaSets, ControllerRevisions, Endpoints and the scheduler (pods are placed on "fakeapi-node" at once);
    graceful termination (a deleted pod goes at once) and an asynchronous garbage collector or namespace
    controller (both act within the deleting request); strategic merge patch list semantics and $patch
    directives; limit/continue paging, resourceVersionMatch, aggregated discovery, protobuf, CRD versions other
    than v1 and the CRD objects themselves; PodSecurity exemptions, audit, the namespace-relabel warnings and
    pod updates (a pod's spec is not held immutable either); a DELETE answers the object, never the Status some
    kinds answer with;
    admission webhooks, LimitRanges, ResourceQuotas; the ClusterRoles and ClusterRoleBindings RBAC would read;
    the schemas' errors are worded after kube-openapi, not the decoder (a type mismatch is a 422 here, a 400 on a
    real server); metadata.generation is kept for every kind (a real server sets it only where the strategy
    does); Indexed Jobs and the scheduling fields a suspended Job may change; a Job template's %#v in its
    immutability error is abbreviated, and PVC's cmp.Diff in its is simplified.

DynamicClient caches discovery in a temp file keyed by the server URL: pass `cache_file` (under tmp_path) when
request counts matter or after serve_gateway_api().
"""

from tests.standin.server import FakeApi

__all__ = ["FakeApi"]
