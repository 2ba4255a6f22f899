"""A synthetic stack config of N nodes, built from the reference homelab stack.

Everything but `nodes` is the homelab stack's config as written in `Pulumi.homelab.yaml`
(SSH agent, secure kubelet, the runbook's reservations, ECDSA PKI). The nodes are:

    name      node-0001, node-0002, ...            (1-based, zero-padded to 4 digits)
    address   10.240.0.1, 10.240.0.2, ...          (254 hosts per /24 inside 10.240.0.0/12)
    arch      arm64
    podCIDR   10.0.0.0/24, 10.0.1.0/24, ...        (consecutive /24s of 10.0.0.0/8, none overlap)

The pod /24s stay below 10.32.0.0 (the homelab's cluster DNS 10.32.0.10) and the addresses stay
in 10.240.0.0/12, so for N <= MAX_NODES nothing overlaps anything else.

    venv/bin/python -m bench.synthetic_stack 300 --stack scale300 --out /tmp/project
    # writes /tmp/project/Pulumi.scale300.yaml
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from typing import Any

import yaml

from components.settings import CONFIG_NAMESPACE
from tests.stack_config import homelab_config

SIZES = (3, 30, 300, 1000)
POD_NETWORK = ipaddress.ip_network("10.0.0.0/8")
POD_PREFIX = 24
# /24s from 10.0.0.0 up to (not including) 10.32.0.0, where the homelab's cluster DNS lives.
MAX_NODES = 32 * 256
ADDRESS_BASE = ipaddress.ip_address("10.240.0.0")
HOSTS_PER_SUBNET = 254
# The program verifies host keys; no synthetic node is ever dialled, so one made-up key serves all.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def node_name(index: int) -> str:
    """node-0001 for index 0."""
    return f"node-{index + 1:04d}"


def node_address(index: int) -> str:
    """10.240.0.1 .. 10.240.0.254, then 10.240.1.1, ...: never a .0 or .255 host."""
    subnet, host = divmod(index, HOSTS_PER_SUBNET)
    return str(ADDRESS_BASE + subnet * 256 + host + 1)


def pod_cidr(index: int) -> str:
    """The index-th /24 of 10.0.0.0/8."""
    size = 2 ** (32 - POD_PREFIX)
    return str(ipaddress.ip_network((int(POD_NETWORK.network_address) + index * size, POD_PREFIX)))


def synthetic_nodes(count: int) -> list[dict[str, Any]]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"node count must be between 1 and {MAX_NODES} (got {count})")
    return [
        {"name": node_name(i), "address": node_address(i), "arch": "arm64", "podCIDR": pod_cidr(i),
         "hostKey": HOST_KEY}
        for i in range(count)
    ]


def synthetic_config(count: int) -> dict[str, Any]:
    """The homelab stack config with `count` synthetic nodes: `{key: value}` without namespace,
    the shape `tests.pulumi_harness.run_program` takes."""
    config = homelab_config()
    config["nodes"] = synthetic_nodes(count)
    return config


def stack_document(count: int) -> dict[str, Any]:
    """The `Pulumi.<stack>.yaml` document: `config:` with namespaced keys."""
    return {"config": {f"{CONFIG_NAMESPACE}:{key}": value for key, value in synthetic_config(count).items()}}


def write_stack_file(count: int, stack: str, directory: Path) -> Path:
    """Write `directory/Pulumi.<stack>.yaml` with `count` synthetic nodes; return its path."""
    path = directory / f"Pulumi.{stack}.yaml"
    header = f"# Synthetic stack: the homelab stack with {count} nodes (bench/synthetic_stack.py).\n"
    path.write_text(header + yaml.safe_dump(stack_document(count), sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int, help="number of nodes")
    parser.add_argument("--stack", help="stack name (default: scale<count>)")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="directory to write into (default: .)")
    args = parser.parse_args()
    path = write_stack_file(args.count, args.stack or f"scale{args.count}", args.out)
    print(path)


if __name__ == "__main__":
    main()
