"""Node allocatable = capacity - systemReserved - kubeReserved - evictionHard (the runbook's table)."""

from __future__ import annotations

import json
from typing import Any

from components.quantities import to_bytes, to_millicores
from components.settings import Reservations


def _mi(value: int) -> str:
    return f"{value // 2**20}Mi"


def allocatable(reservations: Reservations, cpus: int, memory_bytes: int) -> dict[str, Any]:
    """Allocatable CPU and memory for a node of the given capacity, with the arithmetic shown."""
    system, kube = reservations.system_reserved, reservations.kube_reserved
    system_cpu = to_millicores(system.cpu) if system.cpu else 0
    kube_cpu = to_millicores(kube.cpu) if kube.cpu else 0
    system_memory = to_bytes(system.memory) if system.memory else 0
    kube_memory = to_bytes(kube.memory) if kube.memory else 0
    threshold = reservations.eviction_hard.get("memory.available", "0")
    if threshold.endswith("%"):
        eviction_memory = int(memory_bytes * float(threshold[:-1]) / 100)
    else:
        eviction_memory = to_bytes(threshold)
    capacity_cpu = cpus * 1000
    cpu = max(0, capacity_cpu - system_cpu - kube_cpu)
    memory = max(0, memory_bytes - system_memory - kube_memory - eviction_memory)
    return {
        "cpu": f"{cpu}m",
        "memory": _mi(memory),
        "cpuFormula": f"{capacity_cpu}m - {system_cpu}m - {kube_cpu}m = {cpu}m",
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
