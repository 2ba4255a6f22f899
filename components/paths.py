"""Where things live on a node. One place, so scripts, units and configs never disagree."""

from __future__ import annotations

KUBELET_BINARY = "/usr/bin/kubelet"
CA_CERT = "/var/lib/kubernetes/ca.pem"
KUBELET_DIR = "/var/lib/kubelet"
KUBELET_CONFIG = f"{KUBELET_DIR}/kubelet-config.yaml"
KUBECONFIG = f"{KUBELET_DIR}/kubeconfig"
SYSTEMD_DIR = "/etc/systemd/system"
KUBELET_UNIT = f"{SYSTEMD_DIR}/kubelet.service"
CGROUP_HELPER = "/usr/local/libexec/homelab-kubelet/prepare-cgroups"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
# crictl's default configuration file: the runtime endpoint, so `crictl ps` works as written.
CRICTL_CONFIG = "/etc/crictl.yaml"
# Written by this program, so a later run (and `pulumi destroy`) can tell ours from the user's.
STATE_DIR = "/var/lib/homelab-kubelet"
# One count per step: how many Pulumi resources hold the step on the node (node_scripts).
HOLDERS_DIR = f"{STATE_DIR}/holders"
# Per path a step writes: whether the project created it or what it replaced (lib.sh, records).
OWNED_DIR = f"{STATE_DIR}/owned"
# Held (flock) by each writing step, so two runs never interleave on one node.
LOCK_FILE = f"{STATE_DIR}/lock"
# What the running kubelet was started on, so a rerun restarts it only for a real change.
KUBELET_RECORD = f"{STATE_DIR}/kubelet-running"


# What the node-address step reads to find the address the kubelet picks: the default routes.
ROUTE_FILE = "/proc/net/route"
IPV6_ROUTE_FILE = "/proc/net/ipv6_route"
# What preflight's warnings read: the cgroup controllers the kernel enabled, the board (a Raspberry
# Pi's kernel command line lives in cmdline.txt: Bookworm's path first, then older releases'), and
# the inotify limit.
PROC_CGROUPS = "/proc/cgroups"
DEVICE_TREE_MODEL = "/proc/device-tree/model"
RPI_CMDLINE_FILES = ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt")
INOTIFY_MAX_USER_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"


def node_cert(node_name: str) -> str:
    return f"{KUBELET_DIR}/{node_name}.pem"


def node_key(node_name: str) -> str:
    return f"{KUBELET_DIR}/{node_name}-key.pem"


def slice_unit(slice_name: str) -> str:
    return f"{SYSTEMD_DIR}/{slice_name}"


def slice_dropin(slice_name: str) -> str:
    return f"{SYSTEMD_DIR}/{slice_name}.d/10-homelab-kubelet-reserved.conf"


CONTAINERD_DROPIN = f"{SYSTEMD_DIR}/containerd.service.d/10-homelab-kubelet-slice.conf"
