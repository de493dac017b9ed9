"""The table a built-in objective trains on, and how it is split for validation.

Data comes from a CSV or Parquet file (read with pyarrow, no pandas needed) or
from a dataset that ships inside an installed package (``sklearn:wine``), so
it works on a machine with no network. Text and dictionary columns become
integer codes: code ``i`` is ``Table.categories[column][i]``, the column's
distinct values in sorted order, saved with the model (``best.json``) so new
rows can be encoded the same way; a value the mapping lacks should be NaN.
Missing values become NaN (the boosters handle NaN natively; the MLP imputes
the training mean). Classification labels become class indices ``0..k-1``;
the original labels are kept in ``Table.classes``.

Example:
    >>> table = load_table(BuiltinData(dataset="sklearn:iris"), "classification")
    >>> table.features.shape, table.classes
    ((150, 4), ['0', '1', '2'])
    >>> len(split(table, Validation(kind="kfold", folds=3), seed=0))
    3
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kubetune.study.builtin_rules import (
    SKLEARN_DATASETS,
    RuleBroken,
    Task,
    check_columns,
    check_data,
)
from kubetune.study.spec import BuiltinData, Validation

from kubetune_trial.errors import ObjectiveNotLoadable

__all__ = ["MAX_CLASSES", "SKLEARN_DATASETS", "Table", "load_table", "split"]

#: More distinct labels than this in a classification target is almost surely a regression.
MAX_CLASSES = 100

_FIELD = "spec.trial.builtin.data"
_UNSAFE_IN_NAMES = re.compile(r"[\s\"',:\[\]{}<>]")


@dataclass(frozen=True)
class Table:
    """Features as a float matrix, the target as a vector, and their names.

    ``categories`` maps each text column to its values: code ``i`` in the matrix
    stands for ``categories[column][i]``.
    """

    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    classes: list[str] | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0

    @property
    def model_feature_names(self) -> list[str]:
        """The feature names given to a model: the columns' names, with the characters
        LightGBM (JSON punctuation) and XGBoost (``[ ] <``) refuse, and spaces, made ``_``."""
        names: list[str] = []
        for name in self.feature_names:
            safe = _UNSAFE_IN_NAMES.sub("_", name) or "_"
            while safe in names:  # two names that differ only in such characters
                safe += "_"
            names.append(safe)
        return names


def load_table(data: BuiltinData, task: Task) -> Table:
    """Read the spec's table; raise :class:`ObjectiveNotLoadable` naming the bad field."""
    categories: dict[str, list[str]] = {}
    try:
        check_data(data)  # the spec's validation did; a spec that skipped it is caught here
        if data.dataset is not None:
            features, target, names = _packaged(data)
        else:
            assert data.path is not None and data.target is not None  # the spec checks both
            features, target, names, categories = _from_file(Path(data.path), data)
    except RuleBroken as broken:
        raise ObjectiveNotLoadable(broken.field, broken.reason) from None
    if len(target) < 4:
        raise ObjectiveNotLoadable(_FIELD, f"has {len(target)} rows; a split needs more")
    if any(value is None for value in target):
        raise ObjectiveNotLoadable(f"{_FIELD}.target", "has missing values")
    if task == "regression":
        try:
            values = np.asarray(target, dtype=float)
        except (TypeError, ValueError):
            raise ObjectiveNotLoadable(
                f"{_FIELD}.target", "is not numeric; use task: classification"
            ) from None
        if np.isnan(values).any():
            raise ObjectiveNotLoadable(f"{_FIELD}.target", "has missing values")
        return Table(features, values, names, categories=categories)
    classes, codes = np.unique(np.asarray(target), return_inverse=True)
    if len(classes) < 2:
        raise ObjectiveNotLoadable(f"{_FIELD}.target", "has a single class")
    if len(classes) > MAX_CLASSES:
        raise ObjectiveNotLoadable(
            "spec.trial.builtin.task",
            f"the target has {len(classes)} distinct values; is this task: regression?",
        )
    return Table(features, codes.astype(np.int64), names, [str(c) for c in classes], categories)


