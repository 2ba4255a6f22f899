"""The emulated arm64 node (``python -m lab up --arm64``: k8s-node3, qemu-system-aarch64, TCG).

Marked ``arm64`` as well as ``lab``: its image build (15-16 min the first time) and boot do not
fit CI's budget, so a plain run deselects it (tests/conftest.py); `scripts/test-arm64` runs it.
The layout is stopped at the end unless it was up before (or LAB_KEEP=1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from lab import api, paths, proc
from tests.lab import nodechecks

pytestmark = [pytest.mark.lab, pytest.mark.arm64]

NODE = "k8s-node3"


@pytest.fixture(scope="module")
def lab_arm64() -> Iterator[api.LabInfo]:
    state = api.status(paths.ARM64)
    was_up = state is not None and all(api.health(state).values())
    yield api.up(layout=paths.ARM64)
    if not was_up and os.environ.get("LAB_KEEP") != "1":
        api.down(layout=paths.ARM64)


def node(command: str, user: str = "root") -> str:
    r = api.ssh(NODE, command, user=user, timeout=300)
    assert r.returncode == 0, f"`{command}` failed ({r.returncode}): {r.stderr}"
    return str(r.stdout).strip()


def test_the_node_is_an_aarch64_debian_12(lab_arm64: api.LabInfo) -> None:
    assert [n.name for n in lab_arm64.nodes] == [NODE] and lab_arm64.arch == "arm64"
    assert node("uname -m") == "aarch64"
    assert node("dpkg --print-architecture") == "arm64"
    assert node("cut -d. -f1 /etc/debian_version") == "12"
    assert node("uname -r").endswith("-arm64")


def test_ssh_as_root_and_as_kube_with_sudo(lab_arm64: api.LabInfo) -> None:
    nodechecks.check_ssh_root_and_kube(lab_arm64)


def test_sshd_takes_keys_only(lab_arm64: api.LabInfo) -> None:
    nodechecks.check_password_login_refused(lab_arm64)


def test_systemd_is_pid1_and_the_system_is_running(lab_arm64: api.LabInfo) -> None:
    nodechecks.check_systemd_pid1(lab_arm64)


def test_containerd_active_and_socket_exists(lab_arm64: api.LabInfo) -> None:
    nodechecks.check_containerd(lab_arm64)


def test_cgroup2fs_at_sys_fs_cgroup(lab_arm64: api.LabInfo) -> None:
    assert node("stat -fc %T /sys/fs/cgroup") == "cgroup2fs"


def test_first_boot_facts_as_on_the_amd64_nodes(lab_arm64: api.LabInfo) -> None:
    n = lab_arm64.node(NODE)
    hostname, machine_id, key = node(
        "hostname; cat /etc/machine-id; cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").splitlines()
    assert hostname == NODE
    assert machine_id == n.machine_id and re.fullmatch(r"[0-9a-f]{32}", machine_id)
    # The pinned key (read from the serial console) is sshd's only host key.
    assert key in n.host_keys
    assert node("ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'") == "1"
    assert node(f"grep -c '127.0.1.1[[:space:]]{NODE}$' /etc/hosts") == "1"
    assert node("systemctl is-enabled lab-firstboot.service systemd-networkd.service ssh.service containerd.service"
                ).split() == ["enabled"] * 4
    assert paths.ARM64.known_hosts_path.read_text().split() == [f"[127.0.0.1]:{n.port}", *key.split()]


def test_no_swap_and_user_mode_network(lab_arm64: api.LabInfo) -> None:
    nodechecks.check_no_swap_and_network(lab_arm64)


def test_guest_fetches_from_its_mirror(lab_arm64: api.LabInfo) -> None:
    assert lab_arm64.mirror_url_guest == paths.ARM64.mirror_url_guest
    nodechecks.check_guest_fetches_from_mirror(lab_arm64)


def test_its_mirror_serves_the_arm64_kubelet(lab_arm64: api.LabInfo) -> None:
    nodechecks.check_host_mirror_serves_real_kubelets(lab_arm64)


def test_its_kubelet_port_is_forwarded_to_its_own_loopback_address(lab_arm64: api.LabInfo) -> None:
    # The lab's control plane reaches k8s-node3's kubelet there (its relay; docs/lab.md).
    n = lab_arm64.node(NODE)
    assert n.kubelet_address == paths.kubelet_forward_address(NODE) == "127.0.0.5"
    netdevs = [a for a in proc.cmdline(n.pid) if a.startswith("user,id=n0,")]
    assert netdevs == [f"user,id=n0,hostfwd=tcp:127.0.0.1:{n.port}-:22,hostfwd=tcp:127.0.0.5:10250-:10250"]
