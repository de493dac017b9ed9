"""A Study's trial pods reach PostgreSQL through the chart's PgBouncer, end to end.

The chart is rendered by Helm's own engine with the test's PostgreSQL as the server to
pool (it asks every role for its password, as a production server does); the pooler's
ConfigMap, Secret, Deployment and Service are applied to the emulated API server, and
the fake kubelet runs the Deployment's pod: its own command, ``pgbouncer
/etc/pgbouncer/pgbouncer.ini``, with the rendered ConfigMap and Secret mounted where the
pod spec says. The host's PgBouncer (Debian's 1.18) stands in for the image (no registry
is reachable here), run as a non-root user as the image's is. The operator runs with the
chart's pooler settings; the Service's DNS name becomes 127.0.0.1 (one host, no DNS).

(What a tenant's URL can do through PgBouncer: tests/integration/test_tenants.py.)
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import optuna
import psycopg2
import pytest
import yaml
from harness.db_probe import connect_args
from harness.fixtures import harness_env
from harness.workloads import start_deployment_pods
from optuna.trial import TrialState
from pgbouncer_server import free_tcp_port, non_root_wrapper, pgbouncer_binary, show
from scenario import create, live_pods, spec, wait_phase, wait_until
from sqlalchemy.engine import make_url
from test_tenant_pods import url_given_to_pod

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.slow(seconds=40)]

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "integration" / "support"
RELEASE_NAMESPACE = "kubetune"
POOLER = "kubetune-pooler"
POOL_SIZE = 3
MAX_TRIALS = 6
PARALLELISM = 3


@pytest.fixture
def pod_env(password_postgres: str, tmp_path: Path) -> dict[str, str]:
    """Pods' processes find the host's PgBouncer as ``pgbouncer``, run as the database
    socket's (non-root) owner, as the image runs it as its own user."""
    if pgbouncer_binary() is None:
        pytest.skip("no pgbouncer here (Debian: apt-get install pgbouncer; scripts/test-host.sh)")
    if os.geteuid() != 0:
        pytest.skip("the fake kubelet mounts the pod's ConfigMap and Secret as root only")
    env = harness_env(pythonpath=[SUPPORT])
    stand_in = non_root_wrapper(tmp_path / "pgbouncer-image", password_postgres)
    env["PATH"] = f"{stand_in}{os.pathsep}{env['PATH']}"
    return env


