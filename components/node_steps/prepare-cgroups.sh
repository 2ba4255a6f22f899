#!/usr/bin/env bash
# ExecStartPre of kubelet.service, installed by homelab-kubelet.
# Usage: prepare-cgroups KUBE_SLICE SYSTEM_SLICE
# On cgroup v1 systemd never creates the cpuset and hugetlb directories of a slice, and the
# kubelet refuses to enforce a reservation on a cgroup missing under any controller
# ("cgroup does not exist"). /sys/fs/cgroup is rebuilt at boot, so this runs at every start.
# On cgroup v2 systemd's slices are complete; a v1 path made there would be a junk cgroup.
set -euo pipefail
kube_slice=$1
system_slice=$2
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  exit 0
fi
for controller in cpuset hugetlb cpu,cpuacct memory pids systemd; do
  [ -d "/sys/fs/cgroup/$controller" ] || continue
  for slice in "$kube_slice" "$system_slice"; do
    mkdir -p "/sys/fs/cgroup/$controller/$slice"
  done
done
