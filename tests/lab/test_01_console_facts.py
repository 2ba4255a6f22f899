"""Reading a VM's host key from its serial console log, without VMs: qemu writes the console
byte by byte, so the lab must never pin a key from a line that is still being written."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lab import api

pytestmark = pytest.mark.lab

# A real ed25519 public key line as a lab VM prints it (kernel log timestamp, CR LF).
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxnwQXMjPYoat9v68YFrmDeuigH6bhYNb+xSCG1i4HG"
LINES = (
    f"[   72.973666] LAB-HOSTKEY {KEY}\r\n"
    "[   73.603426] LAB-MACHINEID 14e1f06e8cea4271beb5949a6469740c\r\n"
    "[   73.603855] LAB-FIRSTBOOT-DONE k8s-node2\r\n"
)


def _facts(tmp_path: Path, text: str, name: str = "k8s-node2") -> tuple[list[str], str, bool]:
    console = tmp_path / "console.log"
    console.write_text("[    0.000000] Linux version 6.1.0\r\n" + text)
    return api._console_facts(console, name)


def test_whole_first_boot_output_gives_key_and_machine_id(tmp_path: Path) -> None:
    assert _facts(tmp_path, LINES) == ([KEY], "14e1f06e8cea4271beb5949a6469740c", True)


def test_no_prefix_of_the_output_counts_as_done(tmp_path: Path) -> None:
    for cut in range(len(LINES)):
        keys, _mid, done = _facts(tmp_path, LINES[:cut])
        assert not done, f"done after only {cut} characters: {LINES[:cut]!r}"
        assert keys in ([], [KEY]), f"pinned a partial key after {cut} characters: {keys}"


def test_key_prefix_that_decodes_is_not_a_key(tmp_path: Path) -> None:
    b64 = KEY.split()[1]
    prefix = b64[:44]  # a multiple of 4 characters: valid base64, holds the "ssh-ed25519" name
    assert b"ssh-ed25519" in base64.b64decode(prefix, validate=True)
    text = f"[   72.9] LAB-HOSTKEY ssh-ed25519 {prefix}\r\n" + LINES.split("\r\n", 1)[1]
    assert _facts(tmp_path, text) == ([], "14e1f06e8cea4271beb5949a6469740c", False)


def test_done_line_of_another_vm_does_not_count(tmp_path: Path) -> None:
    assert _facts(tmp_path, LINES, name="k8s-node1")[2] is False
