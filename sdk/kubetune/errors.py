"""The errors the client and the CLI raise, each naming the object it is about.

The CLI maps each to an exit code (see :mod:`kubetune.cli`); none of the
messages ever holds a password.

Example:
    >>> str(NotFound("study", "demo", "default"))
    'study "demo" not found in namespace "default"'
"""

from __future__ import annotations

from typing import Any


class KubetuneError(Exception):
    """The root of every error kubetune raises (the client's, the spec's, local mode's, ...)."""


class ClusterUnavailable(KubetuneError):
    """No cluster configuration was found, or the API server did not answer."""


class ApiError(KubetuneError):
    """The API server refused a request (the message says which and why)."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubetuneError, LookupError):
    """An object (study, pod, trial, best trial) does not exist (yet)."""

    def __init__(self, kind: str, name: str, namespace: str | None = None, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.namespace = namespace
        where = f' in namespace "{namespace}"' if namespace else ""
        super().__init__(f'{kind} "{name}" not found{where}' + (f"; {hint}" if hint else ""))


class NotReady(KubetuneError):
    """The study exists but has not got that far, e.g. its Optuna study is not created yet."""


class NoBestTrial(NotFound):
    """No trial of the study has completed yet."""

    def __init__(self, name: str, namespace: str | None = None) -> None:
        KubetuneError.__init__(
            self,
            f'study "{name}"'
            + (f' in namespace "{namespace}"' if namespace else "")
            + " has no completed trial yet",
        )
        self.kind, self.name, self.namespace = "best trial", name, namespace


class SpecChangeRefused(KubetuneError):
    """The study has started and the change touches fields that define its trials.

    ``fields`` are the spec fields that differ (``objective``, ``searchSpace``,
    ``sampler``, ``trial``); ``condition`` is the operator's
    ``SpecChangeRefused`` condition when it was the operator that refused.
    """

    def __init__(
        self,
        name: str,
        fields: list[str],
        message: str,
        condition: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.name = name
        self.fields = fields
        self.condition = condition


class StudyFailed(KubetuneError):
    """The study ended in phase Failed; ``reason`` and ``message`` say why.

    ``condition`` is the ``Failed`` condition of the status, when there is one.
    """

    def __init__(
        self,
        name: str,
        message: str,
        reason: str = "",
        condition: dict[str, Any] | None = None,
        status: dict[str, Any] | None = None,
    ) -> None:
        text = f'study "{name}" failed' + (f" ({reason})" if reason else "")
        super().__init__(f"{text}: {message}" if message else text)
        self.name = name
        self.reason = reason
        self.message = message
        self.condition = condition
        self.status = status or {}


class WaitTimeout(KubetuneError, TimeoutError):
    """``wait`` gave up before the study finished; ``status`` is the last one seen."""

    def __init__(self, name: str, timeout: float, status: dict[str, Any] | None = None) -> None:
        phase = (status or {}).get("phase") or "no phase yet"
        progress = (status or {}).get("progress")
        super().__init__(
            f'study "{name}" did not finish within {timeout:g} s '
            f"(phase {phase}" + (f", {progress} trials" if progress else "") + ")"
        )
        self.name = name
        self.timeout = timeout
        self.status = status or {}
