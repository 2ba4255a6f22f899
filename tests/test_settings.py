"""Stack config parsing: the homelab stack's values, reservation merging, and bad input.

Every bad-input case changes one thing in the homelab stack and checks that `parse_settings`
raises `SettingsError` with a problem line that names the key path and quotes the bad value.
A line names the key path when it starts with `  - <path>: `, or, for checks that span
several keys of one section (model validators), `  - <parent>: <leaf>` (for example
`pki: earlyRenewalHours (100) must be below ...`). A missing key or an empty list has no value
to quote; those cases check the path and that the message says what is required.

Cases that once exposed bugs in components/settings/ stay here as regression tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from components.settings import (
    Settings,
    SettingsError,
    go_duration_ns,
    known_host_keys,
    parse_settings,
    pod_cidr_overlaps,
    resolve_host_keys,
)
from tests.stack_config import homelab_config, load_stack_config

Raw = dict[str, Any]
# A real ed25519 public key (made up for these tests).
ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _problems(error: SettingsError) -> list[str]:
    lines = str(error).splitlines()
    assert lines[0] == "invalid stack configuration:", str(error)
    assert all(line.startswith("  - ") for line in lines[1:]), str(error)
    return [line.removeprefix("  - ") for line in lines[1:]]


def _parse(raw: Raw, secrets: frozenset[str] = frozenset()) -> Settings:
    return parse_settings(raw, secrets)


def _errors(raw: Raw, secrets: frozenset[str] = frozenset()) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, secrets)
    return _problems(caught.value)


def _names_path(problem: str, path: str) -> bool:
    if problem.startswith(f"{path}: "):
        return True
    parent, _, leaf = path.rpartition(".")
    return bool(parent) and problem.startswith(f"{parent}: {leaf}")


# --- the homelab stack ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def homelab() -> Settings:
    return _parse(homelab_config())


def test_stack_config_helper_strips_the_namespace_and_copies(tmp_path: Any) -> None:
    stack = tmp_path / "Pulumi.test.yaml"
    stack.write_text(
        "config:\n"
        "  homelab-kubelet:ssh:\n    user: kube\n"
        "  aws:region: us-east-1\n"
        "  homelab-kubelet:sshPrivateKey:\n    secure: AAAA\n"
    )
    assert load_stack_config(stack) == {"ssh": {"user": "kube"}, "sshPrivateKey": {"secure": "AAAA"}}
    first = homelab_config()
    first["nodes"].clear()
    assert len(homelab_config()["nodes"]) == 3


def test_homelab_nodes(homelab: Settings) -> None:
    assert [node.name for node in homelab.nodes] == ["k8s-master", "k8s-node1", "k8s-node2"]
    assert [node.address for node in homelab.nodes] == ["k8s-master", "k8s-node1", "k8s-node2"]
    assert {node.arch for node in homelab.nodes} == {"arm64"}
    assert [node.pod_cidr for node in homelab.nodes] == ["10.200.0.0/24", "10.200.1.0/24", "10.200.2.0/24"]
    assert [node.cert_common_name for node in homelab.nodes] == [
        "system:node:k8s-master",
        "system:node:k8s-node1",
        "system:node:k8s-node2",
    ]
    for node in homelab.nodes:
        assert (node.user, node.port, node.is_root) == ("root", 22, True)
        assert node.resolv_conf == "/run/systemd/resolve/resolv.conf"


def test_homelab_kubernetes_and_ssh(homelab: Settings) -> None:
    assert homelab.kubernetes.version == "v1.30.1"
    assert homelab.kubernetes.minor_version == "v1.30"
    assert homelab.kubernetes.cluster_dns == ("10.32.0.10",)
    assert homelab.kubernetes.api_server == "https://k8s-master:6443"
    assert homelab.kubernetes.container_runtime_endpoint == "unix:///run/containerd/containerd.sock"
    assert homelab.kubernetes.runtime_socket_path == "/run/containerd/containerd.sock"
    # No key configured: the SSH agent authenticates (the default key source).
    assert homelab.ssh.agent is False and homelab.ssh.private_key_file is None
    assert homelab.ssh_private_key_from_secret is False
    assert homelab.kubelet.auth_mode == "secure"


def test_homelab_reservations(homelab: Settings) -> None:
    for reservations in [homelab.reservations, *(node.reservations for node in homelab.nodes)]:
        assert reservations.system_reserved.as_kubelet_map() == {"cpu": "256m", "memory": "256Mi"}
        assert reservations.kube_reserved.as_kubelet_map() == {"cpu": "1024m", "memory": "1024Mi"}
        assert reservations.eviction_hard == {"memory.available": "100Mi"}
        # What the kubelet gets: its five Linux defaults (v1.30), the stack's key over them.
        assert reservations.eviction_thresholds == {
            "memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%",
            "imagefs.available": "15%", "imagefs.inodesFree": "5%",
        }
        assert reservations.enforce_node_allocatable == ("pods", "kube-reserved", "system-reserved")
        assert reservations.kube_reserved_cgroup == "/kube.slice"
        assert reservations.system_reserved_cgroup == "/system.slice"


def test_homelab_pki_subject(homelab: Settings) -> None:
    subject = homelab.pki.subject
    assert (subject.country, subject.province, subject.locality) == ("JP", "Sample", "Tokyo")
    assert subject.organizational_unit == "Kubernetes The HardWay"
    assert homelab.pki.algorithm == "ECDSA"
    assert homelab.pki.import_ca is False


# --- per-node reservation overrides -------------------------------------------------------------


def test_node_override_merges_one_level_deep() -> None:
    raw = homelab_config()
    raw["nodes"][1]["reservations"] = {
        "kubeReserved": {"cpu": "512m"},
        "evictionHard": {"nodefs.available": "10%"},
        "enforceNodeAllocatable": ["pods"],
    }
    settings = _parse(raw)
    node1 = settings.node("k8s-node1").reservations
    # Within a resource map: the node's keys win, the others stay.
    assert node1.kube_reserved.as_kubelet_map() == {"cpu": "512m", "memory": "1024Mi"}
    assert node1.system_reserved.as_kubelet_map() == {"cpu": "256m", "memory": "256Mi"}
    assert node1.eviction_hard == {"memory.available": "100Mi", "nodefs.available": "10%"}
    # A list is not a map: it is replaced.
    assert node1.enforce_node_allocatable == ("pods",)
    # The other nodes and the stack-wide value are untouched.
    assert settings.reservations.kube_reserved.cpu == "1024m"
    assert settings.node("k8s-node2").reservations.kube_reserved.as_kubelet_map() == {
        "cpu": "1024m",
        "memory": "1024Mi",
    }


def test_node_override_of_a_scalar_replaces_it() -> None:
    raw = homelab_config()
    raw["nodes"][0]["reservations"] = {"kubeReservedCgroup": "/podruntime.slice"}
    settings = _parse(raw)
    assert settings.nodes[0].reservations.kube_reserved_cgroup == "/podruntime.slice"
    assert settings.nodes[0].reservations.kube_reserved_slice == "podruntime.slice"
    assert settings.nodes[1].reservations.kube_reserved_cgroup == "/kube.slice"


def test_node_user_and_port_override_the_ssh_section() -> None:
    raw = homelab_config()
    raw["nodes"][2].update(user="kube", port=2222)
    node = _parse(raw).nodes[2]
    assert (node.user, node.port, node.is_root) == ("kube", 2222, False)


# --- accepted edge cases --------------------------------------------------------------------------


def test_port_given_as_integral_float_is_accepted() -> None:
    # Pulumi can hand YAML numbers to the program as floats.
    raw = homelab_config()
    raw["ssh"]["port"] = 22.0
    raw["nodes"][1]["port"] = 2222.0
    settings = _parse(raw)
    assert settings.ssh.port == 22
    assert isinstance(settings.nodes[1].port, int)
    assert settings.nodes[1].port == 2222


def test_same_address_on_other_ports_is_accepted() -> None:
    raw = homelab_config()
    for node, port in zip(raw["nodes"], (2201, 2202, 2203), strict=True):
        node.update(address="127.0.0.1", port=port)
    assert [node.port for node in _parse(raw).nodes] == [2201, 2202, 2203]


# --- bad input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    mutate: Callable[[Raw], object]
    path: str
    value: str | None  # a text the problem line must contain; None: nothing to quote
    secrets: frozenset[str] = field(default_factory=frozenset)


def _node(index: int, key: str, value: Any) -> Callable[[Raw], object]:
    return lambda raw: raw["nodes"][index].__setitem__(key, value)


def _section(section: str, key: str, value: Any) -> Callable[[Raw], object]:
    return lambda raw: raw[section].__setitem__(key, value)


def _reserved(kind: str, key: str, value: Any) -> Callable[[Raw], object]:
    return lambda raw: raw["reservations"][kind].__setitem__(key, value)


BAD_CASES: dict[str, Bad] = {
    "podCIDR not a CIDR": Bad(_node(1, "podCIDR", "10.200.1.0/33"), "nodes[1].podCIDR", "'10.200.1.0/33'"),
    "podCIDR garbage": Bad(_node(1, "podCIDR", "ten-two-hundred"), "nodes[1].podCIDR", "'ten-two-hundred'"),
    "podCIDR host bits set": Bad(_node(1, "podCIDR", "10.200.1.5/24"), "nodes[1].podCIDR", "'10.200.1.5/24'"),
    "podCIDRs overlap": Bad(_node(2, "podCIDR", "10.200.1.128/25"), "nodes[2].podCIDR", "'10.200.1.128/25'"),
    "quantity 256MB stack-wide": Bad(
        _reserved("systemReserved", "memory", "256MB"), "reservations.systemReserved.memory", "'256MB'"
    ),
    "quantity 256MB per node": Bad(
        _node(1, "reservations", {"kubeReserved": {"memory": "256MB"}}),
        "nodes[1].reservations.kubeReserved.memory",
        "'256MB'",
    ),
    "unknown arch": Bad(_node(1, "arch", "x86_64"), "nodes[1].arch", "'x86_64'"),
    "duplicate node name": Bad(_node(2, "name", "k8s-node1"), "nodes[2].name", "'k8s-node1'"),
    "duplicate address and port": Bad(_node(2, "address", "k8s-node1"), "nodes[2].address", "'k8s-node1'"),
    "version without v": Bad(_section("kubernetes", "version", "1.30.1"), "kubernetes.version", "'1.30.1'"),
    "version garbage": Bad(_section("kubernetes", "version", "latest"), "kubernetes.version", "'latest'"),
    "version without patch": Bad(_section("kubernetes", "version", "v1.30"), "kubernetes.version", "'v1.30'"),
    "unknown key in a section": Bad(
        _section("kubernetes", "apiserver", "https://k8s-master:6443"), "kubernetes.apiserver", None
    ),
    "unknown key in a node": Bad(_node(1, "podCidr", "10.200.1.0/24"), "nodes[1].podCidr", None),
    "unknown key in systemReserved": Bad(
        _reserved("systemReserved", "memroy", "256Mi"), "reservations.systemReserved.memroy", None
    ),
    "unknown key in a node's override": Bad(
        _node(1, "reservations", {"kubeReserved": {"cpus": "1"}}), "nodes[1].reservations.kubeReserved.cpus", None
    ),
    "memory reservation 1024Gi": Bad(
        _reserved("systemReserved", "memory", "1024Gi"), "reservations.systemReserved.memory", "'1024Gi'"
    ),
    "cpu reservation 1000 cores": Bad(
        _reserved("kubeReserved", "cpu", "1000"), "reservations.kubeReserved.cpu", "'1000'"
    ),
    "per-node memory 1024Gi": Bad(
        _node(0, "reservations", {"systemReserved": {"memory": "1024Gi"}}),
        "nodes[0].reservations.systemReserved.memory",
        "'1024Gi'",
    ),
    "nodes missing": Bad(lambda raw: raw.pop("nodes"), "nodes", None),
    "nodes empty": Bad(lambda raw: raw.__setitem__("nodes", []), "nodes", None),
    "nodes not a list": Bad(lambda raw: raw.__setitem__("nodes", {"k8s-master": {}}), "nodes", "dict"),
    "node not a mapping": Bad(lambda raw: raw["nodes"].__setitem__(1, "k8s-node1"), "nodes[1]", "'k8s-node1'"),
    "node name missing": Bad(lambda raw: raw["nodes"][1].pop("name"), "nodes[1].name", None),
    "clusterDNS not an IP": Bad(
        _section("kubernetes", "clusterDNS", ["10.32.0.300"]), "kubernetes.clusterDNS[0]", "'10.32.0.300'"
    ),
    "apiServer not https": Bad(
        _section("kubernetes", "apiServer", "http://k8s-master:6443"),
        "kubernetes.apiServer",
        "'http://k8s-master:6443'",
    ),
    "runtime endpoint not unix://": Bad(
        _section("kubernetes", "containerRuntimeEndpoint", "/run/containerd/containerd.sock"),
        "kubernetes.containerRuntimeEndpoint",
        "'/run/containerd/containerd.sock'",
    ),
    "resolvConf relative": Bad(_section("kubelet", "resolvConf", "resolv.conf"), "kubelet.resolvConf", "'resolv.conf'"),
    "node resolvConf relative": Bad(
        _node(1, "resolvConf", "run/resolv.conf"), "nodes[1].resolvConf", "'run/resolv.conf'"
    ),
    "two ssh key sources": Bad(
        lambda raw: raw["ssh"].update(agent=True, privateKeyFile="~/.ssh/id_ed25519"),
        "ssh",
        "ssh.privateKeyFile, ssh.agent",
    ),
    "ssh agent and the secret": Bad(
        lambda raw: raw["ssh"].update(agent=True), "ssh", "ssh.agent, sshPrivateKey", frozenset({"sshPrivateKey"})
    ),
    "importCa without secrets": Bad(_section("pki", "importCa", True), "pki.importCa", "caCertPem, caKeyPem"),
    "importCa with one secret": Bad(
        _section("pki", "importCa", True), "pki.importCa", "caKeyPem", frozenset({"caCertPem"})
    ),
    "earlyRenewalHours = validityHours": Bad(
        lambda raw: raw["pki"].update(validityHours=100, earlyRenewalHours=100), "pki.earlyRenewalHours", "(100)"
    ),
    "earlyRenewalHours > validityHours": Bad(
        lambda raw: raw["pki"].update(validityHours=100, earlyRenewalHours=720), "pki.earlyRenewalHours", "(720)"
    ),
    "kube-reserved enforced but kubeReserved empty": Bad(
        lambda raw: raw["reservations"].__setitem__("kubeReserved", {}),
        "reservations.enforceNodeAllocatable",
        "'kube-reserved'",
    ),
    "system-reserved enforced but systemReserved empty": Bad(
        lambda raw: raw["reservations"].pop("systemReserved"),
        "reservations.enforceNodeAllocatable",
        "'system-reserved'",
    ),
    "enforceNodeAllocatable none with others": Bad(
        _section("reservations", "enforceNodeAllocatable", ["none", "pods"]),
        "reservations.enforceNodeAllocatable",
        "'none'",
    ),
    "enforceNodeAllocatable unknown": Bad(
        _section("reservations", "enforceNodeAllocatable", ["pods", "kube"]),
        "reservations.enforceNodeAllocatable[1]",
        "'kube'",
    ),
    "taint effect": Bad(
        _node(1, "taints", [{"key": "dedicated", "effect": "NoRun"}]), "nodes[1].taints[0].effect", "'NoRun'"
    ),
    "taint key": Bad(
        _node(1, "taints", [{"key": "bad key", "effect": "NoSchedule"}]), "nodes[1].taints[0].key", "'bad key'"
    ),
    "label key": Bad(_node(1, "labels", {"-role": "worker"}), "nodes[1].labels", "'-role'"),
    "label value": Bad(_node(1, "labels", {"role": "big worker"}), "nodes[1].labels", "'big worker'"),
    "extraArgs overrides hostname-override": Bad(
        _node(1, "extraArgs", {"hostname-override": "other"}), "nodes[1].extraArgs", "'hostname-override'"
    ),
    "extraArgs with dashes": Bad(_node(1, "extraArgs", {"--max-pods": "50"}), "nodes[1].extraArgs", "'--max-pods'"),
    "eviction threshold": Bad(
        _section("reservations", "evictionHard", {"memory.available": "100MB"}),
        "reservations.evictionHard",
        "'100MB'",
    ),
    "eviction threshold 100%": Bad(
        _section("reservations", "evictionHard", {"memory.available": "100%"}),
        "reservations.evictionHard",
        "'100%'",
    ),
    "ssh port 0": Bad(_section("ssh", "port", 0), "ssh.port", "(got 0)"),
    "node port 70000": Bad(_node(1, "port", 70000), "nodes[1].port", "(got 70000)"),
    "node port 22.5": Bad(_node(1, "port", 22.5), "nodes[1].port", "(got 22.5)"),
    "ssh port 22.5": Bad(_section("ssh", "port", 22.5), "ssh.port", "(got 22.5)"),
    "node name uppercase": Bad(_node(1, "name", "K8s-Node1"), "nodes[1].name", "'K8s-Node1'"),
    "ssh user uppercase": Bad(_section("ssh", "user", "Root"), "ssh.user", "'Root'"),
    "node ips not IPs": Bad(_node(1, "ips", ["192.168.1.300"]), "nodes[1].ips[0]", "'192.168.1.300'"),
    "logVerbosity 11": Bad(_section("kubelet", "logVerbosity", 11), "kubelet.logVerbosity", "(got 11)"),
    "ssh-rsa host key pin": Bad(
        _node(1, "hostKey", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"), "nodes[1].hostKey", "pin the node's ed25519"
    ),
    "pid reservation 1.5": Bad(_reserved("systemReserved", "pid", 1.5), "reservations.systemReserved.pid", "1.5"),
    # --- issue 12: injection into kubelet.service and flags that bypass typed settings ---
    "extraArgs value with a newline": Bad(
        _node(1, "extraArgs", {"max-pods": "50\nExecStartPost=/bin/sh -c id"}), "nodes[1].extraArgs", "'50\\nExecStartPost"
    ),
    "extraArgs value with a trailing backslash": Bad(
        _node(1, "extraArgs", {"max-pods": "50\\"}), "nodes[1].extraArgs", "'50\\\\'"
    ),
    "extraArgs value smuggling a flag": Bad(
        _node(1, "extraArgs", {"max-pods": "50 --authorization-mode=AlwaysAllow"}),
        "nodes[1].extraArgs", "'50 --authorization-mode=AlwaysAllow'",
    ),
    "extraArgs value with a tab": Bad(_node(1, "extraArgs", {"provider-id": "10.0.0.1\t--v=9"}), "nodes[1].extraArgs", "'10.0.0.1\\t--v=9'"),
    "extraArgs value with %": Bad(_node(1, "extraArgs", {"provider-id": "%n"}), "nodes[1].extraArgs", "'%n'"),
    "extraArgs value with $": Bad(_node(1, "extraArgs", {"provider-id": "$MAINPID"}), "nodes[1].extraArgs", "'$MAINPID'"),
    "extraArgs value with a double quote": Bad(_node(1, "extraArgs", {"provider-id": 'a"b'}), "nodes[1].extraArgs", "'a\"b'"),
    "extraArgs value with a single quote": Bad(_node(1, "extraArgs", {"provider-id": "a'b"}), "nodes[1].extraArgs", "a'b"),
    "extraArgs authorization-mode": Bad(
        _node(1, "extraArgs", {"authorization-mode": "AlwaysAllow"}), "nodes[1].extraArgs", "'authorization-mode'"
    ),
    "extraArgs anonymous-auth": Bad(_node(1, "extraArgs", {"anonymous-auth": "true"}), "nodes[1].extraArgs", "'anonymous-auth'"),
    "extraArgs read-only-port": Bad(_node(1, "extraArgs", {"read-only-port": "10255"}), "nodes[1].extraArgs", "'read-only-port'"),
    "extraArgs authentication-token-webhook": Bad(
        _node(1, "extraArgs", {"authentication-token-webhook": "false"}), "nodes[1].extraArgs",
        "'authentication-token-webhook'",
    ),
    "extraArgs client-ca-file": Bad(
        _node(1, "extraArgs", {"client-ca-file": "/tmp/ca.pem"}), "nodes[1].extraArgs", "'client-ca-file'"
    ),
    "extraArgs tls-min-version": Bad(_node(1, "extraArgs", {"tls-min-version": "VersionTLS10"}), "nodes[1].extraArgs", "'tls-min-version'"),
    "extraArgs tls-cipher-suites": Bad(
        _node(1, "extraArgs", {"tls-cipher-suites": "TLS_RSA_WITH_RC4_128_SHA"}), "nodes[1].extraArgs", "'tls-cipher-suites'"
    ),
    "extraArgs kube-reserved-cgroup (a typed setting)": Bad(
        _node(1, "extraArgs", {"kube-reserved-cgroup": "/missing.slice"}), "nodes[1].extraArgs", "'kube-reserved-cgroup'"
    ),
    "extraArgs pod-manifest-path (a typed setting)": Bad(
        _node(1, "extraArgs", {"pod-manifest-path": "/tmp"}), "nodes[1].extraArgs", "'pod-manifest-path'"
    ),
    "extraArgs register-with-taints (a typed setting)": Bad(
        _node(1, "extraArgs", {"register-with-taints": "a=b:NoSchedule"}), "nodes[1].extraArgs", "'register-with-taints'"
    ),
    "extraArgs bootstrap-kubeconfig": Bad(
        _node(1, "extraArgs", {"bootstrap-kubeconfig": "/tmp/kc"}), "nodes[1].extraArgs", "'bootstrap-kubeconfig'"
    ),
    "extraArgs v (set by the program)": Bad(_node(1, "extraArgs", {"v": "9"}), "nodes[1].extraArgs", "'v'"),
    "extraArgs max-pods (deprecated: a typed setting)": Bad(
        _node(1, "extraArgs", {"max-pods": "50"}), "nodes[1].extraArgs", "'max-pods' cannot be set through extraArgs: kubelet v1.30 deprecates it for the KubeletConfiguration field maxPods; set by kubelet.maxPods"
    ),
    "extraArgs eviction-soft (deprecated: kubelet.config)": Bad(
        _node(1, "extraArgs", {"eviction-soft": "memory.available<200Mi"}), "nodes[1].extraArgs",
        "'eviction-soft' cannot be set through extraArgs: kubelet v1.30 deprecates it for the KubeletConfiguration field evictionSoft; set it as kubelet.config.evictionSoft",
    ),
    "extraArgs logging-format (deprecated: kubelet.config, nested)": Bad(
        _node(1, "extraArgs", {"logging-format": "json"}), "nodes[1].extraArgs", "set it as kubelet.config.logging.format"
    ),
    "extraArgs register-schedulable (deprecated KubeletFlags flag)": Bad(
        _node(1, "extraArgs", {"register-schedulable": "false"}), "nodes[1].extraArgs",
        "'register-schedulable' cannot be set through extraArgs: kubelet v1.30 deprecates it (will be removed in a future version)",
    ),
    "extraArgs pod-cidr (deprecated, not rendered)": Bad(
        _node(1, "extraArgs", {"pod-cidr": "10.200.1.0/24"}), "nodes[1].extraArgs",
        "not settable: the kubelet uses it only in standalone mode, so kubelet-config.yaml does not carry it; a node's pod range is nodes[].podCIDR",
    ),
    # --- host keys ---
    "hostKey with a comment after it": Bad(
        _node(1, "hostKey", f"{ED25519_KEY} root@k8s-node1"), "nodes[1].hostKey", "root@k8s-node1"
    ),
    "hostKey truncated": Bad(_node(1, "hostKey", ED25519_KEY[:-8]), "nodes[1].hostKey", ED25519_KEY[:40]),
    "hostKey of another type than it says": Bad(
        _node(1, "hostKey", "ecdsa-sha2-nistp256 " + ED25519_KEY.split()[1]), "nodes[1].hostKey", "'ecdsa-sha2-nistp256"
    ),
    "hostKey not base64": Bad(_node(1, "hostKey", "ssh-ed25519 not*base64"), "nodes[1].hostKey", "'ssh-ed25519 not*base64'"),
    "hostKey unknown type": Bad(_node(1, "hostKey", "ssh-dss AAAAB3NzaC1kc3M="), "nodes[1].hostKey", "'ssh-dss AAAAB3NzaC1kc3M='"),
    "hostKey with a newline": Bad(_node(1, "hostKey", ED25519_KEY + "\n"), "nodes[1].hostKey", ED25519_KEY[:40]),
    # --- kubelet digests ---
    "http mirror without a pinned digest": Bad(
        _section("kubernetes", "downloadBaseUrl", "http://mirror.lan:8080"),
        "kubernetes.kubeletSha256.arm64.v1.30.1", "'http://mirror.lan:8080'",
    ),
    "kubeletSha256 not hex": Bad(
        _section("kubernetes", "kubeletSha256", {"arm64": {"v1.30.1": "XYZ"}}), "kubernetes.kubeletSha256.arm64.v1.30.1", "'XYZ'"
    ),
    "kubeletSha256 for other versions only": Bad(
        _section("kubernetes", "kubeletSha256", {"arm64": {"v1.30.0": "a" * 64}}),
        "kubernetes.kubeletSha256.arm64.v1.30.1", "not v1.30.1",
    ),
    "kubeletSha256 unknown arch": Bad(
        _section("kubernetes", "kubeletSha256", {"x86_64": {"v1.30.1": "a" * 64}}), "kubernetes.kubeletSha256.x86_64", "'x86_64'"
    ),
    # --- values the real components reject or misread ---
    "label key with an empty prefix": Bad(_node(1, "labels", {"/role": "worker"}), "nodes[1].labels", "'/role'"),
    "label name of 64 characters": Bad(_node(1, "labels", {"n" * 64: "x"}), "nodes[1].labels", "'" + "n" * 64 + "'"),
    "label prefix of 254 characters": Bad(
        _node(1, "labels", {("a" * 62 + ".") * 4 + "ab/x": ""}), "nodes[1].labels", "bad prefix"
    ),
    "taint key with an empty prefix": Bad(
        _node(1, "taints", [{"key": "/dedicated", "effect": "NoSchedule"}]), "nodes[1].taints[0].key", "'/dedicated'"
    ),
    "taint value of 64 characters": Bad(
        _node(1, "taints", [{"key": "a", "value": "v" * 64, "effect": "NoSchedule"}]), "nodes[1].taints[0].value", "'" + "v" * 64
    ),
    "duplicate taints": Bad(
        _node(1, "taints", [{"key": "dedicated", "value": "a", "effect": "NoSchedule"},
                            {"key": "dedicated", "value": "b", "effect": "NoSchedule"}]),
        "nodes[1].taints", "'dedicated' and effect 'NoSchedule'",
    ),
    "node name longer than the CN allows": Bad(_node(1, "name", "n" * 53), "nodes[1].name", "'" + "n" * 53 + "'"),
    "runtimeRequestTimeout 1m30": Bad(_section("kubelet", "runtimeRequestTimeout", "1m30"), "kubelet.runtimeRequestTimeout", "'1m30'"),
    "runtimeRequestTimeout 0s": Bad(_section("kubelet", "runtimeRequestTimeout", "0s"), "kubelet.runtimeRequestTimeout", "'0s'"),
    "runtimeRequestTimeout 0": Bad(_section("kubelet", "runtimeRequestTimeout", "0"), "kubelet.runtimeRequestTimeout", "'0'"),
    "runtimeRequestTimeout negative": Bad(_section("kubelet", "runtimeRequestTimeout", "-5m"), "kubelet.runtimeRequestTimeout", "'-5m'"),
    "runtimeRequestTimeout overflow": Bad(
        _section("kubelet", "runtimeRequestTimeout", "9999999h"), "kubelet.runtimeRequestTimeout", "'9999999h'"
    ),
    "runtimeRequestTimeout unknown unit": Bad(_section("kubelet", "runtimeRequestTimeout", "15min"), "kubelet.runtimeRequestTimeout", "'15min'"),
    "eviction threshold 0": Bad(
        _section("reservations", "evictionHard", {"memory.available": "0"}), "reservations.evictionHard", "'0'"
    ),
    "eviction threshold 0.0%": Bad(
        _section("reservations", "evictionHard", {"nodefs.available": "0.0%"}), "reservations.evictionHard", "'0.0%'"
    ),
    "eviction threshold 0Mi": Bad(
        _section("reservations", "evictionHard", {"memory.available": "0Mi"}), "reservations.evictionHard", "'0Mi'"
    ),
    "eviction threshold 150%": Bad(
        _section("reservations", "evictionHard", {"memory.available": "150%"}), "reservations.evictionHard", "'150%'"
    ),
    "systemCgroups /": Bad(_section("kubelet", "systemCgroups", "/"), "kubelet.systemCgroups", "'/'"),
    "healthzPort = the kubelet's port": Bad(_section("kubelet", "healthzPort", 10250), "kubelet.healthzPort", "10250"),
    "healthzPort = kubelet.config port": Bad(
        lambda raw: raw["kubelet"].update(healthzPort=10300, config={"port": 10300}), "kubelet.healthzPort", "10300"
    ),
    "healthzPort = the read-only port when permissive": Bad(
        lambda raw: raw["kubelet"].update(healthzPort=10255, authMode="permissive"), "kubelet.healthzPort", "10255"
    ),
    "kubeReservedCgroup nested (a '-' in it)": Bad(
        _section("reservations", "kubeReservedCgroup", "/kube-reserved.slice"),
        "reservations.kubeReservedCgroup", "'/kube-reserved.slice'",
    ),
    "kubeReservedCgroup not a slice": Bad(
        _section("reservations", "kubeReservedCgroup", "/kube"), "reservations.kubeReservedCgroup", "'/kube'"
    ),
    "systemReservedCgroup /user.slice": Bad(
        _section("reservations", "systemReservedCgroup", "/user.slice"), "reservations.systemReservedCgroup", "'/user.slice'"
    ),
    "kubeReservedCgroup /kubepods.slice": Bad(
        _section("reservations", "kubeReservedCgroup", "/kubepods.slice"), "reservations.kubeReservedCgroup", "'/kubepods.slice'"
    ),
    "kubeReservedCgroup /machine.slice": Bad(
        _section("reservations", "kubeReservedCgroup", "/machine.slice"), "reservations.kubeReservedCgroup", "'/machine.slice'"
    ),
    "systemReservedCgroup /init.scope": Bad(
        _section("reservations", "systemReservedCgroup", "/init.scope"), "reservations.systemReservedCgroup", "'/init.scope'"
    ),
    "both reserved cgroups the same slice": Bad(
        _section("reservations", "kubeReservedCgroup", "/system.slice"), "reservations.kubeReservedCgroup", "'/system.slice'"
    ),
    "staticPodPath /tmp": Bad(_section("kubelet", "staticPodPath", "/tmp"), "kubelet.staticPodPath", "'/tmp'"),
    "staticPodPath /etc": Bad(_section("kubelet", "staticPodPath", "/etc"), "kubelet.staticPodPath", "'/etc'"),
    "staticPodPath /var/lib/kubelet": Bad(
        _section("kubelet", "staticPodPath", "/var/lib/kubelet"), "kubelet.staticPodPath", "'/var/lib/kubelet'"
    ),
    "staticPodPath below /var/lib/kubelet": Bad(
        _section("kubelet", "staticPodPath", "/var/lib/kubelet/pods"), "kubelet.staticPodPath", "'/var/lib/kubelet/pods'"
    ),
    "staticPodPath not normalised": Bad(
        _section("kubelet", "staticPodPath", "/etc/kubelet.d/../"), "kubelet.staticPodPath", "'/etc/kubelet.d/../'"
    ),
    "podCIDR /32": Bad(_node(1, "podCIDR", "10.200.1.0/32"), "nodes[1].podCIDR", "'10.200.1.0/32'"),
    "podCIDR smaller than max-pods": Bad(_node(1, "podCIDR", "10.200.1.0/26"), "nodes[1].podCIDR", "'10.200.1.0/26'"),
    "clusterDNS inside a pod CIDR": Bad(
        _section("kubernetes", "clusterDNS", ["10.200.1.10"]), "kubernetes.clusterDNS[0]", "'10.200.1.10'"
    ),
    "clusterDNS of another IP family": Bad(
        _section("kubernetes", "clusterDNS", ["fd00::10"]), "kubernetes.clusterDNS[0]", "'fd00::10'"
    ),
    "apiServer port 0": Bad(_section("kubernetes", "apiServer", "https://k8s-master:0"), "kubernetes.apiServer", "'https://k8s-master:0'"),
    "apiServer port 70000": Bad(
        _section("kubernetes", "apiServer", "https://k8s-master:70000"), "kubernetes.apiServer", "'https://k8s-master:70000'"
    ),
    "apiServer host with bad characters": Bad(
        _section("kubernetes", "apiServer", "https://k8s_master!:6443"), "kubernetes.apiServer", "'https://k8s_master!:6443'"
    ),
    "apiServer IPv6 without brackets": Bad(
        _section("kubernetes", "apiServer", "https://fd00::1:6443"), "kubernetes.apiServer", "'https://fd00::1:6443'"
    ),
    "apiServer with a path": Bad(
        _section("kubernetes", "apiServer", "https://k8s-master:6443/api"), "kubernetes.apiServer", "'https://k8s-master:6443/api'"
    ),
    "downloadBaseUrl with a bad port": Bad(
        _section("kubernetes", "downloadBaseUrl", "https://dl.k8s.io:99999"), "kubernetes.downloadBaseUrl", "'https://dl.k8s.io:99999'"
    ),
    "version with leading zeros": Bad(_section("kubernetes", "version", "v1.030.1"), "kubernetes.version", "'v1.030.1'"),
    "ssh user of 33 characters": Bad(_section("ssh", "user", "u" * 33), "ssh.user", "'" + "u" * 33 + "'"),
    "node user with a $": Bad(_node(1, "user", "kube$"), "nodes[1].user", "'kube$'"),
    "country of three letters": Bad(
        lambda raw: raw["pki"]["subject"].__setitem__("country", "JPN"), "pki.subject.country", "'JPN'"
    ),
    "country lowercase": Bad(lambda raw: raw["pki"]["subject"].__setitem__("country", "jp"), "pki.subject.country", "'jp'"),
    "organizationalUnit of 65 characters": Bad(
        lambda raw: raw["pki"]["subject"].__setitem__("organizationalUnit", "o" * 65), "pki.subject.organizationalUnit",
        "'" + "o" * 65 + "'",
    ),
    "caCommonName of 65 characters": Bad(_section("pki", "caCommonName", "c" * 65), "pki.caCommonName", "'" + "c" * 65 + "'"),
    "locality with a newline": Bad(
        lambda raw: raw["pki"]["subject"].__setitem__("locality", "Tokyo\nCN=evil"), "pki.subject.locality", "'Tokyo\\nCN=evil'"
    ),
    # The kubelet's validateNodeIP refuses these for --node-ip, in these words.
    "nodeIP loopback": Bad(_node(1, "nodeIP", "127.0.1.1"), "nodes[1].nodeIP", "'127.0.1.1' cannot be the node's IP: the kubelet refuses it (\"nodeIP can't be loopback address\")"),
    "nodeIP link-local": Bad(_node(1, "nodeIP", "fe80::1"), "nodes[1].nodeIP", "\"nodeIP can't be a link-local unicast address\""),
    "nodeIP unspecified": Bad(_node(1, "nodeIP", "0.0.0.0"), "nodes[1].nodeIP", "\"nodeIP can't be an all zeros address\""),
    "nodeIP a hostname": Bad(_node(1, "nodeIP", "k8s-node1"), "nodes[1].nodeIP", "'k8s-node1' is not an IP address"),
    "node-ip through extraArgs": Bad(
        _node(1, "extraArgs", {"node-ip": "192.168.1.11"}), "nodes[1].extraArgs", "'node-ip' cannot be set through extraArgs: the program sets it on the command line from nodes[].nodeIP"
    ),
    "rollout.maxParallel 0": Bad(lambda raw: raw.__setitem__("rollout", {"maxParallel": 0}), "rollout.maxParallel", "0"),
    "rollout.maxParallel a string": Bad(lambda raw: raw.__setitem__("rollout", {"maxParallel": "1"}), "rollout.maxParallel", "'1' is not a number"),
    "rollout.maxParallel 1.5": Bad(lambda raw: raw.__setitem__("rollout", {"maxParallel": 1.5}), "rollout.maxParallel", "1.5"),
    "rollout unknown key": Bad(lambda raw: raw.__setitem__("rollout", {"maxParalel": 1}), "rollout.maxParalel", None),
    # --- typed kubelet settings (issue 15): what the v1.30 kubelet refuses at start, or misreads
    "shutdownGracePeriod below a second": Bad(
        _section("kubelet", "shutdownGracePeriod", "500ms"), "kubelet.shutdownGracePeriod", "'500ms' is not a duration of at least 1s"
    ),
    "shutdownGracePeriod a number": Bad(
        _section("kubelet", "shutdownGracePeriod", 60), "kubelet.shutdownGracePeriod", "60 is not a duration: write it as text"
    ),
    "shutdownGracePeriodCriticalPods above shutdownGracePeriod": Bad(
        lambda raw: raw["kubelet"].update(shutdownGracePeriod="20s", shutdownGracePeriodCriticalPods="60s"),
        "kubelet", "shutdownGracePeriodCriticalPods ('60s') must not exceed shutdownGracePeriod ('20s')",
    ),
    "shutdownGracePeriodCriticalPods alone": Bad(
        _section("kubelet", "shutdownGracePeriodCriticalPods", "20s"), "kubelet", "shutdownGracePeriodCriticalPods ('20s') needs shutdownGracePeriod"
    ),
    "shutdownGracePeriod with GracefulNodeShutdown off": Bad(
        lambda raw: raw["kubelet"].update(shutdownGracePeriod="60s", featureGates={"GracefulNodeShutdown": False}),
        "kubelet.shutdownGracePeriod", "the feature gate GracefulNodeShutdown off",
    ),
    "memorySwap with failSwapOn true": Bad(
        _section("kubelet", "memorySwap", {"swapBehavior": "LimitedSwap"}), "kubelet", "memorySwap.swapBehavior 'LimitedSwap' needs failSwapOn: false"
    ),
    "memorySwap UnlimitedSwap (removed in v1.30)": Bad(
        lambda raw: raw["kubelet"].update(failSwapOn=False, memorySwap={"swapBehavior": "UnlimitedSwap"}),
        "kubelet.memorySwap.swapBehavior", "'UnlimitedSwap'",
    ),
    "memorySwap with NodeSwap off by AllBeta": Bad(
        lambda raw: raw["kubelet"].update(failSwapOn=False, memorySwap={"swapBehavior": "NoSwap"}, featureGates={"AllBeta": False}),
        "kubelet.memorySwap", "the feature gate NodeSwap off",
    ),
    "imageGCHighThresholdPercent below the default low": Bad(
        _section("kubelet", "imageGCHighThresholdPercent", 75), "kubelet", "imageGCLowThresholdPercent (80 by default) must be below imageGCHighThresholdPercent (75)"
    ),
    "imageGCLowThresholdPercent equal to high": Bad(
        lambda raw: raw["kubelet"].update(imageGCHighThresholdPercent=70, imageGCLowThresholdPercent=70),
        "kubelet", "imageGCLowThresholdPercent (70) must be below imageGCHighThresholdPercent (70)",
    ),
    "imageGCHighThresholdPercent 101": Bad(_section("kubelet", "imageGCHighThresholdPercent", 101), "kubelet.imageGCHighThresholdPercent", "(got 101)"),
    "imageMinimumGCAge 0s (the kubelet makes it 2m)": Bad(
        _section("kubelet", "imageMinimumGCAge", "0s"), "kubelet.imageMinimumGCAge", "'0s' is not a positive duration (the kubelet replaces 0 with 2m"
    ),
    "containerLogMaxSize not a quantity": Bad(_section("kubelet", "containerLogMaxSize", "10MB"), "kubelet.containerLogMaxSize", "'10MB'"),
    "containerLogMaxSize zero": Bad(_section("kubelet", "containerLogMaxSize", "0"), "kubelet.containerLogMaxSize", "'0' is not a positive size"),
    "containerLogMaxFiles 1": Bad(_section("kubelet", "containerLogMaxFiles", 1), "kubelet.containerLogMaxFiles", "(got 1)"),
    "maxPods 0": Bad(_section("kubelet", "maxPods", 0), "kubelet.maxPods", "(got 0)"),
    "maxPods a string": Bad(_section("kubelet", "maxPods", "110"), "kubelet.maxPods", "'110' is not a number"),
    "nodes[].maxPods above its podCIDR": Bad(_node(1, "maxPods", 300), "nodes[1].podCIDR", "kubelet admits up to 300 (maxPods)"),
    "featureGates unknown": Bad(
        _section("kubelet", "featureGates", {"GracefulNodeShutdwn": True}), "kubelet.featureGates.GracefulNodeShutdwn",
        "not a feature gate of kubelet v1.30; did you mean GracefulNodeShutdown?",
    ),
    "featureGates locked": Bad(
        _section("kubelet", "featureGates", {"CPUManager": False}), "kubelet.featureGates.CPUManager",
        "false: the gate is GA and locked to true in kubelet v1.30",
    ),
    "featureGates not a bool": Bad(_section("kubelet", "featureGates", {"NodeSwap": "true"}), "kubelet.featureGates.NodeSwap", "(got 'true')"),
    "serializeImagePulls not a bool": Bad(_section("kubelet", "serializeImagePulls", "false"), "kubelet.serializeImagePulls", "(got 'false')"),
    "serializeImagePulls true with maxParallelImagePulls 4": Bad(
        lambda raw: raw["kubelet"].update(serializeImagePulls=True, config={"maxParallelImagePulls": 4}),
        "kubelet.config.maxParallelImagePulls", "4: the kubelet refuses more than 1 with kubelet.serializeImagePulls: true",
    ),
    "cpuManagerPolicy Static (the CPU manager's is lowercase)": Bad(
        _section("kubelet", "cpuManagerPolicy", "Static"), "kubelet.cpuManagerPolicy", "(got 'Static')"
    ),
    "cpuManagerPolicy static without a CPU reservation": Bad(
        lambda raw: (raw["kubelet"].__setitem__("cpuManagerPolicy", "static"),
                     raw["reservations"].update(systemReserved={"memory": "256Mi"}, kubeReserved={"memory": "1024Mi"})),
        "kubelet.cpuManagerPolicy",
        "'static' needs a CPU reservation, and nodes[0] (k8s-master), nodes[1] (k8s-node1), nodes[2] (k8s-node2) reserve none",
    ),
    "memoryManagerPolicy static (the memory manager's is capitalised)": Bad(
        _section("kubelet", "memoryManagerPolicy", "static"), "kubelet.memoryManagerPolicy", "(got 'static')"
    ),
    "memoryManagerPolicy Static with a percentage memory threshold": Bad(
        lambda raw: (raw["kubelet"].__setitem__("memoryManagerPolicy", "Static"),
                     raw["reservations"].__setitem__("evictionHard", {"memory.available": "5%"})),
        "kubelet.memoryManagerPolicy", "evictionHard memory.available is '5%'",
    ),
    "reservedMemory not adding up": Bad(
        lambda raw: (raw["kubelet"].__setitem__("memoryManagerPolicy", "Static"),
                     raw["reservations"].__setitem__("reservedMemory", [{"numaNode": 0, "limits": {"memory": "1Gi"}}])),
        "reservations.reservedMemory",
        "the entries add up to 1073741824 bytes (1024Mi) but systemReserved + kubeReserved memory + evictionHard memory.available are 1447034880 bytes (1380Mi) on nodes[0]",
    ),
    "a node's reservedMemory not adding up": Bad(
        lambda raw: (raw["kubelet"].__setitem__("memoryManagerPolicy", "Static"),
                     raw["nodes"][1].__setitem__("reservations", {"reservedMemory": [{"numaNode": 0, "limits": {"memory": "1Gi"}}]})),
        "nodes[1].reservations.reservedMemory", "on nodes[1] (k8s-node1);",
    ),
    "reservedMemory without Static": Bad(
        _section("reservations", "reservedMemory", [{"numaNode": 0, "limits": {"memory": "1380Mi"}}]),
        "reservations.reservedMemory", "used only with kubelet.memoryManagerPolicy: Static",
    ),
    "reservedMemory hugepages": Bad(
        _section("reservations", "reservedMemory", [{"numaNode": 0, "limits": {"hugepages-2Mi": "2Mi"}}]),
        "reservations.reservedMemory[0].limits", "'hugepages-2Mi': only memory can be reserved here",
    ),
    "reservedMemory NUMA node twice": Bad(
        _section("reservations", "reservedMemory", [{"numaNode": 0, "limits": {"memory": "1Gi"}}, {"numaNode": 0, "limits": {"memory": "356Mi"}}]),
        "reservations", "reservedMemory: NUMA node 0 is listed twice",
    ),
    "kubelet.config unknown field": Bad(
        _section("kubelet", "config", {"podPidLimit": 1024}), "kubelet.config.podPidLimit",
        "not a KubeletConfiguration (v1beta1) field of kubelet v1.30; did you mean podPidsLimit?",
    ),
    "kubelet.config runtimeCgroups (a flag, not a field)": Bad(
        _section("kubelet", "config", {"runtimeCgroups": "/x.slice"}), "kubelet.config.runtimeCgroups", "not a KubeletConfiguration (v1beta1) field"
    ),
    "kubelet.config field of a typed setting": Bad(
        _section("kubelet", "config", {"maxPods": 50}), "kubelet.config.maxPods",
        "cannot be set here: the program renders it from a typed setting: use kubelet.maxPods or nodes[].maxPods",
    ),
    "kubelet.config evictionHard": Bad(
        _section("kubelet", "config", {"evictionHard": {"memory.available": "1Gi"}}), "kubelet.config.evictionHard", "use reservations.evictionHard"
    ),
    "kubelet.config authorization": Bad(
        _section("kubelet", "config", {"authorization": {"mode": "AlwaysAllow"}}), "kubelet.config.authorization", "use kubelet.authMode"
    ),
    "kubelet.config tlsCertFile": Bad(
        _section("kubelet", "config", {"tlsCertFile": "/tmp/c.pem"}), "kubelet.config.tlsCertFile", "the node certificate the credentials step writes"
    ),
    "kubelet.config reservedSystemCPUs": Bad(
        _section("kubelet", "config", {"reservedSystemCPUs": "0"}), "kubelet.config.reservedSystemCPUs", "the kubelet refuses it together with kubeReservedCgroup"
    ),
    "kubelet.config podCIDR": Bad(
        _section("kubelet", "config", {"podCIDR": "10.200.0.0/16"}), "kubelet.config.podCIDR", "cannot be set here: the kubelet uses it only in standalone mode"
    ),
    "kubelet.config kind": Bad(_section("kubelet", "config", {"kind": "Other"}), "kubelet.config.kind", "the program writes it"),
    "kubelet.config wrong type": Bad(_section("kubelet", "config", {"podPidsLimit": "many"}), "kubelet.config.podPidsLimit", "'many' is not a whole number (int64)"),
    "kubelet.config int32 overflow": Bad(_section("kubelet", "config", {"port": 2**31}), "kubelet.config.port", "2147483648 is not a whole number (int32)"),
    "kubelet.config duration": Bad(
        _section("kubelet", "config", {"nodeStatusUpdateFrequency": "10"}), "kubelet.config.nodeStatusUpdateFrequency", "'10' is not a duration"
    ),
    "kubelet.config bool": Bad(_section("kubelet", "config", {"enableServer": "yes"}), "kubelet.config.enableServer", "'yes' is not true or false"),
    "kubelet.config nested field": Bad(
        _section("kubelet", "config", {"shutdownGracePeriodByPodPriority": [{"priority": 1, "shutdownGracePeriodSecond": 10}]}),
        "kubelet.config.shutdownGracePeriodByPodPriority[0].shutdownGracePeriodSecond",
        "not a field of ShutdownGracePeriodByPodPriority in kubelet v1.30; did you mean shutdownGracePeriodSeconds?",
    ),
    "kubelet.config evictionSoft without a grace period": Bad(
        _section("kubelet", "config", {"evictionSoft": {"memory.available": "300Mi"}}), "kubelet.config.evictionSoft.memory.available",
        "the kubelet refuses a soft threshold without a grace period: add kubelet.config.evictionSoftGracePeriod.memory.available",
    ),
    "kubelet.config evictionSoft threshold": Bad(
        _section("kubelet", "config", {"evictionSoft": {"memory.available": "300MB"}, "evictionSoftGracePeriod": {"memory.available": "1m"}}),
        "kubelet.config.evictionSoft.memory.available", "'300MB' is neither a quantity (100Mi) nor a percentage (10%)",
    ),
    "kubelet.config eviction signal": Bad(
        _section("kubelet", "config", {"evictionMinimumReclaim": {"memory.availble": "500Mi"}}), "kubelet.config.evictionMinimumReclaim.memory.availble",
        "not an eviction signal of the kubelet; did you mean memory.available?",
    ),
    "kubelet.config evictionMinimumReclaim 0%": Bad(
        _section("kubelet", "config", {"evictionMinimumReclaim": {"memory.available": "0%"}}), "kubelet.config.evictionMinimumReclaim.memory.available",
        "'0%': the kubelet wants a positive share",
    ),
    "kubelet.config logging.verbosity": Bad(
        _section("kubelet", "config", {"logging": {"verbosity": 4}}), "kubelet.config.logging.verbosity", "use kubelet.logVerbosity"
    ),
    "kubelet.config for a release without a table": Bad(
        lambda raw: (raw["kubernetes"].__setitem__("version", "v1.31.0"), raw["kubelet"].__setitem__("config", {"podPidsLimit": 1})),
        "kubelet.config", "kubernetes.version v1.31.0: this program has the KubeletConfiguration of v1.30 only",
    ),
}
FIRST_ISSUE_12_CASE = "extraArgs value with a newline"


@pytest.mark.parametrize("case", BAD_CASES.values(), ids=list(BAD_CASES))
def test_bad_input_names_the_key_path_and_the_value(case: Bad) -> None:
    raw = homelab_config()
    case.mutate(raw)
    problems = _errors(raw, case.secrets)
    matching = [problem for problem in problems if _names_path(problem, case.path)]
    assert matching, f"no problem names {case.path}: {problems}"
    if case.value is None:
        assert any(re.search(r"unknown key|required", problem) for problem in matching), matching
    else:
        assert any(case.value in problem for problem in matching), f"{case.value} not quoted in {matching}"


def test_at_least_25_distinct_bad_cases() -> None:
    assert len(BAD_CASES) >= 25
    assert len({case.path for case in BAD_CASES.values()}) >= 25


def test_at_least_60_cases_of_what_the_real_components_reject_or_misread() -> None:
    names = list(BAD_CASES)
    assert len(names[names.index(FIRST_ISSUE_12_CASE):]) >= 60


def test_every_problem_is_reported_at_once() -> None:
    raw = homelab_config()
    raw["kubernetes"]["version"] = "1.30"
    raw["ssh"]["port"] = 0
    raw["reservations"]["kubeReserved"]["memory"] = "1GB"
    raw["nodes"][0]["arch"] = "mips"
    raw["nodes"][2]["podCIDR"] = "10.200.1.0/24"
    problems = _errors(raw)
    for path, value in [
        ("kubernetes.version", "'1.30'"),
        ("ssh.port", "0"),
        ("reservations.kubeReserved.memory", "'1GB'"),
        ("nodes[0].arch", "'mips'"),
        ("nodes[2].podCIDR", "'10.200.1.0/24'"),
    ]:
        assert any(problem.startswith(f"{path}: ") and value in problem for problem in problems), (path, problems)
    assert len(problems) == 5, problems


def test_overlaps_are_reported_against_every_other_node() -> None:
    raw = homelab_config()
    raw["nodes"][2]["podCIDR"] = "10.200.0.0/16"
    problems = _errors(raw)
    assert [problem for problem in problems if problem.startswith("nodes[2].podCIDR: ")] == [
        "nodes[2].podCIDR: '10.200.0.0/16' overlaps nodes[0].podCIDR '10.200.0.0/24'",
        "nodes[2].podCIDR: '10.200.0.0/16' overlaps nodes[1].podCIDR '10.200.1.0/24'",
    ]


def test_overlap_sweep_finds_exactly_the_overlapping_pairs() -> None:
    """The sorted sweep against comparing every pair, on random nested and disjoint networks."""
    rng = random.Random(7)
    for _ in range(50):
        cidrs = []
        for _ in range(rng.randint(2, 25)):
            if rng.random() < 0.2:
                prefix = rng.randint(100, 124)
                network = ipaddress.ip_network((rng.getrandbits(8) << 120, prefix), strict=False)
            else:
                prefix = rng.randint(14, 26)
                network = ipaddress.ip_network((10 << 24 | rng.getrandbits(12) << 12, prefix), strict=False)
            cidrs.append(str(network))
        pairs = {
            (later, earlier)
            for later, first in enumerate(cidrs)
            for earlier, second in enumerate(cidrs[:later])
            if ipaddress.ip_network(first).overlaps(ipaddress.ip_network(second))
        }
        found = pod_cidr_overlaps(list(enumerate(cidrs)))
        assert {(later, earlier) for later, items in found.items() for _, earlier, _ in items} == pairs, cidrs
        for later, items in found.items():
            assert [earlier for _, earlier, _ in items] == sorted(earlier for _, earlier, _ in items)
            assert all(cidr == cidrs[later] and other == cidrs[earlier] for cidr, earlier, other in items)


# --- known bugs in components/settings/ -----------------------------------------------------


def test_one_bad_cluster_dns_entry_is_one_problem() -> None:
    raw = homelab_config()
    raw["kubernetes"]["clusterDNS"] = ["10.32.0.300"]
    assert _errors(raw) == ["kubernetes.clusterDNS[0]: '10.32.0.300' is not an IP address"]


def test_unknown_eviction_signal_path() -> None:
    raw = homelab_config()
    raw["reservations"]["evictionHard"] = {"memory.avail": "100Mi"}
    problems = _errors(raw)
    assert any(problem.startswith("reservations.evictionHard") and "'memory.avail'" in problem for problem in problems)
    assert not any("[key]" in problem for problem in problems), problems


def test_none_combined_quotes_the_list() -> None:
    raw = homelab_config()
    raw["reservations"]["enforceNodeAllocatable"] = ["none", "pods"]
    assert any("['none', 'pods']" in problem for problem in _errors(raw))


@pytest.mark.parametrize("port", ["2222", True], ids=["string", "bool"])
def test_port_must_be_a_number(port: object) -> None:
    raw = homelab_config()
    raw["nodes"][1]["port"] = port
    assert any(problem.startswith("nodes[1].port: ") for problem in _errors(raw))


@pytest.mark.parametrize(
    ("section", "index", "key", "value", "path"),
    [
        ("nodes", 1, "name", "k8s-node1\n", "nodes[1].name"),
        ("kubernetes", None, "apiServer", "https://k8s-master:6443\n", "kubernetes.apiServer"),
        ("kubernetes", None, "containerRuntimeEndpoint", "unix:///run/containerd/containerd.sock\n",
         "kubernetes.containerRuntimeEndpoint"),
    ],
    ids=["node name", "apiServer", "runtime endpoint"],
)
def test_trailing_newline_is_rejected(section: str, index: int | None, key: str, value: str, path: str) -> None:
    raw = homelab_config()
    target = raw[section][index] if index is not None else raw[section]
    target[key] = value
    assert any(problem.startswith(f"{path}: ") for problem in _errors(raw))


@pytest.mark.parametrize("key", ["node-role.kubernetes.io/worker", "kubernetes.io/role", "example.k8s.io/x"])
def test_labels_the_kubelet_refuses_are_rejected(key: str) -> None:
    raw = homelab_config()
    raw["nodes"][1]["labels"] = {key: ""}
    assert any(problem.startswith("nodes[1].labels") and repr(key) in problem for problem in _errors(raw))


def test_labels_the_kubelet_accepts() -> None:
    raw = homelab_config()
    labels = {
        "node.kubernetes.io/pool": "a",
        "kubelet.kubernetes.io/x": "b",
        "topology.kubernetes.io/zone": "rack-1",
        "kubernetes.io/arch": "arm64",
        "example.com/gpu": "",
        "plain": "yes",
    }
    raw["nodes"][1]["labels"] = labels
    assert parse_settings(raw).nodes[1].labels == labels


def test_quantity_with_trailing_newline_is_rejected() -> None:
    raw = homelab_config()
    raw["reservations"]["systemReserved"]["memory"] = "256Mi\n"
    assert any(problem.startswith("reservations.systemReserved.memory: ") for problem in _errors(raw))


def _openssh_public_key(private: Any) -> str:
    return str(private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode())


def test_ed25519_and_ecdsa_host_keys_can_be_pinned() -> None:
    keys = [ED25519_KEY] + [
        _openssh_public_key(ec.generate_private_key(curve)) for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())
    ]
    for key in keys:
        raw = homelab_config()
        raw["nodes"][1]["hostKey"] = key
        assert _parse(raw).node("k8s-node1").host_key == key


def test_a_truncated_ecdsa_host_key_is_refused() -> None:
    # The kind of key this file once accepted: the type and curve, but no point.
    raw = homelab_config()
    raw["nodes"][1]["hostKey"] = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY="
    assert any(problem.startswith("nodes[1].hostKey: ") and "not a whole" in problem for problem in _errors(raw))


# --- issue 12: accepted edges ----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://[fd00::1]:6443", "https://[fd00::1]", "https://10.0.0.1:6443/",
                                 "https://k8s-master"])
def test_api_server_urls_that_are_valid(url: str) -> None:
    raw = homelab_config()
    raw["kubernetes"]["apiServer"] = url
    assert _parse(raw).kubernetes.api_server == url.rstrip("/")


def test_ipv6_cluster_with_ipv6_dns() -> None:
    raw = homelab_config()
    raw["kubernetes"].update(apiServer="https://[fd00::1]:6443", clusterDNS=["fd00:10::a"])
    for index, node in enumerate(raw["nodes"]):
        node["podCIDR"] = f"fd00:200:{index}::/64"
    settings = _parse(raw)
    assert settings.kubernetes.cluster_dns == ("fd00:10::a",)


@pytest.mark.parametrize(("text", "nanoseconds"), [
    ("1m30s", 90 * 10**9), ("15m", 900 * 10**9), ("1.5h", 5400 * 10**9), ("500ms", 5 * 10**8), (".5s", 5 * 10**8),
    ("1h2m3s4ms5us6ns", 3723004005006), ("2562047h", 2562047 * 3600 * 10**9),
])
def test_go_durations(text: str, nanoseconds: int) -> None:
    assert go_duration_ns(text) == nanoseconds
    raw = homelab_config()
    raw["kubelet"]["runtimeRequestTimeout"] = text
    assert _parse(raw).kubelet.runtime_request_timeout == text


@pytest.mark.parametrize("text", ["1m30", "1.s.", "s", "", "1 m", "2562048h", "1d"])
def test_what_go_refuses_as_a_duration(text: str) -> None:
    with pytest.raises(ValueError):
        go_duration_ns(text)


def test_a_63_character_label_name_and_a_253_character_prefix() -> None:
    prefix = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(prefix) == 253
    raw = homelab_config()
    raw["nodes"][1]["labels"] = {"n" * 63: "v" * 63, f"{prefix}/x": ""}
    raw["nodes"][1]["taints"] = [{"key": "n" * 63, "effect": "NoSchedule"}, {"key": "n" * 63, "effect": "NoExecute"}]
    node = _parse(raw).node("k8s-node1")
    assert "n" * 63 in node.labels and len(node.taints) == 2


def test_a_52_character_node_name_fits_the_certificate() -> None:
    raw = homelab_config()
    raw["nodes"][1]["name"] = "n" * 52
    node = _parse(raw).nodes[1]
    assert len(node.cert_common_name) == 64


@pytest.mark.parametrize("threshold", ["99.9%", "0.5%", "1", "100Mi"])
def test_eviction_thresholds_the_kubelet_takes(threshold: str) -> None:
    raw = homelab_config()
    raw["reservations"]["evictionHard"] = {"memory.available": threshold}
    assert _parse(raw).reservations.eviction_hard == {"memory.available": threshold}


def test_eviction_thresholds_keep_the_kubelets_defaults_under_the_stacks_keys() -> None:
    # The kubelet drops all its defaults when evictionHard names one key (kubernetes/kubernetes#112057):
    # the rendered map keeps them, the stack's keys over them, "0%" switching one off.
    raw = homelab_config()
    raw["reservations"]["evictionHard"] = {"memory.available": "500Mi", "imagefs.inodesFree": "0%", "pid.available": "10%"}
    assert _parse(raw).reservations.eviction_thresholds == {
        "memory.available": "500Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%",
        "imagefs.available": "15%", "imagefs.inodesFree": "0%", "pid.available": "10%",
    }
    del raw["reservations"]["evictionHard"]
    assert _parse(raw).reservations.eviction_thresholds["memory.available"] == "100Mi"


def test_a_pinned_digest_allows_a_plain_http_mirror() -> None:
    raw = homelab_config()
    raw["kubernetes"].update(downloadBaseUrl="http://10.0.2.2:18080", kubeletSha256={"arm64": {"v1.30.1": "ab" * 32}})
    settings = _parse(raw)
    assert settings.kubernetes.pinned_sha256("arm64") == "ab" * 32
    assert settings.kubernetes.pinned_sha256("amd64") is None


def test_extra_args_the_kubelet_takes_pass_verbatim() -> None:
    # Flags that are not KubeletConfiguration fields, or configuration flags the kubelet keeps.
    raw = homelab_config()
    args = {"provider-id": "", "vmodule": "eviction_manager=4", "log-flush-frequency": "5s",
            "cloud-provider": "external", "lock-file": "/run/lock/kubelet.lock"}
    raw["nodes"][1]["extraArgs"] = args
    assert _parse(raw).node("k8s-node1").extra_args == args


def test_node_ip_and_rollout() -> None:
    raw = homelab_config()
    raw["nodes"][1]["nodeIP"] = "fd00:0::11"
    raw["rollout"] = {"maxParallel": 1.0}  # YAML numbers may arrive as floats
    settings = _parse(raw)
    assert settings.node("k8s-node1").node_ip == "fd00::11"
    assert settings.node("k8s-node2").node_ip is None
    assert settings.rollout.max_parallel == 1
    assert _parse(homelab_config()).rollout.max_parallel is None


def test_max_pods_per_node_over_the_stack() -> None:
    raw = homelab_config()
    raw["kubelet"]["maxPods"] = 200
    raw["nodes"][1]["maxPods"] = 50
    raw["nodes"][1]["podCIDR"] = "10.200.1.0/26"  # 61 addresses: enough for 50 pods
    raw["nodes"][0]["podCIDR"] = "10.200.2.0/23"  # 509 addresses: enough for 200 pods
    raw["nodes"][2]["podCIDR"] = "10.200.4.0/23"
    settings = _parse(raw)
    assert [node.max_pods for node in settings.nodes] == [200, 50, 200]
    assert _parse(homelab_config()).nodes[0].pods_allowed == 110  # the kubelet's default


def test_typed_kubelet_settings_the_kubelet_takes() -> None:
    raw = homelab_config()
    raw["kubelet"].update(
        shutdownGracePeriod="60s", shutdownGracePeriodCriticalPods="20s", failSwapOn=False,
        memorySwap={"swapBehavior": "NoSwap"}, imageGCHighThresholdPercent=90, imageMinimumGCAge="1m30s",
        containerLogMaxSize="50Mi", containerLogMaxFiles=2, featureGates={"CPUManager": True, "AllAlpha": False},
        cpuManagerPolicy="static", memoryManagerPolicy="Static",
        config={"port": 10251.0, "logging": {"format": "text"}, "evictionSoft": {"memory.available": "300Mi"},
                "evictionSoftGracePeriod": {"memory.available": "0s"}, "evictionMinimumReclaim": {"nodefs.available": "5%"}},
    )
    raw["reservations"]["reservedMemory"] = [{"numaNode": 0, "limits": {"memory": "1Gi"}},
                                             {"numaNode": 1, "limits": {"memory": "356Mi"}}]
    kubelet = _parse(raw).kubelet
    assert kubelet.shutdown_grace_period_seconds() == 60
    # A whole float from the stack's JSON goes into the file as an int (the kubelet's int32).
    assert kubelet.config["port"] == 10251 and isinstance(kubelet.config["port"], int)


def test_staticpodpath_of_its_own_and_systemcgroups_unset() -> None:
    raw = homelab_config()
    raw["kubelet"].update(staticPodPath="/etc/kubernetes/manifests", systemCgroups="")
    assert _parse(raw).kubelet.static_pod_path == "/etc/kubernetes/manifests"


# --- host keys from known_hosts ----------------------------------------------------------------------


def _resolve(raw: Raw, known_hosts: str) -> tuple[Settings, list[str]]:
    return resolve_host_keys(_parse(raw), lambda path: known_hosts)


def test_known_hosts_plain_hashed_ports_patterns_and_markers() -> None:
    key = {name: _openssh_public_key(ed25519.Ed25519PrivateKey.generate()) for name in ("a", "b", "c", "d", "e")}
    salt = b"0123456789abcdefghij"
    hashed = base64.b64encode(hmac.new(salt, b"[k8s-node1]:2222", hashlib.sha1).digest()).decode()
    known_hosts = "\n".join([
        "# comment", "",
        f"k8s-master,10.0.0.1 {key['a']} root@k8s-master",
        f"|1|{base64.b64encode(salt).decode()}|{hashed} {key['b']}",
        f"k8s-node1 {key['e']}",  # port 22: not the node's entry
        f"@revoked k8s-node2 {key['c']}",
        f"k8s-node2 {key['c']}",
        f"k8s-node* {key['d']}",
        f"!k8s-master,k8s-* {key['e']}",
        f"@cert-authority * {key['e']}",
        "garbage line",
    ])
    raw = homelab_config()
    raw["nodes"][1]["port"] = 2222
    settings, warnings = _resolve(raw, known_hosts)
    assert [node.host_key for node in settings.nodes] == [key["a"], key["b"], key["d"]]
    assert warnings == []


def test_known_hosts_prefers_ed25519_and_skips_rsa() -> None:
    ecdsa_key = _openssh_public_key(ec.generate_private_key(ec.SECP256R1()))
    lines = ["k8s-master ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7", f"k8s-master {ecdsa_key}",
             f"k8s-node1 {ED25519_KEY}", f"k8s-node1 {ecdsa_key}", f"k8s-node2 {ecdsa_key}"]
    settings, _ = _resolve(homelab_config(), "\n".join(lines))
    assert [node.host_key for node in settings.nodes] == [ecdsa_key, ED25519_KEY, ecdsa_key]
    with pytest.raises(SettingsError) as caught:
        _resolve(homelab_config(), "k8s-master ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7\n")
    problems = _problems(caught.value)
    assert problems[0].startswith("nodes[0].hostKey: no host key for k8s-master") and "(ssh-rsa)" in problems[0]
    assert len(problems) == 3


def test_hashed_entries_as_ssh_keygen_writes_them(tmp_path: Any) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen is missing: apt-get install -y openssh-client (scripts/setup does)")
    known = tmp_path / "known_hosts"
    known.write_text(f"k8s-master {ED25519_KEY}\n[k8s-node1]:2222 {ED25519_KEY}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    keys = [known_host_keys(known.read_text(), host, port) for host, port in
            (("k8s-master", 22), ("k8s-node1", 2222), ("k8s-node1", 22), ("K8S-MASTER", 22))]
    assert keys == [[ED25519_KEY], [ED25519_KEY], [], [ED25519_KEY]]


def test_no_known_key_is_refused_unless_insecure() -> None:
    raw = homelab_config()
    raw["nodes"][0]["hostKey"] = ED25519_KEY
    with pytest.raises(SettingsError) as caught:
        _resolve(raw, "")
    problems = _problems(caught.value)
    assert [problem.split(":")[0] for problem in problems] == ["nodes[1].hostKey", "nodes[2].hostKey"]
    assert "ssh.knownHostsFile '~/.ssh/known_hosts': it has no entry for k8s-node1" in problems[0]
    raw["ssh"]["insecureIgnoreHostKey"] = True
    settings, warnings = _resolve(raw, "")
    assert [node.host_key for node in settings.nodes] == [ED25519_KEY, None, None]
    assert len(warnings) == 2 and "NOT verified" in warnings[0]


@pytest.mark.parametrize("stack", ["lab", "lab-arm64"])
def test_the_lab_stack_reads_the_known_hosts_the_lab_writes(stack: str, tmp_path: Any, monkeypatch: Any) -> None:
    from lab import api as lab_api
    from lab import paths as lab_paths

    layout = next(layout for layout in lab_paths.LAYOUTS if layout.stack == stack)
    monkeypatch.setenv("HOMELAB_KUBELET_CACHE", str(tmp_path))
    layout.dir.mkdir(parents=True)
    nodes = [lab_api.Node(name=name, port=port, pid=0, console_log="", overlay="",
                          host_keys=[_openssh_public_key(ed25519.Ed25519PrivateKey.generate())])
             for name, port in layout.nodes]
    lab_api._write_known_hosts(nodes, layout)
    raw = load_stack_config(layout.stack_file)
    home_cache = Path("~/.cache/homelab-kubelet")
    assert raw["ssh"]["knownHostsFile"] == str(home_cache / layout.known_hosts_path.relative_to(tmp_path))
    raw["ssh"]["knownHostsFile"] = str(layout.known_hosts_path)
    # Both lab stacks import the lab's CA: scripts/up, README's session and the e2e harness set its secrets.
    settings, warnings = resolve_host_keys(parse_settings(raw, frozenset({"caCertPem", "caKeyPem"})))
    assert [node.host_key for node in settings.nodes] == [node.host_keys[0] for node in nodes]
    assert warnings == []
    assert settings.pki.import_ca
