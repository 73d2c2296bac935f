"""Field sets, merges and comparisons as structured-merge-diff makes them for server-side apply.

A path is a tuple of elements: ("f", name) for a field, ("k", ((key, value), ...)) for an entry of a list-map
(keys sorted by name), ("v", value) for an entry of a set, ("i", index) for an entry of an atomic list. A field
set holds what sigs.k8s.io/structured-merge-diff's ToFieldSet holds: every leaf (a scalar, an empty map, an
atomic list or map), every list entry, and every key of a map whose keys are data (labels). `fields_v1` encodes
a set as managedFields do (`f:`, `k:{"name":"worker"}`, `v:"x"`, `.` for an entry that also has fields);
`path_text` prints a path as conflict messages do (`.spec.template.spec.containers[name="worker"].image`).
"""

from __future__ import annotations

import copy
import json
import re

from tests.standin.schema import ANY, Node

# The only list-map key with a default that the schemas here do not carry: a port's protocol (TCP), which the
# real server's OpenAPI v3 declares and structured-merge-diff fills in before keying the entry.
KEY_DEFAULTS = {"protocol": "TCP"}


def element(item, index: int, node: Node) -> tuple:
    kind = node.list_type
    if kind == "map" and isinstance(item, dict):
        return "k", tuple((key, item.get(key, KEY_DEFAULTS.get(key))) for key in sorted(node.keys))
    if kind == "set":
        return "v", item
    return "i", index


def members(value, node: Node, path: tuple = (), out: dict | None = None) -> dict:
    """Every path of value's field set, each with the value found there."""
    out = {} if out is None else out
    if isinstance(value, dict):
        if path and (node.atomic or not value):
            out[path] = value
            return out
        for key, child_value in value.items():
            child_path = path + (("f", key),)
            members(child_value, node.child(key) or ANY, child_path, out)
            if node.is_map or node is ANY or child_value is None:
                out[child_path] = child_value
        return out
    if isinstance(value, list):
        kind = node.list_type
        if kind == "atomic":
            out[path] = value
            return out
        for index, item in enumerate(value):
            item_path = path + (element(item, index, node),)
            out[item_path] = item
            if kind == "map":
                members(item, node.items, item_path, out)
        return out
    out[path] = value
    return out


def field_set(value, node: Node) -> frozenset:
    return frozenset(members(value, node))


def duplicates(value, node: Node, path: tuple = ()) -> list[tuple[tuple, tuple]]:
    """List-map and set entries that share a key: (path of the list, the repeated element)."""
    found = []
    if isinstance(value, dict) and not node.atomic:
        for key, child in value.items():
            found += duplicates(child, node.child(key) or ANY, path + (("f", key),))
    elif isinstance(value, list) and node.list_type != "atomic":
        seen = set()
        for index, item in enumerate(value):
            key = element(item, index, node)
            if key in seen:
                found.append((path, key))
            seen.add(key)
            if node.list_type == "map":
                found += duplicates(item, node.items, path + (key,))
    return found


def merge(live, config, node: Node):
    """config merged into live: maps field by field, list-maps and sets entry by entry, everything else replaced."""
    if isinstance(config, dict) and isinstance(live, dict) and not node.atomic:
        out = dict(live)
        for key, value in config.items():
            if value is None:
                out.pop(key, None)
            elif key in live:
                out[key] = merge(live[key], value, node.child(key) or ANY)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list) and node.list_type in ("map", "set"):
        return _merge_list(live, config, node)
    return copy.deepcopy(config)


def _merge_list(lhs: list, rhs: list, node: Node) -> list:
    """The entry order structured-merge-diff's merging walker gives: both lists' orders kept where they agree."""
    left = [(element(item, i, node), item) for i, item in enumerate(lhs)]
    right = [(element(item, i, node), item) for i, item in enumerate(rhs)]
    seen_left, seen_right = dict(left), dict(right)
    shared = [pe for pe, _ in right if pe in seen_left]
    next_shared = shared.pop(0) if shared else None
    out, merged = [], set()

    def combined(pe):
        if node.list_type == "set" or pe not in seen_left:
            return copy.deepcopy(seen_right[pe])
        return merge(seen_left[pe], seen_right[pe], node.items)

    li = ri = 0
    while li < len(left) or ri < len(right):
        if li < len(left) and ri < len(right):
            pe = left[li][0]
            if pe == right[ri][0]:
                merged.add(pe)
                out.append(combined(pe))
                li, ri = li + 1, ri + 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in seen_right and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(left):
            pe = left[li][0]
            if pe not in seen_right:
                out.append(copy.deepcopy(left[li][1]))
                li += 1
                continue
            if pe in merged:
                li += 1
                continue
        if ri < len(right):
            pe = right[ri][0]
            merged.add(pe)
            out.append(combined(pe))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


