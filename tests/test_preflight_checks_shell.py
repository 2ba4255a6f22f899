"""Preflight's lifecycle checks, run as shell on this machine: the version skew against the API
server's /version, and the warnings that name their fix (Raspberry Pi memory controller,
fs.inotify.max_user_instances, a containerd that does not pin the sandbox image).

The whole rendered preflight runs here, with the variables a check reads pointed at files and
servers made by the test; the checks this machine fails for its own reasons (no containerd,
not systemd) are reported too, so each test looks for its own line only. The API server is a
stand-in: an HTTPS server on 127.0.0.1 with a certificate of a CA made here, answering /version
as kube-apiserver does.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components import node_scripts
from tests.test_renderers import stack

# --- a stand-in API server ------------------------------------------------------------------------


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
                 ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class ApiServer:
    url: str
    ca_pem: str
    other_ca_pem: str
    answers: dict[str, tuple[int, str]]  # path -> (status, body)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    directory = tmp_path_factory.mktemp("apiserver")
    ca_key, other_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("stack CA", ca_key, None, ca=True)
    other = _certificate("another CA", other_key, None, ca=True)
    serving = _certificate("kube-apiserver", key, (ca.subject, ca_key), ca=False)
    (directory / "cert.pem").write_text(_pem(serving))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    answers: dict[str, tuple[int, str]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.get(self.path, (404, '{"kind":"Status","code":404}'))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ApiServer(f"https://127.0.0.1:{server.server_address[1]}", _pem(ca), _pem(other), answers)
    finally:
        server.shutdown()
        server.server_close()


def version_body(git_version: str) -> str:
    """/version as kube-apiserver v1.30 prints it (indented JSON, one field a line)."""
    major, minor = git_version.removeprefix("v").split(".")[:2]
    return json.dumps({"major": major, "minor": minor, "gitVersion": git_version, "gitCommit": "0" * 40,
                       "gitTreeState": "clean", "buildDate": "2024-05-14T10:42:02Z", "goVersion": "go1.22.2",
                       "compiler": "gc", "platform": "linux/amd64"}, indent=2)


# --- running preflight --------------------------------------------------------------------------------


def preflight(variables: dict[str, str], stdin: str = "", tools: dict[str, str] | None = None,
              tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The rendered homelab preflight of k8s-node1 with `variables` replaced, `stdin` (the CA), and
    stand-in `tools` (name -> /bin/sh body) first on PATH."""
    settings, node = stack("homelab")
    script = node_scripts.preflight(settings, node).create_script
    for name, value in variables.items():
        line = next(line for line in script.splitlines() if line.startswith(f"{name}="))
        script = script.replace(line + "\n", f"{name}={value}\n", 1)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if tools:
        assert tmp_path is not None
        fake = tmp_path / "bin"
        fake.mkdir(exist_ok=True)
        for name, body in tools.items():
            (fake / name).write_text("#!/bin/sh\n" + body)
            (fake / name).chmod(0o755)
        env["PATH"] = f"{fake}:{env['PATH']}"
    return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, text=True, check=False, env=env)


def lines_with(result: subprocess.CompletedProcess[str], text: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if text in line]


# --- version skew ----------------------------------------------------------------------------------


def skew_run(api_server: ApiServer, server_version: str, kubelet_version: str) -> subprocess.CompletedProcess[str]:
    api_server.answers["/version"] = (200, version_body(server_version))
    return preflight({"API_SERVER": api_server.url, "KUBELET_VERSION": kubelet_version}, stdin=api_server.ca_pem)


def test_a_kubelet_newer_than_the_api_server_is_refused(api_server: ApiServer) -> None:
    result = skew_run(api_server, "v1.30.1", "v1.31.0")
    assert result.returncode == 1
    assert lines_with(result, "is newer than the API server") == [
        f"ERROR [k8s-node1] preflight: kubelet v1.31.0 is newer than the API server (v1.30.1 at {api_server.url}); "
        "the version skew policy allows no kubelet newer than its API server: upgrade the API server first, or set "
        "kubernetes.version to v1.30.x or older"
    ]


