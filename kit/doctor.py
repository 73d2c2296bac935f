"""`inv doctor`: every precondition of a rollout, checked at once, one line each.

    ✓  holds
    ✗  does not, and the line says how to fix it (the only mark that makes doctor exit 1)
    ·  not there yet, which is fine before a first rollout (no image pushed for this commit, no server running)
    ?  not readable with these rights (a namespace-scoped user cannot list StorageClasses)

Each check is a function from what it needs to a list of Findings; the groups run concurrently and are printed
in a fixed order, so the same cluster always reads the same.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kit import cluster, kinds, manifests, registry, release, workers
from kit.errors import UserError
from kit.settings import Settings, redis_hosts

OK, FAIL, LATER, UNKNOWN = "✓", "✗", "·", "?"
DEFAULT_STORAGE_CLASS = "storageclass.kubernetes.io/is-default-class"
ENFORCE = "pod-security.kubernetes.io/enforce"
# Checks waiting on the network must not hold the others up: each gets this long for one answer.
ANSWER_TIMEOUT = 3.0


@dataclass(frozen=True)
class Finding:
    mark: str
    subject: str
    text: str

    def line(self) -> str:
        return f"{self.mark} {self.subject}: {self.text}"


@dataclass(frozen=True)
class Right:
    """One verb on one resource that a rollout (or prune, destroy, logs) uses."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    cluster_scoped: bool = False
    name: str = ""  # one object only, as RBAC's resourceNames can grant

    @property
    def text(self) -> str:
        name = self.resource + (f"/{self.subresource}" if self.subresource else "")
        return f"{self.verb} {name}{'.' + self.group if self.group else ''}"


def rights_needed(objects: list[dict], namespace: str, namespace_exists: bool) -> list[Right]:
    """What the kit's own calls need for this render: apply (create, patch), reads and waits (list, watch) and
    prune/destroy (delete) of every rendered kind, and the reads of pods, logs and events that diagnose a rollout."""
    rendered = {obj["kind"] for obj in objects} - {"Namespace"}
    needed = [Right(verb, kind.resource, kind.group) for kind in kinds.NAMESPACED if kind.name in rendered
              for verb in ("list", "watch", "create", "patch", "delete")]
    needed += [Right("get", "pods"), Right("list", "pods"), Right("get", "pods", subresource="log"),
               Right("list", "events"), Right("create", "pods", subresource="portforward")]
    if any(workers.kubernetes_only(obj) for obj in objects):
        # A kubernetes pool's job template is dry-run in the cluster before it is written (kit.admission).
        needed += [Right("create", "jobs", "batch"), Right("create", "pods")]
    # The namespace is applied too: created when missing, else patched (its labels).
    needed.append(Right("patch", "namespaces", cluster_scoped=True, name=namespace) if namespace_exists
                  else Right("create", "namespaces", cluster_scoped=True))
    return needed


def run(load_settings: Callable[[], Settings], out: Callable[[str], None] = print) -> bool:
    """Print every finding; True when none is ✗."""
    try:
        settings = load_settings()
    except UserError as error:
        for problem in error.problems:
            out(Finding(FAIL, ".env", problem).line())
        return False
    out(Finding(OK, settings.source, "valid").line())
    groups = (check_cluster, check_registry, check_public_host, check_prefect, check_redis)
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        results = [pool.submit(group, settings) for group in groups]
        findings = [finding for result in results for finding in result.result()]
    for finding in findings:
        out(finding.line())
    return all(finding.mark != FAIL for finding in findings)


# --- the cluster ------------------------------------------------------------------------------------------

def check_cluster(settings: Settings) -> list[Finding]:
    try:
        k = cluster.connect(settings)
        with k:
            version = k.version()
    except UserError as error:
        return [Finding(FAIL, "cluster", problem) for problem in error.problems]
    found = [Finding(OK, "cluster", f"context '{k.context}' ({k.server}) answers: Kubernetes {version}")]
    with k:
        namespace = _readable(lambda: k.get("v1", "Namespace", settings.namespace))
        objects = manifests.render(settings, image="")
        found += check_rights(k, rights_needed(objects, settings.namespace,
                                               namespace_exists=namespace not in (None, UNKNOWN)))
        found.append(namespace_finding(settings.namespace, namespace))
        if settings.mode == "sqlite" or settings.embedded_redis:
            found.append(storage_finding(_readable(lambda: k.objects("storage.k8s.io/v1", "StorageClass",
                                                                         label_selector=None)[0]),
                                         redis=settings.embedded_redis))
        if settings.tls_secret:
            found.append(tls_finding(settings, namespace, _readable(
                lambda: k.get("v1", "Secret", settings.tls_secret))))
        found.append(route_finding(k, settings))
    return found


