"""Faults proved on the lab with the real engine (issue: preflight, health check, catalogue).

Each case breaks one thing on purpose and asserts the program's own message: the node, what is
wrong and the fix, before anything is written (preflight) or with the kubelet's journal and
a catalogue hint (health check).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pulumi import automation as auto

from components import node_scripts
from lab import api as lab
from tests.e2e.harness import NODES, LabStack, node_ssh, reset_nodes
from tests.toolchain import require_kubelet

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    require_kubelet("v1.30.1", "amd64")
    info = lab.up(cgroup="v2")
    lab.mirror_sync()
    reset_nodes()
    yield LabStack(tmp_path_factory.mktemp("faults"), info)
    reset_nodes()


@pytest.fixture
def converged(stack: LabStack) -> LabStack:
    """All three nodes applied (a no-op when the case before left them so)."""
    stack.up()
    return stack


def failed_up(stack: LabStack, continue_on_error: bool = False) -> str:
    with pytest.raises(auto.errors.CommandError) as failure:
        stack.up(continue_on_error=continue_on_error)
    return str(failure.value)


def nothing_written(node: str) -> bool:
    return node_ssh(node, "ls /var/lib/kubelet /usr/bin/kubelet /etc/systemd/system/kubelet.service 2>/dev/null || true") == ""


def test_stopped_container_runtime_fails_preflight(stack: LabStack) -> None:
    stack.fresh_nodes()
    node_ssh("k8s-node1", "systemctl stop containerd.service containerd.socket 2>/dev/null || systemctl stop containerd")
    try:
        message = failed_up(stack)
    finally:
        node_ssh("k8s-node1", "systemctl start containerd")
    assert "ERROR [k8s-node1] preflight: container runtime socket" in message
    assert "systemctl status containerd" in message
    assert nothing_written("k8s-node1")


def test_wrong_arch_fails_preflight(stack: LabStack) -> None:
    stack.fresh_nodes()
    stack.set("nodes[2].arch", "arm64")
    try:
        message = failed_up(stack)
    finally:
        stack.set("nodes[2].arch", "amd64")
    assert "ERROR [k8s-node2] preflight: arch: the node is x86_64 (amd64) but the stack says arch: arm64" in message
    assert nothing_written("k8s-node2")


def test_reservation_below_usage_fails_preflight_not_the_kubelet(stack: LabStack) -> None:
    stack.fresh_nodes()
    stack.set("nodes[0].reservations.systemReserved.memory", "8Mi")
    try:
        message = failed_up(stack)
    finally:
        stack.set_object("nodes", [{**n, "reservations": {}} if n["name"] == "k8s-master" else n
                                 for n in stack.config_object("nodes")])
    assert "ERROR [k8s-master] preflight: reservations: systemReserved memory (8Mi) is below what system.slice uses now" in message
    assert "device or resource busy" in message
    assert nothing_written("k8s-master")


def test_unreachable_node_fails_alone_and_converges_later(stack: LabStack) -> None:
    stack.fresh_nodes()
    nodes = stack.config_object("nodes")
    stack.set_object("nodes", [{**n, "port": 2299} if n["name"] == "k8s-node1" else n for n in nodes])
    try:
        # `pulumi up --continue-on-error`: without it the engine starts no new step after the
        # first failure, and the healthy nodes would be left half done.
        message = failed_up(stack, continue_on_error=True)
        # The provider's own dial failure, naming the unreachable port (in no command text).
        assert re.search(r"after \d+ failed attempts: .*127\.0\.0\.1:2299", message), message[-3000:]
        for node in ("k8s-master", "k8s-node2"):
            assert node_ssh(node, "systemctl is-active kubelet.service") == "active"
    finally:
        stack.set_object("nodes", nodes)
    stack.up()
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"


def test_kubelet_that_cannot_start_fails_the_health_check_with_a_hint(converged: LabStack) -> None:
    stack = converged
    unit = "/etc/systemd/system/kubelet.service"
    before = node_ssh("k8s-node2", f"sha256sum {unit}")
    # An image service endpoint where nothing listens is fatal at start (v1.30 validates the CRI
    # image API before it runs). Flags that override the rendered configuration, such as
    # kube-reserved-cgroup, are refused at preview (tests/test_settings.py).
    stack.set("nodes[2].extraArgs.image-service-endpoint", "unix:///run/homelab-kubelet-missing.sock")
    try:
        message = failed_up(stack)
        # The failed step put the node back as the state still describes it: the previous unit,
        # the kubelet running again.
        assert node_ssh("k8s-node2", f"sha256sum {unit}") == before
        assert node_ssh("k8s-node2", "systemctl is-active kubelet.service") == "active"
    finally:
        stack.set_object("nodes", [{**n, "extraArgs": {}} if n["name"] == "k8s-node2" else n
                                 for n in stack.config_object("nodes")])
    assert "ERROR [k8s-node2]: kubelet" in message
    assert "last lines of journalctl -u kubelet.service" in message
    assert "validate CRI v1 image API" in message
    assert "hint: Container runtime socket missing" in message
    assert "rolled back: put back the" in message
    # Node and state agree again, so with the flag gone there is nothing to do.
    assert stack.up().changed() == {}
    assert node_ssh("k8s-node2", "systemctl is-active kubelet.service") == "active"


def test_interrupted_write_leaves_no_half_written_file(converged: LabStack) -> None:
    stack = converged
    # The configure-and-start bundle cut short, as when an apply dies mid-write: the script fails and
    # the file it was writing keeps its old content; the next `up` converges.
    config = "/var/lib/kubelet/kubelet-config.yaml"
    before = node_ssh("k8s-node1", f"sha256sum {config}")
    script = stack.stack.export_stack().deployment or {}
    configure = next(
        r for r in script["resources"] if r["urn"].endswith(f"::k8s-node1-{node_scripts.CONFIGURE_AND_START}")
    )
    command = configure["inputs"]["create"]
    # The step's stdin: its scripts (as many bytes as the command reads), then the bundle, cut short.
    scripts = configure["inputs"]["stdin"].encode()[: sum(int(n) for n in re.findall(r"read -rN (\d+) ", command))]
    truncated = f"@@@ homelab-kubelet file {config} 0644\nkind: KubeletConfiguration\n"
    result = lab.ssh("k8s-node1", command, input=scripts.decode() + truncated)
    assert result.returncode != 0
    assert "has no end marker" in str(result.stderr)
    assert node_ssh("k8s-node1", f"sha256sum {config}") == before
    assert node_ssh("k8s-node1", "ls -a /var/lib/kubelet | grep -c '^\\.kubelet-config' || true") == "0"
    stack.up()
    assert node_ssh("k8s-node1", "systemctl is-active kubelet.service") == "active"
