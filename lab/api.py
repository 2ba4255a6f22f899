"""Python API of the lab, for the tests (and the end-to-end tests of the Pulumi program).

    from lab import api
    info = api.up(cgroup="v2")        # boots (or reuses) the three VMs, the mirror and the control plane
    api.up(layout=paths.ARM64)         # the arm64 node k8s-node3 and its own mirror server
    api.ssh("k8s-node1", "systemctl is-active containerd", user="kube")
    info.node("k8s-node1").port        # 2222
    info.node("k8s-node1").host_keys   # ["ssh-ed25519 AAAA...", ...] read from its serial console
    api.down()

State lives in ``~/.cache/homelab-kubelet/lab/state.json`` (see :class:`LabInfo` for its fields;
the file is ``LabInfo.to_dict()`` as JSON); the arm64 layout's in ``lab/arm64/state.json``, beside
its own lock, known_hosts and run directory (:class:`paths.Layout`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.settings.host_keys import ssh_strings
from lab import control_plane as control_plane_mod
from lab import image as image_mod
from lab import mirror, paths, proc, vm
from lab.progress import Progress

STATE_VERSION = 1
#: Seconds ``up`` waits for every VM to answer SSH, per arch: aarch64 under TCG boots slower.
BOOT_TIMEOUT = {"amd64": 600.0, "arm64": 1800.0}


class LabError(RuntimeError):
    pass


@dataclass
class Node:
    name: str
    port: int
    pid: int
    console_log: str
    overlay: str
    address: str = "127.0.0.1"
    #: The VM's SSH host public keys ("type base64"), as it printed them on its serial console.
    host_keys: list[str] = field(default_factory=list)
    machine_id: str = ""
    boot_seconds: float | None = None
    #: The host address qemu forwards to the VM's kubelet port ("" for a VM booted without it).
    kubelet_address: str = ""

    @property
    def marker(self) -> str:
        return f"lab-{self.name}"

    def host_key(self, kind: str = "ssh-ed25519") -> str:
        for k in self.host_keys:
            if k.startswith(kind + " "):
                return k
        raise KeyError(kind)

    def fingerprint(self, kind: str = "ssh-ed25519") -> str:
        blob = base64.b64decode(self.host_key(kind).split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass
class LabInfo:
    cgroup: str
    accel: str
    image: str
    key_path: str
    known_hosts: str
    nodes: list[Node]
    mirror_pid: int
    mirror_root: str
    mirror_url_host: str = paths.MIRROR_URL_HOST
    mirror_url_guest: str = paths.MIRROR_URL_GUEST
    users: tuple[str, ...] = ("root", "kube")
    started_at: float = 0.0
    boot_seconds: float | None = None
    version: int = STATE_VERSION
    #: The control plane `up` started (lab/control_plane.py), or None; only the three-node lab
    #: (layout ``lab``) starts one, and the arm64 node registers with it.
    control_plane: control_plane_mod.ControlPlane | None = None
    #: The layout's stack (``lab``, ``lab-arm64``) and its VMs' architecture.
    layout: str = paths.LAB.stack
    arch: str = "amd64"

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabInfo:
        d = dict(d)
        d["nodes"] = [Node(**n) for n in d["nodes"]]
        d["users"] = tuple(d.get("users", ("root", "kube")))
        cp = d.get("control_plane")
        d["control_plane"] = control_plane_mod.ControlPlane.from_dict(cp) if cp else None
        return cls(**d)


# ---------------------------------------------------------------- state


def _layout(stack: str) -> paths.Layout:
    return next(layout for layout in paths.LAYOUTS if layout.stack == stack)


def _load_state(layout: paths.Layout = paths.LAB) -> LabInfo | None:
    try:
        d = json.loads(layout.state_path.read_text())
        if d.get("version") != STATE_VERSION:
            return None
        return LabInfo.from_dict(d)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _save_state(info: LabInfo) -> None:
    p = _layout(info.layout).state_path
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    tmp.replace(p)


@contextlib.contextmanager
def _locked(layout: paths.Layout) -> Iterator[None]:
    layout.dir.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- ssh


def ssh_argv(name: str, user: str = "root", info: LabInfo | None = None, tty: bool = False) -> list[str]:
    """The ``ssh`` command line (without the remote command) for a lab node (of any layout)."""
    port = paths.SSH_PORTS[name]
    layout = paths.layout_of(name)
    return [
        "ssh", "-i", str(paths.key_path()), "-p", str(port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={layout.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
        "-o", "ServerAliveInterval=15",
        # One multiplexed connection per node and user: a new SSH handshake costs seconds under TCG.
        "-o", "ControlMaster=auto", "-o", f"ControlPath={layout.dir}/ssh-%p-%r", "-o", "ControlPersist=60",
        *(["-t"] if tty else []),
        f"{user}@127.0.0.1",
    ]


def ssh(name: str, cmd: str | Sequence[str], user: str = "root", check: bool = False,
        timeout: float | None = 300, input: str | bytes | None = None, text: bool = True,
        ) -> subprocess.CompletedProcess[Any]:
    """Runs ``cmd`` (a shell command string, or argv joined with spaces) on a lab node."""
    if not isinstance(cmd, str):
        cmd = " ".join(cmd)
    return subprocess.run(
        [*ssh_argv(name, user), "--", cmd], capture_output=True, check=check, timeout=timeout,
        input=input, text=text,
    )


def scp_to(name: str, local: str | Path, remote: str, user: str = "root", timeout: float = 600) -> None:
    port = paths.SSH_PORTS[name]
    a = ssh_argv(name, user)
    opts = [x for x in a[1:-1] if x != "-p" and x != str(port)]
    subprocess.run(["scp", "-q", "-P", str(port), *opts, str(local), f"{user}@127.0.0.1:{remote}"],
                   check=True, timeout=timeout)


def _write_known_hosts(nodes: list[Node], layout: paths.Layout) -> None:
    lines = [f"[127.0.0.1]:{n.port} {k}" for n in nodes for k in n.host_keys]
    layout.known_hosts_path.write_text("\n".join(lines) + "\n")


# Facts are whole console lines (the kernel log ends each with CR LF): a line still being written
# when the log is read must not count, or a truncated key gets pinned and SSH fails for good.
_FACT_KEY = re.compile(r"LAB-HOSTKEY (ssh-[a-z0-9-]+) ([A-Za-z0-9+/]+=*)\r?\n")
_FACT_MID = re.compile(r"LAB-MACHINEID ([0-9a-f]{32})\r?\n")
_FACT_DONE = re.compile(r"LAB-FIRSTBOOT-DONE (\S+)\r?\n")


def _is_whole_key_blob(kind: str, blob: bytes) -> bool:
    """True when ``blob`` is a complete SSH public key of ``kind``: length-prefixed strings that
    use up every byte, the first naming the key type (a truncated blob fails this)."""
    fields = ssh_strings(blob)
    if fields is None:
        return False
    return len(fields) >= 2 and fields[0] == kind.encode() and all(fields[1:])


def _console_facts(console: Path, name: str) -> tuple[list[str], str, bool]:
    """The host keys and machine-id the VM printed on its serial console, and whether its first
    boot has finished printing them (the ``LAB-FIRSTBOOT-DONE <name>`` line)."""
    try:
        text = console.read_bytes().decode(errors="replace")  # not read_text: it turns a lone CR into LF
    except OSError:
        return [], "", False
    keys: list[str] = []
    for kind, b64 in _FACT_KEY.findall(text):
        try:
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            continue
        if _is_whole_key_blob(kind, blob) and f"{kind} {b64}" not in keys:
            keys.append(f"{kind} {b64}")
    mids = _FACT_MID.findall(text)
    done = name in _FACT_DONE.findall(text)
    return keys, (mids[-1] if mids else ""), done and bool(keys)


# ---------------------------------------------------------------- up / down / status


def _alive(info: LabInfo) -> bool:
    return proc.is_ours(info.mirror_pid, mirror.SERVER_MARKER) and all(
        proc.is_ours(n.pid, n.marker) for n in info.nodes
    )


def _close_ssh_masters(layout: paths.Layout) -> None:
    for name, port in layout.nodes:
        for user in ("root", "kube"):
            a = ssh_argv(name, user)
            if (layout.dir / f"ssh-{port}-{user}").exists():
                subprocess.run([a[0], "-O", "exit", *a[1:]], capture_output=True, timeout=30)


def _stop(info: LabInfo | None, progress: Progress, layout: paths.Layout) -> None:
    _close_ssh_masters(layout)
    if info is None:
        return
    if info.control_plane is not None:
        control_plane_mod.stop(info.control_plane, progress)
    for n in info.nodes:
        if proc.stop(n.pid, n.marker):
            progress(f"stopped {n.name} (pid {n.pid})")
    if proc.stop(info.mirror_pid, mirror.SERVER_MARKER):
        progress(f"stopped mirror server (pid {info.mirror_pid})")
    for n in info.nodes:
        Path(n.overlay).unlink(missing_ok=True)


def up(cgroup: str = "v2", quiet: bool = False, timeout: float | None = None,
       layout: paths.Layout = paths.LAB, control_plane: bool = True) -> LabInfo:
    """Brings the layout's VMs up in the given cgroup mode (``v1`` or ``v2``); a no-op when they
    already run in that mode, a restart when they run in the other. The three-node lab (the
    default layout) runs the lab's control plane too when `control_plane` (the default), started
    after the VMs (and once per boot: a running one is kept); without it, a running one is
    stopped, so the lab has no API server. The arm64 layout leaves the control plane as it is
    (its node registers with the three-node lab's whenever that one runs; `control_plane` is not
    for it). Returns the layout's facts."""
    if layout != paths.LAB and not control_plane:
        raise ValueError("the control plane is the three-node lab's (python -m lab up [--no-control-plane]): "
                         "the arm64 layout neither starts nor stops it")
    if cgroup not in paths.CGROUP_MODES:
        raise ValueError(f"cgroup must be one of {paths.CGROUP_MODES}, not {cgroup!r}")
    progress = Progress(quiet)
    with _locked(layout):
        state = _load_state(layout)
        if state is not None and _alive(state):
            if state.image != image_mod.current(layout.arch).recipe_hash:
                progress("lab runs an older image; restarting it")
            elif state.cgroup != cgroup:
                progress(f"lab is up in cgroup {state.cgroup} mode; restarting it in {cgroup}")
            elif not all(n.kubelet_address for n in state.nodes):
                progress("lab VMs run without the kubelet port forwards (an older lab); restarting them")
            elif all(ssh(n.name, "true", timeout=60).returncode == 0 for n in state.nodes):
                with mirror.locked():
                    mirror.sync(log=progress)
                if layout == paths.LAB:
                    _control_plane(state, control_plane, progress)
                progress(f"lab already up (cgroup {cgroup}); nothing else to do")
                return state
            else:
                progress("lab is up but a node does not answer SSH; restarting it")
        elif state is not None:
            progress("lab is partly down; stopping what is left and starting again")
        _stop(state, progress, layout)
        layout.state_path.unlink(missing_ok=True)
        info = _boot(cgroup, progress, BOOT_TIMEOUT[layout.arch] if timeout is None else timeout, layout)
        if layout == paths.LAB:
            _control_plane(info, control_plane, progress)
        return info


