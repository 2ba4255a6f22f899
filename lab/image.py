"""Builds the lab's node image: a Debian bookworm root file system made with debootstrap,
turned into an ext4 disk image with ``mkfs.ext4 -d`` (no loop mounts), plus the kernel and a
small initrd taken from it for qemu's ``-kernel``/``-initrd``.

The image lives in ``~/.cache/homelab-kubelet/lab/images/<recipe-hash>/``. The hash covers this
file's source and the lab's SSH public key, so a change to the recipe builds a new image.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import paths
from lab.progress import Progress

SUITE = "bookworm"
PACKAGES = [
    "systemd", "systemd-sysv", "udev", "dbus", "openssh-server", "containerd", "runc",
    "curl", "ca-certificates", "sudo", "iproute2", "kmod", "procps", "openssl",
    "linux-image-amd64", "initramfs-tools", "zstd",
]
#: Modules the initrd loads to find and mount the root disk (MODULES=list keeps it small).
INITRD_MODULES = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic", "crc32c_intel"]
#: Kernel module trees no lab VM can use; dropped to keep the disk image small.
PRUNE_MODULE_DIRS = [
    "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband",
    "drivers/staging", "drivers/iio", "drivers/isdn", "drivers/bluetooth", "drivers/input",
    "drivers/hid", "drivers/usb", "drivers/scsi", "drivers/ata", "drivers/mmc", "drivers/nfc",
    "drivers/net/ethernet", "drivers/net/can", "drivers/mtd", "drivers/platform",
    "sound", "net/wireless", "net/mac80211", "net/bluetooth",
]
DISK_SIZE = "8G"

FIRSTBOOT_SCRIPT = """#!/bin/sh
# Lab first boot (every boot of a fresh overlay): per-VM SSH host keys, /etc/hosts entry,
# and the facts the lab reads from the serial console to pin each VM's host key. They go through
# the kernel log (/dev/kmsg, printed on the console): a direct write to /dev/ttyS0 can be lost
# when serial-getty hangs the tty up at the same moment.
set -e
# ed25519 only: RSA key generation takes most of a minute under TCG.
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
h=$(hostname)
grep -q "[[:space:]]$h\\$" /etc/hosts || printf '127.0.1.1\\t%s\\n' "$h" >> /etc/hosts
{
  echo "LAB-HOSTKEY $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
  echo "LAB-MACHINEID $(cat /etc/machine-id)"
  echo "LAB-FIRSTBOOT-DONE $h"
} > /dev/kmsg
"""

FIRSTBOOT_UNIT = """[Unit]
Description=Lab first boot: SSH host keys, /etc/hosts
After=local-fs.target systemd-machine-id-commit.service
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-firstboot

