"""Issue 7, sections 1-3 and 5 on the lab: what a real `pulumi up` costs on three nodes.

    venv/bin/python -m bench.lab_apply fresh [--rounds 2]   # 1 + 5: fresh up vs the runbook's plain script
    venv/bin/python -m bench.lab_apply changes              # 2 + 3: commands, SSH sessions, bytes per change

The stack is the end-to-end tests' (tests/e2e/harness.py: the project copied unmodified, a file
backend in a temp dir, host keys pinned, the real CLI and tls plugin, the command stand-in); the
lab is booted with `lab.up(cgroup)`. What is counted, and how:

- commands per node: the remote steps the engine created/updated/deleted, from its events;
- SSH sessions per node: "Accepted publickey" lines in the node's sshd journal, before and
  after (the probe's own session is subtracted; probes and the runbook script use an SSH
  connection of their own, never the lab's multiplexed one), so they are the node's word;
- bytes: what the lab mirror served with status 200 (its access log, sizes from the files), and
  the guest's received bytes on its network interface (SSH traffic included);
- per-node wall time: from the engine event that starts a node's first step to the one that
  ends its last, stamped when this process receives them;
- registration: with the lab's control plane, the time from the start of the fresh `up` to the
  last of the three nodes appearing as a Node object (`kubectl get nodes`, polled once a second);
- peak memory: this process's VmHWM (`program_process_peak_rss_kb`: it hosted the inline program
  until the e2e harness moved to the project directory; now the program runs under the language
  host, one of the CLI's children) and, sampled from /proc, the CLI's, the language host's and
  the plugins' (bench/program_scale.py's `ProcessSampler`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.program_scale import load1, machine, proc_status_kb, sampling
from bench.runbook_plain import plain_script
from components.node_scripts import STEP_NAMES
from components.settings import parse_settings
from lab import api as lab
from lab import control_plane as lab_control_plane
from lab import paths as lab_paths
from tests.e2e.harness import NODES, LabStack, Run, forget_registered_nodes, node_ssh, reset_nodes
from tests.stack_config import load_stack_config
from tests.toolchain import require_kubelet

STEPS = STEP_NAMES
NEW_VERSION = "v1.30.2"  # as tests/e2e/test_lab_up.py
RAN = ("create", "update", "replace", "create-replacement", "delete", "delete-replaced")
Result = dict[str, Any]


# --- what a node says ------------------------------------------------------------------------

SNAPSHOT = (
    "journalctl -u ssh.service -o cat --no-pager | grep -c 'Accepted publickey' || true; "
    "for i in /sys/class/net/*; do [ \"${i##*/}\" = lo ] || cat \"$i/statistics/rx_bytes\"; done"
)


def own_ssh(
    node: str, command: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """An SSH session of its own (lab.ssh multiplexes over one connection, which sshd logs once)."""
    argv = lab.ssh_argv(node)
    argv = [argv[0], "-o", "ControlMaster=no", "-o", "ControlPath=none", *argv[1:]]
    return subprocess.run([*argv, "--", command], capture_output=True, text=True, input=input, timeout=timeout)


def snapshot(node: str) -> tuple[int, int]:
    """(sshd sessions accepted since boot, bytes received) on a node, in one SSH session."""
    result = own_ssh(node, SNAPSHOT)
    if result.returncode != 0:
        raise RuntimeError(f"{node}: snapshot failed: {result.stderr}")
    lines = result.stdout.split()
    return int(lines[0]), sum(int(value) for value in lines[1:])


MIRROR_GET = re.compile(r'"GET (\S+) HTTP/[\d.]+" 200 ')


def mirror_log() -> Path:
    return lab_paths.lab_dir() / "mirror.log"


def mirror_served_since(offset: int) -> tuple[int, list[str]]:
    """Bytes the lab mirror served with 200 after `offset` of its log (http.server logs no sizes,
    so each file's size is looked up under the mirror root), and the paths."""
    with mirror_log().open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    served = MIRROR_GET.findall(text)
    total = 0
    for url_path in served:
        file = lab_paths.mirror_root() / url_path.lstrip("/")
        if file.is_file():
            total += file.stat().st_size
    return total, served


class Probe:
    """Sessions, received bytes and mirror traffic around one action."""

    def __init__(self) -> None:
        self.before = {node: snapshot(node) for node in NODES}
        self.offset = mirror_log().stat().st_size

    def result(self) -> Result:
        after = {node: snapshot(node) for node in NODES}
        served, paths = mirror_served_since(self.offset)
        return {
            # minus the probe's own session after the action
            "ssh_sessions": {node: after[node][0] - self.before[node][0] - 1 for node in NODES},
            "guest_rx_bytes": {node: after[node][1] - self.before[node][1] for node in NODES},
            "mirror_bytes": served,
            "mirror_gets": paths,
        }


# --- what the engine says --------------------------------------------------------------------


def node_of(name: str) -> tuple[str, str] | None:
    for node in NODES:
        step = name.removeprefix(f"{node}-")
        if step != name and step in STEPS:
            return node, step
    return None


def commands_per_node(run: Run) -> dict[str, list[str]]:
    """node -> the steps whose script ran on it (created, updated, deleted) in one engine run."""
    ran: dict[str, list[str]] = {node: [] for node in NODES}
    for name, op in run.ops().items():
        found = node_of(name)
        if found and op in RAN:
            ran[found[0]].append(found[1])
    return ran


def timed_up(stack: LabStack) -> tuple[Run, float, dict[str, float], dict[str, float]]:
    """`up`, its wall time, per node the time from its first step starting to its last ending,
    and per step resource the time from its start to its end."""
    stamps: list[tuple[float, Any]] = []
    run = Run()
    stack.runs.append(run)

    def on_event(event: Any) -> None:
        stamps.append((time.perf_counter(), event))
        run.events.append(event)

    start = time.perf_counter()
    stack.stack.up(on_event=on_event, color="never")
    wall = time.perf_counter() - start
    spans: dict[str, list[float]] = {}
    step_spans: dict[str, list[float]] = {}
    for stamp, event in stamps:
        metadata = None
        if event.resource_pre_event is not None:
            metadata = event.resource_pre_event.metadata
        elif event.res_outputs_event is not None:
            metadata = event.res_outputs_event.metadata
        if metadata is None or str(metadata.op.value) == "same":
            continue
        name = metadata.urn.rsplit("::", 1)[1]
        found = node_of(name)
        if found:
            spans.setdefault(found[0], []).append(stamp)
            step_spans.setdefault(name, []).append(stamp)
    def durations(groups: dict[str, list[float]]) -> dict[str, float]:
        return {key: max(times) - min(times) for key, times in groups.items()}

    return run, wall, durations(spans), durations(step_spans)


class RegistrationWatch(threading.Thread):
    """Polls the lab's API server once a second from its start: `.seconds` is the time until every
    lab node is a Node object (registered under its own name), or None if that did not happen
    before `deadline` seconds."""

    def __init__(self, cp: lab_control_plane.ControlPlane, deadline: float = 900) -> None:
        super().__init__(daemon=True)
        self.cp, self.deadline = cp, deadline
        self.started = time.perf_counter()
        self.seconds: float | None = None

    def run(self) -> None:
        while time.perf_counter() - self.started < self.deadline:
            listed = lab_control_plane.kubectl(self.cp, "get", "nodes", "-o", "name", timeout=30)
            names = {line.removeprefix("node/") for line in listed.stdout.split()}
            if set(NODES) <= names:
                self.seconds = time.perf_counter() - self.started
                return
            time.sleep(1)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


# --- 1 + 5: fresh up vs the runbook's plain script -------------------------------------------


def plain_runs(stack: LabStack, outputs: Result, wait_healthy: bool) -> Result:
    """The runbook's plain script on the three nodes at once, one SSH session each."""
    # The stack's secrets (the imported lab CA) stay ciphertext (`{"secure": ...}`): name them present.
    config = load_stack_config(stack.stack_file)
    secrets = frozenset(key for key, value in config.items() if isinstance(value, dict) and "secure" in value)
    settings = parse_settings(config, secrets_present=secrets)
    scripts = {
        node.name: plain_script(settings, node, ca_pem=outputs["caCertificate"],
                                kubeconfig=outputs["kubeconfigs"][node.name], wait_healthy=wait_healthy)
        for node in settings.nodes
    }
    reset_nodes()
    probe = Probe()
    per_node: dict[str, float] = {}
    failures: dict[str, str] = {}

    def run(node: str) -> None:
        start = time.perf_counter()
        result = own_ssh(node, "bash -s", input=scripts[node], timeout=900)
        per_node[node] = time.perf_counter() - start
        if result.returncode != 0:
            failures[node] = str(result.stderr)[-2000:]

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(node,)) for node in NODES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    active = {node: node_ssh(node, "systemctl is-active kubelet.service || true") for node in NODES}
    return {"wall_s": wall, "per_node_s": per_node, "failures": failures, "kubelet": active,
            "script_bytes": len(scripts["k8s-node1"]), **probe.result()}


