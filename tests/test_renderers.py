"""Rendered files and node command lines: golden files plus properties that are not golden.

Golden files live in tests/golden/<stack>/ for node k8s-node1 of two stacks: `homelab`
(Pulumi.homelab.yaml as it is) and `variant` (the homelab stack with a non-root sudo user
`kube`, authMode permissive, labels, taints, extraArgs, a nodeIP, a per-node reservation
override and RSA keys; see `variant_config`). The homelab stack's node scripts are golden whole; the variant's
only up to lib.sh (`*.header.sh`: strict mode, title, variables), since
`test_scripts_are_header_lib_and_bodies` proves every script is header + lib.sh + its bodies. A
mismatch fails with a unified diff. After an intended
change, rewrite them and review the diff before committing (no test ever writes them):

    scripts/update-golden
    git diff tests/golden/

The configure-and-start golden files embed `components.hints.catalogue_hints()`, so a change of the
troubleshooting catalogue shows up there too.

The property tests below do not use the golden files: expected values are computed by hand in
the test (bytes of 1024Mi, cpu.weight of 1024m, ...) or come from the v1.30 field list.
"""

from __future__ import annotations

import base64
import copy
import difflib
import re
import shlex
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import node_scripts, paths, systemd
from components.allocatable import allocatable, reserved_memory_bytes
from components.bundle import END_MARKER, FILE_MARKER, NodeFile, pack, unpack
from components.hints import catalogue_hints
from components.kubeconfig import render_kubeconfig
from components.kubelet_api import kubelet_api
from components.kubelet_config import render_crictl_config, render_kubelet_config
from components.quantities import (
    cpu_shares,
    cpu_weight,
    format_bytes,
    format_millicores,
    parse_quantity,
    to_bytes,
    to_millicores,
)
from components.settings import NodeSettings, Settings, parse_settings
from tests.stack_config import homelab_config

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
# The kubelet v1.30.1 sources' field lists (components/data/kubelet-v1.30.json, re-extracted by a
# toolchain test).
FIELDS = kubelet_api("v1.30").structs  # type: ignore[union-attr]
NODE = "k8s-node1"

# Fixed dummy PEM texts: not real certificates or keys, only distinct recognisable strings.
DUMMY_CA = "-----BEGIN CERTIFICATE-----\nRFVNTVktQ0EtQ0VSVElGSUNBVEU=\n-----END CERTIFICATE-----\n"
DUMMY_CERT = "-----BEGIN CERTIFICATE-----\nRFVNTVktTk9ERS1DRVJUSUZJQ0FURQ==\n-----END CERTIFICATE-----\n"
DUMMY_KEY = "-----BEGIN EC PRIVATE KEY-----\nRFVNTVktTk9ERS1LRVk=\n-----END EC PRIVATE KEY-----\n"


# Every typed kubelet setting that is off by default, set (the variant's golden kubelet-config.yaml).
VARIANT_KUBELET = {
    "failSwapOn": False,
    "memorySwap": {"swapBehavior": "LimitedSwap"},
    "shutdownGracePeriod": "60s",  # Kubespray's 60s/20s
    "shutdownGracePeriodCriticalPods": "20s",
    "imageGCHighThresholdPercent": 75,
    "imageGCLowThresholdPercent": 60,
    "imageMinimumGCAge": "5m",
    "containerLogMaxSize": "20Mi",
    "containerLogMaxFiles": 3,
    "maxPods": 100,
    "featureGates": {"NodeSwap": True},
    "serializeImagePulls": False,
    "cpuManagerPolicy": "static",
    "memoryManagerPolicy": "Static",
    "config": {"podPidsLimit": 4096, "evictionSoft": {"memory.available": "300Mi"},
               "evictionSoftGracePeriod": {"memory.available": "1m30s"}, "maxParallelImagePulls": 2},
}


def variant_config() -> dict[str, Any]:
    raw = homelab_config()
    raw["ssh"]["user"] = "kube"
    raw["kubelet"]["authMode"] = "permissive"
    raw["kubelet"].update(copy.deepcopy(VARIANT_KUBELET))
    raw["pki"].update(algorithm="RSA", rsaBits=4096)
    raw["nodes"][1].update(
        # No node-role.kubernetes.io/*: the kubelet refuses such --node-labels (see test_settings).
        labels={"example.com/gpu": "", "topology.kubernetes.io/zone": "rack-1"},
        taints=[
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "example.com/maintenance", "effect": "PreferNoSchedule"},
        ],
        # A flag the kubelet does not deprecate (configuration flags it does are refused).
        extraArgs={"vmodule": "eviction_manager=4"},
        maxPods=50,
        reservations={"kubeReserved": {"cpu": "512m", "memory": "768Mi"}},
        ips=["192.168.1.11"],
        nodeIP="192.168.1.11",
    )
    return raw


STACKS = {"homelab": homelab_config, "variant": variant_config}


def stack(name: str) -> tuple[Settings, NodeSettings]:
    settings = parse_settings(STACKS[name]())
    return settings, settings.node(NODE)


NOTE = "kubelet v1.30.1 (arm64), credentials 0123456789abcdef"


def steps(settings: Settings, node: NodeSettings) -> dict[str, node_scripts.Step]:
    rendered = (
        node_scripts.preflight(settings, node),
        node_scripts.node_address(node),
        node_scripts.install_kubelet(settings, node),
        node_scripts.write_credentials(node),
        node_scripts.configure_and_start(settings, node, catalogue_hints()),
    )
    return {step.name: step for step in rendered}


def step_scripts(settings: Settings, node: NodeSettings) -> dict[str, str]:
    """Every script of every step: `<step>.create` (create and update) and `<step>.delete`."""
    scripts: dict[str, str] = {}
    for name, step in steps(settings, node).items():
        scripts[f"{name}.create"] = step.create_script
        if step.delete_script is not None:
            scripts[f"{name}.delete"] = step.delete_script
    return scripts


