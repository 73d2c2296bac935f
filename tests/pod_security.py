"""The Pod Security Standards' restricted profile (with the baseline controls it includes), as a pure check.

`violations(pod_spec)` answers what the PodSecurity admission plugin of a real API server answers for a pod
spec under `restricted:latest` (or `level="baseline"`): one fragment per failed control, `reason (detail)`, in the plugin's order and words
(staging/src/k8s.io/pod-security-admission/policy/check_*.go). Joined with ", " they are the message a real server
gives: `pods "x" is forbidden: violates PodSecurity "restricted:latest": <fragments>`. The stand-in API server
uses it for its admission; render tests can use it to prove a manifest would be admitted.

Checked, in this order: the baseline controls (AppArmor annotations, host namespaces, hostPorts, probe and
lifecycle hosts, privileged, procMount, seLinuxOptions, sysctls, Windows hostProcess), then for `restricted` its
own (allowPrivilegeEscalation, capabilities, volume types, runAsNonRoot, runAsUser, seccompProfile), for
`baseline` the three it replaces (capabilities, hostPath volumes, seccomp), as the plugin runs them.
"""

from __future__ import annotations

LEVELS = ("privileged", "baseline", "restricted")
_BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                          "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                 "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}
_RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                            "projected", "secret"}
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def violations(pod_spec: dict, annotations: dict | None = None, level: str = "restricted") -> list[str]:
    """The failed controls of `<level>:latest`, each as `reason (detail)`; empty when the pod is admitted."""
    spec = pod_spec or {}
    found = []
    checks = {"privileged": (), "baseline": _BASELINE + _BASELINE_ONLY, "restricted": _BASELINE + _RESTRICTED}[level]
    for check in checks:
        result = check(spec, annotations or {})
        if result:
            reason, detail = result
            found.append(f"{reason} ({detail})" if detail else reason)
    return found


def message(name: str, pod_spec: dict, annotations: dict | None = None, level: str = "restricted") -> str | None:
    """The 403 message of a real server refusing this pod, or None when it admits it."""
    failed = violations(pod_spec, annotations, level)
    if not failed:
        return None
    return f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": {", ".join(failed)}'


def _containers(spec: dict) -> list[dict]:
    """What the plugin visits, in its order: init containers, containers, ephemeral containers."""
    return [container for field in ("initContainers", "containers", "ephemeralContainers")
            for container in spec.get(field) or []]


def _context(container: dict) -> dict:
    return container.get("securityContext") or {}


def _pod_context(spec: dict) -> dict:
    return spec.get("securityContext") or {}


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _quote(items) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_quote(names)}"


# ---- baseline


def _app_armor(spec: dict, annotations: dict):
    bad = sorted(f'{key}="{value}"' for key, value in annotations.items()
                 if key.startswith(_APPARMOR_PREFIX) and value
                 and value != "runtime/default" and not value.startswith("localhost/"))
    if bad:
        return _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad)), ", ".join(bad)
    return None


def _host_namespaces(spec: dict, annotations: dict):
    used = sorted(name for name in ("hostIPC", "hostNetwork", "hostPID") if spec.get(name))
    return ("host namespaces", ", ".join(used)) if used else None


def _host_ports(spec: dict, annotations: dict):
    bad, ports = [], set()
    for container in _containers(spec):
        used = [str(port["hostPort"]) for port in container.get("ports") or [] if port.get("hostPort")]
        if used:
            bad.append(container.get("name"))
            ports.update(used)
    if not bad:
        return None
    return "hostPort", (f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))} "
                        f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")


def _probe_hosts(spec: dict, annotations: dict):
    bad, hosts = set(), set()
    for container in _containers(spec):
        handlers = [container.get(probe) for probe in ("livenessProbe", "readinessProbe", "startupProbe")]
        lifecycle = container.get("lifecycle") or {}
        handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
        for handler in filter(None, handlers):
            for action in ("httpGet", "tcpSocket"):
                host = (handler.get(action) or {}).get("host")
                if host:
                    bad.add(container.get("name"))
                    hosts.add(host)
    if not bad:
        return None
    names = sorted(bad)
    return "probe or lifecycle host", (
        f"{_containers_phrase(names)} {_plural('uses', 'use', len(names))} "
        f"{_plural('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} {_quote(sorted(hosts))}")


def _privileged(spec: dict, annotations: dict):
    bad = [c.get("name") for c in _containers(spec) if _context(c).get("privileged")]
    return ("privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true") if bad else None


def _proc_mount(spec: dict, annotations: dict):
    bad, kinds = [], set()
    for container in _containers(spec):
        mount = _context(container).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(container.get("name"))
            kinds.add(mount)
    if not bad:
        return None
    return "procMount", f"{_containers_phrase(bad)} must not set securityContext.procMount to {_quote(sorted(kinds))}"


def _se_linux(spec: dict, annotations: dict):
    types, set_fields = set(), set()

    def valid(options: dict) -> bool:
        bad_type = options.get("type", "") not in _SELINUX_TYPES
        if bad_type:
            types.add(options["type"])
        named = {field for field in ("user", "role") if options.get(field)}
        set_fields.update(named)
        return not bad_type and not named

    setters = []
    options = _pod_context(spec).get("seLinuxOptions")
    if options is not None and not valid(options):
        setters.append("pod")
    bad = [c.get("name") for c in _containers(spec)
           if _context(c).get("seLinuxOptions") is not None and not valid(_context(c)["seLinuxOptions"])]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    details = []
    if types:
        # The plugin names user and role only after a bad type (check_seLinuxOptions.go), so do we.
        details.append(f"{_plural('type', 'types', len(types))} {_quote(sorted(types))}")
        details += [f"{field} may not be set" for field in ("user", "role") if field in set_fields]
    return "seLinuxOptions", f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(details)}"


