"""A throwaway copy of the project for the real engine (Automation API).

The project files are copied unmodified, so `pulumi stack init` writes its encryption salt into
the copy and never into the repo's stack files; the repo's venv is linked in (Pulumi.yaml says
`virtualenv: venv`); the state lives in a file backend beside the copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pulumi import automation as auto

from tests.toolchain import env_with_toolchain, require_toolchain

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "components", "pyproject.toml")


def copy_project(destination: Path, stack_files: tuple[str, ...] = ()) -> Path:
    destination.mkdir(parents=True)
    for name in (*PROJECT_FILES, *stack_files):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    (destination / "venv").symlink_to(REPO / "venv")
    return destination


def workspace_options(project: Path, state: Path, passphrase: str) -> auto.LocalWorkspaceOptions:
    """Options for the toolchain's CLI, a file backend at `state` and a fixed passphrase."""
    state.mkdir(parents=True, exist_ok=True)
    return auto.LocalWorkspaceOptions(
        work_dir=str(project),
        pulumi_command=auto.PulumiCommand(root=str(require_toolchain().parent)),
        env_vars={
            **env_with_toolchain(),
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
        },
    )
