"""`pulumi preview` with the real engine (the Pulumi CLI and tls plugin built by scripts/toolchain,
the language host and command stand-ins) through the Automation API, on a copy of the project
directory.

A preview needs no node: remote commands are planned, not run. The project is copied unmodified
into a temp dir (tests/workspace.py).
"""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path

import pytest
from pulumi import automation as auto

from components import node_scripts
from tests.stack_config import HOMELAB_KNOWN_HOSTS
from tests.workspace import copy_project, project_stack

NODES = ("k8s-master", "k8s-node1", "k8s-node2")
PER_NODE = {
    "homelab-kubelet:pki:NodeCertificate": 1,
    "tls:index/privateKey:PrivateKey": 1,
    "tls:index/certRequest:CertRequest": 1,
    "tls:index/locallySignedCert:LocallySignedCert": 1,
    "homelab-kubelet:node:KubeletNode": 1,
    "command:remote:Command": len(node_scripts.STEP_NAMES),
}


def homelab_stack(tmp_path: Path) -> auto.Stack:
    project = copy_project(tmp_path / "project", ("Pulumi.homelab.yaml",))
    stack = project_stack(project, "homelab", tmp_path / "state", "preview-test")
    # The program verifies host keys; the homelab stack takes them from ~/.ssh/known_hosts.
    stack.set_config("ssh.knownHostsFile", auto.ConfigValue(str(HOMELAB_KNOWN_HOSTS)), path=True)
    return stack


@pytest.mark.toolchain
def test_real_preview_of_the_homelab_stack(tmp_path: Path) -> None:
    stack = homelab_stack(tmp_path)
    events: list[auto.EngineEvent] = []
    result = stack.preview(on_event=events.append, color="never")

    planned = Counter(
        event.resource_pre_event.metadata.type
        for event in events
        if event.resource_pre_event is not None and event.resource_pre_event.metadata.op == auto.OpType.CREATE
    )
    cluster_wide = {"tls:index/privateKey:PrivateKey": 1}  # the CA's key
    for type_, count in PER_NODE.items():
        assert planned[type_] == count * len(NODES) + cluster_wide.get(type_, 0), (type_, planned)
    assert planned["homelab-kubelet:pki:ClusterPki"] == 1
    assert planned["tls:index/selfSignedCert:SelfSignedCert"] == 1
    names = {
        event.resource_pre_event.metadata.urn.rsplit("::", 1)[1]
        for event in events
        if event.resource_pre_event is not None
    }
    for node in NODES:
        for step in node_scripts.STEP_NAMES:
            assert f"{node}-{step}" in names
    assert result.change_summary.get(auto.OpType.CREATE, 0) >= 1 + 2 + len(NODES) * sum(PER_NODE.values())


@pytest.mark.toolchain
def test_real_preview_rejects_bad_config_before_any_resource(tmp_path: Path) -> None:
    stack = homelab_stack(tmp_path)
    stack.set_config("nodes[1].podCIDR", auto.ConfigValue("10.200.1.0/33"), path=True)
    events: list[auto.EngineEvent] = []
    with pytest.raises(auto.errors.CommandError) as failure:
        stack.preview(on_event=events.append, color="never")
    assert "nodes[1].podCIDR" in str(failure.value)
    assert "10.200.1.0/33" in str(failure.value)
    registered = [e for e in events if e.resource_pre_event is not None
                  and e.resource_pre_event.metadata.type != "pulumi:pulumi:Stack"]
    assert registered == []


@pytest.mark.toolchain
def test_real_preview_warns_of_a_certificate_inside_its_renewal_window(tmp_path: Path) -> None:
    # The program reads the `nodes` output of the stack's last deployment back through the real
    # engine (a StackReference to its own stack): a state holding only that output stands in for it.
    stack = homelab_stack(tmp_path)
    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    urn = f"urn:pulumi:{stack.name}::homelab-kubelet::pulumi:pulumi:Stack::homelab-kubelet-{stack.name}"
    stack.import_stack(auto.Deployment(version=3, deployment={
        "manifest": {"time": "2026-01-01T00:00:00Z", "magic": "", "version": ""},
        "resources": [{"urn": urn, "custom": False, "type": "pulumi:pulumi:Stack",
                       "outputs": {"nodes": {"k8s-node1": {"certNotAfter": soon}}}}],
    }))
    events: list[auto.EngineEvent] = []
    stack.preview(on_event=events.append, color="never")
    warnings = [event.diagnostic_event.message for event in events
                if event.diagnostic_event is not None and event.diagnostic_event.severity == "warning"]
    expected = f"k8s-node1: its certificate expires at {soon} and is inside its renewal window"
    assert [warning for warning in warnings if expected in warning], warnings
    assert not [warning for warning in warnings if "k8s-master: its certificate" in warning], warnings