def _sysctls(spec: dict, annotations: dict):
    bad = [s.get("name") for s in _pod_context(spec).get("sysctls") or [] if s.get("name") not in _SAFE_SYSCTLS]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


def _host_process(spec: dict, annotations: dict):
    setters = ["pod"] if (_pod_context(spec).get("windowsOptions") or {}).get("hostProcess") else []
    bad = [c.get("name") for c in _containers(spec) if (_context(c).get("windowsOptions") or {}).get("hostProcess")]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return "hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true"


# ---- restricted


def _privilege_escalation(spec: dict, annotations: dict):
    bad = [c.get("name") for c in _containers(spec) if _context(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return "allowPrivilegeEscalation != false", (
        f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false")


def _capabilities(spec: dict, annotations: dict):
    missing_drop, adding, added = [], [], set()
    for container in _containers(spec):
        capabilities = _context(container).get("capabilities")
        if capabilities is None:
            missing_drop.append(container.get("name"))
            continue
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(container.get("name"))
        forbidden = [c for c in capabilities.get("add") or [] if c != "NET_BIND_SERVICE"]
        if forbidden:
            adding.append(container.get("name"))
            added.update(forbidden)
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {_quote(sorted(added))} in "
                       "securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _volume_types(spec: dict, annotations: dict):
    bad = sorted({v.get("name") for v in spec.get("volumes") or []
                  if not _RESTRICTED_VOLUME_TYPES & set(v)})
    if not bad:
        return None
    # Go's %q of a []string: ["a" "b"].
    quoted = " ".join(f'"{name}"' for name in bad)
    return "restricted volume types", f"volumes [{quoted}] have restricted types"


def _run_as_non_root(spec: dict, annotations: dict):
    setters, pod_ok = [], False
    pod_value = _pod_context(spec).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    elif pod_value is True:
        pod_ok = True
    explicit, implicit = [], []
    for container in _containers(spec):
        value = _context(container).get("runAsNonRoot")
        if value is False:
            explicit.append(container.get("name"))
        elif value is None and not pod_ok:
            implicit.append(container.get("name"))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    if implicit:
        return "runAsNonRoot != true", f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true"
    return None


def _run_as_user(spec: dict, annotations: dict):
    setters = ["pod"] if _pod_context(spec).get("runAsUser") == 0 else []
    bad = [c.get("name") for c in _containers(spec) if _context(c).get("runAsUser") == 0]
    if bad:
        setters.append(_containers_phrase(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp(spec: dict, annotations: dict):
    allowed = ("RuntimeDefault", "Localhost")
    setters, values, pod_ok = [], set(), False
    profile = _pod_context(spec).get("seccompProfile")
    if profile is not None:
        if profile.get("type") in allowed:
            pod_ok = True
        else:
            setters.append("pod")
            values.add(profile.get("type", ""))
    explicit, implicit = [], []
    for container in _containers(spec):
        profile = _context(container).get("seccompProfile")
        if profile is not None:
            if profile.get("type") not in allowed:
                explicit.append(container.get("name"))
                values.add(profile.get("type", ""))
        elif not pod_ok:
            implicit.append(container.get("name"))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return "seccompProfile", (f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                                  f"{_quote(sorted(values))}")
    if implicit:
        return "seccompProfile", (f"pod or {_containers_phrase(implicit)} must set securityContext.seccompProfile.type "
                                  'to "RuntimeDefault" or "Localhost"')
    return None


# ---- baseline checks that the restricted level replaces with stricter ones


def _baseline_capabilities(spec: dict, annotations: dict):
    bad, added = [], set()
    for container in _containers(spec):
        extra = [c for c in (_context(container).get("capabilities") or {}).get("add") or []
                 if c not in _BASELINE_CAPABILITIES]
        if extra:
            bad.append(container.get("name"))
            added.update(extra)
    if not bad:
        return None
    return "non-default capabilities", (f"{_containers_phrase(bad)} must not include {_quote(sorted(added))} in "
                                        "securityContext.capabilities.add")


def _host_path_volumes(spec: dict, annotations: dict):
    bad = [v.get("name") for v in spec.get("volumes") or [] if "hostPath" in v]
    return ("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)}") if bad else None


def _baseline_seccomp(spec: dict, annotations: dict):
    allowed = ("RuntimeDefault", "Localhost")
    setters, values = [], set()
    profile = _pod_context(spec).get("seccompProfile")
    if profile is not None and profile.get("type") not in allowed:
        setters.append("pod")
        values.add(profile.get("type", ""))
    bad = []
    for container in _containers(spec):
        profile = _context(container).get("seccompProfile")
        if profile is not None and profile.get("type") not in allowed:
            bad.append(container.get("name"))
            values.add(profile.get("type", ""))
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return "seccompProfile", (f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                              f"{_quote(sorted(values))}")


# The plugin's order: baseline checks, then those of the level (registry.go; Go runs each check's init() in file
# name order, which is the order here).
_BASELINE = (_app_armor, _host_namespaces, _host_ports, _probe_hosts, _privileged, _proc_mount, _se_linux, _sysctls,
             _host_process)
_BASELINE_ONLY = (_baseline_capabilities, _host_path_volumes, _baseline_seccomp)
_RESTRICTED = (_privilege_escalation, _capabilities, _volume_types, _run_as_non_root, _run_as_user, _seccomp)
