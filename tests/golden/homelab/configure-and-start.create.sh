set -euo pipefail
# homelab-kubelet: configure and start on node k8s-node1
NODE_NAME=k8s-node1
STEP=configure-and-start
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
LOCK_FILE=/var/lib/homelab-kubelet/lock
LOCK_WAIT_SECONDS=600
STATIC_POD_PATH=/etc/kubelet.d
KUBELET_DIR=/var/lib/kubelet
KUBELET_BINARY=/usr/bin/kubelet
KUBELET_RUNS_ON=(/usr/bin/kubelet /var/lib/kubernetes/ca.pem /var/lib/kubelet/k8s-node1.pem /var/lib/kubelet/k8s-node1-key.pem /var/lib/kubelet/kubeconfig /var/lib/kubelet/kubelet-config.yaml /etc/systemd/system/kubelet.service /etc/systemd/system/kube.slice /etc/systemd/system/system.slice.d/10-homelab-kubelet-reserved.conf /etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf /usr/local/libexec/homelab-kubelet/prepare-cgroups /etc/containerd/config.toml)
KUBELET_RECORD=/var/lib/homelab-kubelet/kubelet-running
SYSTEMD_DIR=/etc/systemd/system
CONTAINERD_DROPIN=/etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf
CONTAINERD_CONFIG=/etc/containerd/config.toml
MANAGE_CONTAINERD_CGROUP_DRIVER=true
RUNTIME_SOCKET=/run/containerd/containerd.sock
KUBE_SLICE=kube.slice
HEALTHZ_PORT=10248
HEALTH_TIMEOUT=180
SETTLE_SECONDS=15
JOURNAL_LINES=40
HINT_PATTERNS=('(?:Failed to enforce (?:Kube|System) Reserved Cgroup Limits on .*cgroup does not exist)|(?:Failed to enforce (?:Kube|System) Reserved Cgroup Limits on .*has some missing (?:paths|controllers))|(?:Failed to enforce (?:Kube|System) Reserved Cgroup Limits on .*could not read controllers for cgroup)' '(?:memory\.limit_in_bytes.*device or resource busy)|(?:Failed to enforce (?:Kube|System) Reserved Cgroup Limits on .*unable to set memory limit to \d+ \(current usage)' '(?:node \\?"[^"\\]+\\?" is not allowed to modify node)' '(?:no client provided, cannot use webhook (?:authentication|authorization))' '(?:dial unix \S+: connect: (?:no such file or directory|connection refused))' '(?:unknown service runtime\.v1\.RuntimeService)' '(?:invalid kubeconfig: stat \S+: no such file or directory)|(?:unable to read client-(?:cert|key) \S+)' '(?:running with swap on is not supported)' '(?:kubelet cgroup driver: \\?"\w+\\?" is different from docker cgroup driver)|(?:expected cgroupsPath to be of format \\*"slice:prefix:name\\*" for systemd cgroups)' '(?:x509: certificate has expired or is not yet valid: current time \S+ is after \S+)' '(?:x509: certificate has expired or is not yet valid: current time \S+ is before \S+)' '(?:inotify_init: too many open files)|(?:unable to create inotify(?: for path \S+)?: too many open files)|(?:failed to create fsnotify watcher: too many open files)' '(?:differs from state checkpoint policy)' '(?:x509: certificate signed by unknown authority)' '(?:Unable to register node with API server.*err=\\?"Unauthorized)|(?:You must be logged in to the server \(Unauthorized\))' '(?:Forbidden \(user=[^,()]+, verb=\w+, resource=nodes, subresource=\w+\))|(?:"Forbidden" user="[^"]+" verb="\w+" resource="nodes")' '(?:pod cidr not assigned)' '(?:open \S*resolv\.conf: no such file or directory)' '(?:x509: cannot validate certificate for \S+ because it doesn'"'"'t contain any IP SANs)|(?::10250/\S* tls: failed to verify certificate: x509: certificate is valid for .+, not \d)' '(?:Image garbage collection failed multiple times in a row)|(?:Failed to garbage collect required amount of images)|(?:wanted to free \d+ bytes, but freed \d+ bytes space with errors in image deletion)' '(?:cni config uninitialized)|(?:cni plugin not initialized)|(?:no networks found in /etc/cni/net\.d)' '(?:strict decoding (?:failed|error).*unknown field)' '(?:node shutdown manager was unable to update logind InhibitDelayMaxSec to \S+ \(ShutdownGracePeriod\), current value of InhibitDelayMaxSec \(\S+\) is less than requested ShutdownGracePeriod)|(?:Delay lock is active \((?:UID \d+/\S+, )?PID \d+/kubelet\) but inhibitor timeout is reached)' '(?:Failed to get system container stats.*unknown container)')
# shellcheck disable=SC2016
HINT_TEXTS=('hint: Reserved cgroup (kube.slice / system.slice) does not exist
    cause: enforceNodeAllocatable contains kube-reserved or system-reserved, and the kubelet only applies limits to a cgroup that already exists. On cgroup v1 the slice must exist in every hierarchy the kubelet checks (cpu,cpuacct, cpuset, memory, pids, systemd, and hugetlb when mounted). systemd creates a slice'"'"'s directories only while a unit runs in it, and never in the cpuset and hugetlb hierarchies, so kube.slice (and system.slice under cpuset/hugetlb) is missing. On cgroup v2 the slice must exist in /sys/fs/cgroup and list cpu, cpuset, memory, pids (and hugetlb when the kernel has it) in its cgroup.controllers.
    fix: The ExecStartPre of /etc/systemd/system/kubelet.service creates the slice directories before every start: check it is there and ran (`systemctl cat kubelet`, `ls -d /sys/fs/cgroup/*/kube.slice /sys/fs/cgroup/*/system.slice`). To see exactly which directories the kubelet misses, start it once with `--v=4` and look for "has some missing paths". The slice names come from `reservations.kubeReservedCgroup` and `reservations.systemReservedCgroup`. On cgroup v2, enable the missing controllers in /sys/fs/cgroup/cgroup.subtree_control. Alternatively drop kube-reserved / system-reserved from `reservations.enforceNodeAllocatable`: the reservation still lowers the node'"'"'s allocatable, it is just not enforced as a cgroup limit.' 'hint: Reserved memory limit is below what the slice already uses (device or resource busy)
    cause: With system-reserved (or kube-reserved) enforced, the kubelet writes the reserved memory as the hard limit of system.slice (or kube.slice). On cgroup v1 the kernel refuses such a write with EBUSY when the cgroup already uses more than the new limit and it cannot reclaim enough. The path in the line names the slice; the number is the limit in bytes (104857600 = 100Mi).
    fix: Compare with the current usage, e.g. `cat /sys/fs/cgroup/memory/system.slice/memory.usage_in_bytes` (kube.slice for kube-reserved), then set the memory of `reservations.systemReserved` (or `reservations.kubeReserved`) comfortably above it and run `pulumi up`. Or remove system-reserved / kube-reserved from `reservations.enforceNodeAllocatable` so the reservation only lowers allocatable without a hard limit.' 'hint: Client certificate belongs to another node (is not allowed to modify node)
    cause: The NodeRestriction admission plugin lets a kubelet change only the Node named in its client certificate (CN system:node:<name>). The first name in the line is the certificate'"'"'s node, the second the name this kubelet registers under: the certificate in /var/lib/kubelet/kubeconfig was issued for another node, typically a kubeconfig copied from another host.
    fix: Check the subject: `grep client-certificate-data /var/lib/kubelet/kubeconfig | awk '"'"'{print $2}'"'"' | base64 -d | openssl x509 -noout -subject` must show `O = system:nodes, CN = system:node:<nodes[i].name>`. Make sure the node'"'"'s entry in `nodes` has the right `name` (the kubelet registers under `nodes[i].name` via --hostname-override) and run `pulumi up` to issue and copy the certificate and kubeconfig for that name.' 'hint: Webhook authentication/authorization without an API client
    cause: With `kubelet.authMode: secure` the kubelet checks bearer tokens (authentication.webhook) and authorizes requests (authorization.mode Webhook) by asking the API server. It has no API client when it runs without --kubeconfig (standalone mode; a line "standalone mode, no API client" comes just before), so it cannot start. This is not an API server setting.
    fix: Make sure ExecStart in /etc/systemd/system/kubelet.service passes `--kubeconfig=/var/lib/kubelet/kubeconfig` and that the file exists (`systemctl cat kubelet`, `ls -l /var/lib/kubelet/kubeconfig`), then `systemctl daemon-reload && systemctl restart kubelet`, or run `pulumi up` to rewrite the unit. Do not switch to `kubelet.authMode: permissive` to silence it: that lets anyone who reaches port 10250 use the kubelet API.' 'hint: Container runtime socket missing or refusing connections
    cause: Nothing listens on `kubernetes.containerRuntimeEndpoint` (passed to the kubelet as --container-runtime-endpoint): containerd is not running, not started yet, or listens on another path. At start the kubelet 1.30 exits ("validate CRI v1 runtime API for endpoint"); later the same dial error means containerd went away.
    fix: `systemctl status containerd` and `journalctl -u containerd -n 50`; compare the socket it listens on (`address` in the [grpc] section of /etc/containerd/config.toml, `ss -xlp | grep containerd`) with `kubernetes.containerRuntimeEndpoint`. kubelet.service orders itself after containerd.service, so also check that unit is enabled.' 'hint: containerd runs without its CRI plugin (unknown service runtime.v1.RuntimeService)
    cause: containerd answers on the socket but does not serve the Kubernetes CRI v1 API: the /etc/containerd/config.toml installed by Docker'"'"'s containerd.io package disables it (`disabled_plugins = ["cri"]`), or containerd is older than 1.6.
    fix: Remove "cri" from `disabled_plugins` (or regenerate the file with `containerd config default > /etc/containerd/config.toml` and set `SystemdCgroup = true` again), then `systemctl restart containerd` and restart the kubelet. Check with `crictl version` (/etc/crictl.yaml names the runtime endpoint).' 'hint: Kubeconfig or its client certificate missing (invalid kubeconfig)
    cause: The file given by --kubeconfig (/var/lib/kubelet/kubeconfig) or a client certificate/key file it references does not exist: the copy step did not run or failed, or the unit points at another path.
    fix: `ls -l /var/lib/kubelet/ /var/lib/kubernetes/ca.pem` and compare with the --kubeconfig path in /etc/systemd/system/kubelet.service (`systemctl cat kubelet`); run `pulumi up` to copy the kubeconfig and certificates again.' 'hint: Swap is on and failSwapOn is true
    cause: The kubelet refuses to start while /proc/swaps lists an active swap device and failSwapOn is true (the default).
    fix: `swapoff -a` and remove swap entries from /etc/fstab; on Raspberry Pi OS also `systemctl disable --now dphys-swapfile`, and disable zram swap (zram-generator) where it is configured. If swap is wanted, set `kubelet.failSwapOn: false` and run `pulumi up` (it becomes failSwapOn in /var/lib/kubelet/kubelet-config.yaml).' 'hint: Kubelet and container runtime use different cgroup drivers
    cause: The kubelet and the runtime must agree on the cgroup driver; this program configures the kubelet with `cgroupDriver: systemd`. The docker message comes from the dockershim of kubelet 1.23 and older. With containerd, runc in systemd mode (`SystemdCgroup = true`) fed cgroupfs paths by a cgroupfs kubelet fails every pod sandbox with the runc message. The opposite case (systemd kubelet, containerd'"'"'s default `SystemdCgroup = false`) prints no telling line: pod sandboxes keep being re-created ("Pod sandbox changed").
    fix: Keep `cgroupDriver: systemd` in /var/lib/kubelet/kubelet-config.yaml and set `SystemdCgroup = true` in the runc options of the CRI plugin in /etc/containerd/config.toml (`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]` for containerd 1.x), then `systemctl restart containerd` and restart the kubelet. With `kubelet.manageContainerdCgroupDriver: true` (the default) `pulumi up` sets it for you.' 'hint: A certificate has expired (x509 certificate has expired, current time is after)
    cause: A certificate is past its notAfter. In the API server'"'"'s log ("Unable to authenticate the request" ... "verifying certificate SN=... failed") it is the kubelet'"'"'s client certificate, the node certificate: the API server treats the kubelet as anonymous, so the kubelet'"'"'s own journal only says Unauthorized ("Unable to register node with API server" err="Unauthorized"). In the kubelet'"'"'s journal, next to the API server'"'"'s URL (:6443), it is the API server'"'"'s serving certificate. In kubectl logs/exec or metrics-server, next to :10250, it is the kubelet'"'"'s serving certificate, the same node certificate. The two times in the line are now and the certificate'"'"'s notAfter.
    fix: Check the node certificate with `openssl x509 -in /var/lib/kubelet/<node>.pem -noout -enddate` (the `nodes` output shows it as certNotAfter). `pulumi up` issues a new one once it is inside its renewal window (`pki.earlyRenewalHours` before notAfter; the preview warns), writes it and restarts the kubelet with it: run `pulumi up` at least that often. An expired API server certificate is renewed where the control plane is managed, not here.' 'hint: The node'"'"'s clock is behind (x509 certificate is not yet valid, current time is before)
    cause: The certificate'"'"'s notBefore lies after the node'"'"'s clock: the certificates are new, and the node'"'"'s time is wrong, typically a Raspberry Pi (it has no battery-backed clock) that started before it synchronised its time over the network, or a node without time synchronisation. The first time in the line is the node'"'"'s clock.
    fix: Check `timedatectl` (System clock synchronized: yes) and enable time synchronisation (`timedatectl set-ntp true`; Debian: `apt-get install systemd-timesyncd`), then `systemctl restart kubelet`. Certificates are not the problem; do not re-issue them.' 'hint: No inotify instance left (too many open files)
    cause: Creating an inotify instance fails with EMFILE, which reads "too many open files" but here almost always means that root'"'"'s inotify instances are used up: fs.inotify.max_user_instances (128 on Debian and Raspberry Pi OS) counts every instance of every process of the user, and the kubelet, containerd and many pods (log shippers, controllers, `kubectl logs -f`) each hold some. Without one the kubelet'"'"'s cAdvisor cannot start and the kubelet exits; the static pod watcher and log following fail while it runs. The per-process file limit is rarely the cause: Go raises its soft limit to the hard one.
    fix: See the use: `find /proc/*/fd -lname anon_inode:inotify 2>/dev/null | cut -d/ -f3 | sort | uniq -c | sort -rn | head` (instances per pid) and `sysctl fs.inotify`. Raise the limits persistently, e.g. `printf '"'"'fs.inotify.max_user_instances = 8192\nfs.inotify.max_user_watches = 524288\n'"'"' > /etc/sysctl.d/90-inotify.conf && sysctl --system`, then `systemctl restart kubelet`.' 'hint: CPU or memory manager policy changed on a node that ran with another one
    cause: `kubelet.cpuManagerPolicy` (or `memoryManagerPolicy`) changed, and the kubelet keeps the previous policy'"'"'s assignments in /var/lib/kubelet/cpu_manager_state (memory_manager_state). It refuses to start with a policy other than the checkpoint'"'"'s, so `pulumi up` rolls the node back to its previous configuration.
    fix: Drain the node (`kubectl drain <node> --ignore-daemonsets`), then on the node `systemctl stop kubelet && rm /var/lib/kubelet/cpu_manager_state` (or `memory_manager_state`, as the line names it), run `pulumi up` again, and `kubectl uncordon <node>`.' 'hint: The API server'"'"'s certificate is not signed by the node'"'"'s CA (x509 unknown authority)
    cause: The kubelet verifies the API server with the CA in /var/lib/kubelet/kubeconfig (certificate-authority-data, the stack'"'"'s CA), and the API server'"'"'s serving certificate (its --tls-cert-file) was signed by another CA: the stack generated its own CA while the cluster has one. The kubelet cannot register or renew its lease; it keeps retrying. The same words come from kubectl with a kubeconfig of another CA ("Unable to connect to the server: tls: failed to verify certificate: x509: certificate signed by unknown authority", measured with kubectl v1.30.1 against the lab'"'"'s control plane); the configure step'"'"'s registration check says "has a certificate that the stack'"'"'s CA did not sign".
    fix: Import the cluster'"'"'s CA into the stack instead of generating one: `pki.importCa: true` and `pulumi config set --secret caCertPem < ca.pem`, `pulumi config set --secret caKeyPem < ca-key.pem` (the CA that signed the API server'"'"'s certificate and that its --client-ca-file holds), then `pulumi up` issues the node certificates from it. Check with `openssl verify -CAfile /var/lib/kubernetes/ca.pem apiserver.pem` on the control plane.' 'hint: The API server does not accept the node'"'"'s client certificate (Unauthorized)
    cause: The API server answers 401 to the kubelet: its --client-ca-file does not hold the CA that signed the node'"'"'s certificate (/var/lib/kubelet/<name>.pem), so the certificate authenticates no one. Registration, node status and lease updates all fail ("Unable to register node with API server" err="Unauthorized"). Measured against the lab'"'"'s control plane with a node certificate of another CA: the API server answers `{"kind":"Status",...,"message": "Unauthorized","code":401}`, kubectl says "error: You must be logged in to the server (Unauthorized)", and the configure step'"'"'s registration check warns "refuses the node'"'"'s certificate (401 Unauthorized)".
    fix: Run the API server with `--client-ca-file` naming the CA the stack signs node certificates with (`pulumi stack output caCertificate`), or import the cluster'"'"'s CA into the stack (`pki.importCa: true` with the secrets caCertPem and caKeyPem) and run `pulumi up`. A clock far off on the node (certificate not yet valid) gives the same 401: check `date` there.' 'hint: The kubelet forbids the API server its API (Forbidden (user=..., resource=nodes, subresource=proxy))
    cause: With `kubelet.authMode: secure` the kubelet authorizes every request to port 10250 by asking the API server (authorization.mode Webhook, a SubjectAccessReview) and answers 403 with this text (pkg/kubelet/server/server.go) when the answer is no. When the user is the API server'"'"'s own kubelet-client identity (the CN of its --kubelet-client-certificate), `kubectl logs`, `exec`, `port-forward` and `kubectl get --raw /api/v1/nodes/<name>/proxy/...` fail, because the RBAC that lets that user use nodes/proxy, nodes/stats, nodes/log, nodes/spec and nodes/metrics is missing. The kubelet also logs it at --v=2 ("Forbidden" user=...).
    fix: Apply the ClusterRole system:kube-apiserver-to-kubelet and its binding to the API server'"'"'s kubelet-client user (README, "What the API server needs": the manifest, with `subjects` naming the CN of --kubelet-client-certificate) with `kubectl apply -f`. Check with `kubectl auth can-i get nodes --subresource=proxy --as <that CN>`. Do not switch the kubelets to `kubelet.authMode: permissive`.' 'hint: Node has no spec.podCIDR (pod cidr not assigned)
    cause: The Node'"'"'s spec.podCIDR is empty, so flannel (and any CNI that takes the node'"'"'s range from it) refuses to start and the node stays NotReady. kube-controller-manager assigns a range to each node only when it runs with --allocate-node-cidrs=true and --cluster-cidr. A kubelet'"'"'s own podCIDR setting does not help (the kubelet uses it only in standalone mode and never publishes it on the Node), so this program does not render `nodes[].podCIDR` into /var/lib/kubelet/kubelet-config.yaml. This is a control-plane setting; the line comes from the CNI pod'"'"'s log (`kubectl -n kube-flannel logs ds/kube-flannel-ds`), not from the kubelet.
    fix: On the control plane start kube-controller-manager with `--allocate-node-cidrs=true --cluster-cidr=<pod network, e.g. 10.200.0.0/16>`; it then logs "Set node <name> PodCIDR to [...]". Check with `kubectl get nodes -o jsonpath='"'"'{.items[*].spec.podCIDR}'"'"'`. A node that registered without a range can be given one once by hand (`kubectl patch node <name> -p '"'"'{"spec":{"podCIDR":"10.200.1.0/24"}}'"'"'`; the field cannot be changed afterwards).' 'hint: resolvConf points to a file that does not exist
    cause: The kubelet copies the resolver settings for pods from `resolvConf`. The default /run/systemd/resolve/resolv.conf exists only while systemd-resolved runs, so on a host without it every pod sandbox fails ("Failed to generate sandbox config for pod").
    fix: Set `kubelet.resolvConf` (or `nodes[i].resolvConf` for one node) to /etc/resolv.conf on hosts without systemd-resolved and run `pulumi up`. Keep the systemd-resolved path where it runs: there /etc/resolv.conf names only the 127.0.0.53 stub, which pods cannot reach.' 'hint: The kubelet'"'"'s serving certificate does not carry the IP it is dialled at (doesn'"'"'t contain any IP SANs)
    cause: Clients that dial the kubelet by its InternalIP (metrics-server, an API server with --kubelet-certificate-authority and --kubelet-preferred-address-types=InternalIP) check that IP against the IP SANs of its serving certificate, the node certificate in /var/lib/kubelet/<node>.pem. "doesn'"'"'t contain any IP SANs": the certificate has DNS names only (a certificate issued before this project put the node'"'"'s address in it, or by hand). "certificate is valid for A, not B": the node'"'"'s address changed (DHCP, another network or Wi-Fi interface) since the certificate was issued, or the kubelet registers another address than the one in the certificate.
    fix: Compare `openssl x509 -in /var/lib/kubelet/<node>.pem -noout -ext subjectAltName` with the node'"'"'s InternalIP (`kubectl get node <node> -o wide`). `pulumi up` issues the certificate for the address the node-address step finds (the one the kubelet registers) plus `nodes[i].ips`; after the node'"'"'s address changed, run it again with `--replace` on the node'"'"'s node-address step so it looks again, or pin the address with `nodes[i].nodeIP` (the kubelet then gets --node-ip). Do not switch metrics-server to --kubelet-insecure-tls.' 'hint: Image garbage collection cannot free enough space
    cause: The image filesystem is at or above imageGCHighThresholdPercent (85 unless `kubelet.imageGCHighThresholdPercent` says otherwise), and the kubelet could not delete enough unused images to get below imageGCLowThresholdPercent (80): the space is held by images in use, by images younger than imageMinimumGCAge (2m), by the pinned sandbox image, or by something other than images (logs, emptyDir volumes, files outside containerd), or containerd refused a deletion (the errors follow in the line). The kubelet retries every 5 minutes and records an ImageGCFailed event; below the imagefs.available eviction threshold (15%) it evicts pods.
    fix: Look at what fills the disk: `df -h /var/lib/containerd /var/lib/kubelet`, `crictl imagefsinfo`, `crictl images`, `du -xsh /var/log /var/lib/containerd/*`. Remove what is not images, give the node more disk, or lower `kubelet.imageGCHighThresholdPercent`/`imageGCLowThresholdPercent` (and `kubelet.imageMinimumGCAge`) so collection starts earlier, then `pulumi up`.' 'hint: No CNI network configured yet (cni config uninitialized / cni plugin not initialized)
    cause: containerd found no usable network configuration in /etc/cni/net.d, or the plugin binaries it names are missing from /opt/cni/bin. The node stays NotReady and only hostNetwork pods can start. Expected until a CNI is installed; this program does not install one.
    fix: Install the cluster'"'"'s CNI (e.g. the flannel DaemonSet, which needs each node'"'"'s spec.podCIDR: see "pod cidr not assigned"), or put a bridge/host-local config in /etc/cni/net.d and the reference plugins in /opt/cni/bin. containerd reads those directories from `conf_dir` / `bin_dir` of the CRI plugin'"'"'s cni section in /etc/containerd/config.toml; restart containerd if the node does not turn Ready.' 'hint: Kubelet config file has a field the kubelet ignores (strict decoding, unknown field)
    cause: /var/lib/kubelet/kubelet-config.yaml contains a key that KubeletConfiguration v1beta1 does not have: a typo, or a flag-only setting such as `runtimeCgroups` from the runbook. The kubelet decodes the file leniently, ignores the key and carries on, so that setting has no effect. If "failed lenient decoding" follows, the file is invalid and the kubelet exits.
    fix: Remove the key named in the line. This program passes runtimeCgroups as the `--runtime-cgroups` flag in /etc/systemd/system/kubelet.service instead; check other keys against the KubeletConfiguration (v1beta1) reference.' 'hint: logind'"'"'s InhibitDelayMaxSec is below shutdownGracePeriod (graceful node shutdown off)
    cause: With `kubelet.shutdownGracePeriod` the kubelet asks systemd-logind to delay shutdown by that long. logind grants at most its InhibitDelayMaxSec; the kubelet raises it by writing /etc/systemd/logind.conf.d/99-kubelet.conf and reloading logind, but a drop-in whose name sorts after 99-kubelet.conf wins. Debian'"'"'s unattended-upgrades ships /usr/lib/systemd/logind.conf.d/unattended-upgrades-logind-maxdelay.conf with InhibitDelayMaxSec=30 (kubernetes/kubernetes#102818). The kubelet then runs without graceful shutdown; logind'"'"'s line means a shutdown went ahead before the kubelet had stopped its pods.
    fix: `systemd-analyze cat-config systemd/logind.conf` shows which file wins. Add a drop-in that sorts later, e.g. `printf '"'"'[Login]\nInhibitDelayMaxSec=60\n'"'"' > /etc/systemd/logind.conf.d/zz-kubelet-shutdown.conf` (at least the grace period in seconds), or mask the capping one with an empty file of its name in /etc/systemd/logind.conf.d/; then `systemctl kill -s HUP systemd-logind` and `systemctl restart kubelet`. Check with `systemd-inhibit --list`: kubelet holds a "shutdown" delay lock. Preflight warns about such a drop-in.' 'hint: Stats of a configured system cgroup cannot be read (unknown container)
    cause: The stats summary (metrics-server, eviction) reads the cgroups the kubelet was told hold the kubelet, the runtime and the system daemons, and one does not exist. With `kubelet.systemCgroups: /systemd/system.slice` (the runbook'"'"'s) this is expected on both cgroup modes: the v1.30 kubelet manages that cgroup with the cgroupfs manager and creates it only to move processes from the root cgroup into it, and under systemd the root holds none but PID 1 and kernel threads. The line repeats with every stats collection (every 10 s); nothing else fails.
    fix: Leave `kubelet.systemCgroups` unset (the default) and run `pulumi up`. For another cgroup named in the line, check that --runtime-cgroups and kubeletCgroups name the slices kubelet.service and containerd run in (`systemctl show -p ControlGroup kubelet containerd`).')
API_SERVER=https://k8s-master:6443
CA_CERT=/var/lib/kubernetes/ca.pem
NODE_CERT=/var/lib/kubelet/k8s-node1.pem
NODE_KEY=/var/lib/kubelet/k8s-node1-key.pem
REGISTRATION_WAIT=30
# shellcheck disable=SC2034  # some steps use only part of lib.sh
# Shared functions of every node script. Rendered scripts start with `set -euo pipefail` and
# the step's variables (NODE_NAME, ...), then this file, then the step itself, and end with
# `STEP_DONE=true`.

umask 022
# The loader runs a script as `bash -c SCRIPT STEP MODE`.
case "${1:-}" in create | update | delete) MODE=$1 ;; *) MODE=create ;; esac

