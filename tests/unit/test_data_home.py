"""Where `kubetune run` keeps its embedded PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetune.local import embedded


def test_kubetune_home_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBETUNE_HOME", str(tmp_path))
    monkeypatch.setattr(embedded.os, "geteuid", lambda: 0)
    assert embedded.data_home() == tmp_path


def test_root_keeps_its_data_outside_its_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root the server runs as another user that must traverse every parent
    folder: /var/lib is already open to it, /root must not be opened."""
    monkeypatch.delenv("KUBETUNE_HOME", raising=False)
    monkeypatch.setattr(embedded.os, "geteuid", lambda: 0)
    assert embedded.data_home() == Path("/var/lib/kubetune")
    assert not embedded.data_home().is_relative_to(Path.home())


def test_a_user_gets_the_per_user_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETUNE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/home/ada/.local/share")
    monkeypatch.setattr(embedded.os, "geteuid", lambda: 1000)
    assert embedded.data_home() == Path("/home/ada/.local/share/kubetune")
