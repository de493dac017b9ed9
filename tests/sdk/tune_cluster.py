"""What the cluster tests of tune() share: turns at the code volume's mount point.

tune() mounts the shipped code at /kubetune/code in every trial pod. The fake
kubelet bind-mounts it there in a private mount namespace, creating the folder
when it is missing and removing it when the kubelet stops; removing a mount
point detaches it in every namespace, so a second test's pods (another xdist
worker) would lose their code mid-run. The tests that mount it take turns.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from harness.file_lock import exclusive

LOCK_FILE = Path(tempfile.gettempdir()) / "kubetune-tests-code-mount.lock"


def code_mount_turn() -> contextlib.AbstractContextManager[None]:
    """Held while a test's pods may mount /kubetune/code (a lock across processes)."""
    return exclusive(LOCK_FILE)
