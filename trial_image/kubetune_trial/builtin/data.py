"""The table a built-in objective trains on, and how it is split for validation.

Data comes from a CSV or Parquet file (read with pyarrow, no pandas needed) or
from a dataset that ships inside an installed package (``sklearn:wine``), so
it works on a machine with no network. Text and dictionary columns become
integer codes, missing values become NaN (the boosters handle NaN natively;
the MLP imputes the training mean). Classification labels become class
indices ``0..k-1``; the original labels are kept in ``Table.classes``.

Example:
    >>> table = load_table(BuiltinData(dataset="sklearn:iris"), "classification")
    >>> table.features.shape, table.classes
    ((150, 4), ['0', '1', '2'])
    >>> len(split(table, Validation(kind="kfold", folds=3), seed=0))
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from kubetune.spec import BuiltinData, Validation

from kubetune_trial.builtin.metrics import Task
from kubetune_trial.objectives import ObjectiveNotLoadable

#: Datasets that ship inside scikit-learn (no download): ``sklearn:<name>``.
SKLEARN_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
#: More distinct labels than this in a classification target is almost surely a regression.
MAX_CLASSES = 100

_FIELD = "spec.trial.builtin.data"


@dataclass(frozen=True)
class Table:
    """Features as a float matrix, the target as a vector, and their names."""

    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    classes: list[str] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0


def load_table(data: BuiltinData, task: Task) -> Table:
    """Read the spec's table; raise :class:`ObjectiveNotLoadable` naming the bad field."""
    if data.dataset is not None:
        features, target, names = _packaged(data)
    else:
        assert data.path is not None and data.target is not None  # the spec checks both
        features, target, names = _from_file(Path(data.path), data.target, data.features)
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
        return Table(features, values, names)
    classes, codes = np.unique(np.asarray(target), return_inverse=True)
    if len(classes) < 2:
        raise ObjectiveNotLoadable(f"{_FIELD}.target", "has a single class")
    if len(classes) > MAX_CLASSES:
        raise ObjectiveNotLoadable(
            "spec.trial.builtin.task",
            f"the target has {len(classes)} distinct values; is this task: regression?",
        )
    return Table(features, codes.astype(np.int64), names, [str(c) for c in classes])


def _packaged(data: BuiltinData) -> tuple[np.ndarray, np.ndarray, list[str]]:
    assert data.dataset is not None
    package, _, name = data.dataset.partition(":")
    if package != "sklearn" or name not in SKLEARN_DATASETS:
        known = ", ".join(f"sklearn:{n}" for n in SKLEARN_DATASETS)
        raise ObjectiveNotLoadable(
            f"{_FIELD}.dataset", f"{data.dataset!r} is not a packaged dataset (known: {known})"
        )
    if data.target not in (None, "target"):
        raise ObjectiveNotLoadable(
            f"{_FIELD}.target", f"a packaged dataset's target is 'target', not {data.target!r}"
        )
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
    path: Path, target: str, wanted: list[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    field = f"{_FIELD}.path"
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ObjectiveNotLoadable(field, f"{str(path)!r} is neither .csv nor .parquet")
    if not path.is_file():
        raise ObjectiveNotLoadable(field, f"{str(path)!r} does not exist (is the volume mounted?)")
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
    columns = list(table.column_names)
    if target not in columns:
        raise ObjectiveNotLoadable(
            f"{_FIELD}.target", f"{target!r} is not a column of {path.name} (it has: {columns})"
        )
    names = wanted if wanted is not None else [c for c in columns if c != target]
    missing = [c for c in names if c not in columns]
    if missing:
        raise ObjectiveNotLoadable(
            f"{_FIELD}.features", f"{path.name} has no column {missing[0]!r}"
        )
    if not names:
        raise ObjectiveNotLoadable(f"{_FIELD}.features", f"{path.name} has no feature columns")
    features = np.column_stack([_numeric(table.column(c)) for c in names])
    return features, np.asarray(table.column(target).to_pylist(), dtype=object), names


def _numeric(column: object) -> np.ndarray:
    """A column as floats: numbers as they are, anything else as category codes, null as NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunked: pa.ChunkedArray = column  # type: ignore[assignment]
    kind = chunked.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return np.asarray(pc.cast(chunked, pa.float64()).to_numpy(zero_copy_only=False), float)
    if pa.types.is_dictionary(kind):
        chunked = pc.cast(chunked, kind.value_type)
    encoded = pc.dictionary_encode(chunked.cast(pa.string())).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(float)
    codes[np.asarray(encoded.is_null().to_numpy(zero_copy_only=False), bool)] = np.nan
    return codes


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
