"""Trials as records: what the client and ``kubetune trials`` show of each trial.

Read from the Optuna storage (the status only keeps counts and the best), with
where the trial ran (the pod, from the ``kubetune.worker`` attribute) and why
it failed (``kubetune.fail_reason``).

Example:
    >>> records = [TrialRecord.from_frozen(t) for t in study.trials]   # doctest: +SKIP
    >>> records[0].state, records[0].pod                                # doctest: +SKIP
    ('COMPLETE', 'lgbm-trial-x7k2p')
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubetune.engine.ledger import TrialLedger
from kubetune.engine.recovery import FAIL_REASON_ATTR, STOPPED_ATTR, WORKER_ATTR
from kubetune.errors import NoBestTrial
from kubetune.study.spec import TrialSummary

if TYPE_CHECKING:
    import optuna
    import pandas
    from optuna.trial import FrozenTrial

#: Trial states, as Optuna names them.
STATES = ("COMPLETE", "PRUNED", "FAIL", "STOPPED", "RUNNING", "WAITING")
#: What kubetune calls a trial Optuna records FAIL though it did not fail: its worker
#: was stopped (Ctrl-C, a Study suspended or scaled down) and handed it back to run again.
STOPPED = "STOPPED"
#: A trial's parameters beyond those Optuna suggested to it: an objective that carries
#: values over from earlier trials (LightGBM's stepwise tuner tunes one group at a time)
#: records here the whole set that produced its value.
PARAMS_ATTR = "kubetune.params"


def effective_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters that produced the trial's value: what ``best_params.json`` and the
    status's best trial show.

    >>> import optuna
    >>> trial = optuna.trial.create_trial(params={"num_leaves": 31},
    ...     distributions={"num_leaves": optuna.distributions.IntDistribution(2, 64)},
    ...     value=0.1, user_attrs={PARAMS_ATTR: {"lambda_l1": 0.5, "num_leaves": 31}})
    >>> effective_params(trial)
    {'num_leaves': 31, 'lambda_l1': 0.5}
    """
    carried = trial.user_attrs.get(PARAMS_ATTR)
    return {**trial.params, **carried} if isinstance(carried, dict) else dict(trial.params)


def best_params_document(
    best: Sequence[Mapping[str, Any]],
    verified: Mapping[str, Any] | None = None,
) -> dict[str, Any] | list[dict[str, Any]] | None:
    """What ``best_params.json`` (and a cluster Study's best-params ConfigMap) holds,
    from the best trial's summary (``value``, ``values``, ``params``) or the Pareto
    front's: the best trial's params, or each front trial's values and params. None
    when there is no best trial. With ``verified`` (status.verified: spec.verify,
    kubetune verify) that has a winner, the winner's params: the best verified mean
    beats the best single value.

    >>> best_params_document([{"value": 0.1, "values": [0.1], "params": {"lr": 0.01}}])
    {'lr': 0.01}
    >>> best_params_document([{"value": 0.1, "params": {"lr": 0.01}}],
    ...     {"winner": 3, "trials": [{"number": 3, "params": {"lr": 0.02}}]})
    {'lr': 0.02}
    """
    winner = verified.get("winner") if verified else None
    if verified and winner is not None:
        for row in verified.get("trials", []):
            if row.get("number") == winner:
                return dict(row["params"])
    if not best:
        return None
    if len(best) == 1 and best[0].get("value") is not None:
        return dict(best[0]["params"])
    return [{"values": list(t["values"]), "params": dict(t["params"])} for t in best]


