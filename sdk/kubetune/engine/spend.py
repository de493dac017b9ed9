"""What a study's trials have spent in resources, and whether a spend budget is used up.

A trial holds its pod's resources (``spec.trial.resources`` x ``nodes``) from the
moment a worker claims it to the moment it ends, so its spend is those requests
times its run time: ``datetime_complete - datetime_start`` as Optuna stored it
(now, for a running trial). Every attempt counts: a retried attempt, a pruned
trial, a trial stopped by a suspend.

Why the trials' times and not the pods' containerStatuses: the trial runner
decides under the claim lock whether one more trial fits the budget, and it
sees the storage, not the pods; local mode has no pods at all. Measured from
the trials, the operator's status, ``kubetune run``'s progress line and every
worker's claim agree to the second. What this leaves out is a pod's time
outside any trial (scheduling, pulling the image, importing the objective, idling
between ``trialsPerPod`` trials): a few seconds a pod, and the budget is
about the search, which a user can set knowing it.

Example:
    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({"budget": {"maxGpuHours": 2, "pricePerHour": {"gpu": 2.5}},
    ...     "trial": {"python": "m:f", "resources": {"limits": {"nvidia.com/gpu": 1}}}})
    >>> spend = spend_of(spec, trial_seconds=7200)
    >>> spend.gpu_hours, spend.cost
    (2.0, 5.0)
    >>> used_up(spec, spend)
    'spent 2 of 2 GPU-hours'
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.study.spec import SpendStatus, StudySpec, trial_request


@dataclass(frozen=True)
class Spend:
    """Resource-hours used by a study's trials, and their cost at the spec's prices."""

    trial_hours: float
    gpu_hours: float
    cpu_hours: float
    cost: float | None
    """None when the spec gives no ``pricePerHour``."""

    def to_status(self) -> SpendStatus:
        """``status.spend``, to four significant digits (what people read)."""
        return SpendStatus(
            trial_hours=_digits(self.trial_hours),
            gpu_hours=_digits(self.gpu_hours),
            cpu_hours=_digits(self.cpu_hours),
            cost=None if self.cost is None else _digits(self.cost),
        )

    def summary(self) -> str:
        """A short line for the CLI: ``1.25 GPU-h, 0.5 CPU-h, cost 3.13``."""
        parts = []
        if self.gpu_hours:
            parts.append(f"{self.gpu_hours:.3g} GPU-h")
        if self.cpu_hours:
            parts.append(f"{self.cpu_hours:.3g} CPU-h")
        if not parts:
            parts.append(f"{self.trial_hours:.3g} trial-h")
        if self.cost is not None:
            parts.append(f"cost {self.cost:.4g}")
        return ", ".join(parts)


def _digits(value: float) -> float:
    return float(f"{value:.4g}")


def spend_of(spec: StudySpec, trial_seconds: float) -> Spend:
    """The spend of trials that ran ``trial_seconds`` in all, each holding the spec's
    resources (see :func:`kubetune.study.spec.trial_request`)."""
    hours = trial_seconds / 3600
    gpu_hours = hours * trial_request(spec.trial, "gpu")
    cpu_hours = hours * trial_request(spec.trial, "cpu")
    prices = spec.budget.price_per_hour
    cost = None if prices is None else gpu_hours * prices.gpu + cpu_hours * prices.cpu
    return Spend(trial_hours=hours, gpu_hours=gpu_hours, cpu_hours=cpu_hours, cost=cost)


def used_up(spec: StudySpec, spend: Spend) -> str | None:
    """Which spend budget is used up, in words (``spent 2 of 2 GPU-hours``); None while
    every one allows more."""
    budget = spec.budget
    limits = (
        (spend.gpu_hours, budget.max_gpu_hours, "spent {:.3g} of {:g} GPU-hours"),
        (spend.cpu_hours, budget.max_cpu_hours, "spent {:.3g} of {:g} CPU-hours"),
        (spend.cost, budget.max_cost, "spent {:.4g} of maxCost {:g}"),
    )
    for spent, limit, sentence in limits:
        if limit is not None and spent is not None and spent >= limit:
            return sentence.format(spent, limit)
    return None


def has_limit(spec: StudySpec) -> bool:
    """Whether the spec sets a spend budget."""
    budget = spec.budget
    return any(
        limit is not None for limit in (budget.max_gpu_hours, budget.max_cpu_hours, budget.max_cost)
    )