def _control_plane(info: LabInfo, wanted: bool, progress: Progress) -> None:
    """Starts the control plane unless it runs for the lab's nodes (or stops it when not
    `wanted`); saves the state."""
    cp = info.control_plane
    if cp is not None and wanted and all(control_plane_mod.alive(cp).values()):
        if cp.kubelet_addresses == dict(control_plane_mod.lab_facts().kubelet_addresses):
            progress(f"control plane already running ({cp.url}); admin kubeconfig {cp.admin_kubeconfig}")
            return
        progress("control plane runs for other nodes than the lab's (an older lab); starting it again")
    elif cp is not None and wanted:
        progress("control plane partly down; starting it again")
    if cp is not None:
        control_plane_mod.stop(cp, progress)
        info.control_plane = None
        _save_state(info)
    if not wanted:
        return

    def record(started: control_plane_mod.ControlPlane) -> None:
        info.control_plane = started
        _save_state(info)

    try:
        control_plane_mod.start(paths.control_plane_dir(), control_plane_mod.lab_ports(), progress=progress,
                                record=record)
    except control_plane_mod.ControlPlaneError as error:
        info.control_plane = None
        _save_state(info)
        raise LabError(f"control plane: {error}") from None


def _boot(cgroup: str, progress: Progress, timeout: float, layout: paths.Layout) -> LabInfo:
    machine = vm.MACHINES[layout.arch]
    for tool in (machine.qemu, "qemu-img", "ssh"):
        if not shutil.which(tool):
            raise LabError(f"{tool} not found (apt-get install {machine.package} qemu-utils openssh-client)")
    img = image_mod.build(progress, arch=layout.arch)
    accel = vm.choose_accel(img, progress)
    with mirror.locked():
        published = mirror.sync(log=progress)
    progress("mirror: " + (", ".join(f"{p.version}/{p.arch}" for p in published) or "no kubelet build yet")
             + f" in {paths.mirror_root()}")
    mirror_pid = mirror.start(port=layout.mirror_port, log=layout.mirror_log)
    progress(f"mirror: serving on {layout.mirror_url_host} (guests: {layout.mirror_url_guest}), pid {mirror_pid}")
    rd = layout.run_dir
    rd.mkdir(parents=True, exist_ok=True)
    nodes: list[Node] = []
    t_boot = progress.elapsed()
    try:
        for name, port in layout.nodes:
            kubelet_address = paths.kubelet_forward_address(name)
            for address, p in (("127.0.0.1", port), (kubelet_address, paths.KUBELET_PORT)):
                with socket.socket() as s:
                    if s.connect_ex((address, p)) == 0:
                        raise LabError(f"port {address}:{p} for {name} is already in use by something else")
            overlay, console = rd / f"{name}.qcow2", rd / f"{name}.console.log"
            console.unlink(missing_ok=True)
            (rd / f"{name}.qemu.log").unlink(missing_ok=True)
            vm.make_overlay(img, overlay)
            a = vm.argv(name, image=img, overlay=overlay, console=console, cgroup=cgroup, accel=accel, ssh_port=port,
                        kubelet_address=kubelet_address)
            pid = proc.spawn(a, rd / f"{name}.qemu.log")
            nodes.append(Node(name=name, port=port, pid=pid, console_log=str(console), overlay=str(overlay),
                              kubelet_address=kubelet_address))
            progress(f"{name}: qemu started (pid {pid}, {accel}, cgroup {cgroup}, ssh 127.0.0.1:{port}, "
                     f"kubelet {kubelet_address}:{paths.KUBELET_PORT})")
        info = LabInfo(
            cgroup=cgroup, accel=accel, image=img.recipe_hash, key_path=str(paths.key_path()),
            known_hosts=str(layout.known_hosts_path), nodes=nodes, mirror_pid=mirror_pid,
            mirror_root=str(paths.mirror_root()), mirror_url_host=layout.mirror_url_host,
            mirror_url_guest=layout.mirror_url_guest, started_at=time.time(), layout=layout.stack,
            arch=layout.arch,
        )
        _save_state(info)  # so that `down` can stop what was started even if the wait fails
        _wait_ready(info, progress, t_boot, timeout)
    except BaseException:
        progress("boot failed; stopping what was started")
        _stop(LabInfo(cgroup, accel, img.recipe_hash, "", "", nodes, mirror_pid, ""), progress, layout)
        layout.state_path.unlink(missing_ok=True)
        raise
    info.boot_seconds = round(progress.elapsed() - t_boot, 1)
    _save_state(info)
    progress(f"lab up: {len(nodes)} {layout.arch} VM{'s' if len(nodes) > 1 else ''} answering SSH "
             f"{info.boot_seconds}s after start")
    return info


