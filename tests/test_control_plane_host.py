"""The lab's control plane on the host, without VMs: real etcd (Debian's), kube-apiserver,
kube-controller-manager and kubectl (scripts/toolchain control-plane).

One control plane for the module, on free ports, with the kubelet forwards at 127.0.0.12-14 so
that it never meets a running lab's (127.0.0.2-4). It checks what `python -m lab up` relies on
(admin kubeconfig, RBAC, controller manager, the node names resolved inside the control plane's
namespace only, the relay to the kubelet forwards) and records the API server's real answers
that the troubleshooting catalogue quotes. No kubelet runs here: where the API server must reach
one, a small TLS server with a kubelet-like certificate stands in for it (labelled so).
Stopping it leaves no process behind. About 30 s.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components import node_scripts
from components.kubeconfig import render_kubeconfig
from components.troubleshooting import default_catalogue, match_log
from lab import control_plane as cp_mod
from lab import paths as lab_paths
from tests.test_renderers import stack

pytestmark = pytest.mark.toolchain

FORWARDS = (("k8s-master", "127.0.0.12"), ("k8s-node1", "127.0.0.13"), ("k8s-node2", "127.0.0.14"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def facts() -> cp_mod.Facts:
    return cp_mod.Facts(
        version=lab_paths.KUBERNETES_VERSION, cluster_domain=lab_paths.CLUSTER_DOMAIN,
        cluster_dns=lab_paths.CLUSTER_DNS, pod_cidrs=tuple(lab_paths.POD_CIDRS.values()), kubelet_addresses=FORWARDS,
    )


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cp_mod.ControlPlane]:
    try:
        cp_mod.require_binaries(lab_paths.KUBERNETES_VERSION)
    except cp_mod.ControlPlaneError as error:
        pytest.fail(str(error))
    ports = cp_mod.Ports(apiserver=free_port(), etcd_client=free_port(), etcd_peer=free_port(),
                         controller_manager=free_port())
    started = cp_mod.start(tmp_path_factory.mktemp("control-plane"), ports, facts(), progress=print)
    yield started
    cp_mod.stop(started)


def kubectl(cp: cp_mod.ControlPlane, *args: str, kubeconfig: Path | None = None, ok: bool = True) -> str:
    result = cp_mod.kubectl(cp, *args, kubeconfig=kubeconfig)
    if ok:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout
    assert result.returncode != 0, f"kubectl {' '.join(args)} succeeded: {result.stdout}"
    return result.stderr


def signer(cp: cp_mod.ControlPlane) -> tuple[x509.Certificate, object]:
    ca = x509.load_pem_x509_certificate(cp.pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(cp.pki.ca_key.read_bytes(), password=None)
    return ca, key


def client_kubeconfig(cp: cp_mod.ControlPlane, directory: Path, name: str, common_name: str,
                      organizations: tuple[str, ...] = (), other_ca: bool = False,
                      other_server_ca: bool = False) -> Path:
    """A kubeconfig for a client certificate of the control plane's CA (or of another CA), that
    trusts the control plane's CA (or another one)."""
    ca, key = cp_mod._make_ca() if other_ca else signer(cp)
    cert_pem, key_pem = cp_mod.issue(ca, key, cp_mod.Identity(name, common_name, organizations))  # type: ignore[arg-type]
    trusted = (cp_mod._make_ca()[0].public_bytes(serialization.Encoding.PEM).decode() if other_server_ca
               else cp.pki.ca_cert.read_text())
    path = directory / f"{name}.kubeconfig"
    path.write_text(render_kubeconfig(cluster_name="kubernetes", server=cp.url, ca_cert_pem=trusted,
                                      client_cert_pem=cert_pem.decode(), client_key_pem=key_pem.decode(),
                                      user=common_name))
    return path


def node_kubeconfig(cp: cp_mod.ControlPlane, directory: Path, node: str, **kwargs: bool) -> Path:
    return client_kubeconfig(cp, directory, node, f"system:node:{node}", ("system:nodes",), **kwargs)


def catalogued(text: str) -> set[str]:
    return {m.entry.id for m in match_log(text, default_catalogue())}


