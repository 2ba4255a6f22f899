"""The lab's control plane: etcd, kube-apiserver and kube-controller-manager on the host.

What a Kubernetes-the-Hard-Way homelab has before its kubelet chapter, on this machine's loopback,
so that the lab's kubelets register with a real API server under their own names, in secure mode:

- **PKI** (`pki/`, made once and kept across boots, so the CA the lab stack imports stays the
  same): a CA; the API server's serving certificate (SANs 10.0.2.2, as the guests see the host,
  127.0.0.1, the first service IP and kubernetes.default.svc.<domain>); the API server's client
  certificate for the kubelets (`kube-apiserver-kubelet-client`); an admin certificate
  (`O=system:masters`); the controller manager's client certificate
  (`CN=system:kube-controller-manager`); a service-account key pair. Keys are PKCS#8 PEM
  ("PRIVATE KEY"), as OpenSSL 3 writes them.
- **etcd** (Debian's `etcd-server`) on loopback ports of its own, data in a directory made anew at
  every start.
- **kube-apiserver** on 127.0.0.1 (the guests reach it as 10.0.2.2), Node,RBAC and
  NodeRestriction, the CA as client CA and as the authority of the kubelets' serving
  certificates, reaching each kubelet by node name (`--kubelet-preferred-address-types=Hostname`):
  qemu forwards each VM's port 10250 to a loopback address of its own (lab/paths.py). The API
  server does not proxy to a node whose name resolves to a loopback address (its
  `isProxyableHostname`: "address not allowed"), so etcd, the API server and the controller
  manager run in a network and mount namespace of their own: there each node name resolves (a
  private /etc/hosts, bind-mounted; the machine's is never changed) to an address of
  NAMESPACE_NETWORK, local in that namespace, and lab/relay.py carries those connections to the
  kubelet forwards, and the host's connections (the guests through qemu, kubectl) to the
  namespace's API server, etcd and controller manager ports. Nothing of the machine's network
  configuration changes.
- The RBAC that secure (Webhook) kubelets need, applied with kubectl: `rbac_manifest()`.
- **kube-controller-manager** allocating node pod CIDRs from a cluster CIDR that covers the lab
  stack's pod CIDRs, signing with the CA.

Binaries: `scripts/toolchain control-plane` (kube-apiserver, kube-controller-manager, kubectl at
the lab stack's Kubernetes version) and /usr/bin/etcd. Processes run in sessions of their own
and are stopped by PID (lab/proc.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.kubeconfig import render_kubeconfig
from components.yaml_text import dump_yaml
from lab import paths, proc, relay

REPO = Path(__file__).resolve().parent.parent
ETCD = "/usr/bin/etcd"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl")
ARCH = "amd64"

#: The API server's user towards the kubelets (its --kubelet-client-certificate's CN), which
#: the RBAC below authorizes on the kubelet API.
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
ADMIN_USER = "admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
RBAC_ROLE = "system:kube-apiserver-to-kubelet"
#: The kubelet API's subresources the API server uses (logs, exec/attach/port-forward and the
#: proxy go through nodes/proxy).
KUBELET_API_SUBRESOURCES = ("nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec", "nodes/metrics")

#: Inside the control plane's network namespace, node i's kubelet is at NAMESPACE_NETWORK.<n>
#: where 127.0.0.<n> is its forward on the host (RFC 2544's benchmarking range: global unicast,
#: which the API server's proxy requires, and used by nothing else).
NAMESPACE_NETWORK = "198.18.0"

CA_VALIDITY_DAYS = 3650
LEAF_VALIDITY_DAYS = 365
RENEW_BEFORE_DAYS = 30


class ControlPlaneError(RuntimeError):
    pass


# ---------------------------------------------------------------- facts and ports


@dataclass(frozen=True)
class Facts:
    """What the control plane is made for: the lab stack's cluster (lab/paths.py reads them from
    Pulumi.lab.yaml) and the host addresses of the kubelets (every lab layout's nodes)."""

    version: str
    cluster_domain: str
    cluster_dns: tuple[str, ...]
    pod_cidrs: tuple[str, ...]
    #: node name -> the host address its kubelet port is forwarded to
    kubelet_addresses: tuple[tuple[str, str], ...]
    #: the host as the guests see it (the API server's advertised address, a SAN)
    guest_host: str = paths.HOST_FROM_GUEST

    @property
    def service_cidr(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The /24 (IPv6: /112) that holds the first cluster DNS IP, as KTHW's 10.32.0.0/24."""
        dns = ipaddress.ip_address(self.cluster_dns[0])
        return ipaddress.ip_network(f"{dns}/{24 if dns.version == 4 else 112}", strict=False)

    @property
    def kubernetes_service_ip(self) -> str:
        """The `kubernetes` service's ClusterIP: the service range's first address."""
        return str(next(self.service_cidr.hosts()))

    @property
    def cluster_cidr(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return covering_network(self.pod_cidrs)

    @property
    def node_cidr_mask_size(self) -> int:
        return max(ipaddress.ip_network(c).prefixlen for c in self.pod_cidrs)

    @property
    def namespace_addresses(self) -> tuple[tuple[str, str], ...]:
        """node name -> its address inside the control plane's network namespace."""
        return tuple((name, namespace_address(forward)) for name, forward in self.kubelet_addresses)


def namespace_address(forward: str) -> str:
    """The address in the control plane's namespace that the relay carries to `forward`."""
    return f"{NAMESPACE_NETWORK}.{forward.rsplit('.', 1)[1]}"


def covering_network(cidrs: Iterable[str]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The smallest network that holds every one of `cidrs` (all of one IP family)."""
    networks = [ipaddress.ip_network(c) for c in cidrs]
    if not networks or len({n.version for n in networks}) != 1:
        raise ValueError(f"need CIDRs of one IP family: {list(cidrs)}")
    for prefix in range(min(n.prefixlen for n in networks), -1, -1):
        candidate = networks[0].supernet(new_prefix=prefix)
        if all(n.subnet_of(candidate) for n in networks):  # type: ignore[arg-type]
            return candidate
    raise AssertionError("the /0 network holds everything")


def lab_facts() -> Facts:
    """The lab's: every layout's nodes (the three amd64 VMs and the arm64 node k8s-node3), so a
    node of either layout registers and the API server reaches its kubelet by name."""
    return Facts(
        version=paths.KUBERNETES_VERSION,
        cluster_domain=paths.CLUSTER_DOMAIN,
        cluster_dns=paths.CLUSTER_DNS,
        pod_cidrs=tuple(paths.POD_CIDRS[name] for name in paths.ALL_NODE_NAMES),
        kubelet_addresses=tuple((name, paths.kubelet_forward_address(name)) for name in paths.ALL_NODE_NAMES),
    )


@dataclass(frozen=True)
class Ports:
    apiserver: int
    etcd_client: int
    etcd_peer: int
    controller_manager: int


def lab_ports() -> Ports:
    """The lab's: the API server on the port of the lab stack's kubernetes.apiServer (6443)."""
    port = int(paths.API_SERVER_URL.rsplit(":", 1)[1])
    return Ports(apiserver=port, etcd_client=12379, etcd_peer=12380, controller_manager=10257)


def binary(name: str, version: str = paths.KUBERNETES_VERSION) -> Path:
    """A control-plane binary built by scripts/toolchain (kube-apiserver, kube-controller-manager, kubectl)."""
    return paths.control_plane_builds() / version / ARCH / name


def require_binaries(version: str) -> None:
    missing = [str(binary(name, version)) for name in BINARIES if not os.access(binary(name, version), os.X_OK)]
    if missing:
        raise ControlPlaneError(f"missing {', '.join(missing)}: run `scripts/toolchain control-plane {version}`")
    if not os.access(ETCD, os.X_OK):
        raise ControlPlaneError(f"{ETCD} is missing: apt-get install etcd-server (scripts/setup installs it)")
    for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")):
        if not shutil.which(tool):
            raise ControlPlaneError(f"{tool} is missing: apt-get install {package}")


# ---------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Identity:
    """One certificate of the control plane, signed by the CA."""

    name: str  # file stem: <name>.pem, <name>-key.pem
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False  # a serving certificate (server auth), else a client one
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


def identities(facts: Facts) -> tuple[Identity, ...]:
    domain = facts.cluster_domain
    return (
        Identity(
            "kube-apiserver", "kube-apiserver", server=True,
            dns_names=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       f"kubernetes.default.svc.{domain}", "localhost"),
            ip_addresses=(facts.guest_host, "127.0.0.1", facts.kubernetes_service_ip),
        ),
        Identity("kube-apiserver-kubelet-client", KUBELET_CLIENT_USER),
        Identity("admin", ADMIN_USER, organizations=("system:masters",)),
        Identity("kube-controller-manager", CONTROLLER_MANAGER_USER, organizations=(CONTROLLER_MANAGER_USER,)),
    )


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca-key.pem"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}-key.pem"

    @property
    def service_account_key(self) -> Path:
        return self.dir / "service-account-key.pem"

    @property
    def service_account_public_key(self) -> Path:
        return self.dir / "service-account.pem"

    def ca_pems(self) -> tuple[str, str]:
        """The CA certificate and key, as the lab stack imports them (caCertPem, caKeyPem)."""
        return self.ca_cert.read_text(), self.ca_key.read_text()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = _name("homelab-kubelet lab CA", ("homelab-kubelet lab",))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, identity: Identity,
    days: int = LEAF_VALIDITY_DAYS,
) -> tuple[bytes, bytes]:
    """A new key and a certificate for `identity` signed by the CA: (cert PEM, key PEM)."""
    key = _new_key()
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if identity.server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(identity.common_name, identity.organizations))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if identity.dns_names or identity.ip_addresses:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in identity.dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in identity.ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_BEFORE_DAYS)


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return (cert, key) if _fresh(cert) else None


def _matches(path: Path, ca_cert: x509.Certificate, identity: Identity) -> bool:
    """True when the certificate at path is this CA's, for this identity, and not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        ca_public = ca_cert.public_key()
        assert isinstance(ca_public, ec.EllipticCurvePublicKey)
        assert cert.signature_hash_algorithm is not None
        ca_public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except (OSError, ValueError, InvalidSignature, AssertionError):
        return False
    if cert.subject != _name(identity.common_name, identity.organizations) or not _fresh(cert):
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = (tuple(sans.get_values_for_type(x509.DNSName)),
                tuple(str(a) for a in sans.get_values_for_type(x509.IPAddress)))
    except x509.ExtensionNotFound:
        have = ((), ())
    return have == (identity.dns_names, identity.ip_addresses)


def ensure_pki(directory: Path, facts: Facts, log: Callable[[str], None] = lambda _m: None) -> Pki:
    """The control plane's PKI under `directory`: made when missing, kept otherwise (a certificate
    is re-issued only when it is missing, not the CA's, for other names, or within
    RENEW_BEFORE_DAYS of its end). A new CA is made only when there is none (or it is unusable)."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    loaded = _load_ca(pki)
    if loaded is None:
        cert, key = _make_ca()
        _write(pki.ca_key, _key_pem(key), 0o600)
        _write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log(f"control plane: made a new CA in {directory}")
        loaded = cert, key
    ca_cert, ca_key = loaded
    for identity in identities(facts):
        if _matches(pki.cert(identity.name), ca_cert, identity) and pki.key(identity.name).exists():
            continue
        cert_pem, key_pem = issue(ca_cert, ca_key, identity)
        _write(pki.key(identity.name), key_pem, 0o600)
        _write(pki.cert(identity.name), cert_pem, 0o644)
        log(f"control plane: issued {identity.name} (CN {identity.common_name})")
    if not (pki.service_account_key.exists() and pki.service_account_public_key.exists()):
        key = _new_key()
        _write(pki.service_account_key, _key_pem(key), 0o600)
        _write(pki.service_account_public_key, key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return pki


def lab_pki(log: Callable[[str], None] = lambda _m: None) -> Pki:
    """The lab's PKI (made if missing): what `lab up` runs the control plane with and what the lab
    stack imports as its CA."""
    return ensure_pki(paths.control_plane_dir() / "pki", lab_facts(), log)


def client_kubeconfig(pki: Pki, identity_name: str, user: str, server: str) -> str:
    return render_kubeconfig(
        cluster_name="kubernetes", server=server, ca_cert_pem=pki.ca_cert.read_text(),
        client_cert_pem=pki.cert(identity_name).read_text(), client_key_pem=pki.key(identity_name).read_text(),
        user=user,
    )


def rbac_manifest(user: str = KUBELET_CLIENT_USER) -> str:
    """The RBAC that lets the API server use the kubelet API of secure (Webhook) kubelets: a
    ClusterRole on the kubelet API's subresources bound to the API server's kubelet-client user
    (Kubernetes the Hard Way's kube-apiserver-to-kubelet)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": RBAC_ROLE,
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        },
        "rules": [{"apiGroups": [""], "resources": list(KUBELET_API_SUBRESOURCES), "verbs": ["*"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": RBAC_ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RBAC_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    return dump_yaml(role) + "---\n" + dump_yaml(binding)


# ---------------------------------------------------------------- processes


@dataclass
class ControlPlane:
    """A running control plane (the lab keeps it in its state file)."""

    dir: str
    version: str
    apiserver_port: int
    etcd_client_port: int
    etcd_peer_port: int
    controller_manager_port: int
    etcd_pid: int = 0
    relay_pid: int = 0
    apiserver_pid: int = 0
    controller_manager_pid: int = 0
    started_at: float = 0.0
    start_seconds: float | None = None
    #: node name -> host address of its kubelet, as the API server's hosts file has them
    kubelet_addresses: dict[str, str] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        """In every process's command line: the directory its files are in."""
        return self.dir

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return Path(self.dir) / "admin.kubeconfig"

    @property
    def pki(self) -> Pki:
        return Pki(Path(self.dir) / "pki")

    @property
    def kubectl(self) -> Path:
        return binary("kubectl", self.version)

    def pids(self) -> dict[str, int]:
        """Process name -> PID, in the order they are stopped."""
        return {"kube-controller-manager": self.controller_manager_pid, "kube-apiserver": self.apiserver_pid,
                "relay": self.relay_pid, "etcd": self.etcd_pid}

    def log(self, name: str) -> Path:
        return Path(self.dir) / f"{name}.log"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ControlPlane:
        return cls(**d)


def alive(cp: ControlPlane) -> dict[str, bool]:
    return {name: proc.is_ours(pid, cp.marker) for name, pid in cp.pids().items()}


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def admin_context(pki: Pki) -> ssl.SSLContext:
    """TLS as the admin: the CA verifies the API server, the admin certificate authenticates."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
    return context


def _wait(what: str, check: Callable[[], bool], pid: int, marker: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not proc.is_ours(pid, marker):
            raise ControlPlaneError(f"{what} exited; last lines of {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s; last lines of {log}:\n{_tail(log)}")
        time.sleep(0.5)


def hosts_file(facts: Facts) -> str:
    """The control plane's /etc/hosts: the node names at their addresses in its namespace, then
    the machine's lines."""
    lines = ["# The lab's control plane resolves the node names to the relay's addresses (lab/control_plane.py)."]
    lines += [f"{address} {name}" for name, address in facts.namespace_addresses]
    try:
        machine = Path("/etc/hosts").read_text()
    except OSError:
        machine = "127.0.0.1 localhost\n::1 localhost\n"
    return "\n".join(lines) + "\n" + machine


def etcd_argv(cp: ControlPlane) -> list[str]:
    data = Path(cp.dir) / "etcd"
    client, peer = f"http://127.0.0.1:{cp.etcd_client_port}", f"http://127.0.0.1:{cp.etcd_peer_port}"
    return [
        ETCD, "--name", "lab", f"--data-dir={data}", "--logger=zap",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=lab={peer}", "--initial-cluster-state=new",
    ]


def apiserver_argv(cp: ControlPlane, facts: Facts) -> list[str]:
    pki = cp.pki
    return [
        str(binary("kube-apiserver", cp.version)),
        f"--advertise-address={facts.guest_host}",
        "--bind-address=127.0.0.1",
        f"--secure-port={cp.apiserver_port}",
        f"--etcd-servers=http://127.0.0.1:{cp.etcd_client_port}",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--client-ca-file={pki.ca_cert}",
        f"--tls-cert-file={pki.cert('kube-apiserver')}",
        f"--tls-private-key-file={pki.key('kube-apiserver')}",
        f"--kubelet-client-certificate={pki.cert('kube-apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('kube-apiserver-kubelet-client')}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=Hostname",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-account-issuer=https://kubernetes.default.svc.{facts.cluster_domain}",
        f"--service-cluster-ip-range={facts.service_cidr}",
        "--event-ttl=1h",
        "--profiling=false",
    ]


def controller_manager_argv(cp: ControlPlane, facts: Facts) -> list[str]:
    pki = cp.pki
    return [
        str(binary("kube-controller-manager", cp.version)),
        f"--kubeconfig={Path(cp.dir) / 'kube-controller-manager.kubeconfig'}",
        "--bind-address=127.0.0.1",
        f"--secure-port={cp.controller_manager_port}",
        f"--cert-dir={Path(cp.dir) / 'kube-controller-manager-serving'}",
        "--allocate-node-cidrs=true",
        f"--cluster-cidr={facts.cluster_cidr}",
        f"--node-cidr-mask-size={facts.node_cidr_mask_size}",
        f"--service-cluster-ip-range={facts.service_cidr}",
        "--cluster-name=kubernetes",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--profiling=false",
    ]


def relay_argv(cp: ControlPlane, facts: Facts) -> list[str]:
    """The relay: the host's ports into the namespace, the namespace's node addresses out to the
    kubelet forwards."""
    routes = [f"host:127.0.0.1:{port}=cp:127.0.0.1:{port}"
              for port in (cp.apiserver_port, cp.etcd_client_port, cp.controller_manager_port)]
    routes += [f"cp:{namespace_address(forward)}:{paths.KUBELET_PORT}=host:{forward}:{paths.KUBELET_PORT}"
               for _name, forward in facts.kubelet_addresses]
    return [sys.executable, "-m", "lab.relay", f"--netns=/proc/{cp.etcd_pid}/ns/net",
            f"--control-plane-dir={cp.dir}", *(f"--route={route}" for route in routes)]


def _namespace_setup(facts: Facts) -> str:
    """Shell run by the namespace's first process (etcd) before it execs: loopback up, the node
    addresses on it, the private /etc/hosts ($1) bind-mounted."""
    adds = " && ".join(f"ip addr add {address}/32 dev lo" for _name, address in facts.namespace_addresses)
    return f'ip link set lo up && {adds} && mount --bind "$1" /etc/hosts && shift && exec "$@"'


def kubectl(cp: ControlPlane, *args: str, input: str | None = None, timeout: float = 60,
            kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl (the toolchain's) with the admin kubeconfig, or another one."""
    return subprocess.run(
        [str(cp.kubectl), f"--kubeconfig={kubeconfig or cp.admin_kubeconfig}", *args],
        input=input, capture_output=True, text=True, timeout=timeout, check=False,
    )


def _enter(pid: int) -> list[str]:
    return ["nsenter", f"--target={pid}", "--net", "--mount", "--"]


def in_apiserver_namespace(cp: ControlPlane, *argv: str) -> subprocess.CompletedProcess[str]:
    """Runs argv in the API server's network and mount namespaces (e.g. `getent hosts k8s-node1`)."""
    return subprocess.run([*_enter(cp.apiserver_pid), *argv], capture_output=True, text=True, timeout=30,
                          check=False)


def start(
    directory: Path, ports: Ports, facts: Facts | None = None, progress: Callable[[str], None] | None = None,
    record: Callable[[ControlPlane], None] = lambda _cp: None, timeout: float = 180,
) -> ControlPlane:
    """Starts etcd, kube-apiserver (and applies the RBAC) and kube-controller-manager, each once
    the one before answers. `record` is called after each process is started (the lab saves its
    state then, so `lab down` can stop what runs even if this is interrupted). On any failure
    everything started here is stopped again."""
    facts = facts or lab_facts()
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    require_binaries(facts.version)
    host_ports = (ports.apiserver, ports.etcd_client, ports.controller_manager)
    busy = [f"127.0.0.1:{p}" for p in host_ports if not _port_free(p)]
    if busy:
        raise ControlPlaneError(f"control plane ports already in use: {', '.join(busy)}")
    directory.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(directory / "pki", facts, say)
    cp = ControlPlane(
        dir=str(directory), version=facts.version, apiserver_port=ports.apiserver,
        etcd_client_port=ports.etcd_client, etcd_peer_port=ports.etcd_peer,
        controller_manager_port=ports.controller_manager, started_at=time.time(),
        kubelet_addresses=dict(facts.kubelet_addresses),
    )
    _write(cp.admin_kubeconfig, client_kubeconfig(pki, "admin", ADMIN_USER, cp.url).encode(), 0o600)
    _write(directory / "kube-controller-manager.kubeconfig",
           client_kubeconfig(pki, "kube-controller-manager", CONTROLLER_MANAGER_USER, cp.url).encode(), 0o600)
    hosts = directory / "hosts"
    _write(hosts, hosts_file(facts).encode(), 0o644)
    shutil.rmtree(directory / "etcd", ignore_errors=True)  # a throwaway cluster at every start
    for name in cp.pids():
        cp.log(name).unlink(missing_ok=True)
    try:
        # etcd makes the namespaces (network and mount) that the others then enter.
        argv = etcd_argv(cp)
        wrapper = ["unshare", "--net", "--mount", "--propagation", "private", "--",
                   "sh", "-c", _namespace_setup(facts), "sh", str(hosts), *argv]
        cp.etcd_pid = proc.spawn(wrapper, cp.log("etcd"), exec_argv=argv)
        record(cp)
        say(f"control plane: etcd started in a network namespace of its own (pid {cp.etcd_pid})")
        argv = relay_argv(cp, facts)
        cp.relay_pid = proc.spawn(argv, cp.log("relay"), cwd=REPO)
        record(cp)
        _wait("the relay", lambda: relay.READY in cp.log("relay").read_text(errors="replace"),
              cp.relay_pid, cp.marker, cp.log("relay"), timeout)
        say(f"control plane: relay started (pid {cp.relay_pid}): "
            + ", ".join(f"{name} {forward}:{paths.KUBELET_PORT}" for name, forward in facts.kubelet_addresses))
        _wait("etcd", lambda: _get(f"http://127.0.0.1:{cp.etcd_client_port}/health")[0] == 200,
              cp.etcd_pid, cp.marker, cp.log("etcd"), timeout)

        argv = apiserver_argv(cp, facts)
        cp.apiserver_pid = proc.spawn([*_enter(cp.etcd_pid), *argv], cp.log("kube-apiserver"), exec_argv=argv)
        record(cp)
        say(f"control plane: kube-apiserver started (pid {cp.apiserver_pid}, {cp.url}, "
            f"guests https://{facts.guest_host}:{cp.apiserver_port})")
        context = admin_context(pki)
        _wait("kube-apiserver", lambda: _get(f"{cp.url}/readyz", context) == (200, "ok"),
              cp.apiserver_pid, cp.marker, cp.log("kube-apiserver"), timeout)
        say(f"control plane: kube-apiserver ready ({time.monotonic() - t0:.1f}s)")

        applied = kubectl(cp, "apply", "-f", "-", input=rbac_manifest())
        if applied.returncode != 0:
            raise ControlPlaneError(f"kubectl apply of the kubelet API RBAC failed: {applied.stderr.strip()}")
        say(f"control plane: RBAC applied ({RBAC_ROLE} bound to {KUBELET_CLIENT_USER})")

        argv = controller_manager_argv(cp, facts)
        cp.controller_manager_pid = proc.spawn([*_enter(cp.etcd_pid), *argv], cp.log("kube-controller-manager"),
                                               exec_argv=argv)
        record(cp)
        say(f"control plane: kube-controller-manager started (pid {cp.controller_manager_pid}, "
            f"cluster CIDR {facts.cluster_cidr})")
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        _wait("kube-controller-manager",
              lambda: _get(f"https://127.0.0.1:{cp.controller_manager_port}/healthz", insecure) == (200, "ok"),
              cp.controller_manager_pid, cp.marker, cp.log("kube-controller-manager"), timeout)
    except BaseException:
        say("control plane: start failed; stopping what was started")
        stop(cp, say)
        raise
    cp.start_seconds = round(time.monotonic() - t0, 1)
    record(cp)
    say(f"control plane: up in {cp.start_seconds}s; admin kubeconfig {cp.admin_kubeconfig}")
    return cp


def stop(cp: ControlPlane, progress: Callable[[str], None] | None = None) -> None:
    """Stops the processes (by PID, each only if it is still ours) and drops etcd's data."""
    say = progress or (lambda _m: None)
    for name, pid in cp.pids().items():
        if proc.stop(pid, cp.marker, timeout=20):
            say(f"control plane: stopped {name} (pid {pid})")
    shutil.rmtree(Path(cp.dir) / "etcd", ignore_errors=True)


def describe(cp: ControlPlane) -> str:
    state = alive(cp)
    running = ", ".join(f"{name} {'running' if up else 'stopped'}" for name, up in reversed(state.items()))
    return (f"control plane: {cp.url} (guests https://{paths.HOST_FROM_GUEST}:{cp.apiserver_port}) {running}\n"
            f"  kubectl --kubeconfig {cp.admin_kubeconfig} get nodes   (kubectl: {cp.kubectl})")
