"""Where the lab keeps its files, and the fixed facts of its layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

#: The lab stack's file: its nodes are the lab's VMs (one source for names and ports).
LAB_STACK_FILE = Path(__file__).resolve().parent.parent / "Pulumi.lab.yaml"


_STACK_CONFIG: dict[str, Any] = yaml.safe_load(LAB_STACK_FILE.read_text())["config"]


def _stack_nodes() -> tuple[tuple[str, int], ...]:
    return tuple((node["name"], int(node["port"])) for node in _STACK_CONFIG["homelab-kubelet:nodes"])


#: The lab nodes and the host port that forwards to each one's SSH port 22 (Pulumi.lab.yaml).
NODES: tuple[tuple[str, int], ...] = _stack_nodes()
NODE_NAMES = tuple(n for n, _ in NODES)
SSH_PORTS = dict(NODES)

#: What the control plane (lab/control_plane.py) takes from the lab stack: the Kubernetes version
#: (the kubelet's; the control plane is built at the same one), the API server URL the kubelets
#: dial, the cluster DNS domain and IPs, and each node's pod CIDR.
_KUBERNETES: dict[str, Any] = _STACK_CONFIG["homelab-kubelet:kubernetes"]
KUBERNETES_VERSION: str = _KUBERNETES["version"]
API_SERVER_URL: str = _KUBERNETES["apiServer"]
CLUSTER_DOMAIN: str = _KUBERNETES["clusterDomain"]
CLUSTER_DNS: tuple[str, ...] = tuple(_KUBERNETES["clusterDNS"])
POD_CIDRS: dict[str, str] = {node["name"]: node["podCIDR"] for node in _STACK_CONFIG["homelab-kubelet:nodes"]}

#: Each VM's kubelet port is forwarded to a loopback address of its own on the host
#: (127.0.0.2, 127.0.0.3, ... in the order of NODES): every VM is 10.0.2.15 inside, so the API
#: server reaches them by node name, resolved to these addresses in its own mount namespace.
KUBELET_PORT = 10250


def kubelet_forward_address(name: str) -> str:
    """The host address whose port KUBELET_PORT qemu forwards to node `name`'s kubelet."""
    return f"127.0.0.{2 + NODE_NAMES.index(name)}"

VM_CPUS = 2
VM_MEMORY_MIB = 1536
#: qemu user-mode networking: the guest's own address and the host as the guest sees it.
GUEST_IP = "10.0.2.15"
HOST_FROM_GUEST = "10.0.2.2"

MIRROR_PORT = 18080
MIRROR_BIND = "127.0.0.1"
MIRROR_URL_HOST = f"http://{MIRROR_BIND}:{MIRROR_PORT}"
MIRROR_URL_GUEST = f"http://{HOST_FROM_GUEST}:{MIRROR_PORT}"

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
    return lab_dir() / "state.json"


def known_hosts_path() -> Path:
    return lab_dir() / "known_hosts"


def run_dir() -> Path:
    """Per-boot files: overlays, serial console logs, qemu logs."""
    return lab_dir() / "run"


def control_plane_dir() -> Path:
    """The lab's control plane: its PKI (kept across boots), etcd's data (new at every start),
    kubeconfigs, logs and the API server's hosts file."""
    return run_dir() / "control-plane"


def control_plane_builds() -> Path:
    """Where ``scripts/toolchain control-plane`` leaves ``<version>/amd64/<binary>``."""
    return cache_root() / "control-plane"
