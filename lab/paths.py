"""Where the lab keeps its files, and the fixed facts of its layouts."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
#: The lab stack's file: its nodes are the lab's VMs (one source for names and ports).
LAB_STACK_FILE = REPO / "Pulumi.lab.yaml"


@dataclass(frozen=True)
class Layout:
    """One set of lab VMs: the nodes of one stack file (names, SSH ports, arch, mirror URL), with
    its own state file, lock, known_hosts, run directory and mirror server, so that two layouts
    (the three amd64 nodes, the arm64 node) run side by side without touching each other."""

    #: The stack whose nodes these VMs are (``Pulumi.<stack>.yaml``).
    stack: str
    #: Its files under :func:`lab_dir` ("" for the three-node lab: ``lab/state.json`` etc.).
    subdir: str

    @property
    def stack_file(self) -> Path:
        return REPO / f"Pulumi.{self.stack}.yaml"

    @cached_property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load(self.stack_file.read_text())["config"]
        return config

    @cached_property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """The nodes and the host port that forwards to each one's SSH port 22."""
        return tuple((n["name"], int(n["port"])) for n in self.config["homelab-kubelet:nodes"])

    @cached_property
    def arch(self) -> str:
        """The one architecture of the layout's VMs (the stack's ``nodes[].arch``)."""
        arches = {n["arch"] for n in self.config["homelab-kubelet:nodes"]}
        if len(arches) != 1:
            raise ValueError(f"{self.stack_file.name}: a lab layout boots one architecture, not {sorted(arches)}")
        return str(arches.pop())

    @cached_property
    def mirror_port(self) -> int:
        """The port of the stack's ``kubernetes.downloadBaseUrl`` (http://10.0.2.2:PORT): the
        layout's own mirror server listens on it on the host's loopback."""
        url = urllib.parse.urlsplit(self.config["homelab-kubelet:kubernetes"]["downloadBaseUrl"])
        if url.hostname != HOST_FROM_GUEST or url.port is None:
            raise ValueError(f"{self.stack_file.name}: downloadBaseUrl must be http://{HOST_FROM_GUEST}:PORT")
        return int(url.port)

    @property
    def mirror_url_host(self) -> str:
        return f"http://{MIRROR_BIND}:{self.mirror_port}"

    @property
    def mirror_url_guest(self) -> str:
        return f"http://{HOST_FROM_GUEST}:{self.mirror_port}"

    @property
    def dir(self) -> Path:
        return lab_dir() / self.subdir if self.subdir else lab_dir()

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def lock_path(self) -> Path:
        return self.dir / "lock"

    @property
    def run_dir(self) -> Path:
        """Per-boot files: overlays, serial console logs, qemu logs."""
        return self.dir / "run"

    @property
    def mirror_log(self) -> Path:
        return self.dir / "mirror.log"


#: qemu user-mode networking: the guest's own address and the host as the guest sees it.
GUEST_IP = "10.0.2.15"
HOST_FROM_GUEST = "10.0.2.2"
MIRROR_BIND = "127.0.0.1"

#: The three amd64 nodes of Pulumi.lab.yaml (``python -m lab up``).
LAB = Layout("lab", "")
#: One arm64 node, Pulumi.lab-arm64.yaml (``python -m lab up --arm64``).
ARM64 = Layout("lab-arm64", "arm64")
LAYOUTS = (LAB, ARM64)

#: The lab nodes and the host port that forwards to each one's SSH port 22 (Pulumi.lab.yaml).
NODES: tuple[tuple[str, int], ...] = LAB.nodes
NODE_NAMES = tuple(n for n, _ in NODES)
#: Every layout's nodes: names and ports are unique across layouts (a test holds them to it).
SSH_PORTS = {name: port for layout in LAYOUTS for name, port in layout.nodes}
ALL_NODE_NAMES = tuple(SSH_PORTS)


def layout_of(name: str) -> Layout:
    """The layout a node belongs to (KeyError for a name no layout has)."""
    for layout in LAYOUTS:
        if any(n == name for n, _ in layout.nodes):
            return layout
    raise KeyError(name)


#: What the control plane (lab/control_plane.py) takes from the lab stack: the Kubernetes version
#: (the kubelet's; the control plane is built at the same one), the API server URL the kubelets
#: dial, the cluster DNS domain and IPs (Pulumi.lab-arm64.yaml has the same, a test holds it), and
#: every layout's node's pod CIDR: the arm64 node joins the same control plane.
_KUBERNETES: dict[str, Any] = LAB.config["homelab-kubelet:kubernetes"]
KUBERNETES_VERSION: str = _KUBERNETES["version"]
API_SERVER_URL: str = _KUBERNETES["apiServer"]
CLUSTER_DOMAIN: str = _KUBERNETES["clusterDomain"]
CLUSTER_DNS: tuple[str, ...] = tuple(_KUBERNETES["clusterDNS"])
POD_CIDRS: dict[str, str] = {
    node["name"]: node["podCIDR"] for layout in LAYOUTS for node in layout.config["homelab-kubelet:nodes"]
}

#: Each VM's kubelet port is forwarded to a loopback address of its own on the host
#: (127.0.0.2, 127.0.0.3, ... in the order of ALL_NODE_NAMES: the three-node lab's 127.0.0.2-4,
#: the arm64 node's 127.0.0.5): every VM is 10.0.2.15 inside, so the API server reaches them by
#: node name, resolved to these addresses in its own mount namespace.
KUBELET_PORT = 10250


def kubelet_forward_address(name: str) -> str:
    """The host address whose port KUBELET_PORT qemu forwards to node `name`'s kubelet."""
    return f"127.0.0.{2 + ALL_NODE_NAMES.index(name)}"


VM_CPUS = 2
VM_MEMORY_MIB = 1536
MIRROR_PORT = LAB.mirror_port
MIRROR_URL_HOST = LAB.mirror_url_host
MIRROR_URL_GUEST = LAB.mirror_url_guest

CGROUP_MODES = ("v1", "v2")


def cache_root() -> Path:
    """``~/.cache/homelab-kubelet`` (``HOMELAB_KUBELET_CACHE`` overrides it, for tests)."""
    env = os.environ.get("HOMELAB_KUBELET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "homelab-kubelet"


def lab_dir() -> Path:
    return cache_root() / "lab"


def mirror_root() -> Path:
    return cache_root() / "mirror"


def kubelet_builds() -> Path:
    """Where ``scripts/toolchain`` leaves ``<version>/<arch>/kubelet`` (+ ``kubelet.sha256``)."""
    return cache_root() / "kubelet"


def key_path() -> Path:
    return lab_dir() / "id_ed25519"


def state_path() -> Path:
    return LAB.state_path


def known_hosts_path() -> Path:
    return LAB.known_hosts_path


def run_dir() -> Path:
    """The three-node lab's per-boot files: overlays, serial console logs, qemu logs."""
    return LAB.run_dir


def control_plane_dir() -> Path:
    """The lab's control plane: its PKI (kept across boots), etcd's data (new at every start),
    kubeconfigs, logs and the API server's hosts file."""
    return run_dir() / "control-plane"


def control_plane_builds() -> Path:
    """Where ``scripts/toolchain control-plane`` leaves ``<version>/amd64/<binary>``."""
    return cache_root() / "control-plane"