def fresh(stack: LabStack, rounds: int) -> Result:
    results: Result = {"rounds": []}
    for index in range(rounds):
        one: Result = {"load1_before": load1()}
        stack.fresh_nodes()
        cp = stack.info.control_plane
        watch: RegistrationWatch | None = None
        if cp is not None:  # the nodes register anew: no Node or Lease left from before
            forget_registered_nodes(cp)
        probe = Probe()
        with sampling() as sampler:
            if cp is not None:
                watch = RegistrationWatch(cp)
                watch.start()
            run, wall, per_node, per_step = timed_up(stack)
        if watch is not None:
            watch.join()
        one["pulumi up (fresh)"] = {
            "wall_s": wall, "per_node_s": per_node, "per_step_s": per_step,
            "commands": commands_per_node(run), **probe.result(),
            "program_process_peak_rss_kb": proc_status_kb().get("VmHWM", 0),
            "children_peak_rss_kb": {
                role: max(r.get("VmHWM", 0) for r in sampler.processes.values() if r["role"] == role)
                for role in {r["role"] for r in sampler.processes.values()}
            },
            "tree_rss_peak_kb": sampler.tree_rss_peak_kb,
            # From the start of `up` to the last of the three nodes registered with the lab's API
            # server (None: no control plane, or not within the watch's deadline).
            "all_nodes_registered_s": watch.seconds if watch is not None else None,
        }
        one["pulumi preview (after)"] = {"wall_s": timed(lambda: stack.preview())}
        probe = Probe()
        run, wall, _, _ = timed_up(stack)
        one["pulumi up (no-op)"] = {"wall_s": wall, "commands": commands_per_node(run), **probe.result()}
        outputs = {key: value.value for key, value in stack.stack.outputs().items()}
        one["runbook script"] = plain_runs(stack, outputs, wait_healthy=False)
        one["runbook script + wait for /healthz"] = plain_runs(stack, outputs, wait_healthy=True)
        one["load1_after"] = load1()
        results["rounds"].append(one)
        print(json.dumps({"round": index + 1, **summary_of(one)}), file=sys.stderr)
    return results


