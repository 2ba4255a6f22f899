"""End to end on the emulated arm64 node: `pulumi up --stack lab-arm64` for real (CLI, plugins,
the arm64 kubelet from the arm64 layout's own mirror server, the lab's control plane) on k8s-node3.

Marked ``arm64``: deselected unless asked for (tests/conftest.py); `scripts/test-arm64` runs it.
The stack is run by the CLI in a copy of the project (tests/workspace.py, through the harness's
LabStack, as tests/e2e/test_lab_up.py does), and imports the lab control plane's CA
(pki.importCa). That control plane is the three-node lab's: the module uses a running one, else
brings the three-node lab up with it (`lab.up()`; stopped again at the end unless it was up
before, or LAB_KEEP=1). The tests run in order against one stack: fresh up (preflight facts, the
arm64 download, a healthy kubelet in kube.slice with the reservations enforced), the node in the
control plane (registered under its name, arm64, the API server reaching its kubelet through the
relay at 127.0.0.5, a pod CIDR), a no-op re-apply, a wrong `arch` refused by preflight before
anything is written, destroy.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components import node_scripts
from components.quantities import to_bytes
from lab import api as lab
from lab import control_plane as lab_control_plane
from lab import health, paths
from tests.e2e.harness import (
    LabStack,
    control_plane,
    forget_registered_nodes,
    kubectl,
    kubectl_json,
    kubelet_start_stamp,
    node_ssh,
    reset_nodes,
)
from tests.toolchain import require_kubelet

pytestmark = [pytest.mark.e2e, pytest.mark.arm64]

NODE = "k8s-node3"
VERSION = "v1.30.1"
# The controller manager allocates a node's pod CIDR within seconds of its registration.
POD_CIDR_TIMEOUT = 60


def _running(info: lab.LabInfo | None) -> bool:
    return info is not None and all(lab.health(info).values())


@pytest.fixture(scope="module")
def cp() -> Iterator[lab_control_plane.ControlPlane]:
    """The three-node lab's control plane, which k8s-node3 joins (its mode kept when it runs)."""
    state = lab.status()
    was_up = _running(state)
    info = lab.up(cgroup=state.cgroup if state is not None and was_up else "v2")
    yield control_plane(info)
    if not was_up and os.environ.get("LAB_KEEP") != "1":
        lab.down()


