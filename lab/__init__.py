"""Local lab: three small Debian 12 VMs (qemu, user-mode networking) that stand in for the
homelab nodes k8s-master, k8s-node1 and k8s-node2, plus a local kubelet download mirror.

Command line: ``python -m lab up|down|status|ssh|image|mirror``. Python API: :mod:`lab.api`.
"""