def test_a_kubelet_more_than_three_minors_older_is_a_warning(api_server: ApiServer) -> None:
    result = skew_run(api_server, "v1.30.1", "v1.26.15")
    assert lines_with(result, "minor versions older") == [
        f"[k8s-node1] warning: kubelet v1.26.15 is more than 3 minor versions older than the API server (v1.30.1 at "
        f"{api_server.url}), beyond what the version skew policy supports: raise kubernetes.version"
    ]
    assert not lines_with(result, "is newer than the API server")


@pytest.mark.parametrize(("server", "kubelet"), [("v1.30.1", "v1.27.0"), ("v1.30.1", "v1.30.2"), ("v1.30.4+k3s1", "v1.30.1"),
                                                 ("v1.31.0", "v1.30.1")])
def test_a_kubelet_within_the_policy_passes_without_a_word(api_server: ApiServer, server: str, kubelet: str) -> None:
    result = skew_run(api_server, server, kubelet)
    assert not lines_with(result, "API server"), result.stderr


def test_an_api_server_with_another_ca_is_a_warning_naming_curl_s_error(api_server: ApiServer) -> None:
    api_server.answers["/version"] = (200, version_body("v1.30.1"))
    result = preflight({"API_SERVER": api_server.url, "KUBELET_VERSION": "v1.31.0"}, stdin=api_server.other_ca_pem)
    [line] = lines_with(result, "/version")
    assert line.startswith(f"[k8s-node1] warning: the API server does not answer {api_server.url}/version from this node (curl: (60)")
    assert line.endswith("kubelet v1.31.0 is not checked against its version; the kubelet registers once it answers")
    assert not lines_with(result, "is newer than")


def test_no_api_server_is_a_warning_not_an_error(tmp_path: Path) -> None:
    result = preflight({"API_SERVER": "https://127.0.0.1:9", "KUBELET_VERSION": "v1.30.1"}, stdin="no CA\n")
    [line] = lines_with(result, "/version")
    assert line.startswith("[k8s-node1] warning: the API server does not answer https://127.0.0.1:9/version from this node (curl: (7)")
    assert not [line for line in result.stderr.splitlines() if line.startswith("ERROR") and "API server" in line]


def test_an_api_server_refusing_anonymous_reads_is_a_warning(api_server: ApiServer) -> None:
    api_server.answers["/version"] = (401, '{"kind":"Status","code":401,"message":"Unauthorized"}')
    result = preflight({"API_SERVER": api_server.url, "KUBELET_VERSION": "v1.30.1"}, stdin=api_server.ca_pem)
    [line] = lines_with(result, "/version")
    assert "(curl: (22) The requested URL returned error: 401)" in line


def test_an_answer_without_a_git_version_is_a_warning(api_server: ApiServer) -> None:
    api_server.answers["/version"] = (200, '{"major": "1"}')
    result = preflight({"API_SERVER": api_server.url, "KUBELET_VERSION": "v1.30.1"}, stdin=api_server.ca_pem)
    assert lines_with(result, "without a vMAJOR.MINOR.PATCH gitVersion")


# --- warnings that name their fix -------------------------------------------------------------------

PI_MODEL = "Raspberry Pi 4 Model B Rev 1.4\0"
PROC_CGROUPS = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t39\t1\ncpu\t0\t39\t1\nmemory\t0\t39\t{memory}\npids\t0\t39\t1\n"


def board(tmp_path: Path, model: str, memory_enabled: int, cmdline_files: tuple[str, ...]) -> dict[str, str]:
    """The variables of the Raspberry Pi check, pointed at files written here."""
    (tmp_path / "model").write_text(model)
    (tmp_path / "cgroups").write_text(PROC_CGROUPS.format(memory=memory_enabled))
    for name in cmdline_files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("console=serial0,115200 console=tty1 root=PARTUUID=59ff6e86-02 rootfstype=ext4 rootwait\n")
    return {
        "DEVICE_TREE_MODEL": str(tmp_path / "model"),
        "PROC_CGROUPS": str(tmp_path / "cgroups"),
        "RPI_CMDLINE_FILES": f"({tmp_path / 'boot/firmware/cmdline.txt'} {tmp_path / 'boot/cmdline.txt'})",
    }


