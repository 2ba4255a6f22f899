"""YAML text for the rendered files: block style, keys in the order given."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's emitter when PyYAML has it (about 10x faster, same text for these documents;
# the golden files check that), else the pure-Python one.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(document: Any) -> str:
    return str(yaml.dump(document, Dumper=_DUMPER, sort_keys=False, default_flow_style=False))