def _wait_ready(info: LabInfo, progress: Progress, t_boot: float, timeout: float) -> None:
    layout = _layout(info.layout)
    pending = {n.name for n in info.nodes}
    last_error: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            why = "; ".join(f"{name}: {last_error.get(name) or 'first boot not finished'}" for name in sorted(pending))
            raise LabError(f"timed out waiting for {sorted(pending)} ({why}); "
                           f"see the console logs in {layout.run_dir}")
        for n in info.nodes:
            if n.name not in pending:
                continue
            if not proc.is_ours(n.pid, n.marker):
                log = Path(n.console_log).with_name(f"{n.name}.qemu.log")
                raise LabError(f"{n.name}: qemu exited; see {log} and {n.console_log}")
            keys, mid, done = _console_facts(Path(n.console_log), n.name)
            if not done:
                continue
            if keys != n.host_keys:
                n.host_keys, n.machine_id = keys, mid
                _write_known_hosts([m for m in info.nodes if m.host_keys], layout)
                progress(f"{n.name}: first boot done, host key {n.fingerprint()}")
            r = ssh(n.name, "cat /etc/machine-id", timeout=30)
            if r.returncode == 0:
                n.machine_id = n.machine_id or r.stdout.strip()
                n.boot_seconds = round(progress.elapsed() - t_boot, 1)
                pending.discard(n.name)
                progress(f"{n.name}: SSH answers ({n.boot_seconds}s after start)")
            else:
                last_error[n.name] = f"ssh exit {r.returncode}: {r.stderr.strip()[-300:] or 'no message'}"
        if pending:
            time.sleep(2)


