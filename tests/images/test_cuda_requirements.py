"""The CUDA trial image's requirements resolve from PyPI, torch and its NVIDIA wheels
included, without downloading gigabytes. ``pip install --dry-run`` with a current pip reads
each wheel's metadata only: from PyPI's metadata files (PEP 658), or, where an index
serves none (this machine's PyPI mirror), by HTTP range requests into the wheel
(``--use-feature=fast-deps``). Without either, pip fetches every wheel: 6.8 GB here.
(Building the CUDA image downloads them all: the release workflow does, or
``make images-cuda``.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow(seconds=40), pytest.mark.timeout(600)]

#: Runs pip in this process and reports the bytes it read (files and sockets alike).
PIP_COUNTING_BYTES = """
import atexit, runpy, sys
def report():
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    print("bytes read:", io["rchar"], file=sys.stderr)
atexit.register(report)
sys.argv = ["pip", *sys.argv[1:]]
runpy.run_module("pip", run_name="__main__")
"""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip_env() -> dict[str, str]:
    """pip as on a machine with only PyPI: no config files, no local wheels or indexes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_cuda_requirements_resolve_without_downloading_the_wheels(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    cert = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    tls = ["--cert", cert] if cert else []  # this machine's TLS-inspecting proxy
    upgrade = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--upgrade", "pip", *tls],
        env=_pip_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr

    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            python,
            "-c",
            PIP_COUNTING_BYTES,
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            "--no-cache-dir",
            "--use-feature=fast-deps",
            "--report",
            str(report),
            *tls,
            "--requirement",
            str(REPO / "trial_image" / "requirements-cuda.txt"),
        ],
        env=_pip_env(),
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    installed = {
        _normal(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert installed["torch"] == "2.13.0"  # PyPI's Linux torch: the CUDA build
    assert installed["xgboost"] == "3.2.0"
    assert "xgboost-cpu" not in installed
    nvidia = sorted(name for name in installed if name.startswith("nvidia-"))
    assert any(name.startswith("nvidia-cudnn") for name in nvidia), nvidia
    assert any(name.startswith("nvidia-cublas") for name in nvidia), nvidia
    # Every pin of requirements-cuda.txt is what pip would install.
    for line in (REPO / "trial_image" / "requirements-common.txt").read_text().splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if version:
            assert installed[_normal(name)] == version, name

    # What pip read, its own files included: tens of MB, not the GBs of the wheels.
    read = int(done.stderr.rsplit("bytes read:", 1)[1].split()[0])
    print(f"{len(installed)} packages resolved, {len(nvidia)} NVIDIA; pip read {read / 1e6:.0f} MB")
    assert read < 300e6, read
