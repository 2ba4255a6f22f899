"""Where the lab keeps its files, and the fixed facts of its layout."""

from __future__ import annotations

import os
import time
from pathlib import Path

#: The three lab nodes and the host port that forwards to each one's SSH port 22.
NODES: tuple[tuple[str, int], ...] = (
    ("k8s-master", 2221),
    ("k8s-node1", 2222),
    ("k8s-node2", 2223),
)
NODE_NAMES = tuple(n for n, _ in NODES)
SSH_PORTS = dict(NODES)

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


class Progress:
    """Prints one line per step with the seconds elapsed since it was made."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[lab {self.elapsed():6.1f}s] {msg}", flush=True)