def down(quiet: bool = False, layout: paths.Layout = paths.LAB) -> None:
    """Stops the layout's VMs and the mirror server that ``up`` started (by recorded PID), and
    for the three-node lab its control plane."""
    progress = Progress(quiet)
    with _locked(layout):
        state = _load_state(layout)
        if state is None:
            progress("lab is not up")
        _stop(state, progress, layout)
        layout.state_path.unlink(missing_ok=True)
        layout.known_hosts_path.unlink(missing_ok=True)


def status(layout: paths.Layout = paths.LAB) -> LabInfo | None:
    """The running layout's facts, or None when nothing runs (a partly dead lab is returned as is;
    :func:`health` tells which parts run)."""
    return _load_state(layout)


def health(info: LabInfo) -> dict[str, bool]:
    h = {n.name: proc.is_ours(n.pid, n.marker) for n in info.nodes}
    h["mirror"] = proc.is_ours(info.mirror_pid, mirror.SERVER_MARKER)
    if info.control_plane is not None:
        h["control-plane"] = all(control_plane_mod.alive(info.control_plane).values())
    return h


def rss_mib(info: LabInfo) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for n in info.nodes:
        r = proc.rss_kib(n.pid)
        out[n.name] = round(r / 1024, 1) if r else None
    return out


def mirror_sync() -> list[mirror.Published]:
    with mirror.locked():
        return mirror.sync()