def state_of(trial: FrozenTrial) -> str:
    """The trial's state as kubetune shows it: Optuna's, except STOPPED for a trial
    handed back when its worker was stopped (Optuna records it FAIL)."""
    if trial.state.name == "FAIL" and trial.user_attrs.get(STOPPED_ATTR):
        return STOPPED
    return trial.state.name


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial: ``values`` (None unless complete), ``duration`` in seconds,
    ``pod`` (or ``host:pid:worker`` locally) and ``fail_reason``."""

    number: int
    state: str
    values: list[float] | None
    params: dict[str, Any]
    duration: float | None
    pod: str | None
    fail_reason: str | None
    started: dt.datetime | None
    completed: dt.datetime | None

    @property
    def value(self) -> float | None:
        """The value of a single-objective trial."""
        return self.values[0] if self.values and len(self.values) == 1 else None

    @classmethod
    def from_frozen(cls, trial: FrozenTrial) -> TrialRecord:
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        worker = trial.user_attrs.get(WORKER_ATTR)
        reason = trial.user_attrs.get(FAIL_REASON_ATTR)
        return cls(
            number=trial.number,
            state=state_of(trial),
            values=list(trial.values) if trial.values is not None else None,
            params=effective_params(trial),
            duration=duration,
            pod=str(worker) if worker is not None else None,
            fail_reason=str(reason) if reason is not None else None,
            started=trial.datetime_start,
            completed=trial.datetime_complete,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601, non-finite values as None."""
        data = dataclasses.asdict(self)
        data["values"] = (
            [v if math.isfinite(v) else None for v in self.values] if self.values else self.values
        )
        for key in ("started", "completed"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


def records(
    trials: Iterable[FrozenTrial], states: Sequence[str] | None = None
) -> list[TrialRecord]:
    """Records of ``trials`` in ``states`` (names, any case; all when None), by number."""
    wanted = {s.upper() for s in states} if states else None
    chosen = [t for t in trials if wanted is None or state_of(t) in wanted]
    return [TrialRecord.from_frozen(t) for t in sorted(chosen, key=lambda t: t.number)]


def to_dataframe(
    rows: Sequence[TrialRecord], metric_names: Sequence[str] | None = None
) -> pandas.DataFrame:
    """One row per trial: number, state, value (or one column per objective),
    ``params_<name>`` columns, duration, pod, fail_reason, started, completed.

    Raises ImportError with the install hint when pandas is missing.
    """
    try:
        import pandas
    except ImportError:
        raise ImportError("as_dataframe=True needs pandas: pip install pandas") from None
    width = max((len(r.values) for r in rows if r.values), default=1)
    names = list(metric_names or [])
    if len(names) != width:
        names = ["value"] if width == 1 else [f"values_{i}" for i in range(width)]
    table = []
    for row in rows:
        entry: dict[str, Any] = {"number": row.number, "state": row.state}
        for index, name in enumerate(names):
            entry[name] = row.values[index] if row.values else None
        entry.update({f"params_{k}": v for k, v in row.params.items()})
        entry.update(
            duration=row.duration,
            pod=row.pod,
            fail_reason=row.fail_reason,
            started=row.started,
            completed=row.completed,
        )
        table.append(entry)
    return pandas.DataFrame(table)


def best_summaries(ledger: TrialLedger, limit: int = 10) -> list[dict[str, Any]]:
    """The best trial (one objective) or up to ``limit`` Pareto-optimal trials."""
    return [
        {
            "number": t.number,
            "value": t.values[0] if len(t.values) == 1 else None,
            "values": list(t.values),
            "params": effective_params(t),
        }
        for t in ledger.best[:limit]
    ]


def best_of(study: optuna.Study) -> list[TrialSummary]:
    """The best trial of ``study`` read from its storage, or its Pareto front (up to
    10 trials), as the status shows them; empty while no trial completed."""
    directions = [d.name.lower() for d in study.directions]
    ledger = TrialLedger.of(study.get_trials(deepcopy=False), directions)
    multi = len(directions) > 1
    return [
        TrialSummary(
            number=t["number"],
            value=None if multi else t["values"][0],
            values=t["values"] if multi else None,
            params=t["params"],
        )
        for t in best_summaries(ledger)
    ]


def best_params_of(
    best: Sequence[TrialSummary], name: str = "", verified: Mapping[str, Any] | None = None
) -> dict[str, Any] | list[dict[str, Any]]:
    """What ``best_params.json`` holds for ``best`` (see :func:`best_of`): the best
    trial's params, or the Pareto front's values and params; the verified winner's
    (``verified``: see :func:`best_params_document`). NoBestTrial when empty."""
    document = best_params_document([t.model_dump() for t in best], verified)
    if document is None:
        raise NoBestTrial(name)
    return document
