"""The node side of the typed kubelet settings, with the project's own scripts run locally: the
preflight checks of graceful shutdown (logind's InhibitDelayMaxSec) and of LimitedSwap (cgroup
v2), and /etc/crictl.yaml written, recorded, rolled back and given back like every other file.

Preflight runs whole on this machine, with logind's drop-in directories in a temp dir and
stand-in `systemctl` (and `stat`, for the cgroup filesystem type) first on PATH; its other
checks may fail here, the tests look only at the lines of the checks they plant.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import node_scripts, paths, shell
from components.bundle import NodeFile
from components.settings import parse_settings
from tests.stack_config import homelab_config
from tests.test_node_faults_shell import Node, configure, sha256, unconfigure
from tests.test_node_faults_shell import node as node  # the fixture
from tests.test_renderers import NODE

UNATTENDED_UPGRADES_CAP = "unattended-upgrades-logind-maxdelay.conf"


def preflight(tmp_path: Path, kubelet: dict[str, Any], *, logind_active: bool = True,
              cgroup_fs: str | None = None) -> subprocess.CompletedProcess[str]:
    """Preflight of node k8s-node1 with `kubelet` over the homelab stack's kubelet settings."""
    raw = homelab_config()
    raw["kubelet"].update(kubelet)
    settings = parse_settings(raw)
    script = node_scripts.preflight(settings, settings.node(NODE)).create_script
    dirs = [tmp_path / "etc", tmp_path / "run", tmp_path / "usr-lib"]
    line = next(line for line in script.splitlines() if line.startswith("LOGIND_CONF_DIRS="))
    script = script.replace(line, shell.assignment("LOGIND_CONF_DIRS", [str(path) for path in dirs]))
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    tools = {
        # systemctl: only systemd-logind is asked about here.
        "systemctl": f'[ "$1 $2 $3" = "is-active --quiet systemd-logind.service" ] && exit {0 if logind_active else 3}\n'
                     "exit 0\n",
    }
    if cgroup_fs is not None:
        # stat: the cgroup filesystem type of a v1 (tmpfs) or v2 (cgroup2fs) node; anything else as is.
        tools["stat"] = f'[ "$1 $2" = "-fc %T" ] && [ "$3" = /sys/fs/cgroup ] && {{ echo {cgroup_fs}; exit 0; }}\nexec /usr/bin/stat "$@"\n'
    for name, body in tools.items():
        (fake / name).write_text("#!/bin/bash\n" + body)
        (fake / name).chmod(0o755)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": f"{fake}:/usr/bin:/bin"})


def dropin(tmp_path: Path, directory: str, name: str, text: str) -> Path:
    path = tmp_path / directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GRACE = {"shutdownGracePeriod": "60s", "shutdownGracePeriodCriticalPods": "20s"}


def logind_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "shutdownGracePeriod" in line]


# --- graceful shutdown: logind's InhibitDelayMaxSec ----------------------------------------------------


def test_unattended_upgrades_cap_is_named_with_the_fix(tmp_path: Path) -> None:
    # Debian's unattended-upgrades: /usr/lib/systemd/logind.conf.d/unattended-upgrades-logind-maxdelay.conf
    # sorts after the kubelet's 99-kubelet.conf and caps the delay at 30 s.
    cap = dropin(tmp_path, "usr-lib", UNATTENDED_UPGRADES_CAP, "[Login]\nInhibitDelayMaxSec=30\n")
    [line] = logind_lines(preflight(tmp_path, GRACE))
    assert line.startswith("[k8s-node1] warning: kubelet.shutdownGracePeriod is 60s but ")
    assert f"{cap} caps logind's InhibitDelayMaxSec at 30s and sorts after the kubelet's own 99-kubelet.conf" in line
    assert "unable to update logind InhibitDelayMaxSec" in line
    assert ("printf '[Login]\\nInhibitDelayMaxSec=60\\n' >/etc/systemd/logind.conf.d/zz-kubelet-shutdown.conf; "
            "systemctl kill -s HUP systemd-logind") in line


def test_the_warning_is_in_the_facts_too(tmp_path: Path) -> None:
    import json

    dropin(tmp_path, "usr-lib", UNATTENDED_UPGRADES_CAP, "[Login]\nInhibitDelayMaxSec=30s\n")
    result = preflight(tmp_path, GRACE)
    if result.returncode == 0:  # a machine where every other check passes prints the facts
        warnings = json.loads(result.stdout)["warnings"]
        assert any("caps logind's InhibitDelayMaxSec at 30s" in warning for warning in warnings)
    else:
        assert result.stdout == ""
    assert logind_lines(result)


