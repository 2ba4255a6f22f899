"""The lab's control plane as data: what it takes from the lab stack, the command lines it runs,
and the lab state that records it. Fast (no process is started; tests/test_control_plane_host.py
runs the real one)."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lab import api, image, paths, relay, vm
from lab import control_plane as cp_mod
from lab.progress import Progress

REPO = Path(__file__).resolve().parent.parent


def lab_cp(tmp_path: Path) -> cp_mod.ControlPlane:
    ports = cp_mod.lab_ports()
    return cp_mod.ControlPlane(dir=str(tmp_path), version=paths.KUBERNETES_VERSION, apiserver_port=ports.apiserver,
                               etcd_client_port=ports.etcd_client, etcd_peer_port=ports.etcd_peer,
                               controller_manager_port=ports.controller_manager, etcd_pid=4242)


def test_the_facts_come_from_the_lab_stack() -> None:
    config = yaml.safe_load((REPO / "Pulumi.lab.yaml").read_text())["config"]
    arm64 = yaml.safe_load((REPO / "Pulumi.lab-arm64.yaml").read_text())["config"]
    facts = cp_mod.lab_facts()
    assert facts.version == config["homelab-kubelet:kubernetes"]["version"]
    assert cp_mod.lab_ports().apiserver == 6443 and config["homelab-kubelet:kubernetes"]["apiServer"].endswith(":6443")
    for dns in config["homelab-kubelet:kubernetes"]["clusterDNS"]:
        assert ipaddress.ip_address(dns) in facts.service_cidr
    assert str(facts.service_cidr) == "10.32.0.0/24" and facts.kubernetes_service_ip == "10.32.0.1"
    # The arm64 node (Pulumi.lab-arm64.yaml) joins the same control plane.
    for node in config["homelab-kubelet:nodes"] + arm64["homelab-kubelet:nodes"]:
        assert ipaddress.ip_network(node["podCIDR"]).subnet_of(facts.cluster_cidr)  # type: ignore[arg-type]
    assert (str(facts.cluster_cidr), facts.node_cidr_mask_size) == ("10.200.0.0/22", 24)
    assert facts.kubelet_addresses == (("k8s-master", "127.0.0.2"), ("k8s-node1", "127.0.0.3"),
                                       ("k8s-node2", "127.0.0.4"), ("k8s-node3", "127.0.0.5"))
    assert facts.namespace_addresses == (("k8s-master", "198.18.0.2"), ("k8s-node1", "198.18.0.3"),
                                         ("k8s-node2", "198.18.0.4"), ("k8s-node3", "198.18.0.5"))


def test_covering_network() -> None:
    assert str(cp_mod.covering_network(["10.200.0.0/24"])) == "10.200.0.0/24"
    assert str(cp_mod.covering_network(["10.200.0.0/24", "10.200.3.0/24"])) == "10.200.0.0/22"
    assert str(cp_mod.covering_network(["10.200.0.0/24", "10.201.0.0/24"])) == "10.200.0.0/15"
    assert all(ipaddress.ip_address(a).is_global or not ipaddress.ip_address(a).is_loopback
               for _n, a in cp_mod.lab_facts().namespace_addresses)


def test_the_api_server_runs_as_the_issue_asks(tmp_path: Path) -> None:
    cp = lab_cp(tmp_path)
    argv = cp_mod.apiserver_argv(cp, cp_mod.lab_facts())
    pki = tmp_path / "pki"
    for flag in ("--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                 f"--client-ca-file={pki}/ca.pem", f"--kubelet-certificate-authority={pki}/ca.pem",
                 f"--kubelet-client-certificate={pki}/kube-apiserver-kubelet-client.pem",
                 f"--kubelet-client-key={pki}/kube-apiserver-kubelet-client-key.pem",
                 "--kubelet-preferred-address-types=Hostname", "--service-cluster-ip-range=10.32.0.0/24",
                 f"--service-account-signing-key-file={pki}/service-account-key.pem", "--secure-port=6443",
                 "--bind-address=127.0.0.1", "--advertise-address=10.0.2.2", "--etcd-servers=http://127.0.0.1:12379"):
        assert flag in argv, flag
    manager = cp_mod.controller_manager_argv(cp, cp_mod.lab_facts())
    for flag in ("--allocate-node-cidrs=true", "--cluster-cidr=10.200.0.0/22", "--node-cidr-mask-size=24",
                 f"--cluster-signing-cert-file={pki}/ca.pem", f"--cluster-signing-key-file={pki}/ca-key.pem"):
        assert flag in manager, flag
    assert all(cp.marker in " ".join(a) for a in (argv, manager, cp_mod.etcd_argv(cp), cp_mod.relay_argv(cp, cp_mod.lab_facts())))


def test_the_relay_carries_the_host_ports_in_and_the_node_addresses_out(tmp_path: Path) -> None:
    argv = cp_mod.relay_argv(lab_cp(tmp_path), cp_mod.lab_facts())
    routes = [relay.Route.parse(a.removeprefix("--route=")) for a in argv if a.startswith("--route=")]
    assert [str(r) for r in routes] == [
        "host:127.0.0.1:6443=cp:127.0.0.1:6443", "host:127.0.0.1:12379=cp:127.0.0.1:12379",
        "host:127.0.0.1:10257=cp:127.0.0.1:10257",
        "cp:198.18.0.2:10250=host:127.0.0.2:10250", "cp:198.18.0.3:10250=host:127.0.0.3:10250",
        "cp:198.18.0.4:10250=host:127.0.0.4:10250", "cp:198.18.0.5:10250=host:127.0.0.5:10250",
    ]
    assert "--netns=/proc/4242/ns/net" in argv


def test_the_control_planes_hosts_file_names_the_nodes_first() -> None:
    lines = cp_mod.hosts_file(cp_mod.lab_facts()).splitlines()
    assert lines[1:5] == ["198.18.0.2 k8s-master", "198.18.0.3 k8s-node1", "198.18.0.4 k8s-node2",
                          "198.18.0.5 k8s-node3"]


def test_each_vm_forwards_its_kubelet_port_to_its_own_loopback_address(tmp_path: Path) -> None:
    amd = image.Image(tmp_path, tmp_path / "k", tmp_path / "i", tmp_path / "d", "h")
    argv = vm.argv("k8s-node1", image=amd, overlay=tmp_path / "o", console=tmp_path / "c",
                   cgroup="v2", accel="tcg", ssh_port=2222, kubelet_address=paths.kubelet_forward_address("k8s-node1"))
    assert argv[argv.index("-netdev") + 1] == (
        "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.3:10250-:10250")
    # The arm64 node's too (the next address): the control plane reaches it like the others.
    arm = image.Image(tmp_path, tmp_path / "k", tmp_path / "i", tmp_path / "d", "h", "arm64")
    argv = vm.argv("k8s-node3", image=arm, overlay=tmp_path / "o", console=tmp_path / "c",
                   cgroup="v2", accel="tcg", ssh_port=2224, kubelet_address=paths.kubelet_forward_address("k8s-node3"))
    assert argv[argv.index("-netdev") + 1] == (
        "user,id=n0,hostfwd=tcp:127.0.0.1:2224-:22,hostfwd=tcp:127.0.0.5:10250-:10250")


def test_the_lab_state_keeps_the_control_plane_and_reads_an_older_state(tmp_path: Path) -> None:
    node = api.Node(name="k8s-master", port=2221, pid=1, console_log="c", overlay="o", kubelet_address="127.0.0.2")
    info = api.LabInfo(cgroup="v2", accel="tcg", image="x", key_path="k", known_hosts="h", nodes=[node], mirror_pid=2,
                       mirror_root="m", control_plane=lab_cp(tmp_path))
    assert api.LabInfo.from_dict(info.to_dict()) == info
    older = info.to_dict()
    del older["control_plane"]
    del older["nodes"][0]["kubelet_address"]
    loaded = api.LabInfo.from_dict(older)
    assert loaded.control_plane is None and loaded.nodes[0].kubelet_address == ""
    assert "control plane: none" in api.table(loaded)


THREE_NODES = {"k8s-master": "127.0.0.2", "k8s-node1": "127.0.0.3", "k8s-node2": "127.0.0.4"}


def test_a_running_control_plane_without_the_arm64_node_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A control plane started before k8s-node3 was a lab node (its hosts file and relay do not
    know it) is restarted by `up`; one that knows every node is kept."""
    monkeypatch.setenv("HOMELAB_KUBELET_CACHE", str(tmp_path / "cache"))
    paths.lab_dir().mkdir(parents=True)
    calls: list[tuple[str, dict[str, str]]] = []

    def start(directory: Path, ports: cp_mod.Ports, facts: cp_mod.Facts | None = None,
              progress: object = None, record: Callable[[cp_mod.ControlPlane], None] = lambda _cp: None,
              ) -> cp_mod.ControlPlane:
        started = lab_cp(tmp_path)
        started.kubelet_addresses = dict((facts or cp_mod.lab_facts()).kubelet_addresses)
        calls.append(("start", started.kubelet_addresses))
        record(started)
        return started

    monkeypatch.setattr(cp_mod, "alive", lambda cp: dict.fromkeys(cp.pids(), True))
    monkeypatch.setattr(cp_mod, "stop", lambda cp, progress=None: calls.append(("stop", cp.kubelet_addresses)))
    monkeypatch.setattr(cp_mod, "start", start)
    older = lab_cp(tmp_path)
    older.kubelet_addresses = dict(THREE_NODES)
    info = api.LabInfo(cgroup="v2", accel="tcg", image="x", key_path="k", known_hosts="h", nodes=[], mirror_pid=2,
                       mirror_root="m", control_plane=older)
    api._control_plane(info, True, Progress())
    every_node = {**THREE_NODES, "k8s-node3": "127.0.0.5"}
    assert calls == [("stop", THREE_NODES), ("start", every_node)]
    assert "control plane runs for other nodes than the lab's (an older lab); starting it again" in capsys.readouterr().out
    assert info.control_plane is not None and info.control_plane.kubelet_addresses == every_node
    assert api.status() == info  # saved
    calls.clear()
    api._control_plane(info, True, Progress())
    assert calls == []
    assert "control plane already running" in capsys.readouterr().out


