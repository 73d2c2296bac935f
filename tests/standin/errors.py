"""Refusals as a real API server words them: a Status body with code, reason, message and details.

Field errors follow k8s.io/apimachinery/pkg/util/validation/field (errors.go): `<field>: <Type>: <value>: <detail>`,
a value printed as Go prints it (`%q` for strings, `%#v` for structs and maps, which `go_map`, `go_strings` and
`label_selector` spell out). `invalid()` joins them as apierrors.NewInvalid does: one error as it is, several as
`[a, b]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Error type -> the StatusCause type a real server puts beside it (field.ErrorType).
CAUSE_TYPES = {
    "Not found": "FieldValueNotFound",
    "Required value": "FieldValueRequired",
    "Duplicate value": "FieldValueDuplicate",
    "Invalid value": "FieldValueInvalid",
    "Unsupported value": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Internal error": "InternalError",
}
# Types printed without their value (field.Error.ErrorBody).
_VALUELESS = ("Required value", "Forbidden", "Too long", "Internal error")
OMITTED = object()


class ApiError(Exception):
    """An answer other than success, carried as the Status body a real API server sends."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                **({"reason": self.reason} if self.reason else {}), "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class Go(str):
    """A value already spelled as Go's %#v spells it (a struct, a map, a slice)."""


def go_value(value) -> str:
    """How field.Error prints a bad value: %q for strings, plain for numbers and booleans, %#v for the rest."""
    if isinstance(value, Go):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return go_map(value)
    if isinstance(value, list):
        return go_strings(value)
    return str(value)


def go_map(values: dict | None) -> Go:
    if values is None:
        return Go("map[string]string(nil)")
    inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(values.items()))
    return Go(f"map[string]string{{{inner}}}")


def go_strings(values: list | None) -> Go:
    if values is None:
        return Go("[]string(nil)")
    return Go(f"[]string{{{', '.join(json.dumps(str(v)) for v in values)}}}")


def label_selector(selector: dict | None) -> Go:
    """%#v of a metav1.LabelSelector, as immutability errors print it."""
    selector = selector or {}
    expressions = selector.get("matchExpressions")
    if expressions is None:
        printed = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = ", ".join(f'v1.LabelSelectorRequirement{{Key:{json.dumps(e.get("key", ""))}, '
                          f'Operator:{json.dumps(e.get("operator", ""))}, Values:{go_strings(e.get("values"))}}}'
                          for e in expressions)
        printed = f"[]v1.LabelSelectorRequirement{{{items}}}"
    return Go(f"v1.LabelSelector{{MatchLabels:{go_map(selector.get('matchLabels'))}, MatchExpressions:{printed}}}")


@dataclass(frozen=True)
class FieldError:
    type: str
    field: str
    value: object = OMITTED
    detail: str = ""

    def body(self) -> str:
        if self.type in _VALUELESS or self.value is OMITTED:
            text = self.type
        else:
            text = f"{self.type}: {go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required value", field, detail=detail)


def not_supported(field: str, value, supported: list[str]) -> FieldError:
    return FieldError("Unsupported value", field, value, "supported values: " + ", ".join(f'"{s}"' for s in supported))


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail=detail)


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid, worded as apierrors.NewInvalid words it: `Kind.group "name" is invalid: <errors>`."""
    qualified = f"{kind}.{group}" if group else kind
    joined = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    causes = [{"reason": CAUSE_TYPES.get(e.type, "FieldValueInvalid"), "message": e.body(), "field": e.field}
              for e in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {joined}',
                    {"name": name, "group": group, "kind": kind, "causes": causes})


def not_found(resource: str, group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "group": group, "kind": plural})


def already_exists(resource: str, group: str, plural: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural})


def forbidden(resource: str, group: str, plural: str, name: str, why: str) -> ApiError:
    """403 as apierrors.NewForbidden words it: `<resource> "<name>" is forbidden: <why>` (no name: `<resource> is`)."""
    subject = f'{resource} "{name}"' if name else resource
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", {"name": name, "group": group, "kind": plural})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def internal(message: str) -> ApiError:
    """A plain Go error that reached the handler: 500 with an empty reason (StatusReasonUnknown), as for real."""
    return ApiError(500, "", message)


NO_RESOURCE = ApiError(404, "NotFound", "the server could not find the requested resource", {})
