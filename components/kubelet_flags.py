"""The kubelet's command-line flags that stack config may not set through `nodes[].extraArgs`.

A kubelet flag overrides the KubeletConfiguration file, so a flag for a field the program renders
would silently replace a typed, validated setting (`--authorization-mode=AlwaysAllow` past
`authMode: secure`). Flag names are those of the real kubelet v1.30.1
(`cmd/kubelet/app/options/options.go`, `AddKubeletConfigFlags` and `KubeletFlags.AddFlags`).
tests/test_renderers.py checks that every field `kubelet_configuration` renders, and every flag
`kubelet_flags` writes, is listed here.
"""

from __future__ import annotations

# Every KubeletConfiguration field the program renders (dotted path) -> the flag that overrides it.
CONFIG_FIELD_FLAGS: dict[str, str] = {
    "staticPodPath": "pod-manifest-path",
    "authentication.anonymous.enabled": "anonymous-auth",
    "authentication.webhook.enabled": "authentication-token-webhook",
    "authentication.webhook.cacheTTL": "authentication-token-webhook-cache-ttl",
    "authentication.x509.clientCAFile": "client-ca-file",
    "authorization.mode": "authorization-mode",
    "authorization.webhook.cacheAuthorizedTTL": "authorization-webhook-cache-authorized-ttl",
    "authorization.webhook.cacheUnauthorizedTTL": "authorization-webhook-cache-unauthorized-ttl",
    "readOnlyPort": "read-only-port",
    "clusterDomain": "cluster-domain",
    "clusterDNS": "cluster-dns",
    "resolvConf": "resolv-conf",
    "podCIDR": "pod-cidr",
    "runtimeRequestTimeout": "runtime-request-timeout",
    "tlsCertFile": "tls-cert-file",
    "tlsPrivateKeyFile": "tls-private-key-file",
    "containerRuntimeEndpoint": "container-runtime-endpoint",
    "healthzBindAddress": "healthz-bind-address",
    "healthzPort": "healthz-port",
    "registerNode": "register-node",
    "failSwapOn": "fail-swap-on",
    "enforceNodeAllocatable": "enforce-node-allocatable",
    "cgroupsPerQOS": "cgroups-per-qos",
    "cgroupDriver": "cgroup-driver",
    "cgroupRoot": "cgroup-root",
    "systemCgroups": "system-cgroups",
    "systemReservedCgroup": "system-reserved-cgroup",
    "kubeletCgroups": "kubelet-cgroups",
    "kubeReservedCgroup": "kube-reserved-cgroup",
    "systemReserved": "system-reserved",
    "kubeReserved": "kube-reserved",
    "evictionHard": "eviction-hard",
    "registerWithTaints": "register-with-taints",
}

# Flags `kubelet_flags` writes itself (KubeletFlags, not configuration fields; v1.30 has no
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

OWNED_FLAGS = COMMAND_LINE_FLAGS | frozenset(CONFIG_FIELD_FLAGS.values())
_SETTING_OF_FLAG = {flag: field for field, flag in CONFIG_FIELD_FLAGS.items()}


def refusal(flag: str) -> str | None:
    """Why `flag` may not be set through extraArgs, or None when it may."""
    if flag in FLAG_SETTINGS:
        return f"the program sets it on the command line from {FLAG_SETTINGS[flag]}"
    if flag in COMMAND_LINE_FLAGS:
        return "the program sets it on the command line"
    if flag in _SETTING_OF_FLAG:
        return (
            f"it would override the KubeletConfiguration field {_SETTING_OF_FLAG[flag]} that the "
            "program renders from a typed setting"
        )
    if flag in SECURITY_FLAGS or flag.startswith(SECURITY_FLAG_PREFIXES):
        return "it weakens the kubelet's authentication or authorization, or replaces its credentials"
    return None
