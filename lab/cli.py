"""``python -m lab up [--arm64] [--cgroup v1|v2] [--no-control-plane] | down [--arm64] | status [--arm64] |
ssh NAME [cmd...] | kubectl ARGS... | ca cert|key | image [--arm64] | mirror ...``

``--arm64``: the arm64 layout (one emulated aarch64 node, k8s-node3 on 127.0.0.1:2224, stack
lab-arm64) instead of the three amd64 nodes; the two run side by side. The control plane is the
three-node lab's (``up`` starts it, ``--no-control-plane`` stops it); k8s-node3 registers with it
whenever it runs."""

from __future__ import annotations

import argparse
import os
import sys

from lab import api, image, mirror, paths
from lab import control_plane as control_plane_mod


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="build the image if needed, boot the three VMs (or the arm64 node), the mirror "
                                  "and (three-node lab) the control plane")
    u.add_argument("--cgroup", choices=paths.CGROUP_MODES, default="v2")
    u.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for SSH (default: api.BOOT_TIMEOUT, per arch)")
    u.add_argument("--no-control-plane", action="store_true",
                   help="no API server: do not start the control plane (and stop a running one); not with --arm64")
    d = sub.add_parser("down", help="stop the VMs and the mirror server that `up` started (three-node lab: "
                                    "and the control plane)")
    st = sub.add_parser("status", help="show what runs")
    s = sub.add_parser("ssh", help="ssh to a node")
    s.add_argument("--user", default="root")
    s.add_argument("name", choices=paths.ALL_NODE_NAMES)
    s.add_argument("command", nargs=argparse.REMAINDER)
    k = sub.add_parser("kubectl", help="kubectl (the toolchain's) with the control plane's admin kubeconfig")
    k.add_argument("args", nargs=argparse.REMAINDER)
    c = sub.add_parser("ca", help="print the lab cluster's CA (made if missing), as the lab stack imports it")
    c.add_argument("part", choices=["cert", "key"], help="cert: caCertPem; key: caKeyPem")
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
            info = api.up(cgroup=a.cgroup, timeout=a.timeout, layout=layout, control_plane=not a.no_control_plane)
            print(api.table(info))
            if info.control_plane is not None:
                print(f"admin kubeconfig: {info.control_plane.admin_kubeconfig}")
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
        elif a.cmd == "kubectl":
            lab_state = api.status()
            if lab_state is None or lab_state.control_plane is None:
                print("lab: error: no control plane runs (python -m lab up)", file=sys.stderr)
                return 3
            cp = lab_state.control_plane
            os.execv(str(cp.kubectl), [str(cp.kubectl), f"--kubeconfig={cp.admin_kubeconfig}", *a.args])
        elif a.cmd == "ca":
            cert, key = control_plane_mod.lab_pki().ca_pems()
            sys.stdout.write(cert if a.part == "cert" else key)
        elif a.cmd == "image":
            img = image.build(force=a.force, arch=layout.arch)
            print(img.dir)
        elif a.cmd == "mirror":
            if a.action == "path":
                print(paths.mirror_root())
                return 0
            with mirror.locked():
                pubs = mirror.sync() if a.action == "sync" else mirror.sync(log=lambda _m: None)
            for pub in pubs:
                print(f"{paths.MIRROR_URL_GUEST}{pub.url_path}  sha256 {pub.sha256}")
            if not pubs:
                print(f"no verified kubelet build under {paths.kubelet_builds()} (run scripts/toolchain kubelet)")
    except (api.LabError, image.ImageError, control_plane_mod.ControlPlaneError, RuntimeError, ValueError) as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
    return 0
