"""A helper module that tune_objectives imports: shipped with modules=[tune_helpers]."""

from __future__ import annotations


def curve(x: float, step: int) -> float:
    """What the objective reports at each step: worse (higher) for larger x, at every step."""
    return x * 10 + 1.0 / (step + 1)