@pytest.fixture(scope="module")
def stack(cp: lab_control_plane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    require_kubelet(VERSION, "arm64")
    was_up = _running(lab.status(paths.ARM64))
    info = lab.up(layout=paths.ARM64)
    lab.mirror_sync()
    reset_nodes([NODE])
    # A Node of an earlier run goes: the fresh up registers it anew (the amd64 nodes stay).
    forget_registered_nodes(cp, [NODE])
    yield LabStack(tmp_path_factory.mktemp("e2e-arm64"), info, stack=paths.ARM64.stack)
    reset_nodes([NODE])
    forget_registered_nodes(cp, [NODE])
    if not was_up and os.environ.get("LAB_KEEP") != "1":
        lab.down(layout=paths.ARM64)


def pinned_digest(stack: LabStack) -> str:
    return str(stack.config_object("kubernetes")["kubeletSha256"]["arm64"][VERSION])


def node_object(cp: lab_control_plane.ControlPlane) -> dict[str, Any]:
    items = kubectl_json(cp, "get", "nodes")["items"]
    found = [item for item in items if item["metadata"]["name"] == NODE]
    assert found, f"{NODE} is not registered: {[item['metadata']['name'] for item in items]}"
    return dict(found[0])


def test_fresh_up_converges_on_arm64(stack: LabStack) -> None:
    since = node_ssh(NODE, "date +%s")
    run = stack.up()
    assert run.changed(), "a fresh up creates resources"
    # Preflight's facts (the stack's `nodes` output): the node's own arch, as read on the node.
    facts = stack.nodes_output()[NODE]["facts"]
    assert (facts["node"], facts["arch"]) == (NODE, "arm64")
    assert facts["kernel"].endswith("-arm64") and facts["cgroupVersion"] == "v2"
    # Install: the arm64 binary from the layout's mirror, checked against the pinned digest.
    url = f"{paths.ARM64.mirror_url_guest}/{VERSION}/bin/linux/arm64/kubelet"
    digest = pinned_digest(stack)
    assert node_ssh(NODE, "sha256sum /usr/bin/kubelet").split()[0] == digest
    assert node_ssh(NODE, "/usr/bin/kubelet --version") == f"Kubernetes {VERSION}"
    served = (paths.mirror_root() / VERSION / "bin/linux/arm64/kubelet.sha256").read_text()
    assert served == digest
    assert f'"GET /{VERSION}/bin/linux/arm64/kubelet HTTP/1.1" 200' in paths.ARM64.mirror_log.read_text()
    install_log = stack.step_output(f"{NODE}-{node_scripts.INSTALL_KUBELET}", "stderr")
    assert f"[{NODE}] installed kubelet {VERSION} (arm64) from {url}, sha256 {digest}" in install_log
    # A healthy kubelet in kube.slice with the reservations enforced.
    sample = health.sample(node_ssh(NODE, health.show_command("kubelet.service")),
                           node_ssh(NODE, "curl -fsS http://127.0.0.1:10248/healthz"))
    assert health.is_running(sample.active_state) and sample.healthz == "ok"
    assert node_ssh(NODE, "systemctl show -p ControlGroup --value kubelet.service") == "/kube.slice/kubelet.service"
    assert node_ssh(NODE, "systemctl show -p ControlGroup --value containerd.service") == "/kube.slice/containerd.service"
    reservations = stack.config_object("reservations")
    assert int(node_ssh(NODE, "cat /sys/fs/cgroup/kube.slice/memory.max")) == to_bytes(
        reservations["kubeReserved"]["memory"])
    assert int(node_ssh(NODE, "cat /sys/fs/cgroup/system.slice/memory.max")) == to_bytes(
        reservations["systemReserved"]["memory"])
    kubelet_journal = node_ssh(NODE, f"journalctl -u kubelet.service --since @{since} --no-pager -o cat")
    assert "Failed to start ContainerManager" not in kubelet_journal
    assert not re.search(r"^F\d{4} ", kubelet_journal, re.MULTILINE)


def test_the_node_joins_the_labs_control_plane(stack: LabStack, cp: lab_control_plane.ControlPlane) -> None:
    # The configure step's own report, asked with the node's credentials (CA imported: no warning).
    report = stack.step_output(f"{NODE}-{node_scripts.CONFIGURE_AND_START}", "stderr")
    assert f"[{NODE}] registered: the API server {paths.API_SERVER_URL} has node {NODE}" in report, report
    assert "WARNING" not in report, report
    node = node_object(cp)
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["Hostname"] == NODE, addresses
    assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSION
    assert node["status"]["nodeInfo"]["architecture"] == "arm64"
    assert node["metadata"]["labels"]["kubernetes.io/arch"] == "arm64"
    # The API server reaches the kubelet by name: k8s-node3 resolves to 198.18.0.5 in its
    # namespace, the relay carries that to 127.0.0.5:10250, qemu to the VM (secure mode: Webhook).
    assert paths.kubelet_forward_address(NODE) == "127.0.0.5"
    resolved = lab_control_plane.in_apiserver_namespace(cp, "getent", "hosts", NODE)
    assert resolved.stdout.split() == ["198.18.0.5", NODE], resolved.stderr
    running = json.loads(kubectl(cp, "get", "--raw", f"/api/v1/nodes/{NODE}/proxy/configz"))["kubeletconfig"]
    rendered = yaml.safe_load(node_ssh(NODE, "cat /var/lib/kubelet/kubelet-config.yaml"))
    for key in ("systemReserved", "kubeReserved", "enforceNodeAllocatable", "cgroupDriver"):
        assert running[key] == rendered[key], key
    assert running["authentication"]["anonymous"]["enabled"] is False
    assert running["authorization"]["mode"] == "Webhook"
    # A pod CIDR from the controller manager, within the cluster CIDR that covers every lab node's.
    facts = lab_control_plane.lab_facts()
    deadline = time.monotonic() + POD_CIDR_TIMEOUT
    while not (cidr := node_object(cp)["spec"].get("podCIDR", "")):
        assert time.monotonic() < deadline, f"{NODE}: no spec.podCIDR within {POD_CIDR_TIMEOUT}s"
        time.sleep(2)
    network = ipaddress.ip_network(cidr)
    assert network.prefixlen == facts.node_cidr_mask_size and network.subnet_of(facts.cluster_cidr)  # type: ignore[arg-type]


def test_second_up_runs_nothing_and_restarts_nothing(stack: LabStack) -> None:
    before = kubelet_start_stamp(NODE)
    run = stack.up()
    assert run.changed() == {}
    assert kubelet_start_stamp(NODE) == before


def test_wrong_arch_fails_preflight(stack: LabStack) -> None:
    stack.fresh_nodes()
    stack.set("nodes[0].arch", "amd64")
    try:
        with pytest.raises(auto.errors.CommandError) as failure:
            stack.up()
    finally:
        stack.set("nodes[0].arch", "arm64")
    message = str(failure.value)
    assert f"ERROR [{NODE}] preflight: arch: the node is aarch64 (arm64) but the stack says arch: amd64" in message
    assert node_ssh(NODE, "ls /var/lib/kubelet /usr/bin/kubelet /etc/systemd/system/kubelet.service "
                          "2>/dev/null || true") == ""


def test_destroy_removes_what_the_program_wrote(stack: LabStack) -> None:
    stack.up()
    stack.destroy(exclude_protected=True)
    # What the program wrote is gone (the kubelet's own runtime dirs under /var/lib/kubelet stay).
    assert node_ssh(NODE, "ls -d /usr/bin/kubelet /var/lib/kubelet/kubeconfig /var/lib/kubelet/kubelet-config.yaml "
                          "/etc/systemd/system/kubelet.service /var/lib/kubernetes/ca.pem 2>/dev/null || true") == ""
    assert lab.ssh(NODE, "systemctl is-active kubelet.service").stdout.strip() != "active"
    assert node_ssh(NODE, "systemctl is-active containerd") == "active"
