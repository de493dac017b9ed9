"""The operator's pooler settings, as the chart's environment gives them: read once at
start-up, a wrong one stopping it with the variable's name, the password never shown."""

from __future__ import annotations

import pytest
from kubetune_operator.config import OperatorConfig
from kubetune_operator.tenants import Pooler

POOLER_ENV = {
    "KUBETUNE_TRIAL_STORAGE_HOST": "kubetune-pooler.kubetune.svc",
    "KUBETUNE_TRIAL_STORAGE_PORT": "6432",
    "KUBETUNE_POOLER_AUTH_USER": "kubetune-pooler",
    "KUBETUNE_POOLER_AUTH_PASSWORD": "lookup-secret",
}


def test_the_pooler_settings_are_read_and_the_password_is_not_shown() -> None:
    config = OperatorConfig.from_env(POOLER_ENV)
    assert (config.trial_storage_host, config.trial_storage_port) == (
        "kubetune-pooler.kubetune.svc",
        6432,
    )
    assert (config.pooler_auth_user, config.pooler_auth_password) == (
        "kubetune-pooler",
        "lookup-secret",
    )
    assert "lookup-secret" not in repr(config)
    assert "lookup-secret" not in repr(Pooler("h", 1, "u", "lookup-secret"))


def test_without_them_trial_pods_connect_directly() -> None:
    config = OperatorConfig.from_env({})
    assert config.trial_storage_host is None and config.trial_storage_port is None
    assert config.pooler_auth_user is None and config.pooler_auth_password is None


@pytest.mark.parametrize("port", ["0", "65536", "pgbouncer", "-1"])
def test_a_wrong_port_names_the_variable(port: str) -> None:
    with pytest.raises(ValueError, match=f"KUBETUNE_TRIAL_STORAGE_PORT: .*{port!r}"):
        OperatorConfig.from_env({**POOLER_ENV, "KUBETUNE_TRIAL_STORAGE_PORT": port})


@pytest.mark.parametrize("missing", ["KUBETUNE_POOLER_AUTH_USER", "KUBETUNE_POOLER_AUTH_PASSWORD"])
def test_the_lookup_role_needs_its_password_and_the_password_its_role(missing: str) -> None:
    env = {k: v for k, v in POOLER_ENV.items() if k != missing}
    with pytest.raises(ValueError, match="set both") as raised:
        OperatorConfig.from_env(env)
    assert "lookup-secret" not in str(raised.value)
