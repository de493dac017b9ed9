"""spec.trial.checkpoints: bad input is refused naming the field and the reason."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune.study.spec import SpecError, validate_spec

COMMAND = ["python", "train.py", "--resume-dir", "{checkpoint_dir}"]


def spec(**trial: Any) -> dict[str, Any]:
    return {"objective": {"direction": "minimize", "metric": "loss"}, "trial": trial}


def test_a_command_gets_its_checkpoint_directory_only_with_checkpoints() -> None:
    with pytest.raises(SpecError, match=r"spec\.trial\.command\[3\].*needs trial\.checkpoints"):
        validate_spec(spec(command=COMMAND))
    checkpoints = validate_spec(spec(command=COMMAND, checkpoints={"path": "/c"})).trial.checkpoints
    assert checkpoints is not None and checkpoints.every_rounds == 10


@pytest.mark.parametrize(
    ("checkpoints", "field"),
    [({}, "path"), ({"path": ""}, "path"), ({"path": "/c", "everyRounds": 0}, "everyRounds")],
)
def test_bad_checkpoints_name_the_field(checkpoints: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=rf"spec\.trial\.checkpoints\.{field}"):
        validate_spec(spec(python="m:f", checkpoints=checkpoints))
