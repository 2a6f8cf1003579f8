"""Packaging: the wheel carries the interop endpoint; the container image and the systemd unit
run the packaged config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_container_image_runs_the_packaged_config_which_validates() -> None:
    steps = _instructions((ROOT / "Dockerfile").read_text())
    cmd = [args for word, args in steps if word == "CMD"][-1]
    assert json.loads(cmd) == ["quicproxy", "run", "-c", "/etc/quicproxy/quicproxy.toml"]
    copies = [args.split() for word, args in steps if word == "COPY"]
    sources = [parts[:-1] for parts in copies if not parts[0].startswith("--from")]
    for names in sources:
        for name in names:
            assert (ROOT / name).exists(), f"the Dockerfile copies {name}, which is missing"
    assert ["packaging/quicproxy.toml", "/etc/quicproxy/quicproxy.toml"] in copies
    assert {"443/tcp", "443/udp"} <= {p for w, a in steps if w == "EXPOSE" for p in a.split()}
    checked = _command(["check", "-c", str(ROOT / "packaging" / "quicproxy.toml")], ROOT)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_the_systemd_unit_verifies_and_reloads_with_sighup(tmp_path: Path) -> None:
    unit = (ROOT / "packaging" / "quicproxy.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "ExecStart=/usr/local/bin/quicproxy run -c /etc/quicproxy/quicproxy.toml" in unit
    command = shutil.which("quicproxy")
    if command is None:
        pytest.skip("the quicproxy console script is not installed")
    local = tmp_path / "quicproxy.service"  # systemd checks that ExecStart's program exists
    local.write_text(unit.replace("/usr/local/bin/quicproxy", command))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
