"""qemu command lines for the lab VMs, and the KVM probe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab import paths, proc
from lab.progress import Progress

if TYPE_CHECKING:
    from lab.image import Image


@dataclass(frozen=True)
class Machine:
    """How qemu emulates a node of one architecture."""

    qemu: str
    machine: str
    #: The CPU model under TCG (KVM uses ``host``).
    tcg_cpu: str
    #: The serial console the kernel writes to (``console=``).
    console: str
    #: Kernel arguments for this machine only.
    kernel_args: tuple[str, ...]
    #: The Debian package with the qemu binary.
    package: str


MACHINES = {
    "amd64": Machine("qemu-system-x86_64", "pc", "max", "ttyS0,115200", ("8250.nr_uarts=1",), "qemu-system-x86"),
    # Cortex-A72 (a Raspberry Pi 4's core; ARMv8.0): `max` would add pointer authentication and
    # SVE, which TCG emulates slowly and no lab step needs.
    "arm64": Machine("qemu-system-aarch64", "virt", "cortex-a72", "ttyAMA0", (), "qemu-system-arm"),
}
QEMU = MACHINES["amd64"].qemu
CGROUP_ARGS = {
    # Debian's default: the unified hierarchy (cgroup2fs at /sys/fs/cgroup).
    "v2": "systemd.unified_cgroup_hierarchy=1",
    # Full legacy layout as in the runbooks: one directory per controller (/sys/fs/cgroup/memory,
    # /sys/fs/cgroup/cpuset, ...) and systemd's own v1 named hierarchy.
    "v1": "systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1",
}
TCG = "tcg,thread=multi,tb-size=128"


def kernel_cmdline(name: str, cgroup: str, arch: str = "amd64") -> str:
    m = MACHINES[arch]
    return " ".join([
        f"console={m.console}", "root=/dev/vda", "rw", "rootfstype=ext4", "fsck.mode=skip",
        f"systemd.hostname={name}", "systemd.show_status=false", "printk.devkmsg=on",
        "mitigations=off", "panic=-1", *m.kernel_args,
        CGROUP_ARGS[cgroup],
    ])


def _qemu(arch: str, marker: str, accel: str, console: Path, kernel: Path, initrd: Path, append: str,
          drive: str) -> list[str]:
    m = MACHINES[arch]
    return [
        m.qemu, "-name", marker, "-uuid", str(uuid.uuid4()),
        "-machine", m.machine, "-accel", TCG if accel == "tcg" else "kvm",
        "-cpu", m.tcg_cpu if accel == "tcg" else "host",
        "-smp", str(paths.VM_CPUS), "-m", str(paths.VM_MEMORY_MIB),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-serial", f"file:{console}", "-monitor", "none",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", append,
        "-drive", drive,
        "-device", "virtio-rng-pci",
    ]


def argv(name: str, *, image: Image, overlay: Path, console: Path, cgroup: str, accel: str,
         ssh_port: int | None, kubelet_address: str | None = None) -> list[str]:
    """The qemu command line; `ssh_port` forwards 127.0.0.1:ssh_port to the guest's 22 and
    `kubelet_address` (a loopback address of the host's) its port 10250 to the guest's kubelet."""
    net = ["-nic", "none"]
    if ssh_port is not None:
        forwards = f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
        if kubelet_address is not None:
            forwards += f",hostfwd=tcp:{kubelet_address}:{paths.KUBELET_PORT}-:{paths.KUBELET_PORT}"
        net = [
            "-netdev", f"user,id=n0,{forwards}",
            "-device", "virtio-net-pci,netdev=n0,romfile=",
        ]
    return [
        *_qemu(image.arch, f"lab-{name}", accel, console, image.kernel, image.initrd,
               kernel_cmdline(name, cgroup, image.arch),
               f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap"),
        *net,
    ]


def make_overlay(image: Image, overlay: Path) -> None:
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(overlay)],
        check=True,
    )


def choose_accel(image: Image, progress: Progress) -> str:
    """``LAB_ACCEL``: tcg (default), kvm, or auto (KVM only when a probe boot proves it works;
    the probe's answer is cached per image). A VM of another architecture than the host's is TCG."""
    from lab.image import host_arch

    want = os.environ.get("LAB_ACCEL", "tcg").strip().lower() or "tcg"
    if want not in ("tcg", "kvm", "auto"):
        raise ValueError(f"LAB_ACCEL must be tcg, kvm or auto, not {want!r}")
    if image.arch != host_arch():
        if want == "kvm":
            raise ValueError(f"LAB_ACCEL=kvm cannot run a {image.arch} VM on this {host_arch()} host")
        return "tcg"
    if want != "auto":
        return want
    cache = paths.lab_dir() / "kvm-probe.json"
    try:
        c = json.loads(cache.read_text())
        if c.get("image") == image.recipe_hash:
            return "kvm" if c["ok"] else "tcg"
    except (OSError, ValueError, KeyError):
        pass
    ok = probe_kvm(image, progress)
    cache.write_text(json.dumps({"image": image.recipe_hash, "ok": ok}))
    return "kvm" if ok else "tcg"


def probe_kvm(image: Image, progress: Progress, timeout: float = 60.0) -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        progress("accel: /dev/kvm not usable; TCG")
        return False
    d = paths.lab_dir() / "kvm-probe"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    overlay, console = d / "probe.qcow2", d / "console.log"
    make_overlay(image, overlay)
    a = argv("kvm-probe", image=image, overlay=overlay, console=console, cgroup="v2", accel="kvm", ssh_port=None)
    pid = proc.spawn(a, d / "qemu.log")
    progress("accel: probing KVM with one boot")
    ok = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.is_ours(pid, "lab-kvm-probe"):
            if console.exists() and "LAB-FIRSTBOOT-DONE" in console.read_text(errors="replace"):
                ok = True
                break
            time.sleep(1)
    finally:
        proc.stop(pid, "lab-kvm-probe")
    progress(f"accel: KVM probe {'booted' if ok else 'did not boot'}; using {'KVM' if ok else 'TCG'}")
    shutil.rmtree(d, ignore_errors=True)
    return ok
