"""Kubernetes resource quantities (`256Mi`, `1024m`, `1.5Gi`), parsed the way the kubelet does.

Only the forms a reservation can sensibly use are accepted: a decimal number with an optional
binary (Ki..Ei), decimal (k..E) or milli (m) suffix. `256MB` is the classic mistake: the kubelet
rejects it, and so do we, before any node is touched.
"""

from __future__ import annotations

import re
from decimal import Decimal

QUANTITY_PATTERN = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")

_MULTIPLIERS: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity in base units (bytes, cores); raises ValueError when malformed."""
    match = QUANTITY_PATTERN.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity (examples: 256Mi, 1Gi, 500m, 2)"
        )
    return Decimal(match["number"]) * _MULTIPLIERS[match["suffix"] or ""]


def to_bytes(text: str) -> int:
    """A memory/storage quantity in whole bytes (rounded up, as the kubelet does)."""
    value = parse_quantity(text)
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def to_millicores(text: str) -> int:
    """A CPU quantity in millicores (`1` -> 1000, `256m` -> 256)."""
    value = parse_quantity(text) * 1000
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def quantity_text(value: Decimal) -> str:
    """A byte count as a quantity the kubelet reads back to exactly `value`: whole Mi where it
    is one, else the plain number."""
    if value == value.to_integral_value() and value % 2**20 == 0:
        return f"{int(value) // 2**20}Mi"
    return format(value.normalize(), "f")


_BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def format_bytes(value: int) -> str:
    """Bytes as Kubernetes prints a memory quantity (resource.Quantity, binary SI, canonical):
    the largest binary suffix that keeps the number whole (`606212Ki`, `592Mi`, `2Gi`), plain
    bytes when none does; below 1024 decimal (`0`, `512`). What `kubectl get node` shows."""
    if abs(value) < 1024:
        return "1k" if value == 1000 else str(value)
    number, suffix = value, ""
    for candidate in _BINARY_SUFFIXES:
        if number % 1024:
            break
        number, suffix = number // 1024, candidate
    return f"{number}{suffix}"


def format_millicores(value: int) -> str:
    """Millicores as Kubernetes prints a CPU quantity: whole cores without a suffix (`2`), else
    millicores (`1800m`)."""
    return str(value // 1000) if value % 1000 == 0 else f"{value}m"


def cpu_shares(millicores: int) -> int:
    """cgroup v1 cpu.shares the kubelet writes for a CPU reservation (MilliCPUToShares)."""
    return max(2, millicores * 1024 // 1000)


def cpu_weight(millicores: int) -> int:
    """cgroup v2 cpu.weight for the same reservation (runc's shares -> weight conversion)."""
    shares = cpu_shares(millicores)
    return 1 + ((shares - 2) * 9999) // 262142
