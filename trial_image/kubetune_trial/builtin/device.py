"""Which device a built-in model trains on: a GPU when the pod has one, else the CPU.

:func:`probe` looks at the machine (how many CUDA devices torch sees, whether
the installed XGBoost and LightGBM were built with GPU support);
:func:`decide` turns those facts and ``builtin.device`` into the keyword
arguments each library takes. ``decide`` is a pure function, so tests can ask
what happens on a GPU machine without one.

Example:
    >>> facts = Facts(cuda_devices=1, xgboost_cuda=True, lightgbm_gpu=False)
    >>> decide("xgboost", "auto", facts).params
    {'device': 'cuda'}
    >>> decide("lightning", "auto", facts).params
    {'accelerator': 'auto', 'devices': 1}
    >>> decide("lightgbm", "auto", facts).params   # the pip wheel has no GPU build
    {'device_type': 'cpu'}
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

from kubetune_trial.errors import ObjectiveNotLoadable

Requested = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Facts:
    """What this machine offers."""

    cuda_devices: int
    xgboost_cuda: bool
    lightgbm_gpu: bool


@dataclass(frozen=True)
class DeviceSettings:
    """Where a model trains (``"cuda"`` or ``"cpu"``) and the library's arguments for it."""

    device: Literal["cuda", "cpu"]
    params: dict[str, Any]


def decide(model: str, requested: Requested, facts: Facts) -> DeviceSettings:
    """The device settings for ``model``; raise if ``cuda`` is requested but unusable."""
    usable = {
        "xgboost": facts.xgboost_cuda,
        "lightgbm": facts.lightgbm_gpu,
        "lightning": True,
    }[model]
    gpu = facts.cuda_devices > 0 and usable and requested != "cpu"
    if requested == "cuda" and not gpu:
        why = (
            "no CUDA device is visible"
            if facts.cuda_devices == 0
            else f"the installed {model} has no GPU support"
        )
        raise ObjectiveNotLoadable("spec.trial.builtin.device", f"cuda was asked but {why}")
    if model == "xgboost":
        return DeviceSettings("cuda" if gpu else "cpu", {"device": "cuda" if gpu else "cpu"})
    if model == "lightgbm":
        return DeviceSettings("cuda" if gpu else "cpu", {"device_type": "gpu" if gpu else "cpu"})
    # Lightning: "auto" picks the GPU itself (and would pick other accelerators we do not
    # know of); one device, since a trial of the built-in MLP is one process.
    accelerator = "cpu" if requested == "cpu" or not gpu else "auto"
    return DeviceSettings("cuda" if gpu else "cpu", {"accelerator": accelerator, "devices": 1})


def probe(model: str) -> Facts:
    """The facts that matter for ``model``, found without importing what it does not need."""
    devices = cuda_device_count(use_torch=model == "lightning")
    return Facts(
        cuda_devices=devices,
        xgboost_cuda=devices > 0 and model == "xgboost" and _xgboost_has_cuda(),
        lightgbm_gpu=devices > 0 and model == "lightgbm" and _lightgbm_has_gpu(),
    )


def cuda_device_count(*, use_torch: bool) -> int:
    """CUDA devices this process may use.

    With ``use_torch``, torch's own answer (the Lightning model imports torch
    anyway). Otherwise the ``/dev/nvidiaN`` files that the NVIDIA device plugin
    mounts into a GPU pod, capped by ``CUDA_VISIBLE_DEVICES``: the boosters do
    not need torch, and importing it costs a second and a half per worker.
    """
    if use_torch:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    count = sum(1 for name in _dev_entries() if name.removeprefix("nvidia").isdigit())
    return min(count, len(visible.split(","))) if visible else count


def _dev_entries() -> list[str]:
    try:
        return [name for name in os.listdir("/dev") if name.startswith("nvidia")]
    except OSError:
        return []


def _xgboost_has_cuda() -> bool:
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA"))


@functools.cache
def _lightgbm_has_gpu() -> bool:
    """Whether LightGBM was built with GPU support: only training tells."""
    import lightgbm
    import numpy as np

    rows = np.arange(40, dtype=float).reshape(20, 2)
    try:
        lightgbm.train(
            {"device_type": "gpu", "verbosity": -1, "num_leaves": 2},
            lightgbm.Dataset(rows, label=rows[:, 0] > 10),
            num_boost_round=1,
        )
    except lightgbm.basic.LightGBMError:
        return False
    return True