def render_chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk renders the chart")
    with helm.Chart.load(REPO / "charts" / "kubetune") as chart:
        texts = chart.render(values, name="kubetune", namespace=RELEASE_NAMESPACE)
    return [
        doc
        for path, text in sorted(texts.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


class PoolerWatch(threading.Thread):
    """Samples PgBouncer's SHOW CLIENTS and SHOW POOLS on its console (as the chart's
    stats user) while the Study runs."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self._dsn = dsn
        self._done = threading.Event()
        self.samples: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        self.errors: list[str] = []

    def show(self, what: str) -> list[dict[str, Any]]:
        return show(self._dsn, what)

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.samples.append((self.show("CLIENTS"), self.show("POOLS")))
            except psycopg2.Error as error:
                self.errors.append(str(error))
            time.sleep(0.1)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def listens_directly(admin_url: str, role: str) -> bool:
    connection = psycopg2.connect(**connect_args(admin_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE usename = %s AND query LIKE 'LISTEN%%'",
                (role,),
            )
            (listens,) = cursor.fetchone()
    finally:
        connection.close()
    return bool(listens)


@pytest.fixture
def watch_stopper() -> Iterator[list[PoolerWatch]]:
    watches: list[PoolerWatch] = []
    yield watches
    for watch in watches:
        watch.stop()


def test_a_studys_trial_pods_go_through_the_charts_pgbouncer(
    cluster: Any,
    kube: Any,
    password_postgres: str,
    password_storage_url: str,
    watch_stopper: list[PoolerWatch],
) -> None:
    admin = make_url(password_storage_url)
    server = urlsplit(password_postgres)
    socket_dir = parse_qs(server.query)["host"][0]
    port = free_tcp_port()
    auth_user = f"{admin.database}-pooler"  # tests share the server: a role per test
    docs = render_chart(
        {
            # The test's PostgreSQL is outside the emulated cluster: the chart's "database
            # of your own" path, with PgBouncer in front of it.
            "postgresql": {"enabled": False},
            "externalDatabase": {"existingSecret": "tuning-db"},
            "pooler": {
                "server": {"host": socket_dir, "port": server.port or 5432},
                "port": port,
                "poolSize": POOL_SIZE,
                "auth": {"username": auth_user},
            },
        }
    )
    # The release namespace enforces the restricted Pod Security level: the chart's
    # PgBouncer pod must pass it.
    kube.create(
        "namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": RELEASE_NAMESPACE,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    for kind in ("ConfigMap", "Secret", "Deployment", "Service"):
        kube.create(f"{kind.lower()}s", one(docs, kind, POOLER), RELEASE_NAMESPACE)
    [pooler_pod] = start_deployment_pods(kube, RELEASE_NAMESPACE, POOLER)
    wait_until(lambda: listening(port), timeout=30)
    assert (
        kube.get("pods", pooler_pod["metadata"]["name"], RELEASE_NAMESPACE)["status"]["phase"]
        == "Running"
    )

    # The operator, set up as the chart's Deployment says (its Secret values resolved).
    operator = one(docs, "Deployment", "kubetune-operator")
    [container] = operator["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    pooler_secret = kube.get("secrets", POOLER, RELEASE_NAMESPACE)
    password = base64.b64decode(pooler_secret["data"]["password"]).decode()
    assert env["KUBETUNE_TRIAL_STORAGE_HOST"]["value"] == f"{POOLER}.{RELEASE_NAMESPACE}.svc"
    assert env["KUBETUNE_POOLER_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == POOLER
    cluster.start(
        KUBETUNE_STORAGE_URL=password_storage_url,
        KUBETUNE_STORAGE_TENANTS=env["KUBETUNE_STORAGE_TENANTS"]["value"],
        POD_NAMESPACE=RELEASE_NAMESPACE,
        KUBETUNE_TRIAL_STORAGE_HOST="127.0.0.1",  # the Service, on this one host
        KUBETUNE_TRIAL_STORAGE_PORT=env["KUBETUNE_TRIAL_STORAGE_PORT"]["value"],
        KUBETUNE_POOLER_AUTH_USER=env["KUBETUNE_POOLER_AUTH_USER"]["value"],
        KUBETUNE_POOLER_AUTH_PASSWORD=password,
    )

    watch = PoolerWatch(
        f"host=127.0.0.1 port={port} dbname=pgbouncer user={auth_user} password={password}"
    )
    watch_stopper.append(watch)
    watch.start()
    create(
        kube,
        "pooled",
        spec(
            "sleeps",
            budget={"maxTrials": MAX_TRIALS, "parallelism": PARALLELISM},
            trial={"env": [{"name": "KT_SLEEP", "value": "1.5"}], "trialsPerPod": 2},
        ),
        namespace="team-a",
    )
    pods = wait_until(lambda: live_pods(kube, "pooled", "team-a"), timeout=60)
    pod_url = make_url(url_given_to_pod(kube, pods[0]))
    # The operator itself connects directly: while the Study runs, its LISTEN for trial
    # ends holds a session of its own on the server, as the tenant.
    wait_until(lambda: listens_directly(password_storage_url, str(pod_url.username)), timeout=30)
    final = wait_phase(kube, "pooled", "Succeeded", namespace="team-a", timeout=180)
    watch.stop()
    assert not watch.errors, watch.errors[:3]

    tenant = final["database"]
    assert tenant == f"{admin.database}_team_a"
    # The pods were given the pooler's address, as the tenant's own role.
    assert (pod_url.host, pod_url.port) == ("127.0.0.1", port)
    assert (pod_url.username, pod_url.database) == (tenant, tenant)
    # Exactly maxTrials trials, every one COMPLETE, read directly from the database.
    direct = admin.set(username=tenant, password=pod_url.password, database=tenant)
    trials = optuna.load_study(
        study_name=final["studyName"], storage=direct.render_as_string(hide_password=False)
    ).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * MAX_TRIALS
    assert final["trials"]["complete"] == MAX_TRIALS

    # PgBouncer saw the trial pods: clients logged in as the tenant, over TCP...
    tenant_clients = [
        [c for c in clients if c["user"] == tenant and c["database"] == tenant]
        for clients, _pools in watch.samples
    ]
    assert max(len(c) for c in tenant_clients) >= PARALLELISM
    assert {c["addr"] for sample in tenant_clients for c in sample} == {"127.0.0.1"}
    # ...within the pool's server connections, and between their transactions (while
    # their trials sleep) holding none: the clients are linked to no server connection.
    pools = [
        next((p for p in pools if p["user"] == tenant and p["database"] == tenant), None)
        for _clients, pools in watch.samples
    ]
    in_use = [p for p in pools if p is not None]
    assert in_use
    assert max(p["sv_active"] + p["sv_idle"] + p["sv_used"] for p in in_use) <= POOL_SIZE
    assert any(
        len(sample) >= PARALLELISM and not any(c["link"] for c in sample)
        for sample in tenant_clients
    )
    stats = {s["database"]: s for s in watch.show("STATS")}
    assert stats[tenant]["total_xact_count"] > MAX_TRIALS
