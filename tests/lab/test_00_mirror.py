"""The mirror's layout, without VMs: a generated stand-in build in a temporary cache."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab import image, mirror

pytestmark = pytest.mark.lab


def _build(builds: Path, version: str, arch: str, body: bytes, sha_text: str | None = None) -> str:
    d = builds / version / arch
    d.mkdir(parents=True)
    (d / "kubelet").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    (d / "kubelet.sha256").write_text(digest if sha_text is None else sha_text)
    return digest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_layout_matches_the_official_release_host(tmp_path: Path) -> None:
    builds, root = tmp_path / "kubelet", tmp_path / "mirror"
    d_amd = _build(builds, "v9.9.9", "amd64", b"not a kubelet, amd64\n")
    # The toolchain writes the hex digest alone; a "digest  name" file is read the same way.
    d_arm = _build(builds, "v9.9.9", "arm64", b"not a kubelet, arm64\n", sha_text=None)
    (builds / "v9.9.9/arm64/kubelet.sha256").write_text(f"{d_arm}  kubelet\n")
    pubs = mirror.sync(builds, root, log=lambda _m: None)
    assert {(p.version, p.arch, p.sha256) for p in pubs} == {("v9.9.9", "amd64", d_amd), ("v9.9.9", "arm64", d_arm)}
    for arch, digest in (("amd64", d_amd), ("arm64", d_arm)):
        f = root / "v9.9.9" / "bin" / "linux" / arch / "kubelet"
        assert f.read_bytes() == (builds / "v9.9.9" / arch / "kubelet").read_bytes()
        assert f.stat().st_ino == (builds / "v9.9.9" / arch / "kubelet").stat().st_ino  # hard link
        assert (f.parent / "kubelet.sha256").read_text() == digest  # the hex digest alone

    port = _free_port()
    server = subprocess.Popen(mirror.server_argv(root, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if mirror.port_in_use(port):
                break
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/v9.9.9/bin/linux/amd64/kubelet.sha256") as r:
            assert r.read() == d_amd.encode()
        with urllib.request.urlopen(f"{base}/v9.9.9/bin/linux/amd64/kubelet") as r:
            assert hashlib.sha256(r.read()).hexdigest() == d_amd
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/v9.9.9/bin/linux/s390x/kubelet")
        assert e.value.code == 404
    finally:
        server.terminate()
        server.wait(10)


def test_mirror_never_invents_a_kubelet(tmp_path: Path) -> None:
    builds, root = tmp_path / "kubelet", tmp_path / "mirror"
    # A build whose digest does not match (e.g. still being written) is not published ...
    _build(builds, "v9.9.8", "amd64", b"half written", sha_text="0" * 64)
    # ... nor one without its .sha256 ...
    (builds / "v9.9.7" / "amd64").mkdir(parents=True)
    (builds / "v9.9.7" / "amd64" / "kubelet").write_bytes(b"x")
    assert mirror.sync(builds, root, log=lambda _m: None) == []
    assert list(root.glob("*/bin/linux/*/kubelet")) == []
    # ... and an entry whose build disappears is taken out.
    _build(builds, "v9.9.9", "amd64", b"ok")
    assert len(mirror.sync(builds, root, log=lambda _m: None)) == 1
    for p in (builds / "v9.9.9" / "amd64").iterdir():
        p.unlink()
    assert mirror.sync(builds, root, log=lambda _m: None) == []
    assert not (root / "v9.9.9/bin/linux/amd64/kubelet").exists()
    assert not (root / "v9.9.9/bin/linux/amd64/kubelet.sha256").exists()


def test_debian_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://example.invalid/commented\nURIs: http://mirror.example.invalid/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example.invalid/debian-security\nSuites: bookworm-security\n"
    )
    assert image.debian_mirror_url((apt,)) == "http://mirror.example.invalid/debian"
    apt2 = tmp_path / "apt2"
    (apt2 / "sources.list.d").mkdir(parents=True)
    (apt2 / "sources.list").write_text(
        "deb [signed-by=/k.gpg] http://one-line.example.invalid/debian/ bookworm main\n"
    )
    assert image.debian_mirror_url((apt2,)) == "http://one-line.example.invalid/debian"
