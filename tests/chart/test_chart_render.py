"""The chart lints, renders with every value set into objects Kubernetes accepts, refuses wrong
values with a message naming them, and ships the CRD and examples the rest of the repo uses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import CHART_DIR, NAMESPACE, REPO, VALUE_SETS, refusal

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest that
#: kubernetes-validate ships schemas for: every manifest must be valid on both.
CHART_KUBE_VERSION = re.search(
    r">=\s*(\d+\.\d+)", yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["kubeVersion"]
)
KUBE_VERSIONS = [CHART_KUBE_VERSION.group(1) + ".0", kubernetes_validate.latest_version()]

VALUE_SET_IDS = list(VALUE_SETS)


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD the chart ships in crds/."""
    schemas = {}
    for path in sorted((CHART_DIR / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


CRD_SCHEMAS = _crd_schemas()


def _validate_custom(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    """CRD schemas are OpenAPI v3.0 (JSON Schema draft 4 with boolean exclusiveMinimum);
    a structural schema is checked as such, which is what the API server's validation does
    short of its Kubernetes-specific extensions."""
    jsonschema.Draft4Validator(schema).validate(doc)


def _validate_object(doc: dict[str, Any], version: str) -> None:
    """Validate one object: built-in kinds with kubernetes-validate (strict: unknown fields are
    errors), the chart's custom kinds with their CRD's schema."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        _validate_custom(doc, CRD_SCHEMAS[key])
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(
            f"{doc['kind']}/{doc['metadata']['name']} is invalid on Kubernetes {version}: "
            f"{where}: {error.message}"
        )


# ------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_lint_is_clean(value_set: str) -> None:
    report = helm.lint(CHART_DIR, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE)
    findings = [
        m
        for m in report["messages"]
        # The only note Helm makes: Chart.yaml has no icon (the project has none yet).
        if not (m["severity"] <= 1 and m["error"] == "icon is recommended")
    ]
    assert findings == [] and report["errors"] == [], report


# ---------------------------------------------------------------------------- render


@pytest.mark.parametrize("value_set", VALUE_SET_IDS)
def test_renders_valid_kubernetes_objects(render: Any, value_set: str) -> None:
    rendered = render(VALUE_SETS[value_set])
    assert rendered.manifests, "nothing rendered"
    identities = [(m.kind, m.namespace, m.name) for m in rendered.manifests]
    assert len(identities) == len(set(identities)), f"duplicate objects: {identities}"
    for manifest in rendered.manifests:
        doc = manifest.doc
        if doc["kind"] not in {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}:
            assert manifest.namespace, f"{manifest.kind}/{manifest.name} has no namespace"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "kubetune"
        for version in KUBE_VERSIONS:
            _validate_object(doc, version)


def test_chart_crds_are_valid_custom_resource_definitions(chart: Any) -> None:
    names = set()
    for entry in chart.crds:
        for crd in yaml.safe_load_all(entry["data"]):
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(crd, version, strict=True)
            names.add(crd["metadata"]["name"])
    assert names == {"studies.kubetune.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_default_install_has_the_expected_objects(render: Any) -> None:
    kinds = sorted((m.kind, m.name) for m in render({}).manifests)
    assert kinds == [
        ("ClusterRole", "kubetune-edit"),
        ("ClusterRole", "kubetune-operator"),
        ("ClusterRole", "kubetune-view"),
        ("ClusterRoleBinding", "kubetune-operator"),
        ("ConfigMap", "kubetune-pooler"),
        ("Deployment", "kubetune-operator"),
        ("Deployment", "kubetune-pooler"),
        ("NetworkPolicy", "kubetune-pooler"),
        ("NetworkPolicy", "kubetune-postgresql"),
        ("Secret", "kubetune-pooler"),
        ("Secret", "kubetune-postgresql"),
        ("Service", "kubetune-pooler"),
        ("Service", "kubetune-postgresql"),
        ("Service", "kubetune-postgresql-hl"),
        ("ServiceAccount", "kubetune-operator"),
        ("StatefulSet", "kubetune-postgresql"),
    ]


def test_notes_say_what_to_apply_next(render: Any) -> None:
    notes = render({}).notes
    assert "kubectl apply -f examples/quickstart-cluster.yaml" in notes
    assert "kubectl get studies -w" in notes
    # Studies work in any namespace: the operator makes the trial ServiceAccount.
    assert "create serviceaccount" not in notes
    dashboard_notes = render({"dashboard": {"enabled": True}}).notes
    assert "port-forward service/kubetune-dashboard 8080" in dashboard_notes
    namespaced = render({"watchNamespaces": ["team-a", "team-b"]}).notes
    assert "kubectl apply -f examples/quickstart-cluster.yaml -n team-a" in namespaced


# ------------------------------------------------------------------ wrong values fail


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"operator": {"replicas": -1}}, ["/operator/replicas", "got -1, want 1"]),
        ({"operator": {"replicas": 0}}, ["/operator/replicas", "got 0, want 1"]),
        ({"operator": {"replicas": "2"}}, ["/operator/replicas", "want integer"]),
        ({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy", "'IfNotPresent'"]),
        (
            {"postgresql": {"image": {"pullPolicy": "always"}}},
            ["/postgresql/image/pullPolicy", "'Always'"],
        ),
        ({"operator": {"peering": {"mode": "on"}}}, ["/operator/peering/mode", "'auto'"]),
        ({"watchNamespaces": "team-a"}, ["/watchNamespaces", "want array"]),
        ({"watchNamespaces": ["Team_A"]}, ["/watchNamespaces/0", "'Team_A'"]),
        (
            {"watchNamespaces": ["team-a", "team-a"]},
            ["/watchNamespaces", "items at 0 and 1 are equal"],
        ),
        ({"replicas": 2}, ["additional properties 'replicas' not allowed"]),
        ({"dashboard": {"enable": True}}, ["/dashboard", "'enable' not allowed"]),
        ({"dashboard": {"service": {"type": "Ingress"}}}, ["/dashboard/service/type"]),
        (
            {"postgresql": {"persistence": {"size": "lots"}}},
            ["/postgresql/persistence/size", "'lots'"],
        ),
        (
            {"postgresql": {"persistence": {"retentionPolicy": {"whenDeleted": "Keep"}}}},
            ["/postgresql/persistence/retentionPolicy/whenDeleted"],
        ),
        ({"trialImage": {"digest": "latest"}}, ["/trialImage/digest", "'latest'"]),
        (
            {"postgresql": {"enabled": False}},
            ["postgresql.enabled is false", "externalDatabase.existingSecret"],
        ),
        (
            {"externalDatabase": {"existingSecret": "db"}},
            ["externalDatabase.existingSecret is set while postgresql.enabled is true"],
        ),
        (
            {"operator": {"replicas": 2, "peering": {"mode": "never"}}},
            ["operator.replicas is 2 but operator.peering.mode is never"],
        ),
    ],
    ids=lambda v: str(v)[:60] if isinstance(v, dict) else "",
)
def test_wrong_values_fail_naming_the_value(
    chart: Any, values: dict[str, Any], expected: list[str]
) -> None:
    message = refusal(chart, values)
    for part in expected:
        assert part in message, message


def test_every_default_value_is_described_by_the_schema(chart: Any) -> None:
    """The schema forbids unknown keys; the defaults themselves must pass it."""
    chart.validate_schema(chart.values)
    assert chart.schema["additionalProperties"] is False


# ---------------------------------------------------------------------- CRD, examples


def test_chart_crd_is_identical_to_the_generated_one() -> None:
    generated = REPO / "crds" / "study.yaml"
    shipped = CHART_DIR / "crds" / "study.yaml"
    assert generated.exists(), "crds/study.yaml is missing: run `kubetune crd > crds/study.yaml`"
    assert shipped.read_bytes() == generated.read_bytes(), (
        "charts/kubetune/crds/study.yaml differs from crds/study.yaml: "
        "run `cp crds/study.yaml charts/kubetune/crds/study.yaml`"
    )


def _study_schema() -> dict[str, Any]:
    return CRD_SCHEMAS[("kubetune.io/v1alpha1", "Study")]


def test_quickstart_cluster_example_is_the_quickstart_for_a_cluster() -> None:
    from kubetune.study.spec import load_study

    cluster_path = REPO / "examples" / "quickstart-cluster.yaml"
    cluster = yaml.safe_load(cluster_path.read_text())
    local = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    _validate_custom(cluster, _study_schema())
    study = load_study(cluster_path)
    assert study.spec.trial.python == "examples.objectives.lgbm:objective"
    # The operator's default trial image (the chart's trialImage) runs it; the storage is the
    # chart's database.
    assert study.spec.trial.image is None
    assert study.spec.storage.secret_ref is None and study.spec.storage.url is None
    # Otherwise the same study as the local quickstart.
    for key in ("objective", "searchSpace", "sampler", "pruner", "budget"):
        assert cluster["spec"][key] == local["spec"][key], key
    assert cluster["metadata"]["name"] == local["metadata"]["name"]


def _yaml_blocks(path: Path) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.S)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def test_studies_in_the_helm_docs_are_valid() -> None:
    from kubetune.study.spec import load_study

    studies = [doc for doc in _yaml_blocks(REPO / "docs" / "helm.md") if doc.get("kind") == "Study"]
    assert studies, "docs/helm.md shows no Study"
    for doc in studies:
        _validate_custom(doc, _study_schema())
        load_study(doc)
    gpu = [
        d for d in studies if "nvidia.com/gpu" in d["spec"]["trial"]["resources"].get("limits", {})
    ]
    assert gpu, "docs/helm.md shows no Study requesting nvidia.com/gpu"


def test_values_files_in_the_helm_docs_pass_the_schema(chart: Any) -> None:
    values = [doc for doc in _yaml_blocks(REPO / "docs" / "helm.md") if "kind" not in doc]
    assert values, "docs/helm.md shows no values file"
    for doc in values:
        chart.render(doc, name="kubetune", namespace=NAMESPACE)