log() { printf '[%s] %s\n' "$NODE_NAME" "$*" >&2; }

fail() {
  printf 'ERROR [%s]: %s\n' "$NODE_NAME" "$*" >&2
  exit 1
}

# --- how a run ends ---------------------------------------------------------------------------
# A run succeeded only if it reached its last line (STEP_DONE=true); an error or a signal is a
# failure whatever `$?` says. A dropped SSH connection reaches a step as SIGPIPE at its next write
# (sshd sends no SIGHUP to a session without a terminal), and without these traps bash would run
# the EXIT trap with the status of the last command, usually 0.
STEP_DONE=false
EXIT_HOOKS=() # functions run at exit with the final status (rollback.sh adds its rollback)
TEMP_PATHS=() # removed at exit, whatever the outcome: a failed run leaves no temp files

run_exit_hooks() {
  local status=$? hook
  trap - EXIT
  # The session may be gone: a failed write must not cut the cleanup short.
  trap '' PIPE HUP
  set +e
  [ "$STEP_DONE" = true ] || [ "$status" -ne 0 ] || status=1
  for hook in "${EXIT_HOOKS[@]}"; do "$hook" "$status"; done
  [ "${#TEMP_PATHS[@]}" -eq 0 ] || rm -rf "${TEMP_PATHS[@]}"
  exit "$status"
}
trap run_exit_hooks EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# --- writes -----------------------------------------------------------------------------------
# Every write is checked where it happens (`|| fail`): set -e does not apply inside a function
# called from `if` or `||`, nor inside `$(...)`.