def command_lines(settings: Settings, node: NodeSettings) -> dict[str, str]:
    """Every command line: `<step>.create`, `.update` and `.delete` (configure-and-start with NOTE)."""
    lines: dict[str, str] = {}
    for name, step in steps(settings, node).items():
        note = NOTE if name == node_scripts.CONFIGURE_AND_START else ""
        modes: tuple[node_scripts.Mode, ...] = ("create", "update", "delete") if step.delete_script else ("create", "update")
        for mode in modes:
            lines[f"{name}.{mode}"] = step.command(mode, "" if mode == "delete" else note)
    return lines


def rendered_files(settings: Settings, node: NodeSettings) -> dict[str, str]:
    units = systemd.unit_files(settings, node)
    files = {
        "kubelet-config.yaml": render_kubelet_config(settings, node),
        "kubelet.service": units[paths.KUBELET_UNIT],
        "kube.slice": units[systemd.slice_path("kube.slice")],
        "system.slice.d-10-homelab-kubelet-reserved.conf": units[systemd.slice_path("system.slice")],
        "containerd.service.d-10-homelab-kubelet-slice.conf": units[paths.CONTAINERD_DROPIN],
        "crictl.yaml": render_crictl_config(settings),
        "kubeconfig": render_kubeconfig(
            cluster_name="kubernetes",
            server=settings.kubernetes.api_server,
            ca_cert_pem=DUMMY_CA,
            client_cert_pem=DUMMY_CERT,
            client_key_pem=DUMMY_KEY,
            user=node.cert_common_name,
        ),
    }
    scripts = step_scripts(settings, node)
    if node.name == NODE and settings == stack("homelab")[0]:
        files.update({f"{name}.sh": script for name, script in scripts.items()})
    else:
        # Other stacks pin only what varies, the header (test_scripts_are_header_lib_and_bodies).
        files.update({f"{name}.header.sh": script_header(script) for name, script in scripts.items()})
    files["commands.txt"] = "".join(f"== {name}\n{line}" for name, line in command_lines(settings, node).items())
    return files


LIB_TEXT = (node_scripts.SCRIPTS_DIR / "lib.sh").read_text().rstrip("\n")
# How each script is composed: (the create or delete) -> its bodies after lib.sh.
SCRIPT_BODIES = {
    "preflight.create": ("preflight.sh",),
    "node-address.create": ("node-address.sh",),
    "install-kubelet.create": ("lock.sh", "install-kubelet.sh", "hold.sh"),
    "install-kubelet.delete": ("lock.sh", "release.sh", "remove-kubelet.sh", "tidy-state.sh"),
    "credentials.create": ("lock.sh", "write-credentials.sh", "hold.sh"),
    "credentials.delete": ("lock.sh", "release.sh", "remove-files.sh", "tidy-state.sh"),
    "configure-and-start.create": (
        "lock.sh", "rollback.sh", "configure.sh", "start-kubelet.sh", "check-registration.sh", "hold.sh",
    ),
    "configure-and-start.delete": ("lock.sh", "release.sh", "unconfigure.sh", "tidy-state.sh"),
}


def script_header(script: str) -> str:
    """What precedes lib.sh in a rendered script: strict mode, the title and the variables."""
    header, found, _ = script.partition(LIB_TEXT)
    assert found, "lib.sh is not in the script"
    return header


def golden_cases() -> list[tuple[str, str]]:
    return [(name, file) for name in STACKS for file in rendered_files(*stack(name))]


def write_golden_files() -> list[Path]:
    """Rewrite every golden file from the renderers (scripts/update-golden; never run by a test)."""
    written = []
    for stale in GOLDEN.rglob("*"):
        if stale.is_file():
            stale.unlink()
    for name in STACKS:
        for file, text in rendered_files(*stack(name)).items():
            path = GOLDEN / name / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def assert_golden(path: Path, actual: str) -> None:
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with scripts/update-golden and review it")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path} (golden)",
                tofile="rendered",
            )
        )
        pytest.fail(f"rendered output differs from {path}; if intended, run scripts/update-golden\n{diff}")


@pytest.mark.parametrize(("stack_name", "file"), golden_cases(), ids=[f"{s}/{f}" for s, f in golden_cases()])
def test_golden(stack_name: str, file: str) -> None:
    assert_golden(GOLDEN / stack_name / file, rendered_files(*stack(stack_name))[file])


def test_no_stale_golden_files() -> None:
    expected = {f"{name}/{file}" for name, file in golden_cases()}
    present = {str(path.relative_to(GOLDEN)) for path in GOLDEN.rglob("*") if path.is_file()}
    assert present == expected


def test_assert_golden_reports_a_diff(tmp_path: Path) -> None:
    golden = tmp_path / "file"
    golden.write_text("a\nb\n")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)-b\n\+c"):
        assert_golden(golden, "a\nc\n")


def test_variant_stack_is_what_it_claims() -> None:
    settings, node = stack("variant")
    assert (node.user, node.is_root) == ("kube", False)
    assert settings.kubelet.auth_mode == "permissive"
    assert settings.pki.algorithm == "RSA"
    assert node.labels and node.taints and node.extra_args
    assert node.node_ip == "192.168.1.11"
    assert node.reservations.kube_reserved.as_kubelet_map() == {"cpu": "512m", "memory": "768Mi"}


# --- kubelet-config.yaml ----------------------------------------------------------------------

NESTED = {
    ("authentication",): "KubeletAuthentication",
    ("authentication", "anonymous"): "KubeletAnonymousAuthentication",
    ("authentication", "webhook"): "KubeletWebhookAuthentication",
    ("authentication", "x509"): "KubeletX509Authentication",
    ("authorization",): "KubeletAuthorization",
    ("authorization", "webhook"): "KubeletWebhookAuthorization",
}


