"""The command-objective twin of ``kt_checkpoint_objectives.rounds``: its state lives in
the directory the runner gives it (``argv[1]``, the ``{checkpoint_dir}`` placeholder,
which must equal ``$KUBETUNE_CHECKPOINT_DIR``); a line ``loss=V step=N`` per round. Its
pause marker holds its worker's pid and its own, in the order to kill them."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from kt_checkpoint_objectives import ROUNDS, log_round, step

folder = Path(sys.argv[1])
assert str(folder) == os.environ["KUBETUNE_CHECKPOINT_DIR"], (folder, os.environ)
params = json.loads(os.environ["KUBETUNE_PARAMS"])
saved = folder / "state.json"
state = json.loads(saved.read_text()) if saved.exists() else {"round": 0, "value": 0.0}
resumed = saved.exists()
marker = os.environ.get("KT_PAUSED_MARKER")
for round_number in range(state["round"], ROUNDS):
    log_round(int(folder.name.removeprefix("trial-")), round_number)
    value = step(state["value"], params["x"], round_number)
    state = {"round": round_number + 1, "value": value}
    partial = folder / "state.json.partial"
    partial.write_text(json.dumps(state))
    partial.replace(saved)  # a kill while writing keeps the previous state
    print(f"loss={value!r} step={round_number}", flush=True)
    pause_after = os.environ.get("KT_PAUSE_AFTER")
    if (
        pause_after is not None
        and int(pause_after) == round_number
        and marker
        and not resumed
        and not os.path.exists(marker)
    ):
        Path(marker).write_text(f"{os.getppid()} {os.getpid()}\n")
        time.sleep(600)
print(f"loss={state['value']!r}", flush=True)
