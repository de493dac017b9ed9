"""A training program for command-objective tests; its behaviour comes from flags."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--mode", default="ok")
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--step-seconds", type=float, default=0.0)
parser.add_argument("--finished-marker")
args = parser.parse_args()

if args.mode == "crash":
    print("loading data", flush=True)
    print("Traceback: something deep went wrong", file=sys.stderr)
    sys.exit(7)
name = "progress" if args.mode == "silent" else "loss"
for step in range(args.steps):
    value = args.x + step
    if args.mode == "json":
        print(json.dumps({"step": step, name: value}), flush=True)
    else:
        print(f"step={step} {name}={value}", flush=True)
    time.sleep(args.step_seconds)
if args.finished_marker:
    Path(args.finished_marker).write_text("finished")
if args.mode == "silent":
    print("done, but no final metric", flush=True)
    sys.exit(0)
if args.mode == "nan":
    print("loss=nan", flush=True)
    sys.exit(0)
print(f"loss={args.x}", flush=True)