@pytest.mark.parametrize(
    ("capped", "files", "why"),
    [
        (True, [("etc", "zz-kubelet-shutdown.conf", "[Login]\nInhibitDelayMaxSec=60\n")], "the fix: a drop-in sorting later"),
        (True, [("etc", UNATTENDED_UPGRADES_CAP, "")], "an empty file of its name in /etc masks it"),
        (False, [("usr-lib", "10-early.conf", "[Login]\nInhibitDelayMaxSec=5\n")], "sorts before the kubelet's drop-in"),
        (False, [("usr-lib", "zz-later.conf", "[Login]\nInhibitDelayMaxSec=2min\n")], "a later drop-in allowing more"),
        (False, [], "no drop-in at all (logind's 5 s default is raised by the kubelet's own)"),
    ],
    ids=["raised", "masked", "earlier", "more", "none"],
)
def test_no_warning_when_the_kubelet_can_raise_the_delay(
    tmp_path: Path, capped: bool, files: list[tuple[str, str, str]], why: str
) -> None:
    if capped:
        dropin(tmp_path, "usr-lib", UNATTENDED_UPGRADES_CAP, "[Login]\nInhibitDelayMaxSec=30\n")
    for directory, name, text in files:
        dropin(tmp_path, directory, name, text)
    assert logind_lines(preflight(tmp_path, GRACE)) == [], why


def test_a_masking_link_to_dev_null_hides_the_cap(tmp_path: Path) -> None:
    dropin(tmp_path, "usr-lib", UNATTENDED_UPGRADES_CAP, "[Login]\nInhibitDelayMaxSec=30\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / UNATTENDED_UPGRADES_CAP).symlink_to("/dev/null")
    assert logind_lines(preflight(tmp_path, GRACE)) == []


def test_the_fix_sorts_after_a_cap_named_late(tmp_path: Path) -> None:
    dropin(tmp_path, "usr-lib", "zzz-cap.conf", "[Login]\nInhibitDelayMaxSec=30\n")
    [line] = logind_lines(preflight(tmp_path, GRACE))
    assert ">/etc/systemd/logind.conf.d/zzz-cap.conf.zz.conf; systemctl kill -s HUP systemd-logind" in line


def test_time_spans_are_read_as_systemd_does(tmp_path: Path) -> None:
    dropin(tmp_path, "usr-lib", "zz-cap.conf", "[Login]\nInhibitDelayMaxSec=1min 30s\n")
    assert logind_lines(preflight(tmp_path, {"shutdownGracePeriod": "90s"})) == []
    [line] = logind_lines(preflight(tmp_path, {"shutdownGracePeriod": "91s"}))
    assert "caps logind's InhibitDelayMaxSec at 90s" in line


def test_graceful_shutdown_off_checks_nothing_of_logind(tmp_path: Path) -> None:
    dropin(tmp_path, "usr-lib", UNATTENDED_UPGRADES_CAP, "[Login]\nInhibitDelayMaxSec=30\n")
    assert logind_lines(preflight(tmp_path, {}, logind_active=False)) == []


def test_logind_not_running_is_a_warning(tmp_path: Path) -> None:
    [line] = logind_lines(preflight(tmp_path, GRACE, logind_active=False))
    assert line == (
        "[k8s-node1] warning: kubelet.shutdownGracePeriod: systemd-logind is not running, so the kubelet cannot "
        "delay the shutdown and graceful node shutdown stays off (its journal says \"Failed to start node shutdown "
        "manager\"); start it: systemctl enable --now systemd-logind"
    )


# --- swap: LimitedSwap needs cgroup v2 ------------------------------------------------------------


LIMITED_SWAP = {"failSwapOn": False, "memorySwap": {"swapBehavior": "LimitedSwap"}}


def swap_errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "memorySwap" in line]