def create_node(cp: cp_mod.ControlPlane, name: str) -> None:
    """A Node as a kubelet registers it: its name as the Hostname address, the kubelet's port."""
    result = cp_mod.kubectl(cp, "create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    assert result.returncode == 0, result.stderr
    status = {"status": {"addresses": [{"type": "Hostname", "address": name}],
                         "daemonEndpoints": {"kubeletEndpoint": {"Port": lab_paths.KUBELET_PORT}}}}
    kubectl(cp, "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


# --------------------------------------------------------------------------- the control plane


def test_admin_kubeconfig_lists_the_namespaces(cp: cp_mod.ControlPlane) -> None:
    names = kubectl(cp, "get", "ns", "-o", "jsonpath={.items[*].metadata.name}").split()
    assert {"default", "kube-system", "kube-node-lease"} <= set(names)
    assert json.loads(kubectl(cp, "version", "-o", "json"))["serverVersion"]["gitVersion"] == cp.version


def test_the_api_server_runs_in_secure_mode_with_the_lab_flags(cp: cp_mod.ControlPlane) -> None:
    args = Path(f"/proc/{cp.apiserver_pid}/cmdline").read_bytes().decode().split("\0")
    for flag in ("--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                 f"--client-ca-file={cp.pki.ca_cert}", f"--kubelet-certificate-authority={cp.pki.ca_cert}",
                 "--kubelet-preferred-address-types=Hostname", f"--service-cluster-ip-range={facts().service_cidr}"):
        assert flag in args, flag
    assert ipaddress.ip_address(lab_paths.CLUSTER_DNS[0]) in facts().service_cidr


def test_the_kubelet_client_may_use_the_kubelet_api_and_no_one_else(cp: cp_mod.ControlPlane) -> None:
    for subresource in ("proxy", "stats", "log", "spec", "metrics"):
        for user, answer in ((cp_mod.KUBELET_CLIENT_USER, "yes"), ("someone-else", "no")):
            result = cp_mod.kubectl(cp, "auth", "can-i", "get", "nodes", f"--subresource={subresource}", "--as", user)
            assert result.stdout.strip() == answer, (subresource, user, result.stdout, result.stderr)
    role = json.loads(kubectl(cp, "get", "clusterrole", cp_mod.RBAC_ROLE, "-o", "json"))
    assert role["rules"][0]["resources"] == list(cp_mod.KUBELET_API_SUBRESOURCES)


def test_the_controller_manager_is_healthy_and_allocates_pod_cidrs(cp: cp_mod.ControlPlane) -> None:
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    assert cp_mod._get(f"https://127.0.0.1:{cp.controller_manager_port}/healthz", insecure) == (200, "ok")
    create_node(cp, "k8s-node2")
    deadline = time.monotonic() + 30
    cidr = ""
    while not cidr and time.monotonic() < deadline:
        cidr = kubectl(cp, "get", "node", "k8s-node2", "-o", "jsonpath={.spec.podCIDR}").strip()
        time.sleep(0.5)
    assert cidr, "kube-controller-manager did not allocate a pod CIDR within 30 s"
    network = ipaddress.ip_network(cidr)
    assert network.prefixlen == 24 and network.subnet_of(facts().cluster_cidr)  # type: ignore[arg-type]


def test_the_controller_manager_keeps_a_pod_cidr_a_node_already_has(cp: cp_mod.ControlPlane) -> None:
    # README: to give a node its nodes[].podCIDR, create its Node with spec.podCIDR first.
    result = cp_mod.kubectl(cp, "create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-given"},
        "spec": {"podCIDR": "10.200.3.0/24", "podCIDRs": ["10.200.3.0/24"]}}))
    assert result.returncode == 0, result.stderr
    time.sleep(3)  # the allocator has seen it (it allocated k8s-node2's range within a second)
    node = json.loads(kubectl(cp, "get", "node", "k8s-given", "-o", "json"))
    assert node["spec"]["podCIDRs"] == ["10.200.3.0/24"]


def test_node_names_resolve_in_the_control_planes_namespace_only(cp: cp_mod.ControlPlane) -> None:
    inside = cp_mod.in_apiserver_namespace(cp, "getent", "hosts", "k8s-node1")
    assert inside.returncode == 0 and inside.stdout.split() == ["198.18.0.13", "k8s-node1"], inside
    outside = subprocess.run(["getent", "hosts", "k8s-node1"], capture_output=True, text=True, check=False)
    assert "198.18.0.13" not in outside.stdout
    assert "k8s-node1" not in Path("/etc/hosts").read_text()