# ensure_dir DIR...: create missing directories (0755, umask 022); an existing one keeps its mode
# (`install -d -m` would chmod it: a staticPodPath of /tmp would lose its sticky bit).
ensure_dir() {
  local dir
  for dir in "$@"; do
    [ -d "$dir" ] || mkdir -p "$dir" || fail "cannot create directory $dir (df -h; is its filesystem full or read-only?)"
  done
}

# new_temp PATH: prints a new empty temp file beside PATH (same filesystem, so a rename lands it).
new_temp() {
  local dir=${1%/*}
  mktemp "${dir:-/}/.${1##*/}.XXXXXX" || fail "cannot create a file in ${dir:-/} (df -h ${dir:-/}; is it full or read-only?)"
}

# land TEMP PATH: flush TEMP to disk, then rename it over PATH.
land() {
  sync "$1" || fail "cannot flush $2 to disk (df -h ${2%/*})"
  mv -f "$1" "$2" || fail "cannot move $2 into place"
}

# keep_for_rollback PATH: before this run first changes PATH, keep what is there (or note that
# nothing was) for rollback.sh. A no-op in the steps that do not roll back (no ROLLBACK_DIR).
keep_for_rollback() {
  [ -n "${ROLLBACK_DIR:-}" ] || return 0
  local saved="$ROLLBACK_DIR/${1//\//%}"
  [ ! -e "$saved" ] || return 0
  if [ -e "$1" ]; then
    { cp -p "$1" "$saved" && sync "$saved"; } || fail "cannot keep a copy of $1 for a rollback (df -h $ROLLBACK_DIR; is it full?)"
    printf '%s\t%s\n' "${saved##*/}" "$1" >>"$ROLLBACK_DIR/manifest" || fail "cannot write $ROLLBACK_DIR/manifest (df -h $ROLLBACK_DIR; is it full?)"
  else
    : >"$saved" || fail "cannot write in $ROLLBACK_DIR (df -h $ROLLBACK_DIR; is it full?)"
    printf '%s\t%s\n' - "$1" >>"$ROLLBACK_DIR/manifest" || fail "cannot write $ROLLBACK_DIR/manifest (df -h $ROLLBACK_DIR; is it full?)"
  fi
}

