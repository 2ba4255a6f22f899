"""How program evaluation scales with the number of nodes (issue 7, section 4).

For each N in 3, 30, 300, 1000 (bench/synthetic_stack.py), every measurement in a fresh
subprocess so sizes do not pollute each other's peak memory:

  mock     the real __main__.py under Pulumi's mock engine (tests/pulumi_harness.run_program):
           wall time of run_program, resources registered, peak RSS of the process (VmHWM and
           ru_maxrss), and a phase split (parse_settings, NodeCertificate and KubeletNode
           constructors, the program body, waiting for the outputs).
  preview  a real `pulumi preview` through the Automation API (file backend and project copy in a
           temp dir, as tests/test_preview.py does; the synthetic stack has `ssh.agent: true`):
           wall time of the preview, then of a second preview in the same project dir (warm
           caches), and the peak RSS of every process in the tree (see `ProcessSampler` and
           `SITECUSTOMIZE` for how).
  profile  cProfile of one mock evaluation, the top functions by cumulative time.

    venv/bin/python -m bench.program_scale mock                       # all sizes
    venv/bin/python -m bench.program_scale mock --sizes 300 --runs 5
    venv/bin/python -m bench.program_scale preview --sizes 3 30 300
    venv/bin/python -m bench.program_scale profile --nodes 300 --top 40
    venv/bin/python -m bench.program_scale mock --json /tmp/mock.json  # also write raw results

Every result carries the 1-minute load average before and after it: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.synthetic_stack import SIZES, synthetic_config, write_stack_file

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PASSPHRASE = "bench-preview"
# Small sizes: median of this many runs; 1000 nodes take long, so fewer.
DEFAULT_RUNS = {3: 5, 30: 5, 300: 3, 1000: 2}
SAMPLE_INTERVAL = 0.05

Result = dict[str, Any]


def load1() -> float:
    return os.getloadavg()[0]


def proc_status_kb(pid: int | str = "self") -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of a process, in KiB; {} when it is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    values[key] = int(rest.split()[0])
    except OSError:
        return {}
    return values


# --- mock engine ----------------------------------------------------------------------------


class PhaseTimer:
    """Cumulative wall time of a few functions, by wrapping them for the duration of a run.
    Thread-safe: the SDK calls the mock monitor (and so the emulated providers) from executor
    threads, which is also why cProfile (main thread only) does not see the providers' work."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def wrap(self, owner: Any, attribute: str, phase: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed

        setattr(owner, attribute, timed)
        self._undo.append(lambda: setattr(owner, attribute, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


GC_MODES = ("default", "off", "relaxed")


def set_gc(mode: str) -> None:
    """A what-if knob: `off` disables the cyclic collector for the run, `relaxed` makes the
    first generation 100x larger (gc.set_threshold(70000, 10, 100)), as a program could."""
    import gc

    if mode == "off":
        gc.disable()
    elif mode == "relaxed":
        gc.set_threshold(70_000, 10, 100)


def mock_child(nodes: int, phases: bool, gc_mode: str = "default") -> Result:
    """One mock evaluation in this (fresh) process."""
    started = time.perf_counter()
    import gc
    import runpy

    import components.settings
    from components.kubelet_node import KubeletNode
    from components.pki import NodeCertificate
    from tests.pulumi_harness import ProviderMocks, run_program

    config = synthetic_config(nodes)
    imported = time.perf_counter()
    rss_before = proc_status_kb()
    timer = PhaseTimer()
    if phases:
        # __main__.py does `from components.settings import parse_settings` when runpy runs it,
        # so it picks up the wrapped function; the component classes are wrapped in place.
        timer.wrap(components.settings, "parse_settings", "parse_settings")
        timer.wrap(NodeCertificate, "__init__", "NodeCertificate")
        timer.wrap(KubeletNode, "__init__", "KubeletNode")
        timer.wrap(runpy, "run_path", "program_body")
        # The emulated tls/command providers (real ECDSA keys and certificates): harness cost,
        # absent from a real preview, where tls outputs are unknown and nothing is signed.
        timer.wrap(ProviderMocks, "new_resource", "mock_providers")
    load_before = load1()
    set_gc(gc_mode)
    collections_before = sum(stat["collections"] for stat in gc.get_stats())
    start = time.perf_counter()
    try:
        run = run_program(config)
    finally:
        timer.restore()
    wall = time.perf_counter() - start
    status = proc_status_kb()
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    by_type: dict[str, int] = {}
    for registered in run.mocks.resources:
        by_type[registered.type] = by_type.get(registered.type, 0) + 1
    phase_seconds = dict(timer.seconds)
    if "program_body" in phase_seconds:
        phase_seconds["outputs_after_body"] = wall - phase_seconds["program_body"]
    return {
        "mode": "mock",
        "nodes": nodes,
        "wall_s": wall,
        "import_s": imported - started,
        "resources": len(run.mocks.resources),
        "custom_resources": sum(1 for r in run.mocks.resources if not r.type.startswith("homelab-kubelet:")),
        "by_type": by_type,
        "exports": sorted(run.outputs),
        "rss_before_kb": rss_before.get("VmRSS"),
        "vmhwm_kb": status.get("VmHWM"),
        "ru_maxrss_kb": usage.ru_maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "phases_s": phase_seconds,
        "gc": gc_mode,
        "gc_collections": sum(stat["collections"] for stat in gc.get_stats()) - collections_before,
        "load1_before": load_before,
        "load1_after": load1(),
    }


# --- real engine ----------------------------------------------------------------------------

# Put on PYTHONPATH of the preview: every Python process the engine starts (the command
# stand-in plugin; with a language host also its program process and `typechecker: mypy` run)
# writes its own peak RSS (VmHWM, read from /proc at exit), CPU time and lifetime to
# $BENCH_PROC_DIR/<pid>.json. Exact, where the /proc sampler can only approximate.
SITECUSTOMIZE = '''\
import atexit, json, os, resource, time

_bench_dir = os.environ.get("BENCH_PROC_DIR")
if _bench_dir:
    _bench_start = time.time()

    def _bench_report():
        status = {}
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("VmHWM", "VmRSS"):
                        status[key] = int(rest.split()[0])
            with open("/proc/self/cmdline", "rb") as f:
                argv = [part.decode(errors="replace") for part in f.read().split(b"\\0") if part]
            usage = resource.getrusage(resource.RUSAGE_SELF)
            record = {"pid": os.getpid(), "argv": argv, "start": _bench_start, "end": time.time(),
                      "cpu_s": usage.ru_utime + usage.ru_stime, **status}
            with open(os.path.join(_bench_dir, "%d.json" % os.getpid()), "w") as f:
                json.dump(record, f)
        except Exception:
            pass

    atexit.register(_bench_report)
'''


def classify(argv: Sequence[str]) -> str:
    """A short role for a process of the preview's tree, from its command line."""
    if not argv:
        return "?"
    joined = " ".join(argv)
    name = Path(argv[0]).name
    if "pulumi-language-python-exec" in joined:
        return "program (pulumi-language-python-exec)"
    if "mypy" in joined:
        return "typechecker (mypy)"
    if "standins/command/provider.py" in joined:
        return "plugin command (stand-in)"
    if name.startswith("pulumi-resource-"):
        return "plugin " + name.removeprefix("pulumi-resource-")
    if name.startswith("pulumi-language-"):
        return "language host " + name
    if name == "pulumi":
        return "pulumi CLI"
    if name.startswith("python"):
        return "python " + " ".join(Path(part).name for part in argv[1:3])
    return name


class ProcessSampler(threading.Thread):
    """Polls /proc every SAMPLE_INTERVAL for the descendants of this process: per process the
    last VmHWM seen (the kernel's peak RSS, monotonic, so the last reading is at most one
    interval short of the true peak) and the largest sum of VmRSS over the tree at one instant."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.processes: dict[int, dict[str, Any]] = {}
        self.tree_rss_peak_kb = 0
        self.samples = 0

    def _descendants(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        found: list[int] = []
        stack = [os.getpid()]
        while stack:
            for child in children.get(stack.pop(), []):
                found.append(child)
                stack.append(child)
        return found

    def sample(self) -> None:
        total = 0
        for pid in self._descendants():
            status = proc_status_kb(pid)
            if not status:
                continue
            record = self.processes.get(pid)
            if record is None:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        argv = [p.decode(errors="replace") for p in cmdline.read().split(b"\0") if p]
                except OSError:
                    continue
                record = self.processes[pid] = {"argv": argv, "role": classify(argv), "first": time.time()}
            record["VmHWM"] = max(record.get("VmHWM", 0), status.get("VmHWM", 0))
            record["last"] = time.time()
            total += status.get("VmRSS", 0)
        self.tree_rss_peak_kb = max(self.tree_rss_peak_kb, total)
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_INTERVAL)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


@contextmanager
def sampling() -> Iterator[ProcessSampler]:
    sampler = ProcessSampler()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def peaks_by_role(sampler: ProcessSampler, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per role: the largest peak RSS of one process, how many processes, and their lifetimes.
    Python processes take the exact figure they reported at exit; others the sampled one."""
    exact = {int(report["pid"]): report for report in reports}
    roles: dict[str, dict[str, Any]] = {}
    for pid, record in sampler.processes.items():
        report = exact.get(pid)
        role = classify(report["argv"]) if report else record["role"]
        peak = report.get("VmHWM", 0) if report else record.get("VmHWM", 0)
        lifetime = (report["end"] - report["start"]) if report else record["last"] - record["first"]
        entry = roles.setdefault(role, {"processes": 0, "peak_rss_kb": 0, "longest_s": 0.0, "how": set()})
        entry["processes"] += 1
        entry["peak_rss_kb"] = max(entry["peak_rss_kb"], peak)
        entry["longest_s"] = max(entry["longest_s"], lifetime)
        entry["how"].add("exit report" if report else "sampled")
        if report:
            entry["cpu_s"] = max(entry.get("cpu_s", 0.0), report.get("cpu_s", 0.0))
    for pid, report in exact.items():  # too short-lived for the sampler to see
        if pid not in sampler.processes:
            role = classify(report["argv"])
            entry = roles.setdefault(role, {"processes": 0, "peak_rss_kb": 0, "longest_s": 0.0, "how": set()})
            entry["processes"] += 1
            entry["peak_rss_kb"] = max(entry["peak_rss_kb"], report.get("VmHWM", 0))
            entry["longest_s"] = max(entry["longest_s"], report["end"] - report["start"])
            entry["cpu_s"] = max(entry.get("cpu_s", 0.0), report.get("cpu_s", 0.0))
            entry["how"].add("exit report")
    for entry in roles.values():
        entry["how"] = sorted(entry["how"])
    return roles


def preview_child(nodes: int, previews: int) -> Result:
    """`pulumi preview` of the synthetic stack in a fresh temp project, `previews` times in a row
    (the first with cold caches: no __pycache__ in the copy). The project copy, workspace options
    and inline program are the real-engine tests' (tests/workspace.py): the program runs in this
    process (the Automation API's language server), the CLI and plugins as child processes."""
    from pulumi import automation as auto

    from tests.workspace import copy_project, program_runner, workspace_options

    stack_name = f"scale{nodes}"
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as temp:
        root = Path(temp)
        project = copy_project(root / "project")
        write_stack_file(nodes, stack_name, project)
        options = workspace_options(project, root / "state", PASSPHRASE)
        proc_dir = root / "proc"
        proc_dir.mkdir()
        site_dir = root / "site"
        site_dir.mkdir()
        (site_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = dict(options.env_vars or {})
        env.update(
            # Offline, as the toolchain is: never fetch a missing plugin during a measurement.
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            BENCH_PROC_DIR=str(proc_dir),
            PYTHONPATH=os.pathsep.join(filter(None, [str(site_dir), env.get("PYTHONPATH")])),
        )
        options.env_vars = env
        start = time.perf_counter()
        stack = auto.create_or_select_stack(
            stack_name, project_name="homelab-kubelet", program=program_runner(project), opts=options
        )
        setup = time.perf_counter() - start
        runs: list[Result] = []
        for index in range(previews):
            for old in proc_dir.iterdir():
                old.unlink()
            events: list[auto.EngineEvent] = []
            load_before = load1()
            with sampling() as sampler:
                began = time.perf_counter()
                cpu_began = time.process_time()
                error = None
                try:
                    result = stack.preview(on_event=events.append, color="never")
                    summary = {str(op.value if hasattr(op, "value") else op): n
                               for op, n in result.change_summary.items()}
                except auto.errors.CommandError as failure:
                    error, summary = str(failure)[-4000:], {}
                wall = time.perf_counter() - began
                # The inline program's CPU (plus this process's gRPC server and event reader).
                program_cpu = time.process_time() - cpu_began
            reports = [json.loads(path.read_text()) for path in proc_dir.glob("*.json")]
            pre_events = [e for e in events if e.resource_pre_event is not None]
            first_pre = next((e.timestamp for e in events if e.resource_pre_event is not None), None)
            roles = peaks_by_role(sampler, reports)
            runs.append(
                {
                    "preview": index + 1,
                    "caches": "cold" if index == 0 else "warm",
                    "wall_s": wall,
                    "error": error,
                    "change_summary": summary,
                    "resource_pre_events": len(pre_events),
                    "program_cpu_s": program_cpu,
                    # This process hosts the program: its peak RSS so far (monotonic over the runs).
                    "program_peak_rss_kb": proc_status_kb().get("VmHWM", 0),
                    "first_resource_event_unix": first_pre,
                    "roles": roles,
                    "tree_rss_peak_kb": sampler.tree_rss_peak_kb,
                    "samples": sampler.samples,
                    "load1_before": load_before,
                    "load1_after": load1(),
                }
            )
        import resource

        children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "mode": "preview",
        "nodes": nodes,
        "stack_setup_s": setup,
        "runs": runs,
        # ru_maxrss over every waited-for descendant: the largest single process of the tree.
        "children_ru_maxrss_kb": children_maxrss,
    }


def typecheck(runs: int) -> list[Result]:
    """The language host's `typechecker: mypy` step, run standalone: `python -m mypy --exclude venv
    <program dir>` in a fresh project copy (cwd = the copy), as pulumi-language-python runs it
    before the program on every preview and up. `runs` in a row: the first with no .mypy_cache."""
    from tests.workspace import copy_project

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-typecheck-") as temp:
        project = copy_project(Path(temp) / "project")
        log = Path(temp) / "mypy.log"
        for index in range(runs):
            load_before = load1()
            start = time.perf_counter()
            with log.open("w") as output:
                process = subprocess.Popen(
                    [PYTHON, "-m", "mypy", "--exclude", "venv", str(project)],
                    cwd=project, stdout=output, stderr=subprocess.STDOUT,
                )
                # wait4: the exit status and the rusage (peak RSS) of exactly this child.
                _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
            lines = log.read_text().strip().splitlines()
            results.append(
                {
                    "run": index + 1,
                    "cache": "cold" if index == 0 else "warm",
                    "wall_s": wall,
                    "cpu_s": usage.ru_utime + usage.ru_stime,
                    "maxrss_kb": usage.ru_maxrss,
                    "exit_code": os.waitstatus_to_exitcode(status),
                    "last_line": lines[-1] if lines else "",
                    "load1_before": load_before,
                }
            )
            print(
                f"  mypy ({results[-1]['cache']}): {wall:.1f} s, CPU {results[-1]['cpu_s']:.1f} s, "
                f"peak {mib(usage.ru_maxrss)} MiB, load {load_before:.1f}: {results[-1]['last_line']}",
                file=sys.stderr,
            )
    return results


def cpu_seconds(function: Callable[[], object], repeat: int = 1) -> float:
    start = time.process_time()
    for _ in range(repeat):
        function()
    return time.process_time() - start


def overlaps_pairwise(cidrs: Sequence[str]) -> None:
    """What parse_settings does: each CIDR against every earlier one, both parsed again."""
    import ipaddress

    seen: dict[str, int] = {}
    for index, cidr in enumerate(cidrs):
        for other in seen:
            ipaddress.ip_network(cidr).overlaps(ipaddress.ip_network(other))
        seen.setdefault(cidr, index)


def overlaps_sorted(cidrs: Sequence[str]) -> None:
    """The alternative: parse once, sort by address, compare each network only with the earlier
    ones that are still open (reach past its start); finds the same overlapping pairs."""
    import ipaddress

    networks = sorted(ipaddress.ip_network(cidr) for cidr in cidrs)
    open_networks: list[Any] = []
    for network in networks:
        open_networks = [n for n in open_networks if n.broadcast_address >= network.network_address]
        for enclosing in open_networks:
            enclosing.overlaps(network)
        open_networks.append(network)


def hotspots_for(nodes: int) -> Result:
    import yaml

    from components.hints import catalogue_hints
    from components.kubeconfig import render_kubeconfig
    from components.kubelet_config import kubelet_configuration
    from components.node_scripts import (
        configure_and_start,
        configure_bundle,
        install_kubelet,
        node_address,
        preflight,
        write_credentials,
    )
    from components.settings import parse_settings

    config = synthetic_config(nodes)
    cidrs = [node["podCIDR"] for node in config["nodes"]]
    settings = parse_settings(config)
    node = settings.nodes[0]
    document = kubelet_configuration(settings, node)
    steps = [preflight(settings, node), node_address(node), install_kubelet(settings, node), write_credentials(node),
             configure_and_start(settings, node, catalogue_hints())]
    # the command lines (create, update, delete), the scripts on stdin, and the configure bundle
    text_bytes = sum(2 * len(step.create) + len(step.delete or "") + len(step.scripts) for step in steps)
    text_bytes += len(configure_bundle(settings, node))
    pems = {"ca_cert_pem": "c" * 700, "client_cert_pem": "n" * 800, "client_key_pem": "k" * 240}

    def kubeconfig() -> str:
        return render_kubeconfig(cluster_name="kubernetes", server="https://k8s-master:6443",
                                 user=node.cert_common_name, **pems)

    kubeconfig_document = yaml.safe_load(kubeconfig())

    def pure() -> None:  # per node: the kubelet config twice (configure_bundle, configure), the kubeconfig once
        yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
        yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
        kubeconfig()

    def libyaml() -> None:  # each rendered once, with the C emitter (the same text for these documents)
        yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)
        yaml.dump(kubeconfig_document, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)

    return {
        "nodes": nodes,
        "load1": load1(),
        "parse_settings_cpu_s": cpu_seconds(lambda: parse_settings(config)),
        "overlap_pairwise_cpu_s": cpu_seconds(lambda: overlaps_pairwise(cidrs)),
        "overlap_sorted_cpu_s": cpu_seconds(lambda: overlaps_sorted(cidrs)),
        "yaml_pure_cpu_s": cpu_seconds(pure, nodes),
        "yaml_c_cpu_s": cpu_seconds(libyaml, nodes),
        "yaml_c_same_text": yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)
        == yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
        and yaml.dump(kubeconfig_document, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)
        == kubeconfig(),
        "command_text_bytes_per_node": text_bytes,
    }


