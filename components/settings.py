"""Stack configuration, parsed into frozen, typed models before any resource is registered.

The raw stack config (`homelab-kubelet:<key>` objects) goes through pydantic with
`extra="forbid"`, so a typo is an error, and every error names the config key path
(`nodes[1].podCIDR`) and the bad value. Per-node reservation overrides are merged over the
stack-wide `reservations` here, so everything downstream sees one resolved `NodeSettings`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from components.quantities import QUANTITY_PATTERN, to_bytes, to_millicores

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
    if not value.startswith("/") or "\n" in value:
        raise ValueError(f"{value!r} is not an absolute path")
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
            f"{value!r} is not a valid node name (lowercase letters, digits, '-' and '.')"
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
    prefix, _, name = key.rpartition("/")
    if (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)) or not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{key!r} is not a valid label or taint key")
    return key


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
NodeName = Annotated[str, AfterValidator(_dns_subdomain)]
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


class KubernetesSettings(_Model):
    version: str = Field(pattern=r"^v\d+\.\d+\.\d+(-(alpha|beta|rc)\.\d+)?$")
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

    @field_validator("download_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("api_server")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not re.fullmatch(r"https://[^\s/:]+(:\d+)?/?", value):
            raise ValueError(f"{value!r} is not an https://host[:port] URL")
        return value.rstrip("/")

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


class SshSettings(_Model):
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]*$")
    port: Port = 22
    private_key_file: str | None = Field(None, alias="privateKeyFile")
    agent: bool = False

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
SLICE_PATTERN = r"^/[a-z][a-z0-9-]*\.slice$"


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
    kube_reserved_cgroup: str = Field("/kube.slice", alias="kubeReservedCgroup", pattern=SLICE_PATTERN)
    system_reserved_cgroup: str = Field(
        "/system.slice", alias="systemReservedCgroup", pattern=SLICE_PATTERN
    )

    @field_validator("eviction_hard")
    @classmethod
    def _thresholds(cls, value: dict[str, str]) -> dict[str, str]:
        for signal, threshold in value.items():
            if not (re.fullmatch(r"\d{1,2}(\.\d+)?%", threshold) or QUANTITY_PATTERN.fullmatch(threshold)):
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


class KubeletSettings(_Model):
    # secure: anonymous off, webhook authn, Webhook authz, read-only port off.
    # permissive: the runbook's anonymous + AlwaysAllow, for a cluster still being built.
    auth_mode: Literal["secure", "permissive"] = Field("secure", alias="authMode")
    log_verbosity: Annotated[int, Field(ge=0, le=10)] = Field(2, alias="logVerbosity")
    static_pod_path: AbsolutePath = Field("/etc/kubelet.d", alias="staticPodPath")
    resolv_conf: AbsolutePath = Field("/run/systemd/resolve/resolv.conf", alias="resolvConf")
    runtime_request_timeout: str = Field(
        "15m", alias="runtimeRequestTimeout", pattern=r"^\d+(ms|s|m|h)$"
    )
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


class PkiSubject(_Model):
    country: str | None = None
    province: str | None = None
    locality: str | None = None
    organizational_unit: str | None = Field(None, alias="organizationalUnit")


class PkiSettings(_Model):
    subject: PkiSubject = Field(default_factory=PkiSubject)
    ca_common_name: str = Field("Kubernetes", alias="caCommonName", min_length=1)
    ca_organization: str = Field("Kubernetes", alias="caOrganization", min_length=1)
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


# Flags the program sets itself; overriding them through extraArgs would break an invariant
# (the cert CN = the registered name, the config file being the source of truth, ...).
MANAGED_FLAGS = frozenset(
    {"config", "kubeconfig", "hostname-override", "runtime-cgroups", "node-labels", "v"}
)


class NodeConfig(_Model):
    """One entry of `nodes` as written in the stack (reservations still partial)."""

    name: NodeName
    address: Host
    port: Port | None = None
    user: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_-]*$")
    arch: Arch
    pod_cidr: Cidr = Field(alias="podCIDR")
    ips: tuple[IpAddress, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    extra_args: dict[str, str] = Field(default_factory=dict, alias="extraArgs")
    host_key: str | None = Field(None, alias="hostKey", pattern=r"^(ssh-|ecdsa-)\S+ \S+")
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

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is not None and value.split()[0] == "ssh-rsa":
            # The command provider offers only the pinned key's own algorithm, and for an RSA key
            # that is SHA-1 `ssh-rsa`, which OpenSSH 8.8 and later refuse: every dial would fail.
            raise ValueError(
                f"{value[:40]!r}...: an ssh-rsa host key cannot be pinned (the SSH client would "
                "negotiate SHA-1 ssh-rsa, which OpenSSH 8.8+ refuses); pin the node's ed25519 or "
                "ecdsa key instead: ssh-keyscan -t ed25519 <node>, or /etc/ssh/ssh_host_ed25519_key.pub"
            )
        return value

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, value: dict[str, str]) -> dict[str, str]:
        for flag in value:
            if flag.startswith("-") or not _FLAG_NAME.fullmatch(flag):
                raise ValueError(
                    f"{flag!r}: write kubelet flag names as on the command line without the leading "
                    "dashes, lowercase with '-', e.g. max-pods"
                )
            if flag in MANAGED_FLAGS:
                raise ValueError(f"{flag!r} is set by the program and cannot be overridden")
        return value


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
