"""The node scripts as shell code: shellcheck on every rendered script, then real runs.

shellcheck (apt-get install -y shellcheck) checks the script of every command line of node
k8s-node1 in the homelab stack (root: `bash -c`) and the variant stack (user `kube`:
`sudo -n bash -c`), and components/scripts/prepare-cgroups.sh. A missing shellcheck fails the
tests; it is not a skip.

Then the parts that need no root, no systemd and no node run locally in a temp dir:
`install_file` and `unpack_bundle` from lib.sh through a small bash harness, the real
install-kubelet.sh against `python -m http.server` on 127.0.0.1 serving a stand-in kubelet,
and the command lines themselves under dash and bash with stand-in `bash`/`sudo` commands that
only capture the script they are handed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import node_scripts
from components.bundle import NodeFile, pack
from tests.test_renderers import STACKS, command_lines, stack

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "components" / "scripts" / "lib.sh"
PREPARE_CGROUPS = REPO / "components" / "scripts" / "prepare-cgroups.sh"
HEREDOC_START = "bash -c \"$(cat <<'HOMELAB_KUBELET_SCRIPT'"
HEREDOC_END = "HOMELAB_KUBELET_SCRIPT"


def extract_script(command_line: str) -> str:
    """The script between the here-document's start line and its terminator line."""
    lines = command_line.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n").endswith(HEREDOC_START)]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == HEREDOC_END]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], command_line[:300]
    return "".join(lines[starts[0] + 1 : ends[0]])


def _shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck is not installed: apt-get install -y shellcheck")
    return path


SCRIPT_CASES = [(name, step) for name in STACKS for step in command_lines(*stack(name))]
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
    script = extract_script(command_lines(*stack(stack_name))[step])
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


def test_extract_script_matches_what_real_shells_hand_to_bash(tmp_path: Path) -> None:
    """Run each command line under sh (dash) and bash with stand-in bash/sudo that capture `-c SCRIPT`."""
    fake = tmp_path / "bin"
    fake.mkdir()
    # Stand-in for bash: records the script instead of running it.
    (fake / "bash").write_text('#!/bin/sh\n[ "$1" = -c ] || exit 97\nprintf %s "$2" >"$CAPTURE"\n')
    # Stand-in for sudo: `sudo -n true` succeeds, `sudo -n CMD...` runs CMD.
    (fake / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] || exit 98\nshift\n[ "$1" = true ] && exit 0\nexec "$@"\n')
    for tool in ("bash", "sudo"):
        (fake / tool).chmod(0o755)
    capture = tmp_path / "captured"
    env = {"PATH": f"{fake}:/usr/bin:/bin", "CAPTURE": str(capture)}
    checked = 0
    for name in STACKS:
        for step, line in command_lines(*stack(name)).items():
            for shell in ("/bin/sh", "/bin/bash"):  # /bin/sh is dash on Debian
                capture.unlink(missing_ok=True)
                subprocess.run([shell, "-c", line], env=env, check=True)
                # Command substitution drops the trailing newline.
                assert capture.read_text() == extract_script(line).rstrip("\n"), (name, step, shell)
                checked += 1
    assert checked == 2 * 14  # 2 stacks x 7 command lines x 2 shells


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
    assert "user kube cannot run sudo without a password" in result.stderr
    assert "kube ALL=(ALL) NOPASSWD: ALL" in result.stderr


# --- lib.sh, executed ---------------------------------------------------------------------------

HARNESS = 'set -euo pipefail\nexport NODE_NAME=test-node\n# shellcheck source=/dev/null\nsource "$1"\nshift\n"$@"\n'


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


def run_install(tmp_path: Path, server: Server, binary: Path) -> subprocess.CompletedProcess[str]:
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "install kubelet",
        node,
        {"DOWNLOAD_BASE_URL": server.url, "KUBELET_VERSION": VERSION, "ARCH": "amd64", "KUBELET_BINARY": str(binary)},
        "install-kubelet.sh",
    )
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, env=env)


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

    second = run_install(tmp_path, server, binary)
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    assert "already installed" in second.stderr
    assert wait_for_log(server, 3)[2:] == [f"{base}.sha256"]

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


