"""Runs the real kubelet (the toolchain's v1.30.1 amd64 build, fetched by the VM from the lab
mirror) on a lab VM with a deliberately broken KubeletConfiguration and reads its log.

Each case runs as a transient systemd service (``systemd-run --unit=lab-kubelet-<case>``) so
that the kubelet sits in system.slice like a real kubelet.service; the unit, the kubelet's
state and its QoS slices are removed after every case.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import api, health, mirror, paths

VERSION = "v1.30.1"
ARCH = "amd64"
KUBELET = "/usr/local/bin/kubelet"

#: A healthy minimal standalone KubeletConfiguration (no API server, no kubeconfig).
BASE = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
resolvConf: /etc/resolv.conf
failSwapOn: true
"""

UNKNOWN_FIELD = BASE + "notAKubeletField: true\n"

WEBHOOK_WITHOUT_KUBECONFIG = BASE.replace(
    "  webhook:\n    enabled: false\n", "  webhook:\n    enabled: true\n"
)

MISSING_RUNTIME_SOCKET = BASE.replace(
    "unix:///run/containerd/containerd.sock", "unix:///run/lab-no-such-runtime/containerd.sock"
)

KUBE_RESERVED_CGROUP_MISSING = BASE + """\
kubeReserved:
  cpu: 100m
  memory: 256Mi
kubeReservedCgroup: /kube.slice
enforceNodeAllocatable:
- pods
- kube-reserved
"""

#: The runbook's systemCgroups (kubelet.systemCgroups as an explicit choice; cgroupRoot as the
#: program renders it, which the kubelet requires with systemCgroups).
RUNBOOK_SYSTEM_CGROUPS = BASE + "cgroupRoot: /\nsystemCgroups: /systemd/system.slice\n"

#: After it ran: every cgroup directory named systemd below a hierarchy's root (v2: the root
#: itself is the one hierarchy), then every process that sits in a /systemd/... cgroup.
SYSTEM_CGROUPS_CREATED = (
    "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then ls -d /sys/fs/cgroup/systemd 2>/dev/null; "
    "else ls -d /sys/fs/cgroup/*/systemd 2>/dev/null; fi; "
    "grep -l ':/systemd/' /proc/[0-9]*/cgroup 2>/dev/null; true"
)

SYSTEM_RESERVED_BELOW_USAGE = BASE + """\
systemReserved:
  cpu: 100m
  memory: 8Mi
systemReservedCgroup: /system.slice
enforceNodeAllocatable:
- pods
- system-reserved
"""


#: systemd (v1 layout) makes no cpuset or hugetlb directory for its slices; the kubelet wants one in
#: every hierarchy it manages, so runbooks create them before the kubelet starts. Without these the
#: system-reserved case stops at 'cgroup ["system"] has some missing paths' before writing a limit.
SYSTEM_SLICE_V1_DIRS = "/sys/fs/cgroup/cpuset/system.slice /sys/fs/cgroup/hugetlb/system.slice"


@dataclass
class Outcome:
    log: str
    still_running: bool  # the unit is `active` at the end (not `activating`)
    healthz: str
    # Only for expect="healthz": active and /healthz ok at the first ok and after a settle window of
    # at least health.SETTLE_SECONDS, with NRestarts unchanged (lab/health.py).
    healthy: bool = False
    # The stdout of run_case's `inspect` command, run on the node before the cleanup.
    inspected: str = ""


def toolchain_kubelet() -> Path:
    """The toolchain's build; a missing one FAILS the test (never a skip)."""
    k = paths.kubelet_builds() / VERSION / ARCH / "kubelet"
    if not k.exists() or not k.with_name("kubelet.sha256").exists():
        pytest.fail(
            f"the real kubelet {VERSION} {ARCH} is not built ({k} missing): run `scripts/toolchain kubelet`",
            pytrace=False,
        )
    pubs = {(p.version, p.arch): p for p in mirror.sync(log=lambda _m: None)}
    if (VERSION, ARCH) not in pubs:
        pytest.fail(f"{k} does not match its kubelet.sha256: rerun `scripts/toolchain kubelet`", pytrace=False)
    return k


