"""``kubetune fork NAME`` on a cluster: the fork is a Study with ``spec.forkFrom``, and
the real operator copies the parent's trials that fit before the fork's first pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.engine.fork import FORKED_FROM_ATTR
from optuna.trial import TrialState
from scenario import create, optuna_study, spec, wait_phase
from test_readme_claims import kubetune  # the CLI as a user runs it, on this cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_fork_of_a_cluster_study_starts_from_its_trials(
    cluster: Any, kube: Any, kubeconfig: Path, storage_url: str, tmp_path: Path
) -> None:
    cluster.start()
    narrow = spec("quadratic", budget={"maxTrials": 6, "parallelism": 2})
    narrow["searchSpace"] = {"x": {"type": "float", "low": -10, "high": 1}}
    create(kube, "narrow", narrow)
    wait_phase(kube, "narrow", "Succeeded")
    parent = optuna_study(kube, storage_url, "narrow")
    inside = [t for t in parent.trials if t.params["x"] >= -5]

    # Widening the started study in place is refused, pointing to the fork.
    edited = kube.get("studies", "narrow")
    edited["spec"]["searchSpace"]["x"]["high"] = 10
    edited_file = tmp_path / "narrow.yaml"
    edited_file.write_text(
        yaml.safe_dump(
            {k: edited[k] for k in ("apiVersion", "kind", "spec")}
            | {"metadata": {"name": "narrow"}}
        )
    )
    refused = kubetune(kubeconfig, "submit", str(edited_file))
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "kubetune fork narrow" in refused.stderr

    # With -o the fork is written for kubectl apply, not created.
    written = kubetune(
        kubeconfig, "fork", "narrow", "--set", "sampler.name=gp", "-o", str(tmp_path / "gp.yaml")
    )
    assert written.returncode == 0, written.stdout + written.stderr
    assert yaml.safe_load((tmp_path / "gp.yaml").read_text())["spec"]["forkFrom"]["study"] == (
        "narrow"
    )
    assert kube.get("studies", "narrow-fork", missing_ok=True) is None

    forked = kubetune(
        kubeconfig,
        "fork",
        "narrow",
        "--set",
        "searchSpace.x={type: float, low: -5, high: 10}",
        "--set",
        "sampler={name: random, seed: 7}",
        "--name",
        "wide",
    )
    assert forked.returncode == 0, forked.stdout + forked.stderr
    assert "study/wide created" in forked.stdout

    final = wait_phase(kube, "wide", "Succeeded")
    left_out = len(parent.trials) - len(inside)
    assert final["parent"] == {
        "name": "narrow",
        "trialsCopied": len(inside),
        "trialsLeftOut": left_out,
    }
    wide = kube.get("studies", "wide")
    assert wide["spec"]["forkFrom"]["study"] == "narrow"
    assert wide["spec"]["budget"]["maxTrials"] == 6 + 6  # the parent's finished + its budget

    study = optuna_study(kube, storage_url, "wide")
    copied = [t for t in study.trials if FORKED_FROM_ATTR in t.user_attrs]
    new = [t for t in study.trials if FORKED_FROM_ATTR not in t.user_attrs]
    assert sorted(t.user_attrs[FORKED_FROM_ATTR]["number"] for t in copied) == sorted(
        t.number for t in inside
    )
    assert len(new) == 12 - len(inside)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert any(t.params["x"] > 1 for t in new)  # the new range is searched
    assert final["trials"]["complete"] == 12
    described = kubetune(kubeconfig, "describe", "wide")
    assert described.returncode == 0, described.stderr
    assert f"Forked from:  narrow: {len(inside)} trials copied, {left_out} left out" in (
        described.stdout
    )
