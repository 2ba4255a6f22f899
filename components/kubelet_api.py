"""What a kubelet release accepts: its KubeletConfiguration fields, flags and feature gates.

The facts come from the kubelet's own Go sources (scripts/kubelet_config_fields.py reads them
from the module cache scripts/toolchain fills) and are committed per minor release as
components/data/kubelet-<minor>.json; `tests/test_toolchain.py` extracts them again and
compares. The settings check `kubelet.config`, `kubelet.featureGates` and `nodes[].extraArgs`
against the table of the configured `kubernetes.version`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).with_name("data")
ROOT_STRUCT = "KubeletConfiguration"


@dataclass(frozen=True)
class FeatureGate:
    default: bool
    pre_release: str
    lock_to_default: bool


@dataclass(frozen=True)
class KubeletApi:
    """One minor release's KubeletConfiguration v1beta1, flags and feature gates."""

    version: str
    # struct name -> JSON field name -> Go type (`*bool`, `metav1.Duration`, `MemorySwapConfiguration`)
    structs: Mapping[str, Mapping[str, str]]
    # flag name (no dashes) -> the dotted KubeletConfiguration field it sets
    config_flags: Mapping[str, str]
    # the config flags the kubelet does not deprecate
    not_deprecated: frozenset[str]
    # the kubelet's other deprecated flags -> its deprecation message
    deprecated_flags: Mapping[str, str]
    feature_gates: Mapping[str, FeatureGate]

    @property
    def minor(self) -> str:
        """`v1.30`: the release the table stands for (read from one of its patch releases)."""
        return ".".join(self.version.split(".")[:2])

    @property
    def fields(self) -> Mapping[str, str]:
        """KubeletConfiguration's top-level fields -> Go type."""
        return self.structs[ROOT_STRUCT]

    def struct_of(self, go_type: str) -> str | None:
        """The struct a field of `go_type` holds (`*X`, `[]X` and `X` alike), if it is one of
        KubeletConfiguration's own structs."""
        bare = go_type.lstrip("*").removeprefix("[]").lstrip("*")
        return bare if bare in self.structs else None

    def deprecated_config_flag(self, flag: str) -> str | None:
        """The field a deprecated configuration flag sets, or None for any other flag."""
        if flag in self.not_deprecated:
            return None
        return self.config_flags.get(flag)


def _load(path: Path) -> KubeletApi:
    raw = json.loads(path.read_text())
    return KubeletApi(
        version=raw["kubernetesVersion"],
        structs=raw["structs"],
        config_flags=raw["configFlags"],
        not_deprecated=frozenset(raw["notDeprecated"]),
        deprecated_flags=raw["deprecatedFlags"],
        feature_gates={
            name: FeatureGate(spec["default"], spec["preRelease"], spec["lockToDefault"])
            for name, spec in raw["featureGates"].items()
        },
    )


def known_minors() -> tuple[str, ...]:
    """The minor releases with a table (`v1.30`, ...), oldest first."""
    minors = [path.stem.removeprefix("kubelet-") for path in DATA_DIR.glob("kubelet-v*.json")]
    return tuple(sorted(minors, key=lambda minor: tuple(int(part) for part in minor[1:].split("."))))


@cache
def kubelet_api(minor: str) -> KubeletApi | None:
    """The table of `minor` (`v1.30`), or None when the program has none."""
    path = DATA_DIR / f"kubelet-{minor}.json"
    return _load(path) if path.is_file() else None


def newest_api() -> KubeletApi:
    """The newest table: the flag checks of a release without a table of its own use it."""
    api = kubelet_api(known_minors()[-1])
    assert api is not None
    return api
