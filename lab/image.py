"""Builds the lab's node images: a Debian bookworm root file system made with debootstrap,
turned into an ext4 disk image with ``mkfs.ext4 -d`` (no loop mounts), plus the kernel and a
small initrd for qemu's ``-kernel``/``-initrd``.

The host's own architecture (amd64): debootstrap, then :func:`configure_script` in a chroot; the
initrd is the image's own (update-initramfs). Another architecture (arm64), with no binfmt
handler needed: debootstrap's first stage (``--foreign``: download and unpack) here, then its
second stage and the same :func:`configure_script` in the new root under user-mode emulation
(``proot -q qemu-aarch64-static``, about 11 times faster than a build boot of the emulated
machine, measured; docs/lab.md); the initrd is the lab's (:data:`BOOT_INIT`), since Debian's
cannot be made under this proot.

The image lives in ``~/.cache/homelab-kubelet/lab/images/<recipe-hash>/`` (arm64:
``images-arm64/``). The hash covers this file's source, the architecture and the lab's SSH public
key, so a change to the recipe builds a new image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import paths
from lab.progress import Progress

SUITE = "bookworm"
ARCHES = ("amd64", "arm64")


def packages(arch: str) -> list[str]:
    """What debootstrap installs besides minbase: the same for every arch but the kernel flavour."""
    return [
        "systemd", "systemd-sysv", "udev", "dbus", "openssh-server", "containerd", "runc",
        "curl", "ca-certificates", "sudo", "iproute2", "kmod", "procps", "openssl",
        f"linux-image-{arch}", "initramfs-tools", "zstd",
    ]


#: Modules the initrd loads to find and mount the root disk (MODULES=list keeps it small).
INITRD_MODULES = {
    "amd64": ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic", "crc32c_intel"],
    "arm64": ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"],
}
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



def initramfs_hook(arch: str) -> str:
    return """#!/bin/sh