def test_the_api_server_reaches_a_kubelet_by_name_through_the_relay(cp: cp_mod.ControlPlane, tmp_path: Path) -> None:
    """A stand-in for a kubelet (a TLS server with the node's serving certificate, NOT a kubelet)
    on k8s-node1's forward: the real API server dials it by node name, verifies its certificate
    with the CA and presents its kubelet-client certificate."""
    ca, key = signer(cp)
    cert_pem, key_pem = cp_mod.issue(ca, key, cp_mod.Identity(  # type: ignore[arg-type]
        "k8s-node1", "system:node:k8s-node1", ("system:nodes",), server=True, dns_names=("k8s-node1",)))
    (tmp_path / "kubelet.pem").write_bytes(cert_pem)
    (tmp_path / "kubelet-key.pem").write_bytes(key_pem)
    seen: list[tuple[str, str]] = []

    class Kubelet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert() or {}
            subject = dict(pair for rdn in peer.get("subject", ()) for pair in rdn)
            seen.append((self.path, subject.get("commonName", "")))
            body = b'{"kubeletconfig":{"stand-in":true}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tmp_path / "kubelet.pem"), str(tmp_path / "kubelet-key.pem"))
    context.load_verify_locations(str(cp.pki.ca_cert))
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.HTTPServer(("127.0.0.13", lab_paths.KUBELET_PORT), Kubelet)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        create_node(cp, "k8s-node1")
        answer = kubectl(cp, "get", "--raw", "/api/v1/nodes/k8s-node1/proxy/configz")
    finally:
        server.shutdown()
        server.server_close()
    assert json.loads(answer) == {"kubeletconfig": {"stand-in": True}}
    assert seen == [("/configz", cp_mod.KUBELET_CLIENT_USER)]


# --------------------------------------------------------------------------- real answers (catalogue)


