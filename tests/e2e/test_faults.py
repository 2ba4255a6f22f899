"""Faults proved on the lab with the real engine (issue: preflight, health check, catalogue).

Each case breaks one thing on purpose and asserts the program's own message: the node, what is
wrong and the fix, before anything is written (preflight) or with the kubelet's journal and
a catalogue hint (health check).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from components import node_scripts
from lab import api as lab
from lab import control_plane as lab_control_plane
from tests.e2e.harness import NODES, LabStack, Run, kubelet_start_stamp, node_clock, node_ssh, reset_nodes
from tests.toolchain import require_kubelet

pytestmark = pytest.mark.e2e

FAULT_HEALTH_TIMEOUT = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    require_kubelet("v1.30.1", "amd64")
    info = lab.up(cgroup="v2")
    lab.mirror_sync()
    reset_nodes()
    lab_stack = LabStack(tmp_path_factory.mktemp("faults"), info)
    # A lab kubelet is healthy within seconds; the cases whose kubelet never gets there then
    # wait 60 s rather than the default 180 s (the message and the rollback are the same).
    lab_stack.set_object("kubelet", {**lab_stack.config_object("kubelet"), "healthTimeoutSeconds": FAULT_HEALTH_TIMEOUT})
    yield lab_stack
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


def test_preflight_refuses_each_broken_node_before_writing(stack: LabStack) -> None:
    """Three nodes, each broken its own way, in one `up`: `--continue-on-error` lets every node's
    preflight run to its verdict, and each names its node, what is wrong and the fix."""
    stack.fresh_nodes()
    node_ssh("k8s-node1", "systemctl stop containerd.service containerd.socket 2>/dev/null || systemctl stop containerd")
    stack.set("nodes[2].arch", "arm64")
    stack.set("nodes[0].reservations.systemReserved.memory", "8Mi")
    try:
        message = failed_up(stack, continue_on_error=True)
    finally:
        node_ssh("k8s-node1", "systemctl start containerd")
        stack.set("nodes[2].arch", "amd64")
        stack.set_object("nodes", [{**n, "reservations": {}} if n["name"] == "k8s-master" else n
                                 for n in stack.config_object("nodes")])
    # k8s-node1: the container runtime is down.
    assert "ERROR [k8s-node1] preflight: container runtime socket" in message
    assert "systemctl status containerd" in message
    # k8s-node2: the stack's arch is not the node's.
    assert "ERROR [k8s-node2] preflight: arch: the node is x86_64 (amd64) but the stack says arch: arm64" in message
    # k8s-master: a reservation the running system already exceeds (the kubelet would fail later).
    assert "ERROR [k8s-master] preflight: reservations: systemReserved memory (8Mi) is below what system.slice uses now" in message
    assert "device or resource busy" in message
    for node in NODES:
        assert nothing_written(node), node


def test_kubelet_that_cannot_start_fails_the_health_check_with_a_hint_and_stops_the_rollout(converged: LabStack) -> None:
    stack = converged
    unit = "/etc/systemd/system/kubelet.service"
    files = f"{unit} /var/lib/kubelet/kubelet-config.yaml"
    before = {node: node_ssh(node, f"sha256sum {files}") for node in NODES}
    started = {node: kubelet_start_stamp(node) for node in NODES}
    # An image service endpoint where nothing listens is fatal at start (v1.30 validates the CRI
    # image API before it runs); it is a KubeletConfiguration field, so kubelet.config sets it (a
    # deprecated flag in nodes[].extraArgs, and flags that override the rendered configuration,
    # such as kube-reserved-cgroup, are refused at preview: tests/test_settings.py). The broken
    # setting goes to every node, one node at a time (rollout.maxParallel: 1, in the stack's
    # order): the first node, k8s-master, fails its health check and the change reaches no other.
    kubelet = stack.config_object("kubelet")
    stack.set_object("rollout", {"maxParallel": 1})
    stack.set("kubelet.config.imageServiceEndpoint", "unix:///run/homelab-kubelet-missing.sock")
    try:
        message = failed_up(stack)
        ran = stack.runs[-1].ops()
        # The failed step put k8s-master back as the state still describes it: the previous unit,
        # the kubelet running again.
        assert node_ssh("k8s-master", f"sha256sum {files}") == before["k8s-master"]
        assert node_ssh("k8s-master", "systemctl is-active kubelet.service") == "active"
        # The other nodes were not touched: no step of theirs that writes started, and their
        # kubelets kept running on what they ran before.
        for node in ("k8s-node1", "k8s-node2"):
            for step in node_scripts.WRITING_STEPS:
                assert f"{node}-{step}" not in ran, (node, step, ran)
            assert node_ssh(node, f"sha256sum {files}") == before[node]
            assert "homelab-kubelet-missing" not in node_ssh(node, f"cat {files}")
            assert kubelet_start_stamp(node) == started[node], node
    finally:
        stack.set_object("kubelet", kubelet)
        stack.set_object("rollout", {})
    assert f"k8s-master-{node_scripts.CONFIGURE_AND_START}" in ran
    assert "ERROR [k8s-master]: kubelet" in message
    assert "last lines of journalctl -u kubelet.service" in message
    assert "validate CRI v1 image API" in message
    assert "hint: Container runtime socket missing" in message
    assert "rolled back: put back the" in message
    # Node and state agree again, so with the field gone there is nothing to do (the rollout setting
    # changes only the order of the steps, not what they run).
    assert stack.up().changed() == {}
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"


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


# --- node-side faults: a full disk, a dropped connection, two runs at once -----------------------

UNIT = "/etc/systemd/system/kubelet.service"


def set_label(stack: LabStack, node_index: int, value: str) -> None:
    stack.set(f"nodes[{node_index}].labels.homelab-kubelet/fault-case", value)


class Watcher(threading.Thread):
    """A command on a node, run in the background; its result is in `.result` once joined."""

    def __init__(self, node: str, command: str, timeout: int) -> None:
        super().__init__()
        self.node, self.command, self.timeout = node, command, timeout
        self.result: subprocess.CompletedProcess[str] | None = None

    def run(self) -> None:
        self.result = lab.ssh(self.node, self.command, timeout=self.timeout)


def drop_connection_when(node: str, condition: str, timeout: int = 400) -> Watcher:
    """Watch `node` for a configure-and-start update (its pid is in the project's lock file) and,
    once `condition` (shell) holds, kill the sshd session process that runs it: the connection
    drops as it would on a network fault, and the step sees it at its next write."""
    watcher = (
        "started=$(systemctl show -p ExecMainStartTimestampMonotonic --value kubelet); "
        f"for _ in $(seq 1 {timeout * 10}); do "
        "holder=$(cat /var/lib/homelab-kubelet/lock 2>/dev/null || true); "
        'case "$holder" in "configure-and-start (update)"*) '
        'pid=${holder##*pid }; '
        # The step runs under the login shell that runs the command: kill the sshd session above.
        f"if {condition}; then p=$pid; while [ -n \"$p\" ] && [ \"$p\" != 1 ]; do "
        "p=$(ps -o ppid= -p \"$p\" | tr -d ' '); "
        'case "$(ps -o cmd= -p "$p")" in "sshd: "*@*) kill -9 "$p"; echo dropped; exit 0 ;; esac; done; fi ;; esac; '
        "sleep 0.1; done; echo 'watcher: condition never held'; exit 1"
    )
    thread = Watcher(node, watcher, timeout + 60)
    thread.start()
    return thread


def test_full_disk_and_dropped_connections_leave_the_previous_configuration(converged: LabStack) -> None:
    stack = converged
    node, index = "k8s-node1", 1
    before = node_ssh(node, f"sha256sum {UNIT}")
    started = kubelet_start_stamp(node)
    set_label(stack, index, "one")
    try:
        # A full /: the step fails with its own message; the unit and the running kubelet stay.
        try:
            # Every free block, the ones reserved for root too (the steps run as root).
            node_ssh(node, "fallocate -l $(( $(stat -f -c '%f*%S' /) - 67108864 )) /fill && "
                           "{ dd if=/dev/zero of=/fill2 bs=1M 2>/dev/null; dd if=/dev/zero of=/fill3 bs=4k 2>/dev/null; "
                           "sync; } || true")
            message = failed_up(stack)
        finally:
            node_ssh(node, "rm -f /fill /fill2 /fill3")
        assert re.search(r"ERROR \[k8s-node1\]: cannot [^\n]*is it full\?|is its filesystem full\?", message), message[-3000:]
        assert node_ssh(node, f"sha256sum {UNIT}") == before
        assert kubelet_start_stamp(node) == started
        # No temp file and no rollback copy left behind.
        assert node_ssh(node, "find /etc/systemd/system /var/lib/homelab-kubelet -maxdepth 1 -name '.*' | wc -l") == "0"

        # The connection drops while configure writes, then while the kubelet is health-checked.
        for when, condition in (
            ("configure", f'[ "$(sha256sum {UNIT})" != "{before}" ]'),
            # The kubelet was restarted (its start time, read when the watcher starts, changed).
            ("health check", '[ "$(systemctl show -p ExecMainStartTimestampMonotonic --value kubelet)" != "$started" ]'),
        ):
            since = node_clock(node)
            watcher = drop_connection_when(node, condition)
            message = failed_up(stack)
            watcher.join()
            assert watcher.result is not None and "dropped" in watcher.result.stdout, (when, watcher.result)
            # The step notices at its next write and rolls back under the node lock: wait for it.
            node_ssh(node, "flock -w 300 /var/lib/homelab-kubelet/lock true")
            # The node rolled back by itself: the previous unit, the kubelet active on it, and a
            # journal line saying so (nobody read the step's stderr).
            assert node_ssh(node, f"sha256sum {UNIT}") == before, when
            assert node_ssh(node, "systemctl is-active kubelet.service") == "active", when
            journal = node_ssh(node, f"journalctl -t homelab-kubelet --since @{since} -o cat --no-pager")
            assert "configure-and-start on k8s-node1 failed" in journal and "rolled back" in journal, (when, journal)
            assert node_ssh(node, "ls -a /var/lib/homelab-kubelet | grep -c '^\\.rollback' || true") == "0"
        # The next `up` converges: the label is applied.
        stack.up()
        assert "homelab-kubelet/fault-case=one" in node_ssh(node, f"cat {UNIT}")
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"
    finally:
        stack.set_object("nodes", [{k: v for k, v in n.items() if k != "labels"} for n in stack.config_object("nodes")])


def test_two_stacks_applying_to_one_node_at_once_take_turns(converged: LabStack, tmp_path: Path) -> None:
    """Two backends (a person's and a CI job's) that both name k8s-node1. One backend would not
    do: Pulumi itself locks a stack while an update runs."""
    first = converged
    second = LabStack(tmp_path, first.info)
    node, index = "k8s-node1", 1
    second.set_object("nodes", [n for n in second.config_object("nodes") if n["name"] == node])
    second.set("nodes[0].hostKey", first.info.node(node).host_key("ssh-ed25519"))
    set_label(first, index, "first")
    set_label(second, 0, "second")
    runs: dict[str, Run | Exception] = {}

    def apply(name: str, stack: LabStack) -> None:
        try:
            runs[name] = stack.up()
        except auto.errors.CommandError as error:
            runs[name] = error

    try:
        threads = [threading.Thread(target=apply, args=item) for item in (("first", first), ("second", second))]
        threads[0].start()
        # The second starts once the first's configure-and-start holds the node (for ~40 s).
        node_ssh(node, "for _ in $(seq 1 3000); do case \"$(cat /var/lib/homelab-kubelet/lock 2>/dev/null)\" in "
                       "'configure-and-start (update)'*) ! flock -n /var/lib/homelab-kubelet/lock true && exit 0 ;; esac; "
                       "sleep 0.1; done; exit 1")
        threads[1].start()
        for thread in threads:
            thread.join()
        # The node lock made one wait for the other: both succeed, and one says it waited.
        finished: dict[str, int] = {}
        stderr: list[str] = []
        for name, run in runs.items():
            assert isinstance(run, Run), (name, str(run)[-3000:])
            for event in run.events:
                outputs = event.res_outputs_event
                if outputs is None or outputs.metadata.new is None or f"::{node}-" not in outputs.metadata.urn:
                    continue
                stderr.append(str((outputs.metadata.new.outputs or {}).get("stderr", "")))
                if outputs.metadata.urn.endswith(f"::{node}-configure-and-start"):
                    finished[name] = event.timestamp
        assert set(finished) == {"first", "second"}, finished
        assert any("waiting up to 600s for another homelab-kubelet run on this node (configure-and-start (update)"
                   in text for text in stderr), stderr
        # The node holds what the configure that ran last wrote, whole.
        last = max(finished, key=lambda name: finished[name])
        assert f"homelab-kubelet/fault-case={last}" in node_ssh(node, f"cat {UNIT}")
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"
    finally:
        first.set_object("nodes", [{k: v for k, v in n.items() if k != "labels"} for n in first.config_object("nodes")])
    # No way back to the first stack's credentials is needed: the next case starts from bare nodes.


def ca_pem() -> str:
    """The stack's CA: the lab control plane's, which the lab stack imports (pki.importCa)."""
    return lab_control_plane.lab_pki().ca_pems()[0]


def test_unreachable_node_fails_alone_and_what_the_project_did_not_write_survives(stack: LabStack) -> None:
    """Runs last in this module: it ends with a destroy. One fresh apply serves two cases: a node
    that cannot be reached fails alone while the others converge, and hand-built files survive
    node removal and destroy."""
    ca = ca_pem()
    stack.fresh_nodes()
    # k8s-master as in Kubernetes the Hard Way: the cluster CA and an API server unit naming it.
    node_ssh("k8s-master", f"mkdir -p /var/lib/kubernetes && printf %s {shlex.quote(ca)} >/var/lib/kubernetes/ca.pem && "
             "printf '[Service]\\nExecStart=/usr/local/bin/kube-apiserver --client-ca-file=/var/lib/kubernetes/ca.pem\\n'"
             " >/etc/systemd/system/kube-apiserver.service")
    # k8s-node2 built by hand before: its own kubelet binary and unit, the operator's containerd
    # config (runc without SystemdCgroup), and a hostname JSON must escape.
    node_ssh("k8s-node2", "printf '#!/bin/sh\\necho runbook kubelet\\n' >/usr/bin/kubelet && chmod 0755 /usr/bin/kubelet && "
             "printf '[Service]\\nExecStart=/usr/bin/kubelet --runbook\\n' >/etc/systemd/system/kubelet.service && "
             "{ echo '# the operator'\"'\"'s containerd config'; containerd config default; } >/etc/containerd/config.toml && "
             "systemctl restart containerd && "
             # hostname(1) refuses such a name; the kernel takes it.
             "printf %s 'k8s\"node\\2' >/proc/sys/kernel/hostname")
    planted = {path: node_ssh("k8s-node2", f"sha256sum {path}")
               for path in ("/usr/bin/kubelet", UNIT, "/etc/containerd/config.toml")}
    nodes = stack.config_object("nodes")
    try:
        stack.set_object("nodes", [{**n, "port": 2299} if n["name"] == "k8s-node1" else n for n in nodes])
        # `pulumi up --continue-on-error`: without it the engine starts no new step after the
        # first failure, and the healthy nodes would be left half done.
        message = failed_up(stack, continue_on_error=True)
        # The provider's own dial failure, naming the unreachable port (in no command text).
        assert re.search(r"after \d+ failed attempts: .*127\.0\.0\.1:2299", message), message[-3000:]
        for node in ("k8s-master", "k8s-node2"):
            assert node_ssh(node, "systemctl is-active kubelet.service") == "active", node
        # The unreachable node back: the next `up` converges it.
        stack.set_object("nodes", nodes)
        stack.up()
        for node in NODES:
            assert node_ssh(node, "systemctl is-active kubelet.service") == "active", node
        # The stack's outputs are those of its last successful update: this one.
        # The facts JSON carries the odd hostname through to the `nodes` output.
        summary = stack.stack.outputs()["nodes"].value
        facts = summary["k8s-node2"]["facts"]
        assert facts["hostname"] == 'k8s"node\\2', facts
        # The facts are the node's own: memory and CPUs as the kernel reports them.
        mem_kb = int(node_ssh("k8s-node2", "awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
        assert (facts["memoryBytes"], facts["cpus"]) == (mem_kb * 1024, int(node_ssh("k8s-node2", "nproc"))), facts
        # containerd's version as the node prints it (Debian 12's 1.6.20 does not pin the sandbox image).
        assert facts["containerdVersion"] == node_ssh("k8s-node2", "containerd --version | awk '{print $3}'"), facts
        if facts["containerdVersion"].startswith("1.6.20"):
            assert any("does not pin its sandbox (pause) image" in warning for warning in facts["warnings"]), facts
        # The API server's version, read from the node; without an API server, a warning.
        if not facts["apiServerVersion"]:
            assert any("does not answer https://10.0.2.2:6443/version from this node" in warning
                       for warning in facts["warnings"]), facts
        # The address the kubelet registers: the lab VM's own (user-mode network, default route), in the certificate.
        assert summary["k8s-node2"]["nodeIP"] == "10.0.2.15", summary["k8s-node2"]
        assert summary["k8s-node2"]["certIPAddresses"] == ["10.0.2.15"]
        sans = node_ssh("k8s-node2", "openssl x509 -in /var/lib/kubelet/k8s-node2.pem -noout -ext subjectAltName")
        assert "IP Address:10.0.2.15" in sans, sans
        assert summary["k8s-node2"]["certNotAfter"].startswith(
            node_ssh("k8s-node2", "date -u -d \"$(openssl x509 -in /var/lib/kubelet/k8s-node2.pem -noout -enddate | "
                                  "cut -d= -f2)\" +%Y-%m-%dT%H:%M:%S")), summary["k8s-node2"]
        # Node removal: its steps' deletes put back what the project replaced.
        stack.set_object("nodes", [n for n in nodes if n["name"] != "k8s-node2"])
        stack.up()
        for path, digest in planted.items():
            assert node_ssh("k8s-node2", f"sha256sum {path}") == digest, path
        assert node_ssh("k8s-node2", "ls /var/lib/homelab-kubelet 2>/dev/null || echo gone") == "gone"
        # Destroy: the control plane's CA stays on k8s-master (adopted, and named by its API server).
        stack.destroy(exclude_protected=True)
        assert node_ssh("k8s-master", "cat /var/lib/kubernetes/ca.pem") == ca.strip()
        assert node_ssh("k8s-master", "ls /var/lib/kubelet/kubeconfig 2>/dev/null || echo gone") == "gone"
    finally:
        node_ssh("k8s-node2", "hostname k8s-node2; rm -f /etc/containerd/config.toml; systemctl restart containerd")
        node_ssh("k8s-master", "rm -f /etc/systemd/system/kube-apiserver.service /var/lib/kubernetes/ca.pem")
        stack.set_object("nodes", nodes)
