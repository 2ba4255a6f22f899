"""The kubelet failure catalogue, matched against real log lines.

RUNBOOK_* lines are copied verbatim from the runbook's エラー事例 section (klog prefixes
included). JOURNAL_* lines are kubelet 1.30 journald lines as `journalctl -u kubelet` prints
them: the messages were checked against the upstream source and published reports, the
timestamps, pids and source line numbers are illustrative.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from components.hints import catalogue_hints, reported_entries
from components.troubleshooting import (
    DEFAULT_CATALOGUE_PATH,
    Catalogue,
    CatalogueError,
    Severity,
    default_catalogue,
    load_catalogue,
    match_log,
    render_markdown,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "Nov 25 18:00:01 k8s-node1 kubelet[812]: "

# --- Lines from the runbook, verbatim. ---
RUNBOOK_KUBE_RESERVED_MISSING = (
    "kubelet.go:1347] Failed to start ContainerManager Failed to enforce Kube Reserved Cgroup "
    'Limits on "/kube.slice": ["kube"] cgroup does not exist'
)
RUNBOOK_MISSING_PATHS = (
    "cgroup_manager_linux.go:294] The Cgroup [kube] has some missing paths: "
    "[/sys/fs/cgroup/pids/kube.slice /sys/fs/cgroup/memory/kube.slice]"
)
RUNBOOK_MEMORY_BUSY = (
    "kubelet.go:1347] Failed to start ContainerManager Failed to enforce System Reserved Cgroup "
    'Limits on "/system.slice": failed to set supported cgroup subsystems for cgroup [system]: '
    'failed to set config for supported subsystems : failed to write "104857600" to '
    '"/sys/fs/cgroup/memory/system.slice/memory.limit_in_bytes": write '
    "/sys/fs/cgroup/memory/system.slice/memory.limit_in_bytes: device or resource busy"
)
RUNBOOK_NOT_ALLOWED = (
    '360163 kubelet_node_status.go:93] Unable to register node "k8s-master" with API server: '
    'nodes "k8s-master" is forbidden: node "k8s-node1" is not allowed to modify node '
    '"k8s-master"'
)
RUNBOOK_CONTROLLER_MANAGER = """\
actual_state_of_world.go:506] Failed to update statusUpdateNeeded field in actual state of world: Failed to set statusUpdateNeeded to needed true, because nodeName="k8s-node1" does not exist
range_allocator.go:373] Set node k8s-node1 PodCIDR to [10.200.0.0/24]
ttl_controller.go:276] "Changed ttl annotation" node="k8s-node1" new_ttl="0s"
controller.go:708] Detected change in list of current cluster nodes. New node set: map[k8s-node1:{}]
controller.go:716] Successfully updated 0 out of 0 load balancers to direct traffic to the updated set of nodes
node_lifecycle_controller.go:773] Controller observed a new Node: "k8s-node1"
controller_utils.go:172] Recording Registered Node k8s-node1 in Controller event message for node k8s-node1
node_lifecycle_controller.go:1429] Initializing eviction metric for zone:
node_lifecycle_controller.go:1044] Missing timestamp for Node k8s-node1. Assuming now as a timestamp.
event.go:291] "Event occurred" object="k8s-node1" kind="Node" apiVersion="v1" type="Normal" reason="RegisteredNode" message="Node k8s-node1 event: Registered Node k8s-node1 in Controller"
node_lifecycle_controller.go:1245] Controller detected that zone  is now in state Normal.
"""
RUNBOOK_WEBHOOK = """\
I0214 07:03:56.822586       1 dynamic_cafile_content.go:129] Loaded a new CA Bundle and Verifier for "client-ca-bundle::/var/lib/kubernetes/ca.pem"
F0214 07:03:56.822637       1 server.go:269] failed to run Kubelet: no client provided, cannot use webhook authentication
goroutine 1 [running]:
"""
RUNBOOK_CNI_DOCKER = """\
kubelet.go:2163] Container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:docker: network plugin is not ready: cni config uninitialized
cni.go:239] Unable to update cni config: no networks found in /etc/cni/net.d
kubelet.go:2163] Container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:docker: network plugin is not ready: cni config uninitialized
"""
RUNBOOK_CNI_NO_NETWORKS = (
    "cni.go:239] Unable to update cni config: no networks found in /etc/cni/net.d"
)
RUNBOOK_CNI_PLUGIN = (
    '"Container runtime network not ready" networkReady="NetworkReady=false '
    'reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"'
)
RUNBOOK_CNI_CONFIG = (
    '"Container runtime network not ready" networkReady="NetworkReady=false '
    'reason:NetworkPluginNotReady message:Network plugin returns error: cni config uninitialized"'
)
RUNBOOK_CPU_BLOCK = """\
sysinfo.go:203] Nodes topology is not available, providing CPU topology
sysfs.go:348] unable to read /sys/devices/system/cpu/cpu0/online: open /sys/devices/system/cpu/cpu0/online: no such file or directory
sysfs.go:348] unable to read /sys/devices/system/cpu/cpu1/online: open /sys/devices/system/cpu/cpu1/online: no such file or directory
sysfs.go:348] unable to read /sys/devices/system/cpu/cpu2/online: open /sys/devices/system/cpu/cpu2/online: no such file or directory
sysfs.go:348] unable to read /sys/devices/system/cpu/cpu3/online: open /sys/devices/system/cpu/cpu3/online: no such file or directory
gce.go:44] Error while reading product_name: open /sys/class/dmi/id/product_name: no such file or directory
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu0 online state, skipping
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu1 online state, skipping
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu2 online state, skipping
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu3 online state, skipping
machine.go:72] Cannot read number of physical cores correctly, number of cores set to 0
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu0 online state, skipping
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu1 online state, skipping
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu2 online state, skipping
machine.go:253] Cannot determine CPU /sys/bus/cpu/devices/cpu3 online state, skipping
machine.go:86] Cannot read number of sockets correctly, number of sockets set to 0
container_manager_linux.go:490] [ContainerManager]: Discovered runtime cgroups name:
"""

# --- kubelet 1.30 lines as journald shows them (structured logging escapes inner quotes). ---
JOURNAL_KUBE_RESERVED_MISSING = (
    PREFIX
    + r'E1125 18:00:01.512207     812 kubelet.go:1620] "Failed to start ContainerManager" '
    r'err="Failed to enforce Kube Reserved Cgroup Limits on \"/kube.slice\": [\"kube\"] cgroup '
    r'does not exist"'
)
JOURNAL_SYSTEM_RESERVED_MISSING = (
    PREFIX
    + r'E1125 18:00:01.512207     812 kubelet.go:1620] "Failed to start ContainerManager" '
    r'err="Failed to enforce System Reserved Cgroup Limits on \"/system.slice\": [\"system\"] '
    r'cgroup does not exist"'
)
JOURNAL_RUNTIME_SOCKET = (
    PREFIX
    + r'E1125 18:00:01.230913     812 run.go:74] "command failed" err="failed to run '
    r"Kubelet: validate service connection: validate CRI v1 runtime API for endpoint "
    r"\"unix:///run/containerd/containerd.sock\": rpc error: code = Unavailable desc = "
    r"connection error: desc = \"transport: Error while dialing: dial unix "
    r'/run/containerd/containerd.sock: connect: no such file or directory\""'
)
JOURNAL_CRI_DISABLED = (
    PREFIX
    + r'E1125 18:00:01.230913     812 run.go:74] "command failed" err="failed to run '
    r"Kubelet: validate service connection: validate CRI v1 runtime API for endpoint "
    r"\"unix:///run/containerd/containerd.sock\": rpc error: code = Unimplemented desc = "
    r'unknown service runtime.v1.RuntimeService"'
)
JOURNAL_KUBECONFIG_MISSING = (
    PREFIX
    + r'E1125 18:00:01.198211     812 run.go:74] "command failed" err="failed to run '
    r'Kubelet: invalid kubeconfig: stat /var/lib/kubelet/kubeconfig: no such file or directory"'
)
JOURNAL_WEBHOOK = (
    PREFIX
    + r'E1125 18:00:01.301554     812 run.go:74] "command failed" err="failed to run '
    r'Kubelet: no client provided, cannot use webhook authentication"'
)
JOURNAL_NOT_ALLOWED = (
    PREFIX
    + r'E1125 18:00:04.118730     812 kubelet_node_status.go:96] "Unable to register node '
    r'with API server" err="nodes \"k8s-master\" is forbidden: node \"k8s-node1\" is not allowed '
    r'to modify node \"k8s-master\"" node="k8s-master"'
)
JOURNAL_UNKNOWN_FIELD = (
    PREFIX
    + r'I1125 18:00:00.981337     812 codec.go:101] "Using lenient decoding as strict '
    r'decoding failed" err="strict decoding error: unknown field \"runtimeCgroups\""'
)
JOURNAL_SWAP = (
    PREFIX
    + r'E1125 18:00:01.402991     812 run.go:74] "command failed" err="failed to run '
    r"Kubelet: running with swap on is not supported, please disable swap! or set "
    r"--fail-swap-on flag to false. /proc/swaps contained: [Filename\t\t\t\tType\t\tSize\t\t"
    r'Used\t\tPriority /swap.img                               file\t\t2097148\t\t0\t\t-2]"'
)
# dockershim (kubelet <= 1.23) still printed this one in the old klog format.
JOURNAL_DOCKER_CGROUP_DRIVER = (
    PREFIX + "F1125 18:00:01.402991     812 server.go:274] failed to run Kubelet: "
    'misconfiguration: kubelet cgroup driver: "systemd" is different from docker cgroup driver: '
    '"cgroupfs"'
)
JOURNAL_RUNC_CGROUP_DRIVER = (
    PREFIX
    + r'E1125 18:02:10.771250     812 log.go:32] "RunPodSandbox from runtime service '
    r'failed" err="rpc error: code = Unknown desc = failed to create containerd task: failed to '
    r"create shim task: OCI runtime create failed: runc create failed: expected cgroupsPath to "
    r"be of format \"slice:prefix:name\" for systemd cgroups, got "
    r"\"/kubepods/besteffort/pod6f4d0c9e-7d57-4f43-9a0b-1d2c3e4f5a6b/4be1f0c3a2\" instead: "
    r'unknown"'
)
JOURNAL_RESOLV_CONF = (
    PREFIX
    + r'E1125 18:02:11.020311     812 dns.go:293] "Could not open resolv conf file." '
    r'err="open /run/systemd/resolve/resolv.conf: no such file or directory"'
)
JOURNAL_CNI_NOT_READY = (
    PREFIX
    + r'E1125 18:00:06.104211     812 kubelet.go:2900] "Container runtime network not ready" '
    r'networkReady="NetworkReady=false reason:NetworkPluginNotReady message:Network plugin '
    r'returns error: cni plugin not initialized"'
)
JOURNAL_SKIPPING_POD_SYNC = (
    PREFIX
    + r'E1125 18:00:02.100917     812 kubelet.go:2337] "Skipping pod synchronization" '
    r'err="[container runtime status check may not have completed yet, PLEG is not healthy: '
    r'pleg has yet to be successful]"'
)
# kubelet v1.30.1's own messages (file:line from its source), with the errors its dependencies
# wrap: k8s.io/utils inotify (cAdvisor), fsnotify, the image GC manager, the shutdown manager.
JOURNAL_INOTIFY_CADVISOR = (
    PREFIX
    + r'E1125 18:00:03.301122     812 kubelet.go:1530] "Failed to start cAdvisor" err="inotify_init: too many open files"'
)
JOURNAL_INOTIFY_STATIC_PODS = (
    PREFIX
    + r'E1125 18:00:01.512207     812 file_linux.go:61] "Unable to read config path" err="unable to create inotify: '
    r'too many open files" path="/etc/kubelet.d"'
)
# What `kubectl logs -f` prints when the kubelet cannot watch the log file.
KUBECTL_LOGS_FSNOTIFY = "error: failed to create fsnotify watcher: too many open files"
JOURNAL_IMAGE_GC = (
    PREFIX
    + r'E1125 18:10:01.000000     812 kubelet.go:1463] "Image garbage collection failed multiple times in a row" '
    r'err="Failed to garbage collect required amount of images. Attempted to free 2147483648 bytes, but only found 0 '
    r'bytes eligible to free."'
)
JOURNAL_IMAGE_GC_DELETE = (
    PREFIX
    + r'E1125 18:15:01.000000     812 kubelet.go:1463] "Image garbage collection failed multiple times in a row" '
    r'err="wanted to free 2147483648 bytes, but freed 0 bytes space with errors in image deletion: rpc error: code = '
    r'DeadlineExceeded desc = context deadline exceeded"'
)
JOURNAL_IMAGE_GC_ONCE = (
    PREFIX
    + r'E1125 18:00:05.000000     812 kubelet.go:1467] "Image garbage collection failed once. Stats initialization '
    r'may not have completed yet" err="invalid capacity 0 on image filesystem"'
)
JOURNAL_LOGIND_DELAY = (
    PREFIX
    + r'E1125 18:00:02.900000     812 kubelet.go:1572] "Failed to start node shutdown manager" err="node shutdown '
    r"manager was unable to update logind InhibitDelayMaxSec to 1m0s (ShutdownGracePeriod), current value of "
    r'InhibitDelayMaxSec (30s) is less than requested ShutdownGracePeriod"'
)
# systemd-logind's journal at a shutdown (logind-dbus.c), not the kubelet's.
LOGIND_DELAY_EXPIRED = (
    "Nov 25 19:00:30 k8s-node1 systemd-logind[401]: Delay lock is active (UID 0/root, PID 812/kubelet) but "
    "inhibitor timeout is reached."
)
JOURNAL_CPU_CHECKPOINT = (
    PREFIX
    + r'E1125 18:00:02.100000     812 cpu_manager.go:224] "Could not initialize checkpoint manager, please drain node '
    r'and remove policy state file" err="could not restore state from checkpoint: configured policy \"static\" differs '
    r"from state checkpoint policy \"none\", please drain this node and delete the CPU manager checkpoint file "
    r'\"/var/lib/kubelet/cpu_manager_state\" before restarting Kubelet"'
)
JOURNAL_SYSTEM_CGROUP_STATS = (
    PREFIX
    + r'E1125 18:03:10.100000     812 summary_sys_containers.go:48] "Failed to get system container stats" '
    r'err="failed to get cgroup stats for \"/systemd/system.slice\": failed to get container info for '
    r'\"/systemd/system.slice\": unknown container \"/systemd/system.slice\"" containerName="/systemd/system.slice"'
)
# From the flannel pod's log (kubectl logs), not the kubelet's journal.
FLANNEL_NO_POD_CIDR = (
    "E1125 18:05:12.345678       1 main.go:335] Error registering network: failed to acquire "
    'lease: node "k8s-node1" pod cidr not assigned'
)

# Certificates. Messages from Go's crypto/x509 and crypto/tls (go1.22: verify.go HostnameError and
# CertificateInvalidError, common.go CertificateVerificationError), k8s.io/apiserver v0.30
# (filters/authentication.go, request/x509/x509.go) and kubelet v1.30 (kubelet_node_status.go).
# metrics-server's line as published in public reports (scraper.go "Failed to scrape node").
METRICS_SERVER_NO_IP_SANS = (
    r'E1214 23:20:32.460710       1 scraper.go:149] "Failed to scrape node" err="Get '
    r'\"https://192.168.1.11:10250/metrics/resource\": tls: failed to verify certificate: x509: cannot '
    "validate certificate for 192.168.1.11 because it doesn't contain any IP SANs\" node=\"k8s-node1\""
)
KUBECTL_LOGS_NO_IP_SANS = (
    'Error from server: Get "https://192.168.1.11:10250/containerLogs/kube-system/metrics-server-7d9f/metrics-server": '
    "tls: failed to verify certificate: x509: cannot validate certificate for 192.168.1.11 because it doesn't contain "
    "any IP SANs"
)
METRICS_SERVER_ADDRESS_MOVED = (
    r'E1214 23:20:32.460710       1 scraper.go:149] "Failed to scrape node" err="Get '
    r'\"https://192.168.1.57:10250/metrics/resource\": tls: failed to verify certificate: x509: certificate is '
    r'valid for 192.168.1.11, fd00::11, not 192.168.1.57" node="k8s-node1"'
)
APISERVER_CLIENT_CERT_EXPIRED = (
    r'E1126 18:00:04.118730       1 authentication.go:73] "Unable to authenticate the request" err="verifying '
    r"certificate SN=123456789012345678901234567890, SKID=, AKID=4F:2A:19:C3 failed: x509: certificate has expired "
    r'or is not yet valid: current time 2027-11-26T18:00:04Z is after 2027-11-25T12:00:00Z"'
)
JOURNAL_APISERVER_CERT_EXPIRED = (
    PREFIX
    + r'E1126 18:00:04.118730     812 kubelet_node_status.go:96] "Unable to register node with API server" '
    r'err="Post \"https://k8s-master:6443/api/v1/nodes\": tls: failed to verify certificate: x509: certificate has '
    r'expired or is not yet valid: current time 2027-11-26T18:00:04Z is after 2027-11-25T12:00:00Z" node="k8s-node1"'
)
JOURNAL_CLOCK_BEHIND = (
    PREFIX
    + r'E0101 00:00:12.402991     812 kubelet_node_status.go:96] "Unable to register node with API server" '
    r'err="Post \"https://k8s-master:6443/api/v1/nodes\": tls: failed to verify certificate: x509: certificate has '
    r'expired or is not yet valid: current time 1970-01-01T00:00:12Z is before 2026-11-25T12:00:00Z" node="k8s-node1"'
)
# The API server's own certificate lacking the name in kubernetes.apiServer: not the kubelet's SANs.
JOURNAL_APISERVER_NAME_MISMATCH = (
    PREFIX
    + r'E1125 18:00:04.118730     812 kubelet_node_status.go:96] "Unable to register node with API server" '
    r'err="Post \"https://192.168.1.10:6443/api/v1/nodes\": tls: failed to verify certificate: x509: certificate is '
    r'valid for 10.32.0.1, 127.0.0.1, not 192.168.1.10" node="k8s-node1"'
)
# The API server's answers to kubectl (v1.30.1), measured against the lab's control plane with the
# credentials of tests/test_control_plane_host.py, which asserts these exact texts.
MEASURED_UNKNOWN_AUTHORITY = (
    "Unable to connect to the server: tls: failed to verify certificate: x509: certificate signed by "
    "unknown authority"
)
MEASURED_UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"
MEASURED_NOT_FOUND = 'Error from server (NotFound): nodes "k8s-never" not found'
# The kubelet's side of the same (journal lines; message texts from the v1.30.1 source: client-go's
# errors, kubelet_node_status.go, pkg/kubelet/server/server.go).
JOURNAL_UNKNOWN_AUTHORITY = (
    PREFIX
    + r'E1125 18:00:04.118730     812 kubelet_node_status.go:96] "Unable to register node with API server" '
    r'err="Post \"https://10.0.2.2:6443/api/v1/nodes\": tls: failed to verify certificate: x509: certificate '
    r'signed by unknown authority" node="k8s-node1"'
)
JOURNAL_UNAUTHORIZED = (
    PREFIX
    + r'E1125 18:00:04.118730     812 kubelet_node_status.go:96] "Unable to register node with API server" '
    r'err="Unauthorized" node="k8s-node1"'
)
# What kubectl shows when the kubelet refuses the API server's kubelet-client user (the RBAC of
# README's "What the API server needs" missing); tests/e2e/test_lab_up.py asserts it in the lab.
KUBELET_FORBIDDEN = (
    "Error from server (Forbidden): Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, "
    "subresource=proxy)"
)
JOURNAL_KUBELET_FORBIDDEN = (
    PREFIX
    + r'I1125 18:03:00.100200     812 server.go:325] "Forbidden" user="kube-apiserver-kubelet-client" verb="get" '
    r'resource="nodes" subresource="proxy"'
)
JOURNAL_NODE_NOT_FOUND = (
    PREFIX
    + r'E1125 18:00:04.318730     812 kubelet_node_status.go:544] "Error updating node status, will retry" '
    r'err="error getting node \"k8s-node1\": node \"k8s-node1\" not found"'
)

HEALTHY_JOURNAL = f"""\
{PREFIX}I1125 18:00:01.100000     812 server.go:484] "Kubelet version" kubeletVersion="v1.30.1"
{PREFIX}I1125 18:00:01.101000     812 server.go:486] "Golang settings" GOGC="" GOMAXPROCS="" GOTRACEBACK=""
{PREFIX}I1125 18:00:01.200000     812 dynamic_cafile_content.go:157] "Starting controller" name="client-ca-bundle::/var/lib/kubernetes/ca.pem"
{PREFIX}I1125 18:00:02.000000     812 kubelet.go:2321] "Starting kubelet main sync loop"
{PREFIX}I1125 18:00:03.000000     812 kubelet_node_status.go:76] "Successfully registered node" node="k8s-node1"
"""

# (line, id of the one entry it must produce)
ENTRY_EXAMPLES = [
    (RUNBOOK_KUBE_RESERVED_MISSING, "reserved-cgroup-missing"),
    (JOURNAL_KUBE_RESERVED_MISSING, "reserved-cgroup-missing"),
    (JOURNAL_SYSTEM_RESERVED_MISSING, "reserved-cgroup-missing"),
    (RUNBOOK_MEMORY_BUSY, "reserved-memory-below-usage"),
    (RUNBOOK_NOT_ALLOWED, "node-name-differs-from-certificate"),
    (JOURNAL_NOT_ALLOWED, "node-name-differs-from-certificate"),
    (RUNBOOK_WEBHOOK, "webhook-auth-without-api-client"),
    (JOURNAL_WEBHOOK, "webhook-auth-without-api-client"),
    (FLANNEL_NO_POD_CIDR, "node-podcidr-not-assigned"),
    (RUNBOOK_CONTROLLER_MANAGER, "attach-detach-node-not-yet-known"),
    (RUNBOOK_CNI_DOCKER, "cni-not-initialized"),
    (RUNBOOK_CNI_NO_NETWORKS, "cni-not-initialized"),
    (RUNBOOK_CNI_PLUGIN, "cni-not-initialized"),
    (RUNBOOK_CNI_CONFIG, "cni-not-initialized"),
    (JOURNAL_CNI_NOT_READY, "cni-not-initialized"),
    (RUNBOOK_CPU_BLOCK, "cpu-topology-unreadable"),
    (JOURNAL_RUNTIME_SOCKET, "container-runtime-socket-unreachable"),
    (JOURNAL_CRI_DISABLED, "containerd-cri-plugin-disabled"),
    (JOURNAL_KUBECONFIG_MISSING, "kubeconfig-missing"),
    (JOURNAL_UNKNOWN_FIELD, "kubelet-config-unknown-field"),
    (JOURNAL_SWAP, "swap-enabled"),
    (JOURNAL_DOCKER_CGROUP_DRIVER, "cgroup-driver-mismatch"),
    (JOURNAL_RUNC_CGROUP_DRIVER, "cgroup-driver-mismatch"),
    (JOURNAL_RESOLV_CONF, "resolv-conf-missing"),
    ("\n".join([JOURNAL_SKIPPING_POD_SYNC] * 12), "reserved-memory-reclaim-stall"),
    (METRICS_SERVER_NO_IP_SANS, "kubelet-certificate-without-ip-sans"),
    (KUBECTL_LOGS_NO_IP_SANS, "kubelet-certificate-without-ip-sans"),
    (METRICS_SERVER_ADDRESS_MOVED, "kubelet-certificate-without-ip-sans"),
    (APISERVER_CLIENT_CERT_EXPIRED, "certificate-expired"),
    (JOURNAL_APISERVER_CERT_EXPIRED, "certificate-expired"),
    (JOURNAL_CLOCK_BEHIND, "node-clock-behind"),
    (JOURNAL_INOTIFY_CADVISOR, "inotify-instances-exhausted"),
    (JOURNAL_INOTIFY_STATIC_PODS, "inotify-instances-exhausted"),
    (KUBECTL_LOGS_FSNOTIFY, "inotify-instances-exhausted"),
    (JOURNAL_IMAGE_GC, "image-gc-failed"),
    (JOURNAL_IMAGE_GC_DELETE, "image-gc-failed"),
    (JOURNAL_IMAGE_GC_ONCE, "image-gc-failed-once"),
    (JOURNAL_LOGIND_DELAY, "logind-inhibit-delay-too-short"),
    (LOGIND_DELAY_EXPIRED, "logind-inhibit-delay-too-short"),
    (JOURNAL_CPU_CHECKPOINT, "resource-manager-checkpoint-mismatch"),
    (JOURNAL_SYSTEM_CGROUP_STATS, "system-container-stats-unknown"),
    (MEASURED_UNKNOWN_AUTHORITY, "api-server-certificate-unknown-authority"),
    (JOURNAL_UNKNOWN_AUTHORITY, "api-server-certificate-unknown-authority"),
    (MEASURED_UNAUTHORIZED, "api-server-rejects-node-certificate"),
    (JOURNAL_UNAUTHORIZED, "api-server-rejects-node-certificate"),
    (KUBELET_FORBIDDEN, "kubelet-api-forbidden"),
    (JOURNAL_KUBELET_FORBIDDEN, "kubelet-api-forbidden"),
    ("\n".join([MEASURED_NOT_FOUND] * 10), "node-not-registered"),
    ("\n".join([JOURNAL_NODE_NOT_FOUND] * 12), "node-not-registered"),
]


def ids(text: str) -> list[str]:
    return [match.entry.id for match in match_log(text)]


@pytest.mark.parametrize(("text", "expected_id"), ENTRY_EXAMPLES)
def test_real_line_matches_exactly_its_entry(text: str, expected_id: str) -> None:
    assert ids(text) == [expected_id]


def test_the_api_server_s_own_name_mismatch_is_not_the_kubelet_s_sans() -> None:
    assert ids(JOURNAL_APISERVER_NAME_MISMATCH) == []


def test_a_few_node_not_found_lines_at_a_start_are_not_a_registration_problem() -> None:
    # Normal until the registration goes through; only a steady stream of them is a symptom.
    assert ids("\n".join([JOURNAL_NODE_NOT_FOUND] * 3) + "\n" + HEALTHY_JOURNAL) == []


def test_every_entry_has_a_real_example() -> None:
    covered = {expected_id for _, expected_id in ENTRY_EXAMPLES}
    assert covered == {entry.id for entry in default_catalogue().entries}


def test_the_entries_the_health_check_relies_on_exist() -> None:
    catalogue_ids = {entry.id for entry in default_catalogue().entries}
    assert {
        "reserved-cgroup-missing",
        "reserved-memory-below-usage",
        "node-name-differs-from-certificate",
        "webhook-auth-without-api-client",
        "cni-not-initialized",
        "container-runtime-socket-unreachable",
        "kubeconfig-missing",
    } <= catalogue_ids


def test_harmless_lines_give_no_fatal_hint() -> None:
    for text in (RUNBOOK_CPU_BLOCK, RUNBOOK_CONTROLLER_MANAGER):
        matches = match_log(text)
        assert matches, "the harmless entry should still explain these lines"
        assert all(match.entry.severity is Severity.HARMLESS for match in matches)


def test_the_runbooks_controller_manager_lines_are_not_a_pod_cidr_problem() -> None:
    # The runbook quotes "Failed to update statusUpdateNeeded" next to the podCIDR lines, but the
    # excerpt is of a node that did get its range ("Set node k8s-node1 PodCIDR to ...").
    assert "node-podcidr-not-assigned" not in ids(RUNBOOK_CONTROLLER_MANAGER)


def test_missing_paths_detail_line_is_not_taken_for_the_failure() -> None:
    # At --v=4 the kubelet logs this for any cgroup it checks, kubepods included, before
    # creating it; only the enforcement failure means the reserved slice is missing.
    assert ids(RUNBOOK_MISSING_PATHS) == []
    assert ids(RUNBOOK_MISSING_PATHS + "\n" + RUNBOOK_KUBE_RESERVED_MISSING) == [
        "reserved-cgroup-missing"
    ]


def test_skipping_pod_synchronization_at_a_normal_start_is_not_a_stall() -> None:
    assert ids("\n".join([JOURNAL_SKIPPING_POD_SYNC] * 3)) == []
    [stall] = match_log("\n".join([JOURNAL_SKIPPING_POD_SYNC] * 12))
    assert stall.matching_lines == 12
    assert stall.line_number == 1


def test_multi_line_journal_yields_ordered_unique_hints() -> None:
    # A kubelet restarting every 5 s: each attempt logs the same lines again.
    attempt = [
        JOURNAL_UNKNOWN_FIELD,
        PREFIX + RUNBOOK_CPU_BLOCK.splitlines()[1],
        JOURNAL_CNI_NOT_READY,
        JOURNAL_KUBE_RESERVED_MISSING,
        PREFIX + 'I1125 18:00:01.600000     812 server.go:484] "Kubelet version"',
    ]
    journal = "\n".join(
        attempt + attempt + [JOURNAL_RESOLV_CONF, JOURNAL_RUNTIME_SOCKET]
    )
    matches = match_log(journal)
    assert [match.entry.id for match in matches] == [
        "reserved-cgroup-missing",  # fatal, line 4
        "container-runtime-socket-unreachable",  # fatal, line 12
        "kubelet-config-unknown-field",  # line 1
        "cpu-topology-unreadable",  # line 2
        "cni-not-initialized",  # line 3
        "resolv-conf-missing",  # line 11
    ]
    assert [match.line_number for match in matches] == [4, 12, 1, 2, 3, 11]
    first = matches[0]
    assert first.line == JOURNAL_KUBE_RESERVED_MISSING
    assert first.matching_lines == 2


def test_lines_that_match_nothing_give_nothing() -> None:
    assert match_log(HEALTHY_JOURNAL) == []
    assert match_log("") == []


def test_catalogue_is_loaded_once() -> None:
    assert default_catalogue() is default_catalogue()


def test_shipped_catalogue_file_validates() -> None:
    # Against the file as plain YAML (not through the loader): every entry, in order, every field
    # as written, the defaults only where the file leaves a field out.
    raw = yaml.safe_load(DEFAULT_CATALOGUE_PATH.read_text(encoding="utf-8"))
    loaded = default_catalogue()
    assert [entry.id for entry in loaded.entries] == [item["id"] for item in raw["entries"]]
    for entry, item in zip(loaded.entries, raw["entries"], strict=True):
        assert {
            "id": entry.id, "title": entry.title, "severity": entry.severity.value, "source": entry.source,
            "patterns": [pattern.pattern for pattern in entry.patterns], "cause": entry.cause, "fix": entry.fix,
            "min_matching_lines": entry.min_matching_lines,
        } == {"min_matching_lines": 1, **item}, entry.id
    assert load_catalogue(DEFAULT_CATALOGUE_PATH) == loaded


VALID_ENTRY = """\
  - id: example-problem
    title: Example problem
    severity: error
    source: measured
    patterns: ['something broke']
    cause: Because.
    fix: Do this.
