"""The toolchain that scripts/toolchain builds from Go modules: versions, plugins, kubelet builds.

Nothing is skipped: a missing piece fails with the command that builds it (CI runs the script
first).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pulumi
import pulumi_tls as tls
import pytest
import yaml
from pulumi import automation as auto

from tests.toolchain import (
    DEFAULT_KUBELET_VERSION,
    KUBELET_ARCHES,
    NODE_ARTEFACTS,
    QEMU_AARCH64,
    REPO,
    control_plane_path,
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


def test_language_host_next_to_cli_serves() -> None:
    """The CLI finds its Python language host next to itself: the real one or the labelled
    stand-in (the real one's Go module is not served); started as the CLI starts it, it prints
    the port it serves on."""
    bin_dir = require_toolchain(language_host=False)
    host = bin_dir / "pulumi-language-python"
    assert os.access(host, os.X_OK), missing_message(str(host), "scripts/install-language-standin")
    head = host.read_bytes()[:4096]
    assert head.startswith(b"\x7fELF") or b"homelab-kubelet STAND-IN" in head, f"{host}: neither a binary nor the stand-in"
    proc = subprocess.Popen([str(host)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with_toolchain())
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().decode().strip()
        assert port.isdigit(), f"{host} printed {port!r} instead of a port"
    finally:
        proc.kill()
        proc.wait()


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


def test_kubelet_tables_are_what_the_kubelet_sources_say() -> None:
    # components/data/kubelet-<minor>.json, extracted again from the module cache scripts/toolchain
    # fills: the program's field, flag and feature gate checks follow the real kubelet sources.
    import importlib.util

    from components.kubelet_api import DATA_DIR, known_minors
    from tests.toolchain import REPO, cache_dir

    spec = importlib.util.spec_from_file_location("kubelet_config_fields", REPO / "scripts" / "kubelet_config_fields.py")
    assert spec is not None and spec.loader is not None
    extractor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extractor)
    mod = cache_dir() / "go" / "mod"
    for minor in known_minors():
        committed = json.loads((DATA_DIR / f"kubelet-{minor}.json").read_text())
        version = committed["kubernetesVersion"]
        if not (mod / "k8s.io" / f"kubernetes@{version}").is_dir():
            pytest.fail(missing_message(f"the k8s.io/kubernetes@{version} module", f"scripts/toolchain kubelet {version}"))
        assert extractor.extract(mod, version) == committed, minor


# --- the lab's control plane (scripts/toolchain control-plane) and the imported CA -------------


@pytest.mark.parametrize("name", ["kube-apiserver", "kube-controller-manager"])
def test_control_plane_binaries_are_at_the_kubelets_version(name: str) -> None:
    path = control_plane_path(name)
    assert path.is_file(), missing_message(str(path), f"scripts/toolchain control-plane {DEFAULT_KUBELET_VERSION}")
    assert run(str(path), "--version").strip() == f"Kubernetes {DEFAULT_KUBELET_VERSION}"
    assert elf_machine(path) == EM_X86_64


def test_kubectl_is_at_the_kubelets_version() -> None:
    path = control_plane_path("kubectl")
    assert path.is_file(), missing_message(str(path), f"scripts/toolchain control-plane {DEFAULT_KUBELET_VERSION}")
    version = json.loads(run(str(path), "version", "--client", "-o", "json"))
    assert version["clientVersion"]["gitVersion"] == DEFAULT_KUBELET_VERSION


def test_tls_plugin_signs_node_certificates_with_an_imported_lab_ca(tmp_path: Path) -> None:
    """The program's import path (pki.importCa) with the built tls plugin: ClusterPki with the
    lab control plane's CA (ECDSA, PKCS#8 "PRIVATE KEY", as lab/control_plane.py makes it) and a
    NodeCertificate signed by it, through the real engine."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from components.pki import ClusterPki, NodeCertificate
    from lab import control_plane
    from tests.test_renderers import stack as rendered_stack

    pulumi_cli()
    pki = control_plane.ensure_pki(tmp_path / "pki", control_plane.lab_facts())
    ca_cert_pem, ca_key_pem = pki.ca_pems()
    assert ca_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    settings, node = rendered_stack("homelab")

    def program() -> None:
        cluster = ClusterPki("cluster", settings.pki,
                             (pulumi.Output.secret(ca_cert_pem), pulumi.Output.secret(ca_key_pem)))
        certificate = NodeCertificate(node.name, node, settings.pki, cluster, "https://10.0.2.2:6443")
        pulumi.export("cert", certificate.cert_pem)
        pulumi.export("kubeconfig", certificate.kubeconfig)

    state = tmp_path / "state"
    state.mkdir()
    env = env_with_toolchain()
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(tmp_path),
        pulumi_home=env["PULUMI_HOME"],
        pulumi_command=auto.PulumiCommand(root=str(toolchain_bin_dir().parent)),
        env_vars={**env, "PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "toolchain-test"},
        project_settings=auto.ProjectSettings(
            name="toolchain-test", runtime="python", backend=auto.ProjectBackend(url=f"file://{state}")
        ),
    )
    stack = auto.create_or_select_stack(stack_name="import", project_name="toolchain-test", program=program, opts=opts)
    try:
        outputs = stack.up().outputs
        cert = x509.load_pem_x509_certificate(str(outputs["cert"].value).encode())
        ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
        assert cert.issuer == ca.subject
        ca_public = ca.public_key()
        assert isinstance(ca_public, ec.EllipticCurvePublicKey) and cert.signature_hash_algorithm is not None
        ca_public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == f"system:node:{node.name}"
        assert outputs["kubeconfig"].secret
        assert base64.b64encode(ca_cert_pem.encode()).decode() in str(outputs["kubeconfig"].value)
    finally:
        stack.destroy()
        stack.workspace.remove_stack("import")


@pytest.mark.parametrize("stack", ["lab", "lab-arm64"])
def test_the_lab_ca_goes_into_a_copy_of_the_lab_stack_file_as_scripts_up_does(stack: str, tmp_path: Path) -> None:
    """scripts/up's import of the lab CA: `python -m lab ca cert|key` piped into
    `pulumi config set --secret --config-file COPY`, read back with the real CLI; the tracked
    stack file (Pulumi.lab.yaml, Pulumi.lab-arm64.yaml: its committed salt is the fixed
    passphrase's) is not touched."""
    from lab import control_plane

    cli = pulumi_cli()
    repo = Path(__file__).resolve().parent.parent
    stack_file = repo / f"Pulumi.{stack}.yaml"
    tracked = stack_file.read_bytes()
    env = {**env_with_toolchain(), "HOMELAB_KUBELET_CACHE": str(tmp_path / "cache"),
           "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_CONFIG_PASSPHRASE": "homelab-kubelet-lab"}
    (tmp_path / "state").mkdir()
    config_file = tmp_path / stack_file.name
    script = (
        "set -euo pipefail\n"
        f"pulumi stack select --create {stack} --cwd {repo} >/dev/null 2>&1 || pulumi stack init {stack} >/dev/null\n"
        f"cp {stack_file} {config_file}\n"
        f"{sys.executable} -m lab ca cert | pulumi config set --secret --stack {stack} --config-file {config_file} caCertPem\n"
        f"{sys.executable} -m lab ca key | pulumi config set --secret --stack {stack} --config-file {config_file} caKeyPem\n"
    )
    made = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert made.returncode == 0, made.stderr
    document = yaml.safe_load(config_file.read_text())
    for key in ("caCertPem", "caKeyPem"):
        assert set(document["config"][f"homelab-kubelet:{key}"]) == {"secure"}, key
    assert document["config"]["homelab-kubelet:pki"] == {"importCa": True}
    env_pki = tmp_path / "cache" / "lab" / "run" / "control-plane" / "pki"
    read = subprocess.run([cli, "config", "get", "caKeyPem", "--stack", stack, "--config-file", str(config_file)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == control_plane.Pki(env_pki).ca_key.read_text().strip()
    assert stack_file.read_bytes() == tracked
