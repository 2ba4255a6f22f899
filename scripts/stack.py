"""Run `pulumi preview|up|destroy` on a stack of this project through the Automation API.

The offline path of `scripts/up`: `__main__.py` runs as an inline program hosted by the Pulumi
SDK's in-process language server, with the real CLI and provider plugins, so no
`pulumi-language-python` binary is needed (its Go module is not served here). With Pulumi
installed the official way, plain `pulumi up` does the same.

Usage: venv/bin/python scripts/stack.py {preview,up,destroy} STACK [--diff] [--exclude-protected]
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent


def run_program() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("operation", choices=("preview", "up", "destroy"))
    parser.add_argument("stack")
    parser.add_argument("--diff", action="store_true", help="show the diff of every change")
    parser.add_argument("--exclude-protected", action="store_true", help="destroy: keep protected resources")
    args = parser.parse_args()

    stack = auto.create_or_select_stack(
        args.stack,
        project_name="homelab-kubelet",
        program=run_program,
        opts=auto.LocalWorkspaceOptions(work_dir=str(ROOT)),
    )
    try:
        if args.operation == "preview":
            stack.preview(on_output=print, diff=args.diff, color="auto")
        elif args.operation == "up":
            stack.up(on_output=print, diff=args.diff, color="auto")
        else:
            stack.destroy(on_output=print, exclude_protected=args.exclude_protected, color="auto")
    except auto.errors.CommandError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
