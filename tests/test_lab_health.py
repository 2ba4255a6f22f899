"""The lab's healthy-kubelet and healthy-node decisions (lab/health.py), on observed states.

The lab checks themselves (tests/lab) need the VMs; what they decide from what they saw does not.
"""

from __future__ import annotations

import pytest

from lab import health

OK = health.UnitSample("active", 0, "ok")


def test_a_kubelet_active_and_ok_through_the_settle_window_is_healthy() -> None:
    assert health.is_healthy(OK, OK)
    assert health.is_healthy(health.UnitSample("active", 2, "ok"), health.UnitSample("active", 2, "ok"))


@pytest.mark.parametrize(
    ("first", "settled", "why"),
    [
        (health.UnitSample("activating", 0, "ok"), OK, "activating at the first ok"),
        (OK, health.UnitSample("activating", 0, "ok"), "activating after the settle window (auto-restart)"),
        (OK, health.UnitSample("failed", 0, ""), "exited during the settle window"),
        (OK, health.UnitSample("inactive", 0, ""), "gone during the settle window"),
        (OK, health.UnitSample("active", 1, "ok"), "restarted during the settle window"),
        (OK, health.UnitSample("active", 0, ""), "/healthz stopped answering"),
        (health.UnitSample("active", 0, "not ok"), OK, "/healthz was not ok"),
    ],
)
def test_anything_less_is_not_healthy(first: health.UnitSample, settled: health.UnitSample, why: str) -> None:
    assert not health.is_healthy(first, settled), why


def test_only_active_counts_as_running() -> None:
    assert health.is_running("active")
    for state in ("activating", "deactivating", "reloading", "failed", "inactive", ""):
        assert not health.is_running(state), state


def test_the_settle_window_is_a_few_seconds() -> None:
    assert 3 <= health.SETTLE_SECONDS <= 30


def test_a_sample_reads_systemctl_show_and_healthz() -> None:
    assert health.show_command("lab-kubelet-x.service") == (
        "systemctl show -p ActiveState -p NRestarts lab-kubelet-x.service"
    )
    # systemctl show prints the properties in its own order, not the order asked for.
    assert health.sample("NRestarts=3\nActiveState=active\n", "ok\n") == health.UnitSample("active", 3, "ok")
    with pytest.raises(ValueError, match="NRestarts"):
        health.sample("ActiveState=active\n", "ok")


def test_systemd_must_be_running_not_degraded() -> None:
    assert health.system_is_running("running\n")
    for state in ("degraded", "starting", "initializing", "maintenance", "stopping", "offline", ""):
        assert not health.system_is_running(state), state
