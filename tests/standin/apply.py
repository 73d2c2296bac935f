"""Field ownership: server-side apply and the managers of other writes, as the real field manager keeps them.

An apply merges the applied configuration into the live object (fields.merge), drops what the same manager
applied last time and no other manager owns, and conflicts (409) where it would change a field another manager
owns, per list entry (`.spec.template.spec.containers[name="worker"].image`). A create, replace or patch makes
its manager the owner of every field it changed, the defaulted ones included, as for real. Managers are keyed by
(manager, operation), as the real identity is; managedFields are sorted as the real server sorts them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

from tests.standin.errors import ApiError
from tests.standin.fields import compare, field_set, fields_v1, merge, path_text, remove
from tests.standin.kinds import Kind
from tests.standin.schema import Node

# Managers own what the user wrote, never what the server keeps (the real StripMetaManager strips the rest).
_OWNABLE_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")


@dataclass(frozen=True)
class Owner:
    operation: str  # "Apply" or "Update"
    api_version: str
    fields: frozenset
    time: str


Owners = dict[tuple[str, str], Owner]  # (manager, operation) -> what it owns


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ownable(obj: dict) -> dict:
    content = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _OWNABLE_METADATA}
    if metadata:
        content["metadata"] = metadata
    return content


def merged_config(live: dict, owners: Owners, config: dict, manager: str, node: Node) -> tuple[dict, frozenset]:
    """(live with config merged in and this manager's dropped fields pruned, the applied field set)."""
    applied = field_set(ownable(config), node)
    merged = merge(live, {k: v for k, v in config.items() if k != "status"}, node)
    previous = owners.get((manager, "Apply"))
    kept = applied.union(*(o.fields for key, o in owners.items() if key != (manager, "Apply")))
    # A path goes only when nobody keeps it or anything under it (structured-merge-diff adds owned items back).
    prefixes = {path[:i] for path in kept for i in range(1, len(path) + 1)}
    doomed = [path for path in (previous.fields if previous else ()) if path not in prefixes]
    return remove(merged, doomed, node), applied


def owners_after_apply(kind: Kind, name: str, live: dict, new: dict, owners: Owners, manager: str,
                       applied: frozenset, force: bool, node: Node) -> Owners:
    """The owners once the apply is done; ApiError 409 when it changes another manager's field without force."""
    changed, removed = compare(ownable(live), ownable(new), node)
    me = (manager, "Apply")
    conflicts = [(key, owner, path) for key, owner in sorted(owners.items()) if key != me
                 for path in sorted(owner.fields & changed, key=path_text)]
    if conflicts and not force:
        raise conflict_error(kind, name, conflicts)
    taken = {path for _, _, path in conflicts}
    result = {key: replace(owner, fields=owner.fields - taken - removed) for key, owner in owners.items() if key != me}
    result[me] = Owner("Apply", kind.api_version, applied, now())
    return {key: owner for key, owner in result.items() if owner.fields}


def owners_after_update(kind: Kind, old: dict | None, new: dict, owners: Owners, manager: str,
                        node: Node) -> Owners:
    """A create, replace or patch: the writer takes over every field it changed; everyone loses what went."""
    changed, removed = compare(ownable(old) if old else {}, ownable(new), node)
    me = (manager, "Update")
    result = {key: replace(owner, fields=owner.fields - changed - removed) for key, owner in owners.items()
              if key != me}
    mine = owners.get(me)
    fields = ((mine.fields if mine else frozenset()) - removed) | changed
    result[me] = Owner("Update", kind.api_version, fields, now())
    return {key: owner for key, owner in result.items() if owner.fields}


def take_field(kind: Kind, owners: Owners, path: tuple, manager: str) -> Owners:
    """owners after `manager` (an Update manager, e.g. kubectl-edit) wrote the field at path."""
    result = {key: replace(owner, fields=owner.fields - {path}) for key, owner in owners.items()}
    mine = result.get((manager, "Update"))
    result[(manager, "Update")] = Owner("Update", kind.api_version, (mine.fields if mine else frozenset()) | {path},
                                        now())
    return {key: owner for key, owner in result.items() if owner.fields}


def managed_fields(owners: Owners) -> list[dict]:
    """managedFields entries, in the real server's order: operation, time, manager (sortEncodedManagedFields)."""
    entries = [{"manager": manager, "operation": owner.operation, "apiVersion": owner.api_version,
                "time": owner.time, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(owner.fields)}
               for (manager, _), owner in owners.items() if owner.fields]
    return sorted(entries, key=lambda e: (e["operation"], e["time"], e["manager"], e["apiVersion"]))


def shape(owners: Owners) -> dict:
    """What decides whether managedFields changed (times aside, as the real no-op detection ignores them)."""
    return {key: owner.fields for key, owner in owners.items() if owner.fields}


def conflict_error(kind: Kind, name: str, conflicts: list) -> ApiError:
    """409 in the words of the real field manager (k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager)."""

    def who(key: tuple[str, str], owner: Owner) -> str:
        manager = key[0]
        return f'"{manager}" using {owner.api_version}' if owner.operation == "Update" else f'"{manager}"'

    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {who(k, o)}", "field": path_text(p)}
              for k, o, p in conflicts]
    if len(conflicts) == 1:
        key, owner, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {who(key, owner)}: {path_text(path)}"
    else:
        lines = []
        for key in sorted({k for k, _, _ in conflicts}):
            owner = next(o for k, o, _ in conflicts if k == key)
            lines.append(f"conflicts with {who(key, owner)}:")
            lines += [f"- {path_text(p)}" for k, _, p in conflicts if k == key]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"name": name, "group": kind.group, "kind": kind.plural,
                                                "causes": causes})
