"""The node scripts as shell code: shellcheck on every rendered script, then real runs.

shellcheck (apt-get install -y shellcheck) checks every script of node k8s-node1 in the homelab
stack (root: `bash -c`) and the variant stack (user `kube`: `sudo -n bash -c`), and
components/node_steps/prepare-cgroups.sh. A missing shellcheck fails the tests; it is not a skip.

Then the parts that need no root, no systemd and no node run locally in a temp dir:
`install_file`, `unpack_bundle` and the step holders from lib.sh through a small bash harness,
the real install-kubelet.sh against `python -m http.server` on 127.0.0.1 serving a stand-in
kubelet, configure/start/rollback with stand-in systemctl and containerd, and the command lines
themselves under dash and bash reading their scripts from stdin.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import node_scripts, paths, shell, systemd
from components.bundle import NodeFile, pack
from tests.test_renderers import STACKS, command_lines, stack, step_scripts, steps

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "components" / "node_steps" / "lib.sh"
PREPARE_CGROUPS = REPO / "components" / "node_steps" / "prepare-cgroups.sh"
def _shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck is not installed: apt-get install -y shellcheck")
    return path


SCRIPT_CASES = [(name, step) for name in STACKS for step in step_scripts(*stack(name))]
# Known findings in rendered scripts, per step (both stacks); see the report in the xfail reason.
SHELLCHECK_XFAIL: dict[str, str] = {}


def _script_params() -> list[object]:
    params: list[object] = []
    for name, step in SCRIPT_CASES:
        marks = []
        if step in SHELLCHECK_XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=SHELLCHECK_XFAIL[step]))
        params.append(pytest.param(name, step, marks=marks, id=f"{name}/{step}"))
    return params


@pytest.mark.parametrize(("stack_name", "step"), _script_params())
def test_shellcheck_rendered_script(stack_name: str, step: str) -> None:
    script = step_scripts(*stack(stack_name))[step]
    assert script.startswith("set -euo pipefail\n")
    result = subprocess.run(
        [_shellcheck(), "-s", "bash", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_prepare_cgroups() -> None:
    result = subprocess.run(
        [_shellcheck(), "-s", "bash", str(PREPARE_CGROUPS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_catches_a_problem() -> None:
    # The clean results above mean something only if shellcheck reports findings this way.
    result = subprocess.run(
        [_shellcheck(), "-s", "bash", "-"], input="rm -rf $DIR/x\n", capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_command_lines_hand_each_mode_its_script_and_the_data(tmp_path: Path) -> None:
    """Run every command line under sh (dash) and bash with the step's real stdin; a stand-in
    for the inner `bash -c SCRIPT` records the script, its arguments and the rest of stdin."""
    fake = tmp_path / "bin"
    fake.mkdir()
    # Stand-in for bash: the first call (the command line's own `bash -c LOADER`) runs the real
    # bash; the loader's `exec bash -c "$script" STEP MODE` is recorded instead of run.
    (fake / "bash").write_text(
        '#!/bin/sh\n[ "$1" = -c ] || exit 97\n'
        'if [ -z "${INNER:-}" ]; then INNER=1 exec /bin/bash "$@"; fi\n'
        'printf %s "$2" >"$CAPTURE.script"; shift 2; printf %s "$*" >"$CAPTURE.args"; cat >"$CAPTURE.stdin"\n'
    )
    # Stand-in for sudo: `sudo -n true` succeeds, `sudo -n CMD...` runs CMD.
    (fake / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] || exit 98\nshift\n[ "$1" = true ] && exit 0\nexec "$@"\n')
    for tool in ("bash", "sudo"):
        (fake / tool).chmod(0o755)
    capture = tmp_path / "captured"
    env = {"PATH": f"{fake}:/usr/bin:/bin", "CAPTURE": str(capture)}
    data = "@@@ homelab-kubelet file /x 0644\nnon-ASCII d\u00e4ta\n@@@ homelab-kubelet end\n"
    checked = 0
    for name in STACKS:
        for step in steps(*stack(name)).values():
            modes: list[node_scripts.Mode] = ["create", "update"]
            if step.delete_script:
                modes.append("delete")
            for mode in modes:
                for login_shell in ("/bin/sh", "/bin/bash"):  # /bin/sh is dash on Debian
                    subprocess.run([login_shell, "-c", step.command(mode, "a note")], env=env, check=True,
                                   input=(step.scripts + data).encode())
                    expected = step.delete_script if mode == "delete" else step.create_script
                    assert (capture.with_suffix(".script")).read_text() == expected, (name, step.name, mode)
                    assert (capture.with_suffix(".args")).read_text() == f"{step.name} {mode}"
                    # create and update read the data; delete drains it before its script runs.
                    assert (capture.with_suffix(".stdin")).read_text() == ("" if mode == "delete" else data)
                    checked += 1
    assert checked == 2 * 13 * 2  # 2 stacks x 13 command lines x 2 shells


def test_command_line_fails_clearly_on_a_cut_stdin(tmp_path: Path) -> None:
    step = steps(*stack("homelab"))[node_scripts.CONFIGURE_AND_START]
    result = subprocess.run(
        ["/bin/sh", "-c", step.command("create")], input=step.scripts[:1000].encode(),
        capture_output=True, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "ERROR [k8s-node1]: configure-and-start: its script did not arrive whole on stdin\n"
    )


def test_sudo_check_stops_without_passwordless_sudo(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    # Stand-in for a sudo that wants a password.
    (fake / "sudo").write_text("#!/bin/sh\nexit 1\n")
    (fake / "sudo").chmod(0o755)
    line = command_lines(*stack("variant"))["preflight.create"]
    result = subprocess.run(
        ["/bin/sh", "-c", line], env={"PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    # The user is the one the command ran as, printed by the node, not text of the command.
    user = getpass.getuser()
    assert f"user {user} cannot run sudo without a password" in result.stderr
    assert f"{user} ALL=(ALL) NOPASSWD: ALL" in result.stderr
    assert f"user {user} cannot" not in line


# --- lib.sh, executed ---------------------------------------------------------------------------

HARNESS = (
    'set -euo pipefail\nexport NODE_NAME=test-node OWNED_DIR="$PWD/state/owned"\n'
    '# shellcheck source=/dev/null\nsource "$1"\nshift\n"$@"\n# shellcheck disable=SC2034  # read by the EXIT trap\nSTEP_DONE=true\n'
)


def state_vars(root: Path, step: str = node_scripts.CREDENTIALS) -> dict[str, shell.Value]:
    """The variables render_step gives every step, with the state under `root`."""
    state = root / "state"
    return {"STEP": step, "STATE_DIR": str(state), "HOLDERS_DIR": str(state / "holders"),
            "OWNED_DIR": str(state / "owned"), "LOCK_FILE": str(state / "lock"), "LOCK_WAIT_SECONDS": 5}


def lib(tmp_path: Path, *args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[bytes]:
    harness = tmp_path / "harness.sh"
    harness.write_text(HARNESS)
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        ["bash", str(harness), str(LIB), *args], input=data, capture_output=True, check=False, cwd=tmp_path
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


def test_harness_is_clean_for_shellcheck() -> None:
    result = subprocess.run([_shellcheck(), "-s", "bash", "-"], input=HARNESS, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_install_file_writes_and_reports(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "sub" / "app.conf"
    result = lib(tmp_path, "install_file", str(target), "0644", stdin="a=1\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"changed {target}\n"
    assert target.read_bytes() == b"a=1\n"
    assert mode(target) == 0o644
    assert mode(target.parent) == 0o755


def test_install_file_unchanged_prints_nothing(tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    assert lib(tmp_path, "install_file", str(target), "0600", stdin="secret\n").returncode == 0
    inode = target.stat().st_ino
    result = lib(tmp_path, "install_file", str(target), "0600", stdin="secret\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert target.stat().st_ino == inode
    assert leftovers(tmp_path) == []


def test_install_file_mode_change_only(tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    lib(tmp_path, "install_file", str(target), "0644", stdin="x\n")
    result = lib(tmp_path, "install_file", str(target), "0600", stdin="x\n")
    assert result.stdout.decode() == f"changed {target}\n"
    assert mode(target) == 0o600
    assert target.read_bytes() == b"x\n"


def test_install_file_content_change_is_a_rename(tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    lib(tmp_path, "install_file", str(target), "0644", stdin="old\n" * 1000)
    inode = target.stat().st_ino
    with target.open("rb") as reader:
        result = lib(tmp_path, "install_file", str(target), "0644", stdin="new\n")
        # A reader of the old file still sees all of it: the new file was renamed over it,
        # not written into it.
        assert reader.read() == b"old\n" * 1000
    assert result.stdout.decode() == f"changed {target}\n"
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_ino != inode
    assert leftovers(tmp_path) == []


TRICKY = (
    "plain\n"
    "  leading and trailing spaces  \n"
    "\ttab\\backslash \\n not a newline\n"
    "\n"
    "$(touch /tmp/should-not-exist) `id` ${HOME} %s %d\n"
    "-n\n"
    "-e\n"
    "@@ almost a marker\n"
    "line with carriage return\r\n"
    "\n"
)


def test_unpack_bundle_writes_files_exactly(tmp_path: Path) -> None:
    files = [
        NodeFile(str(tmp_path / "etc" / "a.conf"), "0644", TRICKY),
        NodeFile(str(tmp_path / "secrets" / "node-key.pem"), "0600",
                 "-----BEGIN EC PRIVATE KEY-----\nc3RhbmQtaW4=\n-----END EC PRIVATE KEY-----\n"),
        NodeFile(str(tmp_path / "bin" / "helper"), "0755", "#!/bin/sh\nexit 0"),  # no final newline
    ]
    bundle = pack(files)
    result = lib(tmp_path, "unpack_bundle", stdin=bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [f"changed {file.path}" for file in files]
    for file in files:
        path = Path(file.path)
        expected = file.content if file.content.endswith("\n") else file.content + "\n"
        assert path.read_bytes() == expected.encode(), file.path
        assert mode(path) == int(file.mode, 8), file.path
    assert not Path("/tmp/should-not-exist").exists()
    again = lib(tmp_path, "unpack_bundle", stdin=bundle)
    assert (again.returncode, again.stdout) == (0, b"")


def test_unpack_bundle_truncated_writes_nothing_half(tmp_path: Path) -> None:
    complete = tmp_path / "first.conf"
    cut = tmp_path / "second.pem"
    bundle = pack([NodeFile(str(complete), "0644", "one\n"), NodeFile(str(cut), "0600", "two\nthree\n")])
    truncated = bundle[: bundle.rindex("@@@ homelab-kubelet end")]
    assert truncated.endswith("three\n")
    result = lib(tmp_path, "unpack_bundle", stdin=truncated)
    assert result.returncode != 0
    assert f"{cut} has no end marker" in result.stderr.decode()
    assert not cut.exists()
    assert complete.read_bytes() == b"one\n"  # a complete file before the cut may be written
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("bundle", "message"),
    [("stray line\n", "data outside a file"), ("@@@ homelab-kubelet end\n", "end without file")],
)
def test_unpack_bundle_malformed(tmp_path: Path, bundle: str, message: str) -> None:
    result = lib(tmp_path, "unpack_bundle", stdin=bundle)
    assert result.returncode == 1
    assert f"ERROR [test-node]: malformed bundle: {message}" in result.stderr.decode()


# --- install-kubelet.sh against a local HTTP server ------------------------------------------------

VERSION = "v1.30.1"
FAKE_KUBELET = b"#!/bin/sh\necho 'stand-in for the kubelet binary, not a kubelet'\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.port = _free_port()
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root),
             str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("http.server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """The request paths logged so far (`"GET /path HTTP/1.1" 200`)."""
        paths = []
        for line in self.log.read_text().splitlines():
            if '"GET ' in line:
                paths.append(line.split('"GET ', 1)[1].split(" ", 1)[0])
        return paths

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log_file.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    served = root / VERSION / "bin" / "linux" / "amd64"
    served.mkdir(parents=True)
    # Stand-ins for dl.k8s.io's kubelet and kubelet.sha256 (which holds the bare hex digest).
    (served / "kubelet").write_bytes(FAKE_KUBELET)
    (served / "kubelet.sha256").write_text(hashlib.sha256(FAKE_KUBELET).hexdigest())
    running = Server(root, tmp_path / "access.log")
    yield running
    running.stop()


def run_install(tmp_path: Path, server: Server, binary: Path, pinned: str = "") -> subprocess.CompletedProcess[str]:
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "install kubelet",
        node,
        {"DOWNLOAD_BASE_URL": server.url, "KUBELET_VERSION": VERSION, "ARCH": "amd64", "PINNED_SHA256": pinned,
         "KUBELET_BINARY": str(binary), **state_vars(tmp_path, node_scripts.INSTALL_KUBELET)},
        "install-kubelet.sh", "hold.sh",  # as the step renders it: the holder count follows the body
    )
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.run(["bash", "-c", script, node_scripts.INSTALL_KUBELET, "create"], capture_output=True, text=True,
                          check=False, env=env)


def wait_for_log(server: Server, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(server.requests()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.requests()


def test_install_kubelet_downloads_once_and_verifies(tmp_path: Path, server: Server) -> None:
    bin_dir = tmp_path / "usr-bin"
    bin_dir.mkdir()
    binary = bin_dir / "kubelet"
    base = f"/{VERSION}/bin/linux/amd64/kubelet"

    first = run_install(tmp_path, server, binary)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"changed {binary}\n"
    assert binary.read_bytes() == FAKE_KUBELET
    assert mode(binary) == 0o755
    assert wait_for_log(server, 2) == [f"{base}.sha256", base]

    holders = tmp_path / "state" / "holders" / node_scripts.INSTALL_KUBELET
    assert holders.read_text() == "1\n"

    second = run_install(tmp_path, server, binary)  # e.g. the create of a replacement
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    assert "already installed" in second.stderr
    assert wait_for_log(server, 3)[2:] == [f"{base}.sha256"]
    # Nothing downloaded, but this create holds the step too: the old delete must see it.
    assert holders.read_text() == "2\n"

    # The published digest no longer matches (stand-in for a corrupt download or a wrong file).
    (server.root / VERSION / "bin" / "linux" / "amd64" / "kubelet.sha256").write_text(
        hashlib.sha256(b"some other kubelet").hexdigest() + "  kubelet\n"
    )
    inode = binary.stat().st_ino
    third = run_install(tmp_path, server, binary)
    assert third.returncode == 1
    assert "sha256 mismatch" in third.stderr
    assert third.stdout == ""
    assert binary.read_bytes() == FAKE_KUBELET
    assert binary.stat().st_ino == inode
    assert leftovers(bin_dir) == []
    assert wait_for_log(server, 5)[3:] == [f"{base}.sha256", base]


def test_install_kubelet_with_a_pinned_digest_trusts_the_pin_not_the_mirror(tmp_path: Path, server: Server) -> None:
    bin_dir = tmp_path / "usr-bin"
    bin_dir.mkdir()
    binary = bin_dir / "kubelet"
    base = f"/{VERSION}/bin/linux/amd64/kubelet"
    pinned = hashlib.sha256(FAKE_KUBELET).hexdigest()

    first = run_install(tmp_path, server, binary, pinned)
    assert first.returncode == 0, first.stderr
    assert binary.read_bytes() == FAKE_KUBELET
    assert wait_for_log(server, 1) == [base]  # the mirror's kubelet.sha256 is not even fetched

    # Whoever controls a plain-http mirror replaces the binary and its .sha256 together.
    served = server.root / VERSION / "bin" / "linux" / "amd64"
    (served / "kubelet").write_bytes(b"#!/bin/sh\necho not the kubelet\n")
    (served / "kubelet.sha256").write_text(hashlib.sha256((served / "kubelet").read_bytes()).hexdigest())
    binary.unlink()
    second = run_install(tmp_path, server, binary, pinned)
    assert second.returncode == 1
    assert f"sha256 mismatch for {server.url}{base}: expected {pinned}" in second.stderr
    assert not binary.exists()
    assert leftovers(bin_dir) == []


def test_install_kubelet_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    _, node = stack("homelab")
    binary = tmp_path / "kubelet"
    script = node_scripts.render_script(
        "install kubelet",
        node,
        {"DOWNLOAD_BASE_URL": f"http://127.0.0.1:{_free_port()}", "KUBELET_VERSION": VERSION, "ARCH": "amd64",
         "PINNED_SHA256": "", "KUBELET_BINARY": str(binary)},
        "install-kubelet.sh",
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "cannot fetch" in result.stderr and "kubernetes.downloadBaseUrl" in result.stderr
    assert not binary.exists()


# --- configure.sh with stand-in containerd/systemctl ----------------------------------------------

ORIGINAL_CONTAINERD_CONFIG = "# the operator's own containerd config\nversion = 2\n"
DEFAULT_CONTAINERD_CONFIG = (
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
    "            SystemdCgroup = false\n"
)


def run_configure_bodies(
    tmp_path: Path, tools: dict[str, str], bodies: tuple[str, ...], stdin: str, config: Path,
    manage_driver: bool = True, then: str = "",
) -> subprocess.CompletedProcess[str]:
    """Render `bodies` (configure.sh, optionally after rollback.sh) with every path under tmp_path,
    followed by `then` (shell text), and run it with `stdin` and the stand-in `tools` (name ->
    /bin/sh body) first on PATH; a listening socket stands in for the runtime's."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    for name, body in tools.items():
        (fake / name).write_text("#!/bin/sh\n" + body)
        (fake / name).chmod(0o755)
    sock = tmp_path / "c.sock"
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "configure and start kubelet",
        node,
        {
            "STATIC_POD_PATH": str(tmp_path / "kubelet.d"),
            "KUBELET_DIR": str(tmp_path / "kubelet"),
            **state_vars(tmp_path, node_scripts.CONFIGURE_AND_START),
            "SYSTEMD_DIR": str(tmp_path / "systemd"),
            "CONTAINERD_DROPIN": str(tmp_path / "containerd.service.d" / "10-slice.conf"),
            "CONTAINERD_CONFIG": str(config),
            "MANAGE_CONTAINERD_CGROUP_DRIVER": manage_driver,
            "RUNTIME_SOCKET": str(sock),
            "KUBE_SLICE": "kube.slice",
        },
        *bodies,
    ) + then + "\n"
    sock.unlink(missing_ok=True)  # left by an earlier run on the same tmp_path
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock))
        return subprocess.run(
            ["bash", "-c", script], input=stdin, capture_output=True, text=True, check=False,
            env={"PATH": f"{fake}:/usr/bin:/bin"},
        )


