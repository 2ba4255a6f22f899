"""scripts/stack.py (the offline path of scripts/up) takes `pulumi up`'s own flags."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "stack.py"


def stack_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stack_cli", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arguments(*argv: str) -> dict[str, object]:
    cli = stack_cli()
    values = cli.operation_arguments(cli.parser().parse_args(list(argv)))
    return {key: value for key, value in values.items() if value is not None}


def test_up_takes_pulumi_up_flags() -> None:
    assert arguments("up", "lab", "--yes", "--skip-preview", "--diff", "-t", "urn:a", "--target", "urn:b",
                     "--replace", "urn:c", "--continue-on-error", "--parallel", "4", "-m", "why") == {
        "diff": True, "target": ["urn:a", "urn:b"], "replace": ["urn:c"], "continue_on_error": True,
        "parallel": 4, "message": "why",
    }
    assert arguments("up", "lab") == {"diff": False}


def test_destroy_and_preview_take_theirs_and_refuse_the_others() -> None:
    assert arguments("destroy", "lab", "--exclude-protected", "--yes") == {"diff": False, "exclude_protected": True}
    assert arguments("preview", "homelab", "--diff", "--expect-no-changes") == {"diff": True, "expect_no_changes": True}
    with pytest.raises(SystemExit, match="destroy does not take --replace"):
        arguments("destroy", "lab", "--replace", "urn:x")
    with pytest.raises(SystemExit, match="--exclude-protected goes with destroy"):
        arguments("up", "lab", "--exclude-protected")
    with pytest.raises(SystemExit):
        arguments("up", "lab", "--no-such-flag")
