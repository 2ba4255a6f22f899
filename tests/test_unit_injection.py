"""No accepted stack value can add a line or an argument to kubelet.service (issue 12).

Property-style: every string setting of the variant stack (see tests/test_renderers.py) gets
random printable values, raw and spliced into its valid value, with whitespace, quotes, `\\`,
`%`, `$` and control characters among them. Every value `parse_settings` accepts is rendered, and
real systemd reads the units:

* `systemd-analyze verify` (under `--root`, a copy of this machine's system units plus the
  rendered files and stand-in executables) must accept each unit without a word;
* `systemd --test` dumps what systemd made of each unit (it refuses to run as root, so it runs
  as `nobody` through setpriv): exactly one ExecStart whose argv is the program's flags, the one
  ExecStartPre, no other Exec line, `Restart: always`.

Without systemd on the machine these tests skip, saying so; nothing stands in for it.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import string
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components import paths, systemd
from components.kubelet_config import kubelet_flags
from components.settings import NodeSettings, Settings, SettingsError, parse_settings, unit_word_problem
from tests.test_renderers import NODE, variant_config

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEMD = next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.access(p, os.X_OK)), None)
SYSTEM_UNITS = next((p for p in ("/usr/lib/systemd/system", "/lib/systemd/system") if os.path.isdir(p)), None)

Raw = dict[str, Any]
Setter = Callable[[Raw, str], None]

# The characters that matter to systemd, and printable text around them.
SPECIAL = ["\n", "\r", "\t", " ", "\\", "%", "$", '"', "'", "`", ";", "\x0b", "\x00", "\u2028", "\u00a0", "é", "=", ",",
           "${X}", "%n", "\\\n", " --authorization-mode=AlwaysAllow", "\nExecStartPost=/bin/sh -c id"]
ALPHABET = string.printable + "é"


def _leaf_setters(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[str, Any, Setter]]:
    """(path, current value, setter) for every string leaf and every string map key of `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_setters(item, (*path, key))
            if isinstance(key, str) and path and path[-1] in ("labels", "extraArgs", "evictionHard"):
                yield (_show((*path, key)) + " (key)", key, _key_setter(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_setters(item, (*path, index))
    elif isinstance(value, str):
        yield (_show(path), value, _value_setter(path))


def _show(path: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _target(raw: Raw, path: tuple[Any, ...]) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def _value_setter(path: tuple[Any, ...]) -> Setter:
    def set_value(raw: Raw, value: str) -> None:
        _target(raw, path[:-1])[path[-1]] = value

    return set_value


def _key_setter(path: tuple[Any, ...], key: str) -> Setter:
    def set_key(raw: Raw, value: str) -> None:
        mapping = _target(raw, path)
        mapping[value] = mapping.pop(key)

    return set_key


def base_config() -> Raw:
    raw = variant_config()
    # Every string setting present, so every one is varied (the variant leaves these at defaults).
    raw["kubelet"].update(hostnameCheck="warn", systemCgroups="/systemd/system.slice")
    raw["kubernetes"]["containerRuntimeEndpoint"] = "unix:///run/containerd/containerd.sock"
    raw["ssh"].update(knownHostsFile="~/.ssh/known_hosts")
    raw["pki"].update(caCommonName="Kubernetes", caOrganization="Kubernetes")
    raw["nodes"][1]["resolvConf"] = "/etc/resolv.conf"
    raw["nodes"][1]["user"] = "kube"
    return raw


def string_settings() -> list[tuple[str, str, Setter]]:
    return list(_leaf_setters(base_config(), ()))


def candidates(rng: random.Random, valid: str, count: int) -> list[str]:
    values = []
    for _ in range(count):
        junk = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        special = rng.choice(SPECIAL)
        at = rng.randint(0, len(valid))
        values += [
            junk,
            valid + special,
            special + valid,
            valid[:at] + special + valid[at:],
            valid[:at] + rng.choice(ALPHABET) + valid[at:],
        ]
    return values


def accepted_variants(seed: int = 12, per_setting: int = 6) -> tuple[list[tuple[str, str, Settings]], int]:
    """Every (setting, value, parsed settings) that parse_settings accepted, and how many it refused."""
    rng = random.Random(seed)
    accepted: list[tuple[str, str, Settings]] = []
    refused = 0
    for where, valid, setter in string_settings():
        for value in candidates(rng, valid, per_setting):
            raw = base_config()
            try:
                setter(raw, value)
                settings = parse_settings(raw)
            except SettingsError:
                refused += 1
                continue
            accepted.append((where, value, settings))
    return accepted, refused


def expected_argv(settings: Settings, node: NodeSettings) -> list[str]:
    return [paths.KUBELET_BINARY, *kubelet_flags(settings, node)]


def test_every_string_setting_is_varied() -> None:
    where = {name for name, _, _ in string_settings()}
    for setting in ("nodes[1].extraArgs.vmodule", "nodes[1].extraArgs.vmodule (key)", "nodes[1].name",
                    "nodes[1].labels.example.com/gpu (key)", "nodes[1].taints[0].value", "reservations.kubeReservedCgroup",
                    "kubernetes.apiServer", "kubelet.systemCgroups", "kubelet.staticPodPath", "ssh.user"):
        assert setting in where, sorted(where)


def test_flag_names_and_values_are_what_the_program_meant() -> None:
    """Without systemd: each ExecStart word of an accepted value is one safe word."""
    accepted, refused = accepted_variants()
    assert refused > len(accepted) > 50, (refused, len(accepted))
    assert any(name.startswith("nodes[1].extraArgs") for name, _, _ in accepted)
    for where, value, settings in accepted:
        node = settings.node(NODE) if any(n.name == NODE for n in settings.nodes) else settings.nodes[1]
        unit = systemd.render_kubelet_unit(settings, node)
        assert unit.count("\n") == systemd.render_kubelet_unit(parse_settings(base_config()), node).count("\n"), where
        for word in expected_argv(settings, node):
            assert unit_word_problem(word) is None, (where, value, word)


@pytest.fixture(scope="module")
def rendered_root() -> Iterator[tuple[Path, list[tuple[str, str, str, list[str]]]]]:
    """A world-readable root with system units, stand-in executables and one kubelet unit per
    accepted value: (unit name, setting, value, expected argv)."""
    if SYSTEMD_ANALYZE is None or SYSTEM_UNITS is None:
        pytest.fail("systemd-analyze or the system unit directory is missing: apt-get install -y systemd (scripts/setup does)")
    accepted, _ = accepted_variants()
    with tempfile.TemporaryDirectory(prefix="unit-injection-") as directory:
        root = Path(directory)
        root.chmod(0o755)
        shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.lstrip("/"), symlinks=True)
        if SYSTEM_UNITS.startswith("/usr/"):
            (root / "lib").symlink_to("usr/lib")
        for executable in (paths.KUBELET_BINARY, paths.CGROUP_HELPER):
            target = root / executable.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
        units = root / paths.SYSTEMD_DIR.lstrip("/")
        units.mkdir(parents=True, exist_ok=True)
        (units / "containerd.service").write_text("[Service]\nExecStart=/usr/bin/kubelet\n")
        cases = []
        baseline = parse_settings(base_config())
        for index, (where, value, settings) in enumerate([("baseline", "", baseline), *accepted]):
            node = next((n for n in settings.nodes if n.name == NODE), settings.nodes[1])
            name = f"kubelet-{index}.service"
            for path, content in systemd.unit_files(settings, node).items():
                target = root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                if path != paths.KUBELET_UNIT and not target.exists():
                    target.write_text(content)
            (units / name).write_text(systemd.render_kubelet_unit(settings, node))
            cases.append((name, where, value, expected_argv(settings, node)))
        for entry in root.rglob("*"):
            if not entry.is_symlink():
                entry.chmod(0o755 if entry.is_dir() or os.access(entry, os.X_OK) else 0o644)
        yield root, cases


def test_systemd_analyze_verify_accepts_every_unit(rendered_root: tuple[Path, list[Any]]) -> None:
    root, cases = rendered_root
    names = [name for name, *_ in cases]
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", f"--root={root}", "--man=no", *names],
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("systemd --test refuses to run as root and setpriv is missing to run it as nobody: apt-get install -y util-linux")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def _dump_sections(dump: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in dump.splitlines():
        if line.startswith("\t-> Unit "):
            current = sections.setdefault(line.removeprefix("\t-> Unit ").rstrip(":"), [])
        else:
            current.append(line.strip())
    return sections


def test_systemd_reads_exactly_the_program_s_execstart(rendered_root: tuple[Path, list[Any]]) -> None:
    if SYSTEMD is None:
        pytest.fail("no systemd binary to dump how it reads the unit: apt-get install -y systemd (scripts/setup does)")
    root, cases = rendered_root
    units = root / paths.SYSTEMD_DIR.lstrip("/")
    (units / "injection-test.target").write_text(
        "[Unit]\nDescription=all rendered kubelet units\n" + "".join(f"Wants={name}\n" for name, *_ in cases)
    )
    (units / "injection-test.target").chmod(0o644)
    env = {"PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": str(units), "XDG_RUNTIME_DIR": str(root / "run")}
    result = subprocess.run([*_as_nobody(), SYSTEMD, "--test", "--system", "--unit=injection-test.target", "--no-pager"],
                            capture_output=True, text=True, check=False, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    sections = _dump_sections(result.stdout)
    for name, where, value, argv in cases:
        lines = sections[name]
        assert "Unit Load State: loaded" in lines, (where, value)
        execs = [line for line in lines if line.startswith("-> Exec")]
        assert execs == ["-> ExecStartPre:", "-> ExecStart:"], (where, value, execs)
        commands = [lines[i + 1] for i, line in enumerate(lines) if line in ("-> ExecStartPre:", "-> ExecStart:")]
        assert all(c.startswith("Command Line: ") for c in commands), (where, value, commands)
        assert shlex.split(commands[1].removeprefix("Command Line: ")) == argv, (where, value)
        assert "Restart: always" in lines, (where, value)
