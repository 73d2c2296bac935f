"""A stand-in Kubernetes API server for the contract tests: real HTTP on 127.0.0.1, driven by the real client.

No API server can run on these machines, so the cluster code is tested through the real `kubernetes` client
(typed APIs and `kubernetes.dynamic.DynamicClient`) against this server, which enforces the rules of a real
one for the calls the kit makes, and nothing more. Tests start it through the `fakeapi` fixture
(tests/contract/conftest.py), which also writes a kubeconfig with the context `fakeapi` and points
KUBECONFIG at it.

What it serves (JSON only; answers like a 1.33 API server)
    Discovery: /version, /api, /apis, /api/v1, /apis/apps/v1, /apis/networking.k8s.io/v1,
    /apis/policy/v1 (plain APIResourceList; no aggregated discovery, like a server that does not offer it).
    Kinds: Namespace, Secret, ConfigMap, ServiceAccount, Service, PersistentVolumeClaim, Pod (+ `log`),
    Event, Deployment, StatefulSet, NetworkPolicy, Ingress, PodDisruptionBudget.
    GET / LIST (labelSelector, fieldSelector on the fields the real server allows) / WATCH, POST, PUT,
    PATCH (apply, merge, strategic merge), DELETE (one object or a collection). Writes into a namespace
    that does not exist answer 404, as for real.
    Server-side apply: PATCH with Content-Type application/apply-patch+yaml and ?fieldManager=… (422 without
    it; 415 for a content type no patch accepts), the body validated with
    kubernetes_validate.validate(obj, "1.33", strict=True) (422 with the schema's message), Secret `data`
    values must be base64 (422). Creates (201) or merges: the fields a manager applied before and omits now
    are removed, lists are replaced whole (treated as atomic). An apply that changes nothing stores
    nothing: same resourceVersion, no watch event. A change under `spec` bumps metadata.generation.
    `status` in a client's body is ignored (only tests set it). ?dryRun=All validates and answers the
    would-be object, storing nothing. Conflict: a field owned by another manager whose value the apply
    changes answers 409 (reason Conflict, the real message form) unless ?force=true, which takes it over.
    PUT with a stale metadata.resourceVersion answers 409.
    Auth: the kubeconfig's bearer token is required (401 otherwise).

The handle (`FakeApi`, yielded by the `fakeapi` fixture). `kind` is the Kind ("Deployment"); `ns` is None
for cluster-scoped kinds. Every object passed in or returned is a plain dict copy.
    url, kubeconfig, context, token     where it listens and how the client reaches it
    put(obj) -> dict                    store obj as another client would (POST/PUT by manager "test"),
                                        with uid/resourceVersion/creationTimestamp; emits a watch event
    get(kind, ns, name) -> dict | None
    objects(kind, ns=None) -> list[dict]   (ns=None: all namespaces), sorted by namespace and name
    delete(kind, ns, name)              as a controller or another client would; emits DELETED
    set_status(kind, ns, name, status)  replace `.status` (new resourceVersion, MODIFIED event)
    set_owner(kind, ns, name, field_path, manager)
                                        record that `manager` (an Update manager, e.g. "kubectl-edit")
                                        owns field_path (".spec.replicas": dotted, keys without dots)
    requests -> list[Request]           every request so far: method, path, query (dict of first
                                        values), content_type, body (parsed JSON/YAML, or text), status
    writes() -> list[Request]           the requests that are not GET (POST/PUT/PATCH/DELETE)
    clear_requests()
    fail(path_prefix, code, times=1)    the next `times` requests whose path starts with path_prefix answer
                                        `code` (500 InternalError, 503 ServiceUnavailable, ...)
    deny(code, path_prefix="/")         401 (Unauthorized) or 403 (Forbidden, real message naming user,
                                        verb, resource and namespace) for every matching request until
    allow()                             lifts every deny()
    drop_watches()                      cut every open watch and log stream mid-stream (API server restart)
    compact()                           forget the event history: a watch from an older resourceVersion
                                        gets an ERROR event with a 410 Gone Status, as after etcd compaction
    log(ns, pod, text)                  append lines to a pod's log (GET …/log: tailLines, container,
                                        follow streams appended lines until the pod goes or drop_watches())
    event(obj, reason, message, type="Warning") -> dict
                                        record a core/v1 Event about obj (involvedObject filled from it)
    Controller helpers, never run unless a test calls them:
    make_ready(kind, ns, name)          Deployment/StatefulSet: pods for the current template (Running,
                                        Ready), old-template pods deleted, status as the real controller
                                        reports it when done (observedGeneration, replicas, updated,
                                        ready, available, conditions)
    make_unready(kind, ns, name, reason, message="", restarts=0)
                                        pods for the current template stuck waiting with `reason`
                                        (CrashLoopBackOff, ImagePullBackOff, ...), or Pending and
                                        Unschedulable for reason="Unschedulable"; status observed but
                                        not ready
    controller(on=True)                 a background thread that calls make_ready on every Deployment
                                        and StatefulSet whose generation it has not yet observed

Not modelled (the e2e suite against a real cluster covers these): admission, defaulting beyond
spec.replicas and Namespace phase, list-map merge keys inside lists, garbage collection of owned objects
(a Namespace deletion removes its contents at once), limit/continue paging, aggregated discovery, protobuf.

DynamicClient caches discovery in a temp file keyed by the server URL: pass `cache_file` (under tmp_path)
when request counts matter.
"""
