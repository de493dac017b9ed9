"""A program for command-objective tests that shows what the runner gave it.

``record DIR ARGS...``: writes its arguments and ``$KUBETUNE_PARAMS`` to
``DIR/<pid>.json`` and prints ``loss=0``.
``stubborn DIR``: ignores SIGTERM (noting it in ``DIR/sigterm``), writes its pid to
``DIR/pid`` and reports a rising loss every 0.1 s for a minute (``DIR/finished`` at
the end), so a pruner stops it and only SIGKILL can.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

mode, folder = sys.argv[1], Path(sys.argv[2])
if mode == "record":
    record = {"argv": sys.argv[3:], "params": os.environ["KUBETUNE_PARAMS"]}
    (folder / f"{os.getpid()}.json").write_text(json.dumps(record))
    print("loss=0", flush=True)
elif mode == "stubborn":

    def note(signum: int, frame: FrameType | None) -> None:
        (folder / "sigterm").write_text("ignored")

    signal.signal(signal.SIGTERM, note)
    (folder / "pid").write_text(str(os.getpid()))
    for step in range(600):
        print(f"step={step} loss={step}", flush=True)
        time.sleep(0.1)
    (folder / "finished").write_text("finished")
    print("loss=0", flush=True)
