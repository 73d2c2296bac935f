"""The changes Kubernetes will not make in place, found before anything is applied.

A live object whose immutable field the render changes would make the apply fail midway (after the Secrets
and Services went through): the rollout asks this module first, and either refuses with the field named or,
with --recreate, deletes the workload (its pods and claims orphaned, so the data volume stays) and applies
it afresh. The rules are the API server's validation (pkg/apis/*/validation in kubernetes/kubernetes).
"""

from __future__ import annotations

import json

# StatefulSet: the whole spec but these (ValidateStatefulSetUpdate clears them, then compares the rest).
STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                       "minReadySeconds")
IMMUTABLE = {
    "Deployment": (("spec", "selector"),),
    "Job": (("spec", "selector"), ("spec", "template")),
    "Service": (("spec", "clusterIP"), ("spec", "clusterIPs")),
    "RoleBinding": (("roleRef",),),
}


def immutable_paths(live: dict, rendered: dict, manager: str) -> list[tuple[str, ...]]:
    if rendered["kind"] != "StatefulSet":
        return list(IMMUTABLE.get(rendered["kind"], ()))
    # What the render sets, and what the kit set before and now leaves out (an apply would remove it).
    keys = set(rendered.get("spec", {})) | owned_spec_keys(live, manager)
    return [("spec", key) for key in sorted(keys) if key not in STATEFULSET_MUTABLE]


def owned_spec_keys(live: dict, manager: str) -> set[str]:
    """The keys of spec that `manager` applied, read from the live object's managedFields."""
    owned = set()
    for entry in live.get("metadata", {}).get("managedFields", []):
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            owned |= {key[2:] for key in entry.get("fieldsV1", {}).get("f:spec", {}) if key.startswith("f:")}
    return owned


def refused_changes(live: dict, rendered: dict, manager: str) -> list[str]:
    """The immutable fields where the rendered object asks for another value than the live one holds.

    Only what the render sets, or what `manager` set before, is compared: the live object also holds the
    server's defaults, which a render that never set a field does not change.
    """
    found = []
    owned = owned_spec_keys(live, manager)
    for path in immutable_paths(live, rendered, manager):
        wanted, current = _at(rendered, path), _at(live, path)
        if wanted is None and not (path[0] == "spec" and path[-1] in owned):
            continue  # never the kit's: whatever the server holds there stays
        found += [f"{'.'.join(path)}{where}: {_short(old)} -> {_short(new)}"
                  for where, old, new in _differences(current, wanted)]
    return found


def _differences(current, wanted, where: str = ""):
    """(where, live, rendered) for each value the render sets that the live object holds otherwise."""
    if isinstance(wanted, dict) and isinstance(current, dict):
        for key, value in wanted.items():
            yield from _differences(current.get(key), value, f"{where}.{key}")
    elif isinstance(wanted, list) and isinstance(current, list) and _named(wanted) and _named(current):
        # Lists of named entries (claim templates): matched by name, as the server matches them.
        live = {entry["metadata"]["name"]: entry for entry in current}
        for entry in wanted:
            name = entry["metadata"]["name"]
            if name not in live:
                yield f'{where}[name="{name}"]', None, entry
            else:
                yield from _differences(live[name], entry, f'{where}[name="{name}"]')
        for name in live.keys() - {entry["metadata"]["name"] for entry in wanted}:
            yield f'{where}[name="{name}"]', live[name], None
    elif current != wanted:
        yield where, current, wanted


def _named(entries: list) -> bool:
    return all(isinstance(entry, dict) and "name" in entry.get("metadata", {}) for entry in entries)


def _at(obj: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _short(value, limit: int = 60) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
