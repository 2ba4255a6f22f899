"""Tests written for mutants that survived scripts/mutations (docs/mutations.md): behaviour of
the node-step renderer and the allocatable arithmetic that no other fast test pinned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components import node_scripts, paths
from components.allocatable import allocatable, node_summary_from_facts
from components.bundle import unpack
from components.quantities import cpu_shares, cpu_weight
from components.settings import Settings, parse_settings
from tests.stack_config import homelab_config
from tests.test_renderers import stack, steps

GOLDEN = Path(__file__).resolve().parent / "golden" / "homelab"
GI = 2**30
MI = 2**20


def partial_reservations_settings(system: dict[str, str], kube: dict[str, str]) -> Settings:
    """Homelab with only some reservations set, and the evictionHard memory threshold switched
    off ("0%"; without it the kubelet's 100Mi applies): the reservations that are absent count as 0."""
    raw = homelab_config()
    raw["reservations"]["systemReserved"] = system
    raw["reservations"]["kubeReserved"] = kube
    raw["reservations"]["evictionHard"] = {"memory.available": "0%", "nodefs.available": "10%"}
    raw["reservations"]["enforceNodeAllocatable"] = ["pods"]
    raw["reservations"].pop("kubeReservedCgroup", None)
    raw["reservations"].pop("systemReservedCgroup", None)
    return parse_settings(raw)


# systemReserved, kubeReserved; the allocatable of 2 CPUs and 4Gi; preflight's memory bytes
PARTIAL = [
    ({"memory": "256Mi"}, {"cpu": "500m"},
     {"cpu": "1500m", "memory": "3840Mi", "cpuFormula": "2000m - 0m - 500m = 1500m",
      "memoryFormula": "4096Mi - 256Mi - 0Mi - 0Mi = 3840Mi"}, (256 * MI, 0)),
    ({"cpu": "250m"}, {"memory": "512Mi"},
     {"cpu": "1750m", "memory": "3584Mi", "cpuFormula": "2000m - 250m - 0m = 1750m",
      "memoryFormula": "4096Mi - 0Mi - 512Mi - 0Mi = 3584Mi"}, (0, 512 * MI)),
]


@pytest.mark.parametrize(("system", "kube", "table", "memory_bytes"), PARTIAL)
def test_absent_reservations_count_as_zero(
    system: dict[str, str], kube: dict[str, str], table: dict[str, str], memory_bytes: tuple[int, int],
) -> None:
    settings = partial_reservations_settings(system, kube)
    assert allocatable(settings.reservations, 2, 4 * GI) == table
    script = node_scripts.preflight(settings, settings.nodes[0]).create_script
    system_bytes, kube_bytes = memory_bytes
    assert re.search(rf"^SYSTEM_RESERVED_MEMORY_BYTES={system_bytes}$", script, re.MULTILINE)
    assert re.search(rf"^KUBE_RESERVED_MEMORY_BYTES={kube_bytes}$", script, re.MULTILINE)
    assert re.search(rf"^RESERVED_MEMORY_BYTES={system_bytes + kube_bytes}$", script, re.MULTILINE)
    assert re.search(r"^EVICTION_BASIS_POINTS=0$", script, re.MULTILINE)


def test_node_summary_carries_the_facts_and_their_allocatable() -> None:
    settings, _ = stack("homelab")
    facts = {"cpus": "4", "memoryBytes": str(8 * GI), "cgroups": "v2"}
    summary = node_summary_from_facts(json.dumps(facts), settings.reservations)
    assert summary == {"facts": facts, "allocatable": allocatable(settings.reservations, 4, 8 * GI)}
    assert summary["allocatable"]["memory"] == "6812Mi"


def test_cpu_weight_at_cgroup_v1s_largest_shares_is_v2s_largest_weight() -> None:
    # 256 CPUs: shares 262144 (cgroup v1's maximum) -> weight 10000 (cgroup v2's maximum).
    assert (cpu_shares(256_000), cpu_weight(256_000)) == (262144, 10000)
    assert cpu_weight(128_000) == 1 + (131072 - 2) * 9999 // 262142 == 5000


def test_the_configure_bundle_carries_the_golden_files_with_their_modes() -> None:
    settings, node = stack("homelab")
    files = {file.path: (file.mode, file.content) for file in unpack(node_scripts.configure_bundle(settings, node))}
    golden = {
        paths.KUBELET_CONFIG: "kubelet-config.yaml",
        paths.KUBELET_UNIT: "kubelet.service",
        paths.slice_unit("kube.slice"): "kube.slice",
        paths.slice_dropin("system.slice"): "system.slice.d-10-homelab-kubelet-reserved.conf",
        paths.CONTAINERD_DROPIN: "containerd.service.d-10-homelab-kubelet-slice.conf",
        paths.CRICTL_CONFIG: "crictl.yaml",
    }
    for path, name in golden.items():
        assert files.pop(path) == ("0644", (GOLDEN / name).read_text()), path
    helper = Path(node_scripts.__file__).with_name("node_steps") / "prepare-cgroups.sh"
    assert files == {paths.CGROUP_HELPER: ("0755", helper.read_text())}


def test_false_renders_as_the_word_false() -> None:
    _, node = stack("homelab")
    script = node_scripts.render_script("t", node, {"ON": True, "OFF": False}, "hold.sh")
    assert "\nON=true\nOFF=false\n" in script


def test_hint_texts_keep_their_own_underscore_equals() -> None:
    _, node = stack("homelab")
    script = node_scripts.render_script("t", node, {"HINT_TEXTS": ["set A_=1", "and B_=2"]}, "hold.sh")
    assert "\nHINT_TEXTS=('set A_=1' 'and B_=2')\n" in script


def test_a_command_without_a_note_ends_with_the_bare_comment() -> None:
    step = steps(*stack("homelab"))[node_scripts.PREFLIGHT]
    assert step.command("create").endswith("\n# homelab-kubelet preflight on k8s-node1\n")
    assert step.command("create", "v1.30.1").endswith("\n# homelab-kubelet preflight on k8s-node1: v1.30.1\n")


def test_command_refusals_say_why() -> None:
    step = steps(*stack("homelab"))[node_scripts.PREFLIGHT]
    with pytest.raises(ValueError, match=r"^step preflight has no delete script$"):
        step.command("delete")
    with pytest.raises(ValueError, match=r"^a step note is one line$"):
        step.command("create", "two\nlines")


def test_content_hash_is_16_hex_digits_that_change_with_any_part() -> None:
    digest = node_scripts.content_hash("cert", "key")
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert digest == node_scripts.content_hash("cert", "key")
    # Each part is hashed on its own: moving text between parts changes the digest.
    others = {node_scripts.content_hash(*parts) for parts in [("cert", "kez"), ("cer", "tkey"), ("certkey",), ()]}
    assert digest not in others and len(others) == 4