def kubelet_config(stack_name: str) -> tuple[str, dict[str, Any]]:
    settings, node = stack(stack_name)
    text = render_kubelet_config(settings, node)
    return text, yaml.safe_load(text)


@pytest.mark.parametrize("stack_name", STACKS)
def test_kubelet_config_has_only_v1_30_fields(stack_name: str) -> None:
    text, config = kubelet_config(stack_name)
    assert config["kind"] == "KubeletConfiguration"
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    unknown = set(config) - {"apiVersion", "kind"} - set(FIELDS["KubeletConfiguration"])
    assert not unknown
    for keys, type_name in NESTED.items():
        section: Any = config
        for key in keys:
            section = section.get(key, {})
        assert isinstance(section, dict)
        assert not set(section) - set(FIELDS[type_name]), (keys, section)
    assert "runtimeCgroups" not in config
    assert "runtimeCgroups" not in text


def test_field_list_sanity() -> None:
    # The property test above is only as good as the list: it must know the real fields.
    for present in ("kubeReserved", "systemReserved", "enforceNodeAllocatable", "readOnlyPort"):
        assert present in FIELDS["KubeletConfiguration"]
    assert "runtimeCgroups" not in FIELDS["KubeletConfiguration"]


def test_secure_mode() -> None:
    _, config = kubelet_config("homelab")
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authentication"]["x509"] == {"clientCAFile": "/var/lib/kubernetes/ca.pem"}
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0


def test_permissive_mode() -> None:
    _, config = kubelet_config("variant")
    assert config["authentication"]["anonymous"] == {"enabled": True}
    assert config["authentication"]["webhook"]["enabled"] is False
    assert config["authorization"] == {"mode": "AlwaysAllow"}


def test_kubelet_config_values() -> None:
    _, config = kubelet_config("homelab")
    # Standalone mode only (and containerd's CNI conf_template): not rendered, see kubelet_config.py.
    assert "podCIDR" not in config
    assert config["clusterDNS"] == ["10.32.0.10"]
    assert config["tlsCertFile"] == "/var/lib/kubelet/k8s-node1.pem"
    assert config["tlsPrivateKeyFile"] == "/var/lib/kubelet/k8s-node1-key.pem"
    assert config["systemReserved"] == {"cpu": "256m", "memory": "256Mi"}
    assert config["kubeReserved"] == {"cpu": "1024m", "memory": "1024Mi"}
    assert config["enforceNodeAllocatable"] == ["pods", "kube-reserved", "system-reserved"]
    assert config["kubeletCgroups"] == "/kube.slice/kubelet.service"
    assert config["cgroupDriver"] == "systemd"
    assert "registerWithTaints" not in config
    # The kubelet's five defaults with the stack's memory.available over them: a kubelet given
    # some evictionHard keys drops its other defaults, so all are rendered.
    assert config["evictionHard"] == {
        "memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%",
        "imagefs.available": "15%", "imagefs.inodesFree": "5%",
    }
    _, variant = kubelet_config("variant")
    assert variant["kubeReserved"] == {"cpu": "512m", "memory": "768Mi"}
    assert variant["registerWithTaints"] == [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "example.com/maintenance", "effect": "PreferNoSchedule"},
    ]


# Typed settings that are rendered only when set -> the kubelet field each becomes.
OPTIONAL_FIELDS = {
    "shutdownGracePeriod": "shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods": "shutdownGracePeriodCriticalPods",
    "memorySwap": "memorySwap",
    "imageGCHighThresholdPercent": "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent": "imageGCLowThresholdPercent",
    "imageMinimumGCAge": "imageMinimumGCAge",
    "containerLogMaxSize": "containerLogMaxSize",
    "containerLogMaxFiles": "containerLogMaxFiles",
    "featureGates": "featureGates",
    "serializeImagePulls": "serializeImagePulls",
    "cpuManagerPolicy": "cpuManagerPolicy",
    "memoryManagerPolicy": "memoryManagerPolicy",
}


def test_typed_kubelet_settings_become_their_fields() -> None:
    _, homelab = kubelet_config("homelab")
    # Not set: the kubelet's own defaults apply, nothing is rendered.
    assert not set(OPTIONAL_FIELDS.values()) & set(homelab)
    assert not {"maxPods", "reservedMemory", "systemCgroups", "podPidsLimit"} & set(homelab)
    _, variant = kubelet_config("variant")
    for setting, field in OPTIONAL_FIELDS.items():
        assert variant[field] == VARIANT_KUBELET[setting], setting
    assert variant["failSwapOn"] is False
    assert variant["maxPods"] == 50  # nodes[1].maxPods over kubelet.maxPods (100)
    # kubelet.config's fields, as given.
    for field, value in VARIANT_KUBELET["config"].items():  # type: ignore[attr-defined]
        assert variant[field] == value, field
    # Static memory manager without reservedMemory: all kept memory on NUMA node 0, exactly
    # systemReserved 256Mi + kubeReserved 768Mi (the node's) + memory.available 100Mi.
    assert variant["reservedMemory"] == [{"numaNode": 0, "limits": {"memory": "1124Mi"}}]
    settings, _ = stack("variant")
    other = settings.node("k8s-node2")
    assert yaml.safe_load(render_kubelet_config(settings, other))["maxPods"] == 100  # kubelet.maxPods


