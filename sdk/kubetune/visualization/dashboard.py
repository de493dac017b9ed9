"""optuna-dashboard on a study's storage, served from this machine.

The dashboard runs in this process (``pip install 'kubetune[dashboard]'``):
the storage URL, password included, is handed over in memory and never
appears on a command line. It listens on loopback by default. For a cluster
study, the database must be reachable from here: forward its port
(``kubectl -n kubetune port-forward svc/kubetune-postgresql 5432:5432``) and
pass ``--storage-host localhost:5432``. The Helm chart can also run
optuna-dashboard inside the cluster (``dashboard.enabled``).

Example:
    >>> serve(study._storage, port=8080)   # blocks until Ctrl-C or SIGTERM   # doctest: +SKIP
"""

from __future__ import annotations

import signal
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow page does not hold up the others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per request on the terminal."""


def serve(storage: Any, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard for ``storage`` until SIGINT (Ctrl-C) or SIGTERM.

    The signal stops the server between requests: a Ctrl-C that lands while a page
    is being sent would otherwise be swallowed by the request's error handling.
    """
    try:
        import optuna_dashboard
    except ImportError:
        raise ImportError(
            "the dashboard needs optuna-dashboard: pip install 'kubetune[dashboard]'"
        ) from None
    app = optuna_dashboard.wsgi(storage)
    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)

    def stop(_signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()


def study_url(host: str, port: int, study_id: int) -> str:
    """Where the dashboard shows one study."""
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/dashboard/studies/{study_id}"
