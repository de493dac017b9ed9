"""The Helm chart under the real Helm engine (helm-python-sdk embeds Helm's Go SDK): render
and lint with no helm binary and no cluster.

``render(values)`` gives the rendered documents of one value set, parsed, each with the
template it came from; renders are cached per value set, so the suite stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from chart_support import CHART_DIR, NAMESPACE, RELEASE, Manifest, Rendered

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (the dev extra) renders the chart"
)


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Any:
    """``render(values, namespace=...)`` -> :class:`Rendered`, cached per arguments."""
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> Rendered:
        key = json.dumps([values or {}, namespace], sort_keys=True)
        if key not in cache:
            texts = chart.render(values or {}, name=RELEASE, namespace=namespace)
            manifests = [
                Manifest(template=path, doc=doc)
                for path, text in sorted(texts.items())
                if path.endswith((".yaml", ".yml"))
                for doc in yaml.safe_load_all(text)
                if doc
            ]
            cache[key] = Rendered(manifests=manifests, texts=texts)
        return cache[key]

    return _render
