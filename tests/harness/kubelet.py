"""A fake kubelet (and scheduler) that runs pods of the emulated API as local processes.

It lists and watches pods through the API server's HTTP interface (in a daemon thread with
its own asyncio loop), so it works the same against any API server. For each pod:

1. *Scheduling*: a pod with no ``spec.nodeName`` is checked against the node's capacity for
   extended resources (``gpus`` = ``nvidia.com/gpu``; others via ``capacity``), the pod's
   ``nodeSelector`` against the node's labels, and the predicates given to
   :meth:`FakeKubelet.mark_unschedulable`. If it does not fit, it stays ``Pending`` with the
   condition ``PodScheduled=False, reason=Unschedulable`` and a message like
   ``0/1 nodes are available: 1 Insufficient nvidia.com/gpu.``; it is re-checked on every
   tick, so it starts once capacity frees up. Otherwise ``spec.nodeName`` is set.
2. *Running*: the FIRST container's ``command + args`` (``$(VAR)`` expanded; a ``python`` or
   ``python3`` argv[0] is replaced by ``python``, by default this interpreter) runs as a
   local process in its own session, with ``base_env`` + ``HOSTNAME`` + the container's
   ``envFrom`` (configMapRef/secretRef, with prefix) and ``env`` (``value``,
   ``valueFrom.secretKeyRef``/``configMapKeyRef`` read from the API, ``fieldRef`` for
   metadata.name/namespace/uid/labels['k']/annotations['k'], spec.nodeName,
   spec.serviceAccountName, status.podIP/hostIP, and ``resourceFieldRef`` as the raw
   quantity). A missing non-optional Secret/ConfigMap keeps the pod ``Pending`` with
   ``waiting.reason=CreateContainerConfigError`` and is retried every second, as the real
   kubelet does. ``workingDir`` is honoured if it exists (else a per-pod sandbox folder is
   the cwd). A container with no ``command`` uses ``entrypoints[image]`` if given, else it
   fails with ``StartError`` (exit code 128). stdout+stderr go to one log file per pod.
3. *Status*: ``Pending`` -> ``Running`` (``startTime``, ``podIP=127.0.0.1``, conditions,
   ``containerStatuses[0].state.running``) -> ``Succeeded``/``Failed`` with
   ``containerStatuses[0].state.terminated = {exitCode, reason, startedAt, finishedAt}``;
   reason ``Completed`` (0), ``Error`` (non-zero), ``OOMKilled`` (137, via
   :meth:`FakeKubelet.kill_pod_process` with ``oom=True``). A process killed by signal N
   exits with 128+N, as in containers. ``restartPolicy`` is honoured: ``Always`` and
   ``OnFailure`` restart the container (``restartCount``, ``lastState``, a short
   CrashLoopBackOff), ``Never`` does not. Note the API server defaults it to ``Always``.
4. *Deletion*: a pod with ``deletionTimestamp`` gets SIGTERM (to the main process), then
   SIGKILL (to its whole process group) after ``min(grace period, max_grace_period)``; the
   kubelet then reports the exit and removes the pod (DELETE with ``gracePeriodSeconds=0``).
   A pod that vanishes from the API (force deletion) has its processes killed at once.
5. *Eviction*: :meth:`FakeKubelet.evict_pod` kills the process and sets the pod ``Failed``
   with ``reason=Evicted`` (no restart).

6. *Volumes* (``mount_volumes``, by default on when running as root with ``unshare``):
   ``configMap``, ``secret`` (with ``items``, ``defaultMode``, ``optional``),
   ``downwardAPI`` (fieldRef items) and ``emptyDir`` volumes are written to the pod's
   sandbox folder and bind-mounted at their ``mountPath`` (``subPath``, ``readOnly``; the
   configMap/secret/downwardAPI ones read-only) in a private mount namespace
   (``unshare -m`` + ``mount --bind``), so the program sees them where the pod spec says.
   A missing mount point is created on the host (and removed again, if still empty, when
   the kubelet stops). Other volume kinds are empty folders. With ``mount_volumes=False``
   volumes are ignored and a note is written to the pod log.

Not emulated: init containers, sidecars and containers after the first, probes, image
pulls, cpu/memory limits (only accounted for scheduling when ``capacity`` names them),
taints/tolerations and affinity, live updates of mounted ConfigMaps/Secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["FakeKubelet"]

GPU = "nvidia.com/gpu"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(value: Any) -> float:
    """Parse a Kubernetes quantity ("2", "500m", "1Gi", "1e3") into a float."""
    text = str(value).strip()
    suffixes = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "E": 1e18,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)]:
            with contextlib.suppress(ValueError):
                return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def _expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay as they are; ``$$`` is ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", replace, text)


class _ConfigError(Exception):
    """The container cannot be configured yet (a missing Secret/ConfigMap): retry later."""


class _StartError(Exception):
    """The container cannot be started at all (no command, no executable)."""


@dataclasses.dataclass
class _PodRun:
    namespace: str
    name: str
    uid: str
    container: str
    image: str
    log_path: Path
    sandbox: Path
    proc: subprocess.Popen[bytes] | None = None
    pod_started_at: str | None = None
    started_at: str | None = None
    restart_count: int = 0
    last_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    next_start_at: float = 0.0
    config_error: str | None = None
    term_sent_at: float | None = None
    kill_deadline: float | None = None
    forced_reason: str | None = None
    evicted_message: str | None = None
    finished: bool = False


class FakeKubelet:
    """Runs the pods of an (emulated) API server as local processes; see the module doc.

    ``base_env`` is the environment every container starts from (pass ``os.environ`` plus
    PYTHONPATH etc.). ``log_dir`` receives one ``<namespace>_<name>.log`` per pod and the
    kubelet's own ``kubelet.log``. Start/stop with :meth:`start`/:meth:`stop` or ``with``.
    All public methods are thread-safe.
    """

    def __init__(
        self,
        server_url: str,
        *,
        log_dir: str | os.PathLike[str],
        base_env: Mapping[str, str] | None = None,
        token: str | None = None,
        node_name: str = "fake-node",
        gpus: int = 0,
        capacity: Mapping[str, float] | None = None,
        node_labels: Mapping[str, str] | None = None,
        max_grace_period: float = 5.0,
        python: str | None = sys.executable,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
        namespace: str | None = None,
        mount_volumes: bool | None = None,
        pod_ip: str = "127.0.0.1",
        restart_backoff: tuple[float, float] = (0.5, 5.0),
        poll_interval: float = 0.05,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.log_dir = Path(log_dir)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.token = token
        self.node_name = node_name
        self.capacity: dict[str, float] = {GPU: gpus}
        self.capacity.update(capacity or {})
        self.node_labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(node_labels or {}),
        }
        self.max_grace_period = max_grace_period
        self.python = python
        self.entrypoints = {k: list(v) for k, v in (entrypoints or {}).items()}
        self.namespace = namespace
        self.pod_ip = pod_ip
        self.restart_backoff = restart_backoff
        self.poll_interval = poll_interval
        if mount_volumes is None:
            mount_volumes = os.geteuid() == 0 and shutil.which("unshare") is not None
        self.mount_volumes = mount_volumes
        self._created_mount_points: list[Path] = []

        self._unschedulable: list[tuple[Callable[[dict[str, Any]], bool], str]] = []
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._runs: dict[tuple[str, str], _PodRun] = {}
        self._log_paths: dict[tuple[str, str], Path] = {}
        self._synced = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeKubelet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the fake kubelet did not start in time")
        deadline = time.monotonic() + timeout
        while not self._synced:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake kubelet could not list pods: {self.errors[-3:]}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and SIGKILL every process still running (pods are left as they are)."""
        self._stopping = True
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout)
        for run in list(self._runs.values()):
            self._kill_group(run, signal.SIGKILL)
        for path in reversed(self._created_mount_points):
            with contextlib.suppress(OSError):
                if path.is_dir():
                    path.rmdir()  # only if empty, i.e. nothing but our mount point
                elif path.stat().st_size == 0:
                    path.unlink()
        self._created_mount_points.clear()

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks (thread-safe) --------------------------------------------------------------

    def pod_log_path(self, namespace: str, name: str) -> Path:
        with self._lock:
            path = self._log_paths.get((namespace, name))
        return path if path is not None else self.log_dir / f"{namespace}_{name}.log"

    def pod_log(self, namespace: str, name: str) -> str:
        """The pod's stdout+stderr so far ("" if it never ran)."""
        path = self.pod_log_path(namespace, name)
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def read_log(self, namespace: str, name: str) -> str | None:
        """Like :meth:`pod_log`, but ``None`` if the pod never ran (for ``pods/log``)."""
        path = self.pod_log_path(namespace, name)
        return path.read_text(errors="replace") if path.exists() else None

    def all_logs(self, tail: int = 50) -> str:
        """The last lines of every pod log and the kubelet's own log (for failure reports)."""
        chunks = []
        for path in sorted(self.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            chunks.append(f"===== {path.name} =====\n" + "\n".join(lines))
        return "\n".join(chunks)

    def pid(self, namespace: str, name: str) -> int | None:
        run = self._runs.get((namespace, name))
        return run.proc.pid if run and run.proc and run.proc.poll() is None else None

    def kill_pod_process(
        self,
        namespace: str,
        name: str,
        sig: int = signal.SIGKILL,
        *,
        oom: bool = False,
        timeout: float = 10.0,
    ) -> bool:
        """Send ``sig`` to the pod's main process (SIGKILL: its whole process group).

        ``oom=True`` simulates the OOM killer: SIGKILL, and the container terminates with
        ``reason=OOMKilled``, ``exitCode=137``. Returns False if no process is running.
        """

        async def _kill() -> bool:
            run = self._runs.get((namespace, name))
            if run is None or run.proc is None or run.proc.poll() is not None:
                return False
            if oom:
                run.forced_reason = "OOMKilled"
            self._debug(f"test hook: signal {sig} to {namespace}/{name} (oom={oom})")
            if oom or sig == signal.SIGKILL:
                self._kill_group(run, signal.SIGKILL)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.proc.pid, sig)
            return True

        return bool(self._call(_kill(), timeout))

    def oom_kill_pod(self, namespace: str, name: str) -> bool:
        return self.kill_pod_process(namespace, name, signal.SIGKILL, oom=True)

    def evict_pod(
        self, namespace: str, name: str, message: str | None = None, timeout: float = 10.0
    ) -> None:
        """Node-pressure eviction: kill the process; the pod becomes Failed/Evicted."""
        message = message or "The node was low on resource: memory. "

        async def _evict() -> None:
            key = (namespace, name)
            run = self._runs.get(key)
            self._debug(f"test hook: evict {namespace}/{name}")
            if run is not None and run.proc is not None and run.proc.poll() is None:
                run.evicted_message = message
                self._kill_group(run, signal.SIGKILL)
                return
            pod = self._pods.get(key)
            if pod is None:
                raise KeyError(f"no pod {namespace}/{name}")
            if run is not None:
                run.finished = True
                run.evicted_message = message
            status = self._status(
                pod,
                run,
                phase="Failed",
                ready=False,
                state=None
                if run is None
                else {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "Error",
                        "startedAt": run.started_at,
                        "finishedAt": _now(),
                    }
                },
            )
            status.update(self._eviction_fields(message))
            await self._patch_status(pod, status)

        self._call(_evict(), timeout)

    def mark_unschedulable(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None,
        message: str = "0/1 nodes are available: 1 node(s) were unschedulable.",
    ) -> None:
        """Keep pods for which ``predicate(pod)`` is true Pending/Unschedulable.

        ``None`` clears all such predicates.
        """
        with self._lock:
            if predicate is None:
                self._unschedulable.clear()
            else:
                self._unschedulable.append((predicate, message))
        self._poke()

    def set_capacity(self, resource: str, amount: float) -> None:
        """E.g. ``set_capacity('nvidia.com/gpu', 2)``; also 'cpu', 'memory' (quantities)."""
        with self._lock:
            self.capacity[resource] = amount
        self._poke()

    # -- thread plumbing -----------------------------------------------------------------------

    def _call(self, coro: Any, timeout: float) -> Any:
        if self._loop is None:
            raise RuntimeError("the fake kubelet is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _poke(self) -> None:
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    def _debug(self, message: str) -> None:
        with contextlib.suppress(OSError), open(self.log_dir / "kubelet.log", "a") as f:
            f.write(f"{datetime.datetime.now().strftime('%H:%M:%S.%f')[:-3]} {message}\n")

    def _error(self, message: str) -> None:
        self.errors.append(message)
        self._debug("ERROR " + message)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException:
            self._error(traceback.format_exc())
        finally:
            self._started.set()
            self._loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            self._session = session
            await self._register_node()
            watcher = asyncio.create_task(self._watch_pods())
            self._started.set()
            try:
                while not self._stopping:
                    try:
                        if self._synced:
                            await self._reconcile_all()
                    except Exception:
                        self._error(traceback.format_exc())
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                    self._wake.clear()
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watcher
                for run in list(self._runs.values()):
                    self._kill_group(run, signal.SIGKILL)

    # -- API access ----------------------------------------------------------------------------

    def _pods_url(
        self, namespace: str | None = None, name: str | None = None, sub: str | None = None
    ) -> str:
        url = self.server_url + "/api/v1"
        if namespace is not None:
            url += f"/namespaces/{namespace}"
        url += "/pods"
        if name is not None:
            url += f"/{name}"
        if sub is not None:
            url += f"/{sub}"
        return url

    async def _api(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/merge-patch+json",
    ) -> tuple[int, Any]:
        assert self._session is not None
        headers = {"Content-Type": content_type} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        async with self._session.request(
            method, url, data=data, params=params, headers=headers
        ) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            return response.status, payload

    async def _register_node(self) -> None:
        url = self.server_url + "/api/v1/nodes"
        allocatable = {"cpu": "64", "memory": "256Gi", "pods": "110"}
        for resource, amount in self.capacity.items():
            allocatable[resource] = (
                str(amount) if resource in ("cpu", "memory") else str(int(amount))
            )
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self.node_labels},
        }
        with contextlib.suppress(Exception):
            await self._api("POST", url, body=body, content_type="application/json")
            await self._api(
                "PATCH",
                f"{url}/{self.node_name}/status",
                body={
                    "status": {
                        "capacity": allocatable,
                        "allocatable": allocatable,
                        "addresses": [
                            {"type": "InternalIP", "address": self.pod_ip},
                            {"type": "Hostname", "address": self.node_name},
                        ],
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "reason": "KubeletReady",
                                "message": "fake kubelet is posting ready status",
                                "lastHeartbeatTime": _now(),
                                "lastTransitionTime": _now(),
                            }
                        ],
                        "nodeInfo": {
                            "kubeletVersion": "v1.26.4-fake",
                            "operatingSystem": "linux",
                            "architecture": "amd64",
                            "containerRuntimeVersion": "fake://1",
                        },
                    }
                },
            )

    def _remember(self, pod: dict[str, Any]) -> None:
        """Update the local cache unless it already holds a newer version of the pod."""
        meta = pod.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        cached = self._pods.get(key)
        if (
            cached is not None
            and cached["metadata"].get("uid") == meta.get("uid")
            and int(cached["metadata"].get("resourceVersion", 0))
            > int(meta.get("resourceVersion", 0))
        ):
            return
        self._pods[key] = pod

    async def _watch_pods(self) -> None:
        assert self._session is not None
        while not self._stopping:
            try:
                status, listing = await self._api("GET", self._pods_url(self.namespace))
                if status != 200:
                    raise RuntimeError(f"listing pods: {status} {listing}")
                self._pods = {}
                for pod in listing.get("items", []):
                    self._remember(pod)
                rv = listing["metadata"]["resourceVersion"]
                self._synced = True
                self._poke()
                params = {"watch": "true", "resourceVersion": rv}
                async with self._session.get(
                    self._pods_url(self.namespace), params=params
                ) as response:
                    buffer = b""
                    async for chunk in response.content.iter_any():
                        buffer += chunk
                        while b"\n" in buffer:
                            line, buffer = buffer.split(b"\n", 1)
                            if line.strip() and not self._on_event(json.loads(line)):
                                break
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._stopping:
                    self._debug(f"pod watch interrupted: {e!r}; relisting")
                    await asyncio.sleep(0.2)

    def _on_event(self, event: Mapping[str, Any]) -> bool:
        etype, pod = event.get("type"), event.get("object") or {}
        if etype == "ERROR":
            self._debug(f"watch error: {pod}")
            return False
        if etype == "BOOKMARK":
            return True
        meta = pod.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if etype == "DELETED":
            cached = self._pods.get(key)
            if cached is not None and cached["metadata"].get("uid") == meta.get("uid"):
                del self._pods[key]
        else:
            self._remember(pod)
        self._poke()
        return True

    async def _patch_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        code, body = await self._api(
            "PATCH",
            self._pods_url(meta["namespace"], meta["name"], "status"),
            body={"status": status},
        )
        if code == 200 and isinstance(body, dict):
            self._remember(body)
        elif code != 404:
            self._error(f"patching the status of {meta['namespace']}/{meta['name']}: {code} {body}")

    async def _delete_pod(self, namespace: str, name: str) -> None:
        code, body = await self._api(
            "DELETE", self._pods_url(namespace, name), params={"gracePeriodSeconds": "0"}
        )
        if code not in (200, 202, 404):
            self._error(f"deleting {namespace}/{name}: {code} {body}")

    # -- reconciliation ------------------------------------------------------------------------

    async def _reconcile_all(self) -> None:
        for key, run in list(self._runs.items()):
            pod = self._pods.get(key)
            if pod is None or pod["metadata"].get("uid") != run.uid:
                if run.proc is not None and run.proc.poll() is None:
                    self._debug(f"{key[0]}/{key[1]} is gone from the API: killing its process")
                self._kill_group(run, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    if run.proc is not None:
                        run.proc.wait(timeout=5)
                del self._runs[key]
        for pod in list(self._pods.values()):
            try:
                await self._reconcile(pod)
            except Exception:
                meta = pod.get("metadata", {})
                self._error(f"{meta.get('namespace')}/{meta.get('name')}: {traceback.format_exc()}")

    async def _reconcile(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        status = pod.get("status") or {}
        key = (meta["namespace"], meta["name"])
        node = spec.get("nodeName")
        if node and node != self.node_name:
            return
        run = self._runs.get(key)
        if run is not None and run.uid != meta.get("uid"):
            return  # handled by _reconcile_all() on the next tick

        if meta.get("deletionTimestamp"):
            await self._terminate(pod, run)
            return

        if run is None:
            if status.get("phase") in ("Succeeded", "Failed"):
                return
            if not node:
                reason = self._unschedulable_reason(pod)
                if reason is not None:
                    await self._report_unschedulable(pod, reason)
                    return
                code, body = await self._api(
                    "PATCH", self._pods_url(*key), body={"spec": {"nodeName": self.node_name}}
                )
                if code != 200:
                    self._error(f"binding {key}: {code} {body}")
                    return
                self._remember(body)
                pod = self._pods[key]
                self._debug(f"{key[0]}/{key[1]} scheduled to {self.node_name}")
            run = self._new_run(pod)
            self._runs[key] = run
            await self._start(pod, run)
            return

        if run.finished:
            return
        if run.proc is not None and run.proc.poll() is not None:
            await self._on_exit(pod, run)
        elif run.proc is None and time.monotonic() >= run.next_start_at:
            await self._start(pod, run)

    def _new_run(self, pod: Mapping[str, Any]) -> _PodRun:
        meta = pod["metadata"]
        container = (pod.get("spec") or {}).get("containers", [{}])[0]
        log_path = self.log_dir / f"{meta['namespace']}_{meta['name']}.log"
        sandbox = self.log_dir / "sandboxes" / f"{meta['namespace']}_{meta['name']}"
        sandbox.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._log_paths[(meta["namespace"], meta["name"])] = log_path
        return _PodRun(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            container=container.get("name", "main"),
            image=container.get("image", ""),
            log_path=log_path,
            sandbox=sandbox,
        )

    # -- scheduling ----------------------------------------------------------------------------

    @staticmethod
    def _requests(pod: Mapping[str, Any]) -> dict[str, float]:
        total: dict[str, float] = {}
        for container in (pod.get("spec") or {}).get("containers") or []:
            resources = container.get("resources") or {}
            limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
            for name in set(limits) | set(requests):
                value = requests.get(name, limits.get(name))
                with contextlib.suppress(ValueError):
                    total[name] = total.get(name, 0.0) + _quantity(value)
        return total

    def _unschedulable_reason(self, pod: dict[str, Any]) -> str | None:
        with self._lock:
            predicates = list(self._unschedulable)
            capacity = dict(self.capacity)
        for predicate, message in predicates:
            if predicate(pod):
                return message
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        if any(self.node_labels.get(k) != v for k, v in selector.items()):
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        wanted = self._requests(pod)
        if not wanted:
            return None
        used: dict[str, float] = {}
        uid = pod["metadata"].get("uid")
        for other in self._pods.values():
            if other["metadata"].get("uid") == uid:
                continue
            if (other.get("spec") or {}).get("nodeName") != self.node_name:
                continue
            if (other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for name, amount in self._requests(other).items():
                used[name] = used.get(name, 0.0) + amount
        for name, amount in sorted(wanted.items()):
            if name in capacity:
                limit = capacity[name]
            elif "/" in name:  # an extended resource this node does not have
                limit = 0
            else:
                continue  # cpu/memory/ephemeral-storage: unlimited unless configured
            if used.get(name, 0.0) + amount > limit:
                return f"0/1 nodes are available: 1 Insufficient {name}."
        return None

    async def _report_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("message") == message
            ):
                return
        meta = pod["metadata"]
        self._debug(f"{meta['namespace']}/{meta['name']} unschedulable: {message}")
        await self._patch_status(
            pod,
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastProbeTime": None,
                        "lastTransitionTime": _now(),
                    }
                ],
            },
        )

    # -- containers ----------------------------------------------------------------------------

    async def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        code, body = await self._api(
            "GET", f"{self.server_url}/api/v1/namespaces/{namespace}/{kind}/{name}"
        )
        if code == 404:
            return None
        if code != 200:
            raise _ConfigError(f"reading {kind} {namespace}/{name}: {code} {body}")
        return body

    async def _source_data(
        self,
        kind: str,
        namespace: str,
        ref: Mapping[str, Any],
    ) -> dict[str, str] | None:
        name = ref.get("name", "")
        obj = await self._read(kind, namespace, name)
        if obj is None:
            if ref.get("optional"):
                return None
            singular = "secret" if kind == "secrets" else "configmap"
            raise _ConfigError(f'{singular} "{name}" not found')
        data = dict(obj.get("data") or {})
        if kind == "secrets":
            return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
        data.update(
            {
                k: base64.b64decode(v).decode("utf-8", "replace")
                for k, v in (obj.get("binaryData") or {}).items()
            }
        )
        return data

    def _field_ref(self, pod: Mapping[str, Any], path: str) -> str:
        meta, spec = pod.get("metadata", {}), pod.get("spec") or {}
        simple = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
            "metadata.uid": meta.get("uid"),
            "spec.nodeName": spec.get("nodeName") or self.node_name,
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": self.pod_ip,
            "status.podIPs": self.pod_ip,
            "status.hostIP": self.pod_ip,
            "status.hostIPs": self.pod_ip,
        }
        if path in simple:
            return str(simple[path] or "")
        if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
            return str((meta.get(m[1]) or {}).get(m[2], ""))
        raise _StartError(f"unsupported fieldRef {path!r}")

    async def _resolve_env(
        self, pod: Mapping[str, Any], container: Mapping[str, Any]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Return (the full process env, the container-defined variables)."""
        namespace = pod["metadata"]["namespace"]
        defined: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if field in source:
                    data = await self._source_data(kind, namespace, source[field])
                    defined.update({prefix + k: v for k, v in (data or {}).items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item:
                defined[name] = _expand(str(item["value"]), defined)
                continue
            source = item.get("valueFrom")
            if not source:
                defined[name] = ""
                continue
            for kind, field in (("secrets", "secretKeyRef"), ("configmaps", "configMapKeyRef")):
                if field in source:
                    ref = source[field]
                    data = await self._source_data(kind, namespace, ref)
                    if data is None:
                        break
                    if ref["key"] not in data:
                        if ref.get("optional"):
                            break
                        raise _ConfigError(
                            f"couldn't find key {ref['key']} in "
                            f"{kind[:-1]} {namespace}/{ref.get('name')}"
                        )
                    defined[name] = data[ref["key"]]
                    break
            else:
                if "fieldRef" in source:
                    defined[name] = self._field_ref(pod, source["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in source:
                    ref = source["resourceFieldRef"]
                    kind_, _, resource = ref["resource"].partition(".")
                    resources = container.get("resources") or {}
                    defined[name] = str((resources.get(kind_) or {}).get(resource, ""))
        env = dict(self.base_env)
        env["HOSTNAME"] = pod["metadata"]["name"]
        if self.python:
            bin_dir = os.path.dirname(self.python)
            env["PATH"] = bin_dir + os.pathsep + env.get("PATH", os.defpath)
        env.update(defined)
        return env, defined

    def _argv(self, container: Mapping[str, Any], defined: Mapping[str, str]) -> list[str]:
        command = [str(x) for x in container.get("command") or []]
        args = [str(x) for x in container.get("args") or []]
        if not command:
            image = container.get("image", "")
            repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
            entry = self.entrypoints.get(image, self.entrypoints.get(repo))
            if entry is None:
                raise _StartError(
                    f"container {container.get('name')!r} has no command and the "
                    f"fake kubelet has no entrypoint for image {image!r}"
                )
            command = list(entry)
        argv = [_expand(x, defined) for x in command + args]
        if self.python and argv[0] in ("python", "python3"):
            argv[0] = self.python
        return argv

    async def _start(self, pod: dict[str, Any], run: _PodRun) -> None:
        meta = pod["metadata"]
        container = (pod.get("spec") or {}).get("containers", [{}])[0]
        try:
            env, defined = await self._resolve_env(pod, container)
            argv = self._argv(container, defined)
            mounts = await self._prepare_volumes(pod, container, run)
        except _ConfigError as e:
            if run.config_error != str(e):
                self._debug(f"{run.namespace}/{run.name}: CreateContainerConfigError: {e}")
                run.config_error = str(e)
                waiting = {"reason": "CreateContainerConfigError", "message": str(e)}
                await self._patch_status(
                    pod,
                    self._status(
                        pod, run, phase="Pending", ready=False, state={"waiting": waiting}
                    ),
                )
            run.next_start_at = time.monotonic() + 1.0
            return
        except _StartError as e:
            await self._start_failed(pod, run, str(e))
            return

        cwd = container.get("workingDir")
        if mounts and self.mount_volumes:
            argv = self._wrap_with_mounts(argv, mounts, cwd)
            cwd = str(run.sandbox)
        elif mounts:
            with open(run.log_path, "a") as log:
                log.write(
                    "[fake-kubelet] volumes are NOT mounted (mount_volumes=False): "
                    + ", ".join(f"{src} -> {target}" for src, target, _ in mounts)
                    + "\n"
                )
        if not cwd or not os.path.isdir(cwd):
            cwd = str(run.sandbox)
        try:
            with open(run.log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as e:
            await self._start_failed(pod, run, f"exec: {argv[0]!r}: {e}")
            return
        run.proc = proc
        run.config_error = None
        run.started_at = _now()
        run.pod_started_at = run.pod_started_at or run.started_at
        self._debug(f"{meta['namespace']}/{meta['name']}: started pid {proc.pid}: {argv!r}")
        await self._patch_status(
            pod,
            self._status(
                pod,
                run,
                phase="Running",
                ready=True,
                state={"running": {"startedAt": run.started_at}},
            ),
        )

    async def _prepare_volumes(
        self, pod: Mapping[str, Any], container: Mapping[str, Any], run: _PodRun
    ) -> list[tuple[Path, str, bool]]:
        """Write the container's configMap/secret/emptyDir/downwardAPI volumes to the sandbox.

        Returns ``(source, mountPath, readOnly)`` for every volumeMount.
        """
        namespace = pod["metadata"]["namespace"]
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        root = run.sandbox / "volumes"
        prepared: dict[str, Path] = {}
        mounts = []
        for mount in container.get("volumeMounts") or []:
            name = mount["name"]
            volume = volumes.get(name)
            if volume is None:
                raise _StartError(f"volumeMount {name!r} has no volume")
            if name not in prepared:
                prepared[name] = await self._write_volume(pod, namespace, volume, root / name)
            source = prepared[name] / mount["subPath"] if mount.get("subPath") else prepared[name]
            read_only = bool(mount.get("readOnly")) or any(
                kind in volume for kind in ("configMap", "secret", "downwardAPI", "projected")
            )
            mounts.append((source, mount["mountPath"], read_only))
        return mounts

    async def _write_volume(
        self, pod: Mapping[str, Any], namespace: str, volume: Mapping[str, Any], path: Path
    ) -> Path:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        files: dict[str, str] = {}
        mode = 0o644
        if "configMap" in volume or "secret" in volume:
            is_secret = "secret" in volume
            source = volume["secret" if is_secret else "configMap"]
            ref = {
                "name": source.get("secretName" if is_secret else "name"),
                "optional": source.get("optional"),
            }
            data = (
                await self._source_data("secrets" if is_secret else "configmaps", namespace, ref)
                or {}
            )
            items = source.get("items")
            files = (
                {item["path"]: data[item["key"]] for item in items if item["key"] in data}
                if items
                else dict(data)
            )
            mode = source.get("defaultMode", mode)
        elif "downwardAPI" in volume:
            for item in volume["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    files[item["path"]] = self._field_ref(pod, item["fieldRef"]["fieldPath"])
        elif "emptyDir" not in volume:
            kind = next((k for k in volume if k != "name"), "?")
            with open(self.log_dir / "kubelet.log", "a") as log:
                log.write(f"volume {volume.get('name')!r} of kind {kind!r} is an empty folder\n")
        for relative, content in files.items():
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        return path

    def _wrap_with_mounts(
        self, argv: list[str], mounts: list[tuple[Path, str, bool]], working_dir: str | None
    ) -> list[str]:
        """Run argv in a private mount namespace with the volumes bind-mounted (as root)."""
        steps = []
        for source, target, read_only in mounts:
            target_path = Path(target)
            if not target_path.exists():
                missing = [p for p in [target_path, *target_path.parents] if not p.exists()]
                if source.is_dir():
                    target_path.mkdir(parents=True)
                else:
                    target_path.parent.mkdir(parents=True, exist_ok=True)
                    target_path.touch()
                self._created_mount_points.extend(reversed(missing))
            steps.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
            if read_only:
                steps.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        if working_dir:
            steps.append(f"{{ cd {shlex.quote(working_dir)} 2>/dev/null || true; }}")
        script = " && ".join([*steps, 'exec "$@"'])
        return [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            script,
            "sh",
            *argv,
        ]

    async def _start_failed(self, pod: dict[str, Any], run: _PodRun, message: str) -> None:
        self._debug(f"{run.namespace}/{run.name}: StartError: {message}")
        run.finished = True
        with open(run.log_path, "a") as log:
            log.write(f"[fake-kubelet] StartError: {message}\n")
        terminated = {
            "exitCode": 128,
            "reason": "StartError",
            "message": message,
            "startedAt": None,
            "finishedAt": _now(),
        }
        await self._patch_status(
            pod,
            self._status(pod, run, phase="Failed", ready=False, state={"terminated": terminated}),
        )

    async def _on_exit(self, pod: dict[str, Any], run: _PodRun) -> None:
        assert run.proc is not None
        code = run.proc.returncode
        exit_code = code if code >= 0 else 128 - code
        self._kill_group(run, signal.SIGKILL)  # the container's leftovers go with it
        reason = "Completed" if exit_code == 0 else "Error"
        if run.forced_reason == "OOMKilled":
            reason, exit_code = "OOMKilled", 137
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": run.started_at,
            "finishedAt": _now(),
            "containerID": f"fake://{run.proc.pid}",
        }
        if exit_code and code < 0:
            terminated["signal"] = -code
        message = self._fallback_termination_message(pod, run, exit_code)
        if message:
            terminated["message"] = message
        self._debug(
            f"{run.namespace}/{run.name}: pid {run.proc.pid} exited with {code} "
            f"-> exitCode {exit_code} ({reason})"
        )
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")

        if run.evicted_message is not None:
            status = self._status(
                pod,
                run,
                phase="Failed",
                ready=False,
                state={"terminated": {**terminated, "reason": "Error"}},
            )
            status.update(self._eviction_fields(run.evicted_message))
            await self._patch_status(pod, status)
            # Only now: if the API server was away, the next tick reports it again.
            run.finished = True
        elif policy == "Always" or (policy == "OnFailure" and exit_code != 0):
            run.restart_count += 1
            run.forced_reason = None
            run.last_state = {"terminated": terminated}
            low, high = self.restart_backoff
            backoff = min(low * 2 ** (run.restart_count - 1), high)
            run.next_start_at = time.monotonic() + backoff
            run.proc = None
            waiting = {
                "reason": "CrashLoopBackOff" if exit_code else "Completed",
                "message": f"back-off {backoff:.1f}s restarting failed container",
            }
            await self._patch_status(
                pod,
                self._status(pod, run, phase="Running", ready=False, state={"waiting": waiting}),
            )
        else:
            phase = "Succeeded" if exit_code == 0 else "Failed"
            await self._patch_status(
                pod,
                self._status(pod, run, phase=phase, ready=False, state={"terminated": terminated}),
            )
            run.finished = True  # as above: a failed report is retried on the next tick

    @staticmethod
    def _fallback_termination_message(pod: dict[str, Any], run: _PodRun, exit_code: int) -> str:
        """Kubernetes' ``FallbackToLogsOnError``: a failed container's message is the
        tail of its log (the last 80 lines, at most 2048 bytes)."""
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        policy = containers[0].get("terminationMessagePolicy")
        if exit_code == 0 or policy != "FallbackToLogsOnError":
            return ""
        try:
            text = run.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if not line.startswith("[fake-kubelet]")]
        return "\n".join(lines[-80:]).encode()[-2048:].decode("utf-8", errors="replace")

    @staticmethod
    def _eviction_fields(message: str) -> dict[str, Any]:
        return {"reason": "Evicted", "message": message}

    async def _terminate(self, pod: dict[str, Any], run: _PodRun | None) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        if run is None or run.proc is None or run.finished:
            if not meta.get("finalizers"):
                self._debug(f"{key[0]}/{key[1]}: deleted; no process to stop")
                await self._delete_pod(*key)
            return
        proc = run.proc
        now = time.monotonic()
        if run.term_sent_at is None:
            grace = meta.get(
                "deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)
            )
            grace = min(float(grace if grace is not None else 30), self.max_grace_period)
            run.term_sent_at = now
            run.kill_deadline = now + grace
            self._debug(
                f"{key[0]}/{key[1]}: deleted; SIGTERM to pid {proc.pid}, SIGKILL in {grace}s"
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        elif proc.poll() is None and run.kill_deadline is not None and now >= run.kill_deadline:
            self._debug(f"{key[0]}/{key[1]}: grace period is over; SIGKILL")
            self._kill_group(run, signal.SIGKILL)
            run.kill_deadline = None
        if proc.poll() is None:
            return
        code = proc.returncode
        exit_code = code if code >= 0 else 128 - code
        self._kill_group(run, signal.SIGKILL)
        run.finished = True
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": _now(),
            "containerID": f"fake://{proc.pid}",
        }
        self._debug(f"{key[0]}/{key[1]}: stopped with exit code {exit_code}; removing the pod")
        phase = "Succeeded" if exit_code == 0 else "Failed"
        await self._patch_status(
            pod, self._status(pod, run, phase=phase, ready=False, state={"terminated": terminated})
        )
        if not meta.get("finalizers"):
            await self._delete_pod(*key)

    def _kill_group(self, run: _PodRun, sig: int) -> None:
        if run.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, sig)
        if run.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                run.proc.send_signal(sig)

    # -- status rendering ----------------------------------------------------------------------

    def _status(
        self,
        pod: Mapping[str, Any],
        run: _PodRun | None,
        *,
        phase: str,
        ready: bool,
        state: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        now = _now()
        ready_text = "True" if ready else "False"
        scheduled = bool((pod.get("spec") or {}).get("nodeName")) or run is not None
        conditions = [
            {
                "type": "PodScheduled",
                "status": "True" if scheduled else "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            },
            {
                "type": "Initialized",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            },
            {
                "type": "ContainersReady",
                "status": ready_text,
                "lastProbeTime": None,
                "lastTransitionTime": now,
            },
            {
                "type": "Ready",
                "status": ready_text,
                "lastProbeTime": None,
                "lastTransitionTime": now,
            },
        ]
        if phase in ("Succeeded", "Failed"):
            for condition in conditions[2:]:
                condition["reason"] = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.pod_ip,
            "hostIPs": [{"ip": self.pod_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "qosClass": "BestEffort",
        }
        if run is not None:
            status["startTime"] = run.pod_started_at or now
            container_status: dict[str, Any] = {
                "name": run.container,
                "image": run.image,
                "imageID": f"fake://{run.image}",
                "ready": ready,
                "started": bool(state and "running" in state),
                "restartCount": run.restart_count,
                "state": dict(state or {}),
                "lastState": dict(run.last_state),
            }
            if run.proc is not None:
                container_status["containerID"] = f"fake://{run.proc.pid}"
            status["containerStatuses"] = [container_status]
        return status