[Install]
WantedBy=multi-user.target
"""

NETWORK_UNIT = """[Match]
Type=ether

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDNS=no
"""

SSHD_CONF = """# Lab: keys only; one host key per VM, made at its first boot.
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
"""

INITRAMFS_CONF = "MODULES=list\nCOMPRESS=zstd\n"

INITRAMFS_HOOK = """#!/bin/sh
# Lab: the few modules needed to mount the root file system on a virtio disk.
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in prereqs) prereqs; exit 0;; esac
. /usr/share/initramfs-tools/hook-functions
for m in {}; do force_load "$m" || true; done
""".format(" ".join(INITRD_MODULES))

HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
#: qemu user-mode networking's built-in DNS forwarder.
RESOLV_CONF = "nameserver 10.0.2.3\n"
FSTAB = "/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    dir: Path
    kernel: Path
    initrd: Path
    disk: Path
    recipe_hash: str


def debian_mirror_url(roots: tuple[Path, ...] = (Path("/etc/apt"),)) -> str:
    """The Debian archive URL this machine's own apt sources use for the main archive
    (one-line ``sources.list`` entries and deb822 ``.sources`` files; security and other
    suites are skipped). Nothing is hard-coded: the lab uses whatever this host uses."""
    candidates: list[tuple[str, list[str]]] = []
    for root in roots:
        files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
        for f in files:
            if not f.is_file():
                continue
            for line in f.read_text(errors="replace").splitlines():
                line = line.split("#", 1)[0].strip()
                if not line.startswith("deb "):
                    continue
                toks = line.split()[1:]
                if toks and toks[0].startswith("["):
                    while toks and not toks[0].endswith("]"):
                        toks.pop(0)
                    toks.pop(0)
                if len(toks) >= 2:
                    candidates.append((toks[0], [toks[1]]))
        for f in sorted((root / "sources.list.d").glob("*.sources")):
            for stanza in re.split(r"\n\s*\n", f.read_text(errors="replace")):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.lstrip().startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    for uri, suites in candidates:
        if SUITE in suites:
            return uri.rstrip("/")
    for uri, suites in candidates:
        if any(s.startswith(SUITE) and "security" not in s for s in suites):
            return uri.rstrip("/")
    raise ImageError(
        f"no apt source for Debian {SUITE} found in /etc/apt/sources.list*; the lab takes its "
        "Debian mirror from the host's apt sources"
    )


def ensure_key() -> Path:
    """The lab's SSH key (ed25519, made once, mode 0600)."""
    key = paths.key_path()
    if not key.exists() or not key.with_suffix(".pub").exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        for p in (key, key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "homelab-kubelet-lab", "-f", str(key)],
            check=True,
        )
    os.chmod(key, 0o600)
    return key


def recipe_hash(pubkey: str) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(pubkey.strip().encode())
    return h.hexdigest()[:16]


def images_dir() -> Path:
    return paths.lab_dir() / "images"


def current() -> Image:
    key = ensure_key()
    rh = recipe_hash(key.with_suffix(".pub").read_text())
    d = images_dir() / rh
    return Image(d, d / "vmlinuz", d / "initrd.img", d / "root.raw", rh)


def is_built(img: Image) -> bool:
    return all(p.exists() for p in (img.kernel, img.initrd, img.disk, img.dir / "recipe.json"))


def _run(cmd: list[str], log: Path, **kw: Any) -> None:
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise ImageError(f"{cmd[0]} failed ({r.returncode}); log {log}:\n" + "\n".join(tail))


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.write_text(text)
    os.chmod(p, mode)