def test_another_nodes_certificate_may_not_modify_a_node(cp: cp_mod.ControlPlane, tmp_path: Path) -> None:
    create_node(cp, "k8s-master")
    node1 = node_kubeconfig(cp, tmp_path, "k8s-node1")
    message = kubectl(cp, "label", "node", "k8s-master", "x=y", kubeconfig=node1, ok=False)
    assert message.strip() == ('Error from server (Forbidden): nodes "k8s-master" is forbidden: node "k8s-node1" '
                               'is not allowed to modify node "k8s-master"')
    assert "node-name-differs-from-certificate" in catalogued(message)
    # ... nor register under another node's name.
    registered = cp_mod.kubectl(cp, "create", "-f", "-", kubeconfig=node1,
                                input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-other"}}))
    assert 'node "k8s-node1" is not allowed to modify node "k8s-other"' in registered.stderr


def test_a_node_certificate_of_another_ca_is_unauthorized(cp: cp_mod.ControlPlane, tmp_path: Path) -> None:
    message = kubectl(cp, "get", "nodes", kubeconfig=node_kubeconfig(cp, tmp_path, "k8s-node1", other_ca=True),
                      ok=False)
    assert message.strip() == "error: You must be logged in to the server (Unauthorized)"
    assert "api-server-rejects-node-certificate" in catalogued(message)


def test_an_api_server_certificate_of_another_ca_is_an_unknown_authority(cp: cp_mod.ControlPlane,
                                                                          tmp_path: Path) -> None:
    message = kubectl(cp, "get", "nodes",
                      kubeconfig=node_kubeconfig(cp, tmp_path, "k8s-node1", other_server_ca=True), ok=False)
    assert message.startswith("Unable to connect to the server: tls: failed to verify certificate: "
                              "x509: certificate signed by unknown authority"), message
    assert "api-server-certificate-unknown-authority" in catalogued(message)


def test_a_node_that_never_registered_is_not_found(cp: cp_mod.ControlPlane, tmp_path: Path) -> None:
    message = kubectl(cp, "get", "node", "k8s-never", kubeconfig=node_kubeconfig(cp, tmp_path, "k8s-never"), ok=False)
    assert message.strip() == 'Error from server (NotFound): nodes "k8s-never" not found'
    # One such line is normal at a kubelet's start; the entry counts a steady stream of them.
    assert catalogued(message) == set()
    assert "node-not-registered" in catalogued(message * 10)


def test_a_user_without_the_rbac_may_not_proxy_to_a_kubelet(cp: cp_mod.ControlPlane, tmp_path: Path) -> None:
    create_node(cp, "k8s-rbac")
    user = client_kubeconfig(cp, tmp_path, "no-rbac", "lab-no-rbac")
    message = kubectl(cp, "get", "--raw", "/api/v1/nodes/k8s-rbac/proxy/configz", kubeconfig=user, ok=False)
    assert message.strip() == ('Error from server (Forbidden): nodes "k8s-rbac" is forbidden: User "lab-no-rbac" '
                               'cannot get resource "nodes/proxy" in API group "" at the cluster scope')
    # The API server's own RBAC (a person's kubectl), not the kubelet's answer to the API server
    # (the catalogue's kubelet-api-forbidden): no entry for it.
    assert catalogued(message) == set()


# --------------------------------------------------------------------------- the configure step's check


def run_registration_check(cp: cp_mod.ControlPlane, kubeconfig_dir: Path, node: str, url: str | None = None,
                           other_ca: bool = False, other_server_ca: bool = False) -> subprocess.CompletedProcess[str]:
    ca, key = cp_mod._make_ca() if other_ca else signer(cp)
    cert_pem, key_pem = cp_mod.issue(ca, key, cp_mod.Identity(node, f"system:node:{node}", ("system:nodes",)))  # type: ignore[arg-type]
    (kubeconfig_dir / "node.pem").write_bytes(cert_pem)
    (kubeconfig_dir / "node-key.pem").write_bytes(key_pem)
    trusted = kubeconfig_dir / "ca.pem"
    trusted.write_bytes(cp_mod._make_ca()[0].public_bytes(serialization.Encoding.PEM) if other_server_ca
                        else cp.pki.ca_cert.read_bytes())
    _, node_settings = stack("homelab")
    script = node_scripts.render_script(
        "check registration", node_settings.model_copy(update={"name": node}),
        {"API_SERVER": url or cp.url, "CA_CERT": str(trusted), "NODE_CERT": str(kubeconfig_dir / "node.pem"),
         "NODE_KEY": str(kubeconfig_dir / "node-key.pem"), "REGISTRATION_WAIT": 0},
        "check-registration.sh",
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, timeout=60,
                          env={"PATH": os.environ["PATH"]})


def test_the_registration_check_reads_the_real_api_servers_answers(cp: cp_mod.ControlPlane, tmp_path: Path) -> None:
    answers = {}
    answers["unknown"] = run_registration_check(cp, tmp_path, "k8s-check")
    create_node(cp, "k8s-check")
    answers["registered"] = run_registration_check(cp, tmp_path, "k8s-check")
    answers["other CA"] = run_registration_check(cp, tmp_path, "k8s-check", other_ca=True)
    answers["other server CA"] = run_registration_check(cp, tmp_path, "k8s-check", other_server_ca=True)
    answers["no server"] = run_registration_check(cp, tmp_path, "k8s-check", url=f"https://127.0.0.1:{free_port()}")
    for name, result in answers.items():
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout == "", name
    assert answers["unknown"].stderr.startswith(
        "WARNING [k8s-check]: node k8s-check is not registered with the API server"), answers["unknown"].stderr
    assert answers["registered"].stderr == f"[k8s-check] registered: the API server {cp.url} has node k8s-check\n"
    assert "refuses the node's certificate (401 Unauthorized)" in answers["other CA"].stderr
    assert "did not sign" in answers["other server CA"].stderr and "curl: (60)" in answers["other server CA"].stderr
    assert "no API server answers" in answers["no server"].stderr


# --------------------------------------------------------------------------- PKI and stop


def test_the_pki_is_kept_across_starts(cp: cp_mod.ControlPlane) -> None:
    pki = cp.pki
    before = {path.name: path.read_bytes() for path in pki.dir.iterdir()}
    again = cp_mod.ensure_pki(pki.dir, facts())
    assert {path.name: path.read_bytes() for path in again.dir.iterdir()} == before
    assert oct(pki.dir.stat().st_mode & 0o777) == "0o700"
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"
    assert pki.ca_key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as OpenSSL 3 writes
    apiserver = x509.load_pem_x509_certificate(pki.cert("kube-apiserver").read_bytes())
    sans = apiserver.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        lab_paths.HOST_FROM_GUEST, "127.0.0.1", facts().kubernetes_service_ip}
    assert f"kubernetes.default.svc.{lab_paths.CLUSTER_DOMAIN}" in sans.get_values_for_type(x509.DNSName)
    admin = x509.load_pem_x509_certificate(pki.cert("admin").read_bytes())
    assert admin.subject.rfc4514_string() == "CN=admin,O=system:masters"


