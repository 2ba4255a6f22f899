"""The node-address step, run as shell: which address the kubelet registers, by its own rule.

The rendered step runs locally with stand-ins for `ip` (the node's interfaces and their state) and
`getent` (what the node name resolves to), and route files written here in the format of
/proc/net/route and /proc/net/ipv6_route. Expected answers follow the kubelet v1.30 source
(pkg/kubelet/nodestatus/setters.go NodeAddress; k8s.io/apimachinery/pkg/util/net
ChooseHostInterface), as node-address.sh's header sums it up.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components import node_scripts
from tests.test_renderers import stack

ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
ZERO6 = "0" * 32


def v4_route(interface: str, destination: str = "00000000", gateway: str = "0202000A") -> str:
    return f"{interface}\t{destination}\t{gateway}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"


def v6_default(interface: str, gateway: str = "fe800000000000000000000000000001") -> str:
    return f"{ZERO6} 00 {ZERO6} 00 {gateway} 00000400 00000001 00000000 00000003 {interface}\n"


@dataclass
class Node:
    """What the stand-ins report: interfaces (name -> (up, addresses)), name lookup, routes."""

    interfaces: dict[str, tuple[bool, list[str]]] = field(default_factory=dict)
    resolves_to: list[str] = field(default_factory=list)
    v4_routes: list[str] = field(default_factory=list)
    v6_routes: list[str] = field(default_factory=list)


LAB = Node(
    interfaces={"lo": (True, ["127.0.0.1", "::1"]), "ens3": (True, ["10.0.2.15", "fec0::5054:ff:fe12:3456", "fe80::1"])},
    resolves_to=["127.0.1.1"],  # the lab's /etc/hosts line for its hostname
    v4_routes=[v4_route("ens3"), v4_route("ens3", destination="0002000A", gateway="00000000")],
)


def run_step(tmp_path: Path, node: Node, node_ip: str = "", node_name: str | None = None) -> subprocess.CompletedProcess[str]:
    _, config = stack("homelab")
    if node_name is not None:
        config = config.model_copy(update={"name": node_name})
    config = config.model_copy(update={"node_ip": node_ip or None})
    script = node_scripts.node_address(config).create_script
    routes, routes6 = tmp_path / "route", tmp_path / "ipv6_route"
    routes.write_text(ROUTE_HEADER + "".join(node.v4_routes))
    routes6.write_text("".join(node.v6_routes))
    for name, value in (("ROUTE_FILE", routes), ("IPV6_ROUTE_FILE", routes6)):
        line = next(line for line in script.splitlines() if line.startswith(f"{name}="))
        script = script.replace(line, f"{name}={value}", 1)
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    addr_lines, link_lines = [], []
    for index, (interface, (up, addresses)) in enumerate(node.interfaces.items(), start=1):
        flags = "<BROADCAST,MULTICAST,UP,LOWER_UP>" if up else "<BROADCAST,MULTICAST>"
        link_lines.append(f"{index}: {interface}: {flags} mtu 1500 qdisc fq_codel state {'UP' if up else 'DOWN'}")
        for address in addresses:
            family = "inet6" if ":" in address else "inet"
            addr_lines.append(f"{index}: {interface}    {family} {address}/64 scope global \\       valid_lft forever")
    (tmp_path / "addr").write_text("".join(f"{line}\n" for line in addr_lines))
    (tmp_path / "links").write_text("".join(f"{line}\n" for line in link_lines))
    (tmp_path / "hosts").write_text("".join(f"{address}       STREAM {config.name}\n{address}       DGRAM\n"
                                            for address in node.resolves_to))
    # Stand-in for ip(8): `ip -o addr show` and `ip -o link show dev IF`, from the files above.
    (fake / "ip").write_text(
        "#!/bin/sh\n"
        f'case "$2" in addr) cat {tmp_path / "addr"} ;;\n'
        f'  link) grep " $5: " {tmp_path / "links"} || {{ echo "Device \\"$5\\" does not exist." >&2; exit 1; }} ;;\n'
        "esac\n"
    )
    # Stand-in for getent(1): `getent ahosts NAME` answers from the file above, or fails (2: not found).
    (fake / "getent").write_text(f'#!/bin/sh\n[ -s {tmp_path / "hosts"} ] || exit 2\ncat {tmp_path / "hosts"}\n')
    for tool in ("ip", "getent"):
        (fake / tool).chmod(0o755)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": f"{fake}:/usr/bin:/bin"})


def facts(tmp_path: Path, node: Node, node_ip: str = "", node_name: str | None = None) -> dict[str, object]:
    result = run_step(tmp_path, node, node_ip, node_name)
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_lab_node_registers_its_default_route_address(tmp_path: Path) -> None:
    # The hostname maps to 127.0.1.1 (loopback: the kubelet skips it), so the default route decides.
    found = facts(tmp_path, LAB)
    assert found["primaryAddress"] == "10.0.2.15"
    assert found["primaryAddressSource"] == "the default route (ens3)"
    # Loopback and link-local addresses are not the node's addresses for the kubelet.
    assert found["addresses"] == ["10.0.2.15", "fec0::5054:ff:fe12:3456"]
    assert found["warnings"] == []


def test_what_the_node_name_resolves_to_comes_first(tmp_path: Path) -> None:
    node = Node(
        interfaces={"eth0": (True, ["10.0.2.15"]), "wlan0": (True, ["192.168.1.11"])},
        resolves_to=["fd00::11", "192.168.1.99", "192.168.1.11"],  # IPv6 first; .99 is not the node's
        v4_routes=[v4_route("eth0")],
    )
    node.interfaces["eth0"][1].append("fd00::11")
    found = facts(tmp_path, node)
    # IPv4 is preferred over an earlier IPv6 address; an address not on the node is skipped.
    assert (found["primaryAddress"], found["primaryAddressSource"]) == ("192.168.1.11", "what k8s-node1 resolves to")


def test_an_ipv6_only_lookup_gives_the_ipv6_address(tmp_path: Path) -> None:
    node = Node(interfaces={"eth0": (True, ["10.0.2.15", "fd00::11"])}, resolves_to=["fd00::11"], v4_routes=[v4_route("eth0")])
    assert facts(tmp_path, node)["primaryAddress"] == "fd00::11"


def test_a_down_or_addressless_route_interface_is_passed_over(tmp_path: Path) -> None:
    node = Node(
        interfaces={"eth0": (False, ["10.0.2.15"]), "wlan0": (True, ["169.254.3.4", "fe80::2"]),
                    "eth1": (True, ["192.168.7.7"])},
        v4_routes=[v4_route("eth0"), v4_route("wlan0"), v4_route("eth1")],
    )
    found = facts(tmp_path, node)
    assert (found["primaryAddress"], found["primaryAddressSource"]) == ("192.168.7.7", "the default route (eth1)")


def test_ipv6_default_route_when_there_is_no_ipv4_one(tmp_path: Path) -> None:
    node = Node(interfaces={"eth0": (True, ["fe80::5", "2001:db8::5"])},
                v6_routes=[f"{ZERO6} 00 {ZERO6} 00 {ZERO6} 00000100 00000001 00000000 00200200 lo\n", v6_default("eth0")])
    found = facts(tmp_path, node)
    # The route without a gateway (the loopback's) does not count.
    assert (found["primaryAddress"], found["primaryAddressSource"]) == ("2001:db8::5", "the default route (eth0)")


def test_a_global_address_on_loopback_when_the_route_interface_has_none(tmp_path: Path) -> None:
    # RFC 5549 setups: the route's interface has link-local addresses only, the node's address is on lo.
    node = Node(interfaces={"lo": (True, ["127.0.0.1", "10.9.9.9"]), "eth0": (True, ["169.254.1.1"])},
                v4_routes=[v4_route("eth0")])
    assert facts(tmp_path, node)["primaryAddress"] == "10.9.9.9"


def test_no_answer_is_a_warning_naming_node_ip(tmp_path: Path) -> None:
    result = run_step(tmp_path, Node(interfaces={"eth0": (True, ["10.0.2.15"])}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["primaryAddress"] == ""
    assert ("[k8s-node1] warning: cannot tell which address the kubelet registers: k8s-node1 resolves to no "
            "address of this node and there is no default route with an address; the node certificate carries "
            "only nodes[].ips: set nodes[].nodeIP") in result.stderr


def test_node_ip_on_the_node_is_the_answer(tmp_path: Path) -> None:
    node = Node(interfaces={"eth0": (True, ["10.0.2.15"]), "wlan0": (True, ["192.168.1.11"])}, v4_routes=[v4_route("eth0")])
    found = facts(tmp_path, node, node_ip="192.168.1.11")
    assert (found["primaryAddress"], found["primaryAddressSource"]) == ("192.168.1.11", "nodes[].nodeIP")


def test_node_ip_not_on_the_node_fails_with_the_fix(tmp_path: Path) -> None:
    node = Node(interfaces={"eth0": (True, ["10.0.2.15"])}, v4_routes=[v4_route("eth0")])
    result = run_step(tmp_path, node, node_ip="192.168.1.50")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "ERROR [k8s-node1] node-address: nodeIP 192.168.1.50 is not an address of this node (it has: 10.0.2.15); "
        'the kubelet would fail with "failed to validate nodeIP": fix nodes[].nodeIP'
    )


def test_a_node_named_by_an_ip_registers_that_ip(tmp_path: Path) -> None:
    found = facts(tmp_path, LAB, node_name="192.168.1.11")
    assert (found["primaryAddress"], found["primaryAddressSource"]) == ("192.168.1.11", "the node name")


@pytest.mark.parametrize(
    ("address", "usable"),
    [("10.0.0.1", "v4"), ("0.1.2.3", "v4"), ("127.0.1.1", ""), ("0.0.0.0", ""), ("169.254.1.1", ""), ("224.0.0.5", ""),
     ("239.1.1.1", ""), ("255.255.255.255", ""), ("fd00::1", "v6"), ("2001:db8::1", "v6"), ("::1", ""), ("::", ""),
     ("fe80::1", ""), ("FE80::1", ""), ("febf::1", ""), ("fec0::1", "v6"), ("ff02::1", ""), ("ff::1", "v6")],
)
def test_which_addresses_the_kubelet_could_use(tmp_path: Path, address: str, usable: str) -> None:
    # Go's net.IP: IsLoopback, IsMulticast, IsLinkLocalUnicast, IsUnspecified (and IsGlobalUnicast's broadcast).
    body = (node_scripts.SCRIPTS_DIR / "node-address.sh").read_text()
    function = body[body.index("usable_family() {"):body.index("\n}\n", body.index("usable_family() {")) + 3]
    result = subprocess.run(["bash", "-c", f"set -euo pipefail\n{function}usable_family {address}"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == usable