def test_the_arm64_layout_neither_starts_nor_stops_the_control_plane(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="the arm64 layout neither starts nor stops it"):
        api.up(layout=paths.ARM64, control_plane=False)
    # Its table names the three-node lab's control plane, which it registers with.
    monkeypatch.setenv("HOMELAB_KUBELET_CACHE", str(tmp_path / "cache"))
    node = api.Node(name="k8s-node3", port=2224, pid=1, console_log="c", overlay="o", kubelet_address="127.0.0.5")
    arm = api.LabInfo(cgroup="v2", accel="tcg", image="x", key_path="k", known_hosts="h", nodes=[node], mirror_pid=2,
                      mirror_root="m", layout=paths.ARM64.stack, arch="arm64")
    assert "control plane: the three-node lab's, not running (python -m lab up starts it)" in api.table(arm)
    paths.lab_dir().mkdir(parents=True)
    lab = api.LabInfo(cgroup="v2", accel="tcg", image="x", key_path="k", known_hosts="h", nodes=[], mirror_pid=2,
                      mirror_root="m", control_plane=lab_cp(tmp_path))
    api._save_state(lab)
    assert "control plane: the three-node lab's, https://127.0.0.1:6443 (guests https://10.0.2.2:6443)" in api.table(arm)


def test_the_rbac_manifest_binds_the_kubelet_api_to_the_api_servers_kubelet_client() -> None:
    role, binding = yaml.safe_load_all(cp_mod.rbac_manifest())
    assert role["kind"] == "ClusterRole" and role["metadata"]["name"] == "system:kube-apiserver-to-kubelet"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes/proxy", "nodes/stats", "nodes/log",
                                                              "nodes/spec", "nodes/metrics"], "verbs": ["*"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": "kube-apiserver-kubelet-client"}]
    kubelet_client = next(i for i in cp_mod.identities(cp_mod.lab_facts()) if i.name == "kube-apiserver-kubelet-client")
    assert kubelet_client.common_name == binding["subjects"][0]["name"] and kubelet_client.organizations == ()


def test_readme_shows_the_rbac_manifest_the_lab_applies() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## What the API server needs"):]
    block = section[section.index("```yaml\n") + len("```yaml\n"):section.index("   ```\n")]
    assert textwrap.dedent(block) == cp_mod.rbac_manifest()