def route_finding(k: cluster.Cluster, settings: Settings) -> Finding:
    """The IngressClass or the Gateway the route hangs on: the kit never creates either."""
    if settings.route == "none":
        return Finding(OK, "ROUTE", "none: no Ingress or HTTPRoute; open the UI with `inv ui`")
    if settings.route == "ingress":
        name = settings.ingress_class
        found = _readable(lambda: k.get("networking.k8s.io/v1", "IngressClass", name))
        if found is UNKNOWN:
            return Finding(UNKNOWN, "INGRESS_CLASS",
                           f"cannot read IngressClass {name} with these rights (cluster-scoped)")
        if found is None:
            return Finding(FAIL, "INGRESS_CLASS", f"no IngressClass {name} in this cluster, so no controller would "
                                                  "serve the Ingress; `kubectl get ingressclass` lists them: set "
                                                  "INGRESS_CLASS, or ROUTE=gateway or none")
        return Finding(OK, "INGRESS_CLASS", f"IngressClass {name} ({found.get('spec', {}).get('controller', '?')})")
    if not k.serves(kinds.BY_NAME["HTTPRoute"]):
        return Finding(FAIL, "ROUTE", f"gateway, but this cluster does not serve Gateway API "
                                      f"({kinds.BY_NAME['HTTPRoute'].api_version}); install it, or set ROUTE=ingress")
    name, namespace = settings.gateway_name, settings.gateway_parent_namespace
    gateway = _readable(lambda: k.get(kinds.BY_NAME["HTTPRoute"].api_version, "Gateway", name, namespace))
    if gateway is UNKNOWN:
        return Finding(UNKNOWN, "GATEWAY_NAME", f"cannot read Gateway {namespace}/{name} with these rights")
    if gateway is None:
        return Finding(FAIL, "GATEWAY_NAME", f"no Gateway {name} in namespace {namespace}; `kubectl get gateways -A` "
                                             "lists them: set GATEWAY_NAME and GATEWAY_NAMESPACE")
    listeners = [listener["name"] for listener in gateway.get("spec", {}).get("listeners", [])]
    if settings.gateway_listener and settings.gateway_listener not in listeners:
        return Finding(FAIL, "GATEWAY_LISTENER", f"Gateway {namespace}/{name} has no listener "
                                                 f"{settings.gateway_listener}; it has: {', '.join(listeners)}")
    return Finding(OK, "GATEWAY_NAME", f"Gateway {namespace}/{name} ({', '.join(listeners)})")


def check_rights(k: cluster.Cluster, needed: list[Right]) -> list[Finding]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda right: (right, k.may(right.verb, right.resource, group=right.group,
                                                            subresource=right.subresource, name=right.name,
                                                            namespaced=not right.cluster_scoped)), needed))
    denied = [right for right, allowed in answers if not allowed]
    if not denied:
        return [Finding(OK, "rights", f"all {len(needed)} verbs a rollout uses are allowed in namespace "
                                      f"{k.namespace}")]
    return [Finding(FAIL, "rights", f"may not {right.text} in namespace {k.namespace}; ask a cluster admin for a "
                                    "Role allowing it (README: Troubleshooting, 403)") for right in denied]


def namespace_finding(name: str, namespace) -> Finding:
    if namespace is UNKNOWN:
        return Finding(UNKNOWN, "namespace", f"cannot read namespace {name} with these rights")
    if namespace is None:
        return Finding(LATER, "namespace", f"{name} does not exist yet; the first rollout creates it, enforcing the "
                                           "restricted Pod Security Standard")
    level = namespace["metadata"].get("labels", {}).get(ENFORCE)
    if level == "restricted":
        return Finding(OK, "namespace", f"{name} enforces the restricted Pod Security Standard")
    return Finding(OK, "namespace", f"{name} exists (enforce: {level or 'none'}); the rollout labels it restricted")


def storage_finding(classes, redis: bool = False) -> Finding:
    """A default StorageClass for the claim a rollout makes: the SQLite volume's, or the embedded Redis's."""
    volume, claim, fix = (("the embedded Redis's volume", "the embedded Redis's claim", "use a Redis of your own "
                           "(REDIS_URL)") if redis else
                          ("the SQLite volume", "the server's SQLite claim", "use PostgreSQL (DATABASE_URL)"))
    if classes is UNKNOWN:
        return Finding(UNKNOWN, "storage", "cannot list StorageClasses with these rights (they are cluster-scoped); "
                                           f"{volume} needs a default one")
    default = [item["metadata"]["name"] for item in classes
               if item["metadata"].get("annotations", {}).get(DEFAULT_STORAGE_CLASS) == "true"]
    if default:
        return Finding(OK, "storage", f"default StorageClass {default[0]} for {volume}")
    return Finding(FAIL, "storage", f"no default StorageClass, so {claim} would stay Pending; ask an admin to mark "
                                    f"one default, or {fix}")


