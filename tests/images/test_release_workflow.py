"""The release workflow (it cannot run here) is valid YAML and pushes the images the chart
pulls by default, under the Makefile's names: one set of names everywhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from harness.images import image_names

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _workflow() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def _chart() -> tuple[dict[str, Any], dict[str, Any]]:
    chart = REPO / "charts" / "kubetune"
    return (
        yaml.safe_load((chart / "Chart.yaml").read_text()),
        yaml.safe_load((chart / "values.yaml").read_text()),
    )


def test_the_makefile_names_are_the_charts_defaults() -> None:
    chart, values = _chart()
    names = image_names()
    version = chart["appVersion"]
    assert values["image"]["tag"] in ("", version)  # "" means the appVersion
    assert values["trialImage"]["tag"] in ("", version)
    assert names.operator == f"{values['image']['repository']}:{version}"
    assert names.trial == f"{values['trialImage']['repository']}:{version}"
    assert names.trial_cuda == f"{values['trialImage']['repository']}:{version}-cuda"


def test_release_builds_and_pushes_both_images_multi_arch_on_a_version_tag() -> None:
    workflow = _workflow()
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"]["packages"] == "write"
    [job] = workflow["jobs"].values()
    matrix = {entry["image"]: entry for entry in job["strategy"]["matrix"]["include"]}
    assert set(matrix) == {"operator", "trial", "trial-cuda"}
    assert matrix["operator"]["dockerfile"] == "operator/Dockerfile"
    assert matrix["trial"]["dockerfile"] == matrix["trial-cuda"]["dockerfile"]
    assert matrix["trial"]["dockerfile"] == "trial_image/Dockerfile"
    for image in ("operator", "trial"):
        assert set(matrix[image]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert matrix["trial-cuda"]["platforms"] == "linux/amd64"
    assert matrix["trial-cuda"]["variant"] == "cuda" and matrix["trial"]["variant"] == "cpu"
    for entry in matrix.values():
        assert (REPO / entry["dockerfile"]).is_file()

    uses = [step.get("uses", "") for step in job["steps"]]
    for action in (
        "actions/checkout@",
        "docker/setup-qemu-action@",
        "docker/setup-buildx-action@",
        "docker/login-action@",
        "docker/build-push-action@",
    ):
        assert any(u.startswith(action) for u in uses), action
    [build] = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push")]
    assert build["with"]["push"] is True
    assert build["with"]["platforms"] == "${{ matrix.platforms }}"
    assert build["with"]["tags"] == "${{ steps.name.outputs.image }}"
    [login] = [s for s in job["steps"] if s.get("uses", "").startswith("docker/login")]
    assert login["with"]["registry"] == "ghcr.io"


def test_release_takes_the_names_from_the_makefile_and_the_tag_from_the_chart() -> None:
    workflow = _workflow()
    _, values = _chart()
    registry = workflow["env"]["IMAGE_REGISTRY"]
    assert f"{registry}/operator" == values["image"]["repository"]
    assert f"{registry}/trial" == values["trialImage"]["repository"]
    [job] = workflow["jobs"].values()
    [name_step] = [s for s in job["steps"] if s.get("id") == "name"]
    script = name_step["run"]
    assert 'make -s image-names IMAGE_REGISTRY="$IMAGE_REGISTRY"' in script
    assert "v${version}" in script  # the tag must be v<appVersion>

    # The step's shell, run here for a tag of this version, names each matrix image as
    # the Makefile does.
    names = image_names()
    version = names.operator.rsplit(":", 1)[1]
    for image, expected in (
        ("operator", names.operator),
        ("trial", names.trial),
        ("trial-cuda", names.trial_cuda),
    ):
        body = script.replace("${{ matrix.image }}", image).replace(
            "${{ matrix.platforms }}", "linux/amd64"
        )
        assert "${{" not in body
        done = subprocess.run(
            ["bash", "-e", "-c", body],
            cwd=REPO,
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "IMAGE_REGISTRY": registry,
                "GITHUB_REF_NAME": f"v{version}",
                "GITHUB_OUTPUT": "/dev/stdout",
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"image={expected}" in done.stdout
    wrong = subprocess.run(
        ["bash", "-e", "-c", script.replace("${{ matrix.image }}", "trial")],
        cwd=REPO,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "IMAGE_REGISTRY": registry,
            "GITHUB_REF_NAME": "v9.9.9",
            "GITHUB_OUTPUT": "/dev/null",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode != 0 and "is not v<appVersion>" in wrong.stdout


def test_the_dockerfiles_comments_and_the_docs_use_the_same_names() -> None:
    names = image_names()
    for path in ("operator/Dockerfile", "trial_image/Dockerfile", "docs/images.md"):
        text = (REPO / path).read_text()
        mentioned = set(re.findall(r"\b(?:[\w.-]+/)*kubetune/(?:operator|trial):[\w.-]+", text))
        assert mentioned, path
        assert mentioned <= {names.operator, names.trial, names.trial_cuda}, (path, mentioned)
