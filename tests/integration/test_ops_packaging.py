"""The wheel carries the interop endpoint, and the ``quicproxy`` command runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.procs import ROOT

SOURCES = ("pyproject.toml", "README.md", "quicproxy", "protocols", "interop")


def _command(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROLE", "TESTCASE")}
    return subprocess.run(
        [sys.executable, "-m", "quicproxy", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_wheel_carries_the_interop_endpoint_and_its_command(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building in the tree would leave build/ behind
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    out = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = out.glob("quicproxy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"interop/endpoint.py", "interop/client.py", "interop/__init__.py"} <= names
        installed = tmp_path / "installed"
        archive.extractall(installed)
    # the command from the unpacked wheel alone (its directory first on sys.path, no source tree)
    helped = _command(["interop", "--help"], installed)
    assert helped.returncode == 0, helped.stderr
    assert "usage: quicproxy interop" in helped.stdout and "TESTCASE" in helped.stdout
    refused = _command(["interop", "server"], installed, TESTCASE="no-such-case")
    assert refused.returncode == 127  # the endpoint's answer to a case it does not support
    assert "unsupported test case 'no-such-case'" in refused.stderr


def test_interop_command_takes_the_role_from_the_environment() -> None:
    result = _command(["interop"], ROOT, ROLE="client", TESTCASE="no-such-case")
    assert result.returncode == 127
    assert "interop client: unsupported test case 'no-such-case'" in result.stderr