def hotspots(sizes: Sequence[int]) -> list[Result]:
    """Micro-benchmarks (process CPU time) of the hot spots the profile shows, each next to the
    cheaper alternative suggested in docs/benchmarks.md. Nothing in components/ is changed."""
    results = []
    for nodes in sizes:
        results.append(hotspots_for(nodes))
        print(f"  hotspots N={nodes}: {results[-1]}", file=sys.stderr)
    return results


# --- driver ---------------------------------------------------------------------------------


def run_child(arguments: list[str], timeout: float) -> Result:
    """Run this module in a fresh interpreter; its last stdout line is the JSON result."""
    command = [PYTHON, "-m", "bench.program_scale", *arguments]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    result: Result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - started
    return result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def mib(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.0f}"


def bench_mock(sizes: Sequence[int], runs: int | None, phases: bool, gc_mode: str = "default") -> list[Result]:
    summaries = []
    for nodes in sizes:
        count = runs or DEFAULT_RUNS.get(nodes, 3)
        results = []
        for _ in range(count):
            arguments = ["_mock", str(nodes), "--gc", gc_mode] + ([] if phases else ["--no-phases"])
            results.append(run_child(arguments, timeout=3600))
            last = results[-1]
            print(
                f"  mock N={nodes}: {last['wall_s']:.2f} s, {last['resources']} resources, "
                f"VmHWM {mib(last['vmhwm_kb'])} MiB, load {last['load1_before']:.1f}",
                file=sys.stderr,
            )
        phase_names = sorted({name for r in results for name in r["phases_s"]})
        summaries.append(
            {
                "mode": "mock",
                "nodes": nodes,
                "gc": gc_mode,
                "gc_collections": results[0]["gc_collections"],
                "runs": count,
                "wall_s_median": median([r["wall_s"] for r in results]),
                "wall_s_all": [round(r["wall_s"], 3) for r in results],
                "cpu_s_median": median([r["cpu_s"] for r in results]),
                "import_s_median": median([r["import_s"] for r in results]),
                "process_wall_s_median": median([r["process_wall_s"] for r in results]),
                "resources": results[0]["resources"],
                "custom_resources": results[0]["custom_resources"],
                "by_type": results[0]["by_type"],
                "vmhwm_kb_max": max(r["vmhwm_kb"] or 0 for r in results),
                "ru_maxrss_kb_max": max(r["ru_maxrss_kb"] for r in results),
                "rss_before_kb": results[0]["rss_before_kb"],
                "phases_s_median": {
                    name: median([r["phases_s"].get(name, 0.0) for r in results]) for name in phase_names
                },
                "load1": [round(r["load1_before"], 2) for r in results],
            }
        )
    return summaries


