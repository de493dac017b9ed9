"""A live progress line for one study: trials finished of the budget, counts by
state, the best value so far, and the phase.

Drawn on standard error unless told otherwise, so that what a command prints on
standard output (``-o json``) stays clean. What matters (the counts and the best
value) is never cut: the bar shrinks or goes first, and a line too long for the
terminal wraps. Piped to a file, the line is printed once, at the end, whole.

Example:
    >>> with StudyProgress("lgbm") as bar:                                  # doctest: +SKIP
    ...     bar.update(total=40, counts=TrialCounts(complete=3), best=[0.98])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

    from kubetune.spec import TrialCounts

#: The bar's widest, and the narrowest worth drawing.
BAR_WIDTH = 30
MIN_BAR_WIDTH = 10
#: The width of a console that is not a terminal: wide enough that no line is wrapped.
PIPED_WIDTH = 100_000


def make_console(*, stderr: bool = False) -> Console:
    """A Rich console on standard output (or error). In a terminal it wraps at the
    terminal's width; piped or redirected, where Rich would wrap at 80 columns (or
    ``$COLUMNS``), every line is printed whole: logs, ``grep`` and CI read lines."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.soft_wrap = True
        console.width = PIPED_WIDTH
    return console


class _StatusLine:
    """The line itself, rendered afresh at each refresh to the console's width."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.total: int | None = None
        self.finished = 0
        self.text = "waiting"  # Rich markup
        self.started = time.monotonic()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.markup import escape
        from rich.text import Text

        seconds = int(time.monotonic() - self.started)
        elapsed = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        done = f"{self.finished}/{self.total}" if self.total else str(self.finished)
        line = Text.from_markup(f"[bold]{escape(self.name)}[/] ")
        rest = Text.from_markup(f"{done} {self.text} [dim]{elapsed}[/]")
        room = options.max_width - line.cell_len - rest.cell_len - 1
        bar_width = min(BAR_WIDTH, room)
        if bar_width >= MIN_BAR_WIDTH:
            filled = round(bar_width * self.finished / self.total) if self.total else 0
            filled = max(0, min(bar_width, filled))
            line.append("━" * filled, style="bar.complete")
            line.append("━" * (bar_width - filled) + " ", style="bar.back")
        line.append_text(rest)
        yield line


class StudyProgress:
    """The live line of one study; ``note`` prints a line above it.

    The first :meth:`update` is what the study was when watching began: a best
    trial already there is shown, not announced as new.
    """

    def __init__(self, name: str, console: Any = None) -> None:
        from rich.live import Live

        self._line = _StatusLine(name)
        self._live = Live(
            self._line,
            console=console or make_console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )
        self._seen = False
        self._best: tuple[int | None, list[float] | None] = (None, None)
        self._open = False

    def __enter__(self) -> StudyProgress:
        self._line.started = time.monotonic()
        self._open = True
        console = self._live.console
        if console.is_terminal and not console.is_dumb_terminal:
            self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Draw the line a last time and stop; safe to call twice. Not in a terminal,
        this is the only time the line is printed."""
        if not self._open:
            return
        self._open = False
        if self._live.is_started:
            self._live.stop()
        else:
            self._live.console.print(self._line)

    def note(self, text: str, *, markup: bool = True) -> None:
        """Print ``text`` above the line (Rich markup unless ``markup`` is False)."""
        self._live.console.print(text, highlight=False, markup=markup)

    def message(self, text: str) -> None:
        """Plain ``text`` (never read as markup: a traceback's ``values[i]`` stays) above
        the line, after a bullet; its further lines (a reason's last lines) indented."""
        from rich.markup import escape

        first, *rest = text.splitlines() or [""]
        self.note(
            "[yellow]•[/] " + escape(first) + "".join(f"\n    {escape(line)}" for line in rest)
        )

    def update(
        self,
        *,
        total: int | None,
        counts: TrialCounts,
        best: Sequence[float] | None = None,
        best_number: int | None = None,
        phase: str | None = None,
    ) -> None:
        """Show ``counts`` of ``total``; a best (``best_number``'s values) that differs
        from the last one seen is announced above the line."""
        values = ", ".join(f"{v:.6g}" for v in best) if best else ""
        current = (best_number, list(best) if best else None)
        if self._seen and best and current != self._best:
            trial = f" trial {best_number}" if best_number is not None else ""
            self.note(f"[green]new best[/]{trial}: {values}")
        self._seen = True
        self._best = current
        self._line.total = total
        finished = counts.finished
        self._line.finished = min(finished, total) if total else finished
        self._line.text = (
            (f"{phase} · " if phase else "")
            + f"[green]{counts.complete} complete[/] · [yellow]{counts.pruned} pruned[/] · "
            f"[red]{counts.failed} failed[/] · {counts.running} running"
            + (f" · best {values}" if values else "")
        )
        if self._live.is_started:
            self._live.refresh()

    def update_from_status(self, obj: dict[str, Any]) -> None:
        """Update from a Study object as the API server returns it."""
        from kubetune.spec import TrialCounts

        status = obj.get("status") or {}
        budget = ((obj.get("spec") or {}).get("budget") or {}).get("maxTrials", 100)
        best_trial = status.get("bestTrial") or {}
        best = [best_trial["value"]] if best_trial.get("value") is not None else None
        self.update(
            total=int(budget),
            counts=TrialCounts.model_validate(status.get("trials") or {}),
            best=best,
            best_number=best_trial.get("number") if best else None,
            phase=status.get("phase"),
        )
