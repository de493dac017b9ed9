"""A live progress bar for one study: trials finished of the budget, counts by
state, the best value so far, and the phase.

Drawn on standard error, so that what a command prints on standard output
(``-o json``) stays clean.

Example:
    >>> with StudyProgress("lgbm") as bar:                                  # doctest: +SKIP
    ...     bar.update(total=40, counts=TrialCounts(complete=3), best=[0.98])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetune.spec import TrialCounts


class StudyProgress:
    """One Rich progress bar; ``note`` prints a line above it."""

    def __init__(self, name: str, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[bold]{task.fields[name]}",
            BarColumn(),
            MofNCompleteColumn(),
            "{task.description}",
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("waiting", name=name, total=None)
        self._best: list[float] | None = None

    def __enter__(self) -> StudyProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def note(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)

    def update(
        self,
        *,
        total: int | None,
        counts: TrialCounts,
        best: Sequence[float] | None = None,
        phase: str | None = None,
    ) -> None:
        best_text = ""
        if best:
            best_text = " · best " + ", ".join(f"{v:.6g}" for v in best)
            if self._best is not None and list(best) != self._best:
                self.note(f"[green]new best[/]:{best_text.removeprefix(' · best')}")
            self._best = list(best)
        finished = counts.finished
        self._progress.update(
            self._task,
            total=total,
            completed=min(finished, total) if total else finished,
            description=(
                (f"{phase} · " if phase else "")
                + f"[green]{counts.complete} complete[/] · [yellow]{counts.pruned} pruned[/] · "
                f"[red]{counts.failed} failed[/] · {counts.running} running{best_text}"
            ),
        )

    def update_from_status(self, obj: dict[str, Any]) -> None:
        """Update from a Study object as the API server returns it."""
        status = obj.get("status") or {}
        budget = ((obj.get("spec") or {}).get("budget") or {}).get("maxTrials", 100)
        best_trial = status.get("bestTrial") or {}
        best = [best_trial["value"]] if best_trial.get("value") is not None else None
        self.update(
            total=int(budget),
            counts=TrialCounts.model_validate(status.get("trials") or {}),
            best=best,
            phase=status.get("phase"),
        )
