"""The lab's layouts (the three amd64 nodes, the arm64 node) and the image recipe's pieces,
without VMs: stack files, ports and state kept apart, qemu command lines, and one configuration
recipe for both architectures."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.settings import parse_settings
from lab import api, image, paths, vm
from lab.progress import Progress
from tests.stack_config import load_stack_config

#: What the arm64 stack may say differently from the lab stack (all else is one source).
OWN_KEYS = {("homelab-kubelet:kubernetes", "downloadBaseUrl"), ("homelab-kubelet:ssh", "knownHostsFile")}


def _config(layout: paths.Layout) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(layout.stack_file.read_text())["config"]
    return config


def test_arm64_stack_is_the_lab_stack_but_for_node_mirror_port_and_known_hosts() -> None:
    lab, arm = _config(paths.LAB), _config(paths.ARM64)
    assert set(lab) == set(arm)
    for key in lab:
        if key == "homelab-kubelet:nodes":
            continue
        if isinstance(lab[key], dict):
            ours = {k for k in lab[key] if (key, k) not in OWN_KEYS}
            assert {k: arm[key].get(k) for k in ours} == {k: lab[key][k] for k in ours}, key
            assert set(arm[key]) == set(lab[key]), key
        else:
            assert arm[key] == lab[key], key
    assert arm["homelab-kubelet:nodes"] == [
        {"name": "k8s-node3", "address": "127.0.0.1", "port": 2224, "arch": "arm64",
         "podCIDR": "10.200.3.0/24", "ips": [paths.GUEST_IP]},
    ]


def test_layouts_keep_apart_ports_nodes_state_and_mirror_servers() -> None:
    assert paths.LAB.arch == "amd64" and paths.ARM64.arch == "arm64"
    assert paths.LAB.nodes == paths.NODES
    names = [n for layout in paths.LAYOUTS for n, _ in layout.nodes]
    ports = [p for layout in paths.LAYOUTS for _, p in layout.nodes]
    assert len(set(names)) == len(names) and len(set(ports)) == len(ports)
    assert dict(paths.ARM64.nodes) == {"k8s-node3": 2224}
    assert {paths.layout_of(n) for n, _ in paths.LAB.nodes} == {paths.LAB}
    assert paths.layout_of("k8s-node3") == paths.ARM64
    assert paths.LAB.mirror_port != paths.ARM64.mirror_port
    assert (paths.LAB.mirror_url_guest, paths.ARM64.mirror_url_guest) == (
        _config(paths.LAB)["homelab-kubelet:kubernetes"]["downloadBaseUrl"],
        _config(paths.ARM64)["homelab-kubelet:kubernetes"]["downloadBaseUrl"],
    )
    # The three-node lab's files are where they always were; the arm64 layout's are its own.
    assert paths.LAB.state_path == paths.state_path() == paths.lab_dir() / "state.json"
    assert paths.LAB.known_hosts_path == paths.known_hosts_path() == paths.lab_dir() / "known_hosts"
    assert paths.LAB.run_dir == paths.run_dir() == paths.lab_dir() / "run"
    mine = {paths.ARM64.state_path, paths.ARM64.known_hosts_path, paths.ARM64.lock_path, paths.ARM64.run_dir,
            paths.ARM64.mirror_log}
    assert all(p.is_relative_to(paths.lab_dir() / "arm64") for p in mine)
    # An image of one arch never prunes the other's (each prunes only its own images dir).
    assert image.images_dir("amd64") != image.images_dir("arm64")
    assert not image.images_dir("arm64").is_relative_to(image.images_dir("amd64"))


def test_ssh_to_the_arm64_node_uses_its_own_known_hosts_and_control_path() -> None:
    a = api.ssh_argv("k8s-node3", "kube")
    assert a[a.index("-p") + 1] == "2224"
    assert f"UserKnownHostsFile={paths.ARM64.known_hosts_path}" in a
    assert f"ControlPath={paths.ARM64.dir}/ssh-%p-%r" in a
    b = api.ssh_argv("k8s-node1")
    assert f"UserKnownHostsFile={paths.LAB.known_hosts_path}" in b
    assert f"ControlPath={paths.lab_dir()}/ssh-%p-%r" in b


def test_arm64_stack_is_accepted_with_a_pinned_arm64_digest() -> None:
    # It imports the lab control plane's CA, as the lab stack does (scripts/up, the e2e harness).
    settings = parse_settings(load_stack_config(paths.ARM64.stack_file), frozenset({"caCertPem", "caKeyPem"}))
    assert settings.pki.import_ca
    assert [(n.name, n.arch, n.port) for n in settings.nodes] == [("k8s-node3", "arm64", 2224)]
    assert settings.kubernetes.pinned_sha256("arm64") is not None


def test_qemu_command_lines_per_arch(tmp_path: Path) -> None:
    arm = image.Image(tmp_path, tmp_path / "vmlinuz", tmp_path / "initrd.img", tmp_path / "root.raw", "h", "arm64")
    a = vm.argv("k8s-node3", image=arm, overlay=tmp_path / "o.qcow2", console=tmp_path / "c.log", cgroup="v2",
                accel="tcg", ssh_port=2224)
    assert a[0] == "qemu-system-aarch64"
    assert a[a.index("-machine") + 1] == "virt" and a[a.index("-cpu") + 1] == "cortex-a72"
    append = a[a.index("-append") + 1].split()
    assert "console=ttyAMA0" in append and "systemd.hostname=k8s-node3" in append
    assert not any(arg.startswith("8250.") for arg in append)
    assert "user,id=n0,hostfwd=tcp:127.0.0.1:2224-:22" in a
    amd = image.Image(tmp_path, tmp_path / "vmlinuz", tmp_path / "initrd.img", tmp_path / "root.raw", "h")
    b = vm.argv("k8s-node1", image=amd, overlay=tmp_path / "o.qcow2", console=tmp_path / "c.log", cgroup="v1",
                accel="tcg", ssh_port=2222)
    assert b[0] == "qemu-system-x86_64" and b[b.index("-machine") + 1] == "pc" and b[b.index("-cpu") + 1] == "max"
    assert "console=ttyS0,115200" in b[b.index("-append") + 1].split()


def test_a_foreign_arch_vm_is_tcg_and_kvm_for_it_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "host_arch", lambda: "amd64")
    arm = image.Image(tmp_path, tmp_path / "k", tmp_path / "i", tmp_path / "d", "h", "arm64")
    monkeypatch.setenv("LAB_ACCEL", "auto")
    assert vm.choose_accel(arm, Progress(quiet=True)) == "tcg"
    monkeypatch.setenv("LAB_ACCEL", "kvm")
    with pytest.raises(ValueError, match="cannot run a arm64 VM on this amd64 host"):
        vm.choose_accel(arm, Progress(quiet=True))


def test_one_configuration_recipe_for_both_arches() -> None:
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxnwQXMjPYoat9v68YFrmDeuigH6bhYNb+xSCG1i4HG lab"
    amd, arm = (image.configure_script(arch, pub).splitlines() for arch in ("amd64", "arm64"))
    assert [i for i, (x, y) in enumerate(zip(amd, arm, strict=True)) if x != y] == [1]  # the comment line
    text = "\n".join(amd)
    for fact in ("useradd -m -s /bin/bash kube", "kube ALL=(ALL) NOPASSWD: ALL", "systemctl mask swap.target",
                 "lab-firstboot.service", "rm -f /etc/ssh/ssh_host_*", ": | put /etc/machine-id 0644"):
        assert fact in text
    assert text.count(pub) == 2  # root's and kube's authorized_keys
    # Only the kernel flavour and the initrd's CPU-specific crc32c module differ.
    assert set(image.packages("amd64")) ^ set(image.packages("arm64")) == {"linux-image-amd64", "linux-image-arm64"}
    assert set(image.INITRD_MODULES["amd64"]) - set(image.INITRD_MODULES["arm64"]) == {"crc32c_intel"}


def test_configure_script_is_shellcheck_clean(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: apt-get install -y shellcheck")
    script = tmp_path / "configure.sh"
    script.write_text(image.configure_script("arm64", "ssh-ed25519 AAAA lab"))
    r = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_configure_script_writes_files_verbatim(tmp_path: Path) -> None:
    """The recipe's ``put`` writes each file byte for byte with its mode (only its ``put`` calls
    run here, each path moved below tmp_path)."""
    body = image.configure_script("arm64", "ssh-ed25519 AAAA lab")
    root = tmp_path / "root"
    func = body[body.index("put() {"):body.index("}\n", body.index("put() {")) + 2]
    calls = re.findall(r"^put (/\S+) (\d{4}) <<'LAB_EOF'\n.*?^LAB_EOF\n", body, re.M | re.S)
    blocks = re.findall(r"^put /\S+ \d{4} <<'LAB_EOF'\n.*?^LAB_EOF\n", body, re.M | re.S)
    assert len(calls) == len(blocks) >= 9
    script = func + "".join(b.replace("put /", f"put {root}/", 1) for b in blocks)
    subprocess.run(["sh", "-euc", script], check=True)
    assert (root / "usr/local/sbin/lab-firstboot").read_text() == image.FIRSTBOOT_SCRIPT
    assert stat.S_IMODE((root / "usr/local/sbin/lab-firstboot").stat().st_mode) == 0o755
    assert (root / "etc/ssh/sshd_config.d/lab.conf").read_text() == image.SSHD_CONF
    assert (root / "etc/sudoers.d/kube").read_text() == "kube ALL=(ALL) NOPASSWD: ALL\n"
    assert stat.S_IMODE((root / "etc/sudoers.d/kube").stat().st_mode) == 0o440
    assert (root / "home/kube/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAA lab\n"
    assert {path: int(mode, 8) for path, mode in calls}["/root/.ssh/authorized_keys"] == 0o600


def test_a_foreign_root_runs_under_proot_and_qemu_with_nothing_of_the_host_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[list[str], str]] = []
    monkeypatch.setattr(image, "host_arch", lambda: "amd64")
    monkeypatch.setattr(image, "_run", lambda cmd, log, env: runs.append((cmd, env["PATH"])))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    image._in_root(tmp_path, "arm64", tmp_path / "log", "/bin/sh", "/tmp/lab-configure")
    image._in_root(tmp_path, "amd64", tmp_path / "log", "/bin/sh", "/tmp/lab-configure", bind_proc=True)
    image._in_root(tmp_path, "arm64", tmp_path / "log", "/bin/sh", "/tmp/lab-configure", bind_proc=True)
    assert runs[2][0][:7] == ["proot", "-q", "/usr/bin/qemu-aarch64-static", "-r", str(tmp_path), "-b", "/proc"]
    del runs[2]
    assert runs == [
        (["proot", "-q", "/usr/bin/qemu-aarch64-static", "-r", str(tmp_path), "-w", "/", "/bin/sh", "/tmp/lab-configure"],
         "/usr/sbin:/usr/bin:/sbin:/bin"),
        (["chroot", str(tmp_path), "/bin/sh", "/tmp/lab-configure"], "/usr/sbin:/usr/bin:/sbin:/bin"),
    ]
    # The programs proot cannot run are no-ops found before /usr/bin on every PATH (debootstrap's
    # in_target sets /sbin:/usr/sbin:/bin:/usr/bin; /sbin is /usr/sbin on a merged-/usr root).
    assert image.BUILD_BIN == "/usr/sbin"
    noop = tmp_path / "usr/sbin/systemd-tmpfiles"
    assert subprocess.run(["sh", str(noop), "--create", "debian.conf"]).returncode == 0
    assert os.access(noop, os.X_OK)


def test_mounts_below_a_tree(tmp_path: Path) -> None:
    assert image._mounts_below(tmp_path) == []
    below_dev = image._mounts_below(Path("/dev"))
    assert "/dev/pts" in below_dev and "/dev" not in below_dev


def _module(path: Path, depends: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0name=" + path.stem.encode() + b"\0")


def test_module_closure_orders_dependencies_first(tmp_path: Path) -> None:
    _module(tmp_path / "fs/ext4/ext4.ko", "mbcache,jbd2,crc16")
    _module(tmp_path / "fs/jbd2/jbd2.ko", "")
    _module(tmp_path / "fs/mbcache.ko", "")
    _module(tmp_path / "lib/crc16.ko", "")
    _module(tmp_path / "drivers/char/hw_random/virtio-rng.ko", "")
    order = [p.name for p in image.module_closure(tmp_path, ["ext4", "virtio_rng"])]
    assert order == ["mbcache.ko", "jbd2.ko", "crc16.ko", "ext4.ko", "virtio-rng.ko"]
    with pytest.raises(image.ImageError, match="kernel module nosuch is not in"):
        image.module_closure(tmp_path, ["nosuch"])


def _read_cpio(data: bytes) -> list[tuple[str, int, bytes, int]]:
    out: list[tuple[str, int, bytes, int]] = []
    i = 0
    while True:
        assert data[i:i + 6] == b"070701"
        f = [int(data[i + 6 + 8 * k:i + 14 + 8 * k], 16) for k in range(13)]
        name_end = i + 110 + f[11]
        name = data[i + 110:name_end - 1].decode()
        i = name_end + (-name_end % 4)
        body = data[i:i + f[6]]
        i += f[6] + (-f[6] % 4)
        if name == "TRAILER!!!":
            return out
        out.append((name, f[1], body, (f[9] << 8) | f[10]))


def test_cpio_newc_round_trip() -> None:
    entries = [("bin", stat.S_IFDIR | 0o755, b"", 0), ("dev/console", stat.S_IFCHR | 0o600, b"", (5 << 8) | 1),
               ("init", stat.S_IFREG | 0o755, b"#!/bin/busybox sh\n", 0), ("x", stat.S_IFREG | 0o644, b"12345", 0)]
    data = image.cpio_newc(entries)
    assert len(data) % 4 == 0
    assert _read_cpio(data) == entries


def test_package_stanza_from_a_packages_index(tmp_path: Path) -> None:
    index = tmp_path / "Packages"
    index.write_text("Package: busybox\nVersion: 1\nFilename: pool/main/b/busybox/busybox_1_arm64.deb\n\n"
                     "Package: busybox-static\nVersion: 1:1.35.0-4\nFilename: pool/main/b/busybox/bs.deb\n"
                     "SHA256: " + "ab" * 32 + "\n\n")
    fields = image.package_stanza(index, "busybox-static")
    assert fields["Filename"] == "pool/main/b/busybox/bs.deb" and fields["SHA256"] == "ab" * 32
    with pytest.raises(image.ImageError, match="package nosuch not in"):
        image.package_stanza(index, "nosuch")


def test_boot_initramfs_of_an_emulated_image() -> None:
    """The lab's initrd: /init (BOOT_INIT: load the modules, mount /dev/vda, systemd), busybox,
    the modules in load order and a console node."""
    mods_dir = Path(__file__).parent  # any files stand in for modules here
    modules = [mods_dir / "test_lab_layouts.py", mods_dir / "conftest.py"]
    entries = {name: (mode, data, rdev) for name, mode, data, rdev in _read_cpio(image.boot_initramfs(b"BB", modules))}
    assert entries["init"][1] == image.BOOT_INIT.encode() and entries["init"][0] & 0o111
    assert entries["bin/busybox"][1] == b"BB"
    assert entries["modules"][1] == b"test_lab_layouts.py\nconftest.py\n"
    assert entries["lib/modules/conftest.py"][1] == modules[1].read_bytes()
    assert stat.S_ISCHR(entries["dev/console"][0]) and entries["dev/console"][2] == (5 << 8) | 1
    assert "exec switch_root /newroot /sbin/init" in image.BOOT_INIT


def test_boot_init_is_shellcheck_clean(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: apt-get install -y shellcheck")
    script = tmp_path / "init.sh"
    script.write_text(re.sub(r"\A#!/bin/busybox sh", "#!/bin/sh", image.BOOT_INIT))
    r = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_recipe_hash_differs_per_arch() -> None:
    assert image.recipe_hash("ssh-ed25519 AAAA", "amd64") != image.recipe_hash("ssh-ed25519 AAAA", "arm64")


def test_state_of_another_layout_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_KUBELET_CACHE", str(tmp_path))
    assert api.status() is None and api.status(paths.ARM64) is None
    info = api.LabInfo(cgroup="v2", accel="tcg", image="h", key_path="", known_hosts="", nodes=[], mirror_pid=0,
                       mirror_root="", layout=paths.ARM64.stack, arch="arm64")
    paths.ARM64.dir.mkdir(parents=True)
    api._save_state(info)
    assert api.status() is None
    got = api.status(paths.ARM64)
    assert got is not None and (got.layout, got.arch) == ("lab-arm64", "arm64")
    assert os.listdir(paths.lab_dir()) == ["arm64"]


def _collected(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args,
                        "tests/lab/test_30_arm64.py", "tests/e2e/test_arm64.py"],
                       capture_output=True, text=True, cwd=paths.REPO, timeout=120)
    return r.stdout.strip().splitlines()[-1]


def test_arm64_tests_run_only_when_the_marker_expression_names_them() -> None:
    """CI's plain run (and `-m lab`, `-m e2e`) leaves the arm64 node's tests out; `-m arm64` runs them."""
    assert re.match(r"no tests collected \(\d+ deselected\)", _collected())
    assert re.match(r"no tests collected \(\d+ deselected\)", _collected("-m", "lab or e2e"))
    assert re.match(r"\d+ tests collected", _collected("-m", "arm64"))


def test_one_image_build_per_arch_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build of an arch waits for the first instead of removing its work tree."""
    monkeypatch.setenv("HOMELAB_KUBELET_CACHE", str(tmp_path))
    lock = image.images_dir("arm64") / ".lock"
    image.images_dir("amd64").mkdir(parents=True)
    with image._build_lock("arm64"):
        assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 1
        assert subprocess.run(["flock", "-n", str(image.images_dir("amd64") / ".lock"), "true"]).returncode == 0
    assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0
