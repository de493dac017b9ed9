"""docs/gpu.md's example Studies: each exists and `kubetune validate` accepts it, as a
user would check it before applying it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "gpu.md").read_text()
EXAMPLES = sorted(set(re.findall(r"`(examples/[\w.-]+\.yaml)`", DOC)))


def test_the_page_names_an_example_for_each_topic() -> None:
    assert EXAMPLES == [
        "examples/gpu-kueue.yaml",
        "examples/gpu-priority.yaml",
        "examples/gpu-spot.yaml",
        "examples/lightning-ddp.yaml",
        "examples/multi-node-ddp.yaml",
    ]


@pytest.mark.parametrize("example", EXAMPLES)
def test_kubetune_validate_accepts_each_example(example: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("kubetune")), "validate", example],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid Study" in done.stdout
