"""The config's defaults have one source, the models (components/settings/models.py).

Pulumi.yaml's schema (`default:` blocks, and the values its descriptions give in parentheses)
and README's config table repeat them for readers and the Pulumi CLI; these tests fail when
either disagrees with a model.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from components.settings import (
    KubeletSettings,
    KubernetesSettings,
    PkiSettings,
    Reservations,
    RolloutSettings,
    SshSettings,
)
from tests.stack_config import REPO

SECTIONS: dict[str, type[BaseModel]] = {
    "kubernetes": KubernetesSettings,
    "ssh": SshSettings,
    "kubelet": KubeletSettings,
    "reservations": Reservations,
    "pki": PkiSettings,
    "rollout": RolloutSettings,
}


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    """alias -> default, for every field with a default worth writing down: not None, not
    empty, not a nested object (those are described by their own fields)."""
    found = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            continue
        value = field.get_default(call_default_factory=True)
        if value is None or value in ({}, ()) or isinstance(value, BaseModel):
            continue
        found[field.alias or name] = value
    return found


def _as_readme(value: Any) -> str:
    """How README's table writes a default: numbers and booleans plain, text in backticks."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(value) + "]`"
    if isinstance(value, dict):
        return "`" + ", ".join(f"{key}: {item}" for key, item in value.items()) + "`"
    raise AssertionError(f"no README form for {value!r}")


def _as_schema_text(value: Any) -> str:
    """How Pulumi.yaml's descriptions write a default: plain, without backticks."""
    return _as_readme(value).strip("`")


def _readme_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    table = text.split("| key | fields (default) |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        found = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if found:
            rows[found[1]] = found[2]
    return rows


def _schema() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    return config


def test_the_tables_name_every_section() -> None:
    assert set(SECTIONS) | {"nodes"} == set(_readme_rows()) == set(_schema())


@pytest.mark.parametrize("section", SECTIONS)
def test_schema_default_blocks_are_the_models_defaults(section: str) -> None:
    # The Pulumi CLI hands an unset key its schema default: it must parse to the model's own
    # defaults, or a stack without the key would get other values than the models say.
    schema = _schema()[section]
    if "default" not in schema:
        return
    model = SECTIONS[section]
    assert model.model_validate(schema["default"]) == model.model_validate({}), section


@pytest.mark.parametrize("section", SECTIONS)
def test_schema_descriptions_give_the_models_defaults(section: str) -> None:
    description = _schema()[section]["description"]
    for alias, value in _defaults(SECTIONS[section]).items():
        given = re.search(rf"\b{re.escape(alias)} \(([^)]*)", description)
        if given is not None:  # a field the description names with a value in parentheses
            assert given[1].startswith(_as_schema_text(value)), (section, alias, given[1], value)


@pytest.mark.parametrize("section", SECTIONS)
def test_readme_config_table_gives_the_models_defaults(section: str) -> None:
    row = _readme_rows()[section]
    for alias, value in _defaults(SECTIONS[section]).items():
        given = re.search(rf"`{re.escape(alias)}` \(([^)]*)", row)
        assert given is not None, f"README's {section} row gives no default for {alias} ({_as_readme(value)})"
        assert given[1].startswith(_as_readme(value)), (section, alias, given[1], value)
