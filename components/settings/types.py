"""Field types and validators of the stack config: each checks one value and says what is wrong.

Nothing here knows the config's structure (that is `models.py`) or how problems are reported
(`parse.py`); the models use these through pydantic's `AfterValidator` and `field_validator`.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from components.quantities import QUANTITY_PATTERN

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


# What the kubelet refuses as its node IP, in its own words (pkg/kubelet/kubelet_node_status.go,
# validateNodeIP); it also wants the address on one of the node's interfaces (preflight checks that).
_NODE_IP_REFUSALS = (
    ("is_loopback", "nodeIP can't be loopback address"),
    ("is_multicast", "nodeIP can't be a multicast address"),
    ("is_link_local", "nodeIP can't be a link-local unicast address"),
    ("is_unspecified", "nodeIP can't be an all zeros address"),
)


def _node_ip(value: str) -> str:
    address = ipaddress.ip_address(_ip(value))
    for attribute, refusal in _NODE_IP_REFUSALS:
        if getattr(address, attribute):
            raise ValueError(f"{value!r} cannot be the node's IP: the kubelet refuses it ({refusal!r})")
    return str(address)


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
NodeIp = Annotated[str, AfterValidator(_node_ip)]
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