def tls_finding(settings: Settings, namespace, secret) -> Finding:
    name = settings.tls_secret
    if secret is UNKNOWN:
        return Finding(UNKNOWN, "TLS_SECRET", f"cannot read Secret {name} with these rights")
    if secret is None:
        first = f"kubectl create namespace {settings.namespace} && " if namespace is None else ""
        return Finding(FAIL, "TLS_SECRET", f"no Secret {name} in namespace {settings.namespace}; create it: {first}"
                                           f"kubectl -n {settings.namespace} create secret tls {name} "
                                           "--cert=… --key=…")
    if secret.get("type") != "kubernetes.io/tls":
        return Finding(FAIL, "TLS_SECRET", f"Secret {name} is of type {secret.get('type')}, not kubernetes.io/tls; "
                                           "recreate it with `kubectl create secret tls`")
    return Finding(OK, "TLS_SECRET", f"Secret {name} holds a certificate")


def _readable(read: Callable):
    """What read() returns, or UNKNOWN when these credentials may not read it (403)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return read()
    except ApiException as error:
        if error.status == 403:
            return UNKNOWN
        raise


# --- the registry -----------------------------------------------------------------------------------------

def check_registry(settings: Settings) -> list[Finding]:
    try:
        tag = release.commit_tag()
    except UserError:
        tag = None
    try:
        state = registry.state(settings, tag)
    except UserError as error:
        return [Finding(FAIL, "registry", problem) for problem in error.problems]
    if state.daemon_problem:
        return [Finding(UNKNOWN, "registry", f"not asked: {state.daemon_problem}")]
    found = [Finding(OK, "registry", f"{settings.registry} answers"
                                     + (f", login as {settings.registry_user} accepted" if state.logged_in else ""))]
    if tag is None:
        found.append(Finding(UNKNOWN, "image", "not a git checkout, so there is no tag for this commit to look for"))
    elif state.digest:
        found.append(Finding(OK, "image", f"{settings.image_repository}:{tag} is pushed ({state.digest[:19]})"))
    else:
        found.append(Finding(LATER, "image", f"{settings.image_repository}:{tag} is not pushed yet: `inv build push`"))
    return found


# --- Prefect -------------------------------------------------------------------------------------------------

def check_prefect(settings: Settings) -> list[Finding]:
    """The API answers and takes the auth string of .env: through the public URL, or a port-forward as the
    kit's own tasks reach it."""
    import httpx

    from kit import access

    ways: list[str] = []
    try:
        with access.prefect_url(settings, out=ways.append) as url:
            answer = httpx.get(f"{url}/admin/version", auth=(settings.login_user, settings.login_password),
                               timeout=ANSWER_TIMEOUT)
    except access.NoServerPod:
        return [Finding(LATER, "Prefect API", "no server running yet (fine before a first rollout)")]
    except UserError as error:
        return [Finding(FAIL, "Prefect API", error.problems[0])]
    except httpx.HTTPError as error:
        return [Finding(FAIL, "Prefect API", f"{ways[0].removeprefix('prefect: ')} does not answer ({error}); "
                                             "`inv status` shows the server")]
    way = ways[0].removeprefix("prefect: ")
    if answer.status_code == 401:
        return [Finding(FAIL, "LOGIN_PASSWORD", f"{way} refuses the user and password of {settings.source} (401): "
                                                "the server runs with another auth string; roll them out "
                                                "(`inv rollout`)")]
    if answer.status_code != 200:
        return [Finding(FAIL, "Prefect API", f"{way} answers HTTP {answer.status_code} on /admin/version")]
    return [Finding(OK, "Prefect API", f"Prefect {answer.json()} at {way} takes the auth string")]


# --- the public host ------------------------------------------------------------------------------------------

def check_public_host(settings: Settings) -> list[Finding]:
    if not settings.has_route:
        return []  # no route: nobody reaches the server by that name
    host = settings.public_host
    addresses = _resolve(host)
    if addresses is None:
        return [Finding(LATER, "PUBLIC_HOST", f"{host} does not resolve (yet): until it does, open the UI with "
                                              "`inv ui`; ask for a DNS record pointing at your ingress controller "
                                              "or Gateway")]
    return [Finding(OK, "PUBLIC_HOST", f"{host} resolves to {', '.join(addresses)}")]


# --- Redis ----------------------------------------------------------------------------------------------------

def check_redis(settings: Settings) -> list[Finding]:
    """REDIS_URL's hosts resolve from here; a name only the cluster's DNS knows is fine (·)."""
    if settings.mode != "scaled" or not settings.redis_url:
        return []
    found = []
    for host in redis_hosts(settings.redis_url):
        addresses = _resolve(host)
        found.append(Finding(OK, "REDIS_URL", f"{host} resolves to {', '.join(addresses)}") if addresses else
                     Finding(LATER, "REDIS_URL", f"{host} does not resolve from here; fine if only the cluster's DNS "
                                                 "knows it, else check the host in REDIS_URL"))
    return found


def _resolve(host: str) -> list[str] | None:
    """The addresses of a host name, or None when it does not resolve within ANSWER_TIMEOUT."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        lookup = pool.submit(socket.getaddrinfo, host, None)
        try:
            return sorted({info[4][0] for info in lookup.result(timeout=ANSWER_TIMEOUT)})
        except (OSError, TimeoutError):
            return None
