"""The registry: the objects, and every rule of writing and deleting them.

Every create, update and apply, by a request or by a controller helper, goes through `commit`: prepare the
object as the real registry strategy does, default it, take ownership (409 on an apply conflict), run mutating
admission, validate (422), run validating admission (403), store it. Every deletion goes through
`remove_object`: finalizers hold an object, the garbage collector takes what it owns, the claim protection
controller lets a claim go once no pod uses it.
"""

from __future__ import annotations

import base64
import copy
import uuid

from tests.standin import admission, controllers, defaults, schema, validation
from tests.standin.apply import managed_fields, now, owners_after_update, shape, take_field
from tests.standin.errors import bad_request, forbidden, internal, invalid, not_found
from tests.standin.fields import duplicates, parse_path, path_text, smd_path
from tests.standin.kinds import BY_KIND, Kind, served
from tests.standin.logs import PodLogs
from tests.standin.store import Store, key_of

# Metadata only the server sets; a write keeps the stored values.
_SERVER_METADATA = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp",
                    "deletionGracePeriodSeconds")


def _without_managed_fields(obj: dict) -> dict:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


class Registry:
    """The stored objects and the write paths of a real API server's registry."""

    def __init__(self, version: str):
        self.version = version
        self.store = Store()
        self.logs = PodLogs(self.store)
        self.rbac = admission.Rbac()
        self.replica_sets: dict[str, str] = {}  # ReplicaSet uid -> its Deployment's uid, for garbage collection
        self.gateway_api = False
        self._next_ip = 10

    def serve_gateway_api(self, installed: bool = True) -> None:
        """Play the Gateway API CRDs being installed (or removed): discovery, paths and validation follow."""
        with self.store.cond:
            self.gateway_api = installed
            if not installed:
                for key in [k for k in self.store.objects if BY_KIND[k[0]].crd]:
                    self.store.remove(BY_KIND[key[0]], key)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return served(self.gateway_api)

    def system_write(self, obj: dict, manager: str = controllers.CONTROLLER_MANAGER) -> dict:
        """Create or update obj as a controller does (status included), through the full write path."""
        kind = BY_KIND[obj["kind"]]
        body = copy.deepcopy(obj)
        with self.store.cond:
            self.check_scope(kind, body["metadata"].get("namespace"), None, body)
            key = key_of(kind, body["metadata"].get("namespace"), body["metadata"]["name"])
            return self.commit(kind, key, body, manager, keep_status=True)[1]

    def remove_object(self, key: tuple, propagation: str = "Background") -> dict:
        """DELETE's effect: removed at once, or marked for deletion while finalizers (or Foreground) hold it."""
        kind = BY_KIND[key[0]]
        stored = self.store.get(key)
        if kind.kind == "Namespace":
            # The real namespace controller empties a Terminating namespace in the background; here it is at once.
            for inner in [k for k in self.store.objects if k[1] == key[2] and BY_KIND[k[0]].namespaced]:
                self.store.remove(BY_KIND[inner[0]], inner)
                if inner[0] == "Pod":
                    self.logs.forget(inner[1], inner[2])
            return self.store.remove(kind, key)
        obj = copy.deepcopy(stored.obj)
        meta = obj["metadata"]
        if propagation == "Foreground" or meta.get("finalizers"):
            meta.setdefault("deletionTimestamp", now())
            meta.setdefault("deletionGracePeriodSeconds", 0)
            if propagation == "Foreground" and "foregroundDeletion" not in (meta.get("finalizers") or []):
                meta["finalizers"] = [*meta.get("finalizers", []), "foregroundDeletion"]
            marked = self.store.write(kind, key, obj, stored.owners)
            if propagation == "Foreground":
                self._collect(obj, "Foreground")
                self.drop_finalizer(key, "foregroundDeletion")
            if kind.kind == "PersistentVolumeClaim":
                controllers.release_claims(self, key[1])
            return marked
        last = self.store.remove(kind, key)
        self._removed(kind, key, obj, propagation)
        return last

    def drop_finalizer(self, key: tuple, finalizer: str) -> None:
        """A controller done with its finalizer removes it; the last one gone, a deleted object goes too."""
        stored = self.store.get(key)
        if stored is None:
            return
        obj = copy.deepcopy(stored.obj)
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if not obj["metadata"]["finalizers"]:
            del obj["metadata"]["finalizers"]
            if obj["metadata"].get("deletionTimestamp"):
                self.store.remove(BY_KIND[key[0]], key)
                self._removed(BY_KIND[key[0]], key, obj, "Background")
                return
        self.store.write(BY_KIND[key[0]], key, obj, stored.owners)

    def _removed(self, kind: Kind, key: tuple, obj: dict, propagation: str) -> None:
        if kind.kind == "Pod":
            self.logs.forget(key[1], key[2])
            controllers.release_claims(self, key[1])
        self._collect(obj, propagation)

    def _collect(self, owner: dict, propagation: str) -> None:
        """The garbage collector: dependents go with their owner, or lose their ownerReference (Orphan)."""
        direct, through_sets = controllers.dependents(self, owner)
        uid = owner["metadata"].get("uid")
        if propagation == "Orphan":
            for key in direct:
                stored = self.store.get(key)
                obj = copy.deepcopy(stored.obj)
                obj["metadata"]["ownerReferences"] = [r for r in obj["metadata"]["ownerReferences"]
                                                      if r.get("uid") != uid]
                if not obj["metadata"]["ownerReferences"]:
                    del obj["metadata"]["ownerReferences"]
                self.store.write(BY_KIND[key[0]], key, obj, stored.owners)
        else:
            for key in direct + through_sets:
                if self.store.get(key) is not None:
                    self.remove_object(key, propagation)
        for replica_set in [rs for rs, deployment in self.replica_sets.items() if deployment == uid]:
            del self.replica_sets[replica_set]

    def check_scope(self, kind: Kind, ns: str | None, name: str | None, body: dict) -> None:
        """The name and namespace a write may have: the URL's, in a namespace that exists and is not going."""
        meta = body.setdefault("metadata", {})
        if name is not None and meta.get("name") != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                              f"({name})")
        if not kind.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace", ns) != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = ns
        namespace = self.store.get(("Namespace", "", ns))
        if namespace is None:
            namespaces = BY_KIND["Namespace"]
            raise not_found(namespaces.resource, "", namespaces.plural, ns)
        terminating = namespace.obj["metadata"].get("deletionTimestamp")
        if terminating and key_of(kind, ns, meta.get("name")) not in self.store.objects:
            # The NamespaceLifecycle admission plugin: nothing new in a namespace that is being deleted.
            raise forbidden(kind.resource, kind.group, kind.plural, meta.get("name") or "",
                            f"unable to create new content in namespace {ns} because it is being terminated")

    def root(self, kind: Kind) -> schema.Node:
        return schema.root(schema.schema_version(self.version), kind)

    def prune_unknown(self, kind: Kind, body: dict, query: dict) -> list[str]:
        """Unknown fields of a create, replace or patch: dropped with a warning (the default, Warn), dropped
        (Ignore), or refused (Strict), as the decoder does for each fieldValidation."""
        directive = query.get("fieldValidation", "Warn")
        found = schema.unknown_fields(body, self.root(kind))
        texts = [f'unknown field "{schema.json_path(path)}"' for path, _, _ in found]
        if found and directive == "Strict":
            raise bad_request("strict decoding error: " + ", ".join(texts))
        for _, parent, key in found:
            parent.pop(key, None)
        return texts if directive == "Warn" else []

    def typed_patch(self, kind: Kind, ns: str | None, name: str, body: dict) -> None:
        """What structured-merge-diff cannot turn into a typed object fails the apply, as a plain 500."""
        node = self.root(kind)
        problems = [f"{path_text(smd_path(body, path, node))}: field not declared in schema"
                    for path, _, _ in schema.unknown_fields(body, node)]
        problems += [f"{path_text(path)}: duplicate entries for key {path_text((key,))}"
                     for path, key in duplicates(body, node)]
        if problems:
            listed = problems[0] if len(problems) == 1 else "errors:\n  " + "\n  ".join(problems)
            raise internal(f"failed to create typed patch object ({ns or ''}/{name}; {kind.group}/{kind.version}, "
                           f"Kind={kind.kind}): {listed}")

    def commit(self, kind: Kind, key: tuple, obj: dict, manager: str, *, dry_run: bool = False,
               keep_status: bool = False, trusted: bool = False, owners_of=None) -> tuple[int, dict, list[str]]:
        """The registry's write path: prepare, default, take ownership, admit, validate, store."""
        stored = self.store.get(key)
        old = stored.obj if stored else None
        meta = obj.setdefault("metadata", {})
        meta.pop("managedFields", None)
        if not keep_status:
            obj.pop("status", None)
            if old is not None and "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
        for field in _SERVER_METADATA:
            if not (trusted and field in ("deletionTimestamp", "deletionGracePeriodSeconds")):
                meta.pop(field, None)
            if old is not None and field in old["metadata"]:
                meta[field] = old["metadata"][field]
        if kind.kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for name, value in obj.pop("stringData").items():
                data[name] = base64.b64encode(value.encode()).decode()
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        elif kind.kind == "Service":
            self._keep_cluster_ip(old, obj)
        defaults.default(kind, obj, self.version)
        if old is None and kind.kind == "Job":
            defaults.job_selector(obj)
        if old is None and kind.kind == "Service":
            defaults.cluster_ip(obj, self._allocate_ip)
        if old is not None and obj.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"]["generation"] + 1
        if owners_of is not None:
            owners = owners_of(obj)
        else:
            owners = owners_after_update(kind, old, obj, stored.owners if stored else {}, manager, self.root(kind))
        if old is None:
            self._mutating_admission(kind, obj)
        errors = schema.schema_errors(schema.schema_version(self.version), kind, obj)
        errors += validation.validate(kind, obj, creating=old is None)
        if old is not None:
            errors += validation.validate_update(kind, old, obj)
        if errors:
            raise invalid(kind.group, kind.kind, meta.get("name", ""), errors)
        warnings = []
        if old is None or (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            refusal, warnings = admission.check_pod_security(kind, obj, self._namespace_of(kind, obj))
            if refusal and old is None:
                raise forbidden(kind.resource, kind.group, kind.plural, meta["name"], refusal)
        return (*self._store(kind, key, stored, obj, owners, dry_run), warnings)

    def _store(self, kind: Kind, key: tuple, stored, obj: dict, owners: dict, dry_run: bool) -> tuple[int, dict]:
        meta = obj["metadata"]
        if owners:
            meta["managedFields"] = managed_fields(owners)
        if stored is not None and _without_managed_fields(stored.obj) == _without_managed_fields(obj) and (
                shape(owners) == shape(stored.owners)):
            return 200, copy.deepcopy(stored.obj)  # a no-op: same resourceVersion, no watch event
        code = 200 if stored else 201
        if dry_run:
            return code, copy.deepcopy(obj)
        if stored is not None and meta.get("deletionTimestamp") and stored.obj["metadata"].get("finalizers") and (
                not meta.get("finalizers")):
            # The last finalizer went: the object being deleted goes.
            last = self.store.remove(kind, key)
            self._removed(kind, key, obj, "Background")
            return code, last
        result = self.store.write(kind, key, obj, owners)
        if stored is None and kind.kind == "Namespace" and not meta.get("deletionTimestamp"):
            for inner in controllers.namespace_contents(meta["name"]):
                self.system_write(inner)
        return code, result

    def _mutating_admission(self, kind: Kind, obj: dict) -> None:
        if kind.kind == "PersistentVolumeClaim":
            admission.protect_claim(obj)
        if kind.kind == "Pod":
            ns = obj["metadata"]["namespace"]
            name = (obj.get("spec") or {}).get("serviceAccountName") or (obj.get("spec") or {}).get(
                "serviceAccount") or "default"
            account = self.store.get(("ServiceAccount", ns, name))
            refusal = admission.service_account(obj, account.obj if account else None)
            if refusal:
                raise forbidden(kind.resource, kind.group, kind.plural, obj["metadata"]["name"], refusal)

    def _namespace_of(self, kind: Kind, obj: dict) -> dict | None:
        if not kind.namespaced:
            return None
        stored = self.store.get(("Namespace", "", obj["metadata"]["namespace"]))
        return stored.obj if stored else None

    def _keep_cluster_ip(self, old: dict, new: dict) -> None:
        """The Service REST update keeps the allocated address a writer leaves out (patchAllocatedValues)."""
        old_spec, new_spec = old.get("spec") or {}, new.setdefault("spec", {})
        if "ExternalName" in (old_spec.get("type"), new_spec.get("type")):
            return
        if not new_spec.get("clusterIP") and not new_spec.get("clusterIPs"):
            for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if field in old_spec:
                    new_spec[field] = copy.deepcopy(old_spec[field])
        elif new_spec.get("clusterIP") and new_spec.get("clusterIPs") in (None, old_spec.get("clusterIPs")):
            new_spec["clusterIPs"] = [new_spec["clusterIP"]]

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return f"10.96.{self._next_ip // 250}.{self._next_ip % 250}"

    def set_status(self, kind: str, ns: str | None, name: str, status: dict) -> dict:
        with self.store.cond:
            key = key_of(BY_KIND[kind], ns, name)
            stored = self.store.get(key)
            obj = copy.deepcopy(stored.obj)
            obj["status"] = copy.deepcopy(status)
            return self.store.write(BY_KIND[kind], key, obj, dict(stored.owners))

    def record_owner(self, kind: str, ns: str | None, name: str, field_path: str, manager: str) -> None:
        """A write by `manager` (an Update manager) of the field at field_path, as conflicts print it."""
        with self.store.cond:
            key = key_of(BY_KIND[kind], ns, name)
            stored = self.store.get(key)
            owners = take_field(BY_KIND[kind], stored.owners, parse_path(field_path), manager)
            obj = copy.deepcopy(stored.obj)
            obj["metadata"]["managedFields"] = managed_fields(owners)
            self.store.write(BY_KIND[kind], key, obj, owners)

    def event(self, obj: dict, reason: str, message: str, type: str = "Warning",
              manager: str = controllers.CONTROLLER_MANAGER) -> dict:
        meta, stamp = obj["metadata"], now()
        return self.system_write({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": meta["name"],
                               "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "fakeapi"}, "reportingComponent": "fakeapi",
        }, manager)
