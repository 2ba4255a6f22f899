"""The stack config's models: frozen, `extra="forbid"` pydantic models, one per config object.

`NodeConfig` is a node as written in the stack; `NodeSettings` is a node with the stack-wide
settings merged in (`parse.py` builds it). Every default of the config lives here; Pulumi.yaml's
schema and README's config table repeat them, and tests/test_settings.py checks they agree.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from components import kubelet_flags, paths
from components.quantities import QUANTITY_PATTERN, parse_quantity, to_bytes, to_millicores
from components.settings.host_keys import host_key_line
from components.settings.types import (
    _FLAG_NAME,
    _LABEL_VALUE,
    _VERSION,
    CN_MAX,
    NODE_CN_PREFIX,
    AbsolutePath,
    Arch,
    Cidr,
    Host,
    IpAddress,
    NodeIp,
    NodeName,
    Port,
    Quantity,
    Sha256,
    _dns_subdomain,
    _kubelet_may_set,
    _label_key,
    _strict_int,
    _url_host_port,
    _x509_string,
    go_duration_ns,
    unit_word_problem,
)

# Sanity ceilings: a reservation above these is a unit mistake (Gi for Mi), not a plan.
MAX_RESERVED_MILLICORES = 64_000
MAX_RESERVED_BYTES = 256 * 2**30


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


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


# The kubelet's own evictionHard on Linux (v1.30 pkg/kubelet/eviction/defaults_linux.go). It uses
# these only when the file has no evictionHard at all: a file that sets one key gets that key
# alone (cmd/kubelet/app/server.go loadConfigFile; kubernetes/kubernetes#112057, #119985), so the
# program renders them all with the stack's keys over them. The API reference lists four;
# v1.30's source also has imagefs.inodesFree.
KUBELET_EVICTION_HARD: dict[EvictionSignal, str] = {
    "memory.available": "100Mi",
    "nodefs.available": "10%",
    "nodefs.inodesFree": "5%",
    "imagefs.available": "15%",
    "imagefs.inodesFree": "5%",
}
# A threshold of exactly "0%" is one the kubelet ignores (parseThresholdStatement): the way to
# switch one of its defaults off.
EVICTION_OFF = "0%"


def eviction_threshold_problem(threshold: str) -> str | None:
    """What the kubelet refuses or ignores of an eviction threshold (pkg/kubelet/eviction
    helpers.go parseThresholdStatement), or None."""
    percent = re.fullmatch(r"(\d+(\.\d+)?)%", threshold)
    if threshold == EVICTION_OFF:
        return None
    if percent:
        # The kubelet ignores 100% without a word (and 0%, the way to switch a default off) and
        # refuses more than 100%.
        if not 0 < float(percent[1]) < 100:
            return (
                f"{threshold!r} is not a percentage above 0% and below 100% "
                "(write exactly 0% to switch the kubelet's threshold for it off)"
            )
        return None
    if QUANTITY_PATTERN.fullmatch(threshold):
        if parse_quantity(threshold) <= 0:
            return f"{threshold!r}: the kubelet refuses a threshold that is not positive"
        return None
    return f"{threshold!r} is neither a quantity (100Mi) nor a percentage (10%)"


class MemoryReservation(_Model):
    """One entry of reservations.reservedMemory (kubelet field reservedMemory): the memory the
    Static memory manager keeps from pods on one NUMA node."""

    numa_node: Annotated[int, Field(ge=0)] = Field(alias="numaNode")
    limits: dict[str, Quantity] = Field(min_length=1)

    _ints = field_validator("numa_node", mode="before")(_strict_int)

    @field_validator("limits")
    @classmethod
    def _memory_only(cls, value: dict[str, str]) -> dict[str, str]:
        for resource, quantity in value.items():
            if resource != "memory":
                # The kubelet wants the hugepages here to equal the hugepages reserved in
                # systemReserved/kubeReserved, which the reservations here do not have.
                raise ValueError(
                    f"{resource!r}: only memory can be reserved here (the reservations reserve no hugepages)"
                )
            if parse_quantity(quantity) <= 0:
                raise ValueError(f"memory: {quantity!r}: the kubelet refuses a reservation of zero")
        return value

    @property
    def memory(self) -> Decimal:
        return parse_quantity(self.limits["memory"])


class Reservations(_Model):
    system_reserved: ResourceReservation = Field(
        default_factory=ResourceReservation, alias="systemReserved"
    )
    kube_reserved: ResourceReservation = Field(
        default_factory=ResourceReservation, alias="kubeReserved"
    )
    # The stack's thresholds; the kubelet gets them over its defaults (eviction_thresholds).
    eviction_hard: dict[EvictionSignal, str] = Field(default_factory=dict, alias="evictionHard")
    enforce_node_allocatable: tuple[AllocatableEnforcement, ...] = Field(
        ("pods",), alias="enforceNodeAllocatable"
    )
    kube_reserved_cgroup: str = Field("/kube.slice", alias="kubeReservedCgroup")
    system_reserved_cgroup: str = Field("/system.slice", alias="systemReservedCgroup")
    # For kubelet.memoryManagerPolicy: Static (which renders one entry for NUMA node 0 when this is
    # not set): per NUMA node, the memory kept from pods; the entries must add up to
    # systemReserved + kubeReserved + evictionHard memory, or the kubelet refuses to start.
    reserved_memory: tuple[MemoryReservation, ...] | None = Field(None, alias="reservedMemory")

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
            problem = eviction_threshold_problem(threshold)
            if problem is not None:
                raise ValueError(f"{signal}: {problem}")
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
        if self.reserved_memory is not None:
            seen: set[int] = set()
            for entry in self.reserved_memory:
                if entry.numa_node in seen:
                    raise ValueError(
                        f"reservedMemory: NUMA node {entry.numa_node} is listed twice (the kubelet refuses duplicates)"
                    )
                seen.add(entry.numa_node)
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
    def eviction_thresholds(self) -> dict[EvictionSignal, str]:
        """evictionHard as the kubelet gets it: its defaults with the stack's keys over them."""
        return {**KUBELET_EVICTION_HARD, **self.eviction_hard}

    def memory_kept_from_pods(self) -> Decimal | None:
        """systemReserved + kubeReserved memory + the evictionHard memory threshold, in bytes,
        as the kubelet's node allocatable reservation counts them; None when the threshold is
        a percentage (its bytes depend on each node's memory)."""
        threshold = self.eviction_thresholds.get("memory.available", EVICTION_OFF)
        if threshold.endswith("%") and threshold != EVICTION_OFF:
            return None
        total = sum(
            (parse_quantity(reservation.memory) for reservation in (self.system_reserved, self.kube_reserved)
             if reservation.memory is not None),
            Decimal(0),
        )
        return total if threshold == EVICTION_OFF else total + parse_quantity(threshold)

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


