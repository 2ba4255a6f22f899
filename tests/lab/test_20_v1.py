"""The lab in cgroup v1 mode (the runbook's per-controller layout) and the kubelet failures
that belong to it."""

from __future__ import annotations

import re

import pytest

from lab import api

from . import kubeletcases as kc
from . import nodechecks as chk

pytestmark = pytest.mark.lab
NODE = "k8s-node2"


def test_ssh_as_root_and_as_kube_with_sudo(lab_v1: api.LabInfo) -> None:
    chk.check_ssh_root_and_kube(lab_v1)


def test_systemd_is_pid1(lab_v1: api.LabInfo) -> None:
    chk.check_systemd_pid1(lab_v1)


def test_containerd_active_and_socket_exists(lab_v1: api.LabInfo) -> None:
    chk.check_containerd(lab_v1)


def test_per_controller_cgroup_directories(lab_v1: api.LabInfo) -> None:
    for n in lab_v1.nodes:
        r = api.ssh(n.name, "stat -fc %T /sys/fs/cgroup; stat -fc %T /sys/fs/cgroup/memory; "
                            "test -d /sys/fs/cgroup/cpuset/ && echo cpuset; test -d /sys/fs/cgroup/memory/system.slice && echo sys")
        assert r.stdout.split() == ["tmpfs", "cgroupfs", "cpuset", "sys"], r.stdout


def test_hostnames_machine_ids_and_host_keys_differ(lab_v1: api.LabInfo) -> None:
    chk.check_identities(lab_v1)


def test_guest_fetches_from_mirror(lab_v1: api.LabInfo) -> None:
    chk.check_guest_fetches_from_mirror(lab_v1)


@pytest.fixture(scope="module")
def kubelet_v1(lab_v1: api.LabInfo) -> str:
    return kc.install_kubelet(NODE)


def test_kubelet_healthy_minimal_config(kubelet_v1: str) -> None:
    out = kc.run_case(NODE, "healthy", kc.BASE, "healthz")
    assert out.healthy, out  # active, /healthz ok and no restart over the settle window
    assert out.healthz == "ok" and out.still_running


def test_kubelet_kube_reserved_cgroup_missing(kubelet_v1: str) -> None:
    # kubelet v1.30.1 on the v1 layout (older kubelets said '["kube"] cgroup does not exist'):
    # E... kubelet.go:1547] "Failed to start ContainerManager" err="Failed to enforce Kube Reserved
    # Cgroup Limits on \"/kube.slice\": cgroup [\"kube\"] has some missing paths:
    # /sys/fs/cgroup/pids/kube.slice, /sys/fs/cgroup/cpu,cpuacct/kube.slice, /sys/fs/cgroup/memory/kube.slice, ..."
    out = kc.run_case(NODE, "kube-reserved", kc.KUBE_RESERVED_CGROUP_MISSING, r"Failed to start ContainerManager",
                      settle=3)
    assert 'Failed to enforce Kube Reserved Cgroup Limits on \\"/kube.slice\\"' in out.log
    assert 'cgroup [\\"kube\\"] has some missing paths: ' in out.log
    assert "/sys/fs/cgroup/memory/kube.slice" in out.log
    assert not out.still_running


def test_kubelet_system_reserved_below_system_slice_usage(kubelet_v1: str) -> None:
    usage = kc.system_slice_memory(NODE, "v1")
    assert usage > 8 * 1024 * 1024
    # The kernel refuses memory.limit_in_bytes below what it cannot reclaim with EBUSY ("device or
    # resource busy"); runc's libcontainer, which the kubelet v1.30.1 uses, reports that errno as:
    # E... kubelet.go:1547] "Failed to start ContainerManager" err="Failed to enforce System Reserved
    # Cgroup Limits on \"/system.slice\": unable to set memory limit to 8388608 (current usage:
    # 65884160, peak usage: 246669312)"
    out = kc.run_case(NODE, "system-reserved", kc.SYSTEM_RESERVED_BELOW_USAGE, r"Failed to start ContainerManager",
                      settle=3, prepare=f"mkdir -p {kc.SYSTEM_SLICE_V1_DIRS}", undo=f"rmdir {kc.SYSTEM_SLICE_V1_DIRS}")
    assert 'Failed to enforce System Reserved Cgroup Limits on \\"/system.slice\\"' in out.log
    m = re.search(r"unable to set memory limit to 8388608 \(current usage: (\d+), peak usage: (\d+)\)", out.log)
    assert m, out.log[-3000:]
    assert int(m.group(1)) > 8388608
    assert not out.still_running


def test_kubelet_system_slice_dirs_missing_on_v1(kubelet_v1: str) -> None:
    """Without the cpuset/hugetlb directories that runbooks pre-create, the same config stops earlier."""
    out = kc.run_case(NODE, "system-reserved-nodirs", kc.SYSTEM_RESERVED_BELOW_USAGE,
                      r"Failed to start ContainerManager", settle=3)
    assert 'cgroup [\\"system\\"] has some missing paths: ' in out.log
    assert "/sys/fs/cgroup/cpuset/system.slice" in out.log


def test_kubelet_runbook_system_cgroups_moves_nothing_and_its_stats_fail(kubelet_v1: str) -> None:
    kc.check_runbook_system_cgroups(NODE)
