"""The cluster path as users run it: the images built by ``make images``, the chart
installed by Helm's own engine, the operator running from its image as the chart's
Deployment says, trial pods running from the trial image, ``kubectl`` commands from
the README. The API server is the harness's emulator (it authenticates, authorizes by
RBAC and admits as a real one does), the kubelet the harness's fake one in container
mode (podman), the database a real PostgreSQL on TCP."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "e2e"))

from harness.fixtures import *  # noqa: E402, F403
from harness.images import *  # noqa: E402, F403