def test_limited_swap_is_refused_on_cgroup_v1(tmp_path: Path) -> None:
    result = preflight(tmp_path, LIMITED_SWAP, cgroup_fs="tmpfs")
    # A tmpfs at /sys/fs/cgroup is v1, or hybrid with a unified/ beside (as lib.sh's cgroup_version
    # tells them); the kubelet's LimitedSwap needs the unified hierarchy alone.
    mode = "hybrid" if Path("/sys/fs/cgroup/unified").is_dir() else "v1"
    assert result.returncode == 1
    assert swap_errors(result) == [
        f"ERROR [k8s-node1] preflight: kubelet.memorySwap.swapBehavior is LimitedSwap but this node runs cgroup {mode}: "
        "the kubelet would give pods no swap without a word; use NoSwap, or boot the node with cgroup v2 "
        "(systemd.unified_cgroup_hierarchy=1 on the kernel command line)"
    ]


@pytest.mark.parametrize(("kubelet", "cgroup_fs"), [(LIMITED_SWAP, "cgroup2fs"),
                                                    ({"failSwapOn": False, "memorySwap": {"swapBehavior": "NoSwap"}}, "tmpfs")])
def test_limited_swap_on_v2_and_no_swap_anywhere_pass(tmp_path: Path, kubelet: dict[str, Any], cgroup_fs: str) -> None:
    assert swap_errors(preflight(tmp_path, kubelet, cgroup_fs=cgroup_fs)) == []


# --- /etc/crictl.yaml: the same ownership, rollback and delete as every file ------------------------


def crictl_file(node: Node) -> NodeFile:
    """The rendered /etc/crictl.yaml of node k8s-node1, placed in the temp node."""
    settings = parse_settings(homelab_config())
    [rendered] = [file for file in node_scripts.configure_files(settings, settings.node(NODE))
                  if file.path == paths.CRICTL_CONFIG]
    return NodeFile(str(node.path("etc", "crictl.yaml")), rendered.mode, rendered.content)


def test_crictl_config_is_created_recorded_and_removed(node: Node) -> None:
    file = crictl_file(node)
    target = Path(file.path)
    created = configure(node, [file])
    assert created.returncode == 0, created.stderr
    assert target.read_text() == file.content
    assert "runtime-endpoint: unix:///run/containerd/containerd.sock\n" in file.content
    assert node.record(target).read_text() == f"created {sha256(target)}\n"
    removed = unconfigure(node, [target])
    assert removed.returncode == 0, removed.stderr
    assert f"removed {target}" in removed.stdout
    assert not target.exists()


def test_the_operators_crictl_config_is_kept_and_put_back(node: Node) -> None:
    file = crictl_file(node)
    target = Path(file.path)
    target.parent.mkdir()
    target.write_text("runtime-endpoint: unix:///run/crio/crio.sock\n")
    configured = configure(node, [file])
    assert configured.returncode == 0, configured.stderr
    assert target.read_text() == file.content
    assert node.record(target).read_text().startswith("replaced ")
    removed = unconfigure(node, [target])
    assert removed.returncode == 0, removed.stderr
    assert f"restored {target}" in removed.stdout
    assert target.read_text() == "runtime-endpoint: unix:///run/crio/crio.sock\n"


def test_a_failed_configure_puts_the_operators_crictl_config_back(node: Node) -> None:
    file = crictl_file(node)
    target = Path(file.path)
    target.parent.mkdir()
    target.write_text("runtime-endpoint: unix:///run/crio/crio.sock\n")
    failed = configure(node, [file], then='fail "stand-in failure"')
    assert failed.returncode == 1
    assert target.read_text() == "runtime-endpoint: unix:///run/crio/crio.sock\n"
    assert not node.record(target).exists()


def test_a_crictl_config_edited_since_is_left_on_delete(node: Node) -> None:
    file = crictl_file(node)
    target = Path(file.path)
    assert configure(node, [file]).returncode == 0
    target.write_text(file.content + "debug: true\n")
    removed = unconfigure(node, [target])
    assert removed.returncode == 0, removed.stderr
    assert f"left {target}: changed since homelab-kubelet wrote it" in removed.stdout
    assert target.read_text().endswith("debug: true\n")


def test_the_delete_step_gives_crictl_config_back(node: Node) -> None:
    # The real delete lists it: configure-and-start's removal FILES hold /etc/crictl.yaml.
    settings = parse_settings(homelab_config())
    delete = node_scripts.configure_and_start(settings, settings.node(NODE), []).delete_script
    assert delete is not None
    files_line = next(line for line in delete.splitlines() if line.startswith("FILES="))
    assert paths.CRICTL_CONFIG in files_line
