"""Certificate expiry: when a node certificate is inside its renewal window.

pulumi-tls re-issues a certificate once the time is past notAfter - `early_renewal_hours` (its
`ready_for_renewal`): the preview then shows the certificate replaced, and its new values are
unknown until `pulumi up`. So the warning is made from the notAfter the previous deployment
recorded in the `nodes` output (`certNotAfter`), which the program reads back from its own stack.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

# Go's RFC 3339 with up to nine fractional digits (time.RFC3339Nano), as pulumi-tls writes it.
_RFC3339 = re.compile(r"(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 timestamp (nanoseconds are cut to the microseconds Python keeps)."""
    found = _RFC3339.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time")
    fraction = (found["fraction"] or "")[:6].ljust(6, "0")
    zone = "+00:00" if found["zone"] == "Z" else found["zone"]
    return datetime.datetime.fromisoformat(f"{found['base']}.{fraction}{zone}")


def renewal_starts(not_after: datetime.datetime, early_renewal_hours: int) -> datetime.datetime:
    """The start of the renewal window (pulumi-tls: notAfter - early_renewal_hours)."""
    return not_after - datetime.timedelta(hours=early_renewal_hours)


def expiry_warning(
    node: str, not_after_text: str, early_renewal_hours: int, now: datetime.datetime
) -> str | None:
    """The warning for one node's certificate, or None when it is outside its renewal window."""
    not_after = parse_time(not_after_text)
    starts = renewal_starts(not_after, early_renewal_hours)
    if now < starts:
        return None
    renew = "`pulumi up` issues a new one (the preview shows its certificate replaced) and restarts the kubelet with it"
    if now >= not_after:
        return (
            f"{node}: its certificate EXPIRED at {not_after_text}: the API server refuses the kubelet "
            f"(Unauthorized) and clients refuse its serving certificate; {renew}"
        )
    return (
        f"{node}: its certificate expires at {not_after_text} and is inside its renewal window since "
        f"{starts.isoformat()} (pki.earlyRenewalHours: {early_renewal_hours}); {renew}"
    )


def expiry_warnings(
    previous_nodes: Mapping[str, Any] | None,
    nodes: tuple[str, ...],
    early_renewal_hours: int,
    now: datetime.datetime,
) -> list[str]:
    """Warnings for the stack's `nodes` whose certificate, as the previous deployment recorded it
    in the `nodes` output, is inside its renewal window (or expired)."""
    warnings = []
    for node in nodes:
        summary = (previous_nodes or {}).get(node)
        not_after = summary.get("certNotAfter") if isinstance(summary, Mapping) else None
        if isinstance(not_after, str):
            warning = expiry_warning(node, not_after, early_renewal_hours, now)
            if warning is not None:
                warnings.append(warning)
    return warnings