# Lab: the few modules needed to mount the root file system on a virtio disk.
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in prereqs) prereqs; exit 0;; esac
. /usr/share/initramfs-tools/hook-functions
for m in {}; do force_load "$m" || true; done
""".format(" ".join(INITRD_MODULES[arch]))


HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
#: qemu user-mode networking's built-in DNS forwarder.
RESOLV_CONF = "nameserver 10.0.2.3\n"
FSTAB = "/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n"


#: The user-mode emulator of each architecture a root is emulated for (Debian's qemu-user-static).
QEMU_USER = {"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}
#: Before /usr/bin on every PATH of the build, debootstrap's own included, and holding none of
#: the programs below: their no-ops go there during an emulated build (removed before the disk is
#: made). No package ships /usr/sbin/systemd-tmpfiles.
BUILD_BIN = "/usr/sbin"
#: Debian's proot (5.1) aborts on systemd-tmpfiles' readlinkat(fd, "") (proot issues 182, 366;
#: fixed upstream after bookworm), which systemd's postinst runs; systemd-tmpfiles-setup.service
#: creates the same entries at every boot.
BUILD_NOOPS = ("systemd-tmpfiles",)
#: Debian's static busybox: the shell of an emulated image's boot initramfs (see BOOT_INIT).
BUSYBOX_PACKAGE = "busybox-static"

#: /init of an emulated image's initrd. Debian's own, made by update-initramfs under proot, is
#: broken (its hooks' ``test -r``/``-x`` go through faccessat2, which proot 5.1 does not
#: translate, so copy_exec copies no library and no module): this one loads the modules of
#: INITRD_MODULES, mounts the root disk and hands over to systemd.
BOOT_INIT = """#!/bin/busybox sh
# Lab initramfs (emulated arch): the root disk's modules, the root, then systemd.
/bin/busybox --install -s /bin
fail() { echo "LAB-INITRAMFS-FAILED: $*"; sleep 5; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/$m" || fail "insmod $m"; done </modules
n=0
while [ ! -b /dev/vda ]; do
  n=$((n + 1)); [ "$n" -le 300 ] || fail "no /dev/vda"; sleep 0.1
done
mount -t ext4 /dev/vda /newroot || fail "mount /dev/vda"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    dir: Path
    kernel: Path
    initrd: Path
    disk: Path
    recipe_hash: str
    arch: str = "amd64"


def host_arch() -> str:
    """The Debian architecture of this machine (amd64, arm64)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


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


def recipe_hash(pubkey: str, arch: str = "amd64") -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(pubkey.strip().encode())
    h.update(arch.encode())
    return h.hexdigest()[:16]


def images_dir(arch: str = "amd64") -> Path:
    return paths.lab_dir() / ("images" if arch == "amd64" else f"images-{arch}")


def current(arch: str = "amd64") -> Image:
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}, not {arch!r}")
    key = ensure_key()
    rh = recipe_hash(key.with_suffix(".pub").read_text(), arch)
    d = images_dir(arch) / rh
    return Image(d, d / "vmlinuz", d / "initrd.img", d / "root.raw", rh, arch)


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


def _in_root(root: Path, arch: str, log: Path, *cmd: str, bind_proc: bool = False, **env: str) -> None:
    """Runs ``cmd`` in the new root: chroot when it is this machine's architecture, else under
    proot with qemu user-mode emulation (no binfmt_misc needed). For debootstrap nothing of the
    host is bound in: what it mounts there (/proc, /sys) is mounted inside the new root, and its
    unmounts at exit stay there too (a bound /dev would make its ``umount /dev/pts`` the host's).
    ``bind_proc`` (the recipe) binds the host's /proc: Debian's proot (5.1) lets a few newer
    syscalls (faccessat2) see host paths, so update-initramfs finds /proc/mounts readable and
    then fails to open the root's own, empty /proc."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", **env}
    if arch == host_arch():
        _run(["chroot", str(root), *cmd], log, env=env)
        return
    qemu = shutil.which(QEMU_USER[arch])
    if qemu is None:
        raise ImageError(f"{QEMU_USER[arch]} not found: apt-get install qemu-user-static (scripts/setup does)")
    for name in BUILD_NOOPS:
        _write(root, f"{BUILD_BIN}/{name}", f"#!/bin/sh\n# Lab image build under proot: no {name}.\nexit 0\n", 0o755)
    _run(["proot", "-q", qemu, "-r", str(root), *(["-b", "/proc"] if bind_proc else []), "-w", "/", *cmd],
         log, env=env)


def _unmount_below(tree: Path) -> None:
    """Unmounts what an interrupted build left mounted under its own ``tree`` (debootstrap's
    /proc and /sys in the new root), deepest first, so that removing the tree removes only it."""
    for mount_point in sorted(_mounts_below(tree), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False)


def _mounts_below(root: Path) -> list[str]:
    """Mount points under ``root`` (none may be left before the tree is removed)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        return [m for m in (line.split()[1] for line in f) if m.startswith(prefix)]


# ---------------------------------------------------------------- the recipe, as shell


def _put(path: str, text: str, mode: int) -> str:
    """A ``put`` call of :func:`configure_script` writing ``text`` verbatim (quoted heredoc)."""
    if not text.endswith("\n") or "\nLAB_EOF\n" in "\n" + text:
        raise ValueError(f"{path}: text must end with a newline and hold no LAB_EOF line")
    return f"put {shlex.quote(path)} {mode:04o} <<'LAB_EOF'\n{text}LAB_EOF\n"


def configure_script(arch: str, pubkey: str) -> str:
    """The shell script that turns a freshly bootstrapped root into a lab node image, run inside
    that root (:func:`_in_root`: chroot, or proot and qemu for another architecture). One recipe
    for both, so every node has the same first-boot facts (users, keys, units, no identity)."""
    files = [
        ("/etc/hosts", HOSTS, 0o644),
        ("/etc/resolv.conf", RESOLV_CONF, 0o644),
        ("/etc/fstab", FSTAB, 0o644),
        ("/etc/systemd/network/20-lab.network", NETWORK_UNIT, 0o644),
        ("/etc/ssh/sshd_config.d/lab.conf", SSHD_CONF, 0o644),
        ("/usr/local/sbin/lab-firstboot", FIRSTBOOT_SCRIPT, 0o755),
        ("/etc/systemd/system/lab-firstboot.service", FIRSTBOOT_UNIT, 0o644),
    ]
    prune = " ".join(shlex.quote(d) for d in PRUNE_MODULE_DIRS)
    parts = [
        "#!/bin/sh\n",
        f"# Lab node image recipe ({arch}), run inside the image's root as root.\n",
        "set -eu\n",
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive\n",
        "put() { # <path> <octal mode>: stdin to <path>, replacing a file or symlink there\n",
        '  rm -f "$1"; mkdir -p "$(dirname "$1")"; cat >"$1"; chmod "$2" "$1"\n',
        "}\n",
        "# Identity: no hostname, empty machine-id, no host keys; all made per VM at first boot.\n",
        "rm -f /etc/hostname\n",
        ": | put /etc/machine-id 0644\n",
        "if [ -e /var/lib/dbus/machine-id ] || [ -L /var/lib/dbus/machine-id ]; then\n",
        "  rm -f /var/lib/dbus/machine-id; ln -s /etc/machine-id /var/lib/dbus/machine-id\n",
        "fi\n",
        "rm -f /etc/ssh/ssh_host_* /var/lib/systemd/random-seed\n",
        *(_put(path, text, mode) for path, text, mode in files),
        "# Users: root and kube (passwordless sudo), both with the lab key.\n",
        "useradd -m -s /bin/bash kube\n",
        *(
            _put(f"{home}/.ssh/authorized_keys", pubkey.strip() + "\n", 0o600)
            + f"chmod 0700 {home}/.ssh\nchown -R {owner} {home}/.ssh\n"
            for home, owner in (("/root", "0:0"), ("/home/kube", "kube:kube"))
        ),
        _put("/etc/sudoers.d/kube", "kube ALL=(ALL) NOPASSWD: ALL\n", 0o440),
        "systemctl enable systemd-networkd.service lab-firstboot.service containerd.service ssh.service\n",
        "# No swap, ever (the kubelet's failSwapOn).\n",
        "systemctl mask swap.target\n",
        "set -- /boot/vmlinuz-*\n",
        'if [ "$#" -ne 1 ] || [ ! -e "$1" ]; then echo "expected one kernel in the image, found: $*" >&2; exit 1; fi\n',
        'kver=${1#/boot/vmlinuz-}\n',
        "# Kernel module trees no lab VM can use; dropped to keep the disk image small.\n",
        f'for d in {prune}; do rm -rf "/lib/modules/$kver/kernel/$d"; done\n',
        'depmod -a "$kver"\n',
        "# The initrd made by the kernel's postinst already follows the lab settings; rebuilding\n",
        "# here keeps the module list in step with the pruned tree.\n",
        'update-initramfs -u -k "$kver"\n',
        "apt-get clean\n",
        "for d in /var/lib/apt/lists /usr/share/doc /usr/share/man /usr/share/info; do\n",
        '  find "$d" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +\n',
        "done\n",
        'echo "LAB-KERNEL $kver"\n',
    ]
    return "".join(parts)


# ---------------------------------------------------------------- an emulated image's initramfs


def module_depends(ko: Path) -> list[str]:
    """The ``depends=`` of a kernel module's modinfo (module names, underscores)."""
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko.read_bytes())
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d] if m else []


