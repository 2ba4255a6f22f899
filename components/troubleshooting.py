"""Catalogue of known kubelet failures: load it, match journal lines against it, document it.

The catalogue is data (troubleshooting.yaml next to this module). The health check runs on the
node, so the matcher that runs is `grep -P` in `node_steps/start-kubelet.sh`, over the patterns
`components/hints.py` hands it. `match_log` is the reference the tests hold the catalogue to (every
entry, whatever its severity, against real journal lines); tests/test_troubleshooting.py checks
that it and `grep -P` recognise the same hints in every example. `render_markdown` produces
docs/troubleshooting.md, so the human documentation cannot drift from the data. Pure functions:
no Pulumi, no I/O besides reading the catalogue file.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("troubleshooting.yaml")

KEBAB_CASE = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"

NonEmptyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CatalogueError(ValueError):
    """The catalogue file is missing, not YAML, or does not validate."""


class Severity(StrEnum):
    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"
    HARMLESS = "harmless"


Source = Literal["runbook", "measured", "upstream"]


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=KEBAB_CASE)]
    title: NonEmptyText
    patterns: tuple[re.Pattern[str], ...] = Field(min_length=1)
    severity: Severity
    cause: NonEmptyText
    fix: NonEmptyText
    source: Source
    # Some messages are normal once and a symptom only when they keep coming.
    min_matching_lines: int = Field(default=1, ge=1)

    @field_validator("patterns", mode="before")
    @classmethod
    def _compile_patterns(cls, value: object) -> object:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(p, str) for p in value
        ):
            return value  # pydantic itself reports the wrong type
        compiled: list[re.Pattern[str]] = []
        for pattern in value:
            try:
                regex = re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    f"invalid regular expression {pattern!r}: {error}"
                ) from error
            # A pattern that matches nothing-at-all would attach this hint to every line.
            if regex.search("") is not None:
                raise ValueError(f"pattern {pattern!r} matches an empty line")
            compiled.append(regex)
        return tuple(compiled)

    def search(self, line: str) -> re.Match[str] | None:
        """The first pattern match in `line`, or None."""
        for pattern in self.patterns:
            found = pattern.search(line)
            if found is not None:
                return found
        return None


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: tuple[CatalogueEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> Catalogue:
        seen: set[str] = set()
        duplicates: set[str] = set()
        for entry in self.entries:
            (duplicates if entry.id in seen else seen).add(entry.id)
        if duplicates:
            raise ValueError(f"duplicate entry ids: {', '.join(sorted(duplicates))}")
        return self


@dataclass(frozen=True, slots=True)
class Match:
    """One catalogue entry recognised in a log excerpt."""

    entry: CatalogueEntry
    line: str  # the first matching line, surrounding whitespace stripped
    line_number: int  # 1-based, within the text given to match_log
    matching_lines: int  # how many lines matched the entry in total


def load_catalogue(path: Path) -> Catalogue:
    """Read and validate a catalogue file; raises CatalogueError naming the file and the problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogueError(
            f"cannot read troubleshooting catalogue {path}: {error}"
        ) from error
    except yaml.YAMLError as error:
        raise CatalogueError(
            f"troubleshooting catalogue {path} is not valid YAML: {error}"
        ) from error
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as error:
        raise CatalogueError(
            f"troubleshooting catalogue {path} is invalid:\n{error}"
        ) from error


@functools.cache
def default_catalogue() -> Catalogue:
    """The catalogue shipped with the program, loaded and validated once per process."""
    return load_catalogue(DEFAULT_CATALOGUE_PATH)


def match_log(text: str, catalogue: Catalogue | None = None) -> list[Match]:
    """Entries recognised in `text` (journal lines), each at most once.

    Fatal entries come first, then the rest; within each group, by the line where the entry first
    matched.
    """
    lines = [line.strip() for line in text.splitlines()]
    matches: list[Match] = []
    for entry in (catalogue if catalogue is not None else default_catalogue()).entries:
        hits = [
            (index, found)
            for index, line in enumerate(lines)
            if (found := entry.search(line))
        ]
        if hits and len(hits) >= entry.min_matching_lines:
            index, found = hits[0]
            matches.append(
                Match(entry, found.string, index + 1, len(hits))
            )
    matches.sort(
        key=lambda match: (
            match.entry.severity is not Severity.FATAL,
            match.line_number,
        )
    )
    return matches


_SEVERITY_MEANINGS = {
    Severity.FATAL: "the kubelet exits, or the node cannot work until this is fixed",
    Severity.ERROR: "the kubelet runs, but pods or parts of the node fail",
    Severity.WARNING: "degraded, or expected at this stage",
    Severity.HARMLESS: "noise; ignore it and look for another line",
}

_SOURCE_MEANINGS: dict[Source, str] = {
    "runbook": "the line is quoted in the hand-written runbook this program automates",
    "measured": "captured on a node of this project",
    "upstream": (
        "message text checked against the Kubernetes, containerd, runc or flannel source and "
        "published reports; not captured on this project's nodes"
    ),
}


def render_markdown(catalogue: Catalogue | None = None) -> str:
    """docs/troubleshooting.md: the catalogue as sections of message, cause and fix."""
    entries = (catalogue if catalogue is not None else default_catalogue()).entries
    out: list[str] = [
        "# Troubleshooting the kubelet",
        "",
        (
            "<!-- Generated from components/troubleshooting.yaml by "
            "`venv/bin/python -m components.troubleshooting > docs/troubleshooting.md`; "
            "edit the YAML, not this file. -->"
        ),
        "",
        (
            "When a kubelet fails to start or stay up, the health check reads the last lines "
            "of `journalctl -u kubelet` on the node and prints the matching entries below. "
            "To look yourself, run `journalctl -u kubelet -n 200 --no-pager` on the node and "
            "search for the messages listed here."
        ),
        "",
        "Severity: "
        + "; ".join(
            f"**{severity}**: {meaning}"
            for severity, meaning in _SEVERITY_MEANINGS.items()
        )
        + ".",
        "",
        "Source: "
        + "; ".join(
            f"**{name}**: {meaning}" for name, meaning in _SOURCE_MEANINGS.items()
        )
        + ".",
        "",
        "| Problem | Severity |",
        "| --- | --- |",
    ]
    out += [f"| [{entry.title}](#{entry.id}) | {entry.severity} |" for entry in entries]
    for entry in entries:
        out += [
            "",
            f'<a id="{entry.id}"></a>',
            "",
            f"## {entry.title}",
            "",
            f"`{entry.id}` · severity **{entry.severity}** · source {entry.source}",
            "",
            "Recognised log lines (Python regular expressions, searched in each line):",
            "",
            "```text",
            *(pattern.pattern for pattern in entry.patterns),
            "```",
            "",
        ]
        if entry.min_matching_lines > 1:
            out += [
                f"Counts only when at least {entry.min_matching_lines} lines match.",
                "",
            ]
        out += [f"**Cause.** {entry.cause}", "", f"**Fix.** {entry.fix}"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
