"""Extract what the program checks kubelet settings against from the kubelet's own Go sources.

From the Go module cache that scripts/toolchain fills (`~/.cache/homelab-kubelet/go/mod`), for
one Kubernetes release, this prints as JSON:

- `structs`: every struct of KubeletConfiguration v1beta1 (`k8s.io/kubelet` config/v1beta1
  types.go, the type the real kubelet decodes its file into): JSON field name -> Go type;
- `configFlags`: every flag of `AddKubeletConfigFlags` (`k8s.io/kubernetes`
  cmd/kubelet/app/options/options.go, with the logging flags of component-base's logs API) ->
  the dotted KubeletConfiguration field it sets; all of them are deprecated except
  `notDeprecated` (the list the kubelet keeps in that function);
- `deprecatedFlags`: the kubelet's other flags it marks deprecated -> its deprecation message;
- `featureGates`: every feature gate the kubelet knows (the kube, apiserver, apiextensions,
  client-go, logging and metrics gates and AllAlpha/AllBeta) -> default, stage and lock.

The output is committed as components/data/kubelet-<minor>.json, so neither the program nor
its fast tests need a Go toolchain; `tests/test_toolchain.py` rerun this against the module
cache and compare.

Usage: python scripts/kubelet_config_fields.py <go module cache dir> <kubernetes version>
(for example ~/.cache/homelab-kubelet/go/mod v1.30.1).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

STRUCT = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.DOTALL | re.MULTILINE)
FIELD = re.compile(r'^\s+(\w+)\s+([\w.\[\]*]+)\s+`json:"([^",]*)', re.MULTILINE)
EMBEDDED = re.compile(r'^\s+(\w+)\s+`json:",inline"`', re.MULTILINE)
# `fs.BoolVar(&c.EnableServer, "enable-server", ...)`, `fs.Var(cliflag.NewMapStringBool(&c.FeatureGates),
# "feature-gates", ...)`, `fs.Var(&utilflag.IPVar{Val: &c.Address}, "address", ...)`: the first
# `&c.<path>` of a call, then its first string literal, the flag name.
FLAG = re.compile(r'fs\.\w+\([^"]*?&c\.([\w.]+)[^"]*?"([a-z0-9-]+)"', re.DOTALL)
NOT_DEPRECATED = re.compile(r'notDeprecated := map\[string\]bool\{(.*?)\}', re.DOTALL)
MARK_DEPRECATED = re.compile(r'fs\.MarkDeprecated\("([a-z0-9-]+)",\s*"([^"]*)"\)')
GATE_NAME = re.compile(r'^\s*(\w+)\s+(?:featuregate\.)?Feature\s*=\s*"(\w+)"', re.MULTILINE)
GATE_SPEC = re.compile(
    r"^\s*(\w+(?:\.\w+)?):\s*\{Default:\s*(\w+),\s*PreRelease:\s*(?:featuregate\.)?(\w+)"
    r"(?:,\s*LockToDefault:\s*(\w+))?\}",
    re.MULTILINE,
)
MARSHALS = re.compile(r"^func \(\w+ \*?(\w+)\) MarshalJSON\(", re.MULTILINE)
BOOL_CONST = re.compile(r"^\s*(\w+)\s*=\s*(true|false)\s*$", re.MULTILINE)


class Struct:
    """A Go struct: Go field name -> (JSON name, Go type), and its inline embedded structs."""

    def __init__(self, body: str) -> None:
        self.fields = {go: (json_name, go_type) for go, go_type, json_name in FIELD.findall(body)}
        self.embedded = EMBEDDED.findall(body)


def structs_of(source: str) -> dict[str, Struct]:
    """The structs of a Go file that serialize as objects (one with its own MarshalJSON, such as
    logs' TimeOrMetaDuration, is a value)."""
    values = set(MARSHALS.findall(source))
    return {name: Struct(body) for name, body in STRUCT.findall(source) if name not in values}


def json_fields(structs: dict[str, Struct]) -> dict[str, dict[str, str]]:
    """struct -> JSON field name -> Go type, without `json:"-"` fields."""
    return {
        name: {json_name: go_type for json_name, go_type in struct.fields.values() if json_name and json_name != "-"}
        for name, struct in structs.items()
    }


def _lookup(structs: dict[str, Struct], struct_name: str, go_name: str) -> tuple[str, str] | None:
    struct = structs.get(struct_name)
    if struct is None:
        return None
    if go_name in struct.fields:
        return struct.fields[go_name]
    for embedded in struct.embedded:
        found = _lookup(structs, embedded, go_name)
        if found is not None:
            return found
    return None


def json_path(structs: dict[str, Struct], root: str, go_path: str) -> str:
    """`Authentication.Webhook.CacheTTL.Duration` -> `authentication.webhook.cacheTTL`: the Go
    field path walked through the structs, stopping at a value type (metav1.Duration, ...)."""
    names: list[str] = []
    current: str | None = root
    for go_name in go_path.split("."):
        if current is None:
            break  # inside a value type such as metav1.Duration
        found = _lookup(structs, current, go_name)
        if found is None:
            raise SystemExit(f"cannot map {root}.{go_path}: no field {go_name} in {current}")
        json_name, go_type = found
        names.append(json_name)
        bare = go_type.lstrip("*").rsplit(".", 1)[-1]
        current = bare if bare in structs else None
    return ".".join(names)


def function_body(source: str, signature: str) -> str:
    start = source.index(signature)
    return source[start:source.index("\n}\n", start)]


def config_flags(kubernetes: Path, component_base: Path, kubelet_structs: dict[str, Struct]) -> tuple[
    dict[str, str], list[str]
]:
    options = (kubernetes / "cmd/kubelet/app/options/options.go").read_text()
    body = function_body(options, "func AddKubeletConfigFlags(")
    flags = {flag: json_path(kubelet_structs, "KubeletConfiguration", go_path) for go_path, flag in FLAG.findall(body)}
    not_deprecated = sorted(re.findall(r'"([a-z0-9-]+)"', NOT_DEPRECATED.search(body).group(1)))  # type: ignore[union-attr]
    # logsapi.AddFlags(&c.Logging, fs): the logging flags, fields of `logging`.
    logs_dir = component_base / "logs/api/v1"
    logs_structs = structs_of((logs_dir / "types.go").read_text())
    logs_options = (logs_dir / "options.go").read_text()
    logs_body = function_body(logs_options, "func addFlags(c *LoggingConfiguration, fs flagSet)")
    names = {"LogFlushFreqFlagName": "log-flush-frequency"}
    for match in re.finditer(r'fs\.\w+\([^,]*?&c\.([\w.]+)[^,]*,\s*(?:"([a-z0-9-]+)"|(\w+))', logs_body):
        go_path, literal, constant = match.groups()
        flag = literal or names[constant]
        flags[flag] = "logging." + json_path(logs_structs, "LoggingConfiguration", go_path)
    return dict(sorted(flags.items())), not_deprecated


def deprecated_flags(kubernetes: Path) -> dict[str, str]:
    options = (kubernetes / "cmd/kubelet/app/options/options.go").read_text()
    body = function_body(options, "func (f *KubeletFlags) AddFlags(")
    return dict(sorted(MARK_DEPRECATED.findall(body)))


def _gates(path: Path, names: dict[str, str], prefix: str = "") -> dict[str, dict[str, Any]]:
    """The feature specs of `path`'s maps, by gate name (identifiers resolved through `names`)."""
    source = path.read_text()
    constants = dict(BOOL_CONST.findall(source))
    gates: dict[str, dict[str, Any]] = {}
    for ident, default, stage, lock in GATE_SPEC.findall(source):
        qualifier, _, bare = ident.rpartition(".")
        key = f"{qualifier}.{bare}" if qualifier else prefix + bare
        if key not in names:
            raise SystemExit(f"{path}: cannot resolve the feature gate {ident}")
        value = constants.get(default, default)
        if value not in ("true", "false"):
            raise SystemExit(f"{path}: cannot resolve the default {default} of {ident}")
        gates[names[key]] = {"default": value == "true", "preRelease": stage, "lockToDefault": lock == "true"}
    return gates


def feature_gates(mod: Path, version: str) -> dict[str, dict[str, Any]]:
    staging = "v0." + version.removeprefix("v1.")
    k8s = mod / "k8s.io"
    files = {
        "": k8s / f"kubernetes@{version}/pkg/features/kube_features.go",
        "genericfeatures.": k8s / f"apiserver@{staging}/pkg/features/kube_features.go",
        "apiextensionsfeatures.": k8s / f"apiextensions-apiserver@{staging}/pkg/features/kube_features.go",
    }
    names: dict[str, str] = {}
    for prefix, path in files.items():
        names.update({prefix + ident: name for ident, name in GATE_NAME.findall(path.read_text())})
    gates = _gates(files[""], names)
    for extra in (
        k8s / f"client-go@{staging}/features/known_features.go",
        k8s / f"component-base@{staging}/logs/api/v1/kube_features.go",
        k8s / f"component-base@{staging}/metrics/features/kube_features.go",
    ):
        own = {ident: name for ident, name in GATE_NAME.findall(extra.read_text())}
        gates.update(_gates(extra, own))
    # component-base/featuregate: the two global toggles every gate set has.
    for toggle in ("AllAlpha", "AllBeta"):
        gates[toggle] = {"default": False, "preRelease": "Alpha", "lockToDefault": False}
    return dict(sorted(gates.items()))


def extract(mod: Path, version: str) -> dict[str, Any]:
    staging = "v0." + version.removeprefix("v1.")
    kubelet = mod / "k8s.io" / f"kubelet@{staging}"
    kubernetes = mod / "k8s.io" / f"kubernetes@{version}"
    component_base = mod / "k8s.io" / f"component-base@{staging}"
    kubelet_structs = structs_of((kubelet / "config/v1beta1/types.go").read_text())
    flags, not_deprecated = config_flags(kubernetes, component_base, kubelet_structs)
    return {
        "kubernetesVersion": version,
        "modules": [path.name for path in (kubelet, kubernetes, component_base)],
        "structs": json_fields(kubelet_structs),
        "configFlags": flags,
        "notDeprecated": not_deprecated,
        "deprecatedFlags": deprecated_flags(kubernetes),
        "featureGates": feature_gates(mod, version),
    }


def main() -> None:
    mod, version = Path(sys.argv[1]).expanduser(), sys.argv[2]
    print(json.dumps(extract(mod, version), indent=1, sort_keys=False))


if __name__ == "__main__":
    main()
