"""``python -m lab up [--arm64] [--cgroup v1|v2] | down [--arm64] | status [--arm64] | ssh NAME [cmd...] |
image [--arm64] | mirror ...``

``--arm64``: the arm64 layout (one emulated aarch64 node, k8s-node3 on 127.0.0.1:2224, stack
lab-arm64) instead of the three amd64 nodes; the two run side by side."""

from __future__ import annotations

import argparse
import os
import sys

from lab import api, image, mirror, paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="build the image if needed, boot the three VMs (or the arm64 node) and the mirror")
    u.add_argument("--cgroup", choices=paths.CGROUP_MODES, default="v2")
    u.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for SSH (default: api.BOOT_TIMEOUT, per arch)")
    d = sub.add_parser("down", help="stop the VMs and the mirror server that `up` started")
    st = sub.add_parser("status", help="show what runs")
    s = sub.add_parser("ssh", help="ssh to a node")
    s.add_argument("--user", default="root")
    s.add_argument("name", choices=paths.ALL_NODE_NAMES)
    s.add_argument("command", nargs=argparse.REMAINDER)
    i = sub.add_parser("image", help="build the node image (cached)")
    i.add_argument("--force", action="store_true")
    for sp in (u, d, st, i):
        sp.add_argument("--arm64", action="store_true", help="the arm64 layout (k8s-node3, stack lab-arm64)")
    m = sub.add_parser("mirror", help="kubelet mirror helpers")
    m.add_argument("action", choices=["sync", "list", "path"], help="sync: publish the toolchain's kubelet builds")
    a = p.parse_args(argv)

    try:
        layout = paths.ARM64 if getattr(a, "arm64", False) else paths.LAB
        if a.cmd == "up":
            info = api.up(cgroup=a.cgroup, timeout=a.timeout, layout=layout)
            print(api.table(info))
        elif a.cmd == "down":
            api.down(layout=layout)
        elif a.cmd == "status":
            state = api.status(layout)
            if state is None:
                print("lab is not up")
                return 3
            print(api.table(state))
            return 0 if all(api.health(state).values()) else 1
        elif a.cmd == "ssh":
            argv_ = api.ssh_argv(a.name, a.user, tty=not a.command and sys.stdin.isatty())
            if a.command:
                argv_ += ["--", " ".join(a.command)]
            os.execvp(argv_[0], argv_)
        elif a.cmd == "image":
            img = image.build(force=a.force, arch=layout.arch)
            print(img.dir)
        elif a.cmd == "mirror":
            if a.action == "path":
                print(paths.mirror_root())
                return 0
            pubs = mirror.sync() if a.action == "sync" else mirror.sync(log=lambda _m: None)
            for pub in pubs:
                print(f"{paths.MIRROR_URL_GUEST}{pub.url_path}  sha256 {pub.sha256}")
            if not pubs:
                print(f"no verified kubelet build under {paths.kubelet_builds()} (run scripts/toolchain kubelet)")
    except (api.LabError, image.ImageError, RuntimeError, ValueError) as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
    return 0