def run_configure(
    tmp_path: Path, default_fails: bool, manage_driver: bool = True, need_daemon_reload: str = "no",
    files: tuple[NodeFile, ...] = (),
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """configure.sh with stand-in containerd and systemctl and `files` as its bundle; returns the
    run, containerd's config and the file of recorded calls. Runs again on the same tmp_path see
    the files the earlier run wrote."""
    calls = tmp_path / "calls"
    tools = {
        # Stand-in for containerd: `config dump` shows runc without SystemdCgroup; `config default`
        # prints a minimal default config, or fails.
        "containerd": (
            f'echo "containerd $*" >>{calls}\n'
            'case "$2" in\n'
            f"  dump) printf '%s' '{DEFAULT_CONTAINERD_CONFIG}' ;;\n"
            + ("  default) echo 'containerd: failed to load plugin config' >&2; exit 1 ;;\n" if default_fails else
               f"  default) printf '%s' '{DEFAULT_CONTAINERD_CONFIG}' ;;\n")
            + "esac\n"
        ),
        # Stand-in for systemctl: records the call; `show` answers NeedDaemonReload for both units.
        "systemctl": (
            f'echo "systemctl $*" >>{calls}\n'
            f'[ "$1" != show ] || printf "{need_daemon_reload}\\n{need_daemon_reload}\\n"\n'
        ),
    }
    config = tmp_path / "etc-containerd" / "config.toml"
    if not config.exists():
        config.parent.mkdir()
        config.write_text(ORIGINAL_CONTAINERD_CONFIG)
    result = run_configure_bodies(tmp_path, tools, ("configure.sh",), pack(list(files)) if files else "", config,
                                  manage_driver)
    return result, config, calls


def test_configure_sets_systemd_cgroup_and_keeps_the_original(tmp_path: Path) -> None:
    result, config, calls = run_configure(tmp_path, default_fails=False)
    assert result.returncode == 0, result.stderr
    assert "SystemdCgroup = true" in config.read_text()
    assert "SystemdCgroup = false" not in config.read_text()
    # The operator's file is kept, and the record says the project replaced it with what it wrote.
    record = tmp_path / "state" / "owned" / str(config).replace("/", "%")
    assert Path(f"{record}.orig").read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert record.read_text() == f"replaced {hashlib.sha256(config.read_bytes()).hexdigest()}\n"
    assert f"changed {config}" in result.stdout
    # One daemon-reload, after the unit is enabled without its own implicit reload, before the restart.
    systemctl = [line for line in calls.read_text().splitlines() if line.startswith("systemctl ")]
    assert systemctl == [
        "systemctl enable --quiet --no-reload kubelet.service",
        "systemctl daemon-reload",
        "systemctl restart containerd.service",
    ]


@pytest.mark.parametrize("need_daemon_reload", ["no", "yes"])
def test_configure_reloads_systemd_only_when_a_unit_changed_or_systemd_asks(
    tmp_path: Path, need_daemon_reload: str,
) -> None:
    # Nothing in the bundle and containerd left alone: reload only when systemd reports a unit file
    # newer than what it loaded (a run interrupted after writing the file).
    result, _, calls = run_configure(tmp_path, default_fails=False, manage_driver=False,
                                     need_daemon_reload=need_daemon_reload)
    assert result.returncode == 0, result.stderr
    systemctl = calls.read_text().splitlines()
    assert systemctl[0] == "systemctl enable --quiet --no-reload kubelet.service"
    assert systemctl[1].startswith("systemctl show -p NeedDaemonReload --value kubelet.service")
    assert ("systemctl daemon-reload" in systemctl) == (need_daemon_reload == "yes")
    assert "systemctl restart containerd.service" not in systemctl


def systemctl_calls(calls: Path) -> list[str]:
    return [line for line in calls.read_text().splitlines() if line.startswith("systemctl ")]


@pytest.mark.parametrize("unit_changed", [True, False])
def test_configure_reloads_systemd_when_it_wrote_a_unit(tmp_path: Path, unit_changed: bool) -> None:
    # A changed file under SYSTEMD_DIR is what makes the reload (systemd itself says "no" here);
    # a changed file elsewhere does not.
    config_file = NodeFile(str(tmp_path / "kubelet" / "kubelet-config.yaml"), "0644", "kind: KubeletConfiguration\n")
    unit = NodeFile(str(tmp_path / "systemd" / "kubelet.service"), "0644", "[Unit]\nDescription=kubelet\n")
    files = (config_file, unit) if unit_changed else (config_file,)
    result, _, calls = run_configure(tmp_path, default_fails=False, manage_driver=False, files=files)
    assert result.returncode == 0, result.stderr
    assert f"changed {config_file.path}" in result.stdout
    systemctl = systemctl_calls(calls)
    assert systemctl.count("systemctl daemon-reload") == (1 if unit_changed else 0), systemctl
    assert "systemctl restart containerd.service" not in systemctl
    # Run again with the same bundle: nothing changed, so no reload.
    calls.unlink()
    again, _, calls = run_configure(tmp_path, default_fails=False, manage_driver=False, files=files)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
    assert "systemctl daemon-reload" not in systemctl_calls(calls)


def test_every_unit_file_is_under_the_systemd_dir_configure_watches() -> None:
    # configure.sh reloads systemd for a changed path under SYSTEMD_DIR only.
    for name in STACKS:
        settings, node = stack(name)
        step = steps(settings, node)[node_scripts.CONFIGURE_AND_START]
        assert f"SYSTEMD_DIR={paths.SYSTEMD_DIR}\n" in step.create_script
        for path in systemd.unit_files(settings, node):
            assert path.startswith(paths.SYSTEMD_DIR + "/"), path


def test_configure_restarts_containerd_after_its_dropin_changed(tmp_path: Path) -> None:
    # The cgroup driver is left alone: the drop-in (Slice=kube.slice) alone makes the restart.
    dropin = NodeFile(str(tmp_path / "containerd.service.d" / "10-slice.conf"), "0644", "[Service]\nSlice=kube.slice\n")
    result, config, calls = run_configure(tmp_path, default_fails=False, manage_driver=False, files=(dropin,))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"changed {dropin.path}\n"
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert systemctl_calls(calls) == [
        "systemctl enable --quiet --no-reload kubelet.service",
        "systemctl daemon-reload",
        "systemctl restart containerd.service",
    ]
    assert "restarted containerd" in result.stderr
    # The same drop-in again: containerd keeps running.
    calls.unlink()
    again, _, calls = run_configure(tmp_path, default_fails=False, manage_driver=False, files=(dropin,))
    assert again.returncode == 0, again.stderr
    assert "systemctl restart containerd.service" not in systemctl_calls(calls)


def test_configure_leaves_containerd_config_alone_when_default_fails(tmp_path: Path) -> None:
    result, config, _ = run_configure(tmp_path, default_fails=True)
    assert result.returncode != 0
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG


def run_unconfigure(tmp_path: Path, config: Path, dropin: Path) -> subprocess.CompletedProcess[str]:
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "unconfigure",
        node,
        {"FILES": [str(dropin)], **state_vars(tmp_path, node_scripts.CONFIGURE_AND_START), "CONTAINERD_DROPIN": str(dropin),
         "KUBELET_UNIT": str(tmp_path / "kubelet.service"),
         "CONTAINERD_CONFIG": str(config), "KUBELET_RECORD": str(tmp_path / "state" / "kubelet-running")},
        "unconfigure.sh", "tidy-state.sh",
    )
    return subprocess.run(
        ["bash", "-c", script, node_scripts.CONFIGURE_AND_START, "delete"], capture_output=True, text=True, check=False,
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
    )


