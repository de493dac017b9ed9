"""A winner you can trust: re-run the best trials with other seeds, choose on the mean.

The best of many noisy trials is often the luckiest one. Verification (``spec.verify``,
``kubetune verify``) re-runs the ``top`` best trials ``repeats`` times each with their
parameters fixed, and the winner is the trial whose repeats have the best mean; each
re-run trial's mean comes with a 95% t-interval.

Where the repeats live: a study of their own, ``<study>.verify``, in the same storage,
with the parameters fixed by Optuna's ``enqueue_trial``. Not the study's own trials,
because there a repeat would (1) feed the sampler the same point again and again with
different values, pulling TPE or a GP towards the verified points, (2) count against
``maxTrials``, the failure limits, the plateau rule and the Terminator, and (3) be able
to become ``bestTrial`` on one lucky value; each of those would need every reader of the
study (ledger, budget, status, fork, tracking) to skip repeats. In a study of their own
they are plain trials that the trial runner claims and runs as any other (the only code
that runs objectives), and the study's trials stay exactly what its sampler proposed.

How an objective knows it is a repeat: the trial's user attribute ``kubetune.repeat``
(1..repeats; absent on the study's own trials); :func:`seed` turns it into a seed, and
commands get it as ``$KUBETUNE_REPEAT`` and ``$KUBETUNE_SEED``.

Example:
    >>> import optuna
    >>> trial = optuna.trial.create_trial(value=0.5, user_attrs={REPEAT_ATTR: 2})
    >>> seed(trial, base=42)
    44
    >>> mean, low, high = t_interval([1.0, 2.0, 3.0])
    >>> mean, round(low, 3), round(high, 3)
    (2.0, -0.484, 4.484)
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubetune.engine import bridge
from kubetune.engine.trials import effective_params
from kubetune.study.spec import Budget, PrunerSpec, SamplerSpec, StudySpec, VerifiedStatus

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: A repeat's user attribute: which repeat it is (1..repeats).
REPEAT_ATTR = "kubetune.repeat"
#: A repeat's user attribute: the number of the study's trial it re-runs.
REPEAT_OF_ATTR = "kubetune.repeat_of"
#: The study's system attribute holding what verification found (a VerifiedStatus, JSON).
VERIFIED_ATTR = "kubetune.verified"
#: What a study's repeats study is named after it.
VERIFY_SUFFIX = ".verify"
#: The repeats study's system attribute: the id of the study whose trials it re-runs.
#: A study deleted and run again (``--fresh``) has a new id: its old repeats are stale.
VERIFIES_ATTR = "kubetune.verifies"
#: The repeats study's system attribute: the last verification asked for, {top, repeats}.
PLAN_ATTR = "kubetune.verify_plan"
#: The confidence of the interval shown beside each mean.
CONFIDENCE = 0.95

#: Two-sided 95% quantiles of Student's t by degrees of freedom, for when SciPy is not
#: installed (the operator's image leaves it out); beyond 30 the normal's 1.96 is within
#: 2% of the t quantile.
_T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
    16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
    23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
    30: 2.042,
}  # fmt: skip


def seed(trial: optuna.Trial | FrozenTrial, base: int = 0) -> int:
    """The seed an objective should use: ``base`` for the study's own trials (so they
    are comparable), ``base + k`` for the k-th verification repeat (a new draw of the
    noise each time).

    Example:
        >>> def objective(trial):
        ...     x = trial.suggest_float("x", -5, 5)
        ...     rng = random.Random(kubetune.seed(trial, base=7))
        ...     return x * x + rng.gauss(0, 1)  # doctest: +SKIP
    """
    return base + int(trial.user_attrs.get(REPEAT_ATTR, 0))


def t_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """The mean of ``values`` and its two-sided 95% Student-t interval (None, None with
    fewer than two values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    freedom = len(values) - 1
    try:
        from scipy.stats import t

        quantile = float(t.ppf(0.5 + CONFIDENCE / 2, freedom))
    except ImportError:
        quantile = _T95.get(freedom, 1.96)
    half = quantile * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def verify_study_name(study_name: str) -> str:
    """The name of the study holding ``study_name``'s repeats."""
    return study_name + VERIFY_SUFFIX


def verification_spec(spec: StudySpec, study_name: str, count: int) -> StudySpec:
    """The spec of the repeats study: the study's own objective and trial template, a
    budget of exactly its ``count`` queued repeats (so no trial of new parameters is
    ever made there; nothing else stops it: no timeout, spend or stopWhen rule, which
    the study's own budget has spent), no pruner (a repeat needs its final value) and
    the random sampler (the parameters are fixed anyway; a grid would refuse points it
    did not propose)."""
    return spec.model_copy(
        update={
            "budget": Budget(
                max_trials=count,
                parallelism=spec.budget.parallelism,
                max_failed_trials=count,
            ),
            "pruner": PrunerSpec(name="none"),
            "sampler": SamplerSpec(name="random"),
            "verify": None,
            "fork_from": None,
            "storage": spec.storage.model_copy(
                update={"study_name": verify_study_name(study_name)}
            ),
        }
    )


def top_trials(trials: Sequence[FrozenTrial], direction: str, top: int) -> list[FrozenTrial]:
    """The ``top`` best COMPLETE trials, best first; a trial whose parameters an earlier
    one already had is skipped (re-running one point twice verifies nothing more)."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ordered = sorted(complete, key=lambda t: t.value, reverse=direction == "maximize")
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for trial in ordered:
        key = json.dumps(effective_params(trial), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == top:
            break
    return chosen


def prepare_verification(
    study: optuna.Study, spec: StudySpec, top: int, repeats: int
) -> tuple[StudySpec, int]:
    """Create (or take up again) ``study``'s repeats study and queue the repeats of its
    ``top`` best trials that are not there yet; returns the repeats study's spec
    (:func:`verification_spec`'s, stored in it as any study's, for the runner to read)
    and how many repeats it queued.

    Raises ValueError when the study has more than one objective or no completed trial.
    """
    import optuna

    if len(study.directions) != 1:
        raise ValueError("verify: needs a single objective (a Pareto front has no one best)")
    direction = study.direction.name.lower()
    chosen = top_trials(study.get_trials(deepcopy=False), direction, top)
    if not chosen:
        raise ValueError(f"study {study.study_name!r} has no completed trial to verify")
    storage = study._storage
    name = verify_study_name(study.study_name)
    if _repeats_study(study) is None:
        with contextlib.suppress(KeyError):  # the repeats of a deleted study of that name
            optuna.delete_study(study_name=name, storage=storage)
    repeats_study = bridge.prepare_study(
        storage, name, verification_spec(spec, study.study_name, top * repeats)
    )
    storage.set_study_system_attr(repeats_study._study_id, VERIFIES_ATTR, study._study_id)
    storage.set_study_system_attr(
        repeats_study._study_id, PLAN_ATTR, {"top": top, "repeats": repeats}
    )
    queued_before = {
        (t.user_attrs.get(REPEAT_OF_ATTR), t.user_attrs.get(REPEAT_ATTR))
        for t in repeats_study.get_trials(deepcopy=False)
    }
    queued = 0
    for trial in chosen:
        for repeat in range(1, repeats + 1):
            if (trial.number, repeat) in queued_before:
                continue
            repeats_study.enqueue_trial(
                effective_params(trial),
                user_attrs={REPEAT_OF_ATTR: trial.number, REPEAT_ATTR: repeat},
                skip_if_exists=False,
            )
            queued += 1
    final = verification_spec(spec, study.study_name, len(queued_before) + queued)
    bridge.store_spec(storage, repeats_study._study_id, final)
    return final, queued


def summarize(study: optuna.Study) -> VerifiedStatus | None:
    """What the repeats of ``study`` show (None when it has no repeats study): each
    re-run trial's mean and 95% interval, best mean first, and the winner. Stored in
    the study (system attribute ``kubetune.verified``) for the status and
    ``best_params.json``."""
    from optuna.trial import TrialState

    storage = study._storage
    repeats_study = _repeats_study(study)
    if repeats_study is None:
        return None
    values: dict[int, list[float]] = {}
    unfinished = False
    for repeat in repeats_study.get_trials(deepcopy=False):
        of = repeat.user_attrs.get(REPEAT_OF_ATTR)
        if of is None:
            continue
        values.setdefault(int(of), [])
        if repeat.state == TrialState.COMPLETE and repeat.value is not None:
            values[int(of)].append(repeat.value)
        elif not repeat.state.is_finished():
            unfinished = True
    own = {t.number: t for t in study.get_trials(deepcopy=False) if t.number in values}
    maximize = study.direction.name == "MAXIMIZE"
    rows: list[dict[str, Any]] = []
    for number, found in values.items():
        trial = own.get(number)
        mean, low, high = t_interval(found) if found else (None, None, None)
        rows.append(
            {
                "number": number,
                "value": trial.value if trial is not None else None,
                "mean": mean,
                "low": low,
                "high": high,
                "repeats": len(found),
                "params": effective_params(trial) if trial is not None else {},
            }
        )

    def order(row: Mapping[str, Any]) -> tuple[bool, float]:
        mean = row["mean"]
        return (mean is None, 0.0 if mean is None else (-mean if maximize else mean))

    rows.sort(key=order)
    winner = rows[0]["number"] if rows and rows[0]["mean"] is not None else None
    plan = storage.get_study_system_attrs(repeats_study._study_id).get(PLAN_ATTR) or {}
    verified = VerifiedStatus.model_validate(
        {"winner": winner, "trials": rows, "done": not unfinished, **plan}
    )
    storage.set_study_system_attr(
        study._study_id, VERIFIED_ATTR, verified.model_dump(mode="json", by_alias=True)
    )
    return verified


def _repeats_study(study: optuna.Study) -> optuna.Study | None:
    """The study holding ``study``'s repeats, if there is one and it is this study's
    (not the leftover of a deleted study of the same name)."""
    import optuna

    try:
        repeats_study = optuna.load_study(
            study_name=verify_study_name(study.study_name), storage=study._storage
        )
    except KeyError:
        return None
    attrs = study._storage.get_study_system_attrs(repeats_study._study_id)
    return repeats_study if attrs.get(VERIFIES_ATTR) == study._study_id else None


def stored_verified(study: optuna.Study) -> VerifiedStatus | None:
    """What the last :func:`summarize` of ``study`` stored, if any."""
    raw = study._storage.get_study_system_attrs(study._study_id).get(VERIFIED_ATTR)
    return None if raw is None else VerifiedStatus.model_validate(raw)