# The paths this run changed, in order (configure.sh decides on reloads and restarts from them).
CHANGED=()

# install_file PATH MODE < CONTENT
# Writes atomically (temp file in the same directory, flushed, renamed), so a full disk or an
# interrupted run never leaves a short file. Prints "changed PATH" only when content or mode differ.
install_file() {
  local path=$1 mode=$2 tmp sum
  ensure_dir "${path%/*}"
  tmp=$(new_temp "$path")
  TEMP_PATHS+=("$tmp")
  { cat >"$tmp" && chmod "$mode" "$tmp"; } || fail "cannot write $path (df -h ${path%/*}; is its filesystem full?)"
  sum=$(sha256sum <"$tmp") || fail "cannot read back $tmp"
  sum=${sum%% *}
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    own_unchanged "$path" "$sum"
    return 0
  fi
  own_before_change "$path" "$sum"
  keep_for_rollback "$path"
  land "$tmp" "$path"
  CHANGED+=("$path")
  echo "changed $path"
}

# unpack_bundle < BUNDLE
# The bundle on stdin holds files as
#   @@@ homelab-kubelet file PATH MODE
#   ...content lines...
#   @@@ homelab-kubelet end
# Data travels on stdin, never in the command line (no secret lands in `ps` or the journal).
unpack_bundle() {
  local line path="" mode="" content=""
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "@@@ homelab-kubelet file "*)
        read -r path mode <<<"${line#@@@ homelab-kubelet file }"
        content=""
        ;;
      "@@@ homelab-kubelet end")
        [ -n "$path" ] || fail "malformed bundle: end without file"
        # Process substitution, not a pipe: install_file runs in this shell (CHANGED, TEMP_PATHS).
        install_file "$path" "$mode" < <(printf '%s' "$content")
        path=""
        ;;
      *)
        [ -n "$path" ] || fail "malformed bundle: data outside a file"
        content+="$line"$'\n'
        ;;
    esac
  done
  [ -z "$path" ] || fail "malformed bundle: $path has no end marker (stdin cut short?)"
}