@pytest.mark.parametrize("containerd_active", [True, False])
def test_unconfigure_gives_containerd_its_config_back(tmp_path: Path, containerd_active: bool) -> None:
    configured, config, calls = run_configure(tmp_path, default_fails=False)
    assert configured.returncode == 0, configured.stderr
    dropin = tmp_path / "containerd.service.d" / "10-slice.conf"
    dropin.parent.mkdir(exist_ok=True)
    dropin.write_text("[Service]\nSlice=kube.slice\n")
    # Stand-in for systemctl: records the call; `is-active` answers for containerd as systemd would.
    (tmp_path / "bin" / "systemctl").write_text(
        f'#!/bin/sh\necho "systemctl $*" >>{calls}\n'
        f'[ "$1" != is-active ] || exit {0 if containerd_active else 3}\n'
    )
    calls.unlink()
    result = run_unconfigure(tmp_path, config, dropin)
    assert result.returncode == 0, result.stderr
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert not dropin.exists() and not dropin.parent.exists()
    assert not (tmp_path / "state").exists()
    systemctl = systemctl_calls(calls)
    # A running containerd is restarted onto its own config; a stopped one stays stopped.
    tail = ["systemctl daemon-reload", "systemctl is-active --quiet containerd.service"]
    if containerd_active:
        tail.append("systemctl restart containerd.service")
    assert systemctl[-len(tail):] == tail, systemctl
    assert ("systemctl restart containerd.service" in systemctl) == containerd_active, systemctl


