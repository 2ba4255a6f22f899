"""Stack configuration, parsed into frozen, typed models before any resource is registered.

The raw stack config (`homelab-kubelet:<key>` objects) goes through pydantic with
`extra="forbid"`, so a typo is an error, and every error names the config key path
(`nodes[1].podCIDR`) and the bad value. Per-node reservation overrides are merged over the
stack-wide `reservations` here, so everything downstream sees one resolved `NodeSettings`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import hmac
import ipaddress
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from components import kubelet_flags, paths
from components.quantities import QUANTITY_PATTERN, parse_quantity, to_bytes, to_millicores

CONFIG_NAMESPACE = "homelab-kubelet"
# Stack config keys the program reads. The Pulumi CLI checks the types of the keys Pulumi.yaml
# declares but passes any other key of the namespace (and inline programs skip the project file):
# `unknown_key_problems` refuses them.
OBJECT_KEYS = ("kubernetes", "ssh", "kubelet", "reservations", "pki", "nodes")
# Secrets live in their own top-level keys, so the structured objects stay plain.
SECRET_KEYS = ("sshPrivateKey", "caCertPem", "caKeyPem")

# Sanity ceilings: a reservation above these is a unit mistake (Gi for Mi), not a plan.
MAX_RESERVED_MILLICORES = 64_000
MAX_RESERVED_BYTES = 256 * 2**30


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


class SettingsError(ValueError):
    """Invalid stack configuration; the message lists every problem with its key path."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- small validated types ------------------------------------------------------------------


def _quantity(value: str) -> str:
    if not QUANTITY_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 256Mi, 1Gi, 500m)")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or not value.isprintable():
        raise ValueError(f"{value!r} is not an absolute path")
    if posixpath.normpath(value) != value:
        raise ValueError(
            f"{value!r} is not a normalised absolute path (no '.', '..', '//' or trailing '/'); "
            f"write {posixpath.normpath(value)!r}"
        )
    return value


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    return value


# X.509 upper bounds (RFC 5280 appendix A): ub-common-name is 64 characters, and a node's CN is
# `system:node:<name>`; the name also becomes the file names `<name>.pem`, `<name>-key.pem`.
CN_MAX = 64
NODE_CN_PREFIX = "system:node:"
NODE_NAME_MAX = CN_MAX - len(NODE_CN_PREFIX)


def _node_name(value: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid node name (lowercase letters, digits, '-' and '.')")
    if len(value) > NODE_NAME_MAX:
        raise ValueError(
            f"{value!r} has {len(value)} characters; a node name has at most {NODE_NAME_MAX}, since the "
            f"certificate CN {NODE_CN_PREFIX}<name> is limited to {CN_MAX} characters"
        )
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _host(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if len(value) > 253 or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is neither an IP address nor a hostname")
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as error:
        raise ValueError(f"{value!r} is not a CIDR network ({error})") from None


def _label_key(key: str) -> str:
    """A Kubernetes qualified name: `[prefix/]name`, prefix a DNS subdomain of at most 253
    characters (non-empty when the '/' is there), name at most 63 characters of [A-Za-z0-9-_.]
    beginning and ending with a letter or digit (k8s.io/apimachinery IsQualifiedName)."""
    prefix, slash, name = key.rpartition("/")
    allowed = (
        "[prefix/]name: prefix a DNS subdomain of at most 253 characters, name at most 63 characters "
        "of letters, digits, '-', '_' and '.', beginning and ending with a letter or digit"
    )
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"{key!r} is not a valid label or taint key: bad prefix {prefix!r} ({allowed})")
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{key!r} is not a valid label or taint key: bad name {name!r} ({allowed})")
    return key


# --- values that end up in kubelet.service's ExecStart= ---------------------------------------

# systemd.syntax and systemd.service: whitespace splits words, quotes and backslashes are unquoted and
# unescaped, '%' starts a specifier and '$' an environment variable substitution (an unbraced
# `$VAR` is even split into several words at exec time), a trailing backslash continues the line and a
# newline starts a new directive. A value with none of these is one literal word.
_UNIT_UNSAFE = re.compile(r"[\s\\%$\"'`]")


def unit_word_problem(value: str) -> str | None:
    """Why `value` cannot go verbatim into one word of a systemd unit line, or None."""
    if not value.isprintable():
        return "it holds a control or non-printable character"
    found = _UNIT_UNSAFE.search(value)
    if found:
        return f"it holds {found.group()!r}"
    return None


# --- Go durations (time.ParseDuration), as the kubelet reads them ------------------------------

_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}
_GO_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
GO_DURATION_MAX_NS = 2**63 - 1