cgroup_version() {
  case "$(stat -fc %T /sys/fs/cgroup)" in
    cgroup2fs) echo v2 ;;
    tmpfs) if [ -d /sys/fs/cgroup/unified ]; then echo hybrid; else echo v1; fi ;;
    *) echo unknown ;;
  esac
}

# json_string TEXT: TEXT as a JSON string, escaped strictly (RFC 8259): a hostname with quotes,
# backslashes or control characters cannot change or break the preflight facts.
json_string() {
  local text=$1 out="" char code i
  for ((i = 0; i < ${#text}; i++)); do
    char=${text:i:1}
    # shellcheck disable=SC1003  # the backslash branch: escaped as JSON wants it
    case "$char" in
      '"') out+='\"' ;;
      "\\") out+='\\' ;;
      *)
        printf -v code '%d' "'$char"
        if [ "$code" -ge 0 ] && [ "$code" -lt 32 ]; then
          printf -v char '\\u%04x' "$code"
        fi
        out+=$char
        ;;
    esac
  done
  printf '"%s"' "$out"
}

# write_state PATH VALUE: one line of the project's own bookkeeping, landed with a rename.
write_state() {
  local tmp
  ensure_dir "${1%/*}"
  keep_for_rollback "$1"
  tmp=$(new_temp "$1")
  TEMP_PATHS+=("$tmp")
  printf '%s\n' "$2" >"$tmp" || fail "cannot write $1 (df -h ${1%/*}; is its filesystem full?)"
  land "$tmp" "$1"
}

# --- what the project owns on the node --------------------------------------------------------
# One record per path a step writes, in $OWNED_DIR (the path with / as %): how the project came
# to own the path, and the sha256 of what it last wrote there.
#   created  SHA256  nothing was there; delete removes the file
#   replaced SHA256  another file was there; its copy is RECORD.orig, and delete puts it back
#   adopted  SHA256  the same content was there already (a node built by hand, a control plane's
#                    CA); delete leaves it
# Delete acts only while the file still holds what the project wrote: a file changed since then is
# left in place, and the step says so.

