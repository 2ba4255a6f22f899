"""The post-start registration check (node_steps/check-registration.sh) as shell, with real curl.

The configure step asks the API server for the node's own Node with the node's certificate and
reports what it heard: "registered", or a WARNING naming the cause. It never fails the step: a
lab without a control plane, or a homelab whose API server is down, must still converge. Here a
small HTTPS server on 127.0.0.1 (Python's ssl, certificates made with `cryptography`) stands in
for the API server's answers; the real kube-apiserver's are checked in
tests/test_control_plane_host.py.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from components import node_scripts
from lab import control_plane
from tests.test_renderers import stack, steps

NODE = "k8s-node1"
NODE_PATH = f"/api/v1/nodes/{NODE}"


@dataclass
class Certs:
    ca: Path
    node_cert: Path
    node_key: Path
    server_cert: Path
    server_key: Path


def _write_pair(directory: Path, name: str, pair: tuple[bytes, bytes]) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert.write_bytes(pair[0])
    key.write_bytes(pair[1])
    return cert, key


def make_certs(directory: Path, server_ca_is_another: bool = False) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = control_plane._make_ca()
    ca = directory / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    node_cert, node_key = _write_pair(directory, NODE, control_plane.issue(
        ca_cert, ca_key, control_plane.Identity(NODE, f"system:node:{NODE}", ("system:nodes",))))
    signer = control_plane._make_ca() if server_ca_is_another else (ca_cert, ca_key)
    server_cert, server_key = _write_pair(directory, "apiserver", control_plane.issue(
        *signer, control_plane.Identity("apiserver", "kube-apiserver", server=True, ip_addresses=("127.0.0.1",))))
    return Certs(ca, node_cert, node_key, server_cert, server_key)


@dataclass
class ApiServer:
    """Answers GET NODE_PATH with the next status of `statuses` (the last one repeats)."""

    url: str
    statuses: list[int]
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def api_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ApiServer, Certs]]:
    certs = make_certs(tmp_path / "certs", server_ca_is_another=getattr(request, "param", False))
    state = ApiServer("", [200])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            status = state.statuses.pop(0) if len(state.statuses) > 1 else state.statuses[0]
            body = b'{"kind":"Status"}' if status != 200 else b'{"kind":"Node"}'
            self.send_response(status if self.path == NODE_PATH else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    context.load_verify_locations(str(certs.ca))
    context.verify_mode = ssl.CERT_OPTIONAL  # as the API server: a client certificate is asked for
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, certs
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_check(url: str, certs: Certs, wait: int = 0, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    _, node = stack("homelab")
    script = node_scripts.render_script(
        "check registration", node,
        {"API_SERVER": url, "CA_CERT": str(certs.ca), "NODE_CERT": str(certs.node_cert),
         "NODE_KEY": str(certs.node_key), "REGISTRATION_WAIT": wait},
        "check-registration.sh",
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, timeout=120,
                          env={"PATH": path})


def test_a_registered_node_is_reported(api_server: tuple[ApiServer, Certs]) -> None:
    server, certs = api_server
    result = run_check(server.url, certs)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"[{NODE}] registered: the API server {server.url} has node {NODE}\n"
    assert server.requests == [NODE_PATH]


def test_no_api_server_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_check(url, make_certs(tmp_path), wait=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15  # no waiting for a node when nothing answers
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"WARNING [{NODE}]: node {NODE} is not registered: no API server answers at {url} (curl: (7) Failed to connect"
    ), result.stderr
    assert result.stderr.endswith("; the kubelet registers once one does\n"), result.stderr


def test_a_node_the_api_server_does_not_know_yet_is_waited_for(api_server: tuple[ApiServer, Certs]) -> None:
    server, certs = api_server
    server.statuses = [404, 404, 200]
    result = run_check(server.url, certs, wait=10)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"[{NODE}] registered: the API server {server.url} has node {NODE}\n"
    assert server.requests == [NODE_PATH] * 3


def test_a_node_that_does_not_register_is_a_warning(api_server: tuple[ApiServer, Certs]) -> None:
    server, certs = api_server
    server.statuses = [404]
    result = run_check(server.url, certs, wait=4)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"WARNING [{NODE}]: node {NODE} is not registered with the API server {server.url} "
        "(not found after 4s); the kubelet keeps trying: see journalctl -u kubelet\n"
    )
    assert len(server.requests) == 3  # at 0, 2 and 4 s


@pytest.mark.parametrize(("status", "says"), [
    (401, "refuses the node's certificate (401 Unauthorized): its --client-ca-file must hold the stack's CA"),
    (403, f"forbids node {NODE} to read its own Node (403): run it with --authorization-mode=Node,RBAC"),
    (500, f"answered HTTP 500 for node {NODE}"),
])
def test_an_api_server_that_refuses_the_node_is_named(api_server: tuple[ApiServer, Certs], status: int,
                                                      says: str) -> None:
    server, certs = api_server
    server.statuses = [status]
    result = run_check(server.url, certs, wait=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"WARNING [{NODE}]: the API server {server.url} {says}"), result.stderr
    assert server.requests == [NODE_PATH]  # only a 404 is waited for


@pytest.mark.parametrize("api_server", [True], indirect=True)
def test_an_api_server_certificate_of_another_ca_is_named(api_server: tuple[ApiServer, Certs]) -> None:
    server, certs = api_server
    result = run_check(server.url, certs)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        f"WARNING [{NODE}]: the API server {server.url} has a certificate that the stack's CA did not sign, so the "
        "kubelet does not trust it either (x509: certificate signed by unknown authority): import the cluster's CA "
        "(pki.importCa) (curl: (60) SSL certificate problem"
    ), result.stderr
    assert server.requests == []


def test_a_broken_curl_does_not_fail_the_step(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "curl").write_text("#!/bin/sh\necho 'garbage' >&2\nexit 2\n")
    (fake / "curl").chmod(0o755)
    result = run_check("https://127.0.0.1:1", make_certs(tmp_path / "certs"), wait=30, path=f"{fake}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"WARNING [{NODE}]: node {NODE} is not registered: no API server answers at https://127.0.0.1:1 "
        "(no answer); the kubelet registers once one does\n"
    )


def test_configure_and_start_checks_the_registration_after_the_start_with_the_nodes_credentials() -> None:
    settings, node = stack("homelab")
    script = steps(settings, node)[node_scripts.CONFIGURE_AND_START].create_script
    body = (node_scripts.SCRIPTS_DIR / "check-registration.sh").read_text().rstrip("\n")
    start = (node_scripts.SCRIPTS_DIR / "start-kubelet.sh").read_text().rstrip("\n")
    assert script.index(start) < script.index(body) < script.index(node_scripts.SCRIPT_END)
    for line in (f"API_SERVER={settings.kubernetes.api_server}", f"NODE_CERT=/var/lib/kubelet/{node.name}.pem",
                 f"NODE_KEY=/var/lib/kubelet/{node.name}-key.pem", "CA_CERT=/var/lib/kubernetes/ca.pem",
                 f"REGISTRATION_WAIT={node_scripts.REGISTRATION_WAIT_SECONDS}"):
        assert f"\n{line}\n" in script, line
