"""Node-side faults, with the project's own scripts run locally (temp-dir paths, stand-in
systemctl/containerd/logger): a full disk, a dropped connection or a signal, two runs at once,
and files the project did not write.

The full-disk cases mount a small tmpfs (the tests run as root, as on the project's machines);
a mount that fails is a test failure, not a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import node_scripts, shell
from components.bundle import NodeFile, pack
from tests.test_node_scripts_shell import FAKE_KUBELET, VERSION, Server, leftovers, lib, state_vars
from tests.test_node_scripts_shell import server as server
from tests.test_renderers import stack

ORIGINAL_CONTAINERD_CONFIG = "# the operator's own containerd config\nversion = 2\n"
DEFAULT_CONTAINERD_CONFIG = (
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
    "            SystemdCgroup = false\n"
)


@dataclass
class Node:
    """A node in a temp dir: stand-in tools, the state directory and the files a step writes."""

    root: Path

    @property
    def calls(self) -> Path:
        return self.root / "calls"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def owned(self) -> Path:
        return self.state / "owned"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def record(self, path: Path) -> Path:
        return self.owned / str(path).replace("/", "%")

    def call_lines(self, prefix: str = "") -> list[str]:
        if not self.calls.exists():
            return []
        return [line for line in self.calls.read_text().splitlines() if line.startswith(prefix)]

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin"}


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = Node(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = node.calls
    tools = {
        # systemctl: kubelet active and enabled; `show` answers "no" (NeedDaemonReload).
        "systemctl": (
            f'echo "systemctl $*" >>{calls}\n'
            'case "$1" in\n  is-active) echo active ;;\n  is-enabled) echo enabled ;;\n  show) echo no ;;\nesac\n'
        ),
        # containerd: runc without SystemdCgroup; `config default` prints a small default config.
        "containerd": f"printf '%s' '{DEFAULT_CONTAINERD_CONFIG}'\n",
        "logger": f'echo "logger $*" >>{calls}\n',
    }
    for name, body in tools.items():
        (fake / name).write_text("#!/bin/sh\n" + body)
        (fake / name).chmod(0o755)
    return node


def configure_variables(node: Node) -> dict[str, shell.Value]:
    sock = node.path("c.sock")
    return {
        **state_vars(node.root, node_scripts.CONFIGURE_AND_START),
        "STATIC_POD_PATH": str(node.path("kubelet.d")),
        "KUBELET_DIR": str(node.path("kubelet")),
        "KUBELET_UNIT": str(node.path("systemd", "kubelet.service")),
        "SYSTEMD_DIR": str(node.path("systemd")),
        "CONTAINERD_DROPIN": str(node.path("containerd.service.d", "10-slice.conf")),
        "CONTAINERD_CONFIG": str(node.path("etc-containerd", "config.toml")),
        "MANAGE_CONTAINERD_CGROUP_DRIVER": False,
        "RUNTIME_SOCKET": str(sock),
        "KUBE_SLICE": "kube.slice",
        "KUBELET_RECORD": str(node.state / "kubelet-running"),
    }


def script(node: Node, bodies: tuple[str, ...], variables: dict[str, shell.Value], then: str = "") -> str:
    _, settings_node = stack("homelab")
    rendered = node_scripts.render_script("test step", settings_node, variables, *bodies)
    # `then` runs before the last line (STEP_DONE=true), as part of the step.
    head, done = rendered.rstrip("\n").rsplit("\n", 1)
    return f"{head}\n{then}\n{done}\n"


def run(node: Node, bodies: tuple[str, ...], variables: dict[str, shell.Value], mode: str = "create",
        stdin: str = "", then: str = "") -> subprocess.CompletedProcess[str]:
    with socket.socket(socket.AF_UNIX) as listener:
        sock = variables.get("RUNTIME_SOCKET")
        if isinstance(sock, str) and not os.path.exists(sock):
            listener.bind(sock)
        return subprocess.run(
            ["bash", "-c", script(node, bodies, variables, then), "step", mode], input=stdin,
            capture_output=True, text=True, check=False, env=node.env(),
        )


CONFIGURE = ("lock.sh", "rollback.sh", "configure.sh", "hold.sh")
UNCONFIGURE = ("lock.sh", "release.sh", "unconfigure.sh", "tidy-state.sh")


def configure(node: Node, files: list[NodeFile], mode: str = "create", then: str = "",
              **overrides: shell.Value) -> subprocess.CompletedProcess[str]:
    return run(node, CONFIGURE, {**configure_variables(node), **overrides}, mode, pack(files), then)


def unconfigure(node: Node, files: list[Path], **overrides: shell.Value) -> subprocess.CompletedProcess[str]:
    variables = {**configure_variables(node), "FILES": [str(path) for path in files], **overrides}
    return run(node, UNCONFIGURE, variables, "delete")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a full disk ------------------------------------------------------------------------------


@contextmanager
def full_filesystem(directory: Path, size_kb: int = 64) -> Iterator[None]:
    """A small tmpfs at `directory` (keeping what was in it), then filled to the last byte."""
    saved = {path.name: path.read_bytes() for path in directory.iterdir()} if directory.exists() else {}
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(directory)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk case (run as root): {mounted.stderr}")
    try:
        for name, content in saved.items():
            (directory / name).write_bytes(content)
        filler = os.open(directory / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (4096, 1):
                while True:
                    try:
                        os.write(filler, b"\0" * chunk)
                    except OSError:
                        break
        finally:
            os.close(filler)
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_full_config_filesystem_fails_the_step_and_keeps_the_previous_config(node: Node) -> None:
    config = node.path("kubelet", "kubelet-config.yaml")
    config.parent.mkdir()
    config.write_text("the previous config\n")
    with full_filesystem(config.parent):
        result = configure(node, [NodeFile(str(config), "0644", "a new config\n" * 200)])
        assert config.read_text() == "the previous config\n"
        assert [name for name in leftovers(config.parent) if name != ".filler"] == []
    assert result.returncode == 1
    # The step's own message, naming the file and what to look at (not the shell's alone).
    assert f"ERROR [k8s-node1]: cannot write {config} (df -h {config.parent}; is its filesystem full?)" in result.stderr
    assert "changed" not in result.stdout
    assert node.call_lines("systemctl stop") == []  # the kubelet kept running on the old config
    assert leftovers(node.state) == []


def test_full_state_filesystem_fails_before_anything_is_replaced(node: Node) -> None:
    # The rollback copy cannot be written: the step must stop before the rename, not after.
    config = node.path("kubelet", "kubelet-config.yaml")
    config.parent.mkdir()
    config.write_text("the previous config\n" * 100)
    node.state.mkdir()
    with full_filesystem(node.state, size_kb=16):
        result = configure(node, [NodeFile(str(config), "0644", "a new config\n")])
    assert result.returncode == 1
    assert "ERROR [k8s-node1]: cannot " in result.stderr and "is it full?" in result.stderr
    assert config.read_text() == "the previous config\n" * 100
    assert leftovers(config.parent) == []


def test_preflight_names_a_full_filesystem_and_the_space_the_steps_need(tmp_path: Path) -> None:
    settings, settings_node = stack("homelab")
    target = tmp_path / "var-lib"
    with full_filesystem(target):
        rendered = node_scripts.preflight(settings, settings_node).create_script
        line = next(line for line in rendered.splitlines() if line.startswith("WRITE_DIRS="))
        rendered = rendered.replace(line, f"WRITE_DIRS=({target / 'kubelet'} {target / 'homelab-kubelet'} /tmp)")
        line = next(line for line in rendered.splitlines() if line.startswith("WRITE_KB="))
        rendered = rendered.replace(line, "WRITE_KB=(1024 1024 1)")
        result = subprocess.run(["bash", "-c", rendered], input="", capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert (f"preflight: only 0Mi free on {target} (for {target / 'kubelet'}, {target / 'homelab-kubelet'}); "
            f"the steps need 2Mi there: free some space (df -h {target})") in result.stderr


# --- a dropped connection or a signal -----------------------------------------------------------


def start_configure(node: Node, files: list[NodeFile], then: str) -> subprocess.Popen[str]:
    sock = node.path("c.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    return subprocess.Popen(
        ["bash", "-c", script(node, CONFIGURE, configure_variables(node), then), "step", "update"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node.env(),
    )


@pytest.mark.parametrize("how", ["connection dropped", "SIGHUP", "SIGTERM"])
def test_an_interrupted_configure_rolls_back(node: Node, how: str) -> None:
    config = node.path("kubelet", "kubelet-config.yaml")
    config.parent.mkdir()
    config.write_text("the previous config\n")
    step = start_configure(
        node, [NodeFile(str(config), "0644", "a new config\n")],
        # Stand-in for the restart and health check: a pause, then output (the next write).
        then='sleep 1\nlog "kubelet is healthy (stand-in)"\necho "kubelet restarted (stand-in)"',
    )
    assert step.stdin is not None and step.stdout is not None and step.stderr is not None
    step.stdin.write(pack([NodeFile(str(config), "0644", "a new config\n")]))
    step.stdin.close()
    assert step.stdout.readline() == f"changed {config}\n"
    if how == "connection dropped":
        # What the node sees when the SSH connection drops: nobody reads stdout or stderr any more.
        step.stdout.close()
        step.stderr.close()
    else:
        step.send_signal(getattr(signal, how))
    status = step.wait(timeout=30)
    assert status != 0
    assert config.read_text() == "the previous config\n"
    assert node.call_lines("systemctl stop kubelet.service") and node.call_lines("systemctl start kubelet.service")
    # The rollback also went to the journal: after a dropped connection nobody reads stderr.
    logged = node.call_lines("logger ")
    assert len(logged) == 1 and "rolled back: put back the 1 file(s) this run changed" in logged[0], logged
    assert not (node.state / "holders" / node_scripts.CONFIGURE_AND_START).exists()
    assert leftovers(node.state) == []


def test_a_failure_after_the_hold_gives_the_hold_back(node: Node) -> None:
    config = node.path("kubelet", "kubelet-config.yaml")
    result = run(node, ("lock.sh", "rollback.sh", "configure.sh", "hold.sh"), configure_variables(node), "create",
                 pack([NodeFile(str(config), "0644", "x\n")]), then='fail "stand-in failure after the hold"')
    assert result.returncode == 1
    assert not config.exists()
    assert not (node.state / "holders" / node_scripts.CONFIGURE_AND_START).exists()
    assert list(node.owned.iterdir()) == []


# --- two runs at once ---------------------------------------------------------------------------


def start_holder(node: Node, seconds: int) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        ["bash", "-c", script(node, ("lock.sh",), state_vars(node.root), f"sleep {seconds}"), "step", "update"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node.env(),
    )
    deadline = time.monotonic() + 10
    while not (node.state / "lock").exists() or not (node.state / "lock").read_text():
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    return holder


def test_a_second_run_fails_clearly_when_the_node_stays_busy(node: Node) -> None:
    holder = start_holder(node, 5)
    try:
        second = run(node, ("lock.sh",), {**state_vars(node.root), "LOCK_WAIT_SECONDS": 1}, "create")
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 1
    # Who holds it and since when, as the node says it at run time (the first run's pid).
    assert ("ERROR [k8s-node1]: another homelab-kubelet run holds this node: credentials (update) since "
            in second.stderr)
    assert f"UTC, pid {holder.pid}; waited 1s. Let it finish, then run pulumi up again" in second.stderr


def test_a_second_run_waits_for_the_first(node: Node) -> None:
    holder = start_holder(node, 2)
    started = time.monotonic()
    second = run(node, ("lock.sh",), {**state_vars(node.root), "LOCK_WAIT_SECONDS": 30}, "create",
                 then='echo "second run went on"')
    waited = time.monotonic() - started
    holder.wait()
    assert second.returncode == 0, second.stderr
    assert second.stdout == "second run went on\n"
    assert "waiting up to 30s for another homelab-kubelet run on this node (credentials (update) since" in second.stderr
    assert waited >= 1


# --- what the project did not write -------------------------------------------------------------


def install_variables(node: Node, server_url: str, binary: Path) -> dict[str, shell.Value]:
    return {**state_vars(node.root, node_scripts.INSTALL_KUBELET), "DOWNLOAD_BASE_URL": server_url,
            "KUBELET_VERSION": VERSION, "ARCH": "amd64", "PINNED_SHA256": "", "KUBELET_BINARY": str(binary)}


INSTALL = ("lock.sh", "install-kubelet.sh", "hold.sh")
REMOVE_KUBELET = ("lock.sh", "release.sh", "remove-kubelet.sh", "tidy-state.sh")


def install(node: Node, server: Server, binary: Path, mode: str = "create") -> subprocess.CompletedProcess[str]:
    env = {**node.env(), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.run(["bash", "-c", script(node, INSTALL, install_variables(node, server.url, binary)), "s", mode],
                          capture_output=True, text=True, check=False, env=env)


def remove_kubelet(node: Node, binary: Path) -> subprocess.CompletedProcess[str]:
    return run(node, REMOVE_KUBELET, {**state_vars(node.root, node_scripts.INSTALL_KUBELET), "KUBELET_BINARY": str(binary)},
               "delete")


def test_a_kubelet_that_was_there_and_matches_is_adopted_and_kept(node: Node, server: Server) -> None:
    binary = node.path("usr-bin", "kubelet")
    binary.parent.mkdir()
    binary.write_bytes(FAKE_KUBELET)
    binary.chmod(0o755)
    assert install(node, server, binary).returncode == 0
    removed = remove_kubelet(node, binary)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"left {binary}: it was there before homelab-kubelet\n"
    assert binary.read_bytes() == FAKE_KUBELET
    assert not node.state.exists()


def test_a_kubelet_that_was_there_and_differs_is_put_back(node: Node, server: Server) -> None:
    binary = node.path("usr-bin", "kubelet")
    binary.parent.mkdir()
    binary.write_bytes(b"#!/bin/sh\necho the operator's own kubelet\n")
    binary.chmod(0o750)
    installed = install(node, server, binary)
    assert installed.returncode == 0, installed.stderr
    assert binary.read_bytes() == FAKE_KUBELET
    removed = remove_kubelet(node, binary)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"restored {binary}\n"
    assert binary.read_bytes() == b"#!/bin/sh\necho the operator's own kubelet\n"
    assert stat.S_IMODE(binary.stat().st_mode) == 0o750
    assert not node.state.exists()


def test_a_kubelet_changed_by_hand_after_install_is_left(node: Node, server: Server) -> None:
    binary = node.path("usr-bin", "kubelet")
    binary.parent.mkdir()
    assert install(node, server, binary).returncode == 0
    binary.write_bytes(b"#!/bin/sh\necho built by hand later\n")
    removed = remove_kubelet(node, binary)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"left {binary}: changed since homelab-kubelet wrote it\n"
    assert binary.read_bytes() == b"#!/bin/sh\necho built by hand later\n"


def credentials_variables(node: Node, ca: Path) -> dict[str, shell.Value]:
    return {**state_vars(node.root, node_scripts.CREDENTIALS), "CA_CERT": str(ca), "KUBELET_DIR": str(node.path("kubelet"))}


def test_the_control_planes_ca_file_is_adopted_kept_and_never_replaced(node: Node) -> None:
    ca, cert = node.path("kubernetes", "ca.pem"), node.path("kubelet", "k8s-node1.pem")
    ca.parent.mkdir()
    ca.write_text("the cluster CA\n")
    bundle = pack([NodeFile(str(ca), "0644", "the cluster CA\n"), NodeFile(str(cert), "0644", "node cert\n")])
    created = run(node, ("lock.sh", "write-credentials.sh", "hold.sh"), credentials_variables(node, ca), "create",
                  bundle)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"changed {cert}\n"
    # The stack now brings another CA: refused, nothing replaced.
    other = pack([NodeFile(str(ca), "0644", "another CA\n"), NodeFile(str(cert), "0644", "node cert 2\n")])
    refused = run(node, ("lock.sh", "write-credentials.sh", "hold.sh"), credentials_variables(node, ca), "update",
                  other)
    assert refused.returncode == 1
    assert f"ERROR [k8s-node1]: {ca}: refusing to replace it: it holds another CA than the stack's" in refused.stderr
    assert ca.read_text() == "the cluster CA\n" and cert.read_text() == "node cert\n"
    removed = run(node, ("lock.sh", "release.sh", "remove-files.sh", "tidy-state.sh"),
                  {**credentials_variables(node, ca), "FILES": [str(ca), str(cert)], "USER_DIRS": []}, "delete")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"left {ca}: it was there before homelab-kubelet\nremoved {cert}\n"
    assert ca.read_text() == "the cluster CA\n"


def test_a_ca_file_the_api_server_names_stays_on_delete(node: Node) -> None:
    ca = node.path("kubernetes", "ca.pem")
    units = node.path("systemd")
    units.mkdir()
    (units / "kube-apiserver.service").write_text(f"[Service]\nExecStart=/usr/bin/kube-apiserver --client-ca-file={ca}\n")
    (units / "kubelet.service").write_text(f"[Service]\nExecStart=/usr/bin/kubelet # {ca}\n")
    created = run(node, ("lock.sh", "write-credentials.sh", "hold.sh"), credentials_variables(node, ca), "create",
                  pack([NodeFile(str(ca), "0644", "the cluster CA\n")]))
    assert created.returncode == 0, created.stderr
    removed = run(node, ("lock.sh", "release.sh", "remove-files.sh", "tidy-state.sh"),
                  {**credentials_variables(node, ca), "FILES": [str(ca)], "USER_DIRS": [str(units)]}, "delete")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"left {ca}: in use by {units / 'kube-apiserver.service'}\n"
    assert ca.exists()


def test_a_runbook_unit_is_put_back_on_delete(node: Node) -> None:
    unit = node.path("systemd", "kubelet.service")
    unit.parent.mkdir()
    unit.write_text("[Service]\nExecStart=/usr/local/bin/kubelet --config=/runbook/kubelet-config.yaml\n")
    runbook = unit.read_text()
    configured = configure(node, [NodeFile(str(unit), "0644", "[Service]\nExecStart=/usr/bin/kubelet\n")])
    assert configured.returncode == 0, configured.stderr
    assert unit.read_text() != runbook
    removed = unconfigure(node, [unit])
    assert removed.returncode == 0, removed.stderr
    assert f"restored {unit}" in removed.stdout
    assert unit.read_text() == runbook
    assert "the kubelet.service that was there before is back" in removed.stderr
    assert not node.state.exists()


def test_the_operators_containerd_config_survives_destroy(node: Node) -> None:
    config = node.path("etc-containerd", "config.toml")
    config.parent.mkdir()
    config.write_text(ORIGINAL_CONTAINERD_CONFIG)
    configured = configure(node, [], MANAGE_CONTAINERD_CGROUP_DRIVER=True)
    assert configured.returncode == 0, configured.stderr
    assert "SystemdCgroup = true" in config.read_text()
    # The operator edits it afterwards: destroy must not take that edit away.
    config.write_text(config.read_text() + "# the operator's later edit\n")
    edited = config.read_text()
    removed = unconfigure(node, [])
    assert removed.returncode == 0, removed.stderr
    assert f"left {config}: changed since homelab-kubelet wrote it" in removed.stdout
    assert config.read_text() == edited


def test_a_rolled_back_first_run_leaves_no_containerd_bookkeeping(node: Node) -> None:
    config = node.path("etc-containerd", "config.toml")
    config.parent.mkdir()
    config.write_text(ORIGINAL_CONTAINERD_CONFIG)
    failed = configure(node, [], then='fail "stand-in failure"', MANAGE_CONTAINERD_CGROUP_DRIVER=True)
    assert failed.returncode == 1
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert list(node.owned.iterdir()) == []
    # The operator edits the file later; a destroy then (e.g. of a later, successful run without
    # the containerd change) leaves it alone.
    config.write_text("# the operator's new config\n")
    removed = unconfigure(node, [])
    assert removed.returncode == 0, removed.stderr
    assert config.read_text() == "# the operator's new config\n"


def test_an_existing_static_pod_directory_keeps_its_mode(node: Node) -> None:
    shared = node.path("shared-tmp")
    shared.mkdir()
    shared.chmod(0o1777)
    configured = configure(node, [], STATIC_POD_PATH=str(shared))
    assert configured.returncode == 0, configured.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_files_of_an_earlier_version_are_taken_as_the_projects_on_update(node: Node) -> None:
    # Written by an earlier homelab-kubelet (no records): an update records them as created, and
    # delete removes them as that version would have.
    config = node.path("kubelet", "kubelet-config.yaml")
    config.parent.mkdir()
    config.write_text("written by an earlier version\n")
    updated = configure(node, [NodeFile(str(config), "0644", "written by an earlier version\n")], mode="update")
    assert updated.returncode == 0, updated.stderr
    assert node.record(config).read_text() == f"created {sha256(config)}\n"
    removed = unconfigure(node, [config])
    assert removed.returncode == 0, removed.stderr
    assert not config.exists()


def test_containerd_bookkeeping_of_an_earlier_version_becomes_a_record(node: Node) -> None:
    config = node.path("etc-containerd", "config.toml")
    config.parent.mkdir()
    config.write_text("SystemdCgroup = true # written by an earlier version\n")
    node.state.mkdir()
    (node.state / "containerd-config-managed").write_text("")
    (node.state / "containerd-config.toml.orig").write_text(ORIGINAL_CONTAINERD_CONFIG)
    updated = configure(node, [], mode="update")
    assert updated.returncode == 0, updated.stderr
    assert not (node.state / "containerd-config-managed").exists()
    assert Path(f"{node.record(config)}.orig").read_text() == ORIGINAL_CONTAINERD_CONFIG
    removed = unconfigure(node, [])
    assert removed.returncode == 0, removed.stderr
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert not node.state.exists()


# --- the preflight facts --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ['k8s"node\\1', 'a "quoted" \\ back\\slash', "tab\there\x01\x1f", "ünïcode é", ""])
def test_json_string_round_trips(tmp_path: Path, text: str) -> None:
    result = lib(tmp_path, "json_string", text)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.decode()) == text