record_of() { printf '%s/%s' "$OWNED_DIR" "${1//\//%}"; }

record_how() {
  local record how=""
  record=$(record_of "$1")
  [ ! -f "$record" ] || read -r how _ <"$record"
  echo "$how"
}

# own_unchanged PATH SHA256: PATH already holds what the step writes.
own_unchanged() {
  [ -z "$(record_how "$1")" ] || return 0
  # An update without a record: an earlier homelab-kubelet, which kept no records, wrote it.
  if [ "$MODE" = update ]; then
    write_state "$(record_of "$1")" "created $2"
  else
    write_state "$(record_of "$1")" "adopted $2"
  fi
}

# own_before_change PATH SHA256: the step is about to replace PATH with content of SHA256.
own_before_change() {
  local path=$1 how record
  how=$(record_how "$path")
  record=$(record_of "$path")
  case "$how" in
    created | replaced) ;;
    *)
      if [ ! -e "$path" ] || { [ -z "$how" ] && [ "$MODE" = update ]; }; then
        how=created
      else
        # Another file (or one the project only adopted): keep it to put back on delete.
        guard_foreign_file "$path"
        ensure_dir "$OWNED_DIR"
        keep_for_rollback "$record.orig"
        { cp -p "$path" "$record.orig" && sync "$record.orig"; } ||
          fail "cannot keep a copy of $path (df -h $OWNED_DIR; is it full?)"
        how=replaced
      fi
      ;;
  esac
  write_state "$record" "$how $2"
}

# Paths the project must not take over from someone else (set per step; see write-credentials.sh).
# guard_foreign_file PATH: fail with GUARDED_REASON (which may name $path) for a guarded PATH.
GUARDED_PATHS=()
GUARDED_REASON=""
guard_foreign_file() {
  local guarded
  for guarded in "${GUARDED_PATHS[@]}"; do
    [ "$guarded" != "$1" ] || fail "$1: $GUARDED_REASON"
  done
}

# give_back PATH...: undo the step's writes of PATH (delete; see the records above).
give_back() {
  local path record how sum current
  for path in "$@"; do
    record=$(record_of "$path")
    if [ ! -f "$record" ]; then
      # Written by an earlier homelab-kubelet, which kept no records: remove it, as that version did.
      [ ! -e "$path" ] || remove_unless_used "$path"
      continue
    fi
    read -r how sum <"$record"
    if [ -e "$path" ]; then
      current=$(sha256sum <"$path") || fail "cannot read $path"
      if [ "${current%% *}" != "$sum" ]; then
        log "left $path in place: it changed since homelab-kubelet wrote it"
        [ "$how" != replaced ] || log "the file it replaced is kept at $record.orig"
        echo "left $path: changed since homelab-kubelet wrote it"
        rm -f "$record"
        continue
      fi
    fi
    case "$how" in
      created) [ ! -e "$path" ] || remove_unless_used "$path" ;;
      replaced)
        mv -f "$record.orig" "$path" || fail "cannot put back $path from $record.orig"
        echo "restored $path"
        ;;
      *) echo "left $path: it was there before homelab-kubelet" ;;
    esac
    rm -f "$record"
  done
}

# Where another program may name a file the project wrote (a control plane's units and manifests);
# rendered for the steps that check it.
[ -v USER_DIRS ] || USER_DIRS=()
remove_unless_used() {
  local dir file files=() users=""
  for dir in "${USER_DIRS[@]}"; do
    for file in "$dir"/*; do
      # The kubelet's own unit names its files; it is not another user.
      [ ! -f "$file" ] || [ "${file##*/}" = kubelet.service ] || files+=("$file")
    done
  done
  [ "${#files[@]}" -eq 0 ] || users=$(grep -lF -- "$1" "${files[@]}" || true)
  if [ -n "$users" ]; then
    log "left $1 in place: ${users//$'\n'/, } use(s) it"
    echo "left $1: in use by ${users//$'\n'/ }"
    return 0
  fi
  rm -f "$1" || fail "cannot remove $1"
  echo "removed $1"
}

# --- holders of a step ------------------------------------------------------------------------
# Holders of a step on this node ($HOLDERS_DIR/$STEP): one per Pulumi resource whose create ran
# here (hold.sh). Pulumi replaces a step by creating the new resource and then deleting the old
# one with the old inputs; the count lets that old delete see that a newer create holds the step.
holder_count() {
  local count=0
  [ ! -f "$HOLDERS_DIR/$STEP" ] || count=$(<"$HOLDERS_DIR/$STEP")
  [[ "$count" =~ ^[0-9]+$ ]] || count=0
  echo "$count"
}

# hold_step create|update: a create adds a holder, an update keeps the one it is.
hold_step() {
  local count
  count=$(holder_count)
  case "$1" in
    create) count=$((count + 1)) ;;
    update) [ "$count" -ge 1 ] || count=1 ;;
    *) fail "hold_step: unknown mode '$1'" ;;
  esac
  write_state "$HOLDERS_DIR/$STEP" "$count"
}

# release_step: drop this resource's hold; succeeds only when it was the last holder.
release_step() {
  local count
  count=$(holder_count)
  if [ "$count" -gt 1 ]; then
    write_state "$HOLDERS_DIR/$STEP" $((count - 1))
    return 1
  fi
  rm -f "$HOLDERS_DIR/$STEP" || fail "cannot remove $HOLDERS_DIR/$STEP"
}
# One run of the project's steps at a time on this node (two checkouts, two backends, a CI job
# beside a person): interleaved, one run's rollback could undo what the other wrote. The lock is
# the kernel's (flock) and ends with the process that holds it, so a killed run leaves none.
ensure_dir "$STATE_DIR"
exec 9>>"$LOCK_FILE" || fail "cannot open $LOCK_FILE"
if ! flock -n 9; then
  log "waiting up to ${LOCK_WAIT_SECONDS}s for another homelab-kubelet run on this node ($(cat "$LOCK_FILE" 2>/dev/null || true))"
  flock -w "$LOCK_WAIT_SECONDS" 9 ||
    fail "another homelab-kubelet run holds this node: $(cat "$LOCK_FILE" 2>/dev/null || echo 'unknown run'); waited ${LOCK_WAIT_SECONDS}s. Let it finish, then run pulumi up again"
fi
# Who holds it, for the message above; a full disk must not fail the step here.
printf '%s (%s) since %s, pid %d\n' "$STEP" "$MODE" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$$" >"$LOCK_FILE" 2>/dev/null || true
# A failed configure-and-start puts the node back as it found it: every file this run changed gets
# its previous content back (a new one is removed), and kubelet and containerd run as before.
# When the step fails the state keeps the previous configuration, so the node must match it:
# otherwise reverting the stack config would be a no-op for Pulumi and the bad files would stay.
# "Failed" includes a dropped connection or any signal (lib.sh, run_exit_hooks).

