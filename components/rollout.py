"""Rollouts: how far a change may spread before the nodes it reached have passed their health check.

With `rollout.maxParallel: k`, node i (in the stack's order) starts writing (install-kubelet,
credentials, configure-and-start) only after node i - k's configure-and-start succeeded, that is
after its kubelet passed the health check. A change that breaks the kubelet then stops at the first
k nodes: Pulumi starts no step whose dependency failed, so the other nodes keep what they run.
Preflight and node-address write nothing and run on every node at once.
"""

from __future__ import annotations


def predecessors(node_count: int, max_parallel: int | None) -> list[int | None]:
    """For each node index, the index of the node whose configure-and-start it waits for, or None."""
    if max_parallel is None:
        return [None] * node_count
    return [index - max_parallel if index >= max_parallel else None for index in range(node_count)]
