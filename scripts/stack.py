"""Run `pulumi preview|up|destroy` on a stack of this project through the Automation API.

The offline path of `scripts/up`: `__main__.py` runs as an inline program hosted by the Pulumi
SDK's in-process language server, with the real CLI and provider plugins, so no
`pulumi-language-python` binary is needed (its Go module is not served here). With Pulumi
installed the official way, plain `pulumi up` does the same.

Usage: venv/bin/python scripts/stack.py {preview,up,destroy} STACK [pulumi's own flags]
       venv/bin/python scripts/stack.py config-file lab     (prints the lab stack's config file)
Takes the flags of `pulumi up` (and preview, destroy) that matter here: --yes, --skip-preview,
--diff, --target, --target-dependents, --replace, --exclude, --continue-on-error, --refresh,
--parallel, --message, --expect-no-changes, --exclude-protected. An Automation API run never asks
for confirmation, so --yes and --skip-preview change nothing.

The lab stack imports the CA of the lab's control plane (`pki.importCa`), which each machine
makes itself (lab/control_plane.py): its operations use a copy of Pulumi.lab.yaml that holds the
CA as the secrets caCertPem and caKeyPem (`--config-file`; `config-file lab` prints its path), so
the tracked stack file stays as it is.
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab import control_plane, paths  # noqa: E402  (the lab package lives in ROOT)

LAB_STACK = "lab"


def run_program() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("operation", choices=("preview", "up", "destroy", "config-file"))
    parse.add_argument("stack")
    parse.add_argument("--stack", "-s", dest="stack_flag", help="the stack (as pulumi's flag; must match STACK)")
    parse.add_argument("--yes", "-y", action="store_true", help="accepted; never asked anyway")
    parse.add_argument("--skip-preview", "-f", action="store_true", help="accepted; no separate preview is run")
    parse.add_argument("--diff", action="store_true", help="show the diff of every change")
    parse.add_argument("--target", "-t", action="append", default=None, help="URN to operate on (repeatable)")
    parse.add_argument("--target-dependents", action="store_true")
    parse.add_argument("--replace", action="append", default=None, help="URN to replace (repeatable)")
    parse.add_argument("--exclude", action="append", default=None, help="URN to leave out (repeatable)")
    parse.add_argument("--continue-on-error", action="store_true", help="go on with other nodes after a failure")
    parse.add_argument("--refresh", "-r", action="store_true")
    parse.add_argument("--parallel", "-p", type=int, default=None)
    parse.add_argument("--message", "-m", default=None)
    parse.add_argument("--expect-no-changes", action="store_true")
    parse.add_argument("--exclude-protected", action="store_true", help="destroy: keep protected resources")
    return parse


def operation_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The Automation API arguments of the chosen operation; an unfitting flag is an error."""
    common: dict[str, Any] = {
        "diff": args.diff, "target": args.target, "target_dependents": args.target_dependents or None,
        "refresh": args.refresh or None, "parallel": args.parallel, "message": args.message,
    }
    if args.operation == "destroy":
        wrong = [flag for flag, value in (("--replace", args.replace), ("--exclude", args.exclude),
                                           ("--expect-no-changes", args.expect_no_changes)) if value]
        if wrong:
            raise SystemExit(f"stack.py: destroy does not take {', '.join(wrong)}")
        return {**common, "exclude_protected": args.exclude_protected,
                "continue_on_error": args.continue_on_error or None}
    if args.exclude_protected:
        raise SystemExit("stack.py: --exclude-protected goes with destroy")
    return {**common, "replace": args.replace, "exclude": args.exclude,
            "expect_no_changes": args.expect_no_changes or None,
            **({"continue_on_error": args.continue_on_error or None} if args.operation == "up" else {})}


def lab_config_file(stack: auto.Stack) -> Path:
    """A copy of Pulumi.lab.yaml (its encryption salt included) with the lab CA as the secrets
    caCertPem and caKeyPem, set with `pulumi config set --secret` from stdin, as a homelab imports
    its cluster's CA. Made again at every run; the tracked file is not touched."""
    pki = control_plane.lab_pki()
    target = paths.control_plane_dir() / paths.LAB_STACK_FILE.name
    shutil.copyfile(paths.LAB_STACK_FILE, target)
    for key, value in zip(("caCertPem", "caKeyPem"), pki.ca_pems(), strict=True):
        result = subprocess.run(
            [stack.workspace.pulumi_command.command, "config", "set", "--secret", "--stack", stack.name,
             "--config-file", str(target), key],
            input=value, cwd=ROOT, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"stack.py: pulumi config set {key} for the lab stack failed: {result.stderr.strip()}")
    return target


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.stack_flag not in (None, args.stack):
        raise SystemExit(f"stack.py: --stack {args.stack_flag} differs from STACK {args.stack}")
    kwargs = (
        {} if args.operation == "config-file"
        else {key: value for key, value in operation_arguments(args).items() if value is not None}
    )
    # The same backend as scripts/up unless one is set.
    backend = os.environ.setdefault("PULUMI_BACKEND_URL", f"file://{ROOT}/.pulumi-state")
    if backend.startswith("file://"):  # a file backend's directory must exist, as in scripts/up
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    stack = auto.create_or_select_stack(
        args.stack,
        project_name="homelab-kubelet",
        program=run_program,
        opts=auto.LocalWorkspaceOptions(work_dir=str(ROOT)),
    )
    if args.stack == LAB_STACK:
        kwargs["config_file"] = str(lab_config_file(stack))
    if args.operation == "config-file":
        if args.stack != LAB_STACK:
            raise SystemExit("stack.py: config-file is for the lab stack only")
        print(kwargs["config_file"])
        return 0
    try:
        if args.operation == "preview":
            stack.preview(on_output=print, color="auto", **kwargs)
        elif args.operation == "up":
            stack.up(on_output=print, color="auto", **kwargs)
        else:
            stack.destroy(on_output=print, color="auto", **kwargs)
    except auto.errors.CommandError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
