"""The real kubelet's configuration loader and validation judge what the program renders.

tests/kubelet_check/main.go is built against k8s.io/kubernetes v1.30.1 (with the go.mod
`scripts/toolchain kubelet` made, offline: GOPROXY=off) and loads each kubelet-config.yaml as the
kubelet does at start: decoding and defaulting, the evictionHard defaults, the file's feature
gates, ValidateKubeletConfiguration and the eviction thresholds. Every rendered configuration
(both stacks, all nodes, and the explicit choices of the typed settings) must pass; what the
settings refuse because the kubelet would refuse it at start must fail there too, with the
kubelet's message. A first build compiles the kubelet's config packages (minutes on two cores);
with the kubelet's build cache warm it takes seconds.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.kubelet_config import kubelet_configuration, render_kubelet_config
from components.settings import SettingsError, parse_settings
from components.yaml_text import dump_yaml
from tests.stack_config import homelab_config
from tests.test_renderers import STACKS, stack
from tests.toolchain import REPO, cache_dir

pytestmark = pytest.mark.toolchain

VERSION = "v1.30.1"
SOURCE = REPO / "tests" / "kubelet_check" / "main.go"
GO_TOOLCHAIN = "go1.22.12"  # the kubelet's (scripts/toolchain KUBELET_GOTOOLCHAIN)


@pytest.fixture(scope="module")
def kubelet_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = cache_dir() / "work" / f"kubelet-{VERSION}"
    if not (work / "go.mod").is_file():
        pytest.fail(f"{work / 'go.mod'} is missing: run `scripts/toolchain kubelet {VERSION}`")
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH (scripts/toolchain fetches its toolchain through it)")
    build = tmp_path_factory.mktemp("kubelet-check")
    (build / "go.mod").write_text((work / "go.mod").read_text().replace(
        "module homelab-kubelet/toolchain/kubelet", "module homelab-kubelet/tests/kubelet_check", 1))
    shutil.copy(work / "go.sum", build / "go.sum")
    shutil.copy(SOURCE, build / "main.go")
    env = {
        **os.environ, "GOMODCACHE": str(cache_dir() / "go" / "mod"), "GOCACHE": str(cache_dir() / "go" / "build"),
        "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": GO_TOOLCHAIN, "CGO_ENABLED": "0",
    }
    built = subprocess.run(["nice", "-n", "10", go, "build", "-p", "2", "-trimpath", "-o", "kubelet_check", "."],
                           cwd=build, env=env, capture_output=True, text=True, check=False, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr
    return build / "kubelet_check"


def run_check(binary: Path, configs: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """name -> the checker's line for that configuration (after `<file>: `)."""
    files = []
    for name, text in configs.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        files.append(str(path))
    result = subprocess.run([str(binary), *files], capture_output=True, text=True, check=False, timeout=120)
    lines = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": " in line}
    return {name: lines.get(str(tmp_path / f"{name}.yaml"), result.stderr[-2000:]) for name in configs}


def rendered_configs() -> dict[str, str]:
    configs = {}
    for stack_name in STACKS:
        settings, _ = stack(stack_name)
        for node in settings.nodes:
            configs[f"{stack_name}-{node.name}"] = render_kubelet_config(settings, node)
    raw = homelab_config()
    raw["kubelet"].update(
        systemCgroups="/systemd/system.slice", memoryManagerPolicy="Static",
        config={"shutdownGracePeriodByPodPriority": [{"priority": 1000, "shutdownGracePeriodSeconds": 10}],
                "evictionMinimumReclaim": {"nodefs.available": "5%"}, "logging": {"format": "text"}, "port": 10251},
    )
    raw["reservations"]["evictionHard"] = {"memory.available": "200Mi", "imagefs.inodesFree": "0%"}
    raw["reservations"]["reservedMemory"] = [{"numaNode": 0, "limits": {"memory": "1Gi"}},
                                             {"numaNode": 1, "limits": {"memory": "456Mi"}}]
    settings = parse_settings(raw)
    configs["explicit"] = render_kubelet_config(settings, settings.node("k8s-node1"))
    return configs


def test_every_rendered_configuration_is_one_the_kubelet_starts_with(kubelet_check: Path, tmp_path: Path) -> None:
    configs = rendered_configs()
    results = run_check(kubelet_check, configs, tmp_path)
    assert all(line.startswith("ok: ") for line in results.values()), results
    # The kubelet runs with all of its evictionHard defaults: none was dropped.
    for line in results.values():
        for signal in ("nodefs.available", "nodefs.inodesFree", "imagefs.available"):
            assert f"{signal}:" in line, line


