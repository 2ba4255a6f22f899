"""Render the node scripts: one idempotent bash script per remote step, plus its delete.

A script is the step's variables, then `scripts/lib.sh`, then the step body from `scripts/`.
The whole script sits in the command line as a quoted here-document, so `pulumi preview --diff`
shows exactly what will run; file contents and secrets travel on stdin as a bundle.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from components import paths
from components.bundle import NodeFile, pack
from components.kubelet_config import render_kubelet_config
from components.quantities import to_bytes, to_millicores
from components.settings import NodeSettings, Settings
from components.systemd import unit_files

SCRIPTS_DIR = Path(__file__).with_name("scripts")
HEREDOC_END = "HOMELAB_KUBELET_SCRIPT"
MIN_FREE_KB = 200 * 1024
JOURNAL_LINES = 40

Value = str | int | bool | Sequence[str]


@cache
def _script_text(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text()


def _assignment(name: str, value: Value) -> str:
    if name == "HINT_TEXTS":
        # The hint texts quote commands in backticks; they are literal text, never expanded.
        return "# shellcheck disable=SC2016\n" + _assignment("_", value).replace("_=", f"{name}=", 1)
    if isinstance(value, bool):
        return f"{name}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{name}={value}"
    if isinstance(value, str):
        return f"{name}={shlex.quote(value)}"
    return f"{name}=(" + " ".join(shlex.quote(item) for item in value) + ")"


def render_script(
    step: str, node: NodeSettings, variables: Mapping[str, Value], *bodies: str
) -> str:
    """A complete bash script: strict mode, the step's variables, lib.sh, the step bodies."""
    lines = [
        "set -euo pipefail",
        f"# homelab-kubelet: {step} on node {node.name}",
        _assignment("NODE_NAME", node.name),
        *(_assignment(name, value) for name, value in variables.items()),
        "# shellcheck disable=SC2034  # some steps use only part of lib.sh",
        _script_text("lib.sh").rstrip("\n"),
        *(_script_text(body).rstrip("\n") for body in bodies),
    ]
    return "\n".join(lines) + "\n"


def command_line(script: str, node: NodeSettings) -> str:
    """Run `script` with bash as root: directly, or through passwordless sudo."""
    if HEREDOC_END in script:
        raise ValueError("script contains the here-document terminator")
    runner = "bash -c"
    prefix = ""
    if not node.is_root:
        runner = "sudo -n bash -c"
        message = (
            f"ERROR [{node.name}]: user {node.user} cannot run sudo without a password; "
            f"add a sudoers rule such as: {node.user} ALL=(ALL) NOPASSWD: ALL"
        )
        prefix = f"sudo -n true 2>/dev/null || {{ echo {shlex.quote(message)} >&2; exit 1; }}\n"
    return f"{prefix}{runner} \"$(cat <<'{HEREDOC_END}'\n{script}{HEREDOC_END}\n)\"\n"


@dataclass(frozen=True)
class StepScripts:
    """The command lines of one remote step (update runs the same script as create)."""

    create: str
    delete: str | None = None


def _reserved_memory_bytes(node: NodeSettings) -> int:
    reservations = node.reservations
    total = 0
    for reservation in (reservations.system_reserved, reservations.kube_reserved):
        if reservation.memory is not None:
            total += to_bytes(reservation.memory)
    eviction = reservations.eviction_hard.get("memory.available", "0")
    if not eviction.endswith("%"):
        total += to_bytes(eviction)
    return total


def _reserved_millicores(node: NodeSettings) -> int:
    reservations = node.reservations
    return sum(
        to_millicores(reservation.cpu)
        for reservation in (reservations.system_reserved, reservations.kube_reserved)
        if reservation.cpu is not None
    )


def preflight(settings: Settings, node: NodeSettings) -> StepScripts:
    reservations = node.reservations
    system_memory = reservations.system_reserved.memory
    script = render_script(
        "preflight",
        node,
        {
            "EXPECTED_ARCH": node.arch,
            "RUNTIME_SOCKET": settings.kubernetes.runtime_socket_path,
            "CONTAINERD_CONFIG": paths.CONTAINERD_CONFIG,
            "MANAGE_CONTAINERD_CGROUP_DRIVER": settings.kubelet.manage_containerd_cgroup_driver,
            "FAIL_SWAP_ON": settings.kubelet.fail_swap_on,
            "HOSTNAME_CHECK": settings.kubelet.hostname_check,
            "RESOLV_CONF": node.resolv_conf,
            "RESERVED_MILLICORES": _reserved_millicores(node),
            "RESERVED_MEMORY_BYTES": _reserved_memory_bytes(node),
            "SYSTEM_SLICE": reservations.system_reserved_slice,
            "SYSTEM_RESERVED_MEMORY_BYTES": to_bytes(system_memory) if system_memory else 0,
            "ENFORCE_SYSTEM_RESERVED": "system-reserved" in reservations.enforce_node_allocatable,
            "KUBELET_BINARY": paths.KUBELET_BINARY,
            "MIN_FREE_KB": MIN_FREE_KB,
        },
        "preflight.sh",
    )
    return StepScripts(create=command_line(script, node))