def test_install_kubelet_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    _, node = stack("homelab")
    binary = tmp_path / "kubelet"
    script = node_scripts.render_script(
        "install kubelet",
        node,
        {"DOWNLOAD_BASE_URL": f"http://127.0.0.1:{_free_port()}", "KUBELET_VERSION": VERSION, "ARCH": "amd64",
         "KUBELET_BINARY": str(binary)},
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
            "STATE_DIR": str(tmp_path / "state"),
            "CONTAINERD_DROPIN": str(tmp_path / "containerd.service.d" / "10-slice.conf"),
            "CONTAINERD_CONFIG": str(config),
            "MANAGE_CONTAINERD_CGROUP_DRIVER": manage_driver,
            "RUNTIME_SOCKET": str(sock),
            "KUBE_SLICE": "kube.slice",
        },
        *bodies,
    ) + then + "\n"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock))
        return subprocess.run(
            ["bash", "-c", script], input=stdin, capture_output=True, text=True, check=False,
            env={"PATH": f"{fake}:/usr/bin:/bin"},
        )


def run_configure(
    tmp_path: Path, default_fails: bool, manage_driver: bool = True, need_daemon_reload: str = "no",
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
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
    config.parent.mkdir()
    config.write_text(ORIGINAL_CONTAINERD_CONFIG)
    result = run_configure_bodies(tmp_path, tools, ("configure.sh",), "", config, manage_driver)
    return result, config, calls


def test_configure_sets_systemd_cgroup_and_keeps_the_original(tmp_path: Path) -> None:
    result, config, calls = run_configure(tmp_path, default_fails=False)
    assert result.returncode == 0, result.stderr
    assert "SystemdCgroup = true" in config.read_text()
    assert "SystemdCgroup = false" not in config.read_text()
    assert (tmp_path / "state" / "containerd-config.toml.orig").read_text() == ORIGINAL_CONTAINERD_CONFIG
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


def test_configure_leaves_containerd_config_alone_when_default_fails(tmp_path: Path) -> None:
    result, config, _ = run_configure(tmp_path, default_fails=True)
    assert result.returncode != 0
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG


def test_unconfigure_gives_containerd_its_config_back(tmp_path: Path) -> None:
    configured, config, calls = run_configure(tmp_path, default_fails=False)
    assert configured.returncode == 0, configured.stderr
    dropin = tmp_path / "containerd.service.d" / "10-slice.conf"
    dropin.parent.mkdir(exist_ok=True)
    dropin.write_text("[Service]\nSlice=kube.slice\n")
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "unconfigure",
        node,
        {"FILES": [str(dropin)], "STATE_DIR": str(tmp_path / "state"), "CONTAINERD_DROPIN": str(dropin),
         "CONTAINERD_CONFIG": str(config)},
        "unconfigure.sh",
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=False,
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert config.read_text() == ORIGINAL_CONTAINERD_CONFIG
    assert not dropin.exists() and not dropin.parent.exists()
    assert not (tmp_path / "state").exists()
    assert calls.read_text().splitlines()[-1] == "systemctl restart containerd.service"


def test_preflight_collects_every_error_without_a_shell_error() -> None:
    # Run on this machine with an arch no machine has, so at least that check fails everywhere.
    settings, node = stack("homelab")
    create = node_scripts.preflight(settings, node).create
    script = extract_script(create).replace("EXPECTED_ARCH=arm64\n", "EXPECTED_ARCH=no-such-arch\n", 1)
    assert "EXPECTED_ARCH=no-such-arch\n" in script
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stdout == ""  # no facts JSON when a check fails
    lines = result.stderr.splitlines()
    assert any("preflight: arch: the node is" in line and "arch: no-such-arch" in line for line in lines)
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
    assert list((tmp_path / "state").iterdir()) == []  # no rollback copies left behind
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
    assert list((tmp_path / "state").iterdir()) == []


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
