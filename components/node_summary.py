"""The `nodes` output: what the stack says of each node, with what its read-only steps found."""

from __future__ import annotations

import json
from typing import Any

from components.allocatable import node_summary_from_facts
from components.pki import NODE_ORGANIZATION
from components.settings import NodeSettings, Settings


def address_facts(stdout: str) -> dict[str, Any]:
    """The node-address step's JSON (empty before it ran, or from a version that printed none)."""
    return json.loads(stdout) if stdout.strip() else {}


def primary_address(stdout: str) -> str:
    """The address the node's kubelet registers, as the node-address step found it ("" if none)."""
    return str(address_facts(stdout).get("primaryAddress", ""))


def node_summary(
    settings: Settings,
    node: NodeSettings,
    preflight_stdout: str,
    address_stdout: str,
    cert_ip_addresses: list[str],
    cert_not_after: str,
) -> dict[str, Any]:
    reservations = node.reservations
    addresses = address_facts(address_stdout)
    return {
        "address": f"{node.address}:{node.port}",
        "user": node.user,
        "certCommonName": node.cert_common_name,
        "certOrganization": NODE_ORGANIZATION,
        "certIPAddresses": cert_ip_addresses,
        # Read back by the next run to warn of a certificate inside its renewal window (expiry.py).
        "certNotAfter": cert_not_after,
        "kubeletVersion": settings.kubernetes.version,
        "arch": node.arch,
        "podCIDR": node.pod_cidr,
        "nodeIP": addresses.get("primaryAddress", node.node_ip or ""),
        "addresses": addresses.get("addresses", []),
        "reservations": {
            "systemReserved": reservations.system_reserved.as_kubelet_map(),
            "kubeReserved": reservations.kube_reserved.as_kubelet_map(),
            "evictionHard": reservations.eviction_thresholds,
            "enforceNodeAllocatable": list(reservations.enforce_node_allocatable),
        },
        **(node_summary_from_facts(preflight_stdout, reservations) if preflight_stdout.strip() else {}),
    }
