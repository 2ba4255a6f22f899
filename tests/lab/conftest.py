"""Fixtures that boot the lab (python -m lab) once per cgroup mode and reuse a running lab.

The test files are named so that pytest runs the v2 ones before the v1 ones, each on a fresh
boot: the end-to-end modules before them end in v1 and leave cgroups behind (kube.slice's
directories on v1), which the kubelet cases that expect missing paths must not find. The
kubelet cases run kubelets of their own without an API server: the lab runs here without its
control plane (`control_plane=False` stops one an earlier module left running). At the end of
the session the lab is stopped again unless it was already up before (a developer's running
lab is left alone; LAB_KEEP=1 keeps it up in any case).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lab import api


def _lab_running() -> bool:
    info = api.status()
    return info is not None and all(api.health(info).values())


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    was_up = _lab_running()
    yield
    if not was_up and os.environ.get("LAB_KEEP") != "1":
        api.down()


@pytest.fixture(scope="module")
def lab_v2(lab_session: None) -> api.LabInfo:
    return api.up(cgroup="v2", control_plane=False)


@pytest.fixture(scope="module")
def lab_v1(lab_session: None) -> api.LabInfo:
    return api.up(cgroup="v1", control_plane=False)
