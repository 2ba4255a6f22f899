"""What the lab checks call a healthy kubelet and a healthy node, as pure decisions on what they
observed (so they can be unit-tested without a lab: tests/test_lab_health.py).

A kubelet is healthy when its unit is `active` (not `activating`: that is a start in progress or
an automatic restart after a crash), /healthz answers `ok`, and both still hold after a settle
window in which systemd counted no restart (`NRestarts` unchanged). The first `/healthz ok` alone
is not enough: a kubelet can answer it and exit a moment later (a fatal error after startup).
"""

from __future__ import annotations

from dataclasses import dataclass

#: How long a kubelet must stay up after its first `/healthz ok` (seconds).
SETTLE_SECONDS = 5.0

#: `systemctl show` properties a sample reads.
SHOW_PROPERTIES = ("ActiveState", "NRestarts")


@dataclass(frozen=True)
class UnitSample:
    """One look at a kubelet unit: systemd's ActiveState and NRestarts, and /healthz's body."""

    active_state: str
    n_restarts: int
    healthz: str


def show_command(unit: str) -> str:
    """The shell command whose output `parse_show` reads."""
    return "systemctl show " + " ".join(f"-p {name}" for name in SHOW_PROPERTIES) + f" {unit}"


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A -p B UNIT` output (`A=value` lines) as a dict."""
    properties = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            properties[name.strip()] = value.strip()
    return properties


def sample(show_output: str, healthz: str) -> UnitSample:
    properties = parse_show(show_output)
    missing = [name for name in SHOW_PROPERTIES if name not in properties]
    if missing:
        raise ValueError(f"systemctl show gave no {', '.join(missing)}: {show_output!r}")
    return UnitSample(properties["ActiveState"], int(properties["NRestarts"]), healthz.strip())


def is_running(active_state: str) -> bool:
    """Only `active` is running; `activating` (starting, or auto-restarting) is not."""
    return active_state == "active"


def is_healthy(first: UnitSample, settled: UnitSample) -> bool:
    """Healthy at the first `/healthz ok` (`first`) and still after the settle window (`settled`),
    with no restart in between."""
    return (
        all(is_running(s.active_state) and s.healthz == "ok" for s in (first, settled))
        and settled.n_restarts == first.n_restarts
    )


def system_is_running(state: str) -> bool:
    """`systemctl is-system-running --wait`: only `running` is healthy; `degraded` means a unit
    failed, which a node under test must not have."""
    return state.strip() == "running"
