"""End to end: `pulumi up --stack lab` for real (CLI, plugins, kubelet, API server) on the lab VMs.

The tests of a module run in order against one stack per cgroup mode: fresh up, no-op
preview and up, the nodes in the lab's real control plane (registration under their names,
leases, capacity and allocatable, labels and taints, the Node authorizer, the kubelet API in
secure mode through the API server, pod CIDRs), a stack from before the triggers were dropped, a
reservation change, a version change, re-issued certificates, `--replace` of every step, an
edit of the scripts and hints, a sudo user, a node removed, destroy. What pulumi-command does on
a replacement (the new create, then the old delete with the old inputs) is what breaks nodes, so
every change checks that each kubelet is active afterwards and was started exactly as often as
what it runs on changed.

The lab boots once per cgroup mode and its control plane starts once per boot (`lab.up`, shared
with the other modules of that boot); the stack imports the control plane's CA (pki.importCa).
Cases whose outcome does not depend on the cgroup mode run in v2 only (`IN_V2_ONLY`): what the
engine, pulumi-tls, sudo and the API server's authorizer do (a version change, re-issued
certificates, `--replace` of every step, edited hints, a sudo user, another node's certificate, a
protected generated CA). Both modes run the fresh up (slices, reservations, the running
configuration), the no-op runs, the control plane's view of the nodes, a reservation change, a
node's removal and destroy (every step's delete). In v2 the sudo user set by its case stays for
the removal and the destroy, so those deletes run through sudo there and as root in v1.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pulumi import automation as auto

from components import node_scripts
from components.quantities import to_bytes, to_millicores
from components.troubleshooting import match_log
from lab import api as lab
from lab import control_plane as lab_control_plane
from lab import paths as lab_paths
from tests.e2e.harness import (
    COMMAND_TYPE,
    NODES,
    LabStack,
    control_plane,
    forget_registered_nodes,
    kubectl,
    kubectl_json,
    kubelet_start_stamp,
    kubelet_starts,
    node_clock,
    node_ssh,
    reset_nodes,
)
from tests.toolchain import require_kubelet

pytestmark = pytest.mark.e2e

NEW_VERSION = "v1.30.2"
T = TypeVar("T")

# Labels and taints this module's stack gives the nodes (the lab stack has none of its own).
ROLE_LABEL = "homelab-kubelet.test/role"
DEDICATED_TAINT = {"key": "homelab-kubelet.test/dedicated", "value": "control-plane", "effect": "NoSchedule"}
# A kubelet registers within seconds of its start; the configure step waits for it already.
REGISTRATION_TIMEOUT = 120
# The kubelet renews its Lease every 10 s (a quarter of leaseDurationSeconds, 40).
LEASE_RENEW_WAIT = 15


# Mode-independent cases: the module's stack in cgroup v2 only (see the module docstring).
IN_V2_ONLY = pytest.mark.parametrize("stack", ["v2"], indirect=True)


def with_labels_and_taints(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**node, "labels": {ROLE_LABEL: "control-plane" if node["name"] == "k8s-master" else "worker"},
         **({"taints": [DEDICATED_TAINT]} if node["name"] == "k8s-master" else {})}
        for node in nodes
    ]


@pytest.fixture(scope="module", params=["v2", "v1"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    require_kubelet("v1.30.1", "amd64")
    require_kubelet(NEW_VERSION, "amd64")
    info = lab.up(cgroup=request.param)  # the VMs, the mirror and the control plane, once per boot
    lab.mirror_sync()
    reset_nodes()
    # Nodes registered by an earlier module of this boot go: the fresh up registers them anew.
    forget_registered_nodes(control_plane(info))
    lab_stack = LabStack(tmp_path_factory.mktemp(f"e2e-{request.param}"), info)
    lab_stack.set_object("nodes", with_labels_and_taints(lab_stack.config_object("nodes")))
    lab_stack.cgroup = request.param  # type: ignore[attr-defined]
    yield lab_stack
    reset_nodes()


def memory_limit(node: str, slice_name: str, cgroup: str) -> int:
    path = (
        f"/sys/fs/cgroup/{slice_name}/memory.max" if cgroup == "v2"
        else f"/sys/fs/cgroup/memory/{slice_name}/memory.limit_in_bytes"
    )
    return int(node_ssh(node, f"cat {path}"))


def reservations(stack: LabStack, node_index: int) -> tuple[int, int]:
    config = stack.config_object("reservations")
    override = stack.config_object("nodes")[node_index].get("reservations", {})
    kube = {**config["kubeReserved"], **override.get("kubeReserved", {})}
    system = {**config["systemReserved"], **override.get("systemReserved", {})}
    return to_bytes(kube["memory"]), to_bytes(system["memory"])


def test_fresh_up_converges(stack: LabStack) -> None:
    # The journal is read from here on: earlier modules may have run failing kubelets on this boot.
    since = {node: node_ssh(node, "date +%s") for node in NODES}
    run = stack.up()
    assert run.changed(), "a fresh up creates resources"
    cgroup = stack.cgroup  # type: ignore[attr-defined]
    for index, node in enumerate(NODES):
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active"
        assert node_ssh(node, "systemctl is-enabled kubelet.service") == "enabled"
        assert node_ssh(node, "systemctl show -p ControlGroup --value kubelet.service") == "/kube.slice/kubelet.service"
        assert node_ssh(node, "systemctl show -p ControlGroup --value containerd.service") == "/kube.slice/containerd.service"
        assert node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz") == "ok"
        modes = node_ssh(
            node,
            f"stat -c '%n %a %U' /var/lib/kubelet/{node}-key.pem /var/lib/kubelet/kubeconfig "
            f"/var/lib/kubelet/{node}.pem /var/lib/kubernetes/ca.pem /var/lib/kubelet/kubelet-config.yaml",
        ).splitlines()
        assert modes == [
            f"/var/lib/kubelet/{node}-key.pem 600 root",
            "/var/lib/kubelet/kubeconfig 600 root",
            f"/var/lib/kubelet/{node}.pem 644 root",
            "/var/lib/kubernetes/ca.pem 644 root",
            "/var/lib/kubelet/kubelet-config.yaml 644 root",
        ]
        subject = node_ssh(node, f"openssl x509 -in /var/lib/kubelet/{node}.pem -noout -subject -nameopt RFC2253")
        assert f"CN=system:node:{node}" in subject and "O=system:nodes" in subject
        sans = node_ssh(node, f"openssl x509 -in /var/lib/kubelet/{node}.pem -noout -ext subjectAltName")
        assert f"DNS:{node}" in sans and "IP Address:10.0.2.15" in sans
        verify = node_ssh(node, f"openssl verify -CAfile /var/lib/kubernetes/ca.pem /var/lib/kubelet/{node}.pem")
        assert verify.endswith(": OK")
        kube_bytes, system_bytes = reservations(stack, index)
        assert memory_limit(node, "kube.slice", cgroup) == kube_bytes
        assert memory_limit(node, "system.slice", cgroup) == system_bytes
        journal = node_ssh(node, f"journalctl -u kubelet.service --since @{since[node]} --no-pager -o cat")
        assert "strict decoding failed" not in journal
        assert "Failed to start ContainerManager" not in journal
        assert not re.search(r"^F\d{4} ", journal, re.MULTILINE)


def test_preview_after_up_has_no_changes(stack: LabStack) -> None:
    run, result = stack.preview()
    assert run.changed() == {}
    # READ: the program reads its own stack's previous outputs (the certificates' notAfter, for the
    # renewal warning) through a StackReference in every run.
    assert set(result.change_summary) <= {auto.OpType.SAME, auto.OpType.READ}


def test_second_up_runs_nothing_and_restarts_nothing(stack: LabStack) -> None:
    before = {node: kubelet_start_stamp(node) for node in NODES}
    run = stack.up()
    assert run.changed() == {}
    assert {node: kubelet_start_stamp(node) for node in NODES} == before


# --- the nodes in the lab's control plane (issue 13) ------------------------------------------------


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def node_objects(stack: LabStack) -> dict[str, dict[str, Any]]:
    """This stack's Nodes (the arm64 node, of the other lab stack, registers with the same
    control plane when it runs)."""
    items = kubectl_json(control_plane(stack.info), "get", "nodes")["items"]
    return {item["metadata"]["name"]: item for item in items if item["metadata"]["name"] in NODES}


def lease_renewals(stack: LabStack) -> dict[str, tuple[str, datetime.datetime]]:
    items = kubectl_json(control_plane(stack.info), "get", "leases", "-n", "kube-node-lease")["items"]
    return {item["metadata"]["name"]: (item["spec"]["holderIdentity"],
                                       datetime.datetime.fromisoformat(item["spec"]["renewTime"]))
            for item in items}


def host_kubeconfig(stack: LabStack, tmp_path: Path, node: str) -> Path:
    """The node's kubeconfig from the stack's `kubeconfigs` output, pointed at the API server as
    the host reaches it (its certificate names 127.0.0.1 as well as 10.0.2.2)."""
    config = yaml.safe_load(stack.node_kubeconfigs()[node])
    assert config["clusters"][0]["cluster"]["server"] == lab_paths.API_SERVER_URL
    config["clusters"][0]["cluster"]["server"] = control_plane(stack.info).url
    path = tmp_path / f"{node}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_every_node_registers_under_its_name_and_its_lease_renews(stack: LabStack) -> None:
    def registered() -> dict[str, dict[str, Any]] | None:
        found = node_objects(stack)
        return found if set(found) == set(NODES) else None

    nodes = wait_for("all nodes registered", registered, REGISTRATION_TIMEOUT)
    assert sorted(nodes) == sorted(NODES)
    for name, node in nodes.items():
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["Hostname"] == name, addresses
        assert node["status"]["nodeInfo"]["kubeletVersion"] == stack.config_object("kubernetes")["version"]
        # The configure step's own report, with the node's credentials (item 7 of the issue).
        report = stack.step_output(f"{name}-{node_scripts.CONFIGURE_AND_START}", "stderr")
        assert f"[{name}] registered: the API server {lab_paths.API_SERVER_URL} has node {name}" in report, report
        assert "WARNING" not in report, report
    def leases() -> dict[str, tuple[str, datetime.datetime]] | None:
        found = lease_renewals(stack)
        return found if set(found) >= set(NODES) else None

    first = wait_for("a lease per node", leases, 60)
    time.sleep(LEASE_RENEW_WAIT)
    second = lease_renewals(stack)
    for name in NODES:
        assert first[name][0] == second[name][0] == name
        assert second[name][1] > first[name][1], (name, first[name], second[name])


def test_capacity_is_the_preflight_facts_and_allocatable_the_nodes_output_exactly(stack: LabStack) -> None:
    summaries = stack.nodes_output()
    for name, node in node_objects(stack).items():
        facts, table = summaries[name]["facts"], summaries[name]["allocatable"]
        capacity, allocatable = node["status"]["capacity"], node["status"]["allocatable"]
        assert to_millicores(capacity["cpu"]) == 1000 * int(facts["cpus"]), (name, capacity)
        assert to_bytes(capacity["memory"]) == int(facts["memoryBytes"]), (name, capacity)
        # capacity - systemReserved - kubeReserved - evictionHard, as the kubelet writes it
        assert (allocatable["cpu"], allocatable["memory"]) == (table["cpu"], table["memory"]), (name, allocatable)


def test_the_stacks_labels_and_taints_are_on_the_nodes(stack: LabStack) -> None:
    configured = {node["name"]: node for node in stack.config_object("nodes")}
    for name, node in node_objects(stack).items():
        labels = node["metadata"]["labels"]
        for key, value in configured[name]["labels"].items():
            assert labels.get(key) == value, (name, key, labels)
        assert labels["kubernetes.io/hostname"] == name
        taints = [{k: t[k] for k in ("key", "value", "effect") if k in t} for t in node["spec"].get("taints", [])]
        for taint in configured[name].get("taints", []):
            assert taint in taints, (name, taints)
        if name != "k8s-master":
            assert DEDICATED_TAINT not in taints


def test_every_node_gets_a_pod_cidr_from_the_controller_manager(stack: LabStack) -> None:
    facts = lab_control_plane.lab_facts()
    def allocated() -> dict[str, str] | None:
        found = {name: node["spec"].get("podCIDR", "") for name, node in node_objects(stack).items()}
        return found if len(found) == len(NODES) and all(found.values()) else None

    cidrs = wait_for("spec.podCIDR on every node", allocated, 60)
    networks = {name: ipaddress.ip_network(cidr) for name, cidr in cidrs.items()}
    for name, network in networks.items():
        assert network.prefixlen == facts.node_cidr_mask_size and network.subnet_of(facts.cluster_cidr), (name, network)  # type: ignore[arg-type]
    assert len(set(networks.values())) == len(NODES)
    # The kubelet's podCIDR setting is only its standalone value, so kubelet-config.yaml does not
    # carry nodes[].podCIDR: the Node's spec.podCIDR is what the control plane allocated (README).
    for name in NODES:
        assert node_ssh(name, "grep -c '^podCIDR:' /var/lib/kubelet/kubelet-config.yaml || true") == "0", name


def _go_duration_seconds(text: str) -> float | None:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or match is None:
        return None
    hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def differences(rendered: Any, running: Any, path: str = "") -> list[str]:
    """What of `rendered` (kubelet-config.yaml) `running` (the kubelet's configz) does not carry:
    equal values, durations equal in seconds (`2m` is `2m0s`); a zero value may be left out
    (the v1beta1 JSON omits empty fields)."""
    if isinstance(rendered, dict):
        problems = []
        for key, value in rendered.items():
            if key in ("kind", "apiVersion"):
                continue
            if not isinstance(running, dict) or key not in running:
                if value not in (0, "", [], {}, None):
                    problems.append(f"{path}{key}: not in the running config")
                continue
            problems += differences(value, running[key], f"{path}{key}.")
        return problems
    if isinstance(rendered, list):
        if not isinstance(running, list) or len(rendered) != len(running):
            return [f"{path}: rendered {rendered!r}, running {running!r}"]
        return [p for index, (a, b) in enumerate(zip(rendered, running, strict=True))
                for p in differences(a, b, f"{path}[{index}].")]
    if rendered == running:
        return []
    if isinstance(rendered, str) and isinstance(running, str):
        a, b = _go_duration_seconds(rendered), _go_duration_seconds(running)
        if a is not None and a == b:
            return []
    return [f"{path.rstrip('.')}: rendered {rendered!r}, running {running!r}"]


def test_configz_through_the_api_server_carries_every_rendered_setting(stack: LabStack) -> None:
    cp = control_plane(stack.info)
    for name in NODES:
        running = json.loads(kubectl(cp, "get", "--raw", f"/api/v1/nodes/{name}/proxy/configz"))["kubeletconfig"]
        rendered = yaml.safe_load(node_ssh(name, "cat /var/lib/kubelet/kubelet-config.yaml"))
        for key in ("systemReserved", "kubeReserved", "evictionHard", "enforceNodeAllocatable", "cgroupDriver",
                    "authentication", "authorization"):
            assert key in rendered and key in running, (name, key)
        assert differences(rendered, running) == [], name
        assert running["authentication"]["anonymous"]["enabled"] is False
        assert running["authorization"]["mode"] == "Webhook"


def _kubelet_get(name: str, path: str, client: tuple[Path, Path] | None = None) -> tuple[int, str]:
    """GET https://<node>:10250<path> from the host through the node's forward, verifying the
    kubelet's serving certificate with the lab CA under the node's name."""
    context = ssl.create_default_context(cafile=str(lab_control_plane.lab_pki().ca_cert))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    with socket.create_connection((lab_paths.kubelet_forward_address(name), lab_paths.KUBELET_PORT), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}:10250\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    head, _, body = response.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body.strip()


def test_the_kubelet_api_refuses_anonymous_and_unauthorized_clients(stack: LabStack, tmp_path: Path) -> None:
    pki = lab_control_plane.lab_pki()
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    cert_pem, key_pem = lab_control_plane.issue(ca, ca_key, lab_control_plane.Identity(  # type: ignore[arg-type]
        "e2e-no-rbac", "lab-e2e-no-rbac"))
    client = (tmp_path / "client.pem", tmp_path / "client-key.pem")
    client[0].write_bytes(cert_pem)
    client[1].write_bytes(key_pem)
    for name in NODES:
        assert _kubelet_get(name, "/configz") == (401, "Unauthorized"), name
        status, body = _kubelet_get(name, "/configz", client)
        assert (status, body) == (
            403, "Forbidden (user=lab-e2e-no-rbac, verb=get, resource=nodes, subresource=proxy)"), name
        assert [m.entry.id for m in match_log(body)] == ["kubelet-api-forbidden"]


def test_the_node_authorizer_refuses_a_node_another_nodes_object(stack: LabStack, tmp_path: Path) -> None:
    cp = control_plane(stack.info)
    node1 = host_kubeconfig(stack, tmp_path, "k8s-node1")
    assert kubectl(cp, "get", "node", "k8s-node1", "-o", "name", kubeconfig=node1).strip() == "node/k8s-node1"
    result = lab_control_plane.kubectl(cp, "patch", "node", "k8s-master", "-p",
                                       json.dumps({"metadata": {"labels": {"homelab-kubelet.test/x": "y"}}}),
                                       kubeconfig=node1)
    assert result.returncode != 0
    assert result.stderr.strip() == ('Error from server (Forbidden): nodes "k8s-master" is forbidden: node '
                                     '"k8s-node1" is not allowed to modify node "k8s-master"')
    assert "homelab-kubelet.test/x" not in node_objects(stack)["k8s-master"]["metadata"]["labels"]


@IN_V2_ONLY
def test_a_kubelet_with_another_nodes_certificate_cannot_register_as_itself(stack: LabStack) -> None:
    # k8s-node1's kubelet, given k8s-node2's kubeconfig: its --hostname-override still says
    # k8s-node1, its client certificate system:node:k8s-node2.
    node, other = "k8s-node1", "k8s-node2"
    since = node_clock(node)
    saved = "/var/lib/kubelet/.kubeconfig.e2e-saved"
    node_ssh(node, f"cp -p /var/lib/kubelet/kubeconfig {saved}")
    try:
        swapped = lab.ssh(node, "cat > /var/lib/kubelet/kubeconfig && systemctl restart kubelet.service",
                          input=stack.node_kubeconfigs()[other], timeout=120)
        assert swapped.returncode == 0, swapped.stderr

        def refused() -> str | None:
            journal = node_ssh(node, f"journalctl -u kubelet.service --since @{since} -o cat --no-pager")
            return journal if "is not allowed to modify node" in journal else None

        journal = wait_for("the registration refused", refused, 120)
    finally:
        node_ssh(node, f"mv -f {saved} /var/lib/kubelet/kubeconfig && systemctl restart kubelet.service")
    line = next(line for line in journal.splitlines() if "is not allowed to modify node" in line)
    assert f'node \\"{other}\\" is not allowed to modify node \\"{node}\\"' in line, line
    assert "node-name-differs-from-certificate" in [m.entry.id for m in match_log(journal)]
    wait_for("the kubelet back with its own certificate",
             lambda: node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz || true") == "ok", 120)
    renewed = lease_renewals(stack)[node][1]
    wait_for("k8s-node1's lease renewed again", lambda: lease_renewals(stack)[node][1] > renewed, 60)


def assert_running_after(since: dict[str, int], starts: dict[str, int]) -> None:
    """Every kubelet active (and not mid-restart), started exactly `starts[node]` times."""
    for node in NODES:
        assert node_ssh(node, "systemctl is-active kubelet.service") == "active", node
        assert node_ssh(node, "curl -fsS http://127.0.0.1:10248/healthz") == "ok", node
        assert kubelet_starts(node, since[node]) == starts[node], node


def test_a_stack_from_before_triggers_were_dropped_updates_in_place(stack: LabStack) -> None:
    # Earlier versions of this program gave configure-and-start `triggers`; dropping them would
    # be a replacement, and the old delete would unconfigure the node. They are ignored instead.
    exported = stack.stack.export_stack()
    deployment = dict(exported.deployment or {})
    for resource in deployment["resources"]:
        if resource["type"] == COMMAND_TYPE and resource["urn"].endswith(f"-{node_scripts.CONFIGURE_AND_START}"):
            old = ["kubelet=v1.30.1/amd64", "credentials=0123456789abcdef"]
            resource["inputs"] = {**resource["inputs"], "triggers": old}
            resource["outputs"] = {**resource["outputs"], "triggers": old}
    stack.stack.import_stack(auto.Deployment(version=exported.version, deployment=deployment))
    run, result = stack.preview()
    assert run.changed() == {}
    # READ: the program reads its own stack's previous outputs (the certificates' notAfter, for the
    # renewal warning) through a StackReference in every run.
    assert set(result.change_summary) <= {auto.OpType.SAME, auto.OpType.READ}


def test_reservation_change_restarts_that_node_only(stack: LabStack) -> None:
    since = {node: node_clock(node) for node in NODES}
    before = {node: kubelet_start_stamp(node) for node in NODES}
    stack.set("nodes[1].reservations.kubeReserved.memory", "320Mi")
    run, result = stack.preview(diff=True)
    # Two remote steps on that node: preflight checks the new reservations fit, then the
    # configuration is written and the kubelet restarted.
    assert run.changed() == {f"k8s-node1-{step}": "update" for step in (node_scripts.PREFLIGHT, node_scripts.CONFIGURE_AND_START)}
    assert "320Mi" in result.stdout
    stack.up()
    after = {node: kubelet_start_stamp(node) for node in NODES}
    assert after["k8s-node1"] != before["k8s-node1"]
    assert after["k8s-master"] == before["k8s-master"]
    assert after["k8s-node2"] == before["k8s-node2"]
    assert memory_limit("k8s-node1", "kube.slice", stack.cgroup) == 320 * 2**20  # type: ignore[attr-defined]
    assert "memory: 320Mi" in node_ssh("k8s-node1", "cat /var/lib/kubelet/kubelet-config.yaml")
    assert_running_after(since, {"k8s-master": 0, "k8s-node1": 1, "k8s-node2": 0})


@IN_V2_ONLY
def test_version_change_installs_the_binary_and_restarts_each_kubelet_once(stack: LabStack) -> None:
    since = {node: node_clock(node) for node in NODES}
    stack.set("kubernetes.version", NEW_VERSION)
    # Preflight runs again: it checks the new version against the API server's (version skew).
    upgrade_steps = (node_scripts.PREFLIGHT, node_scripts.INSTALL_KUBELET, node_scripts.CONFIGURE_AND_START)
    run, result = stack.preview(diff=True)
    assert run.changed() == {f"{node}-{step}": "update" for node in NODES for step in upgrade_steps}
    assert f"kubelet {NEW_VERSION} (amd64)" in result.stdout  # the configure step's note, readable
    run = stack.up()
    assert run.changed() == {f"{node}-{step}": "update" for node in NODES for step in upgrade_steps}
    for node in NODES:
        assert node_ssh(node, "/usr/bin/kubelet --version") == f"Kubernetes {NEW_VERSION}"
        assert stack.step_stdout(f"{node}-{node_scripts.CONFIGURE_AND_START}").endswith(
            "kubelet restarted: changed since it started: /usr/bin/kubelet"
        )
    assert_running_after(since, dict.fromkeys(NODES, 1))


@IN_V2_ONLY
def test_reissued_certificates_reach_every_kubelet_with_one_restart(stack: LabStack) -> None:
    # pulumi-tls re-issues every certificate on early renewal; a new SAN forces the same here.
    since = {node: node_clock(node) for node in NODES}
    nodes = stack.config_object("nodes")
    for node in nodes:
        node["ips"] = [*node.get("ips", []), "10.0.2.16"]
    stack.set_object("nodes", nodes)
    run = stack.up()
    for node in NODES:
        assert run.changed()[f"{node}-{node_scripts.CREDENTIALS}"] == "update"
        assert run.changed()[f"{node}-{node_scripts.CONFIGURE_AND_START}"] == "update"
        sans = node_ssh(node, f"openssl x509 -in /var/lib/kubelet/{node}.pem -noout -ext subjectAltName")
        assert "IP Address:10.0.2.16" in sans, sans
        report = stack.step_stdout(f"{node}-{node_scripts.CONFIGURE_AND_START}")
        assert f"/var/lib/kubelet/{node}.pem" in report and report.startswith("kubelet restarted"), report
    assert_running_after(since, dict.fromkeys(NODES, 1))


@IN_V2_ONLY
def test_replacing_every_step_keeps_every_kubelet(stack: LabStack) -> None:
    # `pulumi up --replace`: each new create runs, then each old delete with the old inputs.
    since = {node: node_clock(node) for node in NODES}
    steps = [r["urn"] for r in stack.resources() if r["type"] == COMMAND_TYPE]
    assert len(steps) == len(node_scripts.STEP_NAMES) * len(NODES)
    run = stack.up(replace=steps)
    sequences = run.op_sequence()
    for step in steps:
        # create-before-delete: the new create, then the old delete at the end of the same up
        ops = sequences[step.rsplit("::", 1)[1]]
        assert ops.index("create-replacement") < ops.index("delete-replaced"), (step, ops)
    for node in NODES:
        for step in node_scripts.WRITING_STEPS:
            assert node_ssh(node, f"cat /var/lib/homelab-kubelet/holders/{step}") == "1", (node, step)
        assert node_ssh(node, "ls /usr/bin/kubelet /var/lib/kubelet/kubeconfig /etc/systemd/system/kubelet.service")
        assert stack.step_stdout(f"{node}-{node_scripts.CONFIGURE_AND_START}").endswith("kubelet not restarted: nothing it runs on "
                                                                         "changed since it started")
    assert_running_after(since, dict.fromkeys(NODES, 0))
    assert stack.preview()[0].changed() == {}


@IN_V2_ONLY
def test_an_edit_of_a_hint_or_a_script_comment_restarts_no_kubelet(stack: LabStack) -> None:
    # The language host runs the copy's __main__.py: edit what it renders there, as a new version
    # of this project would (a hint's text, a comment in a step script).
    since = {node: node_clock(node) for node in NODES}
    hints_py = stack.project / "components" / "hints.py"
    script = stack.project / "components" / "node_steps" / "start-kubelet.sh"
    original_hints, original_script = hints_py.read_text(), script.read_text()
    edited_hints = original_hints.replace('fix: {entry.fix}"', 'fix: {entry.fix}\\n    (edited)"')
    assert edited_hints != original_hints, "hint_text changed shape: adjust this edit"
    hints_py.write_text(edited_hints)
    script.write_text(original_script + "# an edited comment\n")
    try:
        run = stack.up()
    finally:
        hints_py.write_text(original_hints)
        script.write_text(original_script)
    assert run.changed() == {f"{node}-{node_scripts.CONFIGURE_AND_START}": "update" for node in NODES}
    run = stack.up()
    assert run.changed() == {f"{node}-{node_scripts.CONFIGURE_AND_START}": "update" for node in NODES}
    assert_running_after(since, dict.fromkeys(NODES, 0))


@IN_V2_ONLY
def test_sudo_user_works_as_well_as_root(stack: LabStack) -> None:
    since = {node: node_clock(node) for node in NODES}
    stack.set("ssh.user", "kube")
    run = stack.up()
    # A different user is a different command line (sudo): every step reruns, as that user.
    assert set(run.changed().values()) == {"update"} and len(run.changed()) == len(node_scripts.STEP_NAMES) * len(NODES)
    for node in NODES:
        journal = node_ssh(node, f"journalctl --since @{since[node]} -o cat --no-pager SYSLOG_IDENTIFIER=sudo")
        assert "kube : " in journal and "USER=root ; COMMAND=/usr/bin/bash -c" in journal, journal[-2000:]
    assert_running_after(since, dict.fromkeys(NODES, 0))
    # The user stays kube: the node removal and the destroy after this run their deletes through sudo.


def test_removing_a_node_cleans_it_and_leaves_the_others(stack: LabStack) -> None:
    before = {node: kubelet_start_stamp(node) for node in NODES}
    nodes = stack.config_object("nodes")
    stack.set_object("nodes", nodes[:2])
    stack.up()
    assert lab.ssh("k8s-node2", "systemctl is-active kubelet.service").stdout.strip() != "active"
    assert lab.ssh("k8s-node2", "systemctl is-enabled kubelet.service").stdout.strip() != "enabled"
    leftovers = node_ssh(
        "k8s-node2",
        "ls -d /usr/bin/kubelet /var/lib/kubelet/kubeconfig /var/lib/kubelet/kubelet-config.yaml "
        "/etc/systemd/system/kubelet.service /var/lib/kubernetes/ca.pem 2>/dev/null || true",
    )
    assert leftovers == ""
    for node in ("k8s-master", "k8s-node1"):
        assert kubelet_start_stamp(node) == before[node]


def test_destroy_exclude_protected_leaves_nothing_of_an_imported_ca(stack: LabStack) -> None:
    stack.destroy(exclude_protected=True)
    for node in ("k8s-master", "k8s-node1"):
        assert lab.ssh(node, "systemctl is-active kubelet.service").stdout.strip() != "active"
        assert node_ssh(node, "ls /var/lib/kubelet/kubeconfig /usr/bin/kubelet 2>/dev/null || true") == ""
    deployment = stack.stack.export_stack().deployment or {}
    # The imported CA is the cluster's, not a resource of the stack: nothing is protected or left.
    resources = [r for r in deployment.get("resources", []) if r["type"] != "pulumi:pulumi:Stack"
                 and not r["type"].startswith("pulumi:providers:")]
    assert resources == []
    assert lab_control_plane.lab_pki().ca_cert.exists()


@IN_V2_ONLY
def test_a_generated_ca_is_protected_from_a_plain_destroy(stack: LabStack) -> None:
    # Without pki.importCa the stack makes its own CA, protected: only the CA is applied here.
    stack.set_object("pki", {"importCa": False})
    base = f"urn:pulumi:{stack.stack.name}::homelab-kubelet::"
    pki = "homelab-kubelet:pki:ClusterPki"
    stack.up(target=[f"{base}{pki}::cluster", f"{base}{pki}$tls:index/privateKey:PrivateKey::cluster-ca-key",
                     f"{base}{pki}$tls:index/selfSignedCert:SelfSignedCert::cluster-ca-cert"])
    with pytest.raises(auto.errors.CommandError) as failure:
        stack.destroy()
    assert "protected" in str(failure.value)
    stack.destroy(exclude_protected=True)
    deployment = stack.stack.export_stack().deployment or {}
    kept = sorted(r["urn"].rsplit("::", 1)[1] for r in deployment["resources"] if r.get("protect"))
    assert kept == ["cluster-ca-cert", "cluster-ca-key"]


def test_no_private_key_material_outside_encrypted_secrets(stack: LabStack) -> None:
    # The state file (secrets are ciphertext there) and every engine event of every operation
    # of this module, which carry the commands' inputs, stdout and stderr.
    state = stack.state_text()
    assert "PRIVATE KEY" not in state
    events = stack.event_log()
    assert events, "the event log was recorded"
    assert "PRIVATE KEY" not in events
