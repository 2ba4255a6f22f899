"""End to end: `pulumi up --stack lab` for real (CLI, plugins, kubelet) on the lab VMs.

The tests of a module run in order against one stack per cgroup mode: fresh up, no-op
preview and up, a stack from before the triggers were dropped, a reservation change, a version
change, re-issued certificates, `--replace` of every step, an edit of the scripts and hints, a
sudo user, a node removed, destroy. What pulumi-command does on a replacement (the new create,
then the old delete with the old inputs) is what breaks nodes, so every change checks that each
kubelet is active afterwards and was started exactly as often as what it runs on changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pulumi import automation as auto

from components import node_scripts
from components.quantities import to_bytes
from lab import api as lab
from tests.e2e.harness import (
    COMMAND_TYPE,
    NODES,
    LabStack,
    kubelet_start_stamp,
    kubelet_starts,
    node_clock,
    node_ssh,
    reset_nodes,
)
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


def assert_running_after(since: dict[str, int], starts: dict[str, int]) -> None:
    """Every kubelet active (and not mid-restart), started exactly `starts[node]` times."""
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active", node
        assert node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz") == "ok", node
        assert kubelet_starts(node, since[node]) == starts[node], node


def test_a_stack_from_before_triggers_were_dropped_updates_in_place(stack: LabStack) -> None:
    # Earlier versions of this program gave configure-and-start `triggers`; dropping them would
    # be a replacement, and the old delete would unconfigure the node. They are ignored instead.
    exported = stack.stack.export_stack()
    deployment = dict(exported.deployment or {})
    for resource in deployment["resources"]:
        if resource["type"] == COMMAND_TYPE and resource["urn"].endswith(f"-{node_scripts.CONFIGURE_AND_START}"):
            old = ["kubelet=v1.30.1/amd64", "credentials=0123456789abcdef"]
            resource["inputs"] = {**resource["inputs"], "triggers": old}
            resource["outputs"] = {**resource["outputs"], "triggers": old}
    stack.stack.import_stack(auto.Deployment(version=exported.version, deployment=deployment))
    run, result = stack.preview()
    assert run.changed() == {}
    assert set(result.change_summary) <= {auto.OpType.SAME}


def test_reservation_change_restarts_that_node_only(stack: LabStack) -> None:
    since = {node: node_clock(node) for node in NODES}
    before = {node: kubelet_start_stamp(node) for node in NODES}
    stack.set("nodes[1].reservations.kubeReserved.memory", "320Mi")
    run, result = stack.preview(diff=True)
    # Two remote steps on that node: preflight checks the new reservations fit, then the
    # configuration is written and the kubelet restarted.
    assert run.changed() == {f"k8s-node1-{step}": "update" for step in (node_scripts.PREFLIGHT, node_scripts.CONFIGURE_AND_START)}
    assert "320Mi" in result.stdout
    stack.up()
    after = {node: kubelet_start_stamp(node) for node in NODES}
    assert after["k8s-node1"] != before["k8s-node1"]
    assert after["k8s-master"] == before["k8s-master"]
    assert after["k8s-node2"] == before["k8s-node2"]
    assert memory_limit("k8s-node1", "kube.slice", stack.cgroup) == 320 * 2**20  # type: ignore[attr-defined]
    assert "memory: 320Mi" in node_ssh("k8s-node1", "cat /var/lib/kubelet/kubelet-config.yaml")
    assert_running_after(since, {"k8s-master": 0, "k8s-node1": 1, "k8s-node2": 0})


def test_version_change_installs_the_binary_and_restarts_each_kubelet_once(stack: LabStack) -> None:
    since = {node: node_clock(node) for node in NODES}
    stack.set("kubernetes.version", NEW_VERSION)
    # Preflight runs again: it checks the new version against the API server's (version skew).
    upgrade_steps = (node_scripts.PREFLIGHT, node_scripts.INSTALL_KUBELET, node_scripts.CONFIGURE_AND_START)
    run, result = stack.preview(diff=True)
    assert run.changed() == {f"{node}-{step}": "update" for node in NODES for step in upgrade_steps}
    assert f"kubelet {NEW_VERSION} (amd64)" in result.stdout  # the configure step's note, readable
    run = stack.up()
    assert run.changed() == {f"{node}-{step}": "update" for node in NODES for step in upgrade_steps}
    for node in NODES:
        assert node_ssh(node, "/usr/bin/kubelet --version") == f"Kubernetes {NEW_VERSION}"
        assert stack.step_stdout(f"{node}-{node_scripts.CONFIGURE_AND_START}").endswith(
            "kubelet restarted: changed since it started: /usr/bin/kubelet"
        )
    assert_running_after(since, dict.fromkeys(NODES, 1))


def test_reissued_certificates_reach_every_kubelet_with_one_restart(stack: LabStack) -> None:
    # pulumi-tls re-issues every certificate on early renewal; a new SAN forces the same here.
    since = {node: node_clock(node) for node in NODES}
    nodes = stack.config_object("nodes")
    for node in nodes:
        node["ips"] = [*node.get("ips", []), "10.0.2.16"]
    stack.set_object("nodes", nodes)
    run = stack.up()
    for node in NODES:
        assert run.changed()[f"{node}-{node_scripts.CREDENTIALS}"] == "update"
        assert run.changed()[f"{node}-{node_scripts.CONFIGURE_AND_START}"] == "update"
        sans = node_ssh(node, f"openssl x509 -in /var/lib/kubelet/{node}.pem -noout -ext subjectAltName")
        assert "IP Address:10.0.2.16" in sans, sans
        report = stack.step_stdout(f"{node}-{node_scripts.CONFIGURE_AND_START}")
        assert f"/var/lib/kubelet/{node}.pem" in report and report.startswith("kubelet restarted"), report
    assert_running_after(since, dict.fromkeys(NODES, 1))


def test_replacing_every_step_keeps_every_kubelet(stack: LabStack) -> None:
    # `pulumi up --replace`: each new create runs, then each old delete with the old inputs.
    since = {node: node_clock(node) for node in NODES}
    steps = [r["urn"] for r in stack.resources() if r["type"] == COMMAND_TYPE]
    assert len(steps) == len(node_scripts.STEP_NAMES) * len(NODES)
    run = stack.up(replace=steps)
    sequences = run.op_sequence()
    for step in steps:
        # create-before-delete: the new create, then the old delete at the end of the same up
        ops = sequences[step.rsplit("::", 1)[1]]
        assert ops.index("create-replacement") < ops.index("delete-replaced"), (step, ops)
    for node in NODES:
        for step in node_scripts.WRITING_STEPS:
            assert node_ssh(node, f"cat /var/lib/homelab-kubelet/holders/{step}") == "1", (node, step)
        assert node_ssh(node, "ls /usr/bin/kubelet /var/lib/kubelet/kubeconfig /etc/systemd/system/kubelet.service")
        assert stack.step_stdout(f"{node}-{node_scripts.CONFIGURE_AND_START}").endswith("kubelet not restarted: nothing it runs on "
                                                                         "changed since it started")
    assert_running_after(since, dict.fromkeys(NODES, 0))
    assert stack.preview()[0].changed() == {}


def test_an_edit_of_a_hint_or_a_script_comment_restarts_no_kubelet(stack: LabStack) -> None:
    # The language host runs the copy's __main__.py: edit what it renders there, as a new version
    # of this project would (a hint's text, a comment in a step script).
    since = {node: node_clock(node) for node in NODES}
    hints_py = stack.project / "components" / "hints.py"
    script = stack.project / "components" / "node_steps" / "start-kubelet.sh"
    original_hints, original_script = hints_py.read_text(), script.read_text()
    edited_hints = original_hints.replace('fix: {entry.fix}"', 'fix: {entry.fix}\\n    (edited)"')
    assert edited_hints != original_hints, "hint_text changed shape: adjust this edit"
    hints_py.write_text(edited_hints)
    script.write_text(original_script + "# an edited comment\n")
    try:
        run = stack.up()
    finally:
        hints_py.write_text(original_hints)
        script.write_text(original_script)
    assert run.changed() == {f"{node}-{node_scripts.CONFIGURE_AND_START}": "update" for node in NODES}
    run = stack.up()
    assert run.changed() == {f"{node}-{node_scripts.CONFIGURE_AND_START}": "update" for node in NODES}
    assert_running_after(since, dict.fromkeys(NODES, 0))


def test_sudo_user_works_as_well_as_root(stack: LabStack) -> None:
    since = {node: node_clock(node) for node in NODES}
    stack.set("ssh.user", "kube")
    run = stack.up()
    # A different user is a different command line (sudo): every step reruns, as that user.
    assert set(run.changed().values()) == {"update"} and len(run.changed()) == len(node_scripts.STEP_NAMES) * len(NODES)
    for node in NODES:
        journal = node_ssh(node, f"journalctl --since @{since[node]} -o cat --no-pager SYSLOG_IDENTIFIER=sudo")
        assert "kube : " in journal and "USER=root ; COMMAND=/usr/bin/bash -c" in journal, journal[-2000:]
    stack.set("ssh.user", "root")
    stack.up()
    assert_running_after(since, dict.fromkeys(NODES, 0))


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