def table(info: LabInfo) -> str:
    h, rss = health(info), rss_mib(info)
    rows = [f"lab: {info.arch}, cgroup {info.cgroup}, accel {info.accel}, image {info.image}, key {info.key_path}",
            f"{'NAME':<11} {'SSH':<15} {'STATE':<8} {'RSS MiB':>8}  HOST KEY (ed25519)"]
    for n in info.nodes:
        fp = n.fingerprint() if n.host_keys else "-"
        rows.append(f"{n.name:<11} 127.0.0.1:{n.port:<5} {'running' if h[n.name] else 'stopped':<8} "
                    f"{rss[n.name] or 0:>8}  {fp}")
    rows.append(f"mirror: {info.mirror_url_host} (guests {info.mirror_url_guest}) "
                f"{'running' if h['mirror'] else 'stopped'}, root {info.mirror_root}")
    if info.layout == paths.LAB.stack:
        rows.append("control plane: none (python -m lab up starts it)" if info.control_plane is None
                    else control_plane_mod.describe(info.control_plane))
    else:
        lab = _load_state(paths.LAB)
        rows.append("control plane: the three-node lab's, " + (
            "not running (python -m lab up starts it)" if lab is None or lab.control_plane is None
            else control_plane_mod.describe(lab.control_plane).removeprefix("control plane: ")))
    rows.append(f"users: root, kube (sudo NOPASSWD)   e.g.  python -m lab ssh {info.nodes[0].name} [--user kube] [cmd]")
    rows.append(f"known_hosts: {info.known_hosts}")
    return "\n".join(rows)