def test_preflight_collects_every_error_without_a_shell_error(tmp_path: Path) -> None:
    # Plant one failure per check that can fail on any machine, and expect every one reported.
    settings, node = stack("homelab")
    # A stand-in slice: enough '..' to reach / from /sys/fs/cgroup (v2) and /sys/fs/cgroup/memory (v1).
    slice_dir = tmp_path / "slice"
    slice_dir.mkdir()
    for file_name, amount in (("memory.current", 2 * 2**30), ("memory.usage_in_bytes", 2 * 2**30), ("pids.current", 500)):
        (slice_dir / file_name).write_text(f"{amount}\n")
    fake_slice = "../../../../.." + str(slice_dir)
    planted = {
        "SYSTEM_SLICE": (fake_slice, "systemReserved memory (256Mi) is below what"),
        "KUBE_SLICE": (fake_slice, "kubeReserved memory (1024Mi) is below what"),
        "SYSTEM_RESERVED_PIDS": ("50", "systemReserved pid (50) leaves less than 100 tasks free"),
        "KUBE_RESERVED_PIDS": ("600", "kubeReserved pid (600) leaves less than 100 tasks free"),
        "EXPECTED_ARCH": ("no-such-arch", "preflight: arch: the node is"),
        "RUNTIME_SOCKET": (str(tmp_path / "no.sock"), f"container runtime socket {tmp_path / 'no.sock'} is missing"),
        "HOSTNAME_CHECK": ("fail", "(kubelet.hostnameCheck: fail)"),
        "RESOLV_CONF": (str(tmp_path / "no-resolv.conf"), f"resolvConf {tmp_path / 'no-resolv.conf'} does not exist"),
        "RESERVED_MILLICORES": ("99999000", "cpu (99999000m) is not below the node's"),
        "RESERVED_MEMORY_BYTES": (str(2**62), "memory (4398046511104Mi) is not below the node's memory"),
        # The state directory's filesystem (the first of WRITE_DIRS) needs 1 PiB.
        "WRITE_KB": (f"({2**40}{' 0' * (len(node_scripts.preflight(settings, node).create_script.split('WRITE_DIRS=(')[1].split(')')[0].split()) - 1)})", "the steps need 1073741824Mi there: free some space (df -h "),
    }
    script = node_scripts.preflight(settings, node).create_script
    for name, (value, _) in planted.items():
        line = next(line for line in script.splitlines() if line.startswith(f"{name}="))
        script = script.replace(line + "\n", f"{name}={value}\n", 1)
    result = subprocess.run(["bash", "-c", script], input="", capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stdout == ""  # no facts JSON when a check fails
    lines = result.stderr.splitlines()
    for name, (_, expected) in planted.items():
        assert any(expected in line for line in lines), (name, expected, lines)
    for line in lines:
        assert line.startswith(("ERROR [k8s-node1] preflight: ", "[k8s-node1] warning: ")), line


# --- rollback.sh: a failed configure-and-start leaves the node as it found it ----------------------


def run_configure_then(
    tmp_path: Path, kubelet_was: str, then: str, files: list[NodeFile], systemd_cgroup: bool = True,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """rollback.sh + configure.sh with stand-in systemctl/containerd, then `then` (shell text),
    with `files` as the bundle on stdin. Returns the run and the systemctl calls."""
    calls = tmp_path / "calls"
    active, enabled = ("active", "enabled") if kubelet_was == "running" else ("inactive", "disabled")
    tools = {
        "systemctl": (
            f'echo "systemctl $*" >>{calls}\n'
            'case "$1" in\n'
            f'  is-active) echo {active} ;;\n  is-enabled) echo {enabled} ;;\n  show) echo no ;;\n'
            "esac\n"
        ),
        "containerd": f"echo 'SystemdCgroup = {str(systemd_cgroup).lower()}'\n",
    }
    result = run_configure_bodies(
        tmp_path, tools, ("rollback.sh", "configure.sh"), pack(files), tmp_path / "config.toml", then=then,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("kubelet_was", ["running", "stopped"])
def test_failure_after_writing_puts_the_previous_files_back(tmp_path: Path, kubelet_was: str) -> None:
    existing, new = tmp_path / "kubelet" / "kubelet-config.yaml", tmp_path / "etc" / "kubelet.service"
    existing.parent.mkdir()
    existing.write_text("the previous config\n")
    existing.chmod(0o600)
    result, systemctl = run_configure_then(
        tmp_path, kubelet_was, 'fail "kubelet not healthy (stand-in failure)"',
        [NodeFile(str(existing), "0600", "a new config\n"), NodeFile(str(new), "0644", "[Unit]\n")],
    )
    assert result.returncode == 1
    assert f"changed {existing}" in result.stdout and f"changed {new}" in result.stdout
    assert "ERROR [k8s-node1]: kubelet not healthy (stand-in failure)" in result.stderr
    assert "rolled back: put back the 2 file(s) this run changed" in result.stderr
    assert existing.read_text() == "the previous config\n"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    assert not new.exists()
    assert leftovers(tmp_path / "state") == []  # no rollback copies left behind
    assert list((tmp_path / "state" / "owned").iterdir()) == []  # nor records of what was put back
    after_failure = systemctl[systemctl.index("systemctl stop kubelet.service"):]
    if kubelet_was == "running":
        assert after_failure == ["systemctl stop kubelet.service", "systemctl daemon-reload",
                                 "systemctl start kubelet.service"]
    else:
        assert after_failure == ["systemctl stop kubelet.service",
                                 "systemctl disable --quiet --no-reload kubelet.service",
                                 "systemctl daemon-reload"]


def test_success_keeps_the_new_files_and_leaves_no_rollback_copies(tmp_path: Path) -> None:
    existing = tmp_path / "kubelet" / "kubelet-config.yaml"
    existing.parent.mkdir()
    existing.write_text("the previous config\n")
    result, systemctl = run_configure_then(
        tmp_path, "running", 'log "started (stand-in)"', [NodeFile(str(existing), "0644", "a new config\n")],
    )
    assert result.returncode == 0, result.stderr
    assert existing.read_text() == "a new config\n"
    assert "rolled back" not in result.stderr
    assert "systemctl stop kubelet.service" not in systemctl
    assert leftovers(tmp_path / "state") == []


def test_failure_before_any_change_rolls_nothing_back(tmp_path: Path) -> None:
    existing = tmp_path / "kubelet" / "kubelet-config.yaml"
    existing.parent.mkdir()
    existing.write_text("the previous config\n")
    result, systemctl = run_configure_then(
        tmp_path, "running", 'fail "unreachable"', [NodeFile(str(existing), "0644", "the previous config\n")],
    )
    assert result.returncode == 1
    assert "rolled back" not in result.stderr
    assert "systemctl stop kubelet.service" not in systemctl


def test_rollback_gives_containerd_its_config_back_and_restarts_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(ORIGINAL_CONTAINERD_CONFIG)
    result, systemctl = run_configure_then(tmp_path, "running", 'fail "stand-in failure"', [], systemd_cgroup=False)
    assert result.returncode == 1
    assert f"changed {config}" in result.stdout
    assert "ERROR [k8s-node1]: stand-in failure" in result.stderr
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert systemctl[systemctl.index("systemctl stop kubelet.service"):] == [
        "systemctl stop kubelet.service", "systemctl daemon-reload", "systemctl restart containerd.service",
        "systemctl start kubelet.service",
    ]


# --- replacement: holders of a step ----------------------------------------------------------------


def run_step_script(tmp_path: Path, bodies: tuple[str, ...], variables: dict[str, shell.Value],
                    mode: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A step script rendered with its state under tmp_path, run as the loader runs it: `$1` = mode."""
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "test step", node,
        {**state_vars(tmp_path), **variables},
        *bodies,
    )
    return subprocess.run(["bash", "-c", script, node_scripts.CREDENTIALS, mode], input=stdin, capture_output=True,
                          text=True, check=False)


def test_an_old_delete_after_a_newer_create_leaves_the_step_in_place(tmp_path: Path) -> None:
    """Pulumi's replacement: new create, then the old delete with the old inputs."""
    target = tmp_path / "kubelet" / "k8s-node1.pem"
    create = ("write-credentials.sh", "hold.sh")
    delete = ("release.sh", "remove-files.sh", "tidy-state.sh")
    variables: dict[str, shell.Value] = {"CA_CERT": str(tmp_path / "ca" / "ca.pem"),
                                                "KUBELET_DIR": str(tmp_path / "kubelet")}
    holders = tmp_path / "state" / "holders" / node_scripts.CREDENTIALS

    def bundle(text: str) -> str:
        return pack([NodeFile(str(target), "0644", text)])

    assert run_step_script(tmp_path, create, variables, "create", bundle("old\n")).returncode == 0
    assert holders.read_text() == "1\n"
    assert run_step_script(tmp_path, create, variables, "update", bundle("old, updated\n")).returncode == 0
    assert holders.read_text() == "1\n"  # an update is the same holder
    # `pulumi up --replace` with the same inputs: the new create, then the old delete.
    assert run_step_script(tmp_path, create, variables, "create", bundle("new\n")).returncode == 0
    assert holders.read_text() == "2\n"
    old_delete = run_step_script(tmp_path, delete, {"FILES": [str(target)]}, "delete")
    assert old_delete.returncode == 0, old_delete.stderr
    assert old_delete.stdout == "kept: held by a newer credentials\n"
    assert target.read_text() == "new\n"
    assert holders.read_text() == "1\n"
    # Node removal or destroy: the last holder's delete undoes the step and the state directory.
    last = run_step_script(tmp_path, delete, {"FILES": [str(target)]}, "delete")
    assert last.returncode == 0, last.stderr
    assert not target.exists()
    assert not (tmp_path / "state").exists()


def test_a_delete_without_holders_still_cleans_up(tmp_path: Path) -> None:
    # A node set up before holders were counted, or whose count was lost: delete as before.
    target = tmp_path / "kubelet"
    target.write_text("x\n")
    result = run_step_script(tmp_path, ("release.sh", "remove-kubelet.sh"), {"KUBELET_BINARY": str(target)}, "delete")
    assert result.returncode == 0, result.stderr
    assert not target.exists()


def test_a_failed_create_does_not_count_as_a_holder(tmp_path: Path) -> None:
    result = run_step_script(tmp_path, ("write-credentials.sh", "hold.sh"),
                             {"CA_CERT": str(tmp_path / "ca.pem"), "KUBELET_DIR": str(tmp_path / "k")},
                             "create", "@@@ homelab-kubelet file /x 0644\ncut short\n")
    assert result.returncode == 1
    assert "has no end marker" in result.stderr
    assert not (tmp_path / "state" / "holders" / node_scripts.CREDENTIALS).exists()


# --- start-kubelet.sh: restart only for a change ----------------------------------------------------


@dataclass
class KubeletNodeFiles:
    tmp: Path
    binary: Path
    config: Path
    cert: Path
    record: Path
    calls: Path
    status: Path

    def runs_on(self) -> list[str]:
        return [str(self.binary), str(self.config), str(self.cert), str(self.tmp / "never-written.conf")]


@pytest.fixture
def kubelet_files(tmp_path: Path) -> KubeletNodeFiles:
    files = KubeletNodeFiles(tmp_path, tmp_path / "kubelet", tmp_path / "kubelet-config.yaml", tmp_path / "node.pem",
                             tmp_path / "state" / "kubelet-running", tmp_path / "calls", tmp_path / "kubelet.status")
    files.binary.write_text("binary v1\n")
    files.config.write_text("config 1\n")
    files.cert.write_text("cert 1\n")
    files.status.write_text("inactive\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    tools = {
        # Stand-in for systemctl: kubelet.service's state lives in kubelet.status; restart makes it
        # active; show answers NRestarts and the main process's start time (START_STAMP).
        "systemctl": (
            f'echo "systemctl $*" >>{files.calls}\n'
            'case "$1" in\n'
            f'  is-active) s=$(cat {files.status}); [ "$2" = --quiet ] || echo "$s"; [ "$s" = active ] ;;\n'
            f'  restart) echo active >{files.status} ;;\n'
            '  show) case "$3" in\n'
            # NRestarts: counts up at every look when the kubelet keeps restarting (RESTARTING=1).
            f'    NRestarts) n=$(cat {tmp_path}/nrestarts 2>/dev/null || echo 0); echo "$n"\n'
            f'      [ "${{RESTARTING:-0}}" != 1 ] || echo $((n + 1)) >{tmp_path}/nrestarts ;;\n'
            '    ExecMainStartTimestamp) echo "$START_STAMP" ;;\n  esac ;;\n'
            "esac\n"
        ),
        "curl": "echo ok\n",  # stand-in: /healthz answers ok
        "journalctl": 'printf "%s" "${JOURNAL:-}"\n',  # stand-in: the journal is $JOURNAL
    }
    for name, body in tools.items():
        (fake / name).write_text("#!/bin/sh\n" + body)
        (fake / name).chmod(0o755)
    return files


def run_start(
    files: KubeletNodeFiles, start_stamp: str = "", journal: str = "", restarting: bool = False,
    hints: tuple[node_scripts.Hint, ...] = (),
) -> subprocess.CompletedProcess[str]:
    _, node = stack("homelab")
    files.calls.unlink(missing_ok=True)
    script = node_scripts.render_script(
        "start kubelet", node,
        {**state_vars(files.tmp, node_scripts.CONFIGURE_AND_START), "KUBELET_BINARY": str(files.binary),
         "KUBELET_RUNS_ON": files.runs_on(), "KUBELET_RECORD": str(files.record), "HEALTHZ_PORT": 10248,
         "HEALTH_TIMEOUT": 5, "SETTLE_SECONDS": 0, "JOURNAL_LINES": 5,
         "HINT_PATTERNS": [hint.pattern for hint in hints], "HINT_TEXTS": [hint.text for hint in hints]},
        "start-kubelet.sh",
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": f"{files.tmp / 'bin'}:/usr/bin:/bin", "START_STAMP": start_stamp,
                               "JOURNAL": journal, "RESTARTING": "1" if restarting else "0"})


def restarted(files: KubeletNodeFiles) -> bool:
    return "systemctl restart kubelet.service" in files.calls.read_text().splitlines()


def test_start_starts_a_stopped_kubelet_and_records_what_it_runs_on(kubelet_files: KubeletNodeFiles) -> None:
    result = run_start(kubelet_files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kubelet restarted: it was not running\n"
    assert restarted(kubelet_files)
    record = kubelet_files.record.read_text()
    assert f"absent {kubelet_files.tmp / 'never-written.conf'}" in record
    assert hashlib.sha256(b"config 1\n").hexdigest() in record


def test_start_restarts_nothing_when_nothing_changed(kubelet_files: KubeletNodeFiles) -> None:
    assert run_start(kubelet_files).returncode == 0
    result = run_start(kubelet_files)  # a rerun: a script, comment or hint changed, no file
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kubelet not restarted: nothing it runs on changed since it started\n"
    assert not restarted(kubelet_files)


@pytest.mark.parametrize("change", ["credentials", "config", "binary", "new file"])
def test_start_restarts_for_a_changed_file_and_names_it(kubelet_files: KubeletNodeFiles, change: str) -> None:
    assert run_start(kubelet_files).returncode == 0
    changed = {"credentials": kubelet_files.cert, "config": kubelet_files.config,
               "binary": kubelet_files.binary, "new file": kubelet_files.tmp / "never-written.conf"}[change]
    if change == "binary":
        # install-kubelet renames a new file into place: same size and mtime still differ by inode.
        replacement = kubelet_files.tmp / ".kubelet.new"
        replacement.write_text("binary v1\n")
        os.utime(replacement, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns))
        replacement.rename(changed)
    else:
        changed.write_text("changed\n")
    result = run_start(kubelet_files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"kubelet restarted: changed since it started: {changed}\n"
    assert restarted(kubelet_files)
    assert run_start(kubelet_files).stdout.startswith("kubelet not restarted")


def test_start_without_a_record_restarts_only_for_files_newer_than_the_kubelet(
    kubelet_files: KubeletNodeFiles,
) -> None:
    # A node configured before records were kept: its kubelet runs; compare with its start time.
    kubelet_files.status.write_text("active\n")
    result = run_start(kubelet_files, start_stamp="@" + str(int(time.time()) + 5))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kubelet not restarted"), result.stdout
    kubelet_files.record.unlink()
    result = run_start(kubelet_files, start_stamp="@" + str(int(time.time()) - 60))
    assert result.stdout.startswith("kubelet restarted: newer than the running kubelet: "), result.stdout
    assert restarted(kubelet_files)


FATAL_JOURNAL = (
    "I1201 10:00:00.000000 1 server.go:1] Started kubelet\n"
    "F1201 10:00:01.000000 1 kubelet.go:1] Failed to start ContainerManager: the cgroup it-did-not-exist\n"
)


def test_a_fatal_journal_line_after_healthz_ok_fails_with_the_hint(kubelet_files: KubeletNodeFiles) -> None:
    hint = node_scripts.Hint(r"Failed to start ContainerManager: .*cgroup", "hint: the reserved cgroup is missing")
    result = run_start(kubelet_files, journal=FATAL_JOURNAL, hints=(hint,))
    assert result.returncode == 1
    assert "ERROR [k8s-node1]: kubelet logged a fatal error" in result.stderr
    assert "hint: the reserved cgroup is missing\n    matched: F1201 10:00:01.000000" in result.stderr
    assert not kubelet_files.record.exists()  # a failed start records nothing


def test_a_kubelet_that_keeps_restarting_fails_the_settle_window(kubelet_files: KubeletNodeFiles) -> None:
    result = run_start(kubelet_files, restarting=True)
    assert result.returncode == 1
    assert "ERROR [k8s-node1]: kubelet restarted 1 time(s) during the 0s settle window" in result.stderr


def test_a_hint_pattern_pcre_refuses_is_reported_not_lost(kubelet_files: KubeletNodeFiles) -> None:
    bad = node_scripts.Hint(r"(unclosed", "hint: never shown")
    good = node_scripts.Hint(r"ContainerManager", "hint: shown")
    result = run_start(kubelet_files, journal=FATAL_JOURNAL, hints=(bad, good))
    assert result.returncode == 1
    assert "homelab-kubelet: hint pattern 0 is not valid for grep -P" in result.stderr
    assert "hint: never shown" not in result.stderr
    assert "hint: shown\n    matched:" in result.stderr


def test_every_catalogue_pattern_is_valid_for_grep_p() -> None:
    from components.hints import catalogue_hints

    hints = catalogue_hints()
    assert hints
    for hint in hints:
        result = subprocess.run(["grep", "-P", "-e", hint.pattern], input="", capture_output=True, text=True,
                                check=False)
        assert result.returncode == 1, (hint.pattern, result.stderr)  # 1: no match; 2 would be a bad pattern
