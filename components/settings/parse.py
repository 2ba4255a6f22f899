"""`parse_settings`: the raw stack config in, a resolved `Settings` out, or every problem at once.

Parsing is a few named steps, each returning its problems in the order they are reported:
unknown keys, the stack-wide sections, the node list, each node (its own fields, duplicates,
pod CIDR room and overlaps, its merged reservations), the cluster-wide checks across nodes, and
the secrets. `resolve_host_keys` then fills in each node's host key, before any resource.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from components import kubelet_flags
from components.kubelet_api import KubeletApi, known_minors, kubelet_api, newest_api
from components.quantities import to_millicores
from components.settings.host_keys import PINNABLE_KEY_TYPES, known_host_keys, known_hosts_name, public_key_problem
from components.settings.kubelet_fields import config_problems, feature_gate_problems, gate_enabled
from components.settings.models import (
    DEFAULT_KUBELET_PORT,
    DEFAULT_MAX_PODS,
    PERMISSIVE_READ_ONLY_PORT,
    KubeletSettings,
    KubernetesSettings,
    NodeConfig,
    NodeSettings,
    PkiSettings,
    Reservations,
    RolloutSettings,
    Settings,
    SshSettings,
    _Model,
    pod_addresses,
)
from components.settings.types import Arch

CONFIG_NAMESPACE = "homelab-kubelet"
# Stack config keys the program reads. The Pulumi CLI checks the types of the keys Pulumi.yaml
# declares but passes any other key of the namespace (and inline programs skip the project file):
# `unknown_key_problems` refuses them.
OBJECT_KEYS = ("kubernetes", "ssh", "kubelet", "reservations", "pki", "rollout", "nodes")
# Secrets live in their own top-level keys, so the structured objects stay plain.
SECRET_KEYS = ("sshPrivateKey", "caCertPem", "caKeyPem")


class SettingsError(ValueError):
    """Invalid stack configuration; the message lists every problem with its key path."""


def unknown_key_problems(configured: Iterable[str]) -> list[str]:
    """A problem for every configured key of this project's namespace that the program does not
    read, with the closest known key; other namespaces (providers' `command:*`, `tls:*`) pass."""
    known = (*OBJECT_KEYS, *SECRET_KEYS)
    problems = []
    for full_key in sorted(configured):
        namespace, _, key = full_key.partition(":")
        if namespace != CONFIG_NAMESPACE or key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {CONFIG_NAMESPACE}:{close[0]}?" if close else f"known keys: {', '.join(known)}"
        problems.append(f"{full_key}: unknown key; {hint}")
    return problems


# --- the steps' helpers ------------------------------------------------------------------------


def _location(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _describe(errors: ValidationError, prefix: str) -> list[str]:
    messages = []
    all_errors = errors.errors()
    item_error_fields = {error["loc"][:1] for error in all_errors if len(error["loc"]) > 1}
    for error in all_errors:
        loc = tuple(
            part for part in error["loc"] if not str(part).startswith("function-after") and part != "[key]"
        )
        if error["type"] == "too_short" and error["loc"][:1] in item_error_fields:
            continue  # the bad item is reported; "too short after validation" would only confuse
        where = _location(prefix, loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        elif error["type"] == "missing":
            message = "required key is missing"
        bad = error.get("input")
        shown = f" (got {bad!r})"
        if error["type"] in ("missing", "extra_forbidden") or isinstance(bad, dict) or repr(bad) in message:
            shown = ""
        messages.append(f"{where}: {message}{shown}")
    return messages


def _validate(model: type[_Model], raw: Any, prefix: str) -> tuple[Any, list[str]]:
    """The model of `raw` (None when it is invalid) and the problems that make it invalid."""
    try:
        return model.model_validate(raw if raw is not None else {}), []
    except ValidationError as errors:
        return None, _describe(errors, prefix)


def _merge_reservations(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Per-node overrides win key by key; resource maps merge one level deep."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def pod_cidr_overlaps(cidrs: Sequence[tuple[int, str]]) -> dict[int, list[tuple[str, int, str]]]:
    """node index -> [(its CIDR, earlier node index, that node's CIDR)] for every overlapping pair.

    CIDRs overlap only by containment, so after sorting by first address each network is
    compared only with the earlier ones that reach past its start: O(n log n) for disjoint
    ranges, where comparing every pair took minutes at a thousand nodes.
    """
    parsed = sorted(
        ((network.version, int(network.network_address), -network.prefixlen, index, cidr, network)
         for index, cidr in cidrs
         for network in [ipaddress.ip_network(cidr, strict=False)]),
        key=lambda item: item[:4],
    )
    found: dict[int, list[tuple[str, int, str]]] = {}
    open_ranges: list[tuple[int, int, str, int]] = []  # version, last address, cidr, index
    for version, first, _, index, cidr, network in parsed:
        open_ranges = [r for r in open_ranges if r[0] == version and r[1] >= first]
        for _, _, other_cidr, other in open_ranges:
            if index > other:
                found.setdefault(index, []).append((cidr, other, other_cidr))
            else:
                found.setdefault(other, []).append((other_cidr, index, cidr))
        open_ranges.append((version, int(network.broadcast_address), cidr, index))
    for pairs in found.values():
        pairs.sort(key=lambda pair: pair[1])
    return found


def _cluster_dns_problems(kubernetes: KubernetesSettings, pod_cidrs: Sequence[str]) -> list[str]:
    networks = [ipaddress.ip_network(cidr) for cidr in pod_cidrs]
    families = {network.version for network in networks}
    problems = []
    for index, text in enumerate(kubernetes.cluster_dns):
        address = ipaddress.ip_address(text)
        where = f"kubernetes.clusterDNS[{index}]"
        if address.version not in families:
            problems.append(
                f"{where}: {text!r} is IPv{address.version} but every podCIDR is "
                f"IPv{'/IPv'.join(str(family) for family in sorted(families))}; the cluster DNS service "
                "address is of the cluster's IP family"
            )
        inside = next((cidr for cidr, network in zip(pod_cidrs, networks, strict=True) if address in network), None)
        if inside is not None:
            problems.append(
                f"{where}: {text!r} lies inside the pod CIDR {inside!r}; the cluster DNS address is a "
                "service IP, outside every pod network"
            )
    return problems


def _kubelet_digest_problems(kubernetes: KubernetesSettings, raw_nodes: Sequence[Any]) -> list[str]:
    """Every arch the nodes use needs a pinned digest when the mirror is plain http (anyone on
    the path can swap binary and digest), or when the table pins other versions (a stale table)."""
    used = {node.get("arch") for node in raw_nodes if isinstance(node, Mapping)}
    plain_http = kubernetes.download_base_url.startswith("http://")
    problems = []
    arch: Arch
    for arch in ("amd64", "arm64"):
        if arch not in used:
            continue
        if kubernetes.pinned_sha256(arch) is not None:
            continue
        if plain_http:
            problems.append(
                f"kubernetes.kubeletSha256.{arch}.{kubernetes.version}: no pinned digest, and "
                f"kubernetes.downloadBaseUrl {kubernetes.download_base_url!r} is plain http, so the "
                "binary and its .sha256 could both be replaced on the way; pin the digest "
                f"(kubeletSha256: {{{arch}: {{{kubernetes.version}: <sha256>}}}}) or use an https mirror"
            )
        elif kubernetes.kubelet_sha256:
            problems.append(
                f"kubernetes.kubeletSha256.{arch}.{kubernetes.version}: the table pins other versions but "
                f"not {kubernetes.version} for {arch}; add its digest (or drop the table to trust the "
                "mirror's https)"
            )
    return problems


@dataclass(frozen=True)
class _Sections:
    """The stack-wide config objects, each None when it is invalid (its problems are reported)."""

    kubernetes: KubernetesSettings | None
    ssh: SshSettings | None
    kubelet: KubeletSettings | None
    reservations: Reservations | None
    raw_reservations: Any
    pki: PkiSettings | None
    rollout: RolloutSettings | None


def _section_problems(raw: Mapping[str, Any]) -> tuple[_Sections, list[str]]:
    """Step: the stack-wide objects `kubernetes`, `ssh`, `kubelet`, `reservations`, `pki`."""
    problems: list[str] = []

    def section(model: type[_Model], key: str, value: Any) -> Any:
        parsed, found = _validate(model, value, key)
        problems.extend(found)
        return parsed

    kubernetes = section(KubernetesSettings, "kubernetes", raw.get("kubernetes"))
    if raw.get("kubernetes") is None:
        problems.append("kubernetes: required key is missing")
    ssh = section(SshSettings, "ssh", raw.get("ssh"))
    kubelet = section(KubeletSettings, "kubelet", raw.get("kubelet"))
    raw_reservations = raw.get("reservations") or {}
    reservations = section(Reservations, "reservations", raw_reservations)
    pki = section(PkiSettings, "pki", raw.get("pki"))
    rollout = section(RolloutSettings, "rollout", raw.get("rollout"))
    return _Sections(kubernetes, ssh, kubelet, reservations, raw_reservations, pki, rollout), problems


def _node_list_problems(raw_nodes: Any) -> tuple[list[Any], list[str]]:
    """Step: `nodes` is a non-empty list; the raw entries (none when it is not)."""
    if not raw_nodes:
        return [], ["nodes: at least one node is required"]
    if not isinstance(raw_nodes, list):
        return [], [f"nodes: must be a list of nodes (got {type(raw_nodes).__name__})"]
    return raw_nodes, []


def _release_problems(sections: _Sections) -> tuple[_Sections, list[str]]:
    """Step: `kubelet.config` and `kubelet.featureGates` against the table of
    `kubernetes.version`'s kubelet, and what the kubelet refuses of the typed settings with the
    gates it runs with. Returns the sections with `kubelet.config` as it will be rendered."""
    kubernetes, kubelet = sections.kubernetes, sections.kubelet
    if kubernetes is None or kubelet is None:
        return sections, []
    api = kubelet_api(kubernetes.minor_version)
    if api is None:
        given = (("kubelet.config", kubelet.config), ("kubelet.featureGates", kubelet.feature_gates))
        used = [key for key, value in given if value]
        return sections, [
            f"{key}: kubernetes.version {kubernetes.version}: this program has the KubeletConfiguration of "
            f"{', '.join(known_minors())} only (components/data/); add one with scripts/kubelet_config_fields.py, "
            f"or leave {key} out"
            for key in used
        ]
    config, problems = config_problems(api, kubelet.config)
    problems += feature_gate_problems(api, kubelet.feature_gates)
    if not problems:
        problems += _gated_setting_problems(api, kubelet)
    return replace(sections, kubelet=kubelet.model_copy(update={"config": config})), problems


def _gated_setting_problems(api: KubeletApi, kubelet: KubeletSettings) -> list[str]:
    gates = kubelet.feature_gates
    problems = []
    for key, value, gate in (
        ("kubelet.shutdownGracePeriod", kubelet.shutdown_grace_period, "GracefulNodeShutdown"),
        ("kubelet.memorySwap", kubelet.memory_swap, "NodeSwap"),
    ):
        if value is not None and not gate_enabled(api, gates, gate):
            problems.append(
                f"{key}: the kubelet refuses it with the feature gate {gate} off (kubelet.featureGates); "
                f"turn {gate} on or leave {key} out"
            )
    parallel = kubelet.config.get("maxParallelImagePulls")
    if isinstance(parallel, int) and parallel > 1 and kubelet.serialize_image_pulls is True:
        problems.append(
            f"kubelet.config.maxParallelImagePulls: {parallel}: the kubelet refuses more than 1 with "
            "kubelet.serializeImagePulls: true; set serializeImagePulls: false"
        )
    return problems


def _healthz_conflict(kubelet: KubeletSettings, node: NodeConfig, where: str) -> str | None:
    """The kubelet's healthz port is one the kubelet on `node` also binds."""
    port = kubelet.config.get("port", DEFAULT_KUBELET_PORT)
    kubelet_ports = {port: "the kubelet's port" + (" (kubelet.config.port)" if "port" in kubelet.config else "")}
    if kubelet.auth_mode == "permissive":
        kubelet_ports[PERMISSIVE_READ_ONLY_PORT] = "its read-only port (authMode: permissive)"
    if kubelet.healthz_port not in kubelet_ports:
        return None
    return (
        f"kubelet.healthzPort: {kubelet.healthz_port} is {kubelet_ports[kubelet.healthz_port]} on "
        f"{where} ({node.name}); the kubelet cannot bind both; use another port (default 10248)"
    )


def _extra_args_problems(api: KubeletApi, node: NodeConfig, where: str) -> list[str]:
    """Flags the kubelet deprecates (KubeletConfiguration flags above all) are refused."""
    problems = []
    for flag in node.extra_args:
        reason = kubelet_flags.flag_refusal(flag, api)
        if reason is not None:
            problems.append(f"{where}.extraArgs: {flag!r} cannot be set through extraArgs: {reason}")
    return problems


def _resource_manager_problems(kubelet: KubeletSettings, reservations: Reservations) -> list[tuple[str, str]]:
    """What the kubelet's CPU and memory managers refuse at start with a node's reservations
    (pkg/kubelet/cm/cpumanager/cpu_manager.go NewManager, memorymanager/memory_manager.go
    validateReservedMemory and policy_static.go), as (key, message) with `{nodes}` where the
    nodes go: the same problem on several nodes is one line."""
    problems = []
    if kubelet.cpu_manager_policy == "static":
        reserved = sum(
            to_millicores(reservation.cpu)
            for reservation in (reservations.system_reserved, reservations.kube_reserved)
            if reservation.cpu is not None
        )
        if reserved == 0:
            problems.append((
                "kubelet.cpuManagerPolicy",
                "'static' needs a CPU reservation, and {nodes} reserve none: the kubelet refuses to start (\"the "
                "static policy requires systemreserved.cpu + kubereserved.cpu to be greater than zero\"); set "
                "reservations.systemReserved.cpu or kubeReserved.cpu",
            ))
    listed = reservations.reserved_memory
    if kubelet.memory_manager_policy != "Static":
        if listed is not None:
            problems.append((
                "reservations.reservedMemory",
                "set for {nodes}, but it is used only with kubelet.memoryManagerPolicy: Static; remove it",
            ))
        return problems
    kept = reservations.memory_kept_from_pods()
    if kept is None:
        problems.append((
            "kubelet.memoryManagerPolicy",
            f"'Static' needs the reservations in bytes, but evictionHard memory.available is "
            f"{reservations.eviction_thresholds['memory.available']!r} on {{nodes}}, a share of each node's memory, "
            "while the kubelet wants reservedMemory to equal the reservations exactly; give memory.available as a "
            "quantity (e.g. 100Mi)",
        ))
    elif listed is not None and sum(entry.memory for entry in listed) != kept:
        total = sum(entry.memory for entry in listed)
        problems.append((
            "reservations.reservedMemory",
            f"the entries add up to {_bytes(total)} but systemReserved + kubeReserved memory + evictionHard "
            f"memory.available are {_bytes(kept)} on {{nodes}}; the kubelet refuses to start (\"the total amount ... "
            "is not equal to the value ... determined by Node Allocatable feature\")",
        ))
    elif kept == 0:
        problems.append((
            "kubelet.memoryManagerPolicy",
            "'Static' needs reserved memory, and {nodes} reserve none (no systemReserved or kubeReserved memory, "
            "memory.available 0%); the kubelet refuses to start (\"you should specify the system reserved memory\")",
        ))
    return problems


def _bytes(value: Any) -> str:
    return f"{value} bytes ({value / 2**20:g}Mi)"


def _node_problems(
    sections: _Sections, raw_nodes: Sequence[Any]
) -> tuple[list[NodeSettings], list[str], list[str]]:
    """Step: every node, in order: its own fields, a duplicate name or address, room for its pods,
    the healthz port (reported once), overlaps with other nodes' pod CIDRs, then its reservations
    merged over the stack-wide ones. Returns the resolved nodes, the valid nodes' pod CIDRs and
    the problems."""
    ssh, kubelet, reservations = sections.ssh, sections.kubelet, sections.reservations
    parsed: list[tuple[int, NodeConfig | None, list[str]]] = []
    for index, raw_node in enumerate(raw_nodes):
        node, found = _validate(NodeConfig, raw_node, f"nodes[{index}]")
        parsed.append((index, node, found))
    overlaps = pod_cidr_overlaps([(index, node.pod_cidr) for index, node, _ in parsed if node is not None])

    problems: list[str] = []
    nodes: list[NodeSettings] = []
    pod_cidrs: list[str] = []
    seen_names: dict[str, int] = {}
    seen_endpoints: dict[tuple[str, int], int] = {}
    healthz_reported = False
    manager_problems: dict[tuple[str, str], list[str]] = {}
    for index, node, found in parsed:
        problems.extend(found)
        if node is None:
            continue
        where = f"nodes[{index}]"
        if node.name in seen_names:
            problems.append(
                f"{where}.name: duplicate node name {node.name!r} (also nodes[{seen_names[node.name]}])"
            )
        seen_names.setdefault(node.name, index)
        port = node.port or (ssh.port if ssh else 22)
        endpoint = (node.address, port)
        if endpoint in seen_endpoints:
            problems.append(
                f"{where}.address: duplicate address {node.address!r} port {port} "
                f"(also nodes[{seen_endpoints[endpoint]}])"
            )
        seen_endpoints.setdefault(endpoint, index)
        max_pods = node.max_pods if node.max_pods is not None else (kubelet.max_pods if kubelet else None)
        pods_allowed = DEFAULT_MAX_PODS if max_pods is None else max_pods
        if pod_addresses(node.pod_cidr) < pods_allowed:
            problems.append(
                f"{where}.podCIDR: {node.pod_cidr!r} has room for {pod_addresses(node.pod_cidr)} pods but the "
                f"kubelet admits up to {pods_allowed} (maxPods); use a larger network (a /24 holds 253) "
                "or lower kubelet.maxPods (nodes[].maxPods for one node)"
            )
        if sections.kubernetes is not None:
            api = kubelet_api(sections.kubernetes.minor_version) or newest_api()
            problems += _extra_args_problems(api, node, where)
        conflict = None if kubelet is None or healthz_reported else _healthz_conflict(kubelet, node, where)
        if conflict is not None:
            problems.append(conflict)
            healthz_reported = True
        problems.extend(
            f"{where}.podCIDR: {cidr!r} overlaps nodes[{other}].podCIDR {other_cidr!r}"
            for cidr, other, other_cidr in overlaps.get(index, [])
        )
        pod_cidrs.append(node.pod_cidr)
        if reservations is None or not isinstance(sections.raw_reservations, Mapping):
            continue  # already reported under `reservations`
        node_reservations, found = _validate(
            Reservations,
            _merge_reservations(sections.raw_reservations, node.reservations),
            f"{where}.reservations",
        )
        problems.extend(found)
        if node_reservations is None or kubelet is None or ssh is None:
            continue
        for key, message in _resource_manager_problems(kubelet, node_reservations):
            # A node's own reservations are its nodes[i].reservations; stack-wide ones are the section's.
            if key.startswith("reservations.") and "reservedMemory" in node.reservations:
                key = f"{where}.{key}"
            manager_problems.setdefault((key, message), []).append(f"{where} ({node.name})")
        nodes.append(
            NodeSettings(
                name=node.name,
                address=node.address,
                port=port,
                user=node.user or ssh.user,
                arch=node.arch,
                pod_cidr=node.pod_cidr,
                ips=node.ips,
                node_ip=node.node_ip,
                labels=node.labels,
                taints=node.taints,
                extra_args=node.extra_args,
                host_key=node.host_key,
                resolv_conf=node.resolv_conf or kubelet.resolv_conf,
                reservations=node_reservations,
                max_pods=max_pods,
            )
        )
    for (key, message), where_all in manager_problems.items():
        problems.append(f"{key}: " + message.format(nodes=", ".join(where_all)))
    return nodes, pod_cidrs, problems


def _cluster_problems(
    kubernetes: KubernetesSettings | None, pod_cidrs: Sequence[str], raw_nodes: Sequence[Any]
) -> list[str]:
    """Step: what holds across the nodes: the cluster DNS address, the pinned kubelet digests."""
    if kubernetes is None or not pod_cidrs:
        return []
    return _cluster_dns_problems(kubernetes, pod_cidrs) + _kubelet_digest_problems(kubernetes, raw_nodes)


def _secret_problems(sections: _Sections, secrets_present: frozenset[str]) -> list[str]:
    """Step: one SSH key source, and the CA's secrets when `pki.importCa` is set."""
    problems = []
    ssh, pki = sections.ssh, sections.pki
    if ssh is not None:
        key_sources = [
            name
            for name, present in (
                ("ssh.privateKeyFile", ssh.private_key_file is not None),
                ("ssh.agent", ssh.agent),
                ("sshPrivateKey (secret)", "sshPrivateKey" in secrets_present),
            )
            if present
        ]
        if len(key_sources) > 1:
            problems.append(
                "ssh: set one key source: ssh.privateKeyFile, ssh.agent: true, or the secret "
                f"sshPrivateKey (`pulumi config set --secret sshPrivateKey < key`); got {', '.join(key_sources)}"
            )
    if pki is not None and pki.import_ca:
        missing = [key for key in ("caCertPem", "caKeyPem") if key not in secrets_present]
        if missing:
            problems.append(
                f"pki.importCa: true needs the secrets {', '.join(missing)} "
                "(`pulumi config set --secret caCertPem < ca.pem`)"
            )
    return problems


def _settings_error(problems: Sequence[str]) -> SettingsError:
    return SettingsError("invalid stack configuration:\n" + "\n".join(f"  - {problem}" for problem in problems))


def parse_settings(
    raw: Mapping[str, Any], secrets_present: frozenset[str] = frozenset(), configured_keys: Iterable[str] = ()
) -> Settings:
    """Validate the stack config objects; raises SettingsError listing every problem.

    `configured_keys`: every key of the stack's config ("namespace:key"), to refuse unknown ones.
    """
    sections, section_problems = _section_problems(raw)
    sections, release_problems = _release_problems(sections)
    raw_nodes, list_problems = _node_list_problems(raw.get("nodes"))
    nodes, pod_cidrs, node_problems = _node_problems(sections, raw_nodes)
    problems = [
        *unknown_key_problems(configured_keys),
        *section_problems,
        *release_problems,
        *list_problems,
        *node_problems,
        *_cluster_problems(sections.kubernetes, pod_cidrs, raw_nodes),
        *_secret_problems(sections, secrets_present),
    ]
    if problems:
        raise _settings_error(problems)
    kubernetes, ssh, kubelet, reservations, pki, rollout = (
        sections.kubernetes, sections.ssh, sections.kubelet, sections.reservations, sections.pki, sections.rollout,
    )
    assert kubernetes and ssh and kubelet and reservations and pki and rollout  # for the type checker
    return Settings(
        kubernetes=kubernetes,
        ssh=ssh,
        kubelet=kubelet,
        reservations=reservations,
        pki=pki,
        rollout=rollout,
        nodes=tuple(nodes),
        ssh_private_key_from_secret="sshPrivateKey" in secrets_present,
    )


# --- host keys: resolved after parsing, before any resource ------------------------------------


def _preferred_key(keys: Sequence[str]) -> str | None:
    pinnable = [key for key in keys if public_key_problem(*key.split()) is None]
    return min(pinnable, key=lambda key: PINNABLE_KEY_TYPES.index(key.split()[0]), default=None)


def resolve_host_keys(
    settings: Settings, read_text: Callable[[Path], str] = Path.read_text
) -> tuple[Settings, list[str]]:
    """Settings whose every node has the host key the SSH connection verifies, from
    `nodes[].hostKey` or else the known_hosts file `ssh.knownHostsFile`; and the warnings for the
    preview. A node with neither is refused unless `ssh.insecureIgnoreHostKey: true`."""
    unpinned = [index for index, node in enumerate(settings.nodes) if node.host_key is None]
    if not unpinned:
        return settings, []
    shown = settings.ssh.known_hosts_file
    path = Path(shown).expanduser()
    try:
        text = read_text(path)
        unreadable = None
    except FileNotFoundError:
        text, unreadable = "", "does not exist"
    except OSError as error:
        text, unreadable = "", f"cannot be read ({error.strerror})"
    nodes = list(settings.nodes)
    problems: list[str] = []
    warnings: list[str] = []
    for index in unpinned:
        node = nodes[index]
        found = known_host_keys(text, node.address, node.port)
        key = _preferred_key(found)
        if key is not None:
            nodes[index] = node.model_copy(update={"host_key": key})
            continue
        name = known_hosts_name(node.address, node.port)
        if settings.ssh.insecure_ignore_host_key:
            warnings.append(
                f"nodes[{index}] ({node.name}): the SSH host key of {name} is NOT verified "
                "(ssh.insecureIgnoreHostKey: true); whoever answers there receives the node's private key "
                "and kubeconfig"
            )
            continue
        if found:
            why = f"it holds only keys that cannot be pinned ({', '.join(sorted({k.split()[0] for k in found}))})"
        elif unreadable:
            why = f"the file {unreadable}"
        else:
            why = f"it has no entry for {name}"
        problems.append(
            f"nodes[{index}].hostKey: no host key for {node.name} ({name}): not set, and ssh.knownHostsFile "
            f"{shown!r}: {why}; log in once with ssh and check the fingerprint, or set nodes[{index}].hostKey "
            f"to the node's /etc/ssh/ssh_host_ed25519_key.pub (type and key), or (insecure) "
            "ssh.insecureIgnoreHostKey: true"
        )
    if problems:
        raise _settings_error(problems)
    return settings.model_copy(update={"nodes": tuple(nodes)}), warnings
