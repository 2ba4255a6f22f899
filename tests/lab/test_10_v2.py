"""The lab in cgroup v2 mode (Debian's default): the nodes, the mirror, and kubelet failures
that do not depend on the cgroup mode."""

from __future__ import annotations

import pytest

from lab import api

from . import kubeletcases as kc
from . import nodechecks as chk

pytestmark = pytest.mark.lab
NODE = "k8s-node1"


def test_ssh_as_root_and_as_kube_with_sudo(lab_v2: api.LabInfo) -> None:
    chk.check_ssh_root_and_kube(lab_v2)


def test_sshd_takes_keys_only(lab_v2: api.LabInfo) -> None:
    chk.check_password_login_refused(lab_v2)


def test_systemd_is_pid1(lab_v2: api.LabInfo) -> None:
    chk.check_systemd_pid1(lab_v2)


def test_containerd_active_and_socket_exists(lab_v2: api.LabInfo) -> None:
    chk.check_containerd(lab_v2)


def test_cgroup2fs_at_sys_fs_cgroup(lab_v2: api.LabInfo) -> None:
    for n in lab_v2.nodes:
        r = api.ssh(n.name, "stat -fc %T /sys/fs/cgroup; test -e /sys/fs/cgroup/memory && echo v1dirs || true")
        assert r.stdout.split() == ["cgroup2fs"]


def test_hostnames_machine_ids_and_host_keys_differ(lab_v2: api.LabInfo) -> None:
    chk.check_identities(lab_v2)


def test_no_swap_and_user_mode_network(lab_v2: api.LabInfo) -> None:
    chk.check_no_swap_and_network(lab_v2)


def test_guest_fetches_from_mirror(lab_v2: api.LabInfo) -> None:
    chk.check_guest_fetches_from_mirror(lab_v2)


def test_running_mirror_serves_the_toolchain_kubelet(lab_v2: api.LabInfo) -> None:
    kc.toolchain_kubelet()
    chk.check_host_mirror_serves_real_kubelets(lab_v2)


# ---- the real kubelet, provoked on purpose


@pytest.fixture(scope="module")
def kubelet_v2(lab_v2: api.LabInfo) -> str:
    return kc.install_kubelet(NODE)


def test_kubelet_healthy_minimal_config(kubelet_v2: str) -> None:
    out = kc.run_case(NODE, "healthy", kc.BASE, "healthz")
    assert out.healthy, out  # active, /healthz ok and no restart over the settle window
    assert out.healthz == "ok"
    assert out.still_running


def test_kubelet_unknown_field_is_logged_and_ignored(kubelet_v2: str) -> None:
    out = kc.run_case(NODE, "unknown-field", kc.UNKNOWN_FIELD, "healthz")
    # I... codec.go:100] "Using lenient decoding as strict decoding failed"
    #   err="strict decoding error: unknown field \"notAKubeletField\""
    assert "Using lenient decoding as strict decoding failed" in out.log
    assert 'strict decoding error: unknown field \\"notAKubeletField\\"' in out.log
    assert out.healthy and out.healthz == "ok" and out.still_running  # it goes on


def test_kubelet_webhook_authn_without_kubeconfig(kubelet_v2: str) -> None:
    out = kc.run_case(NODE, "webhook", kc.WEBHOOK_WITHOUT_KUBECONFIG,
                      r"no client provided, cannot use webhook authentication", settle=3)
    # E... run.go:74] "command failed" err="failed to run Kubelet: no client provided, cannot use
    # webhook authentication"
    assert "failed to run Kubelet: no client provided, cannot use webhook authentication" in out.log
    assert not out.still_running  # fatal


def test_kubelet_missing_runtime_socket(kubelet_v2: str) -> None:
    # E... run.go:74] "command failed" err="failed to run Kubelet: validate service connection:
    # validate CRI v1 runtime API for endpoint \"unix:///run/lab-no-such-runtime/containerd.sock\":
    # rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing:
    # dial unix /run/lab-no-such-runtime/containerd.sock: connect: no such file or directory\""
    out = kc.run_case(NODE, "no-runtime", kc.MISSING_RUNTIME_SOCKET,
                      r"command failed.*validate CRI v1 runtime API for endpoint.*no such file or directory",
                      settle=3)
    assert "failed to run Kubelet: validate service connection: validate CRI v1 runtime API for endpoint" in out.log
    assert "dial unix /run/lab-no-such-runtime/containerd.sock: connect: no such file or directory" in out.log
    assert not out.still_running


def test_kubelet_runbook_system_cgroups_moves_nothing_and_its_stats_fail(kubelet_v2: str) -> None:
    kc.check_runbook_system_cgroups(NODE)
