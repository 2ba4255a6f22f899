"""Background processes the lab starts (qemu, the mirror's HTTP server): started in their own
session, recorded by PID, and stopped only after checking the PID is still the same process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def spawn(argv: list[str], log: Path, cwd: Path | None = None, exec_argv: list[str] | None = None) -> int:
    """Starts argv in a session of its own with its output appended to log; returns its PID.
    `exec_argv`: the command line the process ends up running when argv is a wrapper that execs
    it (unshare ... sh -c '... exec "$@"'), so the wait below looks for that one."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=cwd, close_fds=True,
        )
    # Until the child has exec'd, /proc/PID/cmdline is still ours: wait for the new program so
    # that is_ours() checks on it are meaningful from the start.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and p.poll() is None:
        if cmdline(p.pid) == (argv if exec_argv is None else exec_argv):
            break
        time.sleep(0.02)
    return p.pid


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive (not a zombie) and its command line contains ``marker``."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        _reap(pid)
        return False
    return any(marker in a for a in cmdline(pid))


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int | None, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM (then SIGKILL) the process if it is still ours. Returns True if it was running."""
    if not is_ours(pid, marker):
        return False
    assert pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_ours(pid, marker):
            return True
        time.sleep(0.1)
    if is_ours(pid, marker):
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            _reap(pid)
            if not is_ours(pid, marker):
                break
            time.sleep(0.1)
    return True


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
