"""Render the node steps: per remote step a bash script for create/update and one for delete.

A script is strict mode, the step's variables (quoted by `components/shell.py`),
`node_steps/lib.sh`, then the step bodies from `node_steps/`. The scripts travel on stdin,
followed by the step's data (a file bundle), and the command line is a short loader that reads
them back (`Step.command`): the real command provider quotes the whole command into every
failure message, so a failure shows the step's own output and a few hundred bytes of command,
and `pulumi preview --diff` shows script and file changes as a diff of stdin.

Replacement safety: Pulumi replaces a step by running the new resource's create, then the old
resource's delete with the old inputs. Every create counts itself as a holder of its step on the
node (`hold_step` in lib.sh) and every delete releases one; a delete undoes the step only when
it was the last holder, so an old delete never undoes what a newer create wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from components import paths, shell
from components.allocatable import eviction_basis_points, fixed_reserved_memory_bytes, reserved_millicores
from components.bundle import NodeFile, pack
from components.kubelet_config import render_crictl_config, render_kubelet_config
from components.quantities import to_bytes
from components.settings import NodeSettings, Settings
from components.shell import Value
from components.systemd import unit_files

SCRIPTS_DIR = Path(__file__).with_name("node_steps")
MIN_FREE_KB = 200 * 1024  # on the binary's filesystem: one kubelet and its temp copy
CONFIG_FREE_KB = 1024  # on every other filesystem a step writes to (files of a few KiB)
# How long a step waits for another run of the project on the same node (lib.sh, lock.sh): longer
# than the slowest step (configure-and-start: a containerd restart, health check and settle window).
LOCK_WAIT_SECONDS = 600
# Where a control plane on a node names the files it uses (a CA file the kubelet shares with it).
CONTROL_PLANE_DIRS = ("/etc/systemd/system", "/etc/kubernetes/manifests")
# Tasks an enforced pid reservation must leave free in its slice: sshd, the steps and containerd fork.
PID_HEADROOM = 100
JOURNAL_LINES = 40
# The version skew policy: a kubelet at most this many minor versions older than its API server.
MAX_KUBELET_MINOR_SKEW = 3
# The first containerd 1.6 that reports its sandbox image as pinned, so the kubelet keeps it.
MIN_CONTAINERD_VERSION = "1.6.22"
# fs.inotify.max_user_instances below this is a preflight warning ("too many open files").
MIN_INOTIFY_INSTANCES = 8192
# Where systemd-logind reads its drop-ins, highest priority first (systemd's configuration search
# path; /lib on a system whose /usr is not merged).
LOGIND_CONF_DIRS = tuple(
    f"{base}/systemd/logind.conf.d" for base in ("/etc", "/run", "/usr/local/lib", "/usr/lib", "/lib")
)
# How long the post-start check waits for a node the API server does not know yet (a kubelet
# registers within seconds of starting; check-registration.sh only ever warns).
REGISTRATION_WAIT_SECONDS = 30

# The steps, in order: the one table of their names. Each name is the resource name suffix (so part
# of the URN: tests/test_program.py pins them) and the holder name on the node; everything else
# (kubelet_node, tests, bench) takes the names from here.
PREFLIGHT = "preflight"
NODE_ADDRESS = "node-address"
INSTALL_KUBELET = "install-kubelet"
CREDENTIALS = "credentials"
CONFIGURE_AND_START = "configure-and-start"
STEP_NAMES = (PREFLIGHT, NODE_ADDRESS, INSTALL_KUBELET, CREDENTIALS, CONFIGURE_AND_START)
# The steps that write to the node (each has a delete and holders); the others only look.
WRITING_STEPS = (INSTALL_KUBELET, CREDENTIALS, CONFIGURE_AND_START)

Mode = Literal["create", "update", "delete"]


# Every script's last lines: a run that gets here succeeded (lib.sh, run_exit_hooks).
SCRIPT_END = "# The run reached its end: a success (lib.sh, run_exit_hooks).\nSTEP_DONE=true"


@cache
def _script_text(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text()


def render_script(
    title: str, node: NodeSettings, variables: Mapping[str, Value], *bodies: str
) -> str:
    """A complete bash script: strict mode, the step's variables, lib.sh, the step bodies."""
    lines = [
        "set -euo pipefail",
        f"# homelab-kubelet: {title} on node {node.name}",
        shell.assignment("NODE_NAME", node.name),
        # The hint texts quote commands in backticks; they are literal text, never expanded.
        *(shell.assignment(name, value, literal_backticks=name == "HINT_TEXTS") for name, value in variables.items()),
        "# shellcheck disable=SC2034  # some steps use only part of lib.sh",
        _script_text("lib.sh").rstrip("\n"),
        *(_script_text(body).rstrip("\n") for body in bodies),
        SCRIPT_END,
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Step:
    """One remote step on one node: the script create and update run, and the one delete runs.

    On the node both read `$1` (the mode); stdin holds `scripts` and then the step's data.
    """

    name: str
    node: NodeSettings
    create_script: str
    delete_script: str | None = None

    @property
    def scripts(self) -> str:
        """The start of the step's stdin: the create script, then the delete script."""
        return self.create_script + (self.delete_script or "")

    def command(self, mode: Mode, note: str = "") -> str:
        """The command line: read this mode's script from stdin and run it as root.

        `note` (one line) ends the command as a comment: what the step is run for, so that a
        change of it reruns the step (an update) and shows in `pulumi preview --diff`.
        """
        create_bytes = len(self.create_script.encode())
        delete_bytes = len((self.delete_script or "").encode())
        if mode == "delete":
            if self.delete_script is None:
                raise ValueError(f"step {self.name} has no delete script")
            # The data after the scripts is not the delete's: read it to the end all the same.
            reads = f"IFS= read -rN {create_bytes} _ && IFS= read -rN {delete_bytes} script && cat >/dev/null"
        else:
            reads = f"IFS= read -rN {create_bytes} script"
            if delete_bytes:
                reads += f" && IFS= read -rN {delete_bytes} _"
        what = f"{self.name} on {self.node.name}"
        missing = f"ERROR [{self.node.name}]: {self.name}: its script did not arrive whole on stdin"
        # Byte counts: LC_ALL=C makes `read -N` count bytes, not characters.
        # Node and step names are DNS names: nothing in `missing` needs quoting beyond "...".
        loader = (
            f'export LC_ALL=C; {{ {reads}; }} || {{ echo "{missing}" >&2; exit 1; }}; '
            f'exec bash -c "$script" {shell.quote(self.name)} {mode}'
        )
        if self.node.is_root:
            line = f"bash -c {shell.quote(loader)}"
        else:
            # The user's name is printed at run time, so the message is the node's own answer.
            sudo_missing = (
                f'echo "ERROR [{self.node.name}]: user $(id -un) cannot run sudo without a password; '
                f'add a sudoers rule such as: $(id -un) ALL=(ALL) NOPASSWD: ALL" >&2; exit 1'
            )
            line = f"sudo -n true 2>/dev/null || {{ {sudo_missing}; }}\nexec sudo -n bash -c {shell.quote(loader)}"
        comment = f"# homelab-kubelet {what}" + (f": {note}" if note else "")
        if "\n" in comment:
            raise ValueError("a step note is one line")
        return f"{line}\n{comment}\n"

    @property
    def create(self) -> str:
        return self.command("create")

    @property
    def delete(self) -> str | None:
        return None if self.delete_script is None else self.command("delete")


def render_step(
    name: str,
    node: NodeSettings,
    variables: Mapping[str, Value],
    bodies: Sequence[str],
    delete_variables: Mapping[str, Value] | None = None,
    delete_bodies: Sequence[str] = (),
    state_dir: bool = True,
) -> Step:
    """A step whose create records it as a holder and whose delete acts only for the last one.

    `state_dir`: the body reads STATE_DIR (every step with a delete does; of the read-only ones,
    preflight does and node-address does not)."""
    common: dict[str, Value] = {
        "STEP": name, **({"STATE_DIR": paths.STATE_DIR} if state_dir or delete_variables is not None else {}),
        "HOLDERS_DIR": paths.HOLDERS_DIR, "OWNED_DIR": paths.OWNED_DIR,
    }
    title = name.replace("-", " ")
    if delete_variables is None:
        # A step with no delete writes nothing, so it needs no lock.
        return Step(name, node, render_script(title, node, {**common, **variables}, *bodies))
    common |= {"LOCK_FILE": paths.LOCK_FILE, "LOCK_WAIT_SECONDS": LOCK_WAIT_SECONDS}
    return Step(
        name,
        node,
        render_script(title, node, {**common, **variables}, "lock.sh", *bodies, "hold.sh"),
        render_script(
            f"undo {title}", node, {**common, **delete_variables}, "lock.sh", "release.sh", *delete_bodies,
            "tidy-state.sh",
        ),
    )


def preflight(settings: Settings, node: NodeSettings) -> Step:
    reservations = node.reservations
    system_memory = reservations.system_reserved.memory
    kube_memory = reservations.kube_reserved.memory
    variables: dict[str, Value] = {
        "EXPECTED_ARCH": node.arch,
        # The version skew check reads the API server's /version with the CA on stdin.
        "API_SERVER": settings.kubernetes.api_server,
        "KUBELET_VERSION": settings.kubernetes.version,
        "MAX_KUBELET_MINOR_SKEW": MAX_KUBELET_MINOR_SKEW,
        "MIN_CONTAINERD_VERSION": MIN_CONTAINERD_VERSION,
        "PROC_CGROUPS": paths.PROC_CGROUPS,
        "DEVICE_TREE_MODEL": paths.DEVICE_TREE_MODEL,
        "RPI_CMDLINE_FILES": paths.RPI_CMDLINE_FILES,
        "INOTIFY_MAX_USER_INSTANCES": paths.INOTIFY_MAX_USER_INSTANCES,
        "MIN_INOTIFY_INSTANCES": MIN_INOTIFY_INSTANCES,
        "RUNTIME_SOCKET": settings.kubernetes.runtime_socket_path,
        "CONTAINERD_CONFIG": paths.CONTAINERD_CONFIG,
        "MANAGE_CONTAINERD_CGROUP_DRIVER": settings.kubelet.manage_containerd_cgroup_driver,
        "FAIL_SWAP_ON": settings.kubelet.fail_swap_on,
        "SWAP_BEHAVIOR": settings.kubelet.memory_swap.swap_behavior if settings.kubelet.memory_swap else "",
        "SHUTDOWN_GRACE_SECONDS": settings.kubelet.shutdown_grace_period_seconds(),
        "LOGIND_CONF_DIRS": LOGIND_CONF_DIRS,
        "HOSTNAME_CHECK": settings.kubelet.hostname_check,
        "RESOLV_CONF": node.resolv_conf,
        "RESERVED_MILLICORES": reserved_millicores(reservations),
        # reserved memory = fixed + capacity x basis points / 10000 (allocatable.reserved_memory_bytes)
        "RESERVED_MEMORY_BYTES": fixed_reserved_memory_bytes(reservations),
        "EVICTION_BASIS_POINTS": eviction_basis_points(reservations),
        "SYSTEM_SLICE": reservations.system_reserved_slice,
        "SYSTEM_RESERVED_MEMORY_BYTES": to_bytes(system_memory) if system_memory else 0,
        "ENFORCE_SYSTEM_RESERVED": "system-reserved" in reservations.enforce_node_allocatable,
        "KUBE_SLICE": reservations.kube_reserved_slice,
        "KUBE_RESERVED_MEMORY_BYTES": to_bytes(kube_memory) if kube_memory else 0,
        "ENFORCE_KUBE_RESERVED": "kube-reserved" in reservations.enforce_node_allocatable,
        "SYSTEM_RESERVED_PIDS": reservations.system_reserved.pid or 0,
        "KUBE_RESERVED_PIDS": reservations.kube_reserved.pid or 0,
        "PID_HEADROOM": PID_HEADROOM,
        "KUBELET_BINARY": paths.KUBELET_BINARY,
        **_free_space_needed(settings),
    }
    # Writes nothing, so it has no delete.
    return render_step(PREFLIGHT, node, variables, ["preflight.sh"])


def node_address(node: NodeSettings) -> Step:
    """The node's addresses and the one its kubelet registers (for the certificate's IP SANs).

    A step of its own, apart from preflight: its inputs change only with `nodes[].nodeIP` or the
    project's scripts, so the certificate, which depends on its output, stays known in a preview
    where preflight runs again (a reservation or version change)."""
    variables: dict[str, Value] = {
        "NODE_IP": node.node_ip or "",
        "ROUTE_FILE": paths.ROUTE_FILE,
        "IPV6_ROUTE_FILE": paths.IPV6_ROUTE_FILE,
    }
    # Writes nothing, so it has no delete.
    return render_step(NODE_ADDRESS, node, variables, ["node-address.sh"], state_dir=False)


def _free_space_needed(settings: Settings) -> dict[str, Value]:
    """Each directory a step writes to, and the KiB it needs free there (preflight sums them per
    filesystem)."""
    needed = {
        paths.STATE_DIR: CONFIG_FREE_KB,
        paths.KUBELET_BINARY.rsplit("/", 1)[0]: MIN_FREE_KB,
        paths.CA_CERT.rsplit("/", 1)[0]: CONFIG_FREE_KB,
        paths.KUBELET_DIR: CONFIG_FREE_KB,
        paths.SYSTEMD_DIR: CONFIG_FREE_KB,
        paths.CGROUP_HELPER.rsplit("/", 1)[0]: CONFIG_FREE_KB,
        paths.CONTAINERD_CONFIG.rsplit("/", 1)[0]: CONFIG_FREE_KB,
        paths.CRICTL_CONFIG.rsplit("/", 1)[0]: CONFIG_FREE_KB,
        settings.kubelet.static_pod_path: CONFIG_FREE_KB,
    }
    return {"WRITE_DIRS": list(needed), "WRITE_KB": [str(kb) for kb in needed.values()]}


def install_kubelet(settings: Settings, node: NodeSettings) -> Step:
    variables: dict[str, Value] = {
        "DOWNLOAD_BASE_URL": settings.kubernetes.download_base_url,
        "KUBELET_VERSION": settings.kubernetes.version,
        "ARCH": node.arch,
        # kubernetes.kubeletSha256 for this version and arch; empty: the mirror's kubelet.sha256.
        "PINNED_SHA256": settings.kubernetes.pinned_sha256(node.arch) or "",
        "KUBELET_BINARY": paths.KUBELET_BINARY,
    }
    return render_step(
        INSTALL_KUBELET, node, variables, ["install-kubelet.sh"],
        {"KUBELET_BINARY": paths.KUBELET_BINARY}, ["remove-kubelet.sh"],
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


def write_credentials(node: NodeSettings) -> Step:
    variables: dict[str, Value] = {"CA_CERT": paths.CA_CERT, "KUBELET_DIR": paths.KUBELET_DIR}
    return render_step(
        CREDENTIALS, node, variables, ["write-credentials.sh"],
        {"FILES": credential_paths(node), "USER_DIRS": CONTROL_PLANE_DIRS}, ["remove-files.sh"],
    )


def configure_files(settings: Settings, node: NodeSettings) -> list[NodeFile]:
    """kubelet-config.yaml, the systemd units, the cgroup helper and crictl's config for one node."""
    files = [NodeFile(paths.KUBELET_CONFIG, "0644", render_kubelet_config(settings, node))]
    files += [NodeFile(path, "0644", content) for path, content in unit_files(settings, node).items()]
    files.append(NodeFile(paths.CGROUP_HELPER, "0755", _script_text("prepare-cgroups.sh")))
    files.append(NodeFile(paths.CRICTL_CONFIG, "0644", render_crictl_config(settings)))
    return files


def kubelet_file_paths(settings: Settings, node: NodeSettings) -> list[str]:
    """The files of `configure_files` the kubelet runs on (all but crictl's config)."""
    return [paths.KUBELET_CONFIG, *unit_files(settings, node), paths.CGROUP_HELPER]


def configure_file_paths(settings: Settings, node: NodeSettings) -> list[str]:
    """The paths of `configure_files`, without rendering the kubelet configuration."""
    return [*kubelet_file_paths(settings, node), paths.CRICTL_CONFIG]


def configure_bundle(settings: Settings, node: NodeSettings) -> str:
    return pack(configure_files(settings, node))


def kubelet_runs_on(settings: Settings, node: NodeSettings) -> list[str]:
    """Every file whose change needs a kubelet restart: binary, credentials, configuration and
    units, and containerd's config (its cgroup driver must match the kubelet's)."""
    return [
        paths.KUBELET_BINARY, *credential_paths(node), *kubelet_file_paths(settings, node),
        paths.CONTAINERD_CONFIG,
    ]


@dataclass(frozen=True)
class Hint:
    """A known failure: a PCRE pattern for a journal line, and the text shown when it matches."""

    pattern: str
    text: str


def configure_and_start(settings: Settings, node: NodeSettings, hints: Sequence[Hint]) -> Step:
    """Write the configuration from the stdin bundle, then (re)start the kubelet and check it,
    then report whether the node registered with the API server (a warning when it did not).

    One step, like a Kubespray handler: it runs when the configuration (its stdin) or what the
    kubelet runs on (`configure_note`) changed, and restarts the kubelet only when a file in
    `kubelet_runs_on` differs from what the running kubelet was started with, or it is down.
    """
    variables: dict[str, Value] = {
        "STATIC_POD_PATH": settings.kubelet.static_pod_path,
        "KUBELET_DIR": paths.KUBELET_DIR,
        "KUBELET_BINARY": paths.KUBELET_BINARY,
        "KUBELET_RUNS_ON": kubelet_runs_on(settings, node),
        "KUBELET_RECORD": paths.KUBELET_RECORD,
        # configure.sh reloads systemd when a file it wrote under this directory changed.
        "SYSTEMD_DIR": paths.SYSTEMD_DIR,
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
        # check-registration.sh: the node's own credentials against the API server.
        "API_SERVER": settings.kubernetes.api_server,
        "CA_CERT": paths.CA_CERT,
        "NODE_CERT": paths.node_cert(node.name),
        "NODE_KEY": paths.node_key(node.name),
        "REGISTRATION_WAIT": REGISTRATION_WAIT_SECONDS,
    }
    removal: dict[str, Value] = {
        "FILES": configure_file_paths(settings, node),
        "KUBELET_UNIT": paths.KUBELET_UNIT,
        "KUBELET_RECORD": paths.KUBELET_RECORD,
        "CONTAINERD_DROPIN": paths.CONTAINERD_DROPIN,
        "CONTAINERD_CONFIG": paths.CONTAINERD_CONFIG,
    }
    return render_step(
        CONFIGURE_AND_START, node, variables,
        ["rollback.sh", "configure.sh", "start-kubelet.sh", "check-registration.sh"],
        removal, ["unconfigure.sh"],
    )


def configure_note(settings: Settings, node: NodeSettings, credentials_digest: str) -> str:
    """What configure-and-start runs for, besides its stdin: the binary and the credentials that
    other steps install. A change reruns it, and the node then sees which files changed."""
    return (
        f"kubelet {settings.kubernetes.version} ({node.arch}), "
        f"credentials {credentials_digest}"
    )


def content_hash(*parts: str) -> str:
    """A short digest that changes exactly when one of the parts does."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()[:16]
