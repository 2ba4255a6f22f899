"""The file bundle that carries file contents to a node on stdin (see `unpack_bundle` in lib.sh)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FILE_MARKER = "@@@ homelab-kubelet file"
END_MARKER = "@@@ homelab-kubelet end"


@dataclass(frozen=True)
class NodeFile:
    path: str
    mode: str  # octal, e.g. "0600"
    content: str


def pack(files: Iterable[NodeFile]) -> str:
    parts = []
    for file in files:
        if " " in file.path or not file.path.startswith("/"):
            raise ValueError(f"bundle paths must be absolute and without spaces: {file.path!r}")
        content = file.content if file.content.endswith("\n") else file.content + "\n"
        if any(line.startswith("@@@ homelab-kubelet") for line in content.splitlines()):
            raise ValueError(f"{file.path}: content may not contain bundle marker lines")
        parts.append(f"{FILE_MARKER} {file.path} {file.mode}\n{content}{END_MARKER}\n")
    return "".join(parts)


def unpack(bundle: str) -> list[NodeFile]:
    """The inverse of `pack`, for tests and for reading a bundle back."""
    files: list[NodeFile] = []
    current: tuple[str, str] | None = None
    lines: list[str] = []
    for line in bundle.splitlines():
        if line.startswith(FILE_MARKER + " "):
            path, mode = line.removeprefix(FILE_MARKER + " ").split(" ")
            current, lines = (path, mode), []
        elif line == END_MARKER:
            if current is None:
                raise ValueError("end marker without a file")
            files.append(NodeFile(current[0], current[1], "".join(f"{x}\n" for x in lines)))
            current = None
        elif current is None:
            raise ValueError("data outside a file")
        else:
            lines.append(line)
    if current is not None:
        raise ValueError(f"{current[0]} has no end marker")
    return files
