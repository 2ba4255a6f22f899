"""A throwaway copy of the project for the real engine (Automation API on the project directory).

The project files are copied unmodified, so `pulumi stack init` writes its encryption salt into
the copy and never into the repo's stack files; the state lives in a file backend beside the
copy. `project_stack` is a LocalWorkspace on the copy, the user's path: the CLI reads its
`Pulumi.yaml` (runtime options, config schema) and `Pulumi.<stack>.yaml`, and the Python language
host (the stand-in, standins/language_python/, on this project's machines) type-checks and runs its
`__main__.py` in a process of its own. `program_runner` hosts `__main__.py` in this process instead
(an Automation API inline program), for the benchmarks that measure the program alone.
"""

from __future__ import annotations

import runpy
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from pulumi import automation as auto

from tests.toolchain import env_with_toolchain, require_toolchain

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "components", "pyproject.toml")


def copy_project(destination: Path, stack_files: tuple[str, ...] = ()) -> Path:
    """The project files and `stack_files`, the latter without an `encryptionsalt:` line: the
    copy's stack is made with the caller's passphrase, whatever salt a local run left in the repo."""
    destination.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    for name in stack_files:
        lines = (REPO / name).read_text().splitlines(keepends=True)
        (destination / name).write_text("".join(line for line in lines if not line.startswith("encryptionsalt:")))
    (destination / "venv").symlink_to(REPO / "venv")
    return destination


def program_runner(project: Path) -> Callable[[], None]:
    """The project's `__main__.py`, unmodified, as an inline program."""

    def run() -> None:
        if str(project) not in sys.path:
            sys.path.insert(0, str(project))
        runpy.run_path(str(project / "__main__.py"), run_name="__main__")

    return run


def workspace_options(project: Path, state: Path, passphrase: str) -> auto.LocalWorkspaceOptions:
    """Options for the toolchain's CLI, a file backend at `state` and a fixed passphrase."""
    state.mkdir(parents=True, exist_ok=True)
    return auto.LocalWorkspaceOptions(
        work_dir=str(project),
        pulumi_command=auto.PulumiCommand(root=str(require_toolchain(language_host=False).parent)),
        env_vars={
            **env_with_toolchain(),
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
        },
    )


def project_stack(project: Path, stack_name: str, state: Path, passphrase: str) -> auto.Stack:
    """Create or select `stack_name` of the copied project, run by the CLI in the project directory
    (needs the language host: `scripts/install-language-standin` on the offline toolchain)."""
    require_toolchain()
    return auto.create_or_select_stack(
        stack_name, work_dir=str(project), opts=workspace_options(project, state, passphrase)
    )
