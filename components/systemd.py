"""Render the systemd units: kubelet.service, the reserved slices and the containerd drop-in.

The reservations are declared to systemd as well as to the kubelet: on cgroup v1 a
`systemctl daemon-reload` rewrites the limits of every unit it knows (wiping what the kubelet
wrote), and on cgroup v2 a kubelet with the systemd driver may write them to another cgroup.
With the limits in the units, systemd itself keeps them in place.
"""

from __future__ import annotations

from components import paths
from components.kubelet_config import kubelet_flags
from components.quantities import cpu_weight, to_bytes, to_millicores
from components.settings import NodeSettings, ResourceReservation, Settings, unit_word_problem

GENERATED = "# Rendered by homelab-kubelet; changes here are overwritten by `pulumi up`.\n"


def exec_words(words: list[str]) -> list[str]:
    """`words` as they go into an Exec line, each checked to be one literal systemd word (the
    settings refuse such values first; this keeps any that slip through out of the unit)."""
    for word in words:
        problem = unit_word_problem(word)
        if problem:
            raise ValueError(f"{word!r} cannot be one word of kubelet.service's ExecStart: {problem}")
    return words


def render_kubelet_unit(settings: Settings, node: NodeSettings) -> str:
    reservations = node.reservations
    flags = " \\\n  ".join(exec_words([paths.KUBELET_BINARY, *kubelet_flags(settings, node)]))
    return (
        GENERATED
        + "[Unit]\n"
        "Description=Kubernetes Kubelet\n"
        "Documentation=https://github.com/kubernetes/kubernetes\n"
        "After=containerd.service\n"
        "Requires=containerd.service\n"
        "\n"
        "[Service]\n"
        # kubeletCgroups=/kube.slice/kubelet.service is then simply true.
        f"Slice={reservations.kube_reserved_slice}\n"
        # The helper looks at the node's cgroup version at every start: /sys/fs/cgroup is
        # rebuilt at boot, and the same unit serves v1 and v2 nodes.
        "ExecStartPre="
        + " ".join(exec_words([paths.CGROUP_HELPER, reservations.kube_reserved_slice,
                               reservations.system_reserved_slice]))
        + "\n"
        f"ExecStart={flags}\n"
        "Restart=always\n"
        "RestartSec=5\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _limits(reservation: ResourceReservation) -> str:
    lines = ""
    if reservation.memory is not None:
        lines += f"MemoryAccounting=yes\nMemoryMax={to_bytes(reservation.memory)}\n"
    if reservation.cpu is not None:
        # The weight the kubelet derives from the same millicores (cgroup v2 cpu.weight).
        lines += f"CPUAccounting=yes\nCPUWeight={cpu_weight(to_millicores(reservation.cpu))}\n"
    if reservation.pid is not None:
        lines += f"TasksAccounting=yes\nTasksMax={reservation.pid}\n"
    return lines


def render_slice(slice_name: str, description: str, reservation: ResourceReservation,
                 enforced: bool) -> str:
    """A slice unit (or a drop-in for systemd's own system.slice) carrying the limits."""
    limits = _limits(reservation) if enforced else ""
    if slice_name == "system.slice":
        return GENERATED + "[Slice]\n" + limits
    return (
        GENERATED
        + "[Unit]\n"
        f"Description={description}\n"
        "Before=slices.target\n"
        "\n"
        "[Slice]\n" + limits
    )


def slice_path(slice_name: str) -> str:
    if slice_name == "system.slice":
        return paths.slice_dropin(slice_name)
    return paths.slice_unit(slice_name)


def render_containerd_dropin(node: NodeSettings) -> str:
    # runtimeCgroups=/kube.slice/containerd.service is then simply true.
    return GENERATED + f"[Service]\nSlice={node.reservations.kube_reserved_slice}\n"


def unit_files(settings: Settings, node: NodeSettings) -> dict[str, str]:
    """Every systemd file the node gets, path -> content."""
    reservations = node.reservations
    enforced = set(reservations.enforce_node_allocatable)
    return {
        paths.KUBELET_UNIT: render_kubelet_unit(settings, node),
        slice_path(reservations.kube_reserved_slice): render_slice(
            reservations.kube_reserved_slice,
            "Kubernetes node daemons (kubelet, container runtime): kubeReserved",
            reservations.kube_reserved,
            "kube-reserved" in enforced,
        ),
        slice_path(reservations.system_reserved_slice): render_slice(
            reservations.system_reserved_slice,
            "Operating system daemons: systemReserved",
            reservations.system_reserved,
            "system-reserved" in enforced,
        ),
        paths.CONTAINERD_DROPIN: render_containerd_dropin(node),
    }