def install_kubelet(settings: Settings, node: NodeSettings) -> StepScripts:
    variables: dict[str, Value] = {
        "DOWNLOAD_BASE_URL": settings.kubernetes.download_base_url,
        "KUBELET_VERSION": settings.kubernetes.version,
        "ARCH": node.arch,
        "KUBELET_BINARY": paths.KUBELET_BINARY,
    }
    return StepScripts(
        create=command_line(render_script("install kubelet", node, variables, "install-kubelet.sh"), node),
        delete=command_line(
            render_script("remove kubelet", node, {"KUBELET_BINARY": paths.KUBELET_BINARY},
                          "remove-kubelet.sh"),
            node,
        ),
    )


def credential_paths(node: NodeSettings) -> tuple[str, ...]:
    return (paths.CA_CERT, paths.node_cert(node.name), paths.node_key(node.name), paths.KUBECONFIG)


def credentials_bundle(
    node: NodeSettings, *, ca_cert_pem: str, cert_pem: str, key_pem: str, kubeconfig: str
) -> str:
    ca, cert, key, config = credential_paths(node)
    return pack(
        [
            NodeFile(ca, "0644", ca_cert_pem),
            NodeFile(cert, "0644", cert_pem),
            NodeFile(key, "0600", key_pem),
            NodeFile(config, "0600", kubeconfig),
        ]
    )


def write_credentials(node: NodeSettings) -> StepScripts:
    variables: dict[str, Value] = {"CA_CERT": paths.CA_CERT, "KUBELET_DIR": paths.KUBELET_DIR}
    return StepScripts(
        create=command_line(
            render_script("write credentials", node, variables, "write-credentials.sh"), node
        ),
        delete=command_line(
            render_script("remove credentials", node, {"FILES": credential_paths(node)},
                          "remove-files.sh"),
            node,
        ),
    )


def configure_files(settings: Settings, node: NodeSettings) -> list[NodeFile]:
    """kubelet-config.yaml, the systemd units and the cgroup helper for one node."""
    files = [NodeFile(paths.KUBELET_CONFIG, "0644", render_kubelet_config(settings, node))]
    files += [NodeFile(path, "0644", content) for path, content in unit_files(settings, node).items()]
    files.append(NodeFile(paths.CGROUP_HELPER, "0755", _script_text("prepare-cgroups.sh")))
    return files


def configure_file_paths(settings: Settings, node: NodeSettings) -> list[str]:
    """The paths of `configure_files`, without rendering the kubelet configuration."""
    return [paths.KUBELET_CONFIG, *unit_files(settings, node), paths.CGROUP_HELPER]


def configure_bundle(settings: Settings, node: NodeSettings) -> str:
    return pack(configure_files(settings, node))


@dataclass(frozen=True)
class Hint:
    """A known failure: a PCRE pattern for a journal line, and the text shown when it matches."""

    pattern: str
    text: str


def configure_and_start(settings: Settings, node: NodeSettings, hints: Sequence[Hint]) -> StepScripts:
    """Write the configuration from the stdin bundle, then (re)start the kubelet and check it.

    One step, like a Kubespray handler: it runs only when the configuration (its stdin) or one
    of its triggers (binary, credentials) changed, and every such run restarts the kubelet.
    """
    variables: dict[str, Value] = {
        "STATIC_POD_PATH": settings.kubelet.static_pod_path,
        "KUBELET_DIR": paths.KUBELET_DIR,
        "STATE_DIR": paths.STATE_DIR,
        "CONTAINERD_DROPIN": paths.CONTAINERD_DROPIN,
        "CONTAINERD_CONFIG": paths.CONTAINERD_CONFIG,
        "MANAGE_CONTAINERD_CGROUP_DRIVER": settings.kubelet.manage_containerd_cgroup_driver,
        "RUNTIME_SOCKET": settings.kubernetes.runtime_socket_path,
        "KUBE_SLICE": node.reservations.kube_reserved_slice,
        "HEALTHZ_PORT": settings.kubelet.healthz_port,
        "HEALTH_TIMEOUT": settings.kubelet.health_timeout_seconds,
        "SETTLE_SECONDS": settings.kubelet.settle_seconds,
        "JOURNAL_LINES": JOURNAL_LINES,
        "HINT_PATTERNS": [hint.pattern for hint in hints],
        "HINT_TEXTS": [hint.text for hint in hints],
    }
    removal: dict[str, Value] = {
        "FILES": configure_file_paths(settings, node),
        "STATE_DIR": paths.STATE_DIR,
        "CONTAINERD_DROPIN": paths.CONTAINERD_DROPIN,
        "CONTAINERD_CONFIG": paths.CONTAINERD_CONFIG,
    }
    return StepScripts(
        create=command_line(
            render_script(
                "configure and start kubelet", node, variables, "rollback.sh", "configure.sh", "start-kubelet.sh"
            ),
            node,
        ),
        delete=command_line(render_script("unconfigure", node, removal, "unconfigure.sh"), node),
    )


def content_hash(*parts: str) -> str:
    """A short digest for restart triggers: it changes exactly when one of the parts does."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()[:16]
