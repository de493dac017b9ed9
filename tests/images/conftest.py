"""The images tests: the harness's fixtures (an emulated API server, the fake kubelet) and
``images``, the session's images from ``make images`` (tests/harness/images.py)."""

from __future__ import annotations

from harness.fixtures import *  # noqa: F403
from harness.images import *  # noqa: F403
