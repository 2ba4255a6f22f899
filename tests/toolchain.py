"""Where scripts/toolchain puts the binaries it builds, for tests that need them.

    from tests.toolchain import env_with_toolchain, kubelet_path, require_toolchain
    subprocess.run(["pulumi", "preview"], env=env_with_toolchain(), check=True)

Nothing here builds anything; a missing piece is reported with the command that builds it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLCHAIN_SCRIPT = REPO / "scripts" / "toolchain"
DEFAULT_KUBELET_VERSION = "v1.30.1"
KUBELET_ARCHES = ("amd64", "arm64")
#: The binaries the program downloads onto a node, per arch (components/node_steps/install-kubelet.sh);
#: test_toolchain.py holds this list to the node steps' download URLs.
NODE_ARTEFACTS = ("kubelet",)
#: Runs an aarch64 Linux binary on any host (Debian's qemu-user-static; scripts/setup installs it).
QEMU_AARCH64 = "qemu-aarch64-static"


def cache_dir() -> Path:
    """The toolchain cache (HOMELAB_KUBELET_CACHE, default ~/.cache/homelab-kubelet)."""
    return Path(
        os.environ.get(
            "HOMELAB_KUBELET_CACHE", Path.home() / ".cache" / "homelab-kubelet"
        )
    )


def pulumi_version() -> str:
    """The version of the pulumi Python SDK in use; the CLI is built at the same version."""
    return importlib.metadata.version("pulumi")


def toolchain_bin_dir() -> Path:
    """Directory holding pulumi, pulumi-language-python and pulumi-language-python-exec."""
    return cache_dir() / "pulumi" / f"v{pulumi_version()}" / "bin"


def kubelet_path(version: str = DEFAULT_KUBELET_VERSION, arch: str = "amd64") -> Path:
    """The kubelet built for version (e.g. "v1.30.1") and arch ("amd64" or "arm64")."""
    if not version.startswith("v"):
        version = "v" + version
    return cache_dir() / "kubelet" / version / arch / "kubelet"


def kubelet_sha256_path(
    version: str = DEFAULT_KUBELET_VERSION, arch: str = "amd64"
) -> Path:
    """The kubelet.sha256 beside the kubelet: the hex digest alone, as the release host serves it."""
    return kubelet_path(version, arch).with_name("kubelet.sha256")


def plugin_version(name: str) -> str:
    """The provider plugin version that the installed pulumi_<name> package declares."""
    import importlib.util

    spec = importlib.util.find_spec(f"pulumi_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"pulumi_{name} is not installed")
    meta = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    return str(json.loads(meta.read_text())["version"])


def pulumi_home() -> Path:
    return Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))


def env_with_toolchain(base: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ (or base) with the toolchain's bin dir first on PATH and Pulumi kept offline."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(toolchain_bin_dir()), env.get("PATH", "")])
    env.setdefault("PULUMI_HOME", str(pulumi_home()))
    env["PULUMI_SKIP_UPDATE_CHECK"] = "1"
    # The command stand-in in the per-user plugin cache then runs this checkout's code.
    env["HOMELAB_KUBELET_CHECKOUT"] = str(REPO)
    # The CLI is built at exactly the SDK's version, but a locally built CLI has no way to
    # refresh the version list the automation API compares with.
    env["PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK"] = "true"
    return env


def missing_message(what: str, command: str = "scripts/toolchain") -> str:
    return f"{what} is missing: run `{command}` (see docs/toolchain.md) to build it"


def require_toolchain(*, language_host: bool = True) -> Path:
    """Return the bin dir, raising FileNotFoundError naming the command that builds what is missing."""
    bin_dir = toolchain_bin_dir()
    names = ["pulumi"] + (
        ["pulumi-language-python", "pulumi-language-python-exec"]
        if language_host
        else []
    )
    for name in names:
        if not os.access(bin_dir / name, os.X_OK):
            raise FileNotFoundError(
                missing_message(str(bin_dir / name), "scripts/toolchain pulumi")
            )
    return bin_dir


def require_kubelet(
    version: str = DEFAULT_KUBELET_VERSION, arch: str = "amd64"
) -> Path:
    path = kubelet_path(version, arch)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            missing_message(str(path), f"scripts/toolchain kubelet {version}")
        )
    return path
