"""Converters from other tuners' files to a Study: W&B sweeps, Katib
Experiments, and the Hydra Optuna sweeper's configuration.

Each converter maps what has an Optuna counterpart and lists everything else
in :attr:`Conversion.warnings` (the CLI prints them on standard error):
nothing is dropped silently. The Study is validated like any other, so a
conversion that yields an invalid Study fails with the field named.

Example:
    >>> result = convert("wandb", {"method": "random", "program": "train.py",
    ...     "metric": {"name": "loss"}, "parameters": {"lr": {"min": 0.001, "max": 0.1}}})
    >>> result.study["spec"]["searchSpace"]["lr"]
    {'type': 'float', 'low': 0.001, 'high': 0.1}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from kubetune.convert.common import Conversion, ConversionError
from kubetune.study.spec import SpecError, load_study

Source = Literal["wandb", "katib", "hydra"]
SOURCES: tuple[Source, ...] = ("wandb", "katib", "hydra")

__all__ = ["SOURCES", "Conversion", "ConversionError", "Source", "check", "convert"]


def convert(
    source: Source,
    document: Mapping[str, Any] | str | Path,
    *,
    name: str | None = None,
    **options: Any,
) -> Conversion:
    """Convert a file (path, YAML text or mapping) of kind ``source`` to a Study.

    ``options`` go to the converter (e.g. ``program=`` and ``metric=`` for Hydra,
    ``image=`` for all).
    """
    data, default_name = _read(document)
    if source == "wandb":
        from kubetune.convert.wandb import convert_sweep as converter
    elif source == "katib":
        from kubetune.convert.katib import convert_experiment as converter
    elif source == "hydra":
        from kubetune.convert.hydra import convert_sweeper as converter
    else:
        raise ConversionError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    result = converter(data, name=name, default_name=default_name, **options)
    check(result)
    return result


def _read(document: Mapping[str, Any] | str | Path) -> tuple[dict[str, Any], str]:
    if isinstance(document, Mapping):
        return dict(document), "converted"
    import yaml

    path = Path(document) if "\n" not in str(document) else None
    if path is not None and path.is_file():
        text, default_name = path.read_text(encoding="utf-8"), path.stem
    elif (
        path is not None
        and "\n" not in str(document)
        and str(document).endswith((".yaml", ".yml", ".json"))
    ):
        raise ConversionError(f"{document}: no such file")
    else:
        text, default_name = str(document), "converted"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConversionError(f"not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConversionError("the file does not hold a mapping")
    return data, default_name


def check(result: Conversion) -> None:
    """Raise ConversionError when the converted Study does not validate."""
    from kubetune.engine.bridge import check_buildable

    try:
        study = load_study(result.study)
        check_buildable(study.spec)
    except SpecError as error:
        lines = "; ".join(f"{path}: {reason}" for path, reason in error.problems)
        raise ConversionError(f"the converted Study is not valid: {lines}") from None