def summary_of(one: Result) -> Result:
    summary = {name: round(entry["wall_s"], 1) for name, entry in one.items() if isinstance(entry, dict)}
    registered = one["pulumi up (fresh)"].get("all_nodes_registered_s")
    summary["all nodes registered after (s)"] = round(registered, 1) if registered is not None else None
    return summary


# --- 2 + 3: what each kind of change costs ---------------------------------------------------


def changes(stack: LabStack) -> Result:
    stack.fresh_nodes()
    stack.up()
    base_url = stack.config_object("kubernetes")["downloadBaseUrl"]
    actions: list[tuple[str, Callable[[], None]]] = [
        ("no-op re-apply", lambda: None),
        ("reservation change on k8s-node1 (kubeReserved.memory 320Mi)",
         lambda: stack.set("nodes[1].reservations.kubeReserved.memory", "320Mi")),
        (f"version change ({NEW_VERSION})", lambda: stack.set("kubernetes.version", NEW_VERSION)),
        # The same mirror under another URL (curl drops the dot segment): install-kubelet runs
        # again with the binary already installed; only its sha256 may be fetched.
        ("re-apply of install-kubelet, binary already installed (downloadBaseUrl + '/.')",
         lambda: stack.set("kubernetes.downloadBaseUrl", base_url + "/.")),
    ]
    results: Result = {}
    for name, change in actions:
        change()
        probe = Probe()
        run, wall, per_node, _ = timed_up(stack)
        results[name] = {"wall_s": wall, "per_node_s": per_node, "commands": commands_per_node(run),
                         **probe.result(), "load1": load1()}
        print(json.dumps({name: {"wall_s": round(wall, 1), "commands": results[name]["commands"],
                                 "ssh_sessions": results[name]["ssh_sessions"],
                                 "mirror_bytes": results[name]["mirror_bytes"]}}), file=sys.stderr)
    return results


def medians(rounds: list[Result]) -> Result:
    names = [name for name, entry in rounds[0].items() if isinstance(entry, dict)]
    return {name: statistics.median(r[name]["wall_s"] for r in rounds) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=("fresh", "changes"))
    parser.add_argument("--cgroup", choices=lab_paths.CGROUP_MODES, default="v2")
    parser.add_argument("--rounds", type=int, default=2, help="fresh: rounds of (up, runbook script)")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    require_kubelet("v1.30.1", "amd64")
    require_kubelet(NEW_VERSION, "amd64")
    info = lab.up(cgroup=args.cgroup)
    lab.mirror_sync()
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as temp:
        stack = LabStack(Path(temp), info)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        try:
            results = fresh(stack, args.rounds) if args.section == "fresh" else changes(stack)
        finally:
            reset_nodes()
    report: Result = {"section": args.section, "cgroup": args.cgroup, "started": started,
                      "machine": machine(), "results": results}
    if args.section == "fresh":
        report["median_wall_s"] = medians(results["rounds"])
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
