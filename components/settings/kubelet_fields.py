"""`kubelet.config`, `kubelet.featureGates` and `nodes[].extraArgs` against the kubelet release's
own table (components/kubelet_api.py): field names and value types of KubeletConfiguration
v1beta1, the feature gates and their locks, the deprecated flags.

Each function returns problems as `key path: message` lines, as the rest of the settings do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, get_args

from components import kubelet_flags
from components.kubelet_api import KubeletApi
from components.quantities import QUANTITY_PATTERN
from components.settings.models import EvictionSignal, eviction_threshold_problem
from components.settings.types import go_duration_ns

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _value(api: KubeletApi, go_type: str, value: Any, where: str) -> tuple[Any, list[str]]:
    """`value` as it goes into kubelet-config.yaml (a whole float as an int), and its problems
    against the Go type of its field."""
    bare = go_type.lstrip("*")
    struct = api.struct_of(go_type)
    if bare.startswith("[]") and struct is not None:
        if not isinstance(value, list):
            return value, [f"{where}: {value!r} is not a list (of {struct})"]
        items = [_value(api, struct, item, f"{where}[{index}]") for index, item in enumerate(value)]
        return [item for item, _ in items], [problem for _, found in items for problem in found]
    if struct is not None:
        return struct_value(api, struct, value, where)
    if bare == "bool":
        return value, [] if isinstance(value, bool) else [f"{where}: {value!r} is not true or false"]
    if bare in INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        low, high = INT_RANGES[bare]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return value, [f"{where}: {value!r} is not a whole number ({bare})"]
        return value, []
    if bare == "float64":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value, [] if ok else [f"{where}: {value!r} is not a number"]
    if bare == "string":
        return value, [] if isinstance(value, str) else [f"{where}: {value!r} is not text"]
    if bare == "metav1.Duration":
        try:
            go_duration_ns(value if isinstance(value, str) else "")
        except ValueError:
            return value, [f"{where}: {value!r} is not a duration such as '30s' or '1m30s'"]
        return value, []
    if bare == "[]string":
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        return value, [] if ok else [f"{where}: {value!r} is not a list of text"]
    if bare.startswith("map[string]"):
        item_type = bare.removeprefix("map[string]")
        if not isinstance(value, Mapping):
            return value, [f"{where}: {value!r} is not a map"]
        checked = {key: _value(api, item_type, item, f"{where}.{key}") for key, item in value.items()}
        return {key: item for key, (item, _) in checked.items()}, [p for _, found in checked.values() for p in found]
    # A type from another package (logging, tracing, taints) or a named string type: the kubelet's
    # strict decoding reports what is wrong inside (catalogue entry kubelet-config-unknown-field).
    return value, []


def struct_value(api: KubeletApi, struct: str, value: Any, where: str) -> tuple[Any, list[str]]:
    if not isinstance(value, Mapping):
        return value, [f"{where}: {value!r} is not a map (of {struct}'s fields)"]
    fields = api.structs[struct]
    result: dict[str, Any] = {}
    problems: list[str] = []
    for key, item in value.items():
        if key not in fields:
            problems.append(
                f"{where}.{key}: not a field of {struct} in kubelet {api.minor}"
                + kubelet_flags.closest(str(key), tuple(fields))
            )
            continue
        result[key], found = _value(api, fields[key], item, f"{where}.{key}")
        problems += found
    return result, problems


def config_problems(api: KubeletApi, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`kubelet.config` as rendered and its problems: every key a KubeletConfiguration field of
    this release, of the right type, and none the program renders or sets itself."""
    result: dict[str, Any] = {}
    problems: list[str] = []
    fields = api.fields
    for key, value in config.items():
        where = f"kubelet.config.{key}"
        refusal = kubelet_flags.field_refusal(key)
        if refusal is not None:
            problems.append(f"{where}: cannot be set here: {refusal}")
            continue
        if key not in fields:
            problems.append(
                f"{where}: not a KubeletConfiguration (v1beta1) field of kubelet {api.minor}"
                + kubelet_flags.closest(key, tuple(fields))
            )
            continue
        result[key], found = _value(api, fields[key], value, where)
        problems += found
        if found:
            continue
        if isinstance(value, Mapping):
            for nested, setting in kubelet_flags.NESTED_TYPED_FIELDS.items():
                top, _, inner = nested.partition(".")
                if top == key and inner in value:
                    problems.append(f"{where}.{inner}: cannot be set here: use {setting}")
    if not problems:
        problems = eviction_problems(result)
    return result, problems


