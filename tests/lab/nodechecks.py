"""Checks shared by the v2 and v1 test modules (each test takes the LabInfo of its mode)."""

from __future__ import annotations

import hashlib
import re
import urllib.request

from lab import api, health, mirror, paths


def check_ssh_root_and_kube(info: api.LabInfo) -> None:
    for n in info.nodes:
        r = api.ssh(n.name, "id -un", user="root", check=True)
        assert r.stdout.strip() == "root"
        r = api.ssh(n.name, "id -un && sudo -n true && sudo -n id -u", user="kube")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["kube", "0"]


def check_password_login_refused(info: api.LabInfo) -> None:
    n = info.nodes[0]
    r = api.ssh(n.name, "sshd -T | grep -Ei '^(passwordauthentication|permitrootlogin|kbdinteractiveauthentication) '")
    conf = dict(line.split(None, 1) for line in r.stdout.strip().splitlines())
    assert conf == {
        "permitrootlogin": "without-password",  # sshd -T spells prohibit-password this way
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
    }


def check_systemd_pid1(info: api.LabInfo) -> None:
    for n in info.nodes:
        r = api.ssh(n.name, "cat /proc/1/comm; readlink /proc/1/exe; systemctl is-system-running --wait || true",
                    check=True)
        comm, exe, state = r.stdout.split()[:3]
        assert comm == "systemd"
        assert exe.endswith("/systemd")
        # Strict: `degraded` (a failed unit) is not accepted (lab/health.py).
        assert health.system_is_running(state), r.stdout + api.ssh(n.name, "systemctl --failed --no-pager").stdout


def check_containerd(info: api.LabInfo) -> None:
    for n in info.nodes:
        r = api.ssh(n.name, "systemctl is-active containerd; test -S /run/containerd/containerd.sock && echo socket")
        assert r.stdout.split() == ["active", "socket"], r.stdout + r.stderr


def check_identities(info: api.LabInfo) -> None:
    hostnames, mids, keys = {}, {}, {}
    for n in info.nodes:
        r = api.ssh(n.name, "hostname; cat /etc/machine-id; cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub",
                    check=True)
        h, mid, key = r.stdout.strip().splitlines()
        hostnames[n.name], mids[n.name], keys[n.name] = h, mid, key
        # The host key the lab pinned (read from the VM's serial console) is the one sshd uses.
        assert key in n.host_keys
        assert mid == n.machine_id
    assert hostnames == {n: n for n in paths.NODE_NAMES}
    assert len(set(mids.values())) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", m) for m in mids.values())
    assert len(set(keys.values())) == 3


def check_no_swap_and_network(info: api.LabInfo) -> None:
    for n in info.nodes:
        r = api.ssh(n.name, "tail -n +2 /proc/swaps | wc -l; ip -4 -o addr show scope global | awk '{print $4}'",
                    check=True)
        swaps, addr = r.stdout.split()
        assert swaps == "0"
        assert addr == f"{paths.GUEST_IP}/24"


def check_guest_fetches_from_mirror(info: api.LabInfo) -> None:
    root = paths.mirror_root()
    mirror.sync(log=lambda _m: None)
    want = (root / (mirror.PROBE_REL + ".sha256")).read_text().strip()
    for n in info.nodes:
        r = api.ssh(n.name, f"curl -fsS {info.mirror_url_guest}/{mirror.PROBE_REL} | sha256sum; "
                            f"curl -fsS {info.mirror_url_guest}/{mirror.PROBE_REL}.sha256")
        assert r.returncode == 0, r.stderr
        got, published = r.stdout.split()[0], r.stdout.split()[-1]
        assert got == want == published


def check_host_mirror_serves_real_kubelets(info: api.LabInfo) -> None:
    """Every verified toolchain build is on the running mirror at the official path."""
    for pub in mirror.sync(log=lambda _m: None):
        with urllib.request.urlopen(f"{info.mirror_url_host}{pub.url_path}.sha256", timeout=30) as resp:
            assert resp.read().decode() == pub.sha256
        h = hashlib.sha256()
        with urllib.request.urlopen(f"{info.mirror_url_host}{pub.url_path}", timeout=120) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
        assert h.hexdigest() == pub.sha256