class MemorySwap(_Model):
    """kubelet.memorySwap: how pods may use the node's swap (kubelet field memorySwap)."""

    # NoSwap: pods use none; LimitedSwap: in proportion to their memory request, cgroup v2 only
    # (a v1.30 kubelet on cgroup v1 silently uses NoSwap; preflight refuses such a node).
    swap_behavior: Literal["NoSwap", "LimitedSwap"] = Field(alias="swapBehavior")


# The kubelet's defaults (KubeletConfiguration v1beta1, pkg/kubelet/apis/config/v1beta1/defaults.go)
# that the settings' checks combine with a value the stack sets.
DEFAULT_MAX_PODS = 110
DEFAULT_KUBELET_PORT = 10250
PERMISSIVE_READ_ONLY_PORT = 10255
DEFAULT_IMAGE_GC_HIGH_PERCENT = 85
DEFAULT_IMAGE_GC_LOW_PERCENT = 80
INT32_MAX = 2**31 - 1


def duration_check(minimum_ns: int, allow_zero: bool, zero_note: str = "") -> Any:
    """A validator of a Go duration (a string, as metav1.Duration decodes it) of at least
    `minimum_ns`, or zero when `allow_zero`."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a duration: write it as text with a unit, e.g. '60s' or '1m30s'")
        ns = go_duration_ns(value)
        if ns == 0 and allow_zero:
            return value
        if ns < minimum_ns or ns == 0:
            least = f"a duration of at least {minimum_ns // 10**9}s" if minimum_ns >= 10**9 else "a positive duration"
            raise ValueError(f"{value!r} is not {least}{zero_note}")
        return value

    return check


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
    # Unset by default, as kubeadm and Kubespray leave it. The kubelet v1.30 manages this cgroup
    # with runc's cgroupfs manager whatever its cgroupDriver (pkg/kubelet/cm
    # container_manager_linux.go createManager: Systemd: false), so the runbook's
    # /systemd/system.slice is a cgroup outside systemd's tree, which the kubelet creates only
    # to move into it the non-kernel processes other than PID 1 that sit in the root cgroup (on
    # v1, of the devices hierarchy). Under systemd there are none: measured on the lab's Debian 12
    # in both cgroup modes (tests/lab), nothing moves, the cgroup is never created, and the stats
    # summary logs "Failed to get system container stats ... unknown container" every 10 s. The
    # runbook's value stays available as an explicit choice; "" means unset too.
    system_cgroups: str | None = Field(None, alias="systemCgroups", pattern=r"^(/[\w./-]*)?$")
    # Graceful node shutdown (kubelet fields of the same names): off unless set, as in v1.30. With
    # it the kubelet holds a logind delay inhibitor for this long at shutdown (Kubespray: 60s/20s);
    # preflight checks logind's InhibitDelayMaxSec.
    shutdown_grace_period: Annotated[str | None, BeforeValidator(duration_check(10**9, False))] = Field(
        None, alias="shutdownGracePeriod"
    )
    shutdown_grace_period_critical_pods: Annotated[str | None, BeforeValidator(duration_check(10**9, True))] = Field(
        None, alias="shutdownGracePeriodCriticalPods"
    )
    memory_swap: MemorySwap | None = Field(None, alias="memorySwap")
    # Image garbage collection and container log rotation (unset: the kubelet's 85, 80, 2m, 10Mi, 5).
    image_gc_high_threshold_percent: Annotated[int, Field(ge=0, le=100)] | None = Field(
        None, alias="imageGCHighThresholdPercent"
    )
    image_gc_low_threshold_percent: Annotated[int, Field(ge=0, le=100)] | None = Field(
        None, alias="imageGCLowThresholdPercent"
    )
    image_minimum_gc_age: Annotated[
        str | None, BeforeValidator(duration_check(1, False, " (the kubelet replaces 0 with 2m without a word)"))
    ] = Field(None, alias="imageMinimumGCAge")
    container_log_max_size: Quantity | None = Field(None, alias="containerLogMaxSize")
    container_log_max_files: Annotated[int, Field(ge=2, le=INT32_MAX)] | None = Field(
        None, alias="containerLogMaxFiles"
    )
    # Pods per node (unset: the kubelet's 110); nodes[].maxPods overrides it for one node.
    max_pods: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = Field(None, alias="maxPods")
    # Checked against the gates of kubernetes.version's kubelet (components/kubelet_api.py).
    feature_gates: dict[str, StrictBool] = Field(default_factory=dict, alias="featureGates")
    serialize_image_pulls: StrictBool | None = Field(None, alias="serializeImagePulls")
    # static needs a CPU reservation (systemReserved + kubeReserved cpu); Static needs the memory
    # reservations to be absolute, and reservations.reservedMemory to add up to them.
    cpu_manager_policy: Literal["none", "static"] | None = Field(None, alias="cpuManagerPolicy")
    memory_manager_policy: Literal["None", "Static"] | None = Field(None, alias="memoryManagerPolicy")
    # Any other KubeletConfiguration field, checked against kubernetes.version's field list and
    # refused for the fields the program renders (parse.py, components/kubelet_flags.py).
    config: dict[str, Any] = Field(default_factory=dict)

    _ints = field_validator(
        "log_verbosity", "healthz_port", "health_timeout_seconds", "settle_seconds",
        "image_gc_high_threshold_percent", "image_gc_low_threshold_percent", "container_log_max_files",
        "max_pods", mode="before",
    )(_strict_int)

    @field_validator("container_log_max_size")
    @classmethod
    def _log_size(cls, value: str | None) -> str | None:
        if value is not None and parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} is not a positive size (e.g. 10Mi)")
        return value

    @model_validator(mode="after")
    def _kubelet_combinations(self) -> KubeletSettings:
        # What the kubelet itself refuses at start (pkg/kubelet/apis/config/validation), with its
        # defaults standing in for what the stack leaves unset.
        high = self.image_gc_high_threshold_percent
        low = self.image_gc_low_threshold_percent
        if (high, low) != (None, None):
            high_used = DEFAULT_IMAGE_GC_HIGH_PERCENT if high is None else high
            low_used = DEFAULT_IMAGE_GC_LOW_PERCENT if low is None else low
            if low_used >= high_used:
                raise ValueError(
                    f"imageGCLowThresholdPercent ({low_used}{' by default' if low is None else ''}) must be below "
                    f"imageGCHighThresholdPercent ({high_used}{' by default' if high is None else ''}); the kubelet "
                    "refuses to start otherwise"
                )
        critical = self.shutdown_grace_period_critical_pods
        if critical is not None:
            if self.shutdown_grace_period is None:
                raise ValueError(
                    f"shutdownGracePeriodCriticalPods ({critical!r}) needs shutdownGracePeriod, the whole time "
                    "the node waits at shutdown (e.g. 60s and 20s)"
                )
            if go_duration_ns(critical) > go_duration_ns(self.shutdown_grace_period):
                raise ValueError(
                    f"shutdownGracePeriodCriticalPods ({critical!r}) must not exceed shutdownGracePeriod "
                    f"({self.shutdown_grace_period!r}): it is the part of it kept for critical pods"
                )
        if self.memory_swap is not None and self.fail_swap_on:
            raise ValueError(
                f"memorySwap.swapBehavior {self.memory_swap.swap_behavior!r} needs failSwapOn: false (with "
                "failSwapOn: true the kubelet refuses to start on a node with swap on)"
            )
        return self

    def shutdown_grace_period_seconds(self) -> int:
        """shutdownGracePeriod in whole seconds, rounded up (0 when off): what logind must allow."""
        if self.shutdown_grace_period is None:
            return 0
        return -(-go_duration_ns(self.shutdown_grace_period) // 10**9)

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
    def _not_root(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value == "/" or (value and posixpath.normpath(value) != value):
            raise ValueError(
                f"{value!r}: systemCgroups must be a normalised cgroup below the root, or '' to leave it "
                "unset (the kubelet refuses '/': \"system container cannot be root\")"
            )
        return value


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
    # The address the kubelet registers as InternalIP (--node-ip); unset: the one it picks itself,
    # which preflight finds the same way.
    node_ip: NodeIp | None = Field(None, alias="nodeIP")
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    extra_args: dict[str, str] = Field(default_factory=dict, alias="extraArgs")
    host_key: Annotated[str, AfterValidator(host_key_line)] | None = Field(None, alias="hostKey")
    resolv_conf: AbsolutePath | None = Field(None, alias="resolvConf")
    reservations: dict[str, Any] = Field(default_factory=dict)
    # This node's kubelet.maxPods.
    max_pods: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = Field(None, alias="maxPods")

    _ints = field_validator("port", "max_pods", mode="before")(_strict_int)

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
            # Flags the kubelet deprecates are refused by parse.py, with the release's own table.
            reason = kubelet_flags.own_flag_refusal(flag)
            if reason:
                raise ValueError(f"{flag!r} cannot be set through extraArgs: {reason}")
            problem = unit_word_problem(arg)
            if problem:
                raise ValueError(
                    f"{flag}: {arg!r} cannot go into kubelet.service's ExecStart: {problem}; a value may not "
                    "hold whitespace, control characters, backslashes, '%', '$' or quotes"
                )
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
    node_ip: str | None
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    extra_args: dict[str, str]
    host_key: str | None
    resolv_conf: str
    reservations: Reservations
    # nodes[].maxPods, else kubelet.maxPods; None: the kubelet's default (pods_allowed)
    max_pods: int | None = None

    @property
    def pods_allowed(self) -> int:
        """How many pods this node's kubelet admits."""
        return DEFAULT_MAX_PODS if self.max_pods is None else self.max_pods

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    @property
    def cert_common_name(self) -> str:
        # The Node authorizer maps this CN to the node the kubelet may modify; the kubelet
        # registers as `name` (--hostname-override), so both come from this one field.
        return f"{NODE_CN_PREFIX}{self.name}"

    @property
    def san_dns_names(self) -> tuple[str, ...]:
        names = [self.name]
        if self.address != self.name and not _is_ip(self.address) and self.address != "localhost":
            names.append(self.address)
        return tuple(names)

    def san_ip_addresses(self, primary_address: str = "") -> tuple[str, ...]:
        """The certificate's IP SANs: the address the kubelet registers (`nodeIP`, else the one
        preflight found: `primary_address`), then `ips`, each once."""
        first = self.node_ip or primary_address
        return tuple(dict.fromkeys([first, *self.ips] if first else self.ips))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class RolloutSettings(_Model):
    # How many nodes' kubelets a change reaches at once: node i's writing steps wait for node
    # i - maxParallel's configure-and-start (its health check). None: every node at once.
    max_parallel: Annotated[int, Field(ge=1)] | None = Field(None, alias="maxParallel")

    _ints = field_validator("max_parallel", mode="before")(_strict_int)


class Settings(_Model):
    kubernetes: KubernetesSettings
    ssh: SshSettings
    kubelet: KubeletSettings
    reservations: Reservations
    pki: PkiSettings
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    nodes: tuple[NodeSettings, ...]
    ssh_private_key_from_secret: bool = False

    def node(self, name: str) -> NodeSettings:
        return next(node for node in self.nodes if node.name == name)
