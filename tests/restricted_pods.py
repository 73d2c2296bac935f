"""The Pod Security Standards' `restricted` profile (baseline controls included) as one pure check.

`violations(pod_spec)` lists what PodSecurity admission would refuse, one item per failed check in the
words of its message, `reason (detail)`, as k8s.io/pod-security-admission/policy/check_*.go write them.
Written from the Pod Security Standards' list of controls (unchanged from 1.25 to 1.36).
The stand-in API server's branch brings tests/pod_security.py with the same interface: swap the import then.
"""

from __future__ import annotations

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", []) + pod.get("ephemeralContainers", [])


def _who(names: list[str]) -> str:
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"{'container' if len(names) == 1 else 'containers'} {quoted}"


def violations(pod: dict) -> list[str]:
    """What `restricted` refuses in this pod spec; [] when PodSecurity would admit it."""
    found: list[str] = []
    context = pod.get("securityContext") or {}
    every = containers(pod)

    def own(container: dict) -> dict:
        return container.get("securityContext") or {}

    def names(test) -> list[str]:
        return [container["name"] for container in every if test(container)]

    host = [f"{name}=true" for name in ("hostNetwork", "hostPID", "hostIPC") if pod.get(name)]
    if host:
        found.append(f"host namespaces ({', '.join(host)})")
    if bad := names(lambda c: own(c).get("privileged")):
        found.append(f"privileged ({_who(bad)} must not set securityContext.privileged=true)")
    if (context.get("windowsOptions") or {}).get("hostProcess") or names(
            lambda c: (own(c).get("windowsOptions") or {}).get("hostProcess")):
        found.append("hostProcess (pod or containers must not set securityContext.windowsOptions.hostProcess=true)")
    if bad := names(lambda c: [p for p in c.get("ports", []) if p.get("hostPort")]):
        found.append(f"hostPort ({_who(bad)} uses hostPort)")
    if bad := names(lambda c: own(c).get("procMount", "Default") != "Default"):
        found.append(f"procMount ({_who(bad)} must not set securityContext.procMount)")
    if bad := names(lambda c: own(c).get("allowPrivilegeEscalation") is not False):
        found.append(f"allowPrivilegeEscalation != false ({_who(bad)} must set "
                     "securityContext.allowPrivilegeEscalation=false)")
    capabilities = []
    if bad := names(lambda c: "ALL" not in (own(c).get("capabilities") or {}).get("drop", [])):
        capabilities.append(f'{_who(bad)} must set securityContext.capabilities.drop=["ALL"]')
    for container in every:
        added = sorted(set((own(container).get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"})
        if added:
            capabilities.append(f'{_who([container["name"]])} must not include {", ".join(added)} in '
                                "securityContext.capabilities.add")
    if capabilities:
        found.append(f"unrestricted capabilities ({'; '.join(capabilities)})")
    found += _run_as_non_root(context, every)
    if context.get("runAsUser") == 0 or names(lambda c: own(c).get("runAsUser") == 0):
        found.append("runAsUser=0 (pod or containers must not set runAsUser=0)")
    pod_seccomp = (context.get("seccompProfile") or {}).get("type")
    if bad := names(lambda c: ((own(c).get("seccompProfile") or {}).get("type") or pod_seccomp) not in SECCOMP_TYPES):
        found.append(f'seccompProfile (pod or {_who(bad)} must set securityContext.seccompProfile.type to '
                     '"RuntimeDefault" or "Localhost")')
    selinux = [options for options in [context.get("seLinuxOptions")] + [own(c).get("seLinuxOptions") for c in every]
               if options and (options.get("type", "") not in SELINUX_TYPES or options.get("user") or options.get("role"))]
    if selinux:
        found.append("seLinuxOptions (pod or containers set forbidden securityContext.seLinuxOptions)")
    apparmor = [profile for profile in [context.get("appArmorProfile")] + [own(c).get("appArmorProfile") for c in every]
                if profile and profile.get("type") not in SECCOMP_TYPES]
    if apparmor:
        found.append("appArmorProfile (pod or containers must not set appArmorProfile.type=Unconfined)")
    if bad := [sysctl["name"] for sysctl in context.get("sysctls", []) if sysctl["name"] not in SAFE_SYSCTLS]:
        found.append(f"forbidden sysctls ({', '.join(bad)})")
    volumes = [(volume["name"], next(key for key in volume if key != "name")) for volume in pod.get("volumes", [])]
    if host_paths := [name for name, kind in volumes if kind == "hostPath"]:
        found.append(f"hostPath volumes (volumes {', '.join(host_paths)})")
    if restricted := [f'volume "{name}" uses restricted volume type "{kind}"' for name, kind in volumes
                      if kind not in RESTRICTED_VOLUMES]:
        found.append(f"restricted volume types ({', '.join(restricted)})")
    return found


def _run_as_non_root(context: dict, every: list[dict]) -> list[str]:
    """check_runAsNonRoot.go: an explicit false anywhere is refused, and every container needs a true."""
    setters = ["pod"] if context.get("runAsNonRoot") is False else []
    explicit = [c["name"] for c in every if (c.get("securityContext") or {}).get("runAsNonRoot") is False]
    if explicit:
        setters.append(_who(explicit))
    if setters:
        return [f"runAsNonRoot != true ({' and '.join(setters)} must not set securityContext.runAsNonRoot=false)"]
    implicit = [c["name"] for c in every
                if (c.get("securityContext") or {}).get("runAsNonRoot") is None and context.get("runAsNonRoot") is not True]
    if implicit:
        return [f"runAsNonRoot != true (pod or {_who(implicit)} must set securityContext.runAsNonRoot=true)"]
    return []
