"""The command line's live progress line for one study: the state a
:class:`~kubetune.engine.progress.ProgressDisplay` keeps (trials finished of the
budget, counts by state, the best value so far, the phase), drawn with Rich.

Drawn on standard error unless told otherwise, so that what a command prints on
standard output (``-o json``) stays clean. What matters (the counts and the best
value) is never cut: the bar shrinks or goes first, and a line too long for the
terminal wraps. Piped to a file, the line is printed once, at the end, whole.

Example:
    >>> with StudyProgress("lgbm") as bar:                                  # doctest: +SKIP
    ...     bar.update(total=40, counts=TrialCounts(complete=3), best=[0.98])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.engine.progress import ProgressDisplay

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

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

    def __init__(self, progress: StudyProgress) -> None:
        self.progress = progress

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.markup import escape
        from rich.text import Text

        shown = self.progress
        done = f"{shown.finished}/{shown.total}" if shown.total else str(shown.finished)
        line = Text.from_markup(f"[bold]{escape(shown.name)}[/] ")
        rest = Text.from_markup(f"{done} {shown.markup()} [dim]{shown.elapsed}[/]")
        room = options.max_width - line.cell_len - rest.cell_len - 1
        bar_width = min(BAR_WIDTH, room)
        if bar_width >= MIN_BAR_WIDTH:
            filled = round(bar_width * shown.finished / shown.total) if shown.total else 0
            filled = max(0, min(bar_width, filled))
            line.append("━" * filled, style="bar.complete")
            line.append("━" * (bar_width - filled) + " ", style="bar.back")
        line.append_text(rest)
        yield line


class StudyProgress(ProgressDisplay):
    """The live line of one study; ``note`` prints a line (Rich markup) above it.

    Pass the class as ``progress=`` to ``Client.wait`` or ``tune()`` for this line
    instead of the plain one.
    """

    def __init__(self, name: str, console: Any = None) -> None:
        from rich.live import Live

        super().__init__(name)
        self._live = Live(
            _StatusLine(self),
            console=console or make_console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )
        self._open = False

    def __enter__(self) -> StudyProgress:
        super().__enter__()
        self._open = True
        console = self._live.console
        if console.is_terminal and not console.is_dumb_terminal:
            self._live.start()
        return self

    def close(self) -> None:
        """Draw the line a last time and stop; safe to call twice. Not in a terminal,
        this is the only time the line is printed."""
        if not self._open:
            return
        self._open = False
        if self._live.is_started:
            self._live.stop()
        else:
            self._live.console.print(_StatusLine(self))

    def markup(self) -> str:
        """The counts as coloured Rich markup (the plain :meth:`summary`, in colour)."""
        if self.counts is None:
            return "waiting"
        c = self.counts
        return (
            (f"{self.phase} · " if self.phase else "")
            + f"[green]{c.complete} complete[/] · [yellow]{c.pruned} pruned[/] · "
            f"[red]{c.failed} failed[/] · {c.running} running"
            + (f" · {self.best_label}" if self.best_text else "")
            + (f" · [dim]spent {self.spend_text}[/]" if self.spend_text else "")
        )

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

    def announce_best(self, number: int | None, values: str) -> None:
        trial = f" trial {number}" if number is not None else ""
        self.note(f"[green]new best[/]{trial}: {values}")

    def redraw(self) -> None:
        if self._live.is_started:
            self._live.refresh()


class LocalRunProgress(StudyProgress):
    """``kubetune run``'s live line, fed by :class:`kubetune.local.run.LocalRun`."""

    shown = False

    def start_once(self) -> None:
        """Start the line at its first update (a line that may never be needed)."""
        if not self.shown:
            self.shown = True
            self.__enter__()

    def update_local(self, progress: object, *, best: bool = True) -> None:
        """Show ``progress``; ``best=False`` for verification repeats, whose values are
        draws of trials already known, not new bests."""
        from kubetune.local.run import Progress

        assert isinstance(progress, Progress)
        self.update(
            total=progress.max_trials,
            counts=progress.counts,
            best=progress.best_values if best else None,
            best_number=progress.best_number if best else None,
            spend=progress.spend.summary() if progress.spend else "",
            done=progress.done,
            new_bests=progress.new_bests if best else None,
            front=progress.front if best else None,
        )