@pytest.mark.parametrize(("present", "named"), [
    (("boot/firmware/cmdline.txt",), "boot/firmware/cmdline.txt"),  # Raspberry Pi OS Bookworm
    (("boot/cmdline.txt",), "boot/cmdline.txt"),  # Bullseye and older
    ((), "boot/firmware/cmdline.txt"),
])
def test_raspberry_pi_without_the_memory_controller_names_cmdline_txt(
    tmp_path: Path, present: tuple[str, ...], named: str
) -> None:
    result = preflight(board(tmp_path, PI_MODEL, 0, present))
    assert lines_with(result, "Raspberry Pi") == [
        f"[k8s-node1] warning: Raspberry Pi: the kernel has the memory cgroup controller disabled ({tmp_path / 'cgroups'}) "
        f"and the kubelet needs it: add cgroup_enable=memory to the one line of {tmp_path / named}, then reboot"
    ]


@pytest.mark.parametrize(("model", "memory_enabled"), [(PI_MODEL, 1), ("QEMU Virtual Machine\0", 0)])
def test_no_raspberry_pi_warning_with_the_controller_or_on_another_board(
    tmp_path: Path, model: str, memory_enabled: int
) -> None:
    result = preflight(board(tmp_path, model, memory_enabled, ("boot/firmware/cmdline.txt",)))
    assert not lines_with(result, "Raspberry Pi"), result.stderr


@pytest.mark.parametrize(("instances", "warned"), [(128, True), (8191, True), (8192, False), (65536, False)])
def test_inotify_instances_below_8192_is_a_warning_with_the_sysctl(tmp_path: Path, instances: int, warned: bool) -> None:
    (tmp_path / "max_user_instances").write_text(f"{instances}\n")
    result = preflight({"INOTIFY_MAX_USER_INSTANCES": str(tmp_path / "max_user_instances")})
    expected = [
        f'[k8s-node1] warning: fs.inotify.max_user_instances is {instances}, below 8192: the kubelet and pods that '
        'watch files fail with "too many open files"; raise it: echo fs.inotify.max_user_instances=8192 '
        ">/etc/sysctl.d/90-homelab-kubelet-inotify.conf && sysctl --system"
    ]
    assert lines_with(result, "fs.inotify") == (expected if warned else [])


# `containerd --version` as the packages print it; `config dump` as a containerd with SystemdCgroup on.
CONTAINERD = 'case "$1" in --version) echo "containerd {line}" ;; config) echo "SystemdCgroup = true" ;; esac\n'


@pytest.mark.parametrize(("line", "version", "warned"), [
    ("github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1", "1.6.20~ds1", True),  # Debian 12
    ("github.com/containerd/containerd v1.6.21 3dce8eb055cbb6872793272b4f20ed16117344f8", "v1.6.21", True),
    ("github.com/containerd/containerd 1.4.13~ds1 1.4.13~ds1-1~deb11u4", "1.4.13~ds1", True),  # Debian 11
    ("containerd.io 1.6.22 8165feabfdfe38c65b599c4993d227328c231fca", "1.6.22", False),
    ("github.com/containerd/containerd v1.7.3 7880925980b188f4c97b462f709d0db8e8962aff", "v1.7.3", False),
    ("github.com/containerd/containerd/v2 v2.0.0 207ad711eabd375a01713109a8a197d197ff6542", "v2.0.0", False),
])
def test_a_containerd_before_1_6_22_is_a_warning(tmp_path: Path, line: str, version: str, warned: bool) -> None:
    result = preflight({}, tools={"containerd": CONTAINERD.format(line=line)}, tmp_path=tmp_path)
    expected = [
        f"[k8s-node1] warning: containerd {version} does not pin its sandbox (pause) image, so the kubelet's image "
        "garbage collection may delete it and new pods then wait for it to be pulled again (or fail offline): "
        "upgrade containerd to 1.6.22 or later"
    ]
    assert lines_with(result, "sandbox (pause) image") == (expected if warned else [])

