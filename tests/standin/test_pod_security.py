"""tests/pod_security.py, the pure check of the Pod Security Standards, against the plugin's own words."""

from tests import pod_security
from tests.standin.samples import RESTRICTED_CONTAINER, RESTRICTED_POD


def compliant(**changes):
    spec = {"securityContext": dict(RESTRICTED_POD),
            "containers": [{"name": "server", "image": "s:1", "securityContext": dict(RESTRICTED_CONTAINER)}]}
    spec.update(changes)
    return spec


def test_the_kits_hardening_passes_restricted():
    assert pod_security.violations(compliant()) == []
    assert pod_security.message("server", compliant()) is None


def test_a_bare_pod_fails_the_four_restricted_controls_in_the_plugins_order():
    spec = {"initContainers": [{"name": "init", "image": "i:1"}], "containers": [{"name": "server", "image": "s:1"}]}
    # Init containers first, then containers, as the plugin visits them; plural "containers".
    assert pod_security.violations(spec) == [
        'allowPrivilegeEscalation != false (containers "init", "server" must set '
        "securityContext.allowPrivilegeEscalation=false)",
        'unrestricted capabilities (containers "init", "server" must set securityContext.capabilities.drop=["ALL"])',
        'runAsNonRoot != true (pod or containers "init", "server" must set securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or containers "init", "server" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")']


def test_baseline_controls_come_first():
    spec = compliant(hostNetwork=True, volumes=[{"name": "host", "hostPath": {"path": "/"}}])
    spec["containers"][0]["securityContext"]["privileged"] = True
    spec["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
    assert pod_security.violations(spec) == [
        "host namespaces (hostNetwork)",
        'hostPort (container "server" uses hostPort 80)',
        'privileged (container "server" must not set securityContext.privileged=true)',
        'restricted volume types (volumes ["host"] have restricted types)']


def test_explicit_bad_values_are_named():
    spec = compliant()
    spec["securityContext"]["runAsUser"] = 0
    spec["securityContext"]["runAsNonRoot"] = False
    spec["containers"][0]["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_ADMIN",
                                                                                        "NET_BIND_SERVICE"]}
    spec["containers"][0]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    assert pod_security.violations(spec) == [
        'unrestricted capabilities (container "server" must not include "NET_ADMIN" in '
        "securityContext.capabilities.add)",
        "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)",
        "runAsUser=0 (pod must not set runAsUser=0)",
        'seccompProfile (container "server" must not set securityContext.seccompProfile.type to "Unconfined")']


def test_baseline_allows_what_restricted_refuses_but_not_host_access():
    bare = {"containers": [{"name": "server", "image": "s:1"}]}
    assert pod_security.violations(bare, level="baseline") == []
    raw = {"containers": [{"name": "server", "image": "s:1", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}],
           "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}
    assert pod_security.violations(raw, level="baseline") == [
        'non-default capabilities (container "server" must not include "NET_RAW" in securityContext.capabilities.add)',
        'hostPath volumes (volume "host")']
    assert pod_security.violations(raw, level="privileged") == []


def test_the_message_is_the_one_a_real_server_refuses_with():
    assert pod_security.message("runner", {"containers": [{"name": "c", "image": "i"}]}).startswith(
        'pods "runner" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), ')
