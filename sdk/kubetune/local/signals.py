"""``kubetune run`` stopped by SIGTERM or SIGHUP stops as on Ctrl-C.

Python's default for SIGTERM (``kill``, ``timeout``, a batch scheduler's job end) and
SIGHUP (a closed terminal or SSH session) is to die at once: the workers, each in a
session of its own, would go on claiming trials with nobody watching, and the
embedded PostgreSQL would stay up. Inside :func:`stop_on_termination` those signals
raise :class:`Terminated`, a KeyboardInterrupt, so the one Ctrl-C path runs: workers
hand their trials back, the server stops, finished trials are kept.

Example:
    >>> with stop_on_termination():
    ...     pass
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: What stops a run as Ctrl-C does, besides Ctrl-C.
TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached a run: it stops as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


def stopped_by(interrupt: KeyboardInterrupt) -> str:
    """What stopped a run, as its summary says it: ``Ctrl-C``, ``SIGTERM`` or ``SIGHUP``."""
    return interrupt.signal_name if isinstance(interrupt, Terminated) else "Ctrl-C"


@contextlib.contextmanager
def stop_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the block; the handlers before it
    come back after; a signal ignored before (``nohup``) stays ignored. Only the first
    signal raises (a second one while the run stops
    must not cut its cleaning up short). Outside the main thread, where Python cannot
    set handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated(signum)

    previous: dict[int, Any] = {}
    for signum in TERMINATION_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
