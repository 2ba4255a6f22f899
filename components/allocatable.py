"""Node allocatable = capacity - systemReserved - kubeReserved - evictionHard (the runbook's table).

The evictionHard memory threshold is the one the kubelet runs with: the stack's
`memory.available` or, without one, the kubelet's default (`Reservations.eviction_thresholds`).
"""

from __future__ import annotations

import json
from typing import Any

from components.quantities import format_bytes, format_millicores, to_bytes, to_millicores
from components.settings import Reservations


def _mi(value: int) -> str:
    return f"{value // 2**20}Mi"


def reserved_millicores(reservations: Reservations) -> int:
    """systemReserved + kubeReserved cpu."""
    return sum(
        to_millicores(reservation.cpu)
        for reservation in (reservations.system_reserved, reservations.kube_reserved)
        if reservation.cpu is not None
    )


def fixed_reserved_memory_bytes(reservations: Reservations) -> int:
    """systemReserved + kubeReserved memory, plus evictionHard memory.available when absolute."""
    total = sum(
        to_bytes(reservation.memory)
        for reservation in (reservations.system_reserved, reservations.kube_reserved)
        if reservation.memory is not None
    )
    threshold = reservations.eviction_thresholds.get("memory.available", "0")
    return total if threshold.endswith("%") else total + to_bytes(threshold)


def eviction_basis_points(reservations: Reservations) -> int:
    """evictionHard memory.available as a share of capacity in 1/10000 (0 when absolute)."""
    threshold = reservations.eviction_thresholds.get("memory.available", "0")
    return round(float(threshold[:-1]) * 100) if threshold.endswith("%") else 0


def reserved_memory_bytes(reservations: Reservations, memory_bytes: int) -> int:
    """Everything taken from a node's memory before pods: the one formula (preflight uses it too)."""
    return fixed_reserved_memory_bytes(reservations) + memory_bytes * eviction_basis_points(reservations) // 10000


def allocatable(reservations: Reservations, cpus: int, memory_bytes: int) -> dict[str, Any]:
    """Allocatable CPU and memory for a node of the given capacity, with the arithmetic shown.
    `cpu` and `memory` are exact and written as the kubelet reports them in the Node's
    status.allocatable (`1800m`, `606212Ki`)."""
    system, kube = reservations.system_reserved, reservations.kube_reserved
    system_cpu = to_millicores(system.cpu) if system.cpu else 0
    kube_cpu = to_millicores(kube.cpu) if kube.cpu else 0
    system_memory = to_bytes(system.memory) if system.memory else 0
    kube_memory = to_bytes(kube.memory) if kube.memory else 0
    eviction_memory = reserved_memory_bytes(reservations, memory_bytes) - system_memory - kube_memory
    capacity_cpu = cpus * 1000
    cpu = max(0, capacity_cpu - reserved_millicores(reservations))
    memory = max(0, memory_bytes - reserved_memory_bytes(reservations, memory_bytes))
    return {
        "cpu": format_millicores(cpu),
        "memory": format_bytes(memory),
        "cpuFormula": f"{capacity_cpu}m - {system_cpu}m - {kube_cpu}m = {cpu}m",
        # The arithmetic in whole Mi (rounded down), for people; `memory` is the exact value.
        "memoryFormula": (
            f"{_mi(memory_bytes)} - {_mi(system_memory)} - {_mi(kube_memory)} - "
            f"{_mi(eviction_memory)} = {_mi(memory)}"
        ),
    }


def node_summary_from_facts(facts_json: str, reservations: Reservations) -> dict[str, Any]:
    """Preflight's JSON facts plus the allocatable table derived from them."""
    facts = json.loads(facts_json)
    return {
        "facts": facts,
        "allocatable": allocatable(reservations, int(facts["cpus"]), int(facts["memoryBytes"])),
    }