def _chroot(root: Path, log: Path, *cmd: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    _run(["chroot", str(root), *cmd], log, env=env)


def build(progress: Progress | None = None, force: bool = False) -> Image:
    """Builds the image if this recipe has none yet; returns it."""
    progress = progress or Progress()
    img = current()
    if is_built(img) and not force:
        progress(f"image {img.recipe_hash} cached in {img.dir}")
        return img
    if os.geteuid() != 0:
        raise ImageError("building the lab image needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "mkfs.ext4", "qemu-img", "chroot"):
        if not shutil.which(tool):
            raise ImageError(f"{tool} not found: apt-get install debootstrap e2fsprogs qemu-utils")
    pub = paths.key_path().with_suffix(".pub").read_text().strip()
    work = images_dir() / f".build-{img.recipe_hash}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    root = work / "root"
    log = work / "build.log"
    mirror = debian_mirror_url()
    t0 = progress.elapsed()

    # Lab initramfs settings go in before debootstrap, so the kernel's postinst makes the small
    # initrd right away (conf.d and hooks are not package conffiles).
    _write(root, "/etc/initramfs-tools/conf.d/lab.conf", INITRAMFS_CONF)
    _write(root, "/etc/initramfs-tools/hooks/lab-modules", INITRAMFS_HOOK, 0o755)
    progress(f"image {img.recipe_hash}: debootstrap {SUITE} minbase ({len(PACKAGES)} extra packages)")
    _run(
        ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(root), mirror],
        log,
    )
    progress(f"image: debootstrap done ({progress.elapsed() - t0:.0f}s); configuring")

    # Identity: no hostname, empty machine-id, no host keys; all made per VM at first boot.
    (root / "etc/hostname").unlink(missing_ok=True)
    _write(root, "/etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    for k in (root / "etc/ssh").glob("ssh_host_*"):
        k.unlink()
    (root / "var/lib/systemd/random-seed").unlink(missing_ok=True)
    _write(root, "/etc/hosts", HOSTS)
    _write(root, "/etc/resolv.conf", RESOLV_CONF)
    _write(root, "/etc/fstab", FSTAB)
    _write(root, "/etc/systemd/network/20-lab.network", NETWORK_UNIT)
    _write(root, "/etc/ssh/sshd_config.d/lab.conf", SSHD_CONF)
    _write(root, "/usr/local/sbin/lab-firstboot", FIRSTBOOT_SCRIPT, 0o755)
    _write(root, "/etc/systemd/system/lab-firstboot.service", FIRSTBOOT_UNIT)
    # Users: root and kube (passwordless sudo), both with the lab key.
    _chroot(root, log, "useradd", "-m", "-s", "/bin/bash", "kube")
    for home, owner in (("/root", "0:0"), ("/home/kube", "kube:kube")):
        _write(root, f"{home}/.ssh/authorized_keys", pub + "\n", 0o600)
        os.chmod(root / home.lstrip("/") / ".ssh", 0o700)
        _chroot(root, log, "chown", "-R", owner, f"{home}/.ssh")
    _write(root, "/etc/sudoers.d/kube", "kube ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    _chroot(root, log, "systemctl", "enable", "systemd-networkd.service", "lab-firstboot.service",
            "containerd.service", "ssh.service")
    # No swap, ever (the kubelet's failSwapOn).
    _chroot(root, log, "systemctl", "mask", "swap.target")

    kver = sorted(p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*"))
    if len(kver) != 1:
        raise ImageError(f"expected one kernel in the image, found {kver}")
    kver_s = kver[0]
    moddir = root / "lib/modules" / kver_s / "kernel"
    for rel in PRUNE_MODULE_DIRS:
        shutil.rmtree(moddir / rel, ignore_errors=True)
    _chroot(root, log, "depmod", "-a", kver_s)
    # The initrd made by the kernel's postinst already follows the lab settings; rebuilding
    # here keeps the module list in step with the pruned tree.
    _chroot(root, log, "update-initramfs", "-u", "-k", kver_s)
    _chroot(root, log, "apt-get", "clean")
    for d in ("var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info"):
        for p in (root / d).glob("*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.name != "lock":
                p.unlink()
    shutil.copy2(root / "boot" / f"vmlinuz-{kver_s}", work / "vmlinuz")
    shutil.copy2(root / "boot" / f"initrd.img-{kver_s}", work / "initrd.img")
    progress(f"image: configured; mkfs.ext4 -d ({progress.elapsed() - t0:.0f}s)")
    raw = work / "root.raw"
    _run(["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", str(root), str(raw), DISK_SIZE], log)
    os.chmod(raw, 0o444)
    recipe: dict[str, Any] = {
        "hash": img.recipe_hash,
        "suite": SUITE,
        "kernel": kver_s,
        "packages": PACKAGES,
        "initrd_modules": INITRD_MODULES,
        "initrd_bytes": (work / "initrd.img").stat().st_size,
        "build_seconds": round(progress.elapsed() - t0, 1),
    }
    (work / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    shutil.rmtree(root)
    if img.dir.exists():
        shutil.rmtree(img.dir)
    work.rename(img.dir)
    # Older recipes' images are not needed any more.
    for other in images_dir().iterdir():
        if other.is_dir() and other.name != img.recipe_hash and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    progress(
        f"image {img.recipe_hash} built in {recipe['build_seconds']}s "
        f"(kernel {kver_s}, initrd {recipe['initrd_bytes'] // 1024} KiB)"
    )
    return img
