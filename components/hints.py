"""The troubleshooting catalogue as hints for the node-side health check.

The health check runs on the node, so it cannot call Python: each catalogue pattern goes into
the start script and is searched with `grep -P` in the kubelet's journal. Python's and PCRE's
syntax agree for the patterns the catalogue uses: a test runs every pattern through grep -P, and
one checks that grep -P and the reference matcher (`troubleshooting.match_log`) find the same
hints in every example line.
"""

from __future__ import annotations

from components.node_scripts import Hint
from components.troubleshooting import CatalogueEntry, Severity, default_catalogue

# Harmless entries would only add noise to a failure report.
REPORTED = (Severity.FATAL, Severity.ERROR, Severity.WARNING)
# Entries that count only when a line repeats (min_matching_lines > 1) are left out: grep -m1
# on the node cannot tell a normal single line from the symptom.


def hint_text(entry: CatalogueEntry) -> str:
    return f"hint: {entry.title}\n    cause: {entry.cause}\n    fix: {entry.fix}"


def reported_entries() -> list[CatalogueEntry]:
    """The entries the health check reports, fatal entries first."""
    order = {severity: rank for rank, severity in enumerate(REPORTED)}
    return sorted(
        (
            entry
            for entry in default_catalogue().entries
            if entry.severity in order and entry.min_matching_lines == 1
        ),
        key=lambda entry: order[entry.severity],
    )


def catalogue_hints() -> list[Hint]:
    """One hint per reported entry (its patterns joined into one alternation), in that order."""
    return [
        Hint(
            pattern="|".join(f"(?:{pattern.pattern})" for pattern in entry.patterns),
            text=hint_text(entry),
        )
        for entry in reported_entries()
    ]