def go_duration_ns(value: str) -> int:
    """Nanoseconds of a Go duration (`1m30s`, `1.5h`, `500ms`); ValueError where Go's
    time.ParseDuration fails (no unit, unknown unit, overflow past 2^63-1 ns)."""
    text = value[1:] if value[:1] in "+-" else value
    negative = value.startswith("-")
    if text == "0":
        return 0
    if not text:
        raise ValueError(f"{value!r} is not a duration")
    total = Fraction(0)
    position = 0
    while position < len(text):
        part = _GO_PART.match(text, position)
        if not part or (not part[1] and not part[2]):
            raise ValueError(
                f"{value!r} is not a Go duration (a sequence of numbers with units ns, us, ms, s, m, h; e.g. 1m30s)"
            )
        number = Fraction(int(part[1] or "0")) + (Fraction(int(part[2]), 10 ** len(part[2])) if part[2] else 0)
        total += number * _GO_UNITS[part[3]]
        position = part.end()
    if int(total) > GO_DURATION_MAX_NS:
        raise ValueError(f"{value!r} overflows a Go duration (at most about 2562047h)")
    return -int(total) if negative else int(total)


# The kubelet refuses (and exits on) --node-labels in the kubernetes.io / k8s.io namespaces,
# except these and the kubelet.kubernetes.io / node.kubernetes.io prefixes (ValidateKubeletFlags).
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
        "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    }
)


def _kubelet_may_set(key: str) -> str:
    prefix = key.rpartition("/")[0]
    reserved = any(prefix == ns or prefix.endswith("." + ns) for ns in ("kubernetes.io", "k8s.io"))
    allowed = key in _KUBELET_LABELS or any(
        prefix == ns or prefix.endswith("." + ns) for ns in ("kubelet.kubernetes.io", "node.kubernetes.io")
    )
    if reserved and not allowed:
        raise ValueError(
            f"{key!r}: the kubelet refuses to set labels in the kubernetes.io/k8s.io namespaces "
            "(it exits at start); set such labels through the API server instead"
        )
    return key


Quantity = Annotated[str, AfterValidator(_quantity)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Host = Annotated[str, AfterValidator(_host)]
Cidr = Annotated[str, AfterValidator(_cidr)]
NodeName = Annotated[str, AfterValidator(_node_name)]
Port = Annotated[int, Field(ge=1, le=65535)]
Arch = Literal["amd64", "arm64"]


def _strict_int(value: Any) -> Any:
    # Pulumi hands numbers from YAML as ints or floats; accept 22 and 22.0, reject 22.5, "22", true.
    if isinstance(value, (bool, str)):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- sections -------------------------------------------------------------------------------


def _url_host_port(value: str, schemes: tuple[str, ...], path_allowed: bool) -> str:
    """`value` checked as scheme://host[:port][/path]: the host an IP (IPv6 in brackets) or a
    hostname, the port 1-65535 in plain digits; returns it without a trailing '/'."""
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)
    shape = f"{wanted}host[:port]" + ("[/path]" if path_allowed else "")
    if not value.isprintable() or any(char.isspace() for char in value):
        raise ValueError(f"{value!r} is not a {shape} URL: it holds whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{value!r} is not a {shape} URL")
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError(f"{value!r} is not a {shape} URL: no user, query or fragment")
    if not path_allowed and parts.path not in ("", "/"):
        raise ValueError(f"{value!r} is not a {shape} URL: no path")
    if path_allowed and not re.fullmatch(r"[A-Za-z0-9._~/-]*", parts.path):
        raise ValueError(f"{value!r}: the path may hold only letters, digits and . _ ~ - /")
    hostport = parts.netloc
    if hostport.startswith("["):
        host, closing, rest = hostport[1:].partition("]")
        try:
            is_v6 = closing == "]" and ipaddress.ip_address(host).version == 6
        except ValueError:
            is_v6 = False
        if not is_v6:
            raise ValueError(f"{value!r}: {hostport!r} is not a bracketed IPv6 address")
        port = rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port is None:
            raise ValueError(f"{value!r}: unexpected {rest!r} after the IPv6 address")
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
        try:
            _host(host)
        except ValueError:
            raise ValueError(
                f"{value!r}: {host!r} is neither an IP address nor a hostname (IPv6 goes in brackets: "
                "https://[fd00::1]:6443)"
            ) from None
    if port is not None and not (re.fullmatch(r"[1-9][0-9]{0,4}", port) and int(port) <= 65535):
        raise ValueError(f"{value!r}: port {port!r} is not a number from 1 to 65535")
    return value.rstrip("/")