# What the settings refuse because the kubelet refuses it at start: (stack kubelet settings, the
# fields written straight into a rendered homelab configuration, the kubelet's message).
REFUSED: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "image GC high below the default low": (
        {"imageGCHighThresholdPercent": 75}, {"imageGCHighThresholdPercent": 75},
        "imageGCLowThresholdPercent (--image-gc-low-threshold) 80 must be less than imageGCHighThresholdPercent",
    ),
    "a locked gate": ({"featureGates": {"CPUManager": False}}, {"featureGates": {"CPUManager": False}},
                      "cannot set feature gate CPUManager to false, feature is locked to true"),
    "an unknown gate": ({"featureGates": {"GracefulNodeShutdwn": True}}, {"featureGates": {"GracefulNodeShutdwn": True}},
                        "unrecognized feature gate: GracefulNodeShutdwn"),
    "UnlimitedSwap": ({"failSwapOn": False, "memorySwap": {"swapBehavior": "UnlimitedSwap"}},
                      {"failSwapOn": False, "memorySwap": {"swapBehavior": "UnlimitedSwap"}},
                      'memorySwap.swapBehavior "UnlimitedSwap" must be one of'),
    "swap with NodeSwap off": ({"failSwapOn": False, "memorySwap": {"swapBehavior": "NoSwap"}, "featureGates": {"AllBeta": False}},
                               {"failSwapOn": False, "memorySwap": {"swapBehavior": "NoSwap"}, "featureGates": {"AllBeta": False}},
                               "memorySwap.swapBehavior cannot be set when NodeSwap feature flag is disabled"),
    "a grace period under a second": ({"shutdownGracePeriod": "500ms"}, {"shutdownGracePeriod": "500ms"},
                                      "shutdownGracePeriod {500ms} must be either zero or otherwise >= 1 sec"),
    "critical pods over the grace period": (
        {"shutdownGracePeriod": "20s", "shutdownGracePeriodCriticalPods": "60s"},
        {"shutdownGracePeriod": "20s", "shutdownGracePeriodCriticalPods": "60s"},
        "shutdownGracePeriodCriticalPods {1m0s} must be <= shutdownGracePeriod {20s}",
    ),
    "graceful shutdown with its gate off": (
        {"shutdownGracePeriod": "60s", "featureGates": {"GracefulNodeShutdown": False}},
        {"shutdownGracePeriod": "60s", "featureGates": {"GracefulNodeShutdown": False}},
        "requires feature gate GracefulNodeShutdown",
    ),
    "a soft threshold without a grace period": (
        {"config": {"evictionSoft": {"memory.available": "300Mi"}}}, {"evictionSoft": {"memory.available": "300Mi"}},
        "grace period must be specified for the soft eviction threshold memory.available",
    ),
    "an unknown eviction signal": (
        {"config": {"evictionSoft": {"memory.availble": "300Mi"}, "evictionSoftGracePeriod": {"memory.availble": "1m"}}},
        {"evictionSoft": {"memory.availble": "300Mi"}, "evictionSoftGracePeriod": {"memory.availble": "1m"}},
        "unsupported eviction signal memory.availble",
    ),
    "a minimum reclaim of 0%": ({"config": {"evictionMinimumReclaim": {"memory.available": "0%"}}},
                                {"evictionMinimumReclaim": {"memory.available": "0%"}},
                                "eviction percentage minimum reclaim memory.available must be positive: 0%"),
    "parallel pulls with serialized pulls": (
        {"serializeImagePulls": True, "config": {"maxParallelImagePulls": 2}}, {"serializeImagePulls": True, "maxParallelImagePulls": 2},
        "maxParallelImagePulls cannot be larger than 1 unless SerializeImagePulls",
    ),
    "reservedSystemCPUs with the reserved cgroups": (
        {"config": {"reservedSystemCPUs": "0"}}, {"reservedSystemCPUs": "0"},
        "can't use reservedSystemCPUs (--reserved-cpus) with systemReservedCgroup",
    ),
    "a duration as a number": ({"shutdownGracePeriod": 60}, {"shutdownGracePeriod": 60}, "cannot unmarshal number"),
}


def test_what_the_settings_refuse_the_kubelet_refuses(kubelet_check: Path, tmp_path: Path) -> None:
    base = kubelet_configuration(*stack("homelab"))
    configs = {}
    for name, (kubelet, fields, _) in REFUSED.items():
        raw = homelab_config()
        raw["kubelet"].update(copy.deepcopy(kubelet))
        with pytest.raises(SettingsError):
            parse_settings(raw)
        configs[name.replace(" ", "-")] = dump_yaml({**copy.deepcopy(base), **fields})
    results = run_check(kubelet_check, configs, tmp_path)
    for name, (_, _, message) in REFUSED.items():
        line = results[name.replace(" ", "-")]
        assert not line.startswith("ok: ") and message in line, (name, line)
