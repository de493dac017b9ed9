"""A training program whose output goes wrong in a different way per trial number:
``python bad_metrics.py N`` prints case N of :data:`CASES` (the last is a good run)."""

from __future__ import annotations

import sys

CASES: list[list[str]] = [
    ["epoch=1 accuracy=0.9", "done"],  # the metric 'loss' is never printed
    ["loss=nan"],
    ["loss=inf"],
    ["loss=-inf"],
    ['{"loss": NaN}'],
    ['{"step": 1, "loss": Infinity}'],
    ["loss=0.5"],
]

if __name__ == "__main__":
    number = int(sys.argv[1]) % len(CASES)
    for line in CASES[number]:
        print(line, flush=True)
