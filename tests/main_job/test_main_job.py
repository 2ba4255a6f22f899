"""README's main command, as a newcomer types it: `scripts/up --yes` (the lab stack), then the
documented teardown (`scripts/stack.py destroy lab --exclude-protected`, `python -m lab down`).

Runs after the lab and end-to-end modules (pytest collects tests/main_job after tests/lab) and
reuses the lab in whatever cgroup mode they left it (LAB_CGROUP), so it costs no extra boot.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab import api as lab
from tests.e2e.harness import NODES, node_ssh, reset_nodes
from tests.toolchain import require_kubelet, toolchain_bin_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parent.parent.parent


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_readme_main_command_converges_the_lab_and_tears_down(tmp_path: Path) -> None:
    require_kubelet("v1.30.1", "amd64")
    running = lab.status()
    cgroup = running.cgroup if running is not None and all(lab.health(running).values()) else "v2"
    if running is not None:
        lab.up(cgroup=cgroup)
        reset_nodes()  # bare nodes, as a newcomer's lab starts
    # A newcomer's shell: no toolchain on PATH (scripts/up must find or build it: its `auto` setup
    # once failed here on the piece that cannot be built), no Pulumi settings of ours.
    toolchain_bin = str(toolchain_bin_dir())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "HOMELAB_KUBELET_"))},
        "PATH": os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != toolchain_bin),
        # A backend of its own, so a developer's .pulumi-state is left alone.
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "LAB_CGROUP": cgroup,
    }
    tracked_before = run(["git", "status", "--porcelain", "--", "Pulumi.lab.yaml", "Pulumi.yaml"], env, 60).stdout

    up = run(["scripts/up", "--yes"], env, 1800)  # README: the lab by default
    assert "Resources:" in up.stdout, up.stdout[-2000:]
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active", node
        assert node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz") == "ok", node
    # Running it did not dirty the tracked stack file (its encryption salt is committed).
    assert run(["git", "status", "--porcelain", "--", "Pulumi.lab.yaml", "Pulumi.yaml"], env, 60).stdout == tracked_before

    # README's teardown, as written there (and its offline preview form first).
    toolchain = 'eval "$(scripts/toolchain env)"; export PULUMI_CONFIG_PASSPHRASE=homelab-kubelet-lab; '
    preview = run(["bash", "-c", toolchain + "venv/bin/python scripts/stack.py preview lab --diff"], env, 900)
    assert "to create" not in preview.stdout and "to update" not in preview.stdout, preview.stdout[-2000:]
    run(["bash", "-c", toolchain + "venv/bin/python scripts/stack.py destroy lab --exclude-protected --yes"], env, 900)
    for node in NODES:
        assert lab.ssh(node, "systemctl is-active kubelet.service").stdout.strip() != "active", node
        assert node_ssh(node, "ls /usr/bin/kubelet /var/lib/kubelet/kubeconfig /var/lib/homelab-kubelet 2>/dev/null || true") == ""
    run(["venv/bin/python", "-m", "lab", "down"], env, 300)
    assert lab.status() is None
