"""Child processes that do not outlive the process that started them.

A local worker runs in a session of its own (so Ctrl-C reaches only its supervisor,
which stops workers in order), and a command objective in one of its own (so a prune
stops its whole process group). Neither then hears of its parent's death: a
supervisor or worker killed by SIGKILL or the OOM killer would leave them running,
holding a GPU, claiming trials nobody watches. On Linux the kernel can send a signal
to a child when its parent goes (``prctl(PR_SET_PDEATHSIG)``); in a pod the
container's end takes every process with it anyway.

Example:
    >>> import subprocess, sys
    >>> child = subprocess.Popen(  # doctest: +SKIP
    ...     [sys.executable, "-m", "kubetune_trial"], preexec_fn=ends_with_parent()
    ... )
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

from kubetune.errors import KubetuneError

#: ``PR_SET_PDEATHSIG`` from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


#: Looked up once, here: the forked child, where other threads' locks may be held, only
#: calls it.
_PRCTL = _prctl()


class ParentGone(KubetuneError, RuntimeError):
    """The parent ended before its child could ask to follow it."""


def ends_with_parent(
    signum: int = signal.SIGTERM, *, own_process_group: bool = False
) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``signum`` when its
    parent ends, however it ends (SIGTERM lets a worker hand its trial back and a
    training program save what it can), where the kernel can do it (Linux).
    ``own_process_group`` also puts the child in a process group of its own, in its
    parent's session (what ``process_group=0`` does from Python 3.11). None when there
    is nothing to do: pass it as it is.

    The kernel ties the signal to the parent *thread* that started the child; the
    callers here start children from the thread that then waits for them.
    """
    prctl, parent = _PRCTL, os.getpid()
    if prctl is None and not own_process_group:
        return None

    def in_the_child() -> None:
        if own_process_group:
            os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
            if os.getppid() != parent:  # it ended between the fork and the prctl
                raise ParentGone("the process starting this one has ended")

    return in_the_child


def end_session(session: int, signum: int = signal.SIGKILL) -> int:
    """Send ``signum`` to every process left in session ``session`` (a worker started
    with ``start_new_session``: the session is its pid); how many there were. What a
    worker killed outright leaves behind: its command objective's process group and
    whatever that started. Reads /proc: elsewhere it finds nothing."""
    found = 0
    for pid in _session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            found += 1
    return found


def _session_members(session: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat:
                # "pid (comm) state ppid pgrp session ...": comm may hold spaces and ")".
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members
