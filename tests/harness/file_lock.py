"""A lock held across processes: pytest-xdist workers, and a shell's ``flock FILE cmd``
(both take flock(2) on the same file)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the ``with`` block.

    ``with exclusive(Path("/tmp/kubetune-images.lock")): build()``
    """
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
