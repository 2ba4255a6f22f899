"""Read a `Pulumi.<stack>.yaml` the way the program sees it, for tests.

    from tests.stack_config import homelab_config, load_stack_config
    raw = homelab_config()            # {"kubernetes": {...}, "ssh": {...}, "nodes": [...], ...}
    settings = parse_settings(raw)

Only keys of this project's namespace (`homelab-kubelet:<key>`) are returned, without the
namespace; keys of other namespaces (`aws:region`, ...) are left out. Secure values
(`{"secure": "..."}`) are returned as they are written.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from components.settings import CONFIG_NAMESPACE

REPO = Path(__file__).resolve().parent.parent
HOMELAB_STACK = REPO / "Pulumi.homelab.yaml"
# Made-up host keys of the homelab stack's nodes in OpenSSH's known_hosts format (one hashed), for
# tests that run the program: it refuses nodes whose host key it cannot verify.
HOMELAB_KNOWN_HOSTS = REPO / "tests" / "data" / "homelab.known_hosts"


def load_stack_config(path: str | Path) -> dict[str, Any]:
    """`{key: value}` for every `homelab-kubelet:key` in the stack file's `config` section."""
    document = yaml.safe_load(Path(path).read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: `config` is not a mapping")
    prefix = f"{CONFIG_NAMESPACE}:"
    return {
        str(key).removeprefix(prefix): value
        for key, value in config.items()
        if str(key).startswith(prefix)
    }


@cache
def _homelab() -> dict[str, Any]:
    return load_stack_config(HOMELAB_STACK)


def homelab_config() -> dict[str, Any]:
    """The homelab stack's config; a fresh deep copy each call, so tests may mutate it."""
    return copy.deepcopy(_homelab())


def homelab_known_host(name: str) -> str:
    """The `TYPE BASE64` key tests/data/homelab.known_hosts holds for node `name`."""
    from components.settings import known_host_keys

    keys = known_host_keys(HOMELAB_KNOWN_HOSTS.read_text(), name, 22)
    assert len(keys) == 1, (name, keys)
    return keys[0]