_VERSION = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-(alpha|beta|rc)\.(0|[1-9]\d*))?$")
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class KubernetesSettings(_Model):
    version: str
    # Pinned kubelet digests, arch -> version -> sha256 (as Kubespray's checksum tables): the
    # install step then trusts these instead of the mirror's own kubelet.sha256.
    kubelet_sha256: dict[Arch, dict[str, Sha256]] = Field(default_factory=dict, alias="kubeletSha256")
    download_base_url: str = Field("https://dl.k8s.io", alias="downloadBaseUrl")
    api_server: str = Field(alias="apiServer")
    cluster_domain: str = Field("cluster.local", alias="clusterDomain")
    cluster_dns: tuple[IpAddress, ...] = Field(alias="clusterDNS", min_length=1)
    container_runtime_endpoint: str = Field(
        "unix:///run/containerd/containerd.sock", alias="containerRuntimeEndpoint"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_has_v(cls, value: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError(f"{value!r} needs a leading 'v' (v{value}), as in the release URLs")
        return value

    @field_validator("version")
    @classmethod
    def _release_version(cls, value: str) -> str:
        if not _VERSION.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a release version: vMAJOR.MINOR.PATCH[-alpha|beta|rc.N] "
                "in plain numbers without leading zeros, e.g. v1.30.1"
            )
        return value

    @field_validator("kubelet_sha256")
    @classmethod
    def _pinned_versions(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for arch, digests in value.items():
            for version in digests:
                if not _VERSION.fullmatch(version):
                    raise ValueError(f"{arch}: {version!r} is not a release version such as v1.30.1")
        return value

    @field_validator("download_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _url_host_port(value, ("https", "http"), path_allowed=True)

    @field_validator("api_server")
    @classmethod
    def _https_url(cls, value: str) -> str:
        return _url_host_port(value, ("https",), path_allowed=False)

    def pinned_sha256(self, arch: Arch) -> str | None:
        """The pinned digest of this version's kubelet for `arch`, or None."""
        return self.kubelet_sha256.get(arch, {}).get(self.version)

    @field_validator("cluster_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return _dns_subdomain(value)

    @field_validator("container_runtime_endpoint")
    @classmethod
    def _unix_socket(cls, value: str) -> str:
        if not re.fullmatch(r"unix:///[^\s]+", value):
            raise ValueError(f"{value!r} is not a unix:///path/to/socket endpoint")
        return value

    @property
    def runtime_socket_path(self) -> str:
        return self.container_runtime_endpoint.removeprefix("unix://")

    @property
    def minor_version(self) -> str:
        """`v1.30` for `v1.30.1`: the KubeletConfiguration field list is per minor release."""
        return ".".join(self.version.split(".")[:2])


# Linux user names as shadow's useradd and Debian's adduser accept them by default: a lowercase
# letter or '_', then lowercase letters, digits, '_' and '-', at most 32 characters.
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


class SshSettings(_Model):
    user: str = Field("root", pattern=USER_PATTERN)
    port: Port = 22
    private_key_file: str | None = Field(None, alias="privateKeyFile")
    agent: bool = False
    # Where nodes' host keys come from when nodes[].hostKey is not set (OpenSSH's format).
    known_hosts_file: str = Field(DEFAULT_KNOWN_HOSTS, alias="knownHostsFile", min_length=1)
    # Explicit opt-out: nodes without a known host key are dialled without verifying it.
    insecure_ignore_host_key: bool = Field(False, alias="insecureIgnoreHostKey")

    _ints = field_validator("port", mode="before")(_strict_int)


class ResourceReservation(_Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None
    ephemeral_storage: Quantity | None = Field(None, alias="ephemeral-storage")
    pid: Annotated[int, Field(ge=1)] | None = None

    _ints = field_validator("pid", mode="before")(_strict_int)

    @field_validator("cpu")
    @classmethod
    def _sane_cpu(cls, value: str | None) -> str | None:
        if value is not None and to_millicores(value) > MAX_RESERVED_MILLICORES:
            raise ValueError(f"{value!r} reserves more than 64 CPUs; did you mean millicores (m)?")
        return value

    @field_validator("memory", "ephemeral_storage")
    @classmethod
    def _sane_bytes(cls, value: str | None) -> str | None:
        if value is not None and to_bytes(value) > MAX_RESERVED_BYTES:
            raise ValueError(f"{value!r} reserves more than 256Gi; did you mean Mi?")
        return value

    def as_kubelet_map(self) -> dict[str, str]:
        """The map the KubeletConfiguration expects (`cpu`, `memory`, `ephemeral-storage`, `pid`)."""
        values = {
            "cpu": self.cpu,
            "memory": self.memory,
            "ephemeral-storage": self.ephemeral_storage,
            "pid": None if self.pid is None else str(self.pid),
        }
        return {key: value for key, value in values.items() if value is not None}


EvictionSignal = Literal[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
]
AllocatableEnforcement = Literal["pods", "kube-reserved", "system-reserved", "none"]
# A top-level systemd slice: in a slice name '-' means nesting (`/kube-reserved.slice` is
# kube.slice/kube-reserved.slice), and '_' is what the kubelet's systemd driver turns '-' into.
SLICE_PATTERN = r"^/[a-z][a-z0-9]*\.slice$"
# Slices systemd or the kubelet manage themselves: a reservation there fights them.
FOREIGN_SLICES = ("/user.slice", "/machine.slice", "/kubepods.slice", "/init.scope", "/-.slice")


def _default_eviction() -> dict[EvictionSignal, str]:
    return {"memory.available": "100Mi"}


class Reservations(_Model):
    system_reserved: ResourceReservation = Field(
        default_factory=ResourceReservation, alias="systemReserved"
    )
    kube_reserved: ResourceReservation = Field(
        default_factory=ResourceReservation, alias="kubeReserved"
    )
    eviction_hard: dict[EvictionSignal, str] = Field(
        default_factory=_default_eviction, alias="evictionHard"
    )
    enforce_node_allocatable: tuple[AllocatableEnforcement, ...] = Field(
        ("pods",), alias="enforceNodeAllocatable"
    )
    kube_reserved_cgroup: str = Field("/kube.slice", alias="kubeReservedCgroup")
    system_reserved_cgroup: str = Field("/system.slice", alias="systemReservedCgroup")

    @field_validator("kube_reserved_cgroup", "system_reserved_cgroup")
    @classmethod
    def _top_level_slice(cls, value: str) -> str:
        if value in FOREIGN_SLICES:
            raise ValueError(
                f"{value!r} is managed by systemd or the kubelet itself; use a slice of your own such as /kube.slice"
            )
        if not re.fullmatch(SLICE_PATTERN, value):
            raise ValueError(
                f"{value!r} is not a top-level systemd slice: /<lowercase letters and digits>.slice "
                "(a '-' in a slice name nests it in another slice)"
            )
        return value

    @field_validator("eviction_hard")
    @classmethod
    def _thresholds(cls, value: dict[str, str]) -> dict[str, str]:
        for signal, threshold in value.items():
            percent = re.fullmatch(r"(\d+(\.\d+)?)%", threshold)
            if percent:
                # The kubelet ignores 0% and 100% without a word and refuses more than 100%.
                if not 0 < float(percent[1]) < 100:
                    raise ValueError(
                        f"{signal}: {threshold!r} is not a percentage above 0% and below 100% "
                        "(the kubelet ignores 0% and 100% and refuses more)"
                    )
            elif QUANTITY_PATTERN.fullmatch(threshold):
                if parse_quantity(threshold) <= 0:
                    raise ValueError(f"{signal}: {threshold!r}: the kubelet refuses a threshold that is not positive")
            else:
                raise ValueError(
                    f"{signal}: {threshold!r} is neither a quantity (100Mi) nor a percentage (10%)"
                )
        return value

    @model_validator(mode="after")
    def _enforcement_is_coherent(self) -> Reservations:
        enforced = set(self.enforce_node_allocatable)
        if "none" in enforced and len(enforced) > 1:
            raise ValueError(
                "enforceNodeAllocatable: 'none' cannot be combined with other values "
                f"(got {list(self.enforce_node_allocatable)})"
            )
        if len(enforced) != len(self.enforce_node_allocatable):
            raise ValueError(
                f"enforceNodeAllocatable: duplicate entries in {list(self.enforce_node_allocatable)}"
            )
        if self.kube_reserved_cgroup == self.system_reserved_cgroup:
            raise ValueError(
                f"kubeReservedCgroup and systemReservedCgroup are both {self.kube_reserved_cgroup!r}; "
                "they must be two different slices"
            )
        for name, reservation in (
            ("kube-reserved", self.kube_reserved),
            ("system-reserved", self.system_reserved),
        ):
            if name in enforced and not reservation.as_kubelet_map():
                camel = "kubeReserved" if name == "kube-reserved" else "systemReserved"
                raise ValueError(
                    f"enforceNodeAllocatable has {name!r} but {camel} is empty: "
                    "nothing to enforce"
                )
        return self

    @property
    def kube_reserved_slice(self) -> str:
        return self.kube_reserved_cgroup.lstrip("/")

    @property
    def system_reserved_slice(self) -> str:
        return self.system_reserved_cgroup.lstrip("/")


# staticPodPath may be none of these (the kubelet reads every file there as a pod manifest) ...
SYSTEM_DIRECTORIES = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt", "/proc",
     "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local",
     "/usr/sbin", "/var", "/var/lib", "/var/log", "/var/tmp", "/etc/systemd", "/etc/systemd/system",
     "/etc/kubernetes", "/etc/containerd", "/etc/ssh"}
)
# ... nor lie in a directory the kubelet or this program writes.
KUBELET_OWNED_DIRECTORIES = (paths.KUBELET_DIR, paths.STATE_DIR, posixpath.dirname(paths.CA_CERT))


class KubeletSettings(_Model):
    # secure: anonymous off, webhook authn, Webhook authz, read-only port off.
    # permissive: the runbook's anonymous + AlwaysAllow, for a cluster still being built.
    auth_mode: Literal["secure", "permissive"] = Field("secure", alias="authMode")
    log_verbosity: Annotated[int, Field(ge=0, le=10)] = Field(2, alias="logVerbosity")
    static_pod_path: AbsolutePath = Field("/etc/kubelet.d", alias="staticPodPath")
    resolv_conf: AbsolutePath = Field("/run/systemd/resolve/resolv.conf", alias="resolvConf")
    runtime_request_timeout: str = Field("15m", alias="runtimeRequestTimeout")
    healthz_port: Port = Field(10248, alias="healthzPort")
    fail_swap_on: bool = Field(True, alias="failSwapOn")
    hostname_check: Literal["fail", "warn", "off"] = Field("warn", alias="hostnameCheck")
    # Debian's containerd leaves runc's SystemdCgroup off; the kubelet here uses the systemd
    # driver. When true the program sets it (and restarts containerd); when false preflight fails.
    manage_containerd_cgroup_driver: bool = Field(True, alias="manageContainerdCgroupDriver")
    health_timeout_seconds: Annotated[int, Field(ge=5, le=1800)] = Field(
        180, alias="healthTimeoutSeconds"
    )
    settle_seconds: Annotated[int, Field(ge=0, le=600)] = Field(15, alias="settleSeconds")
    # The runbook's value; "" leaves systemCgroups unset (the kubelet then moves no processes).
    system_cgroups: str = Field("/systemd/system.slice", alias="systemCgroups", pattern=r"^(/[\w./-]*)?$")

    _ints = field_validator(
        "log_verbosity", "healthz_port", "health_timeout_seconds", "settle_seconds", mode="before"
    )(_strict_int)

    @field_validator("runtime_request_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if go_duration_ns(value) <= 0:
            raise ValueError(
                f"{value!r} is not a positive duration (the kubelet replaces 0 with 2m without a word)"
            )
        return value

    @field_validator("static_pod_path")
    @classmethod
    def _own_directory(cls, value: str) -> str:
        if value in SYSTEM_DIRECTORIES or any(
            value == directory or value.startswith(directory + "/") for directory in KUBELET_OWNED_DIRECTORIES
        ):
            raise ValueError(
                f"{value!r} is a system directory or one the kubelet or this program writes; the kubelet "
                "would run every manifest-looking file there as a static pod: use a directory of its own "
                "such as /etc/kubelet.d"
            )
        return value

    @field_validator("system_cgroups")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "/" or (value and posixpath.normpath(value) != value):
            raise ValueError(
                f"{value!r}: systemCgroups must be a normalised cgroup below the root, or '' to leave it "
                "unset (the kubelet refuses '/': \"system container cannot be root\")"
            )
        return value


def _x509_string(limit: int) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        if not value or not value.isprintable():
            raise ValueError(f"{value!r} must be non-empty printable text")
        if len(value) > limit:
            raise ValueError(f"{value!r} has {len(value)} characters; X.509 allows at most {limit} here")
        return value

    return check


class PkiSubject(_Model):
    # Upper bounds of RFC 5280 appendix A; countryName is a two-letter ISO 3166 code.
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    province: Annotated[str | None, AfterValidator(_x509_string(128))] = None
    locality: Annotated[str | None, AfterValidator(_x509_string(128))] = None
    organizational_unit: Annotated[str | None, AfterValidator(_x509_string(64))] = Field(
        None, alias="organizationalUnit"
    )


class PkiSettings(_Model):
    subject: PkiSubject = Field(default_factory=PkiSubject)
    ca_common_name: Annotated[str, AfterValidator(_x509_string(CN_MAX))] = Field("Kubernetes", alias="caCommonName")
    ca_organization: Annotated[str, AfterValidator(_x509_string(64))] = Field("Kubernetes", alias="caOrganization")
    algorithm: Literal["ECDSA", "RSA", "ED25519"] = "ECDSA"
    ecdsa_curve: Literal["P256", "P384", "P521"] = Field("P256", alias="ecdsaCurve")
    rsa_bits: Literal[2048, 3072, 4096] = Field(2048, alias="rsaBits")
    ca_validity_hours: Annotated[int, Field(ge=24)] = Field(87600, alias="caValidityHours")
    validity_hours: Annotated[int, Field(ge=24)] = Field(8760, alias="validityHours")
    early_renewal_hours: Annotated[int, Field(ge=0)] = Field(720, alias="earlyRenewalHours")
    # When true the CA comes from the secrets caCertPem/caKeyPem instead of being generated.
    import_ca: bool = Field(False, alias="importCa")

    _ints = field_validator(
        "rsa_bits", "ca_validity_hours", "validity_hours", "early_renewal_hours", mode="before"
    )(_strict_int)

    @model_validator(mode="after")
    def _renewal_before_expiry(self) -> PkiSettings:
        if self.early_renewal_hours >= self.validity_hours:
            raise ValueError(
                f"earlyRenewalHours ({self.early_renewal_hours}) must be below validityHours "
                f"({self.validity_hours}), or every run would renew the certificates"
            )
        if self.validity_hours > self.ca_validity_hours:
            raise ValueError(
                f"validityHours ({self.validity_hours}) exceeds caValidityHours "
                f"({self.ca_validity_hours}): node certificates would outlive their CA"
            )
        return self


class Taint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    _key = field_validator("key")(_label_key)

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        if not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid taint value")
        return value


# --- SSH host keys -----------------------------------------------------------------------------

# Host key types that can be pinned, with the (curve name, point length) an ECDSA key carries.
# ssh-rsa is left out: the command provider offers only the pinned key's own algorithm, and for an
# RSA key that is SHA-1 `ssh-rsa`, which OpenSSH 8.8 and later refuse, so every dial would fail.
_ECDSA = {
    "ecdsa-sha2-nistp256": (b"nistp256", 65),
    "ecdsa-sha2-nistp384": (b"nistp384", 97),
    "ecdsa-sha2-nistp521": (b"nistp521", 133),
}
PINNABLE_KEY_TYPES = ("ssh-ed25519", *_ECDSA)


def _ssh_strings(blob: bytes) -> list[bytes] | None:
    """The length-prefixed strings of an SSH wire-format blob, or None when it does not split whole."""
    fields: list[bytes] = []
    position = 0
    while position < len(blob):
        if position + 4 > len(blob):
            return None
        size = int.from_bytes(blob[position:position + 4], "big")
        if position + 4 + size > len(blob):
            return None
        fields.append(blob[position + 4:position + 4 + size])
        position += 4 + size
    return fields


def public_key_problem(key_type: str, encoded: str) -> str | None:
    """Why `key_type encoded` is not a complete, pinnable SSH public key, or None."""
    if key_type == "ssh-rsa":
        return (
            "an ssh-rsa host key cannot be pinned (the SSH client would negotiate SHA-1 ssh-rsa, which "
            "OpenSSH 8.8+ refuses); pin the node's ed25519 or ecdsa key instead: ssh-keyscan -t ed25519 "
            "<node>, or /etc/ssh/ssh_host_ed25519_key.pub"
        )
    if key_type not in PINNABLE_KEY_TYPES:
        return f"unknown host key type {key_type!r} (allowed: {', '.join(PINNABLE_KEY_TYPES)})"
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64"
    fields = _ssh_strings(blob)
    if not fields or fields[0] != key_type.encode():
        return f"the key data is not a whole {key_type} key (truncated, or another key type)"
    if key_type == "ssh-ed25519":
        whole = len(fields) == 2 and len(fields[1]) == 32
    else:
        curve, point = _ECDSA[key_type]
        whole = len(fields) == 3 and fields[1] == curve and len(fields[2]) == point and fields[2][:1] == b"\x04"
    return None if whole else f"the key data is not a whole {key_type} key (truncated, or another key type)"


def _host_key_line(value: str) -> str:
    parts = value.split(" ")
    if len(parts) != 2 or not value.isprintable():
        raise ValueError(
            f"{value[:60]!r}: a host key is one line 'TYPE BASE64' with nothing after it "
            "(as in /etc/ssh/ssh_host_ed25519_key.pub, without the comment)"
        )
    problem = public_key_problem(*parts)
    if problem:
        raise ValueError(f"{value[:60]!r}...: {problem}" if len(value) > 60 else f"{value!r}: {problem}")
    return value


def _known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH looks up in known_hosts: `host`, or `[host]:port` off port 22."""
    host = address.lower()
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_matches(pattern: str, name: str) -> bool:
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower())
    return re.fullmatch(regex, name) is not None


def _hosts_field_matches(field: str, name: str) -> bool:
    """OpenSSH's known_hosts host field: a hashed `|1|salt|hash` (HMAC-SHA1 of the name keyed with
    the salt), or a comma list of patterns with `*`, `?` and `!` negation."""
    if field.startswith("|1|"):
        _, _, salt, digest = [*field.split("|"), "", ""][:4]
        try:
            expected = base64.b64decode(digest, validate=True)
            mac = hmac.new(base64.b64decode(salt, validate=True), name.encode(), hashlib.sha1).digest()
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(mac, expected)
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], name):
                return False
        elif _pattern_matches(pattern, name):
            matched = True
    return matched


def known_host_keys(text: str, address: str, port: int) -> list[str]:
    """Every `TYPE BASE64` key that known_hosts `text` holds for address:port, in file order;
    revoked keys and certificate authorities are left out, and so is a malformed line."""
    name = _known_hosts_name(address, port)
    keys: list[str] = []
    revoked: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if len(fields) < 3 or not _hosts_field_matches(fields[0], name):
            continue
        key = f"{fields[1]} {fields[2]}"
        if marker == "@revoked":
            revoked.add(key)
        elif marker is None:
            keys.append(key)
    return [key for key in keys if key not in revoked]


# Flags the program sets itself, or that would override what it renders or weaken authentication
# (components/kubelet_flags.py): refused in extraArgs.
MANAGED_FLAGS = kubelet_flags.OWNED_FLAGS


# The kubelet's defaults (KubeletConfiguration v1beta1) for what extraArgs may change.
DEFAULT_MAX_PODS = 110
DEFAULT_KUBELET_PORT = 10250
PERMISSIVE_READ_ONLY_PORT = 10255


def pod_addresses(cidr: str) -> int:
    """Addresses of a pod CIDR a pod can get: not the network address or the bridge's (nor the
    broadcast address in IPv4)."""
    network = ipaddress.ip_network(cidr)
    return max(network.num_addresses - (3 if network.version == 4 else 2), 0)


class NodeConfig(_Model):
    """One entry of `nodes` as written in the stack (reservations still partial)."""

    name: NodeName
    address: Host
    port: Port | None = None
    user: str | None = Field(None, pattern=USER_PATTERN)
    arch: Arch
    pod_cidr: Cidr = Field(alias="podCIDR")
    ips: tuple[IpAddress, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    extra_args: dict[str, str] = Field(default_factory=dict, alias="extraArgs")
    host_key: Annotated[str, AfterValidator(_host_key_line)] | None = Field(None, alias="hostKey")
    resolv_conf: AbsolutePath | None = Field(None, alias="resolvConf")
    reservations: dict[str, Any] = Field(default_factory=dict)

    _ints = field_validator("port", mode="before")(_strict_int)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            _label_key(key)
            _kubelet_may_set(key)
            if not _LABEL_VALUE.fullmatch(label):
                raise ValueError(f"label {key}: {label!r} is not a valid label value")
        return value

    @field_validator("taints")
    @classmethod
    def _unique_taints(cls, value: tuple[Taint, ...]) -> tuple[Taint, ...]:
        seen: set[tuple[str, str]] = set()
        for taint in value:
            if (taint.key, taint.effect) in seen:
                raise ValueError(
                    f"two taints with key {taint.key!r} and effect {taint.effect!r}: taints must be unique "
                    "by key and effect (the API server refuses the node)"
                )
            seen.add((taint.key, taint.effect))
        return value

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, value: dict[str, str]) -> dict[str, str]:
        for flag, arg in value.items():
            if flag.startswith("-") or not _FLAG_NAME.fullmatch(flag):
                raise ValueError(
                    f"{flag!r}: write kubelet flag names as on the command line without the leading "
                    "dashes, lowercase with '-', e.g. max-pods"
                )
            reason = kubelet_flags.refusal(flag)
            if reason:
                raise ValueError(f"{flag!r} cannot be set through extraArgs: {reason}")
            problem = unit_word_problem(arg)
            if problem:
                raise ValueError(
                    f"{flag}: {arg!r} cannot go into kubelet.service's ExecStart: {problem}; a value may not "
                    "hold whitespace, control characters, backslashes, '%', '$' or quotes"
                )
        if "max-pods" in value and not re.fullmatch(r"[1-9][0-9]{0,5}", value["max-pods"]):
            raise ValueError(f"max-pods: {value['max-pods']!r} is not a positive whole number")
        return value

    @property
    def max_pods(self) -> int:
        return int(self.extra_args.get("max-pods", DEFAULT_MAX_PODS))


class NodeSettings(_Model):
    """A node with everything resolved: the stack-wide defaults merged in."""

    name: str
    address: str
    port: int
    user: str
    arch: Arch
    pod_cidr: str
    ips: tuple[str, ...]
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    extra_args: dict[str, str]
    host_key: str | None
    resolv_conf: str
    reservations: Reservations

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    @property
    def cert_common_name(self) -> str:
        # The Node authorizer maps this CN to the node the kubelet may modify; the kubelet
        # registers as `name` (--hostname-override), so both come from this one field.
        return f"system:node:{self.name}"

    @property
    def san_dns_names(self) -> tuple[str, ...]:
        names = [self.name]
        if self.address != self.name and not _is_ip(self.address) and self.address != "localhost":
            names.append(self.address)
        return tuple(names)

    @property
    def san_ip_addresses(self) -> tuple[str, ...]:
        return self.ips


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class Settings(_Model):
    kubernetes: KubernetesSettings
    ssh: SshSettings
    kubelet: KubeletSettings
    reservations: Reservations
    pki: PkiSettings
    nodes: tuple[NodeSettings, ...]
    ssh_private_key_from_secret: bool = False

    def node(self, name: str) -> NodeSettings:
        return next(node for node in self.nodes if node.name == name)


# --- parsing --------------------------------------------------------------------------------


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


def _validate(model: type[_Model], raw: Any, prefix: str, problems: list[str]) -> Any:
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as errors:
        problems.extend(_describe(errors, prefix))
        return None


def _merge_reservations(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Per-node overrides win key by key; resource maps merge one level deep."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def _pod_cidr_overlaps(cidrs: Sequence[tuple[int, str]]) -> dict[int, list[tuple[str, int, str]]]:
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


def parse_settings(
    raw: Mapping[str, Any], secrets_present: frozenset[str] = frozenset(), configured_keys: Iterable[str] = ()
) -> Settings:
    """Validate the stack config objects; raises SettingsError listing every problem.

    `configured_keys`: every key of the stack's config ("namespace:key"), to refuse unknown ones.
    """
    problems: list[str] = unknown_key_problems(configured_keys)
    kubernetes = _validate(KubernetesSettings, raw.get("kubernetes"), "kubernetes", problems)
    if raw.get("kubernetes") is None:
        problems.append("kubernetes: required key is missing")
    ssh = _validate(SshSettings, raw.get("ssh"), "ssh", problems)
    kubelet = _validate(KubeletSettings, raw.get("kubelet"), "kubelet", problems)
    raw_reservations = raw.get("reservations") or {}
    reservations = _validate(Reservations, raw_reservations, "reservations", problems)
    pki = _validate(PkiSettings, raw.get("pki"), "pki", problems)

    raw_nodes = raw.get("nodes")
    nodes: list[NodeSettings] = []
    if not raw_nodes:
        problems.append("nodes: at least one node is required")
        raw_nodes = []
    elif not isinstance(raw_nodes, list):
        problems.append(f"nodes: must be a list of nodes (got {type(raw_nodes).__name__})")
        raw_nodes = []

    seen_names: dict[str, int] = {}
    seen_endpoints: dict[tuple[str, int], int] = {}
    cidr_slots: list[tuple[int, str, int]] = []  # node index, podCIDR, where its problems go
    for index, raw_node in enumerate(raw_nodes):
        where = f"nodes[{index}]"
        node = _validate(NodeConfig, raw_node, where, problems)
        if node is None:
            continue
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
        if pod_addresses(node.pod_cidr) < node.max_pods:
            problems.append(
                f"{where}.podCIDR: {node.pod_cidr!r} has room for {pod_addresses(node.pod_cidr)} pods but the "
                f"kubelet admits up to {node.max_pods} (max-pods); use a larger network (a /24 holds 253) "
                "or lower extraArgs max-pods"
            )
        if kubelet is not None:
            kubelet_ports = {int(node.extra_args.get("port", DEFAULT_KUBELET_PORT)): "the kubelet's port"}
            if kubelet.auth_mode == "permissive":
                kubelet_ports[PERMISSIVE_READ_ONLY_PORT] = "its read-only port (authMode: permissive)"
            if kubelet.healthz_port in kubelet_ports and not any(p.startswith("kubelet.healthzPort") for p in problems):
                problems.append(
                    f"kubelet.healthzPort: {kubelet.healthz_port} is {kubelet_ports[kubelet.healthz_port]} on "
                    f"{where} ({node.name}); the kubelet cannot bind both; use another port (default 10248)"
                )
        # Overlaps are found for all nodes at once below and reported here, in node order.
        cidr_slots.append((index, node.pod_cidr, len(problems)))
        if reservations is None or not isinstance(raw_reservations, Mapping):
            continue  # already reported under `reservations`
        node_reservations = _validate(
            Reservations,
            _merge_reservations(raw_reservations, node.reservations),
            f"{where}.reservations",
            problems,
        )
        if node_reservations is None or kubelet is None or ssh is None:
            continue
        nodes.append(
            NodeSettings(
                name=node.name,
                address=node.address,
                port=port,
                user=node.user or ssh.user,
                arch=node.arch,
                pod_cidr=node.pod_cidr,
                ips=node.ips,
                labels=node.labels,
                taints=node.taints,
                extra_args=node.extra_args,
                host_key=node.host_key,
                resolv_conf=node.resolv_conf or kubelet.resolv_conf,
                reservations=node_reservations,
            )
        )

    overlaps = _pod_cidr_overlaps([(index, cidr) for index, cidr, _ in cidr_slots])
    for index, _, position in reversed(cidr_slots):
        problems[position:position] = [
            f"nodes[{index}].podCIDR: {cidr!r} overlaps nodes[{other}].podCIDR {other_cidr!r}"
            for cidr, other, other_cidr in overlaps.get(index, [])
        ]

    if kubernetes is not None and cidr_slots:
        problems.extend(_cluster_dns_problems(kubernetes, [cidr for _, cidr, _ in cidr_slots]))
        problems.extend(_kubelet_digest_problems(kubernetes, raw_nodes))

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

    if problems:
        raise SettingsError(
            "invalid stack configuration:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )
    assert kubernetes and ssh and kubelet and reservations and pki  # for the type checker
    return Settings(
        kubernetes=kubernetes,
        ssh=ssh,
        kubelet=kubelet,
        reservations=reservations,
        pki=pki,
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
        name = _known_hosts_name(node.address, node.port)
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
        raise SettingsError("invalid stack configuration:\n" + "\n".join(f"  - {problem}" for problem in problems))
    return settings.model_copy(update={"nodes": tuple(nodes)}), warnings