# The kubelet's eviction signals (pkg/kubelet/eviction/api/types.go, helpers.go signalToResource).
EVICTION_SIGNALS = (
    *get_args(EvictionSignal), "containerfs.available", "containerfs.inodesFree", "allocatableMemory.available",
)


def eviction_problems(config: Mapping[str, Any]) -> list[str]:
    """What the kubelet's eviction manager refuses of kubelet.config's soft eviction and minimum
    reclaim maps (pkg/kubelet/eviction/helpers.go ParseThresholdConfig); their types are checked
    already."""
    problems = []
    soft = config.get("evictionSoft", {})
    grace = config.get("evictionSoftGracePeriod", {})
    reclaim = config.get("evictionMinimumReclaim", {})
    maps = (("evictionSoft", soft), ("evictionSoftGracePeriod", grace), ("evictionMinimumReclaim", reclaim))
    for field, entries in maps:
        for signal in entries:
            if signal not in EVICTION_SIGNALS:
                problems.append(
                    f"kubelet.config.{field}.{signal}: not an eviction signal of the kubelet"
                    + kubelet_flags.closest(signal, EVICTION_SIGNALS)
                )
    for signal, threshold in soft.items():
        problem = eviction_threshold_problem(threshold)
        if problem is not None:
            problems.append(f"kubelet.config.evictionSoft.{signal}: {problem}")
        if signal not in grace:
            problems.append(
                f"kubelet.config.evictionSoft.{signal}: the kubelet refuses a soft threshold without a grace "
                f"period: add kubelet.config.evictionSoftGracePeriod.{signal} (e.g. 1m30s)"
            )
    for signal, period in grace.items():
        try:
            negative = go_duration_ns(period) < 0
        except ValueError as error:
            problems.append(f"kubelet.config.evictionSoftGracePeriod.{signal}: {error}")
            continue
        if negative:
            problems.append(
                f"kubelet.config.evictionSoftGracePeriod.{signal}: {period!r}: the kubelet refuses a negative one"
            )
    for signal, amount in reclaim.items():
        percent = re.fullmatch(r"(\d+(\.\d+)?)%", amount)
        if percent and float(percent[1]) <= 0:
            problems.append(
                f"kubelet.config.evictionMinimumReclaim.{signal}: {amount!r}: the kubelet wants a positive share"
            )
        elif not percent and not QUANTITY_PATTERN.fullmatch(amount):
            problems.append(
                f"kubelet.config.evictionMinimumReclaim.{signal}: {amount!r} is neither a quantity (500Mi) nor a "
                "percentage (5%)"
            )
    return problems


def feature_gate_problems(api: KubeletApi, gates: Mapping[str, bool]) -> list[str]:
    """What the kubelet's feature gate set refuses at start: an unknown gate, or a locked one
    set against its lock (component-base featuregate SetFromMap)."""
    problems = []
    for name, enabled in gates.items():
        where = f"kubelet.featureGates.{name}"
        gate = api.feature_gates.get(name)
        if gate is None:
            problems.append(
                f"{where}: not a feature gate of kubelet {api.minor}"
                + kubelet_flags.closest(name, tuple(api.feature_gates))
            )
        elif gate.lock_to_default and enabled != gate.default:
            problems.append(
                f"{where}: {str(enabled).lower()}: the gate is {gate.pre_release} and locked to "
                f"{str(gate.default).lower()} in kubelet {api.minor}; remove it"
            )
    return problems


def gate_enabled(api: KubeletApi, gates: Mapping[str, bool], name: str) -> bool:
    """Whether the kubelet runs with gate `name` on: the stack's value, else AllAlpha/AllBeta for
    a gate of that stage, else the gate's default."""
    if name in gates:
        return gates[name]
    gate = api.feature_gates[name]
    toggle = {"Alpha": "AllAlpha", "Beta": "AllBeta"}.get(gate.pre_release)
    if toggle is not None and toggle in gates and not gate.lock_to_default:
        return gates[toggle]
    return gate.default
