"""The Go sources scripts/toolchain adds to upstream modules (scripts/toolchain.d): gofmt-clean,
vetted, and importing their provider from the module path the script gives the bridge.

gofmt needs only a Go toolchain (the one scripts/toolchain fetches for the kubelet, under the
cache, or `go` on PATH). go vet type-checks the bridge against its dependencies, so it needs the
module cache and the bridge's go.mod/go.sum from an earlier `scripts/toolchain plugins`, and its
first run compiles those dependencies (about 80 s on two cores): it is a toolchain test. Nothing
here downloads (GOPROXY=off) or builds a toolchain piece.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "scripts" / "toolchain.d"
CACHE = Path(os.environ.get("HOMELAB_KUBELET_CACHE", Path.home() / ".cache" / "homelab-kubelet"))


def _go_bins() -> list[Path]:
    """Directories holding `go` and `gofmt`: the cache's toolchains, then PATH's."""
    found = sorted((CACHE / "go" / "mod" / "golang.org").glob("toolchain@*/bin"), reverse=True)
    on_path = shutil.which("go")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    return [path for path in found if (path / "go").is_file() and (path / "gofmt").is_file()]


def _go_version(bin_dir: Path) -> tuple[int, ...]:
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    text = subprocess.run([str(bin_dir / "go"), "env", "GOVERSION"], capture_output=True, text=True, env=env,
                          check=True).stdout
    found = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    assert found, text
    return tuple(int(part or 0) for part in found.groups())


def test_the_sources_are_there() -> None:
    assert sorted(path.relative_to(SOURCES).as_posix() for path in SOURCES.rglob("*.go")) == [
        "tls-bridge/cmd/pulumi-resource-tls/main.go",
        "tls-bridge/cmd/pulumi-tfgen-tls/main.go",
        "tls-bridge/provider/provider.go",
        "tlsshim/shim.go",
    ]


def test_the_commands_import_the_provider_of_the_bridge_module() -> None:
    script = (REPO / "scripts" / "toolchain").read_text()
    [module] = re.findall(r"^  local self=(\S+)$", script, re.MULTILINE)
    for command in (SOURCES / "tls-bridge" / "cmd").glob("*/main.go"):
        assert f'"{module}/provider"' in command.read_text(), command


def test_gofmt_leaves_the_sources_as_they_are() -> None:
    bins = _go_bins()
    if not bins:
        pytest.fail(f"no Go toolchain under {CACHE}/go or on PATH: run scripts/setup (scripts/toolchain fetches one)")
    # With the test's own Go program (tests/test_kubelet_accepts_config.py).
    result = subprocess.run([str(bins[0] / "gofmt"), "-l", str(SOURCES), str(REPO / "tests" / "kubelet_check")],
                            capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.toolchain
def test_go_vet_passes(tmp_path: Path) -> None:
    built = sorted((CACHE / "work").glob("pulumi-resource-tls-v*-bridge"))
    if not built or not (built[-1] / "go.sum").is_file():
        pytest.fail("no bridge module (its go.mod and go.sum): run `scripts/toolchain plugins` (scripts/setup does)")
    work = built[-1]
    wanted = re.search(r"^go (\d+)\.(\d+)(?:\.(\d+))?$", (work / "go.mod").read_text(), re.MULTILINE)
    assert wanted, work / "go.mod"
    needed = tuple(int(part or 0) for part in wanted.groups())
    bins = [bin_dir for bin_dir in _go_bins() if _go_version(bin_dir) >= needed]
    if not bins:
        pytest.fail(f"no Go toolchain of at least {'.'.join(map(str, needed))} (the bridge's go.mod): run scripts/setup")
    module = tmp_path / "bridge"
    shutil.copytree(SOURCES / "tls-bridge", module)
    shutil.copytree(SOURCES / "tlsshim", module / "tlsshim")
    for name in ("go.mod", "go.sum", "tlsshim/go.mod", "tlsshim/go.sum", "provider/bridge-metadata.json",
                 "cmd/pulumi-resource-tls/schema.json"):
        shutil.copy(work / name, module / name)
    env = {
        **os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod -trimpath",
        "GOMODCACHE": str(CACHE / "go" / "mod"), "GOCACHE": str(CACHE / "go" / "build"),
        "GOPATH": str(CACHE / "go" / "path"),
    }
    result = subprocess.run([str(bins[0] / "go"), "vet", "./..."], cwd=module, env=env, capture_output=True,
                            text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
