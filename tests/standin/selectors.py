"""Label and field selectors, in the syntax and with the refusals of the real server."""

from __future__ import annotations

import re

from tests.standin.errors import bad_request
from tests.standin.kinds import COMMON_FIELD_LABELS, Kind

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_outside_parentheses(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def label_matcher(selector: str):
    """A predicate on a labels dict, for the label selector syntax of the real server (equality and sets)."""
    tests = []
    for requirement in filter(str.strip, _split_outside_parentheses(selector or "")):
        match = _REQUIREMENT.match(requirement)
        if not match or (match["neg"] and (match["op"] or match["setop"])):
            raise bad_request(f"unable to parse requirement: {requirement.strip()!r}")
        key, op, value = match["key"], match["op"], match["value"]
        if op in ("=", "=="):
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",")}
            inside = match["setop"] == "in"
            tests.append(lambda labels, k=key, vs=values, i=inside: (labels.get(k) in vs) == i)
        elif match["neg"]:
            tests.append(lambda labels, k=key: k not in labels)
        else:
            tests.append(lambda labels, k=key: k in labels)
    return lambda labels: all(test(labels or {}) for test in tests)


def selector_matcher(selector: dict | None):
    """A predicate on a labels dict for a metav1.LabelSelector object (matchLabels and matchExpressions)."""
    selector = selector or {}
    tests = [lambda labels, k=k, v=v: labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), set(expression.get("values") or [])
        tests.append({
            "In": lambda labels, k=key, vs=values: labels.get(k) in vs,
            "NotIn": lambda labels, k=key, vs=values: labels.get(k) not in vs,
            "Exists": lambda labels, k=key: k in labels,
            "DoesNotExist": lambda labels, k=key: k not in labels,
        }[operator])
    return lambda labels: all(test(labels or {}) for test in tests)


def field_matcher(kind: Kind, selector: str):
    """A predicate on an object for a field selector; fields the real server does not index answer 400."""
    tests = []
    for term in filter(str.strip, (selector or "").split(",")):
        match = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = match.groups()
        if path not in COMMON_FIELD_LABELS + kind.field_labels:
            raise bad_request(f"field label not supported: {path}")
        equal = op != "!="
        tests.append(lambda obj, p=path, v=value, e=equal: (str(dig(obj, p.split(".")) or "") == v) == e)
    return lambda obj: all(test(obj) for test in tests)


def dig(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj
