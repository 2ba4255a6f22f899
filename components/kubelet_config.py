"""Render /var/lib/kubelet/kubelet-config.yaml and the kubelet's command-line flags.

Each setting goes where the kubelet reads it: fields of KubeletConfiguration v1beta1 into the
file, everything else (hostname override, runtime cgroups, node IP, node labels) as flags. The runbook
put `runtimeCgroups` into the file, which the real kubelet rejects in strict decoding and then
ignores, so here it is the `--runtime-cgroups` flag.

`nodes[].podCIDR` is not rendered: a v1.30 kubelet only hands its `podCIDR` to the container
runtime once at start (CRI UpdateRuntimeConfig; pkg/kubelet/kubelet.go, kubelet_network.go),
and a registered node's spec.podCIDRs from the control plane replaces it. containerd acts on it
only with a CNI `conf_template`, which this program does not configure; pod networking takes the
node's range from nodes[].podCIDR itself.
"""

from __future__ import annotations

from typing import Any

from components import paths
from components.quantities import quantity_text
from components.settings import NodeSettings, Settings
from components.yaml_text import dump_yaml

API_VERSION = "kubelet.config.k8s.io/v1beta1"


def kubelet_cgroup(node: NodeSettings) -> str:
    return f"{node.reservations.kube_reserved_cgroup}/kubelet.service"


def runtime_cgroup(node: NodeSettings) -> str:
    return f"{node.reservations.kube_reserved_cgroup}/containerd.service"


def _authentication(settings: Settings) -> dict[str, Any]:
    secure = settings.kubelet.auth_mode == "secure"
    return {
        "anonymous": {"enabled": not secure},
        "webhook": {"enabled": secure, "cacheTTL": "2m"},
        "x509": {"clientCAFile": paths.CA_CERT},
    }


def _authorization(settings: Settings) -> dict[str, Any]:
    if settings.kubelet.auth_mode == "secure":
        return {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "5m", "cacheUnauthorizedTTL": "30s"},
        }
    return {"mode": "AlwaysAllow"}


def kubelet_configuration(settings: Settings, node: NodeSettings) -> dict[str, Any]:
    """The KubeletConfiguration object for one node, as plain data."""
    reservations = node.reservations
    config: dict[str, Any] = {
        "kind": "KubeletConfiguration",
        "apiVersion": API_VERSION,
        "staticPodPath": settings.kubelet.static_pod_path,
        "authentication": _authentication(settings),
        "authorization": _authorization(settings),
        # The read-only port serves pod and node data without any authentication.
        "readOnlyPort": 0 if settings.kubelet.auth_mode == "secure" else 10255,
        "clusterDomain": settings.kubernetes.cluster_domain,
        "clusterDNS": list(settings.kubernetes.cluster_dns),
        "resolvConf": node.resolv_conf,
        "runtimeRequestTimeout": settings.kubelet.runtime_request_timeout,
        "tlsCertFile": paths.node_cert(node.name),
        "tlsPrivateKeyFile": paths.node_key(node.name),
        "containerRuntimeEndpoint": settings.kubernetes.container_runtime_endpoint,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": settings.kubelet.healthz_port,
        "registerNode": True,
        "failSwapOn": settings.kubelet.fail_swap_on,
        "enforceNodeAllocatable": list(reservations.enforce_node_allocatable),
        "cgroupsPerQOS": True,
        "cgroupDriver": "systemd",
        "cgroupRoot": "/",
        "systemReservedCgroup": reservations.system_reserved_cgroup,
        "kubeletCgroups": kubelet_cgroup(node),
        "kubeReservedCgroup": reservations.kube_reserved_cgroup,
    }
    if settings.kubelet.system_cgroups:
        # Only as an explicit choice (see KubeletSettings.system_cgroups).
        config["systemCgroups"] = settings.kubelet.system_cgroups
    system_reserved = reservations.system_reserved.as_kubelet_map()
    kube_reserved = reservations.kube_reserved.as_kubelet_map()
    if system_reserved:
        config["systemReserved"] = system_reserved
    if kube_reserved:
        config["kubeReserved"] = kube_reserved
    config["evictionHard"] = reservations.eviction_thresholds
    if node.taints:
        config["registerWithTaints"] = [
            {"key": taint.key, "value": taint.value, "effect": taint.effect} if taint.value
            else {"key": taint.key, "effect": taint.effect}
            for taint in node.taints
        ]
    config.update(_optional_fields(settings, node))
    # Any other field, checked against the release's field list (components/settings/kubelet_fields.py).
    config.update(settings.kubelet.config)
    return config


def _optional_fields(settings: Settings, node: NodeSettings) -> dict[str, Any]:
    """The typed settings that are rendered only when the stack sets them (else the kubelet's
    own defaults apply)."""
    kubelet = settings.kubelet
    fields: dict[str, Any] = {
        "maxPods": node.max_pods,
        "serializeImagePulls": kubelet.serialize_image_pulls,
        "imageGCHighThresholdPercent": kubelet.image_gc_high_threshold_percent,
        "imageGCLowThresholdPercent": kubelet.image_gc_low_threshold_percent,
        "imageMinimumGCAge": kubelet.image_minimum_gc_age,
        "containerLogMaxSize": kubelet.container_log_max_size,
        "containerLogMaxFiles": kubelet.container_log_max_files,
        "shutdownGracePeriod": kubelet.shutdown_grace_period,
        "shutdownGracePeriodCriticalPods": kubelet.shutdown_grace_period_critical_pods,
        "memorySwap": None if kubelet.memory_swap is None else {"swapBehavior": kubelet.memory_swap.swap_behavior},
        "cpuManagerPolicy": kubelet.cpu_manager_policy,
        "memoryManagerPolicy": kubelet.memory_manager_policy,
        "reservedMemory": _reserved_memory(settings, node),
        "featureGates": dict(kubelet.feature_gates) or None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _reserved_memory(settings: Settings, node: NodeSettings) -> list[dict[str, Any]] | None:
    """reservedMemory for the Static memory manager: the stack's entries, or all of the memory
    kept from pods on NUMA node 0 (a node with one NUMA node, as a homelab's are)."""
    if settings.kubelet.memory_manager_policy != "Static":
        return None
    reservations = node.reservations
    if reservations.reserved_memory is not None:
        return [{"numaNode": entry.numa_node, "limits": dict(entry.limits)} for entry in reservations.reserved_memory]
    kept = reservations.memory_kept_from_pods()
    assert kept is not None  # the settings refuse a percentage threshold with Static
    return [{"numaNode": 0, "limits": {"memory": quantity_text(kept)}}]


HEADER = (
    "# Rendered by homelab-kubelet for node {name}; changes here are overwritten by `pulumi up`.\n"
    "# Reference: https://kubernetes.io/docs/reference/config-api/kubelet-config.v1beta1/\n"
)


def render_kubelet_config(settings: Settings, node: NodeSettings) -> str:
    body = dump_yaml(kubelet_configuration(settings, node))
    return HEADER.format(name=node.name) + body


CRICTL_HEADER = "# Rendered by homelab-kubelet: crictl talks to the kubelet's container runtime.\n"
# Seconds crictl waits for the runtime (its own default is 2, short for a small node under load).
CRICTL_TIMEOUT = 10


def render_crictl_config(settings: Settings) -> str:
    """/etc/crictl.yaml: the runtime (and image) endpoint the kubelet uses."""
    endpoint = settings.kubernetes.container_runtime_endpoint
    image_endpoint = settings.kubelet.config.get("imageServiceEndpoint") or endpoint
    body = dump_yaml({"runtime-endpoint": endpoint, "image-endpoint": image_endpoint, "timeout": CRICTL_TIMEOUT})
    return CRICTL_HEADER + body


def kubelet_flags(settings: Settings, node: NodeSettings) -> list[str]:
    """Command-line flags for settings that are not (or not reliably) KubeletConfiguration fields."""
    flags = [
        f"--config={paths.KUBELET_CONFIG}",
        f"--kubeconfig={paths.KUBECONFIG}",
        # The registered node name and the certificate CN come from the same setting.
        f"--hostname-override={node.name}",
        f"--runtime-cgroups={runtime_cgroup(node)}",
    ]
    if node.node_ip:
        # Set only when configured: otherwise the kubelet picks its address itself, by the rule
        # preflight follows to put that address in the certificate (node_steps/node-address.sh).
        flags.append(f"--node-ip={node.node_ip}")
    if node.labels:
        labels = ",".join(f"{key}={value}" for key, value in sorted(node.labels.items()))
        flags.append(f"--node-labels={labels}")
    flags.append(f"--v={settings.kubelet.log_verbosity}")
    flags.extend(f"--{name}={value}" for name, value in sorted(node.extra_args.items()))
    return flags
