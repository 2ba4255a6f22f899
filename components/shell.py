"""Bash text: the one module that quotes values for the node steps' scripts and command lines.

Every value the program puts into a script goes through `assignment` (a variable) or `quote`
(a word of a command line), so nothing a stack config holds is ever read as shell syntax.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

# A script variable's value: a bash string, number, true/false, or an array of strings.
Value = str | int | bool | Sequence[str]


def quote(word: str) -> str:
    """`word` as one literal bash word."""
    return shlex.quote(word)


def assignment(name: str, value: Value, *, literal_backticks: bool = False) -> str:
    """`name=value` in bash: a bool as true/false, an int as is, a string quoted, a sequence as an
    array. `literal_backticks`: the value quotes commands in backticks as literal text, which
    shellcheck would otherwise take for an expansion that single quotes prevent (SC2016)."""
    if literal_backticks:
        return "# shellcheck disable=SC2016\n" + assignment("_", value).replace("_=", f"{name}=", 1)
    if isinstance(value, bool):
        return f"{name}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{name}={value}"
    if isinstance(value, str):
        return f"{name}={quote(value)}"
    return f"{name}=(" + " ".join(quote(item) for item in value) + ")"
