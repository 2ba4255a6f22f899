"""What stack config may not set through `kubelet.config` or `nodes[].extraArgs`, and why.

The program renders some KubeletConfiguration fields from typed, validated settings and sets
others itself; `kubelet.config` may set any other field of the configured release's v1beta1
type. A kubelet flag overrides the configuration file, so `extraArgs` may hold no flag the
program writes, none that weakens authentication or replaces the credentials, and no flag the
kubelet deprecates: every KubeletConfiguration flag but `v`, `vmodule`, `log-flush-frequency` and
`provider-id` (the table of flags comes from the kubelet's sources: components/kubelet_api.py).
tests/test_renderers.py checks that every field `kubelet_configuration` renders is listed here.
"""

from __future__ import annotations

import difflib

from components.kubelet_api import KubeletApi

# KubeletConfiguration fields (top level) the program renders from a typed setting -> that setting.
TYPED_FIELDS: dict[str, str] = {
    "staticPodPath": "kubelet.staticPodPath",
    "authentication": "kubelet.authMode",
    "authorization": "kubelet.authMode",
    "readOnlyPort": "kubelet.authMode",
    "clusterDomain": "kubernetes.clusterDomain",
    "clusterDNS": "kubernetes.clusterDNS",
    "resolvConf": "kubelet.resolvConf or nodes[].resolvConf",
    "runtimeRequestTimeout": "kubelet.runtimeRequestTimeout",
    "containerRuntimeEndpoint": "kubernetes.containerRuntimeEndpoint",
    "healthzPort": "kubelet.healthzPort",
    "failSwapOn": "kubelet.failSwapOn",
    "memorySwap": "kubelet.memorySwap",
    "systemCgroups": "kubelet.systemCgroups",
    "shutdownGracePeriod": "kubelet.shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods": "kubelet.shutdownGracePeriodCriticalPods",
    "imageGCHighThresholdPercent": "kubelet.imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent": "kubelet.imageGCLowThresholdPercent",
    "imageMinimumGCAge": "kubelet.imageMinimumGCAge",
    "containerLogMaxSize": "kubelet.containerLogMaxSize",
    "containerLogMaxFiles": "kubelet.containerLogMaxFiles",
    "maxPods": "kubelet.maxPods or nodes[].maxPods",
    "featureGates": "kubelet.featureGates",
    "serializeImagePulls": "kubelet.serializeImagePulls",
    "cpuManagerPolicy": "kubelet.cpuManagerPolicy",
    "memoryManagerPolicy": "kubelet.memoryManagerPolicy",
    "enforceNodeAllocatable": "reservations.enforceNodeAllocatable",
    "systemReserved": "reservations.systemReserved",
    "kubeReserved": "reservations.kubeReserved",
    "evictionHard": "reservations.evictionHard",
    "systemReservedCgroup": "reservations.systemReservedCgroup",
    "kubeReservedCgroup": "reservations.kubeReservedCgroup",
    "reservedMemory": "reservations.reservedMemory",
    "registerWithTaints": "nodes[].taints",
}

# Fields the program sets itself, or that would undo what it sets up -> why they are refused.
PROGRAM_FIELDS: dict[str, str] = {
    "tlsCertFile": "the program sets it to the node certificate the credentials step writes",
    "tlsPrivateKeyFile": "the program sets it to the node key the credentials step writes",
    "rotateCertificates": "it replaces the client certificate the program issues and writes",
    "serverTLSBootstrap": "it replaces the serving certificate the program issues and writes",
    "healthzBindAddress": "the program's health check reads /healthz on 127.0.0.1 (kubelet.healthzPort)",
    "registerNode": "the program runs the kubelet as a registered node",
    "cgroupsPerQOS": "the reservations and their cgroups need it (the program sets true)",
    "cgroupDriver": "the program sets systemd and configures containerd's runc to match",
    "cgroupRoot": "the program sets / (the slices of the reservations live there)",
    "kubeletCgroups": "the program runs the kubelet in the kubeReservedCgroup slice",
    "reservedSystemCPUs": (
        "the kubelet refuses it together with kubeReservedCgroup and systemReservedCgroup, which the "
        "program always sets; reserve CPU with reservations.systemReserved and kubeReserved"
    ),
    "runOnce": "the kubelet would run its static pods once and exit; the program runs it as a service",
    "podCIDR": (
        "the kubelet uses it only in standalone mode, so kubelet-config.yaml does not carry it; a node's pod "
        "range is nodes[].podCIDR"
    ),
}

# Flags `kubelet_flags` writes itself (KubeletFlags, and `v` for kubelet.logVerbosity; v1.30 has no
# KubeletConfiguration field for the node IP either).
COMMAND_LINE_FLAGS = frozenset(
    {"config", "kubeconfig", "hostname-override", "runtime-cgroups", "node-labels", "node-ip", "v"}
)
# Command-line flags with a typed setting of their own: extraArgs names it instead.
FLAG_SETTINGS = {"node-ip": "nodes[].nodeIP (the node certificate then carries that address too)"}

# Flags that weaken authentication or authorization, or replace the credentials and configuration
# the program writes, even where the program renders no field for them.
SECURITY_FLAGS = frozenset(
    {
        "bootstrap-kubeconfig",  # another credential than the one written by the credentials step
        "cert-dir",
        "rotate-certificates",
        "rotate-server-certificates",
        "config-dir",  # drop-in KubeletConfiguration files override the rendered one
    }
)
SECURITY_FLAG_PREFIXES = ("tls-", "anonymous-", "authentication-", "authorization-", "client-ca-")

# Fields nested in `kubelet.config` values that a typed setting owns -> that setting.
NESTED_TYPED_FIELDS = {"logging.verbosity": "kubelet.logVerbosity (the program passes it as --v)"}


def field_refusal(field: str) -> str | None:
    """Why `kubelet.config` may not set the top-level KubeletConfiguration field `field`, or None."""
    if field in ("apiVersion", "kind"):
        return "the program writes it"
    if field in TYPED_FIELDS:
        return f"the program renders it from a typed setting: use {TYPED_FIELDS[field]}"
    if field in PROGRAM_FIELDS:
        return PROGRAM_FIELDS[field]
    return None


def own_flag_refusal(flag: str) -> str | None:
    """Why extraArgs may hold `flag` in no kubelet release: the program writes it, or it weakens
    authentication or replaces the credentials."""
    if flag in FLAG_SETTINGS:
        return f"the program sets it on the command line from {FLAG_SETTINGS[flag]}"
    if flag in COMMAND_LINE_FLAGS:
        return "the program sets it on the command line"
    if flag in SECURITY_FLAGS or flag.startswith(SECURITY_FLAG_PREFIXES):
        return "it weakens the kubelet's authentication or authorization, or replaces its credentials"
    return None


def flag_refusal(flag: str, api: KubeletApi) -> str | None:
    """Why `flag` may not be set through extraArgs with kubelet `api`, or None when it may."""
    own = own_flag_refusal(flag)
    if own is not None:
        return own
    field = api.deprecated_config_flag(flag)
    if field is not None:
        top = field.split(".", 1)[0]
        owned = field_refusal(top)
        where = f"set by {TYPED_FIELDS[top]}" if top in TYPED_FIELDS else (
            f"not settable: {owned}" if owned else f"set it as kubelet.config.{field}"
        )
        return f"kubelet {api.minor} deprecates it for the KubeletConfiguration field {field}; {where}"
    if flag in api.deprecated_flags:
        return f"kubelet {api.minor} deprecates it ({api.deprecated_flags[flag]})"
    return None


def closest(name: str, known: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """`; did you mean X?` for the closest known name, or ``."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
