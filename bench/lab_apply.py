"""Sections 1–3 of issue 7 on the lab VMs. A SKELETON: written against tests/e2e/harness.py and
lab/api.py but never run (the lab was in use by others when it was written); whoever measures
sections 1–3 finishes it, runs it, and fills docs/benchmarks.md.

    venv/bin/python -m bench.lab_apply fresh --runbook PATH   # 1: fresh `pulumi up` vs the runbook script
    venv/bin/python -m bench.lab_apply steps                  # 2: commands per node on each kind of change
    venv/bin/python -m bench.lab_apply bytes                  # 3: bytes downloaded on re-apply

Every phase starts from `reset_nodes()` (the harness's "image state as far as this program is
concerned") on a lab booted with `lab.up(cgroup)`; the stack is the harness's `LabStack`
(project copy + file backend in a temp dir, host keys pinned).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lab import api as lab
from lab import paths as lab_paths
from tests.e2e.harness import NODES, LabStack, Run, node_ssh, reset_nodes

STEPS = ("preflight", "install-kubelet", "credentials", "configure-and-start")
NEW_VERSION = "v1.30.2"  # as tests/e2e/test_lab_up.py; needs `scripts/toolchain kubelet v1.30.2`
T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def load1() -> float:
    return os.getloadavg()[0]


def open_lab(work: Path, cgroup: str) -> LabStack:
    info = lab.up(cgroup=cgroup)
    lab.mirror_sync()
    reset_nodes()
    return LabStack(work, info)


# --- 2: commands per node ---------------------------------------------------------------------


def commands_per_node(run: Run) -> dict[str, dict[str, int]]:
    """node -> {operation: how many of its remote steps} for one engine run (from its events).
    `create`/`update` mean the step's script ran on the node; `same` means it did not."""
    counts: dict[str, Counter[str]] = {node: Counter() for node in NODES}
    for name, op in run.ops().items():
        for node in NODES:
            step = name.removeprefix(f"{node}-")
            if step != name and step in STEPS:
                counts[node][op] += 1
    return {node: dict(counter) for node, counter in counts.items()}


def steps(stack: LabStack) -> dict[str, Any]:
    """Fresh up, no-op up, a reservation change on one node, a version change on all."""
    results: dict[str, Any] = {}
    run, seconds = timed(stack.up)
    results["fresh"] = {"wall_s": seconds, "per_node": commands_per_node(run)}
    run, seconds = timed(stack.up)
    results["no-op"] = {"wall_s": seconds, "per_node": commands_per_node(run)}
    stack.set("nodes[1].reservations.kubeReserved.memory", "320Mi")
    run, seconds = timed(stack.up)
    results["reservation (k8s-node1)"] = {"wall_s": seconds, "per_node": commands_per_node(run)}
    stack.set("kubernetes.version", NEW_VERSION)
    run, seconds = timed(stack.up)
    results[f"version ({NEW_VERSION})"] = {"wall_s": seconds, "per_node": commands_per_node(run)}
    # TODO: also count SSH sessions per node (e.g. `journalctl -u ssh` lines "Accepted publickey"
    # between runs), which is what "commands per node" may mean to an operator.
    return results


# --- 3: bytes downloaded --------------------------------------------------------------------


def rx_bytes(node: str) -> int:
    """Bytes received by the guest on its non-loopback interfaces (SSH traffic included)."""
    output = node_ssh(
        node, "for i in /sys/class/net/*; do [ \"${i##*/}\" = lo ] || cat \"$i/statistics/rx_bytes\"; done"
    )
    return sum(int(line) for line in output.split())


MIRROR_GET = re.compile(r'"GET (\S+) HTTP/[\d.]+" 200 ')


def mirror_bytes_since(offset: int) -> tuple[int, list[str]]:
    """Bytes the lab mirror served with 200 after `offset` of its log: python's http.server logs
    no sizes, so each GET's file size is looked up under the mirror root."""
    log = lab_paths.lab_dir() / "mirror.log"
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    paths = MIRROR_GET.findall(text)
    total = 0
    for url_path in paths:
        file = lab_paths.mirror_root() / url_path.lstrip("/")
        if file.is_file():
            total += file.stat().st_size
    return total, paths


def mirror_log_size() -> int:
    log = lab_paths.lab_dir() / "mirror.log"
    return log.stat().st_size if log.exists() else 0


def downloaded(stack: LabStack, action: Callable[[], Run]) -> dict[str, Any]:
    before_rx = {node: rx_bytes(node) for node in NODES}
    offset = mirror_log_size()
    run, seconds = timed(action)
    served, gets = mirror_bytes_since(offset)
    return {
        "wall_s": seconds,
        "per_node_rx_bytes": {node: rx_bytes(node) - before_rx[node] for node in NODES},
        "mirror_bytes": served,
        "mirror_gets": gets,
        "per_node": commands_per_node(run),
    }


def bytes_on_reapply(stack: LabStack) -> dict[str, Any]:
    results = {"fresh": downloaded(stack, stack.up), "no-op re-apply": downloaded(stack, stack.up)}
    # TODO: a re-apply that reruns install-kubelet with the version unchanged (the case where the
    # sha256 check should skip the download). Changing downloadBaseUrl to an equivalent URL or a
    # `--target ... --replace` both have side effects (replacement runs the old delete after the
    # new create, see components/kubelet_node.py); pick a way and document it before measuring.
    return results


# --- 1: fresh up vs the runbook's plain script ----------------------------------------------


def runbook_script(node: str, script: Path) -> float:
    """Copy the runbook's plain script to the node and run it as root; its wall time.
    TODO: the runbook's script is not in this repo; it needs the same inputs the program gives a
    node (kubelet from the lab mirror, certificates, kubeconfig), prepared beforehand and not
    counted, or counted separately — decide and document before measuring."""
    lab.scp_to(node, script, "/root/runbook.sh")
    _, seconds = timed(lambda: node_ssh(node, "bash /root/runbook.sh"))
    return seconds


def fresh(stack: LabStack, script: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    run, seconds = timed(stack.up)
    results["pulumi up (fresh)"] = {"wall_s": seconds, "per_node": commands_per_node(run)}
    if script is None:
        results["runbook"] = "not run: pass --runbook PATH"
        return results
    reset_nodes()
    # The program runs the nodes in parallel; the runbook is run node after node, as by hand.
    results["runbook (sequential)"] = {node: runbook_script(node, script) for node in NODES}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=("fresh", "steps", "bytes"))
    parser.add_argument("--cgroup", choices=lab_paths.CGROUP_MODES, default="v2")
    parser.add_argument("--runbook", type=Path, help="the runbook's plain script (section 1)")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as temp:
        stack = open_lab(Path(temp), args.cgroup)
        load_before = load1()
        try:
            if args.section == "fresh":
                results = fresh(stack, args.runbook)
            elif args.section == "steps":
                results = steps(stack)
            else:
                results = bytes_on_reapply(stack)
        finally:
            reset_nodes()
    report = {"section": args.section, "cgroup": args.cgroup, "load1_before": load_before,
              "load1_after": load1(), "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
