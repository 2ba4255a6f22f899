"""The local kubelet mirror: ``~/.cache/homelab-kubelet/mirror/`` laid out like the official
release host (``/<version>/bin/linux/<arch>/kubelet`` and ``kubelet.sha256`` holding only the
hex digest), filled with hard links to the kubelets that ``scripts/toolchain`` built under
``~/.cache/homelab-kubelet/kubelet/<version>/<arch>/``, and served by ``python -m http.server``
on 127.0.0.1:18080 (guests: http://10.0.2.2:18080); the arm64 layout serves the same directory
from its own server on 18081 (lab/paths.py, ``Layout.mirror_port``).

The mirror never makes up a kubelet: a build is published only when its ``kubelet.sha256``
matches the file, and entries whose build is gone or changed are taken out.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import paths, proc

HEX64 = re.compile(r"^[0-9a-f]{64}$")
SERVER_MARKER = "http.server"
#: A small generated file (not a kubelet) that lets tests check a guest can fetch from the mirror.
PROBE_REL = "_lab/probe.txt"


@dataclass(frozen=True)
class Published:
    version: str
    arch: str
    sha256: str
    path: Path

    @property
    def url_path(self) -> str:
        return f"/{self.version}/bin/linux/{self.arch}/kubelet"


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_digest(p: Path) -> str | None:
    try:
        tok = p.read_text().split()
    except OSError:
        return None
    return tok[0].lower() if tok and HEX64.match(tok[0].lower()) else None


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.chmod(tmp, 0o755)
    tmp.replace(dst)


@contextlib.contextmanager
def locked(root: Path | None = None) -> Iterator[None]:
    """Held around :func:`sync` by every lab layout: two layouts share one mirror directory."""
    root = root or paths.mirror_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sync(builds: Path | None = None, root: Path | None = None,
         log: Callable[[str], object] = print) -> list[Published]:
    """Publishes every verified kubelet build into the mirror; returns what the mirror holds."""
    builds = builds or paths.kubelet_builds()
    root = root or paths.mirror_root()
    root.mkdir(parents=True, exist_ok=True)
    cache_file = root / ".verified.json"
    try:
        verified: dict[str, str] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        verified = {}
    published: list[Published] = []
    wanted: set[Path] = set()
    for kubelet in sorted(builds.glob("*/*/kubelet")) if builds.is_dir() else []:
        arch, version = kubelet.parent.name, kubelet.parent.parent.name
        expected = _read_digest(kubelet.with_name("kubelet.sha256"))
        if expected is None:
            log(f"mirror: {version}/{arch}: no valid kubelet.sha256 beside the build yet; not published")
            continue
        st = kubelet.stat()
        stamp = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        actual = expected if verified.get(str(kubelet)) == f"{stamp}:{expected}" else sha256_file(kubelet)
        if actual != expected:
            log(f"mirror: {version}/{arch}: kubelet does not match its kubelet.sha256 "
                "(build in progress?); not published")
            continue
        verified[str(kubelet)] = f"{stamp}:{expected}"
        dst_dir = root / version / "bin" / "linux" / arch
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / "kubelet"
        if not (dst.exists() and _read_digest(dst_dir / "kubelet.sha256") == expected
                and (os.path.samefile(dst, kubelet) or sha256_file(dst) == expected)):
            _link_or_copy(kubelet, dst)
            (dst_dir / "kubelet.sha256").write_text(expected)
        wanted.add(dst)
        published.append(Published(version, arch, expected, dst))
    # Anything else that looks like a published kubelet is no longer backed by a verified build.
    for stale in root.glob("*/bin/linux/*/kubelet"):
        if stale not in wanted:
            log(f"mirror: removing {stale.relative_to(root)} (its build is gone or unverified)")
            stale.unlink()
            stale.with_name("kubelet.sha256").unlink(missing_ok=True)
    probe = root / PROBE_REL
    if not probe.exists():
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(f"homelab-kubelet lab mirror probe {time.time_ns()}\n")
        probe.with_name(probe.name + ".sha256").write_text(sha256_file(probe))
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(verified, indent=1))
    tmp.replace(cache_file)
    return published


def port_in_use(port: int, host: str = paths.MIRROR_BIND) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def server_argv(root: Path, port: int = paths.MIRROR_PORT) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", paths.MIRROR_BIND, "--directory", str(root)]


def start(root: Path | None = None, port: int = paths.MIRROR_PORT, log: Path | None = None) -> int:
    root = root or paths.mirror_root()
    log = log or paths.LAB.mirror_log
    root.mkdir(parents=True, exist_ok=True)
    if port_in_use(port):
        raise RuntimeError(f"port {paths.MIRROR_BIND}:{port} is already in use by something the lab did not start")
    pid = proc.spawn(server_argv(root, port), log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_in_use(port):
            return pid
        if not proc.is_ours(pid, SERVER_MARKER):
            break
        time.sleep(0.2)
    proc.stop(pid, SERVER_MARKER)
    raise RuntimeError(f"mirror HTTP server did not start; see {log}")
