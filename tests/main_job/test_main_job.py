"""README's commands as a newcomer types them, in a copy of the checkout: `scripts/up --yes` (the lab
stack, plain `pulumi up`), then README's plain-Pulumi session line by line as written there
(`pulumi login file://$PWD/.pulumi-state`, `stack select`, `preview --diff`, `up --yes`,
`destroy --exclude-protected --yes`), then `python -m lab down`.

Runs after the lab and end-to-end modules (pytest collects tests/main_job after tests/lab) and
reuses the lab in whatever cgroup mode they left it (LAB_CGROUP), so it costs no extra boot.
Between the two, a reservation of one node changes, so the session's preview must show the
lines of that node's kubelet-config.yaml that change and its `up` apply them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab import api as lab
from tests.e2e.harness import NODES, node_ssh, reset_nodes
from tests.toolchain import env_with_toolchain, require_kubelet, toolchain_bin_dir

REPO = Path(__file__).resolve().parent.parent.parent
SESSION_MARKER = "<!-- plain-pulumi-session:"
COMMAND_MARK = "@@@ homelab-kubelet main job: "


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def readme_session() -> list[str]:
    """The command lines of the sh block after README's plain-Pulumi marker, as written."""
    text = (REPO / "README.md").read_text()
    start = text.index("```sh\n", text.index(SESSION_MARKER)) + len("```sh\n")
    block = text[start:text.index("\n```", start)]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_session_is_the_one_the_main_job_runs() -> None:
    commands = [line.split("#")[0].strip() for line in readme_session()]
    assert commands == [
        'eval "$(scripts/toolchain env)"',
        "export PULUMI_CONFIG_PASSPHRASE=homelab-kubelet-lab",
        "mkdir -p .pulumi-state",
        "pulumi login file://$PWD/.pulumi-state",
        "pulumi stack select --create lab",
        "venv/bin/python -m lab ca cert | pulumi config set --secret caCertPem",
        "venv/bin/python -m lab ca key | pulumi config set --secret caKeyPem",
        "pulumi preview --diff --stack lab",
        "pulumi up --yes",
        "pulumi destroy --exclude-protected --yes",
    ]


def run_session(lines: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict[str, str]:
    """Each line in one bash session (set -euo pipefail), as typed; the output of each, by line."""
    script = "set -euo pipefail\nexec 2>&1\n" + "".join(f"echo '{COMMAND_MARK}{i}'\n{line}\n" for i, line in enumerate(lines))
    result = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    parts = result.stdout.split(COMMAND_MARK)[1:]
    outputs = {lines[int(part.split("\n", 1)[0])]: part.split("\n", 1)[1] for part in parts}
    assert result.returncode == 0, f"README's session failed at `{lines[len(parts) - 1]}`:\n{result.stdout[-6000:]}"
    return outputs


def output_of(outputs: dict[str, str], command: str) -> str:
    [text] = [out for line, out in outputs.items() if line.split("#")[0].strip() == command]
    return text


def checkout_copy(destination: Path) -> Path:
    """The files of this checkout (tracked and new ones, not the ignored), as a fresh clone has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    (destination / "venv").symlink_to((REPO / "venv").resolve())
    return destination


@pytest.fixture
def newcomer_home() -> Iterator[None]:
    """`pulumi login` writes the user's ~/.pulumi/credentials.json, and the copy's setup re-points the
    shared stand-ins at the copy: both go back afterwards."""
    credentials = Path.home() / ".pulumi" / "credentials.json"
    saved = credentials.read_bytes() if credentials.exists() else None
    yield
    if saved is None:
        credentials.unlink(missing_ok=True)
    else:
        credentials.write_bytes(saved)
    env = env_with_toolchain()
    for installer in ("scripts/install-command-standin", "scripts/install-language-standin"):
        subprocess.run([installer], cwd=REPO, env=env, capture_output=True, check=False, timeout=300)


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_readme_main_command_and_plain_session_converge_the_lab_and_tear_down(
    tmp_path: Path, newcomer_home: None
) -> None:
    require_kubelet("v1.30.1", "amd64")
    running = lab.status()
    cgroup = running.cgroup if running is not None and all(lab.health(running).values()) else "v2"
    if running is not None:
        lab.up(cgroup=cgroup)
        reset_nodes()  # bare nodes, as a newcomer's lab starts
    checkout = checkout_copy(tmp_path / "checkout")
    # A newcomer's shell: no toolchain on PATH (scripts/up must find or build it: its `auto` setup
    # once failed here on the piece that cannot be built), no Pulumi settings of ours.
    toolchain_bin = str(toolchain_bin_dir())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "HOMELAB_KUBELET_"))},
        "PATH": os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != toolchain_bin),
        "LAB_CGROUP": cgroup,
    }
    project_files = {name: (checkout / name).read_bytes() for name in ("Pulumi.yaml", "Pulumi.lab.yaml")}

    up = run(["scripts/up", "--yes"], checkout, env, 1800)  # README: the lab by default
    assert "Resources:" in up.stdout, up.stdout[-2000:]
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active", node
        assert node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz") == "ok", node
    # Running it did not change the project's files (the lab stack's encryption salt is committed).
    assert {name: (checkout / name).read_bytes() for name in project_files} == project_files

    # A reservation change of one node, then README's session as written, in the same directory.
    stack_file = checkout / "Pulumi.lab.yaml"
    document = yaml.safe_load(stack_file.read_text())
    nodes = document["config"]["homelab-kubelet:nodes"]
    nodes[1]["reservations"] = {"kubeReserved": {"memory": "320Mi"}}
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    before = document["config"]["homelab-kubelet:reservations"]["kubeReserved"]["memory"]
    outputs = run_session(readme_session(), checkout, env, 1800)

    preview = output_of(outputs, "pulumi preview --diff --stack lab")
    assert "Success: no issues found" in preview  # typechecker: mypy ran first
    for step in ("preflight", "configure-and-start"):
        assert f"command:remote:Command::{nodes[1]['name']}-{step}]" in preview, preview[-4000:]
    assert re.search(rf"^\s*-\s+memory: {before}$", preview, re.MULTILINE), preview[-4000:]
    assert re.search(r"^\s*\+\s+memory: 320Mi$", preview, re.MULTILINE), preview[-4000:]
    assert "~ 2 to update" in preview, preview[-2000:]
    assert "~ 2 updated" in output_of(outputs, "pulumi up --yes")  # node1's two steps, as previewed
    for node in NODES:
        assert lab.ssh(node, "systemctl is-active kubelet.service").stdout.strip() != "active", node
        assert node_ssh(node, "ls /usr/bin/kubelet /var/lib/kubelet/kubeconfig /var/lib/homelab-kubelet 2>/dev/null || true") == ""
    run(["venv/bin/python", "-m", "lab", "down"], checkout, env, 300)
    assert lab.status() is None