def _packaged(data: BuiltinData) -> tuple[np.ndarray, np.ndarray, list[str]]:
    assert data.dataset is not None  # and check_data accepted its name
    name = data.dataset.partition(":")[2]
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    names = [str(n) for n in bunch.feature_names]
    features = np.asarray(bunch.data, dtype=float)
    if data.features is not None:
        missing = [f for f in data.features if f not in names]
        if missing:
            raise ObjectiveNotLoadable(
                f"{_FIELD}.features", f"{data.dataset} has no column {missing[0]!r}"
            )
        index = [names.index(f) for f in data.features]
        features, names = features[:, index], list(data.features)
    return features, np.asarray(bunch.target), names


def _from_file(
    path: Path, data: BuiltinData
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, list[str]]]:
    field = f"{_FIELD}.path"
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ObjectiveNotLoadable(field, f"{str(path)!r} {_not_found(path)}")
    try:
        import pyarrow as pa
    except ImportError:
        raise ObjectiveNotLoadable(
            field, "reading a file needs pyarrow: pip install 'kubetune[trial]'"
        ) from None
    try:
        if suffix == ".csv":
            import pyarrow.csv

            # An empty field is a missing value, whatever the column's type.
            options = pyarrow.csv.ConvertOptions(strings_can_be_null=True)
            table = pyarrow.csv.read_csv(path, convert_options=options)
        else:
            import pyarrow.parquet

            table = pyarrow.parquet.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise ObjectiveNotLoadable(field, f"cannot read {str(path)!r}: {error}") from None
    names = check_columns(list(table.column_names), data, path.name)
    columns = [_numeric(table.column(c)) for c in names]
    categories = {name: values for name, (_, values) in zip(names, columns, strict=True) if values}
    features = np.column_stack([codes for codes, _ in columns])
    assert data.target is not None
    return (
        features,
        np.asarray(table.column(data.target).to_pylist(), dtype=object),
        names,
        categories,
    )


def _not_found(path: Path) -> str:
    """Why a data file is missing, said for where the worker runs."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):  # set in every pod
        return "does not exist in the trial pod (is the volume mounted, or is it in the image?)"
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()}, where the worker runs)"
    return f"does not exist on this machine{where}"


def _numeric(column: object) -> tuple[np.ndarray, list[str]]:
    """A column as floats, and its categories: numbers as they are (no categories),
    anything else as the index of its value among the sorted distinct values; null is NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunked: pa.ChunkedArray = column  # type: ignore[assignment]
    kind = chunked.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        values = pc.cast(chunked, pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(values, float), []
    if pa.types.is_dictionary(kind):
        chunked = pc.cast(chunked, kind.value_type)
    text = chunked.cast(pa.string())
    categories = sorted(v for v in pc.unique(text).to_pylist() if v is not None)
    codes = pc.index_in(text, value_set=pa.array(categories, pa.string()))
    return np.asarray(codes.to_numpy(zero_copy_only=False), float), categories


def split(table: Table, validation: Validation, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train indices, validation indices)`` pairs: one for holdout, ``folds`` for k-fold."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    rows = np.arange(len(table.target))
    stratify = table.classes is not None and np.bincount(table.target).min() >= 2
    if validation.kind == "holdout":
        try:
            train, valid = train_test_split(
                rows,
                test_size=validation.test_size,
                random_state=seed,
                stratify=table.target if stratify else None,
            )
        except ValueError as error:
            raise ObjectiveNotLoadable(
                "spec.trial.builtin.validation.testSize", str(error)
            ) from None
        return [(np.sort(train), np.sort(valid))]
    if validation.folds > len(rows):
        raise ObjectiveNotLoadable(
            "spec.trial.builtin.validation.folds", f"is more than the {len(rows)} rows"
        )
    folds = validation.folds
    if stratify and np.bincount(table.target).min() >= folds:
        splitter: KFold | StratifiedKFold = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    return [(train, valid) for train, valid in splitter.split(rows, table.target)]
