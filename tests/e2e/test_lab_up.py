"""End to end: `pulumi up --stack lab` for real (CLI, plugins, kubelet) on the lab VMs.

The tests of a module run in order against one stack per cgroup mode: fresh up, no-op
preview and up, a reservation change, a version change, a sudo user, a node removed, destroy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pulumi import automation as auto

from components.quantities import to_bytes
from lab import api as lab
from tests.e2e.harness import NODES, LabStack, kubelet_start_stamp, node_ssh, reset_nodes
from tests.toolchain import require_kubelet

pytestmark = pytest.mark.e2e

NEW_VERSION = "v1.30.2"


@pytest.fixture(scope="module", params=["v2", "v1"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    require_kubelet("v1.30.1", "amd64")
    require_kubelet(NEW_VERSION, "amd64")
    info = lab.up(cgroup=request.param)
    lab.mirror_sync()
    reset_nodes()
    lab_stack = LabStack(tmp_path_factory.mktemp(f"e2e-{request.param}"), info)
    lab_stack.cgroup = request.param  # type: ignore[attr-defined]
    yield lab_stack
    reset_nodes()


def memory_limit(node: str, slice_name: str, cgroup: str) -> int:
    path = (
        f"/sys/fs/cgroup/{slice_name}/memory.max" if cgroup == "v2"
        else f"/sys/fs/cgroup/memory/{slice_name}/memory.limit_in_bytes"
    )
    return int(node_ssh(node, f"cat {path}"))


def reservations(stack: LabStack, node_index: int) -> tuple[int, int]:
    config = stack.config_object("reservations")
    override = stack.config_object("nodes")[node_index].get("reservations", {})
    kube = {**config["kubeReserved"], **override.get("kubeReserved", {})}
    system = {**config["systemReserved"], **override.get("systemReserved", {})}
    return to_bytes(kube["memory"]), to_bytes(system["memory"])


def test_fresh_up_converges(stack: LabStack) -> None:
    # The journal is read from here on: earlier modules may have run failing kubelets on this boot.
    since = {node: node_ssh(node, "date +%s") for node in NODES}
    run = stack.up()
    assert run.changed(), "a fresh up creates resources"
    cgroup = stack.cgroup  # type: ignore[attr-defined]
    for index, node in enumerate(NODES):
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"
        assert node_ssh(node, "systemctl is-enabled kubelet.service") == "enabled"
        assert node_ssh(node, "systemctl show -p ControlGroup --value kubelet.service") == "/kube.slice/kubelet.service"
        assert node_ssh(node, "systemctl show -p ControlGroup --value containerd.service") == "/kube.slice/containerd.service"
        assert node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz") == "ok"
        modes = node_ssh(
            node,
            f"stat -c '%n %a %U' /var/lib/kubelet/{node}-key.pem /var/lib/kubelet/kubeconfig "
            f"/var/lib/kubelet/{node}.pem /var/lib/kubernetes/ca.pem /var/lib/kubelet/kubelet-config.yaml",
        ).splitlines()
        assert modes == [
            f"/var/lib/kubelet/{node}-key.pem 600 root",
            "/var/lib/kubelet/kubeconfig 600 root",
            f"/var/lib/kubelet/{node}.pem 644 root",
            "/var/lib/kubernetes/ca.pem 644 root",
            "/var/lib/kubelet/kubelet-config.yaml 644 root",
        ]
        subject = node_ssh(node, f"openssl x509 -in /var/lib/kubelet/{node}.pem -noout -subject -nameopt RFC2253")
        assert f"CN=system:node:{node}" in subject and "O=system:nodes" in subject
        sans = node_ssh(node, f"openssl x509 -in /var/lib/kubelet/{node}.pem -noout -ext subjectAltName")
        assert f"DNS:{node}" in sans and "IP Address:10.0.2.15" in sans
        verify = node_ssh(node, f"openssl verify -CAfile /var/lib/kubernetes/ca.pem /var/lib/kubelet/{node}.pem")
        assert verify.endswith(": OK")
        kube_bytes, system_bytes = reservations(stack, index)
        assert memory_limit(node, "kube.slice", cgroup) == kube_bytes
        assert memory_limit(node, "system.slice", cgroup) == system_bytes
        journal = node_ssh(node, f"journalctl -u kubelet.service --since @{since[node]} --no-pager -o cat")
        assert "strict decoding failed" not in journal
        assert "Failed to start ContainerManager" not in journal
        assert not re.search(r"^F\d{4} ", journal, re.MULTILINE)


def test_preview_after_up_has_no_changes(stack: LabStack) -> None:
    run, result = stack.preview()
    assert run.changed() == {}
    assert set(result.change_summary) <= {auto.OpType.SAME}


def test_second_up_runs_nothing_and_restarts_nothing(stack: LabStack) -> None:
    before = {node: kubelet_start_stamp(node) for node in NODES}
    run = stack.up()
    assert run.changed() == {}
    assert {node: kubelet_start_stamp(node) for node in NODES} == before


def test_reservation_change_restarts_that_node_only(stack: LabStack) -> None:
    before = {node: kubelet_start_stamp(node) for node in NODES}
    stack.set("nodes[1].reservations.kubeReserved.memory", "320Mi")
    run, result = stack.preview(diff=True)
    # Two remote steps on that node: preflight checks the new reservations fit, then the
    # configuration is written and the kubelet restarted.
    assert run.changed() == {"k8s-node1-preflight": "update", "k8s-node1-configure-and-start": "update"}
    assert "320Mi" in result.stdout
    stack.up()
    after = {node: kubelet_start_stamp(node) for node in NODES}
    assert after["k8s-node1"] != before["k8s-node1"]
    assert after["k8s-master"] == before["k8s-master"]
    assert after["k8s-node2"] == before["k8s-node2"]
    assert memory_limit("k8s-node1", "kube.slice", stack.cgroup) == 320 * 2**20  # type: ignore[attr-defined]
    assert "memory: 320Mi" in node_ssh("k8s-node1", "cat /var/lib/kubelet/kubelet-config.yaml")


def test_version_change_replaces_the_binary(stack: LabStack) -> None:
    before = {node: kubelet_start_stamp(node) for node in NODES}
    stack.set("kubernetes.version", NEW_VERSION)
    run = stack.up()
    assert run.changed() == {
        f"{node}-{step}": "update" for node in NODES for step in ("install-kubelet", "configure-and-start")
    }
    for node in NODES:
        assert node_ssh(node, "/usr/bin/kubelet --version") == f"Kubernetes {NEW_VERSION}"
        assert kubelet_start_stamp(node) != before[node]
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"


def test_sudo_user_works_as_well_as_root(stack: LabStack) -> None:
    stack.set("ssh.user", "kube")
    stack.up()
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"
    stack.set("ssh.user", "root")
    stack.up()


def test_removing_a_node_cleans_it_and_leaves_the_others(stack: LabStack) -> None:
    before = {node: kubelet_start_stamp(node) for node in NODES}
    nodes = stack.config_object("nodes")
    stack.set_object("nodes", nodes[:2])
    stack.up()
    assert lab.ssh("k8s-node2", "systemctl is-active kubelet.service").stdout.strip() != "active"
    assert lab.ssh("k8s-node2", "systemctl is-enabled kubelet.service").stdout.strip() != "enabled"
    leftovers = node_ssh(
        "k8s-node2",
        "ls -d /usr/bin/kubelet /var/lib/kubelet/kubeconfig /var/lib/kubelet/kubelet-config.yaml "
        "/etc/systemd/system/kubelet.service /var/lib/kubernetes/ca.pem 2>/dev/null || true",
    )
    assert leftovers == ""
    for node in ("k8s-master", "k8s-node1"):
        assert kubelet_start_stamp(node) == before[node]


def test_destroy_exclude_protected_keeps_the_ca(stack: LabStack) -> None:
    stack.destroy(exclude_protected=True)
    for node in ("k8s-master", "k8s-node1"):
        assert lab.ssh(node, "systemctl is-active kubelet.service").stdout.strip() != "active"
        assert node_ssh(node, "ls /var/lib/kubelet/kubeconfig /usr/bin/kubelet 2>/dev/null || true") == ""
    deployment = stack.stack.export_stack().deployment or {}
    resources = deployment["resources"]
    kept = sorted(r["urn"].rsplit("::", 1)[1] for r in resources if r.get("protect"))
    assert kept == ["cluster-ca-cert", "cluster-ca-key"]


def test_plain_destroy_stops_at_the_protected_ca(stack: LabStack) -> None:
    with pytest.raises(auto.errors.CommandError) as failure:
        stack.destroy()
    assert "protected" in str(failure.value)


def test_no_private_key_material_outside_encrypted_secrets(stack: LabStack) -> None:
    # The state file (secrets are ciphertext there) and every engine event of every operation
    # of this module, which carry the commands' inputs, stdout and stderr.
    state = stack.state_text()
    assert "PRIVATE KEY" not in state
    events = stack.event_log()
    assert events, "the event log was recorded"
    assert "PRIVATE KEY" not in events
