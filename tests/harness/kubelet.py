"""A fake kubelet (and scheduler) that runs pods of the emulated API as local processes.

It lists and watches pods through the API server's HTTP interface (in a daemon thread with
its own asyncio loop), so it works the same against any API server. For each pod:

1. *Scheduling*: a pod with ``spec.schedulingGates`` is not considered at all: it stays
   ``Pending`` with ``PodScheduled=False, reason=SchedulingGated`` ("Scheduling is blocked
   due to non-empty scheduling gates"), as in Kubernetes, until every gate is removed (a
   test plays Kueue by patching them away). A pod with no ``spec.nodeName`` is checked
   against the node's capacity for
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
3. *Status* (conditions of other owners, such as ``DisruptionTarget``, are kept):
   ``Pending`` -> ``Running`` (``startTime``, ``podIP=127.0.0.1``, conditions,
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

7. *Container mode* (``runtime="podman"``): the first container runs with ``podman run``
   from the pod's image (it must already be in podman's store, e.g. from ``make images``;
   else the pod waits with ``ErrImageNeverPull``, retried): the image's ENTRYPOINT/CMD
   unless the container sets ``command`` (``--entrypoint``) and/or ``args``; the env of
   2. (not ``base_env``: the image's own env plus the pod's) and
   ``KUBERNETES_SERVICE_HOST``/``_PORT`` (+ ``KUBERNETES_PORT*``) from ``in_cluster_host``/
   ``in_cluster_port``; ``workingDir``; the volumes of 6. as bind mounts (read-only as in
   6.), an ``emptyDir`` with ``medium: Memory`` as a tmpfs (at ``/dev/shm``:
   ``--shm-size`` = its ``sizeLimit``, else the memory limit, else 1 GiB); the pod's
   securityContext merged with the container's: ``runAsUser``/``runAsGroup``
   (``--user``), ``fsGroup`` and ``supplementalGroups`` (``--group-add``; with ``fsGroup``
   the volumes' files get that group, emptyDirs group-writable and setgid, as the kubelet
   does), ``runAsNonRoot`` checked against the image's user (``CreateContainerConfigError``
   as in Kubernetes), ``readOnlyRootFilesystem`` (``--read-only`` with no tmpfs on /tmp,
   as in Kubernetes), ``allowPrivilegeEscalation: false``, ``capabilities``,
   ``privileged``; ``resources.limits.memory`` (``--memory``, no swap). Host network;
   hostname = pod name; the container is named ``kt-<instance>-<ns>-<pod>-<restart>`` and
   labelled ``io.kubetune.fake-kubelet=<instance_id>`` plus the pod's namespace/name/uid.
   Its stdout+stderr go to the pod's log as in 2. (``podman run`` is attached). The pod is
   ``Pending`` (``waiting.reason=ContainerCreating``) until podman has created the
   container, then ``Running``. Exit:
   ``podman inspect``'s exit code; ``OOMKilled`` when the kernel's OOM killer hit the
   container's memory cgroup (watched while it runs: podman's own ``OOMKilled`` stays
   false on cgroup v1) or podman says so; a container that never started (no such
   executable) is a ``StartError``. Deletion as in 4.: SIGTERM to ``podman run`` (which
   passes it to the container), ``podman kill`` after the grace period. A container is
   removed once its exit is reported; :meth:`FakeKubelet.stop` removes any left.
   *ServiceAccount token* (``automount_service_account_token``, on by default in container
   mode): ``projected`` volumes (``serviceAccountToken`` from the API server's TokenRequest,
   bound to the pod; ``configMap``, ``secret``, ``downwardAPI`` sources) are honoured in
   both modes; in container mode a pod whose container has no mount at
   ``/var/run/secrets/kubernetes.io/serviceaccount`` gets one (``token``, ``ca.crt`` from
   the namespace's ``kube-root-ca.crt``, ``namespace``) unless
   ``automountServiceAccountToken: false`` on the pod or its ServiceAccount -- as
   Kubernetes' admission and kubelet do together (the emulator's
   ``mount_service_account_token`` adds the volume to the pod itself instead). A failed
   TokenRequest (e.g. the ServiceAccount is gone) or a missing ``kube-root-ca.crt`` keeps
   the pod ``Pending`` with ``CreateContainerConfigError``, retried every second.

Not emulated: init containers, sidecars and containers after the first, probes, image
pulls, cpu limits, memory limits in process mode (cpu/memory only accounted for
scheduling when ``capacity`` names them), taints/tolerations and affinity, live updates of
mounted ConfigMaps/Secrets, token rotation.
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
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from .serviceaccount import TOKEN_MOUNT_PATH, token_volume

__all__ = ["FakeKubelet"]

GPU = "nvidia.com/gpu"
#: The label on every container of the podman runtime: the kubelet's instance id.
CONTAINER_LABEL = "io.kubetune.fake-kubelet"
RUNTIMES = ("process", "podman")
#: The PodScheduled message of a gated pod, Kubernetes' own words.
GATED_MESSAGE = "Scheduling is blocked due to non-empty scheduling gates"


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


class _WaitingError(Exception):
    """The container cannot start yet: the pod stays Pending with ``waiting.reason``."""

    reason = "ContainerCreating"
    retry_after = 1.0


class _ConfigError(_WaitingError):
    """The container cannot be configured yet (a missing Secret/ConfigMap): retry later."""

    reason = "CreateContainerConfigError"


class _ImageError(_WaitingError):
    """The image is not on this node (podman runtime): nothing can pull it here."""

    reason = "ErrImageNeverPull"
    retry_after = 2.0


class _Mount(NamedTuple):
    """A volumeMount made ready: ``source`` on the host, or a tmpfs when ``memory``."""

    source: Path
    target: str
    read_only: bool
    memory: bool = False  # emptyDir with medium Memory
    size: int | None = None  # its sizeLimit in bytes


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
    # the podman runtime
    container_name: str | None = None
    cid_file: Path | None = None
    oom_seen: bool = False
    running_reported: bool = False
    killed_by_kubelet: bool = False


class FakeKubelet:
    """Runs the pods of an (emulated) API server as local processes; see the module doc.

    ``base_env`` is the environment every container starts from (pass ``os.environ`` plus
    PYTHONPATH etc.). ``log_dir`` receives one ``<namespace>_<name>.log`` per pod and the
    kubelet's own ``kubelet.log``. Start/stop with :meth:`start`/:meth:`stop` or ``with``.
    All public methods are thread-safe.

    ``runtime="podman"`` runs each pod's first container from its image with ``podman run``
    (see the module doc, *Container mode*); ``base_env`` and ``python`` then do not apply.
    ``in_cluster_host``/``in_cluster_port`` become the containers' ``KUBERNETES_SERVICE_HOST``/
    ``_PORT`` (the API server's in-cluster HTTPS address, e.g. ``EmulatorServer.https_port``).
    ``automount_service_account_token`` (default: on with podman) mounts the pod's
    ServiceAccount token, ``ca.crt`` and ``namespace`` as a real cluster does.
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
        runtime: str = "process",
        podman: str = "podman",
        in_cluster_host: str | None = None,
        in_cluster_port: int | None = None,
        automount_service_account_token: bool | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        if runtime == "podman" and shutil.which(podman) is None:
            raise RuntimeError(
                f"runtime='podman' but there is no {podman!r} (make images installs it)"
            )
        self.runtime = runtime
        self.podman = podman
        self.in_cluster_host = in_cluster_host
        self.in_cluster_port = in_cluster_port
        if automount_service_account_token is None:
            automount_service_account_token = runtime == "podman"
        self.automount_service_account_token = automount_service_account_token
        #: Labels this kubelet's containers (``io.kubetune.fake-kubelet=<id>``).
        self.instance_id = uuid.uuid4().hex[:10]
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
        if self.runtime == "podman":
            self._remove_containers()
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
                if self.runtime == "podman":
                    await asyncio.to_thread(self._remove_container, run)
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
                if spec.get("schedulingGates"):
                    await self._report_unschedulable(pod, GATED_MESSAGE, reason="SchedulingGated")
                    return
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
        elif (
            run.proc is not None
            and run.cid_file is not None
            and not run.running_reported
            and run.cid_file.exists()
            and run.cid_file.stat().st_size > 0
        ):
            await self._report_running(pod, run)

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

    async def _report_unschedulable(
        self, pod: dict[str, Any], message: str, *, reason: str = "Unschedulable"
    ) -> None:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == reason
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
                        "reason": reason,
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
        # A container's environment is the image's plus these; a process's is base_env's.
        env = dict(self.base_env) if self.runtime == "process" else {}
        env["HOSTNAME"] = pod["metadata"]["name"]
        if self.in_cluster_host is not None and self.in_cluster_port is not None:
            host, port = self.in_cluster_host, str(self.in_cluster_port)
            env.update(
                {
                    "KUBERNETES_SERVICE_HOST": host,
                    "KUBERNETES_SERVICE_PORT": port,
                    "KUBERNETES_SERVICE_PORT_HTTPS": port,
                    "KUBERNETES_PORT": f"tcp://{host}:{port}",
                    f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
                    f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
                    f"KUBERNETES_PORT_{port}_TCP_PORT": port,
                    f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
                }
            )
        if self.python and self.runtime == "process":
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
        podman = self.runtime == "podman"
        try:
            image_config = await self._image_config(container) if podman else {}
            env, defined = await self._resolve_env(pod, container)
            argv = [] if podman else self._argv(container, defined)
            security = self._security_context(pod, container, image_config)
            mounts = await self._prepare_volumes(pod, container, run)
            if podman:
                self._set_volume_ownership(pod, mounts, security.get("fsGroup"))
        except _WaitingError as e:
            waiting = {"reason": e.reason, "message": str(e)}
            if run.config_error != f"{e.reason}: {e}":
                self._debug(f"{run.namespace}/{run.name}: {e.reason}: {e}")
                run.config_error = f"{e.reason}: {e}"
                await self._patch_status(
                    pod,
                    self._status(
                        pod, run, phase="Pending", ready=False, state={"waiting": waiting}
                    ),
                )
            run.next_start_at = time.monotonic() + e.retry_after
            return
        except _StartError as e:
            await self._start_failed(pod, run, str(e))
            return
        if podman:
            await self._start_container(pod, run, container, env, defined, mounts, security)
            return

        cwd = container.get("workingDir")
        if mounts and self.mount_volumes:
            argv = self._wrap_with_mounts(argv, mounts, cwd)
            cwd = str(run.sandbox)
        elif mounts:
            with open(run.log_path, "a") as log:
                log.write(
                    "[fake-kubelet] volumes are NOT mounted (mount_volumes=False): "
                    + ", ".join(f"{m.source} -> {m.target}" for m in mounts)
                    + "\n"
                )
        if not cwd or not os.path.isdir(cwd):
            cwd = str(run.sandbox)
        try:
            proc = self._spawn(run, argv, cwd, env)
        except OSError as e:
            await self._start_failed(pod, run, f"exec: {argv[0]!r}: {e}")
            return
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
    ) -> list[_Mount]:
        """Write the container's configMap/secret/emptyDir/downwardAPI/projected volumes to
        the sandbox (with ``automount_service_account_token``, also the ServiceAccount's).

        Returns a :class:`_Mount` for every volumeMount.
        """
        namespace = pod["metadata"]["namespace"]
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        volume_mounts = list(container.get("volumeMounts") or [])
        if (
            self.automount_service_account_token
            and not any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in volume_mounts)
            and await self._automounts_token(pod)
        ):
            volumes["kube-api-access-kubelet"] = token_volume("kube-api-access-kubelet")
            volume_mounts.append(
                {"name": "kube-api-access-kubelet", "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
            )
        root = run.sandbox / "volumes"
        prepared: dict[str, Path] = {}
        mounts = []
        for mount in volume_mounts:
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
            empty_dir = volume.get("emptyDir")
            memory = isinstance(empty_dir, Mapping) and empty_dir.get("medium") == "Memory"
            size = None
            if memory and empty_dir.get("sizeLimit"):
                size = int(_quantity(empty_dir["sizeLimit"]))
            mounts.append(_Mount(source, mount["mountPath"], read_only, memory, size))
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
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode", mode)
            for source in volume["projected"].get("sources") or []:
                files.update(await self._projected_files(pod, namespace, source))
        elif "emptyDir" not in volume:
            kind = next((k for k in volume if k != "name"), "?")
            with open(self.log_dir / "kubelet.log", "a") as log:
                log.write(f"volume {volume.get('name')!r} of kind {kind!r} is an empty folder\n")
        else:
            path.chmod(0o777)  # as Kubernetes makes an emptyDir
        for relative, content in files.items():
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        return path

    def _wrap_with_mounts(
        self, argv: list[str], mounts: list[_Mount], working_dir: str | None
    ) -> list[str]:
        """Run argv in a private mount namespace with the volumes bind-mounted (as root)."""
        steps = []
        for source, target, read_only, *_ in mounts:
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

    # -- ServiceAccount tokens and projected volumes -------------------------------------------

    async def _automounts_token(self, pod: Mapping[str, Any]) -> bool:
        """``automountServiceAccountToken``: the pod's if set, else its ServiceAccount's."""
        spec = pod.get("spec") or {}
        if spec.get("automountServiceAccountToken") is not None:
            return bool(spec["automountServiceAccountToken"])
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        found = await self._read("serviceaccounts", pod["metadata"]["namespace"], account)
        return found is None or found.get("automountServiceAccountToken") is not False

    async def _projected_files(
        self, pod: Mapping[str, Any], namespace: str, source: Mapping[str, Any]
    ) -> dict[str, str]:
        """The files of one source of a ``projected`` volume."""
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            return {token["path"]: await self._request_token(pod, token)}
        if "downwardAPI" in source:
            return {
                item["path"]: self._field_ref(pod, item["fieldRef"]["fieldPath"])
                for item in source["downwardAPI"].get("items") or []
                if "fieldRef" in item
            }
        for kind, field, name_key in (
            ("configmaps", "configMap", "name"),
            ("secrets", "secret", "name"),
        ):
            if field in source:
                ref = source[field]
                data = await self._source_data(
                    kind, namespace, {"name": ref.get(name_key), "optional": ref.get("optional")}
                )
                data = data or {}
                items = ref.get("items")
                if not items:
                    return dict(data)
                missing = [i["key"] for i in items if i["key"] not in data]
                if missing and not ref.get("optional"):
                    raise _ConfigError(
                        f"configmap references non-existent config key: {missing[0]}"
                        if kind == "configmaps"
                        else f"references non-existent secret key: {missing[0]}"
                    )
                return {i["path"]: data[i["key"]] for i in items if i["key"] in data}
        return {}

    async def _request_token(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> str:
        """A bound token from the API server's TokenRequest, as the kubelet gets one."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": int(source.get("expirationSeconds") or 3607),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta.get("uid"),
                },
            },
        }
        if source.get("audience"):
            body["spec"]["audiences"] = [source["audience"]]
        url = (
            f"{self.server_url}/api/v1/namespaces/{meta['namespace']}"
            f"/serviceaccounts/{account}/token"
        )
        code, answer = await self._api("POST", url, body=body, content_type="application/json")
        status = answer.get("status") if isinstance(answer, dict) else None
        token = status.get("token") if isinstance(status, dict) else None  # a Status: "Failure"
        if code not in (200, 201) or not token:
            detail = answer.get("message") if isinstance(answer, dict) else answer
            raise _ConfigError(
                f'failed to fetch token for serviceaccount "{account}": {code} {detail}'
            )
        return str(token)

    # -- the podman runtime --------------------------------------------------------------------

    def _podman_run(
        self, *args: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.podman, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()}")
        return done

    async def _image_config(self, container: Mapping[str, Any]) -> dict[str, Any]:
        """The image's config (``User``, ``Entrypoint``, ...); ErrImageNeverPull if absent:
        no registry is reachable here, so images must be built or loaded beforehand."""
        image = container.get("image") or ""
        done = await asyncio.to_thread(
            self._podman_run, "image", "inspect", "--format", "{{json .Config}}", image
        )
        if done.returncode != 0:
            raise _ImageError(
                f'Container image "{image}" is not present with pull policy of Never '
                "(no registry is reachable here: build it with `make images` or `podman load`)"
            )
        return json.loads(done.stdout.strip() or "{}") or {}

    @staticmethod
    def _security_context(
        pod: Mapping[str, Any], container: Mapping[str, Any], image_config: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The pod's securityContext overridden by the container's; runAsNonRoot checked
        against the user the container would run as, as the kubelet does."""
        merged = dict((pod.get("spec") or {}).get("securityContext") or {})
        merged.update(container.get("securityContext") or {})
        if merged.get("runAsNonRoot") and merged.get("runAsUser") is None:
            user = str(image_config.get("User") or "").split(":", 1)[0]
            if not user.isdigit() and user not in ("", "root"):
                raise _ConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({user}), "
                    "cannot verify user is non-root"
                )
            if user in ("", "root", "0"):
                raise _ConfigError("container has runAsNonRoot and image will run as root")
        elif merged.get("runAsNonRoot") and int(merged["runAsUser"]) == 0:
            raise _ConfigError("container's runAsUser breaks non-root policy")
        return merged

    @staticmethod
    def _set_volume_ownership(
        pod: Mapping[str, Any], mounts: Sequence[_Mount], fs_group: int | None
    ) -> None:
        """``fsGroup``: the volumes' files belong to that group, which can write emptyDirs
        (setgid folders) and read configMaps/Secrets (group-read added), as the kubelet does."""
        if fs_group is None:
            return
        seen: set[Path] = set()
        for mount in mounts:
            root = mount.source
            if root in seen or not root.exists():
                continue
            seen.add(root)
            paths = [root, *root.rglob("*")] if root.is_dir() else [root]
            for path in paths:
                os.chown(path, -1, int(fs_group), follow_symlinks=False)
                mode = path.stat().st_mode & 0o7777
                if path.is_dir():
                    mode |= 0o2070 if not mount.read_only else 0o2050
                else:
                    mode |= 0o440 if mount.read_only else 0o660
                path.chmod(mode)

    def _container_argv(
        self,
        pod: Mapping[str, Any],
        run: _PodRun,
        container: Mapping[str, Any],
        env: Mapping[str, str],
        defined: Mapping[str, str],
        mounts: Sequence[_Mount],
        security: Mapping[str, Any],
    ) -> list[str]:
        """``podman run ...`` for the pod's first container."""
        meta = pod["metadata"]
        assert run.container_name is not None and run.cid_file is not None
        argv = [
            self.podman,
            "run",
            "--name",
            run.container_name,
            "--cidfile",
            str(run.cid_file),
            "--label",
            f"{CONTAINER_LABEL}={self.instance_id}",
            "--label",
            f"io.kubernetes.pod.namespace={meta['namespace']}",
            "--label",
            f"io.kubernetes.pod.name={meta['name']}",
            "--label",
            f"io.kubernetes.pod.uid={meta.get('uid', '')}",
            "--pull",
            "never",
            "--network",
            "host",
            "--hostname",
            meta["name"][:63],
            "--log-driver",
            "none",  # `podman run` is attached: its output is the pod's log
        ]
        for name, value in env.items():
            argv += ["--env", f"{name}={value}"]
        if container.get("workingDir"):
            argv += ["--workdir", str(container["workingDir"])]
        user, group = security.get("runAsUser"), security.get("runAsGroup")
        if user is not None or group is not None:
            argv += [
                "--user",
                f"{user if user is not None else 0}" + (f":{group}" if group is not None else ""),
            ]
        groups = list(security.get("supplementalGroups") or [])
        if security.get("fsGroup") is not None:
            groups.insert(0, security["fsGroup"])
        for gid in groups:
            argv += ["--group-add", str(gid)]
        if security.get("readOnlyRootFilesystem"):
            # Kubernetes mounts no tmpfs on /tmp or /run: only the volumes are writable.
            argv += ["--read-only", "--read-only-tmpfs=false"]
        if security.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        capabilities = security.get("capabilities") or {}
        for cap in capabilities.get("drop") or []:
            argv += ["--cap-drop", str(cap).lower()]
        for cap in capabilities.get("add") or []:
            argv += ["--cap-add", str(cap).lower()]
        if security.get("privileged"):
            argv += ["--privileged"]
        limits = (container.get("resources") or {}).get("limits") or {}
        memory = int(_quantity(limits["memory"])) if limits.get("memory") else None
        if memory:
            argv += ["--memory", str(memory), "--memory-swap", str(memory)]
        for mount in mounts:
            if mount.memory and mount.target.rstrip("/") == "/dev/shm":
                argv += ["--shm-size", str(mount.size or memory or 2**30)]
            elif mount.memory:
                size = f",tmpfs-size={mount.size}" if mount.size else ""
                argv += ["--mount", f"type=tmpfs,destination={mount.target},tmpfs-mode=1777{size}"]
            else:
                read_only = ",ro=true" if mount.read_only else ""
                argv += [
                    "--mount",
                    f"type=bind,source={mount.source},destination={mount.target}{read_only}",
                ]
        command = [_expand(str(x), defined) for x in container.get("command") or []]
        args = [_expand(str(x), defined) for x in container.get("args") or []]
        if command:
            argv += ["--entrypoint", json.dumps(command)]
        argv.append(str(container.get("image") or ""))
        argv += args
        return argv

    async def _start_container(
        self,
        pod: dict[str, Any],
        run: _PodRun,
        container: Mapping[str, Any],
        env: Mapping[str, str],
        defined: Mapping[str, str],
        mounts: Sequence[_Mount],
        security: Mapping[str, Any],
    ) -> None:
        meta = pod["metadata"]
        safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"{meta['namespace']}-{meta['name']}")
        run.container_name = f"kt-{self.instance_id}-{safe}-{run.restart_count}"
        run.cid_file = run.sandbox / f"container-{run.restart_count}.id"
        with contextlib.suppress(FileNotFoundError):
            run.cid_file.unlink()
        run.oom_seen = False
        run.running_reported = False
        run.killed_by_kubelet = False
        argv = self._container_argv(pod, run, container, env, defined, mounts, security)
        try:
            proc = self._spawn(run, argv, str(run.sandbox))
        except OSError as e:
            await self._start_failed(pod, run, f"podman: {e}")
            return
        shown = [
            a if not a.startswith(tuple(f"{k}=" for k in env)) else a.split("=")[0] + "=..."
            for a in argv
        ]
        self._debug(f"{meta['namespace']}/{meta['name']}: podman pid {proc.pid}: {shown!r}")
        if "--memory" in argv:
            threading.Thread(
                target=self._watch_oom, args=(run, proc), name="oom-watch", daemon=True
            ).start()
        # Running once podman has created the container (see _reconcile); until then:
        waiting = {"reason": "ContainerCreating"}
        phase = "Running" if run.restart_count else "Pending"
        await self._patch_status(
            pod, self._status(pod, run, phase=phase, ready=False, state={"waiting": waiting})
        )

    async def _report_running(self, pod: dict[str, Any], run: _PodRun) -> None:
        """Container mode: the container exists (its ID file is written): Running."""
        run.running_reported = True
        run.started_at = _now()
        self._debug(f"{run.namespace}/{run.name}: container {self._container_id(run)} created")
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

    def _watch_oom(self, run: _PodRun, proc: subprocess.Popen[bytes]) -> None:
        """Notice the OOM killer in the container's memory cgroup.

        podman's ``State.OOMKilled`` stays false on some hosts (cgroup v1 here), so read the
        cgroup's ``oom_kill`` counter while the container lives (the cgroup goes with it)."""
        assert run.cid_file is not None
        cgroup_file: int | None = None
        try:
            while proc.poll() is None and not self._stopping:
                if cgroup_file is None:
                    cid = run.cid_file.read_text().strip() if run.cid_file.exists() else ""
                    for pattern, name in (
                        (f"memory/**/libpod-{cid}*", "memory.oom_control"),  # cgroup v1
                        (f"**/libpod-{cid}*", "memory.events"),  # cgroup v2
                    ):
                        found = list(Path("/sys/fs/cgroup").glob(pattern)) if cid else []
                        for folder in found:
                            if (folder / name).exists():
                                cgroup_file = os.open(folder / name, os.O_RDONLY)
                                break
                        if cgroup_file is not None:
                            break
                else:
                    os.lseek(cgroup_file, 0, os.SEEK_SET)
                    text = os.read(cgroup_file, 4096).decode()
                    match = re.search(r"^oom_kill (\d+)", text, re.M)
                    if match and int(match[1]) > 0:
                        run.oom_seen = True
                        return
                time.sleep(0.02 if cgroup_file is not None else 0.1)
        except OSError:
            pass  # the cgroup is gone: the container has exited
        finally:
            if cgroup_file is not None:
                os.close(cgroup_file)

    def _reap_container(self, run: _PodRun) -> dict[str, Any]:
        """After ``podman run`` exited: the container's exit code, OOM kill, whether it ever
        started, and its ID; then remove it."""
        info: dict[str, Any] = {"exit_code": None, "oom": run.oom_seen, "started": True, "id": ""}
        if run.container_name is None:
            return info
        done = self._podman_run(
            "container",
            "inspect",
            "--format",
            "{{.Id}} {{.State.ExitCode}} {{.State.OOMKilled}} {{.State.StartedAt.IsZero}}",
            run.container_name,
        )
        if done.returncode == 0 and done.stdout.split():
            cid, code, oom, never_started = done.stdout.split()[:4]
            info.update(
                id=cid,
                exit_code=int(code),
                oom=run.oom_seen or oom == "true",
                started=never_started != "true",
            )
        self._remove_container(run)
        return info

    def _remove_container(self, run: _PodRun) -> None:
        if run.container_name is not None:
            self._podman_run("rm", "--force", "--time", "0", run.container_name)

    def _remove_containers(self) -> None:
        """Remove every container this kubelet started (leftovers when it stops)."""
        done = self._podman_run(
            "ps", "--all", "--quiet", "--filter", f"label={CONTAINER_LABEL}={self.instance_id}"
        )
        ids = done.stdout.split()
        if ids:
            self._podman_run("rm", "--force", "--time", "0", *ids)

    def _container_id(self, run: _PodRun) -> str:
        if self.runtime == "podman":
            cid = ""
            if run.cid_file is not None:
                with contextlib.suppress(OSError):
                    cid = run.cid_file.read_text().strip()
            return f"podman://{cid or run.container_name}"
        assert run.proc is not None
        return f"fake://{run.proc.pid}"

    @staticmethod
    def _spawn(
        run: _PodRun, argv: list[str], cwd: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the container's process (or podman) in its own session, its output in
        the pod's log, and mark the run started. OSError when it cannot start."""
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
        run.proc = proc
        run.config_error = None
        run.started_at = _now()
        run.pod_started_at = run.pod_started_at or run.started_at
        return proc

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
        oom = False
        container_id = self._container_id(run)
        if self.runtime == "podman":
            info = await asyncio.to_thread(self._reap_container, run)
            if not info["started"]:
                message = self._log_tail(run) or f"podman run exited with {code}"
                await self._start_failed(pod, run, message)
                return
            if info["exit_code"] is not None:
                exit_code, code = info["exit_code"], info["exit_code"]
            oom = info["oom"] and exit_code != 0
            container_id = f"podman://{info['id']}" if info["id"] else container_id
        else:
            self._kill_group(run, signal.SIGKILL)  # the container's leftovers go with it
        reason = "Completed" if exit_code == 0 else "Error"
        if run.forced_reason == "OOMKilled":
            reason, exit_code = "OOMKilled", 137
        elif oom:
            reason = "OOMKilled"
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": run.started_at,
            "finishedAt": _now(),
            "containerID": container_id,
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
    def _log_tail(run: _PodRun) -> str:
        try:
            lines = run.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

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
        container_id = self._container_id(run)
        if self.runtime == "podman":
            info = await asyncio.to_thread(self._reap_container, run)
            if info["exit_code"] is not None:
                exit_code = info["exit_code"]
            container_id = f"podman://{info['id']}" if info["id"] else container_id
        else:
            self._kill_group(run, signal.SIGKILL)
        run.finished = True
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": _now(),
            "containerID": container_id,
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
        if self.runtime == "podman" and run.container_name is not None:
            if run.proc.poll() is not None:
                return  # exited: _reap_container removes the container
            # The container is not a child of `podman run`: signal it through podman, then
            # give `podman run` a moment to report its exit.
            self._podman_run("kill", "--signal", str(int(sig)), run.container_name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(timeout=5 if sig == signal.SIGKILL else 0)
            if sig != signal.SIGKILL or run.proc.poll() is not None:
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
        # Conditions other components own (DisruptionTarget, Kueue's TerminationTarget)
        # are kept, as the kubelet's status manager keeps them.
        own = {condition["type"] for condition in conditions}
        conditions += [
            dict(condition)
            for condition in (pod.get("status") or {}).get("conditions") or []
            if condition.get("type") not in own
        ]
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
                container_status["containerID"] = self._container_id(run)
            status["containerStatuses"] = [container_status]
        return status