"""


def write_catalogue(tmp_path: Path, entries_yaml: str) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text("entries:\n" + entries_yaml, encoding="utf-8")
    return path


def test_loader_accepts_a_minimal_catalogue(tmp_path: Path) -> None:
    catalogue = load_catalogue(write_catalogue(tmp_path, VALID_ENTRY))
    assert [entry.id for entry in catalogue.entries] == ["example-problem"]
    [match] = match_log("fine\nsomething broke here\n", catalogue)
    assert (match.entry.id, match.line_number) == ("example-problem", 2)


@pytest.mark.parametrize(
    ("entries_yaml", "expected_message"),
    [
        (
            VALID_ENTRY.replace("'something broke'", "'broken (unclosed'"),
            "broken (unclosed",
        ),
        (VALID_ENTRY + VALID_ENTRY, "duplicate entry ids: example-problem"),
        (VALID_ENTRY.replace("'something broke'", "'.*'"), "matches an empty line"),
        (VALID_ENTRY.replace("severity: error", "severity: critical"), "severity"),
        (VALID_ENTRY.replace("source: measured", "source: hearsay"), "source"),
        (VALID_ENTRY.replace("id: example-problem", "id: Example_Problem"), "id"),
        (
            VALID_ENTRY.replace("patterns: ['something broke']", "patterns: []"),
            "patterns",
        ),
        (VALID_ENTRY + "    url: https://example.invalid\n", "url"),
        (VALID_ENTRY.replace("    fix: Do this.\n", ""), "fix"),
    ],
)
def test_loader_rejects_bad_catalogues_clearly(
    tmp_path: Path, entries_yaml: str, expected_message: str
) -> None:
    path = write_catalogue(tmp_path, entries_yaml)
    with pytest.raises(CatalogueError) as raised:
        load_catalogue(path)
    assert str(path) in str(raised.value)
    assert expected_message in str(raised.value)


def test_loader_reports_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "absent.yaml")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("entries: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(malformed)


def test_committed_docs_match_the_catalogue() -> None:
    committed = (REPO_ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "docs/troubleshooting.md is stale: run "
        "`venv/bin/python -m components.troubleshooting > docs/troubleshooting.md`"
    )


def test_markdown_lists_every_entry_with_cause_and_fix() -> None:
    markdown = render_markdown()
    for entry in default_catalogue().entries:
        assert f'<a id="{entry.id}"></a>' in markdown
        assert f"## {entry.title}" in markdown
        assert entry.cause in markdown
        assert entry.fix in markdown


def test_markdown_reflects_the_catalogue_it_is_given(tmp_path: Path) -> None:
    catalogue: Catalogue = load_catalogue(write_catalogue(tmp_path, VALID_ENTRY))
    markdown = render_markdown(catalogue)
    assert "## Example problem" in markdown
    assert "something broke" in markdown
    assert "reserved-cgroup-missing" not in markdown


# Lines the real kubelet v1.30.1 logged in the lab (docs/lab.md, tests/lab).
MEASURED_V130_LINES = [
    (
        'E1125 18:40:02.101010     901 kubelet.go:1559] "Failed to start ContainerManager" err="Failed to enforce '
        'Kube Reserved Cgroup Limits on \\"/kube.slice\\": cgroup [\\"kube\\"] has some missing paths: '
        '/sys/fs/cgroup/pids/kube.slice, /sys/fs/cgroup/memory/kube.slice"',
        "reserved-cgroup-missing",
    ),
    (
        'E1125 18:41:07.202020     933 kubelet.go:1559] "Failed to start ContainerManager" err="Failed to enforce '
        'System Reserved Cgroup Limits on \\"/system.slice\\": unable to set memory limit to 8388608 '
        '(current usage: 65884160, peak usage: 246669312)"',
        "reserved-memory-below-usage",
    ),
]


@pytest.mark.parametrize(("line", "entry_id"), MEASURED_V130_LINES)
def test_measured_v130_messages_are_recognised(line: str, entry_id: str) -> None:
    assert [match.entry.id for match in match_log(line)] == [entry_id]


def _grep_p_hints(journal: str) -> set[str]:
    """The ids of the hints start-kubelet.sh prints for `journal`: `grep -P -m1 -e <pattern>` over
    it for each hint, as the script does (exit 0 a match, 1 none)."""
    found = set()
    for entry, hint in zip(reported_entries(), catalogue_hints(), strict=True):
        result = subprocess.run(["grep", "-P", "-m1", "-e", hint.pattern], input=journal + "\n",
                                capture_output=True, text=True, check=False)
        assert result.returncode in (0, 1), (entry.id, result.stderr)
        if result.returncode == 0:
            found.add(entry.id)
    return found


@pytest.mark.parametrize(
    "journal",
    [text for text, _ in ENTRY_EXAMPLES] + [line for line, _ in MEASURED_V130_LINES] + [HEALTHY_JOURNAL],
)
def test_grep_p_and_the_reference_matcher_find_the_same_hints(journal: str) -> None:
    reported = {entry.id for entry in reported_entries()}
    assert _grep_p_hints(journal) == {match.entry.id for match in match_log(journal)} & reported