ensure_dir "$STATE_DIR"
ROLLBACK_DIR=$(mktemp -d "$STATE_DIR/.rollback.XXXXXX") || fail "cannot create a directory in $STATE_DIR (df -h $STATE_DIR; is it full?)"
TEMP_PATHS+=("$ROLLBACK_DIR")
kubelet_was_active=$(systemctl is-active kubelet.service 2>/dev/null || true)
kubelet_was_enabled=$(systemctl is-enabled kubelet.service 2>/dev/null || true)

# shellcheck disable=SC2317,SC2329  # runs from run_exit_hooks
restore_kept() {
  local saved path
  restored=0
  containerd_touched=false
  while IFS=$'\t' read -r saved path; do
    if [ "$saved" = - ]; then rm -f "$path"; else mv -f "$ROLLBACK_DIR/$saved" "$path"; fi
    case "$path" in
      "$STATE_DIR"/*) ;;
      "$CONTAINERD_CONFIG" | "$CONTAINERD_DROPIN") restored=$((restored + 1)) containerd_touched=true ;;
      *) restored=$((restored + 1)) ;;
    esac
  done <"$ROLLBACK_DIR/manifest"
}

# shellcheck disable=SC2317,SC2329  # runs from run_exit_hooks
roll_back() {
  local status=$1 restored containerd_touched message
  [ "$status" -ne 0 ] && [ -s "$ROLLBACK_DIR/manifest" ] || return 0
  # Only the project's own bookkeeping changed (records, holders): put it back, touch nothing else.
  if ! cut -f2 "$ROLLBACK_DIR/manifest" | grep -qv "^$STATE_DIR/"; then
    restore_kept
    return 0
  fi
  systemctl stop kubelet.service 2>/dev/null
  [ "$kubelet_was_enabled" = enabled ] || systemctl disable --quiet --no-reload kubelet.service 2>/dev/null
  restore_kept
  systemctl daemon-reload
  [ "$containerd_touched" = false ] || systemctl restart containerd.service
  if [ "$kubelet_was_active" = active ]; then
    systemctl start kubelet.service
    message="rolled back: put back the $restored file(s) this run changed and restarted kubelet with its previous configuration"
  else
    message="rolled back: put back the $restored file(s) this run changed; kubelet stays stopped as it was"
  fi
  log "$message"
  # Also in the journal: after a dropped connection nobody reads stderr.
  logger -t homelab-kubelet "$STEP on $NODE_NAME failed (status $status); $message" 2>/dev/null
}
EXIT_HOOKS+=(roll_back)
# Write the kubelet configuration, systemd units, slices and the cgroup helper from the bundle
# on stdin; make the container runtime fit (cgroup driver, slice); enable the kubelet unit and
# reload systemd if needed.

ensure_dir "$STATIC_POD_PATH" "$KUBELET_DIR" "$STATE_DIR"
migrate_containerd_bookkeeping() {
  # An earlier homelab-kubelet kept containerd's original in $STATE_DIR: make it a record.
  local record
  record=$(record_of "$CONTAINERD_CONFIG")
  [ -f "$STATE_DIR/containerd-config-managed" ] || return 0
  if [ ! -f "$record" ] && [ -f "$CONTAINERD_CONFIG" ]; then
    local sum
    sum=$(sha256sum <"$CONTAINERD_CONFIG") || fail "cannot read $CONTAINERD_CONFIG"
    if [ -f "$STATE_DIR/containerd-config.toml.orig" ]; then
      ensure_dir "$OWNED_DIR"
      keep_for_rollback "$record.orig"
      keep_for_rollback "$STATE_DIR/containerd-config.toml.orig"
      mv -f "$STATE_DIR/containerd-config.toml.orig" "$record.orig" || fail "cannot move containerd's original config"
      write_state "$record" "replaced ${sum%% *}"
    else
      write_state "$record" "created ${sum%% *}"
    fi
  fi
  keep_for_rollback "$STATE_DIR/containerd-config-managed"
  rm -f "$STATE_DIR/containerd-config-managed" "$STATE_DIR/containerd-config.toml.orig"
}
migrate_containerd_bookkeeping
unpack_bundle

containerd_changed=false
case " ${CHANGED[*]} " in *" $CONTAINERD_DROPIN "*) containerd_changed=true ;; esac

if [ "$MANAGE_CONTAINERD_CGROUP_DRIVER" = true ] &&
  ! containerd config dump 2>/dev/null | grep -Eq '^\s*SystemdCgroup\s*=\s*true'; then
  # Generate first: a failing generator must not leave an empty config.toml behind. The
  # operator's own file is kept (lib.sh, records) and put back by `pulumi destroy`.
  default_config=$(containerd config default) || fail "containerd config default failed; cannot set SystemdCgroup"
  install_file "$CONTAINERD_CONFIG" 0644 < <(printf '%s\n' "$default_config" | sed -E 's/^(\s*SystemdCgroup\s*=\s*)false/\1true/')
  containerd_changed=true
fi

# One daemon-reload for everything (each costs seconds on a small node). Also when a unit file is
# newer than what systemd loaded: a run interrupted after writing it left no "changed" line.
systemctl enable --quiet --no-reload kubelet.service || fail "systemctl enable kubelet.service failed"
case " ${CHANGED[*]} " in *" $SYSTEMD_DIR/"*) systemd_changed=true ;; *) systemd_changed=false ;; esac
if [ "$systemd_changed" = true ] || [ "$containerd_changed" = true ] ||
  systemctl show -p NeedDaemonReload --value kubelet.service containerd.service | grep -qx yes; then
  systemctl daemon-reload
fi
if [ "$containerd_changed" = true ]; then
  systemctl restart containerd.service
  for _ in $(seq 1 30); do
    [ -S "$RUNTIME_SOCKET" ] && break
    sleep 1
  done
  [ -S "$RUNTIME_SOCKET" ] || fail "containerd did not come back after its restart (journalctl -u containerd)"
  log "restarted containerd (runc SystemdCgroup = true, Slice=$KUBE_SLICE)"
fi
# Start the kubelet when it is down, restart it only when a file it runs on changed since it was
# started (KUBELET_RUNS_ON: binary, credentials, configuration, units, containerd's config), and
# then check that it is healthy and stays so: "Started kubelet" and an `ok` from /healthz can come
# seconds before the container manager dies with a fatal error, so also watch the restart counter
# over a settle window and the journal for F-lines. Runs after configure.sh, which enabled the
# unit and reloaded systemd when needed.

# One line per file: the binary by identity (hashing it costs seconds on a small node, and
# install-kubelet always renames a new file into place), the rest by content; "absent" if missing.
kubelet_fingerprint() {
  local path hashed=()
  for path in "${KUBELET_RUNS_ON[@]}"; do
    if [ ! -e "$path" ]; then
      printf 'absent %s\n' "$path"
    elif [ "$path" = "$KUBELET_BINARY" ]; then
      stat -c 'file-%d-%i-%s-%Y %n' "$path"
    else
      hashed+=("$path")
    fi
  done
  [ "${#hashed[@]}" -eq 0 ] || sha256sum "${hashed[@]}"
}

fingerprint=$(kubelet_fingerprint)
reason=""
if ! systemctl is-active --quiet kubelet.service; then
  reason="it was not running"
elif [ -f "$KUBELET_RECORD" ]; then
  changed=$(awk 'NR == FNR { started[$2] = $1; next } started[$2] != $1 { printf " %s", $2 }' \
    "$KUBELET_RECORD" - <<<"$fingerprint")
  [ -z "$changed" ] || reason="changed since it started:$changed"
else
  # No record (a node set up before records were kept): a file newer than the running kubelet.
  since=$(date -d "$(systemctl show -p ExecMainStartTimestamp --value kubelet.service)" +%s 2>/dev/null || echo 0)
  existing=()
  for path in "${KUBELET_RUNS_ON[@]}"; do [ ! -e "$path" ] || existing+=("$path"); done
  changed=$(stat -c '%Y %n' "${existing[@]}" | awk -v since="$since" '$1 >= since { printf " %s", $2 }')
  [ -z "$changed" ] || reason="newer than the running kubelet:$changed"
fi

restart_and_check() {
  started=$(date +%s)
  systemctl restart kubelet.service
  log "kubelet (re)started ($reason); waiting up to ${HEALTH_TIMEOUT}s for /healthz on 127.0.0.1:$HEALTHZ_PORT"

  healthz() { curl -fsS --max-time 5 "http://127.0.0.1:$HEALTHZ_PORT/healthz" 2>/dev/null || true; }
  restarts() { systemctl show -p NRestarts --value kubelet.service; }
  fatal_lines() {
    journalctl -u kubelet.service --since "@$started" -o cat --no-pager 2>/dev/null | grep -E '^F[0-9]{4} ' || true
  }

  problem=""
  while :; do
    if systemctl is-active --quiet kubelet.service && [ "$(healthz)" = ok ]; then
      break
    fi
    if [ $(($(date +%s) - started)) -ge "$HEALTH_TIMEOUT" ]; then
      problem="not healthy within ${HEALTH_TIMEOUT}s (systemctl is-active: $(systemctl is-active kubelet.service || true), /healthz: '$(healthz)')"
      break
    fi
    sleep 2
  done

  if [ -z "$problem" ]; then
    before=$(restarts)
    sleep "$SETTLE_SECONDS"
    after=$(restarts)
    if [ "$before" != "$after" ]; then
      problem="restarted $((after - before)) time(s) during the ${SETTLE_SECONDS}s settle window"
    elif ! systemctl is-active --quiet kubelet.service; then
      problem="stopped during the ${SETTLE_SECONDS}s settle window"
    elif [ -n "$(fatal_lines)" ]; then
      problem="logged a fatal error"
    fi
  fi

  if [ -n "$problem" ]; then
    journal=$(journalctl -u kubelet.service --since "@$started" -o cat --no-pager 2>/dev/null || true)
    {
      printf 'ERROR [%s]: kubelet %s\n' "$NODE_NAME" "$problem"
      printf -- '--- last lines of journalctl -u kubelet.service ---\n'
      printf '%s\n' "$journal" | tail -n "$JOURNAL_LINES"
      printf -- '---\n'
      for index in "${!HINT_PATTERNS[@]}"; do
        # grep: 0 a match, 1 none, 2 a pattern PCRE refuses (say so rather than lose the hint).
        if line=$(grep -P -m1 -e "${HINT_PATTERNS[$index]}" <<<"$journal" 2>&1); then
          printf '%s\n    matched: %s\n' "${HINT_TEXTS[$index]}" "${line:0:300}"
        elif [ $? -ge 2 ]; then
          printf 'homelab-kubelet: hint pattern %d is not valid for grep -P (%s); please report it\n' \
            "$index" "${line:0:200}"
        fi
      done
    } >&2
    exit 1
  fi
  log "kubelet is healthy: active, /healthz ok, no restart and no fatal line over ${SETTLE_SECONDS}s"
}

if [ -n "$reason" ]; then
  restart_and_check
  report="kubelet restarted: $reason"
else
  report="kubelet not restarted: nothing it runs on changed since it started"
  log "$report"
fi
write_state "$KUBELET_RECORD" "$fingerprint"
echo "$report"
# After start-kubelet.sh: has the node registered with the API server? Asked with the node's own
# certificate (the identity the kubelet registers with, which the Node authorizer lets read its
# own Node): GET /api/v1/nodes/<name>. Only ever a report, never a failure: a lab without a
# control plane, or a homelab whose API server is down, still converges, and the kubelet keeps
# trying to register on its own. Every command here is guarded: this part must not end the run.

# Prints curl's error line (if any) and, last, "HTTP <code>" (000 when nothing answered).
registration_answer() {
  curl -sS --connect-timeout 5 --max-time 10 --cacert "$CA_CERT" --cert "$NODE_CERT" --key "$NODE_KEY" \
    -o /dev/null -w '\nHTTP %{http_code}\n' "$API_SERVER/api/v1/nodes/$NODE_NAME" 2>&1 || true
}
registration_warning() { printf 'WARNING [%s]: %s\n' "$NODE_NAME" "$*" >&2 || true; }

registration_waited=0
while :; do
  answer=$(registration_answer)
  code=$(sed -n 's/^HTTP \([0-9][0-9][0-9]\)$/\1/p' <<<"$answer" | tail -n 1)
  # A kubelet registers within seconds of its start; give a fresh one a little longer.
  if [ "$code" != 404 ] || [ "$registration_waited" -ge "$REGISTRATION_WAIT" ]; then
    break
  fi
  sleep 2
  registration_waited=$((registration_waited + 2))
done
curl_error=$(grep -m1 '^curl: (' <<<"$answer" || true)
case "${code:-000}" in
  200) log "registered: the API server $API_SERVER has node $NODE_NAME" ;;
  404) registration_warning "node $NODE_NAME is not registered with the API server $API_SERVER" \
    "(not found after ${registration_waited}s); the kubelet keeps trying: see journalctl -u kubelet" ;;
  401) registration_warning "the API server $API_SERVER refuses the node's certificate (401 Unauthorized):" \
    "its --client-ca-file must hold the stack's CA (import the cluster's CA: pki.importCa)" ;;
  403) registration_warning "the API server $API_SERVER forbids node $NODE_NAME to read its own Node (403):" \
    "run it with --authorization-mode=Node,RBAC" ;;
  000)
    case "$curl_error" in
      "curl: (60)"*) registration_warning "the API server $API_SERVER has a certificate that the stack's CA" \
        "did not sign, so the kubelet does not trust it either (x509: certificate signed by unknown" \
        "authority): import the cluster's CA (pki.importCa) ($curl_error)" ;;
      *) registration_warning "node $NODE_NAME is not registered: no API server answers at $API_SERVER" \
        "(${curl_error:-no answer}); the kubelet registers once one does" ;;
    esac
    ;;
  *) registration_warning "the API server $API_SERVER answered HTTP $code for node $NODE_NAME" ;;
esac
# The create or update succeeded: this resource holds the step on the node (see release.sh).
hold_step "$MODE"
# The run reached its end: a success (lib.sh, run_exit_hooks).
STEP_DONE=true