def module_closure(moddir: Path, names: list[str]) -> list[Path]:
    """The module files for ``names`` and everything they depend on, dependencies first."""
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise ImageError(f"kernel module {name} is not in {moddir}")
        for dep in module_depends(index[name]):
            visit(dep)
        order.append(index[name])

    for n in names:
        visit(n)
    return order


def cpio_newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """An initramfs archive (cpio "newc") of (name, st_mode, data, rdev major<<8|minor) entries."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], start=1):
        namez = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(namez), 0)
        out.extend(b"070701" + "".join(f"{v:08X}" for v in fields).encode() + namez)
        pad()
        out.extend(data)
        pad()
    return bytes(out)


def package_stanza(packages_file: Path, name: str) -> dict[str, str]:
    """One package's fields from an apt ``Packages`` index."""
    for stanza in re.split(r"\n\n+", packages_file.read_text(errors="replace")):
        if re.search(rf"^Package: {re.escape(name)}$", stanza, re.M):
            return dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
    raise ImageError(f"package {name} not in {packages_file}")


def _fetch_busybox(root: Path, arch: str, mirror: str, work: Path, log: Path) -> Path:
    """Debian's static busybox for ``arch``, checked against the ``Packages`` index that
    debootstrap fetched and verified (signed Release) into the new root; returns the binary."""
    lists = sorted((root / "var/lib/apt/lists").glob(f"*_dists_{SUITE}_main_binary-{arch}_Packages"))
    if len(lists) != 1:
        raise ImageError(f"expected one {SUITE} main {arch} Packages index from debootstrap, found {lists}")
    fields = package_stanza(lists[0], BUSYBOX_PACKAGE)
    with urllib.request.urlopen(f"{mirror}/{fields['Filename']}", timeout=300) as r:
        data = r.read()
    if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
        raise ImageError(f"{BUSYBOX_PACKAGE}: sha256 of the download differs from the Packages index; try again")
    deb = work / Path(fields["Filename"]).name
    deb.write_bytes(data)
    tree = work / "busybox"
    _run(["dpkg-deb", "-x", str(deb), str(tree)], log)
    busybox = next((p for p in (tree / "bin/busybox", tree / "usr/bin/busybox") if p.is_file()), None)
    if busybox is None:
        raise ImageError(f"{BUSYBOX_PACKAGE} has no busybox binary")
    return busybox