def bench_preview(sizes: Sequence[int], previews: int) -> list[Result]:
    from tests.toolchain import require_toolchain

    try:
        require_toolchain(language_host=False)
    except FileNotFoundError as missing:
        sys.exit(f"no real-engine preview: {missing}")
    results = []
    for nodes in sizes:
        result = run_child(["_preview", str(nodes), "--previews", str(previews)], timeout=3 * 3600)
        for run in result["runs"]:
            print(
                f"  preview N={nodes} ({run['caches']}): {run['wall_s']:.1f} s, "
                f"{run['resource_pre_events']} resource events, program peak {mib(run['program_peak_rss_kb'])} MiB, "
                f"load {run['load1_before']:.1f}" + (" ERROR" if run["error"] else ""),
                file=sys.stderr,
            )
        results.append(result)
    return results


def mock_table(summaries: list[Result]) -> str:
    lines = [
        "| nodes | runs | wall (median) | all runs | process CPU | resources | peak RSS (VmHWM) | RSS before run "
        "| parse_settings | NodeCertificate | KubeletNode | outputs after body | mock providers (threads) | load1 |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in summaries:
        phases = s["phases_s_median"]
        lines.append(
            f"| {s['nodes']} | {s['runs']} | {s['wall_s_median']:.2f} s | {', '.join(map(str, s['wall_s_all']))} "
            f"| {s['cpu_s_median']:.2f} s | {s['resources']} | {mib(s['vmhwm_kb_max'])} MiB "
            f"| {mib(s['rss_before_kb'])} MiB | "
            + " | ".join(
                f"{phases[name]:.2f} s" if name in phases else "-"
                for name in ("parse_settings", "NodeCertificate", "KubeletNode", "outputs_after_body", "mock_providers")
            )
            + f" | {', '.join(map(str, s['load1']))} |"
        )
    return "\n".join(lines)


def preview_table(results: list[Result]) -> str:
    lines = [
        "| nodes | caches | wall | resource events | program, inline (CPU, peak RSS of its process) | pulumi CLI peak "
        "| plugins peak | mypy (time, peak) | tree RSS peak | load1 |",
        "| ---: | --- | ---: | ---: | --- | ---: | --- | --- | ---: | --- |",
    ]
    for result in results:
        for run in result["runs"]:
            roles = run["roles"]
            mypy = roles.get("typechecker (mypy)", {})
            plugins = ", ".join(
                f"{role.removeprefix('plugin ')} {mib(entry['peak_rss_kb'])} MiB"
                for role, entry in sorted(roles.items())
                if role.startswith("plugin ")
            )
            program_time = f"{run['program_cpu_s']:.1f} s CPU"
            mypy_cell = f"{mypy['longest_s']:.1f} s, {mib(mypy['peak_rss_kb'])} MiB" if mypy else "-"
            lines.append(
                f"| {result['nodes']} | {run['caches']} | {run['wall_s']:.1f} s"
                + (" (failed)" if run["error"] else "")
                + f" | {run['resource_pre_events']} | {program_time}, {mib(run['program_peak_rss_kb'])} MiB "
                f"| {mib(roles.get('pulumi CLI', {}).get('peak_rss_kb'))} MiB | {plugins or '-'} | {mypy_cell} "
                f"| {mib(run['tree_rss_peak_kb'])} MiB | {run['load1_before']:.1f} → {run['load1_after']:.1f} |"
            )
    return "\n".join(lines)


def profile(nodes: int, top: int, sort: str, out: Path | None) -> None:
    import cProfile
    import pstats

    from tests.pulumi_harness import run_program

    config = synthetic_config(nodes)
    profiler = cProfile.Profile()
    load_before = load1()
    start = time.perf_counter()
    profiler.enable()
    run_program(config)
    profiler.disable()
    wall = time.perf_counter() - start
    print(f"# mock evaluation of {nodes} nodes under cProfile: {wall:.2f} s, load1 {load_before:.1f} → {load1():.1f}")
    if out is not None:
        profiler.dump_stats(out)  # python -m pstats OUT, or snakeviz
    pstats.Stats(profiler).sort_stats(sort).print_stats(top)


def machine() -> str:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return (
        f"nproc {os.cpu_count()}, {memory.split(':')[1].strip()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load1 {load1():.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    mock = commands.add_parser("mock", help="mock-engine evaluation")
    mock.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    mock.add_argument("--runs", type=int, help="runs per size (default: 5 up to 30 nodes, 3 for 300, 2 for 1000)")
    mock.add_argument("--no-phases", action="store_true", help="do not wrap functions for the phase split")
    mock.add_argument("--gc", choices=GC_MODES, default="default", help="what-if: garbage collector setting")
    mock.add_argument("--json", type=Path, help="write the raw results here")
    preview = commands.add_parser("preview", help="real-engine pulumi preview")
    preview.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    preview.add_argument("--previews", type=int, default=2, help="previews in a row per size (1st cold, then warm)")
    preview.add_argument("--json", type=Path, help="write the raw results here")
    check = commands.add_parser("typecheck", help="the language host's mypy step, standalone")
    check.add_argument("--runs", type=int, default=3, help="runs in a row (1st cold)")
    check.add_argument("--json", type=Path, help="write the raw results here")
    spots = commands.add_parser("hotspots", help="micro-benchmarks of the hot spots and their alternatives")
    spots.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    spots.add_argument("--json", type=Path, help="write the raw results here")
    prof = commands.add_parser("profile", help="cProfile one mock evaluation")
    prof.add_argument("--nodes", type=int, default=300)
    prof.add_argument("--top", type=int, default=30)
    prof.add_argument("--sort", default="cumulative")
    prof.add_argument("--out", type=Path, help="also write the raw profile here (for pstats/snakeviz)")
    child_mock = commands.add_parser("_mock", help=argparse.SUPPRESS)
    child_mock.add_argument("nodes", type=int)
    child_mock.add_argument("--no-phases", action="store_true")
    child_mock.add_argument("--gc", choices=GC_MODES, default="default")
    child_preview = commands.add_parser("_preview", help=argparse.SUPPRESS)
    child_preview.add_argument("nodes", type=int)
    child_preview.add_argument("--previews", type=int, default=2)
    args = parser.parse_args()

    if args.command == "_mock":
        print(json.dumps(mock_child(args.nodes, not args.no_phases, args.gc)))
    elif args.command == "_preview":
        print(json.dumps(preview_child(args.nodes, args.previews)))
    elif args.command == "profile":
        profile(args.nodes, args.top, args.sort, args.out)
    else:
        print(f"# {machine()}")
        if args.command == "mock":
            summaries = bench_mock(args.sizes, args.runs, not args.no_phases, args.gc)
            print(mock_table(summaries))
        elif args.command == "hotspots":
            summaries = hotspots(args.sizes)
            print(
                "| nodes | parse_settings | pairwise overlap check (as now) | sorted sweep | YAML dumps, pure Python "
                "(3/node) | YAML, libyaml CSafeDumper (2/node) | script + stdin text per node | load1 |"
            )
            print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in summaries:
                print(
                    f"| {r['nodes']} | {r['parse_settings_cpu_s']:.3f} s | {r['overlap_pairwise_cpu_s']:.3f} s "
                    f"| {r['overlap_sorted_cpu_s']:.3f} s | {r['yaml_pure_cpu_s']:.3f} s "
                    f"| {r['yaml_c_cpu_s']:.3f} s{'' if r['yaml_c_same_text'] else ' (different text!)'} "
                    f"| {r['command_text_bytes_per_node'] / 1024:.0f} KiB | {r['load1']:.1f} |"
                )
        elif args.command == "typecheck":
            summaries = typecheck(args.runs)
            print("| run | .mypy_cache | wall | CPU | peak RSS | exit | load1 |")
            print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
            for r in summaries:
                print(
                    f"| {r['run']} | {r['cache']} | {r['wall_s']:.1f} s | {r['cpu_s']:.1f} s "
                    f"| {mib(r['maxrss_kb'])} MiB | {r['exit_code']} | {r['load1_before']:.1f} |"
                )
        else:
            summaries = bench_preview(args.sizes, args.previews)
            print(preview_table(summaries))
        print(f"# done: {machine()}")
        if args.json:
            args.json.write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
