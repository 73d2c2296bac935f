"""What a real API server refuses beyond the schema: names, labels, pod specs, selectors, immutable fields.

Each check mirrors the validation function the real server runs (pkg/apis/*/validation/validation.go and
k8s.io/apimachinery's content checks) and words its errors the same way; the caller turns them into one 422
(errors.invalid). The Gateway API kinds also get the CEL rules of their CRDs that the kit can trip over, as
checks of our own. Deliberately not checked, because the real server does not check it either: a StatefulSet's
pod template (its TODO in ValidatePodTemplateSpecForStatefulSet); that pod is refused when its controller
creates it (controllers.py).
"""

from __future__ import annotations

import re

from tests.standin.errors import FieldError, Go, forbidden_field, go_map, label_selector, not_supported, required
from tests.standin.kinds import Kind
from tests.standin.selectors import selector_matcher

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + "(\\." + _LABEL + ")*"
_DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
_KEY_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _KEY_NAME + ")?"
IMMUTABLE = "field is immutable"


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    """apimachinery's RegexError, double spaces included."""
    if not examples:
        return f"{message} (regex used for validation is '{pattern}')"
    listed = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {listed}regex used for validation is '{pattern}')"


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def dns1123_label(value: str) -> list[str]:
    found = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _full(_LABEL, value):
        found.append("must not contain dots" if _full(_SUBDOMAIN, value) else _regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
            "and end with an alphanumeric character", _LABEL, "my-name", "123-abc"))
    return found


def dns1123_subdomain(value: str) -> list[str]:
    found = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not _full(_SUBDOMAIN, value):
        found.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character", _SUBDOMAIN, "example.com"))
    return found


def dns1035_label(value: str) -> list[str]:
    found = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _full(_DNS1035, value):
        found.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character", _DNS1035, "my-name", "abc-123"))
    return found


def path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


_NAME_RULES = {"subdomain": dns1123_subdomain, "label": dns1123_label, "dns1035": dns1035_label, "path": path_segment}


def label_key(value: str) -> list[str]:
    """IsLabelKey (content/kube.go): an optional DNS subdomain prefix and '/', then a name part."""
    found = []
    parts = value.split("/")
    if len(parts) > 2:
        return ["a valid label key " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character", _KEY_NAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    name = parts[-1]
    if len(parts) == 2:
        found += (["prefix part must be non-empty"] if not parts[0]
                  else ["prefix part " + m for m in dns1123_subdomain(parts[0])])
    if not name:
        found.append("name part must be non-empty")
    elif len(name) > 63:
        found.append("name part must be no more than 63 characters")
    if not _full(_KEY_NAME, name):
        found.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character", _KEY_NAME, "MyName", "my.name", "123-abc"))
    return found


def label_value(value: str) -> list[str]:
    found = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _full(_LABEL_VALUE, value):
        found.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character", _LABEL_VALUE, "MyValue", "my_value", "12345"))
    return found


def port_name(value: str) -> list[str]:
    found = ["must be no more than 15 characters"] if len(value) > 15 else []
    if not _full("[-a-z0-9]+", value):
        found.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        found.append("must contain at least one letter (a-z)")
    if "--" in value:
        found.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        found.append("must not begin or end with a hyphen")
    return found


def _invalid_each(field: str, value, messages: list[str]) -> list[FieldError]:
    return [FieldError("Invalid value", field, value, message) for message in messages]


def labels_errors(labels: dict | None, field: str) -> list[FieldError]:
    """ValidateLabels: each key a label key, each value a label value, errors at the map's path."""
    found = []
    for key, value in sorted((labels or {}).items()):
        found += _invalid_each(field, key, label_key(key))
        found += _invalid_each(field, value, label_value(str(value)))
    return found


def annotations_errors(annotations: dict | None, field: str) -> list[FieldError]:
    found = []
    for key in sorted(annotations or {}):
        found += _invalid_each(field, key, label_key(key))
    size = sum(len(k) + len(str(v)) for k, v in (annotations or {}).items())
    if size > 256 * 1024:
        found.append(FieldError("Too long", field, detail="must have at most 262144 bytes"))
    return found


def metadata_errors(kind: Kind, meta: dict, creating: bool) -> list[FieldError]:
    found = []
    name = meta.get("name") or ""
    if creating:
        if not name:
            found.append(required("metadata.name", "name or generateName is required"))
        else:
            found += _invalid_each("metadata.name", name, _NAME_RULES[kind.names](name))
    found += labels_errors(meta.get("labels"), "metadata.labels")
    found += annotations_errors(meta.get("annotations"), "metadata.annotations")
    return found


# ---- pod specs


def pod_spec_errors(spec: dict, field: str, claim_volumes: tuple[str, ...] = ()) -> list[FieldError]:
    """ValidatePodSpec's checks of names, ports and mounts. claim_volumes: the names a StatefulSet adds."""
    found = []
    volumes = set(claim_volumes)
    for index, volume in enumerate(spec.get("volumes") or []):
        path = f"{field}.volumes[{index}].name"
        name = volume.get("name") or ""
        if not name:
            found.append(required(path))
        else:
            found += _invalid_each(path, name, dns1123_label(name))
            if name in volumes:
                found.append(FieldError("Duplicate value", path, name))
        volumes.add(name)
    names: set[str] = set()
    for group in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(group) or []):
            found += _container_errors(container, f"{field}.{group}[{index}]", volumes, names)
    if not spec.get("containers"):
        found.append(required(f"{field}.containers"))
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        found.append(not_supported(f"{field}.restartPolicy", policy, ["Always", "OnFailure", "Never"]))
    return found