def boot_initramfs(busybox: bytes, modules: list[Path]) -> bytes:
    """The initrd of an emulated image: BOOT_INIT, busybox and ``modules`` (in load order)."""
    d, f, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    entries: list[tuple[str, int, bytes, int]] = [
        (n, d, b"", 0) for n in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")
    ]
    entries += [
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5 << 8) | 1),
        ("init", x, BOOT_INIT.encode(), 0),
        ("bin/busybox", x, busybox, 0),
        ("modules", f, "".join(m.name + "\n" for m in modules).encode(), 0),
        *((f"lib/modules/{m.name}", f, m.read_bytes(), 0) for m in modules),
    ]
    return cpio_newc(entries)


def _bootstrap(img: Image, root: Path, work: Path, log: Path, mirror: str, pub: str,
               progress: Progress, t0: float) -> str:
    """debootstrap and the recipe in ``root``; leaves vmlinuz, initrd.img and root.raw in
    ``work``; returns the kernel version."""
    arch, native = img.arch, img.arch == host_arch()
    include = "--include=" + ",".join(packages(arch))
    if native:
        progress(f"image {img.recipe_hash}: debootstrap {SUITE} minbase ({len(packages(arch))} extra packages)")
        _run(["debootstrap", "--variant=minbase", include, SUITE, str(root), mirror], log)
    else:
        progress(f"image {img.recipe_hash}: debootstrap --foreign {SUITE} {arch} minbase "
                 f"({len(packages(arch))} extra packages)")
        _run(["debootstrap", "--foreign", f"--arch={arch}", "--variant=minbase", include, SUITE, str(root), mirror],
             log)
        progress(f"image: first stage done ({progress.elapsed() - t0:.0f}s); second stage under "
                 f"{QEMU_USER[arch]} (proot)")
        _in_root(root, arch, log, "/debootstrap/debootstrap", "--second-stage", DEBOOTSTRAP_DIR="/debootstrap")
        # Before the recipe empties /var/lib/apt/lists: the index the download is checked against.
        busybox = _fetch_busybox(root, arch, mirror, work, log)
    progress(f"image: debootstrap done ({progress.elapsed() - t0:.0f}s); configuring")
    _write(root, "/tmp/lab-configure", configure_script(arch, pub), 0o755)
    _in_root(root, arch, log, "/bin/sh", "/tmp/lab-configure", bind_proc=True)
    (root / "tmp/lab-configure").unlink()
    if not native:
        for name in BUILD_NOOPS:
            (root / BUILD_BIN.lstrip("/") / name).unlink()
    left = _mounts_below(root)
    if left:
        raise ImageError(f"still mounted in the new root: {left}; umount them, then build again")
    kver = sorted(p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*"))
    if len(kver) != 1:
        raise ImageError(f"expected one kernel in the image, found {kver}")
    shutil.copy2(root / "boot" / f"vmlinuz-{kver[0]}", work / "vmlinuz")
    if native:
        shutil.copy2(root / "boot" / f"initrd.img-{kver[0]}", work / "initrd.img")
    else:
        modules = module_closure(root / "lib/modules" / kver[0], INITRD_MODULES[arch])
        (work / "initrd.img").write_bytes(boot_initramfs(busybox.read_bytes(), modules))
        shutil.rmtree(work / "busybox")
    progress(f"image: configured; mkfs.ext4 -d ({progress.elapsed() - t0:.0f}s)")
    _run(["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", str(root), str(work / "root.raw"), DISK_SIZE], log)
    shutil.rmtree(root)
    return kver[0]


@contextlib.contextmanager
def _build_lock(arch: str) -> Iterator[None]:
    """One build per architecture at a time (two layouts, a test and the CLI): a second caller
    waits, then finds the image built instead of removing the first one's work tree."""
    images_dir(arch).mkdir(parents=True, exist_ok=True)
    with open(images_dir(arch) / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(progress: Progress | None = None, force: bool = False, arch: str = "amd64") -> Image:
    """Builds the image for ``arch`` if this recipe has none yet; returns it."""
    progress = progress or Progress()
    with _build_lock(arch):
        return _build(progress, force, arch)


def _build(progress: Progress, force: bool, arch: str) -> Image:
    img = current(arch)
    if is_built(img) and not force:
        progress(f"image {img.recipe_hash} ({arch}) cached in {img.dir}")
        return img
    if os.geteuid() != 0:
        raise ImageError("building the lab image needs root (debootstrap, chroot)")
    tools = ["debootstrap", "mkfs.ext4", "qemu-img"] + (["chroot"] if arch == host_arch() else ["proot", "dpkg-deb"])
    for tool in tools:
        if not shutil.which(tool):
            raise ImageError(f"{tool} not found: apt-get install debootstrap e2fsprogs qemu-utils proot "
                             "qemu-user-static (scripts/setup does)")
    pub = paths.key_path().with_suffix(".pub").read_text().strip()
    work = images_dir(arch) / f".build-{img.recipe_hash}"
    if work.exists():
        _unmount_below(work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    root = work / "root"
    log = work / "build.log"
    mirror = debian_mirror_url()
    t0 = progress.elapsed()

    # Lab initramfs settings go in before debootstrap, so the kernel's postinst makes the small
    # initrd right away (conf.d and hooks are not package conffiles).
    _write(root, "/etc/initramfs-tools/conf.d/lab.conf", INITRAMFS_CONF)
    _write(root, "/etc/initramfs-tools/hooks/lab-modules", initramfs_hook(arch), 0o755)
    kver = _bootstrap(img, root, work, log, mirror, pub, progress, t0)
    raw = work / "root.raw"
    os.chmod(raw, 0o444)
    recipe: dict[str, Any] = {
        "hash": img.recipe_hash,
        "arch": arch,
        "suite": SUITE,
        "kernel": kver,
        "packages": packages(arch),
        "initrd_modules": INITRD_MODULES[arch],
        "initrd": "Debian's (update-initramfs)" if arch == host_arch() else "the lab's (busybox, BOOT_INIT)",
        "initrd_bytes": (work / "initrd.img").stat().st_size,
        "build_seconds": round(progress.elapsed() - t0, 1),
    }
    (work / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    if img.dir.exists():
        shutil.rmtree(img.dir)
    work.rename(img.dir)
    # Older recipes' images of this arch are not needed any more.
    for other in images_dir(arch).iterdir():
        if other.is_dir() and other.name != img.recipe_hash and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    progress(
        f"image {img.recipe_hash} ({arch}) built in {recipe['build_seconds']}s "
        f"(kernel {kver}, initrd {recipe['initrd_bytes'] // 1024} KiB)"
    )
    return img
