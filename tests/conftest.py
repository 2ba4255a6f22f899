"""Tests marked ``arm64`` (the emulated arm64 node: its image build and boot take tens of minutes
under TCG, more than CI's budget leaves) run only when the marker expression names them, e.g.
``pytest -m arm64`` (scripts/test-arm64); any other run, CI's included, deselects them."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "arm64" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("arm64")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("arm64")]
