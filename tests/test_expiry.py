"""The renewal window of a node certificate (components/expiry.py), as pulumi-tls defines it.

The provider (terraform-provider-tls, common_cert.go modifyPlanIfCertificateReadyForRenewal)
plans a replacement once notAfter - early_renewal_hours - now <= 0; the warning starts there too.
"""

from __future__ import annotations

import datetime

import pytest

from components.expiry import expiry_warning, expiry_warnings, parse_time, renewal_starts

UTC = datetime.UTC
NOT_AFTER = "2027-01-01T00:00:00.123456789Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-01T00:00:00.123456789Z", datetime.datetime(2027, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2027-01-01T00:00:00Z", datetime.datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T09:00:00.5+09:00", datetime.datetime(2027, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_go_rfc3339_times_parse(text: str, expected: datetime.datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["2027-01-01", "2027-01-01 00:00:00Z", "yesterday", ""])
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an RFC 3339 time"):
        parse_time(text)


def test_the_window_starts_early_renewal_hours_before_not_after() -> None:
    not_after = parse_time(NOT_AFTER)
    starts = renewal_starts(not_after, 720)
    assert not_after - starts == datetime.timedelta(days=30)
    just_before = starts - datetime.timedelta(microseconds=1)
    assert expiry_warning("k8s-node1", NOT_AFTER, 720, just_before) is None
    at_start = expiry_warning("k8s-node1", NOT_AFTER, 720, starts)
    assert at_start is not None and "inside its renewal window since 2026-12-02T00:00:00.123456+00:00" in at_start
    expired = expiry_warning("k8s-node1", NOT_AFTER, 720, not_after)
    assert expired is not None and expired.startswith(f"k8s-node1: its certificate EXPIRED at {NOT_AFTER}")


def test_only_nodes_of_the_stack_with_a_recorded_not_after_count() -> None:
    now = parse_time(NOT_AFTER)
    previous = {"k8s-node1": {"certNotAfter": NOT_AFTER}, "k8s-node2": {"address": "x"}, "old-node": {"certNotAfter": NOT_AFTER},
                "k8s-master": "not a summary"}
    warnings = expiry_warnings(previous, ("k8s-master", "k8s-node1", "k8s-node2"), 720, now)
    assert [warning.split(":")[0] for warning in warnings] == ["k8s-node1"]
    assert expiry_warnings(None, ("k8s-node1",), 720, now) == []
