"""Plain `pulumi` commands in a project directory, as users type them, through the real CLI and
the Python language host on the toolchain's PATH (the stand-in, standins/language_python/).

Needs no lab: a toy project with only a tls key for `up`/`destroy`, and `preview` of a copy of
this project with the homelab stack (a preview runs no remote command, so no node is dialled;
its host keys come from tests/data). Each run has its own file backend; `pulumi install` makes
a venv of its own (it reaches the package index to update pip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from components import node_scripts
from tests.stack_config import HOMELAB_KNOWN_HOSTS
from tests.toolchain import env_with_toolchain, pulumi_version, require_toolchain
from tests.workspace import REPO, copy_project

pytestmark = [pytest.mark.toolchain, pytest.mark.timeout(600)]

NODES = ("k8s-master", "k8s-node1", "k8s-node2")
TOY_PROGRAM = """\
import os
import sys

import pulumi
import pulumi_tls as tls

config = pulumi.Config()
key = tls.PrivateKey("key", algorithm=config.require("algorithm"))
pulumi.export("algorithm", key.algorithm)
pulumi.export("token", config.require_secret("token"))
pulumi.export("token_is_secret", pulumi.runtime.is_config_secret("toy:token"))
pulumi.export("dry_run", pulumi.runtime.is_dry_run())
pulumi.export("stack", pulumi.get_stack())
pulumi.export("root", pulumi.get_root_directory())
pulumi.export("cwd", os.getcwd())
pulumi.export("python", os.path.realpath(sys.executable))
"""


def cli(project: Path, state: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    require_toolchain()
    state.mkdir(parents=True, exist_ok=True)
    env = {**env_with_toolchain(), "PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "plain-cli"}
    result = subprocess.run(["pulumi", *args], cwd=project, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def toy_project(directory: Path, options: str = "toolchain: pip\n    virtualenv: venv") -> Path:
    directory.mkdir(parents=True)
    (directory / "Pulumi.yaml").write_text(f"name: toy\nruntime:\n  name: python\n  options:\n    {options}\n")
    (directory / "__main__.py").write_text(TOY_PROGRAM)
    return directory


def test_up_preview_destroy_of_a_project_run_by_the_language_host(tmp_path: Path) -> None:
    project = toy_project(tmp_path / "toy")
    (project / "venv").symlink_to(REPO / "venv")
    state = tmp_path / "state"
    cli(project, state, "stack", "init", "dev")
    cli(project, state, "config", "set", "algorithm", "ED25519")
    cli(project, state, "config", "set", "--secret", "token", "s3cret")

    preview = cli(project, state, "preview", "--diff")
    assert "+ tls:index/privateKey:PrivateKey: (create)" in preview.stdout, preview.stdout
    cli(project, state, "up", "--yes")
    outputs = json.loads(cli(project, state, "stack", "output", "--json", "--show-secrets").stdout)
    assert outputs["algorithm"] == "ED25519" and outputs["token"] == "s3cret"
    assert outputs["token_is_secret"] is True  # PULUMI_CONFIG_SECRET_KEYS reached the program
    assert outputs["dry_run"] is False and outputs["stack"] == "dev"
    assert outputs["root"] == str(project) and outputs["cwd"] == str(project)
    assert outputs["python"] == os.path.realpath(REPO / "venv" / "bin" / "python")
    assert "[secret]" in cli(project, state, "stack", "output", "token").stdout
    cli(project, state, "preview", "--expect-no-changes")
    cli(project, state, "destroy", "--yes")
    assert json.loads(cli(project, state, "stack", "output", "--json").stdout) == {}


def test_a_program_error_is_the_users_error_once(tmp_path: Path) -> None:
    project = toy_project(tmp_path / "toy")
    (project / "venv").symlink_to(REPO / "venv")
    (project / "__main__.py").write_text("raise ValueError('planted failure')\n")
    state = tmp_path / "state"
    cli(project, state, "stack", "init", "dev")
    failed = cli(project, state, "preview", check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "Program failed with an unhandled exception" in output and "ValueError: planted failure" in output
    # The shim exits 32 after showing the error: the host says `bail`, the CLI adds no "exit code" error.
    assert "non-zero exit code" not in output


def test_about_lists_the_language_host_and_the_venv_python(tmp_path: Path) -> None:
    project = toy_project(tmp_path / "toy")
    (project / "venv").symlink_to(REPO / "venv")
    about = cli(project, tmp_path / "state", "about").stdout
    assert f"language  python   {pulumi_version()}" in about, about
    assert f"This project is written in python: executable='{project / 'venv' / 'bin' / 'python'}'" in about
    versions = f"version='{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}'"
    assert versions in about
    assert "pulumi-tls" in about  # the program's dependencies


def wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel (module `<name>` with VALUE = 42), installable offline."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: homelab-kubelet-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


def test_install_creates_the_venv_and_installs_requirements(tmp_path: Path) -> None:
    project = toy_project(tmp_path / "toy")
    package = wheel(project, "homelab_toy_dependency", "1.0")
    (project / "requirements.txt").write_text(f"./{package.name}\n")
    result = cli(project, tmp_path / "state", "install")
    output = result.stdout + result.stderr
    for line in ("Installing dependencies...", "Creating virtual environment...", "Finished creating virtual environment",
                 "Updating pip, setuptools, and wheel in virtual environment...",
                 "Installing dependencies in virtual environment...", "Finished installing dependencies"):
        assert line in output, output
    python = project / "venv" / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import homelab_toy_dependency as d; print(d.VALUE)"],
                           capture_output=True, text=True, check=False)
    assert check.stdout.strip() == "42", check.stderr


def homelab_copy(tmp_path: Path) -> tuple[Path, Path]:
    project = copy_project(tmp_path / "project", ("Pulumi.homelab.yaml",))
    state = tmp_path / "state"
    cli(project, state, "stack", "init", "homelab")
    # The program verifies host keys; the homelab stack takes them from ~/.ssh/known_hosts.
    cli(project, state, "config", "set", "--path", "ssh.knownHostsFile", str(HOMELAB_KNOWN_HOSTS))
    return project, state


def test_preview_diff_of_a_new_stack_shows_each_nodes_planned_steps(tmp_path: Path) -> None:
    project, state = homelab_copy(tmp_path)
    preview = cli(project, state, "preview", "--diff", "--stack", "homelab")
    out = preview.stdout
    assert "Success: no issues found" in out + preview.stderr  # typechecker: mypy ran first
    for node in NODES:
        for step in node_scripts.STEP_NAMES:
            assert f"command:remote:Command::{node}-{step}]" in out, (node, step)
        # The step's script, in its stdin: node-address's is known before anything runs. Preflight's
        # stdin also carries the CA (its version-skew check trusts it), which a new stack with a
        # generated CA (this one) makes in the same run, so there it is unknown until `up`.
        assert f"# homelab-kubelet: node address on node {node}" in out
        assert f"# homelab-kubelet preflight on {node}" in out  # the command line names the step
    assert out.count("+ command:remote:Command: (create)") == len(NODES) * len(node_scripts.STEP_NAMES)


def test_a_type_error_stops_preview_with_mypys_message(tmp_path: Path) -> None:
    project, state = homelab_copy(tmp_path)
    with (project / "__main__.py").open("a") as main:
        main.write('\nplanted: int = "not an int"\n')
    failed = cli(project, state, "preview", "--diff", check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    line = len((project / "__main__.py").read_text().splitlines())
    assert (f'__main__.py:{line}: error: Incompatible types in assignment (expression has type "str", '
            'variable has type "int")  [assignment]') in output, output
    assert "Found 1 error in 1 file" in output
    assert "error: mypy failed: exit status 1" in output
    assert "(create)" not in output  # the program did not run
