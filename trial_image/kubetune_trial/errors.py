"""The trial runner's errors, apart from the code that raises them so that the
built-in objectives (:mod:`kubetune_trial.builtin`) and the loader of objectives
(:mod:`kubetune_trial.objectives`) can both raise them without importing each other.
"""

from __future__ import annotations

from kubetune.errors import KubetuneError


class ObjectiveNotLoadable(KubetuneError):
    """The objective cannot run at all; ``field`` names the spec field to fix."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