def _container_errors(container: dict, field: str, volumes: set[str], names: set[str]) -> list[FieldError]:
    found = []
    name = container.get("name") or ""
    if not name:
        found.append(required(f"{field}.name"))
    else:
        found += _invalid_each(f"{field}.name", name, dns1123_label(name))
        if name in names:
            found.append(FieldError("Duplicate value", f"{field}.name", name))
        names.add(name)
    if not container.get("image"):
        found.append(required(f"{field}.image"))
    port_names: set[str] = set()
    for index, port in enumerate(container.get("ports") or []):
        path = f"{field}.ports[{index}]"
        if port.get("name"):
            problems = port_name(port["name"])
            found += _invalid_each(f"{path}.name", port["name"], problems)
            if not problems and port["name"] in port_names:
                found.append(FieldError("Duplicate value", f"{path}.name", port["name"]))
            port_names.add(port["name"])
        number = port.get("containerPort")
        if not number:
            found.append(required(f"{path}.containerPort"))
        elif not 1 <= number <= 65535:
            found.append(FieldError("Invalid value", f"{path}.containerPort", number, "must be between 1 and 65535, "
                                                                                      "inclusive"))
    mount_paths: set[str] = set()
    for index, mount in enumerate(container.get("volumeMounts") or []):
        path = f"{field}.volumeMounts[{index}]"
        if not mount.get("name"):
            found.append(required(f"{path}.name"))
        if mount.get("name") not in volumes:
            found.append(FieldError("Not found", f"{path}.name", mount.get("name") or ""))
        if not mount.get("mountPath"):
            found.append(required(f"{path}.mountPath"))
        elif mount["mountPath"] in mount_paths:
            found.append(FieldError("Invalid value", f"{path}.mountPath", mount["mountPath"], "must be unique"))
        mount_paths.add(mount.get("mountPath"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        for action in ("httpGet", "tcpSocket"):
            port = ((container.get(probe) or {}).get(action) or {}).get("port")
            if isinstance(port, str):
                found += _invalid_each(f"{field}.{probe}.{action}.port", port, port_name(port))
    return found


def _template_errors(workload: str, spec: dict) -> list[FieldError]:
    """A workload's selector and template labels (ValidateDeploymentSpec, ValidateStatefulSetSpec, ...)."""
    found = []
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = spec.get("selector")
    if selector is None:
        found.append(required("spec.selector"))
    else:
        found += labels_errors(selector.get("matchLabels"), "spec.selector.matchLabels")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            found.append(FieldError("Invalid value", "spec.selector", label_selector(selector),
                                    f"empty selector is invalid for {workload}"))
        elif not selector_matcher(selector)(labels):
            found.append(FieldError("Invalid value", "spec.template.metadata.labels", go_map(labels),
                                    "`selector` does not match template `labels`"))
    # ValidatePodTemplateSpec names the template's labels and annotations without "metadata".
    found += labels_errors(labels, "spec.template.labels")
    found += annotations_errors((template.get("metadata") or {}).get("annotations"), "spec.template.annotations")
    return found


def _restart_policy(spec: dict, allowed: list[str]) -> list[FieldError]:
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    return [] if policy in allowed else [not_supported("spec.template.spec.restartPolicy", policy, allowed)]


def _deployment(obj: dict) -> list[FieldError]:
    spec = obj.get("spec") or {}
    found = (_template_errors("deployment", spec)
             + pod_spec_errors((spec.get("template") or {}).get("spec") or {}, "spec.template.spec")
             + _restart_policy(spec, ["Always"]))
    strategy = spec.get("strategy") or {}
    # ValidateDeploymentStrategy; an apply switching to Recreate keeps the defaulted rollingUpdate, and trips it.
    if strategy.get("type") == "Recreate" and "rollingUpdate" in strategy:
        found.append(forbidden_field("spec.strategy.rollingUpdate",
                                     "may not be specified when strategy `type` is 'Recreate'"))
    return found


def _statefulset(obj: dict) -> list[FieldError]:
    spec = obj.get("spec") or {}
    found = _template_errors("statefulset", spec) + _restart_policy(spec, ["Always"])
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete" and "rollingUpdate" in strategy:
        rolling = strategy["rollingUpdate"] or {}
        printed = Go(f"apps.RollingUpdateStatefulSetStrategy{{Partition:{rolling.get('partition', 0)}, "
                     "MaxUnavailable:(*intstr.IntOrString)(nil)}")
        found.append(FieldError("Invalid value", "spec.updateStrategy.rollingUpdate", printed,
                                "only allowed for updateStrategy 'RollingUpdate'"))
    return found


def _job(obj: dict) -> list[FieldError]:
    """ValidateJob: the generated selector first (ValidateGeneratedSelector), then the spec."""
    spec = obj.get("spec") or {}
    found = []
    if not spec.get("manualSelector"):
        uid = obj["metadata"].get("uid", "")
        expected = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        if spec.get("selector") != expected:
            found.append(FieldError("Invalid value", "spec.selector", label_selector(spec.get("selector")),
                                    "`selector` not auto-generated"))
    found += _template_errors("job", spec)
    found += pod_spec_errors((spec.get("template") or {}).get("spec") or {}, "spec.template.spec")
    return found + _restart_policy(spec, ["OnFailure", "Never"])


def _pod(obj: dict) -> list[FieldError]:
    return pod_spec_errors(obj.get("spec") or {}, "spec")


def _service(obj: dict) -> list[FieldError]:
    spec = obj.get("spec") or {}
    ports = spec.get("ports") or []
    found, names = [], set()
    for index, port in enumerate(ports):
        path = f"spec.ports[{index}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            found.append(required(f"{path}.name"))
        elif name:
            found += _invalid_each(f"{path}.name", name, dns1123_label(name))
            if name in names:
                found.append(FieldError("Duplicate value", f"{path}.name", name))
            names.add(name)
        target = port.get("targetPort")
        if isinstance(target, str):
            found += _invalid_each(f"{path}.targetPort", target, port_name(target))
    return found


_CREATE = {"Deployment": _deployment, "StatefulSet": _statefulset, "Job": _job, "Pod": _pod, "Service": _service}


def validate(kind: Kind, obj: dict, creating: bool) -> list[FieldError]:
    """The errors of a defaulted object, create or update alike (immutability is validate_update's)."""
    found = metadata_errors(kind, obj.get("metadata") or {}, creating)
    check = _CREATE.get(kind.kind)
    if check is not None:
        found += check(obj)
    if kind.kind in _CEL:
        found += _CEL[kind.kind](obj)
    return found


# ---- updates


def validate_update(kind: Kind, old: dict, new: dict) -> list[FieldError]:
    check = _UPDATE.get(kind.kind)
    found = check(old, new) if check else []
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    if old_meta.get("deletionTimestamp"):
        added = sorted(set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or []))
        if added:
            found.append(forbidden_field("metadata.finalizers", "no new finalizers can be added if the object is "
                                                                f"being deleted, found new finalizers {_go_list(added)}"))
    return found


def _go_list(values: list[str]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


# The StatefulSet spec fields an update may change (ValidateStatefulSetUpdate).
_STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds")


def _statefulset_update(old: dict, new: dict) -> list[FieldError]:
    def frozen(obj):
        return {k: v for k, v in (obj.get("spec") or {}).items() if k not in _STATEFULSET_MUTABLE}

    if frozen(old) == frozen(new):
        return []
    return [forbidden_field("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                    "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                                    "'minReadySeconds' are forbidden")]


def _selector_update(old: dict, new: dict) -> list[FieldError]:
    selector = (new.get("spec") or {}).get("selector")
    if selector == (old.get("spec") or {}).get("selector"):
        return []
    return [FieldError("Invalid value", "spec.selector", label_selector(selector), IMMUTABLE)]


def _job_update(old: dict, new: dict) -> list[FieldError]:
    found = _selector_update(old, new)
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec.get("template") != new_spec.get("template"):
        # The real message prints the whole core.PodTemplateSpec with %#v; its shape, not its every field, here.
        found.append(FieldError("Invalid value", "spec.template", Go("core.PodTemplateSpec{...}"), IMMUTABLE))
    if old_spec.get("completionMode") != new_spec.get("completionMode"):
        found.append(FieldError("Invalid value", "spec.completionMode", new_spec.get("completionMode"), IMMUTABLE))
    return found


def _service_update(old: dict, new: dict) -> list[FieldError]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if "ExternalName" in (old_spec.get("type"), new_spec.get("type")):
        return []
    old_ips, new_ips = old_spec.get("clusterIPs") or [], new_spec.get("clusterIPs") or []
    if old_ips == ["None"] and new_ips == ["None"]:
        return []
    if len(old_ips) == len(new_ips):
        return [FieldError("Invalid value", f"spec.clusterIPs[{i}]", Go(_go_list(new_ips)), "may not change once set")
                for i, ip in enumerate(old_ips) if ip != new_ips[i]]
    if not new_ips:
        return [FieldError("Invalid value", "spec.clusterIPs[0]", Go(_go_list(new_ips)),
                           "primary clusterIP can not be unset")]
    return []


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 10**-3}


def quantity(text) -> float:
    match = _QUANTITY.match(str(text))
    return float(match.group(1)) * _UNITS[match.group(2)] if match and match.group(2) in _UNITS else 0.0


def _claim_update(old: dict, new: dict) -> list[FieldError]:
    old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
        old_spec = {k: v for k, v in old_spec.items() if v is not None}
    bound = (new.get("status") or {}).get("phase") == "Bound"
    old_storage = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
    new_storage = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
    for spec in (old_spec, new_spec):
        spec.pop("volumeAttributesClassName", None)
        if bound:
            requests = dict((spec.get("resources") or {}).get("requests") or {})
            requests.pop("storage", None)
            spec["resources"] = {**(spec.get("resources") or {}), "requests": requests}
    found = []
    if old_spec != new_spec:
        diff = "\n".join(f"  {key}: {old_spec.get(key)!r} -> {new_spec.get(key)!r}"
                         for key in sorted(old_spec.keys() | new_spec.keys()) if old_spec.get(key) != new_spec.get(key))
        found.append(forbidden_field("spec", "spec is immutable after creation except resources.requests and "
                                             f"volumeAttributesClassName for bound claims\n{diff}"))
    if quantity(new_storage) < quantity(old_storage):
        found.append(forbidden_field("spec.resources.requests.storage", "field can not be less than previous value"))
    return found


def _role_binding_update(old: dict, new: dict) -> list[FieldError]:
    role_ref = new.get("roleRef") or {}
    if role_ref == old.get("roleRef"):
        return []
    printed = Go(f'rbac.RoleRef{{APIGroup:"{role_ref.get("apiGroup", "")}", Kind:"{role_ref.get("kind", "")}", '
                 f'Name:"{role_ref.get("name", "")}"}}')
    return [FieldError("Invalid value", "roleRef", printed, "cannot change roleRef")]


def _frozen_data(fields: tuple[str, ...]):
    def check(old: dict, new: dict) -> list[FieldError]:
        found = []
        if old.get("immutable"):
            if not new.get("immutable"):
                found.append(forbidden_field("immutable", "field is immutable when `immutable` is set"))
            found += [forbidden_field(field, "field is immutable when `immutable` is set")
                      for field in fields if (old.get(field) or {}) != (new.get(field) or {})]
        if "type" in old and old.get("type") != new.get("type"):
            found.append(FieldError("Invalid value", "type", new.get("type"), IMMUTABLE))
        return found

    return check


_UPDATE = {
    "StatefulSet": _statefulset_update, "Deployment": _selector_update, "Job": _job_update,
    "Service": _service_update, "PersistentVolumeClaim": _claim_update, "RoleBinding": _role_binding_update,
    "Secret": _frozen_data(("data",)), "ConfigMap": _frozen_data(("data", "binaryData")),
}


# ---- the Gateway API CRDs' CEL rules the kit can trip over (x-kubernetes-validations of the v1.6.1 CRDs)


def _cel(field: str, type_name: str, message: str) -> FieldError:
    # A CEL rule failure names the type of the value the rule is on, as the real server does: "object", "array".
    return FieldError("Invalid value", field, type_name, message)


def _http_route(obj: dict) -> list[FieldError]:
    found = []
    for r, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        for m, match in enumerate(rule.get("matches") or []):
            path = match.get("path") or {}
            if path.get("type", "PathPrefix") not in ("Exact", "PathPrefix"):
                continue
            value, where = path.get("value", "/"), f"spec.rules[{r}].matches[{m}].path"
            if not value.startswith("/"):
                found.append(_cel(where, "object", "value must be an absolute path and start with '/' when type one "
                                                   "of ['Exact', 'PathPrefix']"))
            for fragment in ("//", "/./", "/../"):
                if fragment in value:
                    found.append(_cel(where, "object", f"must not contain '{fragment}' when type one of ['Exact', "
                                                       "'PathPrefix']"))
        for b, backend in enumerate(rule.get("backendRefs") or []):
            if backend.get("group", "") == "" and backend.get("kind", "Service") == "Service" and "port" not in backend:
                found.append(_cel(f"spec.rules[{r}].backendRefs[{b}]", "object", "Must have port for Service "
                                                                                 "reference"))
    return found


def _gateway(obj: dict) -> list[FieldError]:
    listeners = (obj.get("spec") or {}).get("listeners") or []
    found = []
    rules = (
        (lambda l: l.get("protocol") in ("HTTP", "TCP", "UDP") and "tls" in l,
         "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"),
        (lambda l: l.get("protocol") == "HTTPS" and "tls" in l and (l["tls"] or {}).get("mode", "") not in (
            "", "Terminate"), "tls mode must be Terminate for protocol HTTPS"),
        (lambda l: l.get("protocol") == "TLS" and not (l.get("tls") or {}).get("mode"),
         "tls mode must be set for protocol TLS"),
        (lambda l: l.get("protocol") in ("TCP", "UDP") and l.get("hostname"),
         "hostname must not be specified for protocols ['TCP', 'UDP']"),
    )
    for broken, message in rules:
        if any(broken(listener) for listener in listeners):
            found.append(_cel("spec.listeners", "array", message))
    names = [listener.get("name") for listener in listeners]
    if len(names) != len(set(names)):
        found.append(_cel("spec.listeners", "array", "Listener name must be unique within the Gateway"))
    endpoints = [(l.get("port"), l.get("protocol"), l.get("hostname", "")) for l in listeners]
    if len(endpoints) != len(set(endpoints)):
        found.append(_cel("spec.listeners", "array", "Combination of port, protocol and hostname must be unique for "
                                                     "each listener"))
    for index, listener in enumerate(listeners):
        tls = listener.get("tls")
        if tls and tls.get("mode", "Terminate") == "Terminate" and not tls.get("certificateRefs") and not tls.get(
                "options"):
            found.append(_cel(f"spec.listeners[{index}].tls", "object", "certificateRefs or options must be "
                                                                        "specified when mode is Terminate"))
    return found


_CEL = {"HTTPRoute": _http_route, "Gateway": _gateway}