def test_reserved_memory_as_the_stack_splits_it() -> None:
    raw = homelab_config()
    raw["kubelet"]["memoryManagerPolicy"] = "Static"
    raw["reservations"]["reservedMemory"] = [{"numaNode": 0, "limits": {"memory": "1Gi"}},
                                             {"numaNode": 1, "limits": {"memory": "356Mi"}}]
    settings = parse_settings(raw)
    config = yaml.safe_load(render_kubelet_config(settings, settings.node(NODE)))
    assert config["reservedMemory"] == [{"numaNode": 0, "limits": {"memory": "1Gi"}},
                                        {"numaNode": 1, "limits": {"memory": "356Mi"}}]
    # An odd total is written as bytes, which the kubelet reads back exactly.
    raw = homelab_config()
    raw["kubelet"]["memoryManagerPolicy"] = "Static"
    raw["reservations"]["evictionHard"] = {"memory.available": "100M"}
    settings = parse_settings(raw)
    config = yaml.safe_load(render_kubelet_config(settings, settings.node(NODE)))
    assert config["reservedMemory"] == [{"numaNode": 0, "limits": {"memory": str(1280 * 2**20 + 100_000_000)}}]


def test_system_cgroups_is_unset_unless_chosen() -> None:
    # Unset by default (kubeadm and Kubespray set nothing): with it the kubelet moves processes
    # of the root cgroup into a cgroupfs cgroup outside systemd's tree.
    _, config = kubelet_config("homelab")
    assert "systemCgroups" not in config
    raw = homelab_config()
    raw["kubelet"]["systemCgroups"] = "/systemd/system.slice"  # the runbook's, as an explicit choice
    settings = parse_settings(raw)
    chosen = yaml.safe_load(render_kubelet_config(settings, settings.node(NODE)))
    assert chosen["systemCgroups"] == "/systemd/system.slice"
    assert chosen["cgroupRoot"] == "/"  # the kubelet refuses systemCgroups without cgroupRoot
    raw["kubelet"]["systemCgroups"] = ""
    settings = parse_settings(raw)
    assert "systemCgroups" not in yaml.safe_load(render_kubelet_config(settings, settings.node(NODE)))


