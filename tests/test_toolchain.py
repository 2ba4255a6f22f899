"""The toolchain that scripts/toolchain builds from Go modules: versions, plugins, kubelet builds.

Nothing is skipped: a missing piece fails with the command that builds it (CI runs the script
first).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pulumi
import pulumi_tls as tls
import pytest
from pulumi import automation as auto

from tests.toolchain import (
    DEFAULT_KUBELET_VERSION,
    KUBELET_ARCHES,
    NODE_ARTEFACTS,
    QEMU_AARCH64,
    REPO,
    env_with_toolchain,
    kubelet_path,
    kubelet_sha256_path,
    missing_message,
    plugin_version,
    pulumi_version,
    require_kubelet,
    require_toolchain,
    toolchain_bin_dir,
)

pytestmark = pytest.mark.toolchain

EM_X86_64 = 62
EM_AARCH64 = 183


def run(*args: str) -> str:
    proc = subprocess.run(
        args,
        check=False,
        env=env_with_toolchain(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pulumi_cli() -> str:
    try:
        return str(require_toolchain(language_host=False) / "pulumi")
    except FileNotFoundError as err:
        pytest.fail(str(err))


def kubelet(arch: str, version: str = DEFAULT_KUBELET_VERSION) -> Path:
    try:
        return require_kubelet(version, arch)
    except FileNotFoundError as err:
        pytest.fail(str(err))


def elf_machine(path: Path) -> int:
    with path.open("rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    assert header[5] == 1, f"{path} is not little-endian"
    return int(struct.unpack_from("<H", header, 18)[0])


def test_pulumi_cli_matches_python_sdk() -> None:
    out = run(pulumi_cli(), "version").strip()
    assert out == f"v{pulumi_version()}"


def test_language_host_exec_shim_next_to_cli() -> None:
    bin_dir = require_toolchain(language_host=False)
    exec_shim = bin_dir / "pulumi-language-python-exec"
    assert exec_shim.is_file(), missing_message(str(exec_shim), "scripts/toolchain pulumi")
    assert exec_shim.read_text().startswith("#!"), "pulumi-language-python-exec should be the SDK's script"


def test_language_host_binary() -> None:
    bin_dir = require_toolchain(language_host=False)
    if not (bin_dir / "pulumi-language-python").exists():
        # Reported, not hidden: the Go module proxy refuses this module (docs/toolchain.md);
        # the real-engine tests host __main__.py as an Automation API inline program instead.
        pytest.xfail("pulumi-language-python cannot be built here: its Go module is not served")
    run(str(bin_dir / "pulumi-language-python"), "-version")


@pytest.mark.parametrize("name", ["tls", "command"])
def test_provider_plugin_installed_at_python_package_version(name: str) -> None:
    want = plugin_version(name)
    plugins = json.loads(run(pulumi_cli(), "plugin", "ls", "--json") or "[]")
    have = sorted(p["version"] for p in plugins if p.get("kind") == "resource" and p.get("name") == name)
    assert want in have, (
        f"resource plugin {name} {want} (from pulumi_{name}/pulumi-plugin.json) is not installed "
        f"(installed: {have or 'none'}): " + missing_message(f"plugin {name}", "scripts/toolchain plugins")
    )


def test_kubelet_version() -> None:
    out = run(str(kubelet("amd64")), "--version")
    assert out.strip() == f"Kubernetes {DEFAULT_KUBELET_VERSION}"


@pytest.mark.parametrize(("arch", "machine"), [("amd64", EM_X86_64), ("arm64", EM_AARCH64)])
def test_kubelet_architecture(arch: str, machine: int) -> None:
    assert elf_machine(kubelet(arch)) == machine


def test_node_artefacts_are_what_the_node_steps_download() -> None:
    """NODE_ARTEFACTS (what the arm64 emulation test runs) is every per-arch binary a node step
    downloads: a new one (CNI plugins, say) fails here until it is added there."""
    steps = REPO / "components" / "node_steps"
    downloaded = {m for f in steps.glob("*.sh") for m in re.findall(r"/\$ARCH/([A-Za-z0-9_.-]+)", f.read_text())}
    assert downloaded == set(NODE_ARTEFACTS)


@pytest.mark.parametrize("artefact", NODE_ARTEFACTS)
def test_arm64_artefact_runs_under_user_emulation(artefact: str) -> None:
    """The arm64 build is not only an aarch64 ELF: it runs (qemu user-mode emulation, no binfmt
    needed) and prints its version."""
    qemu = shutil.which(QEMU_AARCH64)
    if qemu is None:
        pytest.fail(f"{QEMU_AARCH64} is not installed: apt-get install -y qemu-user-static (scripts/setup does)")
    assert artefact == "kubelet", f"no toolchain build known for {artefact}: add it to scripts/toolchain"
    out = run(qemu, str(kubelet("arm64")), "--version")
    assert out.strip() == f"Kubernetes {DEFAULT_KUBELET_VERSION}"


@pytest.mark.parametrize("arch", KUBELET_ARCHES)
def test_kubelet_sha256_file(arch: str) -> None:
    path = kubelet(arch)
    sha_file = kubelet_sha256_path(DEFAULT_KUBELET_VERSION, arch)
    assert sha_file.is_file(), missing_message(str(sha_file))
    text = sha_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n?", text), f"{sha_file} should hold only the hex digest: {text!r}"
    assert text.strip() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_helper_paths_are_consistent() -> None:
    assert kubelet_path("1.30.2", "arm64") == kubelet_path("v1.30.2", "arm64")
    assert kubelet_path().parts[-3:] == (DEFAULT_KUBELET_VERSION, "amd64", "kubelet")
    env = env_with_toolchain({"PATH": "/usr/bin"})
    assert env["PATH"].split(":")[0] == str(toolchain_bin_dir())
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "1"


def test_tls_plugin_serves_the_python_sdk(tmp_path: Path) -> None:
    """An Automation API inline program (no language host needed) creates and destroys a key
    and a self-signed certificate through the built tls plugin, against a file backend."""
    pulumi_cli()  # fails with the build command when the CLI is missing

    def program() -> None:
        key = tls.PrivateKey("key", algorithm="ECDSA", ecdsa_curve="P256")
        cert = tls.SelfSignedCert(
            "ca",
            private_key_pem=key.private_key_pem,
            validity_period_hours=1,
            is_ca_certificate=True,
            allowed_uses=["cert_signing"],
            subject=tls.SelfSignedCertSubjectArgs(common_name="toolchain-test"),
        )
        pulumi.export("public_key", key.public_key_openssh)
        pulumi.export("cert", cert.cert_pem)

    state = tmp_path / "state"
    state.mkdir()
    env = env_with_toolchain()
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(tmp_path),
        pulumi_home=env["PULUMI_HOME"],
        pulumi_command=auto.PulumiCommand(root=str(toolchain_bin_dir().parent)),
        env_vars={
            **env,
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": "toolchain-test",
        },
        project_settings=auto.ProjectSettings(
            name="toolchain-test", runtime="python", backend=auto.ProjectBackend(url=f"file://{state}")
        ),
    )
    stack = auto.create_or_select_stack(stack_name="test", project_name="toolchain-test", program=program, opts=opts)
    try:
        outputs = stack.up().outputs
        assert str(outputs["public_key"].value).startswith("ecdsa-sha2-nistp256 ")
        assert str(outputs["cert"].value).startswith("-----BEGIN CERTIFICATE-----")
    finally:
        stack.destroy()
        stack.workspace.remove_stack("test")
