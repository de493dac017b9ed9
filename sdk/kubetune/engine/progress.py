"""Progress of a running study as a display shows it: trials finished of the budget,
counts by state, the best value so far, the phase, and messages above the line.

:class:`ProgressDisplay` keeps that state and announces a new best; a display
draws it. :class:`PlainProgress` is the SDK's display (``Client.wait``,
``tune()``): one line on standard error, redrawn in place in a terminal, and
printed as it changes (at most every few seconds) when piped to a log. The
command line draws the same state as a live Rich line (``kubetune.cli.display``)
and passes it in as ``progress=``: any callable taking the study's name and
returning a display will do.

Example:
    >>> from kubetune.study.spec import TrialCounts
    >>> with PlainProgress("lgbm") as shown:                                # doctest: +SKIP
    ...     shown.update(total=40, counts=TrialCounts(complete=3), best=[0.98])
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

    from kubetune.study.spec import TrialCounts

#: What ``progress=`` accepts besides True and False: a display for a study's name.
DisplayFactory = Callable[[str], "ProgressDisplay"]
#: How often a display not in a terminal prints its line while the counts change.
LOG_INTERVAL_SECONDS = 5.0
#: The plain display's bar, in characters.
PLAIN_BAR_WIDTH = 20


class ProgressDisplay:
    """A study's progress state; subclasses draw it (:meth:`redraw`) and print
    messages above it (:meth:`message`).

    The first :meth:`update` is what the study was when watching began: a best
    trial already there is shown, not announced as new.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.total: int | None = None
        self.finished = 0
        self.counts: TrialCounts | None = None
        self.best_text = ""
        self.phase: str | None = None
        #: What the trials have spent (``1.2 GPU-h, cost 3``), when it is known.
        self.spend_text = ""
        self.started = time.monotonic()
        self._seen = False
        self._best: tuple[int | None, list[float] | None] = (None, None)
        self._bests_seen = 0
        #: A multi-objective study's Pareto front size (then there is no one best).
        self.front: int | None = None

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def update(
        self,
        *,
        total: int | None,
        counts: TrialCounts,
        best: Sequence[float] | None = None,
        best_number: int | None = None,
        phase: str | None = None,
        spend: str = "",
        done: int | None = None,
        new_bests: Sequence[tuple[int, float]] | None = None,
        front: int | None = None,
    ) -> None:
        """Show ``counts`` of ``total``; a best (``best_number``'s values) that differs
        from the last one seen is announced above the line.

        ``done``: the trials that count against ``total`` (default: every finished one;
        a stopped trial queued to run again does not count). ``new_bests``: every new
        best so far, (trial number, value), oldest first: each one not seen yet is
        announced, however many came between two updates. ``front``: a multi-objective
        study's Pareto front size, shown instead of a best."""
        values = ", ".join(f"{v:.6g}" for v in best) if best else ""
        current = (best_number, list(best) if best else None)
        if new_bests is not None:
            if self._seen:
                for number, value in new_bests[self._bests_seen :]:
                    self.announce_best(number, f"{value:.6g}")
            self._bests_seen = len(new_bests)
        elif self._seen and best and current != self._best:
            self.announce_best(best_number, values)
        self._seen = True
        self._best = current
        self.total = total
        self.counts = counts
        shown = counts.finished if done is None else done
        self.finished = min(shown, total) if total else shown
        self.front = front
        self.best_text = f"{front} on the Pareto front" if front else values
        self.phase = phase
        self.spend_text = spend
        self.redraw()

    @property
    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def summary(self) -> str:
        """The line's text after the bar: ``3/40 complete 3 · pruned 0 · …``, plain."""
        done = f"{self.finished}/{self.total}" if self.total else str(self.finished)
        if self.counts is None:
            return f"{done} waiting {self.elapsed}"
        c = self.counts
        return (
            f"{done} "
            + (f"{self.phase} · " if self.phase else "")
            + f"{c.complete} complete · {c.pruned} pruned · {c.failed} failed · "
            f"{c.running} running"
            + (f" · {self.best_label}" if self.best_text else "")
            + (f" · spent {self.spend_text}" if self.spend_text else "")
            + f" {self.elapsed}"
        )

    @property
    def best_label(self) -> str:
        """``best 0.98`` or ``12 on the Pareto front``."""
        return self.best_text if self.front else f"best {self.best_text}"

    def announce_best(self, number: int | None, values: str) -> None:
        trial = f" trial {number}" if number is not None else ""
        self.message(f"new best{trial}: {values}")

    def redraw(self) -> None:
        """Draw the current state (called after each update)."""

    def message(self, text: str) -> None:
        """Print plain ``text`` above the line (its further lines indented)."""
        raise NotImplementedError

    def close(self) -> None:
        """Draw the line a last time and stop; safe to call twice."""


class PlainProgress(ProgressDisplay):
    """The progress line on ``stream`` (standard error), with no library: redrawn in
    place in a terminal; elsewhere printed when it changed, at most every
    :data:`LOG_INTERVAL_SECONDS`, and once more at the end."""

    def __init__(self, name: str, stream: IO[str] | None = None) -> None:
        super().__init__(name)
        self._stream = stream or sys.stderr
        self._terminal = bool(getattr(self._stream, "isatty", lambda: False)())
        self._printed = ""
        self._printed_at = 0.0
        self._open = True

    def line(self) -> str:
        filled = round(PLAIN_BAR_WIDTH * self.finished / self.total) if self.total else 0
        filled = max(0, min(PLAIN_BAR_WIDTH, filled))
        bar = "#" * filled + "-" * (PLAIN_BAR_WIDTH - filled)
        return f"{self.name} [{bar}] {self.summary()}"

    def redraw(self) -> None:
        if self._terminal:
            self._write("\r\x1b[K" + self.line())
            return
        now = time.monotonic()
        changed = self.line().rsplit(" ", 1)[0] != self._printed.rsplit(" ", 1)[0]
        if changed and now - self._printed_at >= LOG_INTERVAL_SECONDS:
            self._print_line()

    def message(self, text: str) -> None:
        first, *rest = text.splitlines() or [""]
        shown = "• " + first + "".join(f"\n    {line}" for line in rest)
        if self._terminal:
            self._write("\r\x1b[K" + shown + "\n" + self.line())
        else:
            self._write(shown + "\n")

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._terminal:
            self._write("\r\x1b[K" + self.line() + "\n")
        elif self.line() != self._printed:
            self._print_line()

    def _print_line(self) -> None:
        self._printed = self.line()
        self._printed_at = time.monotonic()
        self._write(self._printed + "\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def display_for(progress: bool | DisplayFactory, name: str) -> ProgressDisplay | None:
    """The display ``progress=`` asks for: none (False), the plain line (True), or
    what the factory makes."""
    if progress is False:
        return None
    if progress is True:
        return PlainProgress(name)
    return progress(name)