def install_kubelet(node: str) -> str:
    """Fetches the kubelet from the lab mirror onto the node (as the program would) and checks it."""
    toolchain_kubelet()
    sha = {(p.version, p.arch): p for p in mirror.sync(log=lambda _m: None)}[(VERSION, ARCH)].sha256
    url = f"{paths.MIRROR_URL_GUEST}/{VERSION}/bin/linux/{ARCH}/kubelet"
    script = f"""
set -e
if ! echo "{sha}  {KUBELET}" | sha256sum -c --status 2>/dev/null; then
  curl -fsS -o {KUBELET}.part {url}
  test "$(curl -fsS {url}.sha256)" = "{sha}"
  echo "{sha}  {KUBELET}.part" | sha256sum -c --status
  chmod 0755 {KUBELET}.part && mv {KUBELET}.part {KUBELET}
fi
{KUBELET} --version
"""
    r = api.ssh(node, script, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert VERSION in r.stdout
    return sha


def _cleanup(node: str, unit: str) -> None:
    api.ssh(node, f"""
systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null
systemctl stop kubepods.slice kubepods-besteffort.slice kubepods-burstable.slice 2>/dev/null
rm -rf /var/lib/kubelet /etc/lab-kubelet-case
true""", timeout=120)


def run_case(node: str, case: str, config: str, expect: str, timeout: float = 300,
             settle: float = 0.0, prepare: str = "true", undo: str = "true", inspect: str = "") -> Outcome:
    """Starts the kubelet with ``config``; waits until its log matches the regex ``expect`` (or
    /healthz answers when ``expect`` is ``"healthz"``), then ``settle`` seconds (for
    ``"healthz"`` at least health.SETTLE_SECONDS); runs ``inspect`` (if any) while the kubelet still
    runs; returns the log; always cleans up."""
    unit = f"lab-kubelet-{case}"
    _cleanup(node, unit)
    api.ssh(node, prepare, check=True)
    since = api.ssh(node, "date +%s.%N", check=True).stdout.strip()
    r = api.ssh(node, f"mkdir -p /etc/lab-kubelet-case && cat > /etc/lab-kubelet-case/config.yaml && "
                      f"systemd-run --quiet --unit={unit} --collect {KUBELET} "
                      f"--config=/etc/lab-kubelet-case/config.yaml --v=2", input=config)
    assert r.returncode == 0, r.stderr
    logcmd = f"journalctl --no-pager -o cat --since=@{since} _SYSTEMD_UNIT={unit}.service + UNIT={unit}.service"

    def look() -> tuple[str, health.UnitSample]:
        # One ssh: the unit's state, then the log, then /healthz.
        q = api.ssh(node, f"{health.show_command(unit + '.service')}; echo '>>>LOG'; {logcmd}; echo '>>>HEALTHZ'; "
                          "curl -fsS -m 5 http://127.0.0.1:10248/healthz || true")
        show, _, rest = q.stdout.partition(">>>LOG\n")
        log, _, healthz = rest.partition(">>>HEALTHZ\n")
        return log, health.sample(show, healthz)

    deadline = time.monotonic() + timeout
    try:
        while True:
            log, first = look()
            if (expect == "healthz" and first.healthz == "ok") or (expect != "healthz" and re.search(expect, log)):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"kubelet case {case}: no {expect!r} within {timeout}s; log:\n{log[-6000:]}")
            time.sleep(3)
        if expect == "healthz":
            settle = max(settle, health.SETTLE_SECONDS)
        last = first
        if settle:
            time.sleep(settle)
            log, last = look()
        healthy = expect == "healthz" and health.is_healthy(first, last)
        inspected = api.ssh(node, inspect, check=True).stdout if inspect else ""
        return Outcome(log, health.is_running(last.active_state), last.healthz, healthy, inspected)
    finally:
        _cleanup(node, unit)
        api.ssh(node, undo)


def system_slice_memory(node: str, cgroup: str) -> int:
    path = ("/sys/fs/cgroup/system.slice/memory.current" if cgroup == "v2"
            else "/sys/fs/cgroup/memory/system.slice/memory.usage_in_bytes")
    return int(api.ssh(node, f"cat {path}", check=True).stdout)


def check_runbook_system_cgroups(node: str) -> None:
    """What a v1.30 kubelet under systemd does with the runbook's systemCgroups (README's
    `kubelet.systemCgroups` row): it runs healthy, moves no process and creates no cgroup (the
    root cgroup holds only PID 1 and kernel threads), and its stats summary fails to read the
    cgroup at every collection (10 s apart: the case waits for two)."""
    stats = 'Failed to get system container stats" err="failed to get cgroup stats for \\"/systemd/system.slice\\"'
    out = run_case(node, "system-cgroups", RUNBOOK_SYSTEM_CGROUPS, rf"(?s){re.escape(stats)}.*{re.escape(stats)}",
                   settle=3, inspect=SYSTEM_CGROUPS_CREATED)
    assert out.still_running and out.healthz == "ok", out
    assert out.inspected == "", f"a /systemd cgroup or a process in one:\n{out.inspected}"
    assert 'unknown container \\"/systemd/system.slice\\"' in out.log