def test_a_new_san_reissues_only_that_certificate(tmp_path: Path) -> None:
    first = cp_mod.ensure_pki(tmp_path / "pki", facts())
    before = {path.name: path.read_bytes() for path in first.dir.iterdir()}
    other = cp_mod.Facts(**{**facts().__dict__, "cluster_domain": "lab.example"})
    cp_mod.ensure_pki(tmp_path / "pki", other)
    after = {path.name: path.read_bytes() for path in first.dir.iterdir()}
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["kube-apiserver-key.pem", "kube-apiserver.pem"]


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in entry.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_stop_leaves_no_process_and_no_port(tmp_path: Path) -> None:
    ports = cp_mod.Ports(apiserver=free_port(), etcd_client=free_port(), etcd_peer=free_port(),
                         controller_manager=free_port())
    started = cp_mod.start(tmp_path / "cp", ports, facts())
    assert all(cp_mod.alive(started).values())
    assert sorted(processes_with(started.marker)) == sorted(started.pids().values())
    cp_mod.stop(started)
    assert not any(cp_mod.alive(started).values())
    assert processes_with(started.marker) == []
    assert all(cp_mod._port_free(port) for port in (ports.apiserver, ports.etcd_client, ports.controller_manager))
    assert not (tmp_path / "cp" / "etcd").exists()


def test_the_lab_starts_keeps_and_stops_its_control_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lab/api.py's part (what `lab up` and `lab up --no-control-plane` do once the VMs run),
    with the lab's files under a temp cache and the control plane on free ports."""
    from lab import api
    from lab.progress import Progress

    builds = lab_paths.control_plane_builds()
    monkeypatch.setenv("HOMELAB_KUBELET_CACHE", str(tmp_path / "cache"))
    lab_paths.lab_dir().mkdir(parents=True)
    lab_paths.control_plane_builds().symlink_to(builds)
    ports = cp_mod.Ports(apiserver=free_port(), etcd_client=free_port(), etcd_peer=free_port(),
                         controller_manager=free_port())
    monkeypatch.setattr(cp_mod, "lab_ports", lambda: ports)
    info = api.LabInfo(cgroup="v2", accel="tcg", image="x", key_path="", known_hosts="", nodes=[], mirror_pid=0,
                       mirror_root="")
    lines: list[str] = []

    class Recorded(Progress):
        def __call__(self, msg: str) -> None:
            lines.append(msg)

    progress = Recorded()
    api._control_plane(info, True, progress)
    started = info.control_plane
    assert started is not None and all(cp_mod.alive(started).values())
    assert api.status() is not None and api.status().control_plane == started  # type: ignore[union-attr]
    assert api.health(info) == {"mirror": False, "control-plane": True}
    assert any(line.startswith("control plane: up in ") for line in lines), lines
    assert f"admin kubeconfig {started.admin_kubeconfig}" in lines[-1]
    # `lab up` again: kept, not restarted.
    api._control_plane(info, True, progress)
    assert info.control_plane == started and lines[-1].startswith("control plane already running")
    ca = started.pki.ca_cert.read_bytes()
    # `lab up --no-control-plane` (and `lab down`): stopped by PID, nothing left, the PKI kept.
    api._control_plane(info, False, progress)
    assert info.to_dict()["control_plane"] is None
    after = api.status()
    assert after is not None and after.control_plane is None
    assert api.health(after) == {"mirror": False}
    assert processes_with(started.marker) == []
    assert started.pki.ca_cert.read_bytes() == ca == cp_mod.lab_pki().ca_cert.read_bytes()