# --- systemd units --------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, str]]:
    """A systemd unit as {section: {key: value}}, continuation lines joined (last key wins)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    logical = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            logical += raw[:-1]
            continue
        line, logical = (logical + raw).strip(), ""
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        key, _, value = line.partition("=")
        current[key] = value
    return sections


def test_parse_unit_joins_continuations() -> None:
    assert parse_unit("[Service]\nExecStart=/bin/a \\\n  --b=1 \\\n  --c\nRestart=always\n") == {
        "Service": {"ExecStart": "/bin/a   --b=1   --c", "Restart": "always"}
    }


@pytest.mark.parametrize("stack_name", STACKS)
def test_kubelet_unit_flags(stack_name: str) -> None:
    settings, node = stack(stack_name)
    service = parse_unit(systemd.unit_files(settings, node)[paths.KUBELET_UNIT])["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/usr/bin/kubelet"
    assert "--runtime-cgroups=/kube.slice/containerd.service" in argv
    assert "--hostname-override=k8s-node1" in argv
    assert "--config=/var/lib/kubelet/kubelet-config.yaml" in argv
    assert "--kubeconfig=/var/lib/kubelet/kubeconfig" in argv
    assert service["Slice"] == "kube.slice"
    assert service["ExecStartPre"] == "/usr/local/libexec/homelab-kubelet/prepare-cgroups kube.slice system.slice"
    # --node-ip only with nodes[].nodeIP: otherwise the kubelet's own choice, which the certificate follows.
    assert ("--node-ip=192.168.1.11" in argv) == (stack_name == "variant")
    assert not [arg for arg in argv if arg.startswith("--node-ip")][1:]
    if stack_name == "variant":
        assert "--node-labels=example.com/gpu=,topology.kubernetes.io/zone=rack-1" in argv
        assert "--vmodule=eviction_manager=4" in argv
    # No flag the kubelet deprecates: its configuration flags are all file fields here.
    api = kubelet_api("v1.30")
    assert api is not None
    assert not [word for word in argv[1:] if api.deprecated_config_flag(word[2:].split("=", 1)[0])]


# Hand-computed: shares = m*1024//1000 (at least 2), weight = 1 + ((shares-2)*9999)//262142.
#   1024m: 1048576//1000 = 1048; (1046*9999)//262142 = 10458954//262142 = 39 -> 40
#    256m:  262144//1000 =  262; ( 260*9999)//262142 =  2599740//262142 =  9 -> 10
#    512m:  524288//1000 =  524; ( 522*9999)//262142 =  5219478//262142 = 19 -> 20
#   1000m:               1024; (1022*9999)//262142 = 10218978//262142 = 38 -> 39
#   2000m:               2048; (2046*9999)//262142 = 20457954//262142 = 78 -> 79
#      1m:    1024//1000 = 1 -> 2 (minimum); weight 1 + 0 = 1
# 262144000m (262144 CPUs): shares 268435456; weight 1 + 268435454*9999//262142 = 10240 (beyond
#   cgroup v2's 10000, shown only to pin the formula)
CPU_TABLE = [
    (1024, 1048, 40),
    (256, 262, 10),
    (512, 524, 20),
    (1000, 1024, 39),
    (2000, 2048, 79),
    (1, 2, 1),
    (0, 2, 1),
]


@pytest.mark.parametrize(("millicores", "shares", "weight"), CPU_TABLE)
def test_cpu_shares_and_weight(millicores: int, shares: int, weight: int) -> None:
    assert cpu_shares(millicores) == shares
    assert cpu_weight(millicores) == weight


SLICES = [
    # stack, slice, MemoryMax (bytes, by hand), CPUWeight (by hand, see CPU_TABLE)
    ("homelab", "kube.slice", 1024 * 1024 * 1024, 40),
    ("homelab", "system.slice", 256 * 1024 * 1024, 10),
    ("variant", "kube.slice", 768 * 1024 * 1024, 20),
    ("variant", "system.slice", 256 * 1024 * 1024, 10),
]


@pytest.mark.parametrize(("stack_name", "slice_name", "memory_max", "weight"), SLICES)
def test_slice_limits_match_reservations(stack_name: str, slice_name: str, memory_max: int, weight: int) -> None:
    settings, node = stack(stack_name)
    text = systemd.unit_files(settings, node)[systemd.slice_path(slice_name)]
    limits = parse_unit(text)["Slice"]
    reservation = (
        node.reservations.kube_reserved if slice_name == "kube.slice" else node.reservations.system_reserved
    )
    assert reservation.memory is not None and reservation.cpu is not None
    assert int(limits["MemoryMax"]) == memory_max == to_bytes(reservation.memory)
    assert int(limits["CPUWeight"]) == weight == cpu_weight(to_millicores(reservation.cpu))
    assert limits["MemoryAccounting"] == "yes"
    assert limits["CPUAccounting"] == "yes"


def test_slice_paths() -> None:
    assert systemd.slice_path("kube.slice") == "/etc/systemd/system/kube.slice"
    assert systemd.slice_path("system.slice") == "/etc/systemd/system/system.slice.d/10-homelab-kubelet-reserved.conf"


def test_unenforced_slice_has_no_limits() -> None:
    raw = homelab_config()
    raw["reservations"]["enforceNodeAllocatable"] = ["pods"]
    settings = parse_settings(raw)
    units = systemd.unit_files(settings, settings.node(NODE))
    for slice_name in ("kube.slice", "system.slice"):
        assert parse_unit(units[systemd.slice_path(slice_name)])["Slice"] == {}


def test_containerd_dropin_puts_containerd_in_kube_slice() -> None:
    settings, node = stack("homelab")
    assert parse_unit(systemd.unit_files(settings, node)[paths.CONTAINERD_DROPIN]) == {
        "Service": {"Slice": "kube.slice"}
    }


# --- kubeconfig -------------------------------------------------------------------------------


def test_kubeconfig_embeds_the_pems() -> None:
    config = yaml.safe_load(rendered_files(*stack("homelab"))["kubeconfig"])
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]
    assert cluster["server"] == "https://k8s-master:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == DUMMY_CA
    assert base64.b64decode(user["user"]["client-certificate-data"]).decode() == DUMMY_CERT
    assert base64.b64decode(user["user"]["client-key-data"]).decode() == DUMMY_KEY
    assert user["name"] == "system:node:k8s-node1"
    assert config["current-context"] == "default"
    assert config["contexts"][0]["context"] == {"cluster": "kubernetes", "user": "system:node:k8s-node1"}


# --- quantities -------------------------------------------------------------------------------

QUANTITIES = [
    # text, value in base units, bytes (rounded up), millicores (rounded up)
    ("256Mi", Decimal(268435456), 268435456, 268435456000),
    ("1Gi", Decimal(1073741824), 1073741824, 1073741824000),
    ("1.5Gi", Decimal(1610612736), 1610612736, 1610612736000),
    ("100M", Decimal(100000000), 100000000, 100000000000),
    ("1k", Decimal(1000), 1000, 1000000),
    ("1Ki", Decimal(1024), 1024, 1024000),
    ("500m", Decimal("0.5"), 1, 500),
    ("1024m", Decimal("1.024"), 2, 1024),
    ("1", Decimal(1), 1, 1000),
    ("0.5", Decimal("0.5"), 1, 500),
    ("2.5m", Decimal("0.0025"), 1, 3),
    ("0", Decimal(0), 0, 0),
]


@pytest.mark.parametrize(("text", "value", "as_bytes", "millicores"), QUANTITIES)
def test_quantities(text: str, value: Decimal, as_bytes: int, millicores: int) -> None:
    assert parse_quantity(text) == value
    assert to_bytes(text) == as_bytes
    assert to_millicores(text) == millicores


@pytest.mark.parametrize("text", ["256MB", "1mi", "1KI", "-1", "", "Mi", ".5", "1.", " 1Mi", "1 Mi", "1e3"])
def test_malformed_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


# --- bundle -----------------------------------------------------------------------------------


def test_bundle_roundtrip() -> None:
    files = [
        NodeFile("/etc/a.conf", "0644", "line 1\nline 2\n"),
        NodeFile("/var/lib/kubelet/key.pem", "0600", DUMMY_KEY),
        NodeFile("/etc/empty-lines", "0644", "\n\nx\n\n"),
        NodeFile("/etc/spaces", "0755", "  leading and trailing  \n\ttab\n"),
    ]
    bundle = pack(files)
    assert unpack(bundle) == files
    assert bundle.count(FILE_MARKER) == 4
    assert bundle.count(END_MARKER) == 4


def test_bundle_adds_a_final_newline() -> None:
    assert unpack(pack([NodeFile("/etc/x", "0644", "no newline")])) == [NodeFile("/etc/x", "0644", "no newline\n")]


@pytest.mark.parametrize(
    "content",
    [f"{FILE_MARKER} /etc/evil 0644\n", f"ok\n{END_MARKER}\n", "@@@ homelab-kubelet anything\n"],
    ids=["file marker", "end marker", "any marker prefix"],
)
def test_bundle_rejects_marker_lines(content: str) -> None:
    with pytest.raises(ValueError, match="marker"):
        pack([NodeFile("/etc/x", "0644", content)])


@pytest.mark.parametrize("path", ["etc/x", "/etc/with space"])
def test_bundle_rejects_bad_paths(path: str) -> None:
    with pytest.raises(ValueError, match="absolute and without spaces"):
        pack([NodeFile(path, "0644", "x\n")])


@pytest.mark.parametrize(
    "bundle",
    [f"{FILE_MARKER} /etc/x 0644\nx\n", "stray\n", f"{END_MARKER}\n"],
    ids=["no end marker", "data outside a file", "end without file"],
)
def test_unpack_rejects_malformed_bundles(bundle: str) -> None:
    with pytest.raises(ValueError):
        unpack(bundle)


# --- command lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack_name", STACKS)
def test_no_private_key_in_any_command_line(stack_name: str) -> None:
    settings, node = stack(stack_name)
    kubeconfig = rendered_files(settings, node)["kubeconfig"]
    bundle = node_scripts.credentials_bundle(
        node, ca_cert_pem=DUMMY_CA, cert_pem=DUMMY_CERT, key_pem=DUMMY_KEY, kubeconfig=kubeconfig
    )
    assert "PRIVATE KEY" in bundle  # the key is there, on stdin
    lines = {**command_lines(settings, node), **{f"{name}.sh": text for name, text in step_scripts(settings, node).items()}}
    # 5 creates, 5 updates, 3 deletes (preflight and node-address write nothing); 8 scripts
    assert len(lines) == 13 + 8
    for name, line in lines.items():
        assert "PRIVATE KEY" not in line, name
        assert "RFVNTVktTk9ERS1LRVk" not in line, name


def test_credentials_bundle_modes() -> None:
    _, node = stack("homelab")
    bundle = node_scripts.credentials_bundle(
        node, ca_cert_pem=DUMMY_CA, cert_pem=DUMMY_CERT, key_pem=DUMMY_KEY, kubeconfig="apiVersion: v1\n"
    )
    assert [(file.path, file.mode) for file in unpack(bundle)] == [
        ("/var/lib/kubernetes/ca.pem", "0644"),
        ("/var/lib/kubelet/k8s-node1.pem", "0644"),
        ("/var/lib/kubelet/k8s-node1-key.pem", "0600"),
        ("/var/lib/kubelet/kubeconfig", "0600"),
    ]


def test_sudo_command_lines() -> None:
    lines = command_lines(*stack("variant"))
    for name, line in lines.items():
        first, second = line.splitlines()[:2]
        assert first.startswith("sudo -n true 2>/dev/null || { echo "), name
        assert "$(id -un) ALL=(ALL) NOPASSWD: ALL" in first, name
        assert first.endswith("exit 1; }"), name
        assert second.startswith("exec sudo -n bash -c 'export LC_ALL=C; "), name


def test_root_command_lines() -> None:
    lines = command_lines(*stack("homelab"))
    for name, line in lines.items():
        assert line.startswith("bash -c 'export LC_ALL=C; "), name
        assert "sudo" not in line, name


@pytest.mark.parametrize("stack_name", STACKS)
def test_command_lines_are_short_and_scripts_travel_on_stdin(stack_name: str) -> None:
    # The command provider quotes the whole command into every failure message: keep it short.
    settings, node = stack(stack_name)
    for name, line in command_lines(settings, node).items():
        assert len(line.encode()) <= 2048, name
        assert "lib.sh" not in line and "install_file" not in line, name
    for step in steps(settings, node).values():
        create = step.command("create")
        assert f"read -rN {len(step.create_script.encode())} script" in create
        if step.delete_script is not None:
            assert f"read -rN {len(step.delete_script.encode())} script" in step.command("delete")
        assert step.scripts == step.create_script + (step.delete_script or "")


@pytest.mark.parametrize("stack_name", STACKS)
def test_scripts_fit_in_one_argument(stack_name: str) -> None:
    # `exec bash -c "$script"` hands the script as one argv string: Linux caps one at
    # MAX_ARG_STRLEN = 32 pages = 131072 bytes ("Argument list too long" beyond).
    for name, script in step_scripts(*stack(stack_name)).items():
        assert len(script.encode()) < 131072, name


def test_configure_note_names_what_the_kubelet_runs_on() -> None:
    settings, node = stack("homelab")
    assert node_scripts.configure_note(settings, node, "abc") == f"kubelet {settings.kubernetes.version} (arm64), credentials abc"
    step = steps(settings, node)[node_scripts.CONFIGURE_AND_START]
    with pytest.raises(ValueError, match="one line"):
        step.command("create", "two\nlines")


def test_every_step_with_a_delete_holds_and_releases() -> None:
    for name, step in steps(*stack("homelab")).items():
        if step.delete_script is None:
            assert name in (node_scripts.PREFLIGHT, node_scripts.NODE_ADDRESS)  # write nothing
            continue
        hold = (node_scripts.SCRIPTS_DIR / "hold.sh").read_text().rstrip("\n")
        assert step.create_script.rstrip("\n").endswith(f"{hold}\n{node_scripts.SCRIPT_END}"), name
        # An early `exit 0` in a create body would skip hold.sh, and the old delete of a
        # replacement would then undo what the new create kept (install-kubelet once did).
        assert not re.search(r"^\s*exit 0\b", step.create_script, re.MULTILINE), name
        # The guard comes right after lib.sh and the lock, before the step's own delete body.
        lib, lock, release = ((node_scripts.SCRIPTS_DIR / f).read_text() for f in ("lib.sh", "lock.sh", "release.sh"))
        assert lib + lock + release in step.delete_script, name


# --- allocatable ------------------------------------------------------------------------------

GI = 2**30


def test_allocatable_homelab_4_cpus_8gi() -> None:
    settings, _ = stack("homelab")
    result = allocatable(settings.reservations, 4, 8 * GI)
    # 4000 - 256 - 1024 = 2720; 8192 - 256 - 1024 - 100 = 6812
    assert result["cpu"] == "2720m"
    assert result["memory"] == "6812Mi"
    assert result["cpuFormula"] == "4000m - 256m - 1024m = 2720m"
    assert result["memoryFormula"] == "8192Mi - 256Mi - 1024Mi - 100Mi = 6812Mi"


def test_allocatable_percentage_eviction() -> None:
    raw = homelab_config()
    raw["reservations"]["evictionHard"] = {"memory.available": "5%"}
    settings = parse_settings(raw)
    result = allocatable(settings.reservations, 2, 4 * GI)
    # cpu 2000 - 256 - 1024 = 720; memory 4096 - 256 - 1024 - 204.8 = 2611.2Mi, exact in bytes
    assert result["cpu"] == "720m"
    assert result["memory"] == str(4 * GI - 256 * 2**20 - 1024 * 2**20 - 4 * GI * 500 // 10000) == "2738041652"
    assert result["memoryFormula"] == "4096Mi - 256Mi - 1024Mi - 204Mi = 2611Mi"


def test_allocatable_uses_the_memory_threshold_the_kubelet_runs_with() -> None:
    # No memory.available in the stack: the kubelet's default 100Mi still applies (it is rendered).
    raw = homelab_config()
    raw["reservations"]["evictionHard"] = {"nodefs.available": "20%"}
    settings = parse_settings(raw)
    result = allocatable(settings.reservations, 4, 8 * GI)
    # 8192 - 256 - 1024 - 100 = 6812
    assert result["memoryFormula"] == "8192Mi - 256Mi - 1024Mi - 100Mi = 6812Mi"
    assert yaml.safe_load(render_kubelet_config(settings, settings.node(NODE)))["evictionHard"]["memory.available"] == "100Mi"
    # "0%" switches the threshold off: nothing reserved for it.
    raw["reservations"]["evictionHard"] = {"memory.available": "0%"}
    settings = parse_settings(raw)
    assert allocatable(settings.reservations, 4, 8 * GI)["memory"] == "6912Mi"


def test_allocatable_never_negative() -> None:
    settings, _ = stack("homelab")
    result = allocatable(settings.reservations, 1, GI)
    # cpu 1000 - 1280 < 0; memory 1024 - 1380 < 0
    assert (result["cpu"], result["memory"]) == ("0", "0")  # as the kubelet writes zero


def test_allocatable_is_written_as_the_kubelet_writes_it() -> None:
    settings, _ = stack("homelab")
    # MemTotal 1495044 kB (not whole Mi), 2 CPUs: the kubelet's status.allocatable then says
    # memory 81924Ki (1495044Ki - 1380Mi) and cpu 720m.
    result = allocatable(settings.reservations, 2, 1495044 * 1024)
    assert (result["cpu"], result["memory"]) == ("720m", "81924Ki")
    assert result["memoryFormula"] == "1460Mi - 256Mi - 1024Mi - 100Mi = 80Mi"
    assert allocatable(settings.reservations, 4, 8 * GI)["memory"] == "6812Mi"


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (512, "512"), (1000, "1k"), (1024, "1Ki"), (1536, "1536"), (1025 * 1024, "1025Ki"),
    (6812 * 2**20, "6812Mi"), (2 * GI, "2Gi"), (2 * GI + 1024, "2097153Ki"), (2630667469, "2630667469"),
])
def test_format_bytes_is_kubernetes_canonical_form(value: int, text: str) -> None:
    assert format_bytes(value) == text
    assert to_bytes(text) == value


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (1800, "1800m"), (2000, "2"), (2500, "2500m")])
def test_format_millicores_is_kubernetes_canonical_form(value: int, text: str) -> None:
    assert format_millicores(value) == text
    assert to_millicores(text) == value


def test_allocatable_variant_override() -> None:
    _, node = stack("variant")
    result = allocatable(node.reservations, 4, 8 * GI)
    # 4000 - 256 - 512 = 3232; 8192 - 256 - 768 - 100 = 7068
    assert (result["cpu"], result["memory"]) == ("3232m", "7068Mi")


@pytest.mark.parametrize("stack_name", sorted(STACKS))
def test_configure_file_paths_match_the_rendered_files(stack_name: str) -> None:
    # The delete script lists the paths without rendering; it must remove exactly what is written.
    settings, node = stack(stack_name)
    rendered = [file.path for file in node_scripts.configure_files(settings, node)]
    assert node_scripts.configure_file_paths(settings, node) == rendered


def test_crictl_config_names_the_runtime_and_restarts_no_kubelet() -> None:
    # /etc/crictl.yaml: written, recorded and removed like the other configure files, but the
    # kubelet does not run on it, so a change of it restarts nothing.
    settings, node = stack("homelab")
    files = {file.path: file for file in node_scripts.configure_files(settings, node)}
    crictl = yaml.safe_load(files[paths.CRICTL_CONFIG].content)
    assert crictl == {"runtime-endpoint": "unix:///run/containerd/containerd.sock",
                      "image-endpoint": "unix:///run/containerd/containerd.sock", "timeout": 10}
    assert files[paths.CRICTL_CONFIG].mode == "0644"
    assert paths.CRICTL_CONFIG in node_scripts.configure_file_paths(settings, node)
    assert paths.CRICTL_CONFIG not in node_scripts.kubelet_runs_on(settings, node)
    assert "/etc" in node_scripts.preflight(settings, node).create_script.split("WRITE_DIRS=(", 1)[1].split(")")[0].split()
    raw = homelab_config()
    raw["kubernetes"]["containerRuntimeEndpoint"] = "unix:///run/k3s/containerd/containerd.sock"
    raw["kubelet"]["config"] = {"imageServiceEndpoint": "unix:///run/images.sock"}
    other = parse_settings(raw)
    assert yaml.safe_load(render_crictl_config(other)) == {
        "runtime-endpoint": "unix:///run/k3s/containerd/containerd.sock", "image-endpoint": "unix:///run/images.sock",
        "timeout": 10,
    }


def test_preflight_reserves_memory_by_the_allocatable_formula() -> None:
    # One formula: preflight's shell arithmetic and the allocatable table agree, percentages too.
    raw = homelab_config()
    raw["reservations"]["evictionHard"] = {"memory.available": "7.5%"}
    settings = parse_settings(raw)
    node = settings.node(NODE)
    script = node_scripts.preflight(settings, node).create_script
    fixed = int(re.search(r"^RESERVED_MEMORY_BYTES=(\d+)$", script, re.MULTILINE).group(1))  # type: ignore[union-attr]
    points = int(re.search(r"^EVICTION_BASIS_POINTS=(\d+)$", script, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert "reserved_memory=$((RESERVED_MEMORY_BYTES + memory_bytes * EVICTION_BASIS_POINTS / 10000))" in script
    capacity = 4 * GI
    shell_reserved = fixed + capacity * points // 10000
    assert shell_reserved == reserved_memory_bytes(node.reservations, capacity)
    # 4096Mi - 256Mi - 1024Mi - 307.2Mi (7.5%)
    assert allocatable(node.reservations, 4, capacity)["memory"] == str(capacity - shell_reserved) == "2630667469"


@pytest.mark.parametrize("stack_name", STACKS)
def test_scripts_are_header_lib_and_bodies(stack_name: str) -> None:
    # With this, the golden headers of the variant stack pin its scripts as fully as whole files.
    scripts = step_scripts(*stack(stack_name))
    assert set(scripts) == set(SCRIPT_BODIES)
    for name, script in scripts.items():
        bodies = [(node_scripts.SCRIPTS_DIR / body).read_text().rstrip("\n") for body in SCRIPT_BODIES[name]]
        assert script == script_header(script) + "\n".join([LIB_TEXT, *bodies, node_scripts.SCRIPT_END]) + "\n", name


# --- flags that extraArgs may not set (components/kubelet_flags.py) -------------------------------


def _field_paths(config: dict[str, Any], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key in ("authentication", "authorization", "anonymous", "webhook", "x509"):
            found |= _field_paths(value, path + ".")
        else:
            found.add(path)
    return found


@pytest.mark.parametrize("stack_name", STACKS)
def test_every_rendered_field_is_owned_and_no_flag_overrides_it(stack_name: str) -> None:
    from components.kubelet_config import kubelet_configuration, kubelet_flags
    from components.kubelet_flags import COMMAND_LINE_FLAGS, field_refusal, flag_refusal

    api = kubelet_api("v1.30")
    assert api is not None
    settings, node = stack(stack_name)
    rendered = set(kubelet_configuration(settings, node)) - {"kind", "apiVersion"} - set(settings.kubelet.config)
    # kubelet.config may not set a field the program renders ...
    assert not [field for field in rendered if field_refusal(field) is None]
    # ... and extraArgs no flag that overrides one (all such flags are deprecated configuration flags).
    for flag, field in api.config_flags.items():
        if field.split(".", 1)[0] in rendered:
            assert flag_refusal(flag, api) is not None, flag
    written = {flag.removeprefix("--").split("=", 1)[0] for flag in kubelet_flags(settings, node)}
    written -= set(node.extra_args)
    assert written <= COMMAND_LINE_FLAGS, written - COMMAND_LINE_FLAGS
    for flag in COMMAND_LINE_FLAGS:
        assert flag_refusal(flag, api) is not None, flag


def test_owned_fields_are_v1_30_fields_and_every_deprecated_flag_is_refused() -> None:
    from components.kubelet_flags import PROGRAM_FIELDS, TYPED_FIELDS, flag_refusal

    api = kubelet_api("v1.30")
    assert api is not None
    assert not (set(TYPED_FIELDS) | set(PROGRAM_FIELDS)) - set(api.fields)
    deprecated = [flag for flag in api.config_flags if flag not in api.not_deprecated] + list(api.deprecated_flags)
    assert len(deprecated) > 100
    assert not [flag for flag in deprecated if flag_refusal(flag, api) is None]
    # The three the kubelet keeps, and its own flags, pass unless the program writes them (node-ip:
    # nodes[].nodeIP).
    assert [flag for flag in ("vmodule", "log-flush-frequency", "provider-id", "cloud-provider") if flag_refusal(flag, api)] == []
    assert "nodes[].nodeIP" in str(flag_refusal("node-ip", api))


def test_unit_words_are_checked_when_rendered() -> None:
    settings, node = stack("variant")
    smuggled = node.model_copy(update={"extra_args": {"max-pods": "50\nExecStartPost=/bin/sh"}})
    with pytest.raises(ValueError, match=r"cannot be one word of kubelet\.service's ExecStart"):
        systemd.render_kubelet_unit(settings, smuggled)


def test_install_step_carries_the_pinned_digest_of_its_arch_and_version() -> None:
    raw = homelab_config()
    raw["kubernetes"]["kubeletSha256"] = {"arm64": {"v1.30.1": "ab" * 32, "v1.30.2": "cd" * 32}}
    settings = parse_settings(raw)
    script = node_scripts.install_kubelet(settings, settings.node(NODE)).create_script
    assert f"PINNED_SHA256={'ab' * 32}\n" in script
    settings, node = stack("homelab")
    assert "PINNED_SHA256=''\n" in node_scripts.install_kubelet(settings, node).create_script


# --- rollout.maxParallel (components/rollout.py; the wiring is in tests/test_program.py) ---------


@pytest.mark.parametrize(
    ("count", "max_parallel", "waits_for"),
    [
        (3, None, [None, None, None]),
        (3, 1, [None, 0, 1]),
        (3, 2, [None, None, 0]),
        (3, 3, [None, None, None]),
        (5, 2, [None, None, 0, 1, 2]),
        (1, 1, [None]),
        (0, 1, []),
    ],
)
def test_rollout_waits_for_the_node_max_parallel_places_earlier(
    count: int, max_parallel: int | None, waits_for: list[int | None]
) -> None:
    from components.rollout import predecessors

    assert predecessors(count, max_parallel) == waits_for