def remove(obj: dict, paths, node: Node) -> dict:
    """A copy of obj without the members at paths (an entry goes whole), nor the maps and lists that left empty."""
    result = copy.deepcopy(obj)
    gone: set[tuple] = set()
    for path in sorted(paths, key=len):
        if not any(path[:i] in gone for i in range(1, len(path))):  # under a removed entry: already gone
            _remove(result, path, node)
            gone.add(path)
    return result


def _remove(value, path: tuple, node: Node) -> None:
    (kind, name), rest = path[0], path[1:]
    if kind == "f" and isinstance(value, dict) and name in value:
        if not rest:
            del value[name]
            return
        child = value[name]
        _remove(child, rest, node.child(name) or ANY)
        if child in ({}, []):
            del value[name]
    elif kind in ("k", "v") and isinstance(value, list):
        for index, item in enumerate(value):
            if element(item, index, node) == path[0]:
                if rest:
                    _remove(item, rest, node.items)
                else:
                    del value[index]
                return


def compare(old: dict, new: dict, node: Node) -> tuple[frozenset, frozenset]:
    """(the paths added or whose leaf value changed, the paths removed) from old to new."""
    before, after = members(old, node), members(new, node)
    parents = {path[:i] for path in after for i in range(1, len(path))}
    changed = {path for path, value in after.items()
               if path not in before or (path not in parents and before[path] != value)}
    return frozenset(changed), frozenset(before.keys() - after.keys())


def element_text(e: tuple) -> str:
    kind, value = e
    if kind == "f":
        return f"f:{value}"
    if kind == "k":
        return "k:" + json.dumps(dict(value), separators=(",", ":"))
    if kind == "v":
        return "v:" + json.dumps(value, separators=(",", ":"))
    return f"i:{value}"


def fields_v1(paths) -> dict:
    """A field set as managedFields encode it (FieldsV1)."""
    tree: dict = {}
    for path in paths:
        node = tree
        for e in path:
            node = node.setdefault(element_text(e), {})
    for path in paths:
        node = tree
        for e in path:
            node = node[element_text(e)]
        if node:
            node["."] = {}
    return _sorted(tree)


def _sorted(tree: dict) -> dict:
    order = {".": 0, "f": 1, "k": 2, "v": 3, "i": 4}
    return {key: _sorted(tree[key]) for key in sorted(tree, key=lambda k: (order[k[0]], k))}


def path_text(path: tuple) -> str:
    """A path as structured-merge-diff prints it: .spec.containers[name="worker"].image, .finalizers[="x"]."""
    text = ""
    for kind, value in path:
        if kind == "f":
            text += f".{value}"
        elif kind == "k":
            text += "[" + ",".join(f"{key}={json.dumps(v)}" for key, v in value) + "]"
        elif kind == "v":
            text += f"[={json.dumps(value)}]"
        else:
            text += f"[{value}]"
    return text


_PATH_PART = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")


def parse_path(text: str) -> tuple:
    """path_text's inverse, for field names without dots: `.spec.containers[name="worker"].image`."""
    path, position = [], 0
    for match in _PATH_PART.finditer(text):
        if match.start() != position:
            raise ValueError(f"not a field path: {text!r}")
        position = match.end()
        field, bracket = match.groups()
        if field is not None:
            path.append(("f", field))
        elif bracket.startswith("="):
            path.append(("v", json.loads(bracket[1:])))
        elif bracket.isdigit():
            path.append(("i", int(bracket)))
        else:
            pairs = [part.split("=", 1) for part in re.split(r",(?=[A-Za-z]+=)", bracket)]
            path.append(("k", tuple(sorted((key, json.loads(value)) for key, value in pairs))))
    if position != len(text):
        raise ValueError(f"not a field path: {text!r}")
    return tuple(path)


def smd_path(obj, parts: tuple, node: Node) -> tuple:
    """The path of JSON parts (spec, containers, 0, image) as structured-merge-diff names it."""
    path = []
    for part in parts:
        if isinstance(part, int):
            path.append(element(obj[part], part, node))
            obj, node = obj[part], node.items
        else:
            path.append(("f", part))
            obj, node = obj.get(part) if isinstance(obj, dict) else None, node.child(part) or ANY
    return tuple(path)
