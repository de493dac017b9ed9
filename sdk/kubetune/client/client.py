"""``kubetune.Client``: Studies on a cluster from Python.

The client talks to the API server with the official ``kubernetes`` client
(``pip install 'kubetune[client]'``) and reads trials straight from the
study's Optuna storage. It finds the cluster like kubectl (``kubeconfig=``,
``$KUBECONFIG``, ``~/.kube/config``, else the pod's service account) and the
namespace too (``namespace=``, else the context's, else ``default``).

Reading trials, enqueueing and plotting need the storage: by default the
client reads the Study's database URL from its Secret (``spec.storage.secretRef``,
or the ``<study>-storage`` Secret the operator makes) and connects to it from
this machine. When the database is only reachable inside the cluster, forward
a port and say where::

    kubectl -n kubetune port-forward svc/kubetune-postgresql 5432:5432 &
    client = Client(storage_host="localhost:5432")   # the Secret's URL, another host

or pass the whole URL with ``storage_url=``. Passwords are never printed.

Local studies (``kubetune run``, ``tune(local=True)``) need no cluster: give
``best_params``, ``best_trial(s)``, ``trials`` and ``optuna_study`` the Study
file (``client.best_params("study.yaml")``); the embedded PostgreSQL runs until
the client is closed. With ``storage_url=``, a study of that name in it is read
without asking the cluster either.

Example:
    >>> from kubetune import Client
    >>> client = Client()                                           # doctest: +SKIP
    >>> client.submit("examples/quickstart.yaml")                   # doctest: +SKIP
    >>> client.wait("lgbm-breast-cancer", timeout=600)              # doctest: +SKIP
    >>> client.best_params("lgbm-breast-cancer")                    # doctest: +SKIP
    {'learning_rate': 0.08, 'num_leaves': 31}
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kubetune.cluster.api import KubeApi
from kubetune.engine.progress import DisplayFactory, ProgressDisplay, display_for
from kubetune.engine.spend import Spend
from kubetune.engine.trials import best_of, best_params_document, best_params_of
from kubetune.engine.verify import stored_verified
from kubetune.engine.warmstart import ParamSets, check_param_sets, param_sets
from kubetune.errors import (
    ApiError,
    ClusterUnavailable,
    KubetuneError,
    NoBestTrial,
    NotFound,
    NotReady,
    SpecChangeRefused,
    StudyFailed,
    WaitTimeout,
)
from kubetune.study.names import (
    CODE_DIGEST_ANNOTATION,
    MANAGED_BY_LABEL,
    STUDY_LABEL,
    TRIAL_LABEL,
    code_configmap,
    storage_secret,
    study_selector,
)
from kubetune.study.spec import (
    API_VERSION_FULL,
    KIND,
    PrunerSpec,
    SamplerSpec,
    SpecError,
    Study,
    StudySpec,
    TrialCounts,
    TrialSummary,
    VerifiedStatus,
    load_study,
    validate_spec,
)

if TYPE_CHECKING:
    import optuna
    import pandas

    from kubetune.client.tuning import TunedStudy
    from kubetune.engine.trials import TrialRecord

_logger = logging.getLogger("kubetune.client.client")

#: Phases after which nothing more happens to a study (unless its spec changes).
TERMINAL_PHASES = ("Succeeded", "Failed")
#: Seconds between two looks at a study while waiting.
POLL_SECONDS = 1.0

StudySource = Study | Mapping[str, Any] | str | Path


class Client:
    """Submit, watch and query Studies on a cluster.

    ``storage_url`` (a full Optuna RDB URL) or ``storage_host`` (``host:port``
    to put in the URL read from the Study's Secret, for a port-forward) say how
    this machine reaches the studies' database.
    """

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        storage_url: str | None = None,
        storage_host: str | None = None,
    ) -> None:
        self._api = KubeApi(kubeconfig=kubeconfig, context=context, namespace=namespace)
        self.storage_url = storage_url
        self.storage_host = storage_host
        self._storages: dict[str, optuna.storages.BaseStorage] = {}
        # Local studies read from Study files: their storage (the embedded PostgreSQL
        # too) stays open until close().
        self._local = contextlib.ExitStack()
        self._local_studies: dict[Path, optuna.Study] = {}
        # A script that never closes its client: stop the server at exit, while the
        # interpreter still works (a generator closed during its teardown cannot).
        self._close_local = weakref.finalize(self, self._local.close)

    def __repr__(self) -> str:
        namespace = self._api._namespace or "(kubeconfig default)"
        return f"<kubetune.Client namespace={namespace}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the API connections and the database connection pools (and stop the
        embedded PostgreSQL a local study's reading started, unless others use it)."""
        self._api.close()
        self._local_studies.clear()
        self._close_local()
        for storage in self._storages.values():
            engine = getattr(storage, "engine", None)
            if engine is not None:
                engine.dispose()
        self._storages.clear()

    @property
    def namespace(self) -> str:
        """The namespace used when a call names none (loads the cluster configuration)."""
        return self._api.namespace

    def _ns(self, namespace: str | None) -> str:
        return namespace or self._api.namespace

    # ------------------------------------------------------------- submit

    def submit(
        self,
        study: StudySource,
        *,
        namespace: str | None = None,
        enqueue: ParamSets | None = None,
        enqueue_timeout: float = 60.0,
    ) -> Study:
        """Create the Study, or update its spec when it exists (``kubectl apply``).

        ``study`` is a :class:`~kubetune.study.spec.Study`, a dict or a YAML file; it is
        validated (the spec and its sampler and pruner) before anything is sent.
        A study that has started refuses changes to its objective, search space,
        sampler and objective code: :class:`~kubetune.errors.SpecChangeRefused`.

        ``enqueue`` (a ``best_params.json`` path, a dict or a list of dicts) is
        tried first: a new study is created suspended, the sets are enqueued in its
        Optuna study, then it is resumed (see :meth:`enqueue`).
        """
        return self._apply(study, namespace, enqueue, enqueue_timeout)[0]

    def _apply(
        self,
        study: StudySource,
        namespace: str | None = None,
        enqueue: ParamSets | None = None,
        enqueue_timeout: float = 60.0,
    ) -> tuple[Study, str]:
        """Like :meth:`submit`; also says what happened: created, configured or unchanged."""
        from kubetune.engine.bridge import check_buildable

        document = _document(study)
        check_buildable(document.spec)
        sets = param_sets(enqueue) if enqueue is not None else None
        if sets is not None:
            check_param_sets(sets, document.spec)
        given = document.metadata.namespace
        if namespace and given and namespace != given:
            raise SpecError(
                [
                    (
                        "metadata.namespace",
                        f'is "{given}" but the namespace "{namespace}" was asked for',
                    )
                ]
            )
        ns = namespace or given or self._api.namespace
        name = document.metadata.name
        body = _body(document, ns)
        hold = sets is not None and not document.spec.suspend
        try:
            # Held suspended, no trial starts before the warm-start sets are in.
            first = {**body, "spec": {**body["spec"], "suspend": True}} if hold else body
            obj, action = self._api.create_study(first, ns), "created"
        except ApiError as error:
            if error.status != 409:
                raise
            hold = False  # an existing study: enqueue into it as it runs
            obj, action = self._update(name, ns, body, document.spec)
        if sets is not None:
            try:
                self._enqueue(name, ns, sets, enqueue_timeout)
            except BaseException:
                if hold:
                    _logger.warning(
                        'study "%s" in namespace "%s" stays suspended: enqueue the sets '
                        "(kubetune enqueue) and resume it (kubetune resume) when it is ready",
                        name,
                        ns,
                    )
                raise
            if hold:  # back to the user's own spec (null removes the key)
                unhold = False if "suspend" in body["spec"] else None
                obj = self._api.patch_study(name, {"spec": {"suspend": unhold}}, ns)
        return _parse(obj), action

    def _update(
        self, name: str, namespace: str, body: dict[str, Any], spec: StudySpec
    ) -> tuple[dict[str, Any], str]:
        for _attempt in range(5):
            existing = self._api.get_study(name, namespace)
            changed = refused_fields(existing, spec)
            if changed:
                raise SpecChangeRefused(
                    name,
                    changed,
                    f'study "{name}" in namespace "{namespace}" has started; changing its '
                    f"{' and '.join(changed)} would make its trials incomparable (spec."
                    f"{changed[0]}). Submit it under another name, or delete the study first"
                    + (
                        f"; or fork it (kubetune fork {name} --set FIELD=VALUE, client.fork): a "
                        "new Study that starts with its finished trials that fit the change"
                        if "objective" not in changed
                        else ""
                    ),
                )
            metadata = dict(existing["metadata"])
            for key in ("labels", "annotations"):
                merged = {**(metadata.get(key) or {}), **(body["metadata"].get(key) or {})}
                if merged:
                    metadata[key] = merged
            updated = {**existing, "metadata": metadata, "spec": body["spec"]}
            updated.pop("status", None)
            if metadata == existing["metadata"] and _same_spec(existing.get("spec"), body["spec"]):
                return existing, "unchanged"
            try:
                return self._api.replace_study(updated, namespace), "configured"
            except ApiError as error:
                if error.status != 409:  # 409: changed meanwhile (the operator); read it again
                    raise
        raise ApiError(f'study "{name}" keeps changing; could not update it', 409)

    # ------------------------------------------------------------ reading

    def get(self, name: str, *, namespace: str | None = None) -> Study:
        """The Study with its status. Raises NotFound."""
        return _parse(self.get_object(name, namespace=namespace))

    def get_object(self, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        """The Study as the API server returns it (a dict), even when its spec is invalid."""
        return self._api.get_study(name, self._ns(namespace))

    def list(
        self, *, namespace: str | None = None, all_namespaces: bool = False
    ) -> builtins.list[Study]:
        """The Studies of the namespace (or of every namespace)."""
        return [
            _parse(obj)
            for obj in self.list_objects(namespace=namespace, all_namespaces=all_namespaces)
        ]

    def list_objects(
        self, *, namespace: str | None = None, all_namespaces: bool = False
    ) -> builtins.list[dict[str, Any]]:
        objects = self._api.list_studies(None if all_namespaces else self._ns(namespace))
        return sorted(
            objects, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )

    def events(
        self, name: str, *, namespace: str | None = None, limit: int = 20
    ) -> builtins.list[dict[str, Any]]:
        """The latest Events about the study (new best trials, failed pods...), oldest first."""
        ns = self._ns(namespace)
        found = self._api.list_events(ns, f"involvedObject.name={name},involvedObject.kind={KIND}")
        found.sort(key=_event_time)
        return found[-limit:]

    # ----------------------------------------------------------- changing

    def delete(
        self, name: str, *, namespace: str | None = None, wait: bool = False, timeout: float = 60
    ) -> None:
        """Delete the Study; the operator stops its pods (failing their running
        trials). Its Optuna study is kept unless ``spec.storage.onDelete: delete``.
        ``wait`` returns once the object is gone."""
        ns = self._ns(namespace)
        self._api.delete_study(name, ns)
        if wait:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self._api.get_study(name, ns)
                except NotFound:
                    return
                if time.monotonic() > deadline:
                    raise WaitTimeout(name, timeout, {"phase": "Terminating"})
                time.sleep(0.2)

    def suspend(self, name: str, *, namespace: str | None = None) -> Study:
        """Stop starting trials; running ones are stopped and queued to run again on resume."""
        return _parse(self._api.patch_study(name, {"spec": {"suspend": True}}, self._ns(namespace)))

    def resume(self, name: str, *, namespace: str | None = None) -> Study:
        """Start trials again after :meth:`suspend`."""
        return _parse(
            self._api.patch_study(name, {"spec": {"suspend": False}}, self._ns(namespace))
        )

    # ------------------------------------------------------------ waiting

    def wait(
        self,
        name: str,
        timeout: float | None = None,
        progress: bool | DisplayFactory = True,
        *,
        namespace: str | None = None,
        poll_seconds: float = POLL_SECONDS,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> Study:
        """Wait until the study has Succeeded and return it.

        Raises :class:`~kubetune.errors.StudyFailed` (with the status message and
        the ``Failed`` condition) when it fails, and
        :class:`~kubetune.errors.WaitTimeout` after ``timeout`` seconds. A status
        left from before the last spec change does not count as finished.
        ``progress`` shows the counts and the best value on standard error as they
        change (True: a plain line; or a callable making a
        :class:`~kubetune.engine.progress.ProgressDisplay` for the study's name, as
        the command line passes its live Rich line); ``on_update`` is called with
        each Study object seen.
        """
        import contextlib

        ns = self._ns(namespace)
        deadline = time.monotonic() + timeout if timeout is not None else None
        with contextlib.ExitStack() as stack:
            bar = display_for(progress, name)
            if bar is not None:
                stack.enter_context(bar)
            refused_shown = False
            while True:
                obj = self._api.get_study(name, ns)
                if bar is not None:
                    show_status(bar, obj)
                refused = _condition(obj, "SpecChangeRefused")
                if refused and refused.get("status") == "True" and not refused_shown:
                    # A change applied by other means (kubectl) that the operator ignores.
                    text = f"the operator refused a spec change: {refused.get('message', '')}"
                    if bar is not None:
                        bar.message(text)
                    else:
                        _logger.warning("study %s: %s", name, text)
                    refused_shown = True
                if on_update is not None:
                    on_update(obj)
                if is_finished(obj):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(name, float(timeout or 0), obj.get("status"))
                pause = poll_seconds
                if deadline is not None:
                    pause = max(0.0, min(pause, deadline - time.monotonic()))
                time.sleep(pause)
        status = obj.get("status") or {}
        if status.get("phase") == "Failed":
            raise study_failed(name, status)
        return _parse(obj)

    # ------------------------------------------------------------ results

    # A Study file names a local study (kubetune run, tune(local=True)); a name found
    # in the client's storage_url is read from there: neither needs a cluster.

    def best_params(
        self, name: str | Path, *, namespace: str | None = None
    ) -> dict[str, Any] | builtins.list[dict[str, Any]]:
        """What ``best_params.json`` holds: the best trial's parameters, or for a
        multi-objective study the Pareto front as ``[{"values": ..., "params": ...}]``.
        Raises :class:`~kubetune.errors.NoBestTrial` until a trial completes.

        ``name`` may be a Study file: the local study ``kubetune run`` made from it
        (no cluster needed); so may a study of ``storage_url``. A verified study's
        (``spec.verify``, :meth:`verify`) is its winner on the verified mean."""
        stored = self._stored_study(name)
        if stored is not None:
            verified = stored_verified(stored)  # spec.verify, kubetune verify: the winner
            return best_params_of(
                best_of(stored),
                stored.study_name,
                verified.model_dump() if verified is not None else None,
            )
        status = self._cluster_object(str(name), namespace).get("status") or {}
        best = status.get("bestTrial")
        if best:
            document = best_params_document([best], status.get("verified"))
            return document if isinstance(document, dict) else dict(best.get("params") or {})
        front = status.get("paretoFront") or []
        if front:
            return [{"values": t.get("values"), "params": t.get("params") or {}} for t in front]
        raise NoBestTrial(name, self._ns(namespace))

    def best_trial(self, name: str | Path, *, namespace: str | None = None) -> TrialSummary:
        """The best trial of a single-objective study (number, value, params)."""
        trials = self.best_trials(name, namespace=namespace)
        if len(trials) != 1 or trials[0].value is None:
            raise KubetuneError(
                f'study "{name}" is multi-objective: it has a Pareto front, not one best trial; '
                "use best_trials()"
            )
        return trials[0]

    def best_trials(
        self, name: str | Path, *, namespace: str | None = None
    ) -> builtins.list[TrialSummary]:
        """The best trial, or the Pareto front of a multi-objective study (from the status;
        for a Study file or a study of ``storage_url``, from its storage)."""
        stored = self._stored_study(name)
        if stored is not None:
            found = best_of(stored)
            if not found:
                raise NoBestTrial(stored.study_name)
            return found
        name = str(name)
        status = self._cluster_object(name, namespace).get("status") or {}
        entries = [status["bestTrial"]] if status.get("bestTrial") else status.get("paretoFront")
        if not entries:
            raise NoBestTrial(name, self._ns(namespace))
        return [TrialSummary.model_validate(entry) for entry in entries]

    def trials(
        self,
        name: str | Path,
        *,
        namespace: str | None = None,
        states: Sequence[str] | None = None,
        as_dataframe: bool = False,
    ) -> builtins.list[TrialRecord] | pandas.DataFrame:
        """Every trial from the study's storage (``states`` such as ``["COMPLETE"]``
        narrow it): number, state, values, params, duration, pod, fail reason.

        ``as_dataframe=True`` gives a pandas DataFrame (needs pandas). ``name`` may be
        a Study file: the local study ``kubetune run`` made from it.
        """
        from kubetune.engine.trials import records, to_dataframe

        study = self.optuna_study(name, namespace=namespace)
        rows = records(study.get_trials(deepcopy=False), states)
        if as_dataframe:
            return to_dataframe(rows, study.metric_names)
        return rows

    def optuna_study(self, name: str | Path, *, namespace: str | None = None) -> optuna.Study:
        """The study's ``optuna.Study`` in its storage (for plots, analysis, ``enqueue_trial``).

        For a Study file, the local study ``kubetune run`` made from it; with
        ``storage_url``, a study of that name in it is taken without asking the
        cluster. A local study's embedded PostgreSQL runs until :meth:`close` (or the
        end of a ``with Client() as client:`` block, or of the process).
        """
        import optuna

        stored = self._stored_study(name)
        if stored is not None:
            return stored
        name = str(name)
        obj = self._cluster_object(name, namespace)
        optuna_name = (obj.get("status") or {}).get("studyName")
        if not optuna_name:
            raise NotReady(
                f'study "{name}" has not started yet: the operator has not created its Optuna '
                "study (is the operator running?)"
            )
        storage = self._storage(self.storage_url_of(obj))
        try:
            return optuna.load_study(study_name=optuna_name, storage=storage)
        except KeyError:
            raise NotFound(
                "optuna study", optuna_name, hint=f'the storage of study "{name}" does not hold it'
            ) from None

    def _cluster_object(self, name: str, namespace: str | None) -> dict[str, Any]:
        """The Study object of a name the client's storage does not hold; with no cluster
        to ask, NotFound says what that storage holds (what the user asked of it)."""
        try:
            return self.get_object(name, namespace=namespace)
        except ClusterUnavailable as error:
            if not self.storage_url or self.storage_host:
                raise
            from kubetune.engine.storage import load_stored_study

            load_stored_study(
                self._storage(self.storage_url), name, hint=f"nor a cluster to look in ({error})"
            )
            raise

    def _stored_study(self, name: str | Path) -> optuna.Study | None:
        """The local study of a Study file, or the study ``name`` of ``storage_url``
        (None: ask the cluster)."""
        from kubetune.engine.storage import load_stored_study
        from kubetune.local.run import is_study_file, local_optuna_study

        if isinstance(name, Path) or is_study_file(name):
            path = Path(name).resolve()
            if path not in self._local_studies:
                study = self._local.enter_context(
                    local_optuna_study(Path(name), storage=self.storage_url)
                )
                self._local_studies[path] = study
            return self._local_studies[path]
        if not self.storage_url or self.storage_host:
            return None
        try:
            return load_stored_study(self._storage(self.storage_url), name)
        except NotFound:
            return None

    def storage_url_of(
        self, study: str | Mapping[str, Any], *, namespace: str | None = None
    ) -> str:
        """The database URL this machine uses for ``study`` (holds a password: never print it).

        ``storage_url`` if the client has one; else the URL in the Study's Secret,
        with ``storage_host`` put in when the client has one.
        """
        if self.storage_url:
            return self.storage_url
        obj = self.get_object(study, namespace=namespace) if isinstance(study, str) else study
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") or self._ns(namespace)
        storage = (obj.get("spec") or {}).get("storage") or {}
        ref = storage.get("secretRef")
        if ref:
            secret_name, key = ref["name"], ref.get("key", "url")
        elif storage.get("url"):
            return _with_host(storage["url"], self.storage_host)
        else:
            secret_name, key = storage_secret(name), "url"
        try:
            secret = self._api.get("secrets", secret_name, ns)
        except NotFound:
            raise NotFound(
                "secret",
                secret_name,
                ns,
                hint=f'it holds the database URL of study "{name}" (the operator makes it when '
                "the study starts); or pass storage_url= / --storage",
            ) from None
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise NotFound("key", key, hint=f'secret "{secret_name}" in "{ns}" has no such key')
        url = base64.b64decode(encoded).decode()
        return _with_host(url, self.storage_host)

    def _storage(self, url: str) -> optuna.storages.BaseStorage:
        from kubetune.engine.storage import open_storage

        if url not in self._storages:
            self._storages[url] = open_storage(url, retry_seconds=10)
        return self._storages[url]

    # ---------------------------------------------------------- warm start

    def enqueue(
        self,
        name: str,
        params: ParamSets,
        *,
        namespace: str | None = None,
        timeout: float = 60.0,
    ) -> int:
        """Queue parameter sets to be tried next (warm start); returns how many were new.

        ``params`` is a ``best_params.json`` path (or any JSON/YAML file holding a
        dict or a list of dicts), a dict, or a list of dicts. Values are checked
        against the search space. Sets already tried or queued are skipped. Waits
        up to ``timeout`` seconds for the operator to create the Optuna study. To
        have them tried before anything else, submit with ``enqueue=`` (or submit
        suspended, enqueue, then resume).
        """
        sets = param_sets(params)
        return self._enqueue(name, self._ns(namespace), sets, timeout)

    def _enqueue(
        self, name: str, namespace: str, sets: Sequence[dict[str, Any]], timeout: float
    ) -> int:
        deadline = time.monotonic() + timeout
        while True:
            obj = self._api.get_study(name, namespace)
            if (obj.get("status") or {}).get("studyName"):
                break
            if time.monotonic() > deadline:
                raise NotReady(
                    f'study "{name}" in namespace "{namespace}" has no Optuna study after '
                    f"{timeout:g} s (is the operator running? see kubetune describe {name})"
                )
            time.sleep(0.2)
        try:
            spec = validate_spec(obj.get("spec") or {})
        except SpecError as error:
            raise SpecError([(f'study "{name}" {p}', r) for p, r in error.problems]) from None
        check_param_sets(sets, spec)
        study = self.optuna_study(name, namespace=namespace)
        before = len(study.get_trials(deepcopy=False))
        for params in sets:
            study.enqueue_trial(params, skip_if_exists=True)
        return len(study.get_trials(deepcopy=False)) - before

    # --------------------------------------------------------------- logs

    def logs(
        self,
        name: str,
        trial: int | None = None,
        *,
        namespace: str | None = None,
        tail: int | None = None,
    ) -> str:
        """The log of the pod that runs (or ran) ``trial``; without ``trial``, the
        logs of the study's pods, each under a ``==> pod <name> <==`` line.

        Pods that succeeded are deleted by the operator, so finished trials' logs
        are gone unless the pod failed (the last few failed pods are kept).
        """
        ns = self._ns(namespace)
        self._api.get_study(name, ns)  # NotFound names the study, not a pod
        if trial is None:
            pods = self._api.list_pods(ns, study_selector(name))
            if not pods:
                raise NotFound(
                    "pods of study", name, ns, hint="none is running; succeeded pods are deleted"
                )
            parts = []
            for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
                pod_name = pod["metadata"]["name"]
                try:
                    text = self._api.pod_log(pod_name, ns, tail=tail)
                except ApiError as error:  # not started yet: say so, show the others
                    text = f"(no log: {error})\n"
                parts.append(f"==> pod {pod_name} <==\n{text}")
            return "\n".join(parts)
        return self._api.pod_log(self.trial_pod(name, trial, namespace=ns), ns, tail=tail)

    def trial_pod(self, name: str, trial: int, *, namespace: str | None = None) -> str:
        """The name of the pod that runs or ran ``trial`` (raises NotFound when it is gone)."""
        from kubetune.engine.recovery import WORKER_ATTR

        ns = self._ns(namespace)
        labelled = self._api.list_pods(ns, f"{study_selector(name)},{TRIAL_LABEL}={trial}")
        if labelled:
            return str(labelled[0]["metadata"]["name"])
        study = self.optuna_study(name, namespace=ns)
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found:
            raise NotFound("trial", str(trial), hint=f'study "{name}" has no trial {trial}')
        pod = found[0].user_attrs.get(WORKER_ATTR)
        if not pod:
            raise NotFound(
                "pod of trial", str(trial), ns, hint="the trial has not been claimed by a pod yet"
            )
        try:
            self._api.get("pods", str(pod), ns)
        except NotFound:
            raise NotFound(
                "pod",
                str(pod),
                ns,
                hint=f"it ran trial {trial} and is gone (the operator deletes pods that "
                "succeeded, and all but the last few that failed)",
            ) from None
        return str(pod)

    # --------------------------------------------------------------- tune

    def fork(
        self,
        study: str | Path,
        sets: Iterable[str] = (),
        *,
        name: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        submit: bool = True,
    ) -> Study:
        """A new Study that starts with the finished trials of ``study`` that fit its
        search space: the way to widen a range, add a choice or a parameter, or change
        the sampler of a started study (which refuses those edits).

        ``sets`` are ``path.to.field=value`` edits of the spec (values read as YAML);
        ``defaults`` give a parameter the sets add the value the parent's trials ran
        with (``spec.forkFrom.defaults``); ``name`` defaults to ``<study>-fork``. The
        fork's ``maxTrials`` counts its copied trials, so unless the sets give one it
        is the parent's plus the trials copied.

        For a Study file the fork is returned, not run: write it out and ``kubetune
        run`` it (it copies from the same storage first). A cluster Study's fork is
        submitted (``submit=False``: returned, for ``kubectl apply`` later); the operator
        copies the trials and shows them in ``status.parent``.

        Example:
            >>> client.fork("study.yaml", ["searchSpace.lr.high=1.0", "sampler.name=gp"])
            ... # doctest: +SKIP
            >>> client.fork("lgbm", ["searchSpace.boosting.choices=[gbdt, dart, goss]"])
            ... # doctest: +SKIP
        """
        from kubetune.client.forking import cluster_fork, local_fork
        from kubetune.local.run import is_study_file

        if isinstance(study, Path) or is_study_file(study):
            parent_study = self._stored_study(study)
            assert parent_study is not None
            return local_fork(Path(study), parent_study, sets, name=name, defaults=defaults)[0]
        document = cluster_fork(
            self.get(str(study), namespace=namespace), sets, name=name, defaults=defaults
        )
        return self.submit(document, namespace=namespace) if submit else document

    def verify(
        self,
        study: str | Path,
        *,
        top: int = 3,
        repeats: int = 5,
        parallelism: int | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> VerifiedStatus:
        """Re-run the ``top`` best trials of a finished study ``repeats`` times each with
        other seeds (``kubetune.seed(trial)``) and return each one's mean and 95%
        interval and the winner on the mean (:meth:`best_params` then gives the winner's).
        Repeats run before are not run again; they count against no budget.

        ``study``: a Study file, whose local study is verified on this machine (with
        ``parallelism`` workers); or a cluster Study's name, whose ``spec.verify`` is
        set so that the operator runs the repeats in trial pods (waits up to
        ``timeout`` seconds for it to succeed again).

        Example:
            >>> verified = client.verify("study.yaml", top=3, repeats=5)  # doctest: +SKIP
            >>> verified.winner, verified.trials[0].mean, verified.trials[0].low
            ... # doctest: +SKIP
            (17, 0.212, 0.198)
        """
        from kubetune.local.embedded import local_storage
        from kubetune.local.run import is_study_file, verify_local

        if top < 1 or repeats < 2:
            field, reason = (
                ("top", "must be 1 or more")
                if top < 1
                else ("repeats", "must be 2 or more (an interval needs two values)")
            )
            raise SpecError([(field, reason)])
        if not (isinstance(study, Path) or is_study_file(study)):
            ns = self._ns(namespace)
            self._api.patch_study(study, {"spec": {"verify": {"top": top, "repeats": repeats}}}, ns)
            status = self.wait(study, timeout, progress=False, namespace=ns).status
            verified = status.verified if status is not None else None
            if verified is None:
                raise KubetuneError(f"study {study!r} succeeded without verification")
            return verified
        if str(study).endswith(".py"):
            raise SpecError([(str(study), "verify needs a Study file (YAML), not a script")])
        document = load_study(Path(study))
        with local_storage(self.storage_url, document) as url:
            return verify_local(
                document,
                url,
                top=top,
                repeats=repeats,
                parallelism=parallelism,
                source=Path(study),
            )

    def tune(
        self,
        objective_fn: Callable[..., Any],
        search_space: Mapping[str, Any] | None = None,
        *,
        max_trials: int = 100,
        parallelism: int = 1,
        resources: Mapping[str, Any] | None = None,
        image: str | None = None,
        local: bool = False,
        name: str | None = None,
        namespace: str | None = None,
        direction: str | Sequence[str] = "minimize",
        metric: str | Sequence[str] | None = None,
        sampler: str | Mapping[str, Any] | SamplerSpec | None = None,
        pruner: str | Mapping[str, Any] | PrunerSpec | None = None,
        modules: Iterable[Any] = (),
        env: Mapping[str, str] | None = None,
        max_failed_trials: int | None = None,
        timeout: str | int | None = None,
        trials_per_pod: int | None = None,
        retries: int | None = None,
        warm_start: ParamSets | None = None,
        storage_url: str | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
        progress: bool | DisplayFactory = True,
        best_params_file: str | Path | None = "best_params.json",
    ) -> TunedStudy:
        """Tune a Python function ``objective_fn(trial)``: ship its source and run it.

        The source of the function's module (and of ``modules``, names or module
        objects; a package brings all its files) goes to the trial pods in a
        ConfigMap ``<study>-code`` owned by the Study, mounted on their
        ``PYTHONPATH``; the Study's ``trial.python`` names the function. A function
        defined in the script being run (``python tune.py``, tune() at its top
        level) ships as a module of the script's lines it uses, never the whole
        script (see :mod:`kubetune.cluster.shipping`), so no worker re-runs the caller;
        inside a trial, tune() raises :class:`~kubetune.client.tuning.TuneInsideTrial`. The
        function is ordinary Optuna code: ``trial.suggest_*``, ``trial.report`` and
        ``trial.should_prune`` work (the default pruner is the median pruner).
        ``search_space`` (see :mod:`kubetune.space`) is suggested before the
        function is called; read it from ``trial.params``.

        ``resources``: ``{"gpu": 1, "cpu": 2, "memory": "4Gi"}``. ``name`` defaults
        to ``<function>-<code digest>``, so the same code continues its study and
        changed code starts a new one.

        ``local=True`` runs the study on this machine instead (worker processes, on
        ``storage_url``, ``$KUBETUNE_STORAGE_URL`` or the embedded PostgreSQL) and
        returns when its budget is spent. In a cluster it returns the submitted
        Study at once, or the finished one with ``wait=True``.

        It returns a :class:`~kubetune.client.tuning.TunedStudy`: the Study (spec and status)
        with its results as Optuna names them, ``best_params``, ``best_value``,
        ``best_trial``, ``trials`` and ``trials_dataframe()``, once the study has run
        (locally, or with ``wait=True``). Then, as ``kubetune run`` does, the best
        parameters are also written to ``best_params_file`` (default
        ``best_params.json`` in the working directory; an older file is removed when
        no trial completed; None writes none). ``optuna.load_study`` opens the study
        itself: ``study.study_name`` in ``storage_url``, or for the embedded
        PostgreSQL in ``kubetune.local_storage()``.
        """
        from kubetune.client.tuning import (
            build_study,
            refuse_inside_trial,
            run_local,
        )
        from kubetune.cluster.shipping import ship

        refuse_inside_trial(getattr(objective_fn, "__name__", "objective"))
        code = ship(objective_fn, modules)
        study = build_study(
            code,
            search_space,
            name=name,
            namespace=None if local else namespace,
            direction=direction,
            metric=metric,
            max_trials=max_trials,
            parallelism=parallelism,
            max_failed_trials=max_failed_trials,
            timeout=timeout,
            sampler=sampler,
            pruner=pruner,
            resources=resources,
            image=image,
            env=env,
            trials_per_pod=trials_per_pod,
            retries=retries,
            cluster=not local,
        )
        if local:
            if warm_start is not None:
                _enqueue_local(study, code, warm_start, storage_url or self.storage_url)
            return run_local(
                study,
                code,
                storage_url or self.storage_url,
                progress=progress,
                best_params_file=Path(best_params_file) if best_params_file else None,
            )
        ns = self._ns(namespace)
        submitted = self._submit_with_code(study, code, ns, warm_start)
        return self._tuned(
            submitted, ns, wait=wait, wait_timeout=wait_timeout, progress=progress,
            best_params_file=best_params_file,
        )  # fmt: skip

    def _tuned(
        self,
        submitted: Study,
        namespace: str,
        *,
        wait: bool,
        wait_timeout: float | None,
        progress: bool | DisplayFactory,
        best_params_file: str | Path | None,
    ) -> TunedStudy:
        """A submitted Study as ``tune()`` returns it: at once, or finished (with
        ``wait``), its best parameters then written to ``best_params_file``."""
        from kubetune.client.tuning import TunedStudy, write_best_params_file

        name = submitted.metadata.name

        def read_trials() -> builtins.list[TrialRecord]:
            rows = self.trials(name, namespace=namespace)
            assert isinstance(rows, builtins.list)
            return rows

        if not wait:
            return TunedStudy.of(submitted, trials=read_trials)
        done = TunedStudy.of(
            self.wait(name, wait_timeout, progress, namespace=namespace), trials=read_trials
        )
        if best_params_file:
            done._best_params_file = write_best_params_file(done, Path(best_params_file))
        return done

    def tune_script(
        self,
        script: str | Path,
        *,
        local: bool = False,
        parallelism: int | None = None,
        max_trials: int | None = None,
        timeout: str | int | None = None,
        name: str | None = None,
        namespace: str | None = None,
        image: str | None = None,
        resources: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        storage_url: str | None = None,
        trials: int | None = None,
        fresh: bool = False,
        wait: bool = False,
        wait_timeout: float | None = None,
        progress: bool | DisplayFactory = True,
        best_params_file: str | Path | None = "best_params.json",
        on_note: Callable[[str], None] | None = None,
    ) -> TunedStudy:
        """Run an unchanged Optuna script's study, as ``kubetune run script.py`` does.

        The script runs in this process up to its ``study.optimize(...)``; the study
        that call and the script's ``optuna.create_study(...)`` describe (see
        :mod:`kubetune.engine.script_study`; ``parallelism``, ``max_trials``,
        ``timeout`` and ``name`` win over the script) runs on kubetune's workers:

        - ``local=True``: local worker processes (on ``storage_url``,
          ``$KUBETUNE_STORAGE_URL``, the script's own storage URL, or the embedded
          PostgreSQL); then the script goes on with the finished study;
        - in a cluster: the script is shipped whole in the ``<study>-code`` ConfigMap
          (with the modules beside it that it imports), as ``tune()`` ships code, and
          the Study submitted. With ``wait=True`` the script goes on once the study
          is done (its study object reads the cluster's database: see
          :meth:`optuna_study`); without, its code after ``optimize`` does not run.

        Notes on what could not be carried over go to ``on_note`` (default: standard
        error). Returns the :class:`~kubetune.client.tuning.TunedStudy`. Raises
        :class:`~kubetune.engine.scripts.ScriptError` for a script kubetune cannot run
        (no ``optimize``, two, an objective workers cannot find), and what the script
        raises.
        """
        import sys

        from kubetune.client.tuning import (
            refuse_inside_trial,
            run_local,
            script_cluster_study,
        )
        from kubetune.cluster.shipping import ship_script
        from kubetune.engine.script_study import Overrides, derive_study
        from kubetune.engine.scripts import never_optimized, run_script
        from kubetune.engine.storage import dispose, load_stored_study
        from kubetune.local.embedded import local_storage
        from kubetune.local.script import script_storage, workers_find

        path = Path(script)
        refuse_inside_trial(path.name)
        overrides = Overrides(
            max_trials=max_trials, parallelism=parallelism, timeout=timeout, name=name
        )

        def say(message: str) -> None:
            (on_note or (lambda m: print(m, file=sys.stderr)))(message)

        outcome: builtins.list[TunedStudy] = []
        with contextlib.ExitStack() as stack:

            def on_optimize(record: Any) -> Any:
                derived = derive_study(record, path, overrides)
                for note in derived.warnings:
                    say(f"note: {note}")
                if local:
                    study = derived.study
                    url = script_storage(derived, storage_url or self.storage_url)
                    with workers_find(derived):
                        tuned = run_local(
                            study,
                            None,
                            url,
                            progress=progress,
                            best_params_file=Path(best_params_file) if best_params_file else None,
                            source=path,
                            trials=trials,
                            fresh=fresh,
                        )
                    outcome.append(tuned)
                    if tuned.status is None or not tuned.status.trials.complete:
                        return None  # no results for the code after optimize
                    opened = stack.enter_context(local_storage(url, study))
                    finished = load_stored_study(opened, tuned.study_name)
                    stack.callback(dispose, finished)
                    return finished
                ns = self._ns(namespace)
                module, _, function = str(derived.study.spec.trial.python).partition(":")
                identity = derived.study.metadata.annotations[CODE_DIGEST_ANNOTATION]
                code = ship_script(path, module, function, identity)
                study, notes = script_cluster_study(
                    derived, code, namespace=ns, image=image, resources=resources, env=env
                )
                for note in notes:
                    say(f"note: {note}")
                submitted = self._submit_with_code(study, code, ns, None)
                study_name = submitted.metadata.name
                tuned = self._tuned(
                    submitted, ns, wait=wait, wait_timeout=wait_timeout, progress=progress,
                    best_params_file=best_params_file,
                )  # fmt: skip
                outcome.append(tuned)
                if not wait:
                    say(
                        f'study "{study_name}" submitted to namespace "{ns}"; the code after '
                        f"study.optimize in {path.name} runs once it is done with --wait "
                        "(wait=True)"
                    )
                    return None
                return self.optuna_study(study_name, namespace=ns)

            record = run_script(path, on_optimize)
        if record.optimize is None:
            raise never_optimized(path.name)
        return outcome[0]

    def _submit_with_code(
        self, study: Study, code: Any, namespace: str, warm_start: ParamSets | None
    ) -> Study:
        """The ConfigMap first (so no pod starts without it), then the Study, then
        the ConfigMap's owner reference (the Study's uid exists only now)."""
        name = study.metadata.name
        cm_name = code_configmap(name)
        try:
            existing = self._api.get_study(name, namespace)
        except NotFound:
            existing = None
        if existing is not None and (existing.get("status") or {}).get("studyName"):
            old = (existing["metadata"].get("annotations") or {}).get(CODE_DIGEST_ANNOTATION)
            if old != code.digest:
                raise SpecChangeRefused(
                    name,
                    ["trial"],
                    f'study "{name}" in namespace "{namespace}" has started with other code '
                    f"(digest {str(old)[:12]}, now {code.digest[:12]}); its trials would not be "
                    "comparable. Leave name= unset (each version of the code gets its own "
                    "study) or delete the study first",
                )
        data = code.configmap_data()
        labels = {STUDY_LABEL: name, MANAGED_BY_LABEL: "kubetune"}
        annotations = {CODE_DIGEST_ANNOTATION: code.digest}
        created_configmap = False
        try:
            current = self._api.get("configmaps", cm_name, namespace)
        except NotFound:
            current = None
        if current is None:
            self._api.create_configmap(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": cm_name, "labels": labels, "annotations": annotations},
                    "data": data,
                },
                namespace,
            )
            created_configmap = True
        else:
            if (current["metadata"].get("labels") or {}).get(STUDY_LABEL) != name:
                raise KubetuneError(
                    f'configmap "{cm_name}" in namespace "{namespace}" exists and does not belong '
                    f'to study "{name}"; choose another name'
                )
            stale = {key: None for key in (current.get("data") or {}) if key not in data}
            self._api.patch_configmap(
                cm_name,
                {"metadata": {"annotations": annotations}, "data": {**stale, **data}},
                namespace,
            )
        try:
            submitted = self.submit(study, namespace=namespace, enqueue=warm_start)
        except BaseException:
            if created_configmap:
                self._api.delete("configmaps", cm_name, namespace, missing_ok=True)
            raise
        uid = submitted.metadata.model_extra.get("uid") if submitted.metadata.model_extra else None
        if uid:
            owner = {"apiVersion": API_VERSION_FULL, "kind": KIND, "name": name, "uid": uid}
            self._api.patch_configmap(
                cm_name, {"metadata": {"ownerReferences": [owner]}}, namespace
            )
        return submitted


# ------------------------------------------------------------------ helpers


def _document(study: StudySource) -> Study:
    if isinstance(study, Study):
        # A validated copy (the caller may edit theirs), keeping only the fields they set.
        return load_study(study.model_dump(by_alias=True, exclude_unset=True, mode="json"))
    if isinstance(study, Mapping):
        return load_study(study)
    path = Path(study)
    if "\n" not in str(study) and not path.is_file():
        raise SpecError([(str(study), "no such file")])
    return load_study(path if path.is_file() else str(study))


def _body(document: Study, namespace: str) -> dict[str, Any]:
    """What is sent: the spec and the user's metadata, never a status or server fields."""
    meta = document.metadata
    metadata: dict[str, Any] = {"name": meta.name, "namespace": namespace}
    if meta.labels:
        metadata["labels"] = dict(meta.labels)
    if meta.annotations:
        metadata["annotations"] = dict(meta.annotations)
    return {
        "apiVersion": API_VERSION_FULL,
        "kind": KIND,
        "metadata": metadata,
        # Only what the user set, as kubectl apply sends it; the defaults are the operator's.
        "spec": document.spec.model_dump(by_alias=True, exclude_unset=True, mode="json"),
    }


def _parse(obj: Mapping[str, Any]) -> Study:
    try:
        return load_study(dict(obj))
    except SpecError as error:
        # The API server's copy fails our validation (applied with kubectl): say which study.
        name = (obj.get("metadata") or {}).get("name", "?")
        raise SpecError([(f'study "{name}": {p}', r) for p, r in error.problems]) from None


def _same_spec(old: Any, new: Mapping[str, Any]) -> bool:
    """Equal once defaults are filled in (``suspend: false`` is the same as no suspend)."""
    if old == new:
        return True
    try:
        return bool(validate_spec(old or {}).to_dict() == validate_spec(new).to_dict())
    except SpecError:
        return False


def refused_fields(existing: Mapping[str, Any], spec: StudySpec) -> builtins.list[str]:
    """The fields the operator would refuse to change on ``existing`` (none before it started)."""
    status = existing.get("status") or {}
    if not status.get("studyName"):
        return []
    if (_condition(existing, "SpecChangeRefused") or {}).get("status") == "True":
        # The object already holds a refused change (kubectl): only the operator knows
        # the spec the study runs with, so let it judge this one too.
        return []
    try:
        old = validate_spec(existing.get("spec") or {})
    except SpecError:
        return []  # the old spec never ran
    return spec.changed_started_fields(old)


def is_finished(obj: Mapping[str, Any]) -> bool:
    """Succeeded or Failed, for the study's current spec (not one left from before an edit)."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    current = (obj.get("metadata") or {}).get("generation")
    return status.get("phase") in TERMINAL_PHASES and (
        observed is None or current is None or observed >= current
    )


def study_failed(name: str, status: Mapping[str, Any]) -> StudyFailed:
    condition = next((c for c in status.get("conditions") or [] if c.get("type") == "Failed"), None)
    return StudyFailed(
        name,
        str(status.get("message") or (condition or {}).get("message") or ""),
        reason=str((condition or {}).get("reason") or ""),
        condition=condition,
        status=dict(status),
    )


def _condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == type_), None)


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _with_host(url: str, host: str | None) -> str:
    """``url`` pointed at ``host`` (``host:port``), keeping user, password and database.

    A ``host=`` query parameter (a Unix socket) is dropped: the new host replaces it.
    """
    if not host:
        return url
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@{host}" if userinfo else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _enqueue_local(study: Study, code: Any, warm_start: ParamSets, storage_url: str | None) -> None:
    """Warm start for ``tune(local=True)``: create the study in its storage and enqueue."""
    import optuna

    from kubetune.engine.bridge import prepare_study
    from kubetune.engine.storage import dispose, open_storage
    from kubetune.local.embedded import local_storage

    sets = param_sets(warm_start)
    check_param_sets(sets, study.spec)
    with local_storage(storage_url, study) as url:
        name = study.spec.storage.study_name or study.metadata.name
        storage = open_storage(url)
        prepare_study(storage, name, study.spec)
        optuna_study = optuna.load_study(study_name=name, storage=storage)
        for params in sets:
            optuna_study.enqueue_trial(params, skip_if_exists=True)
        dispose(optuna_study)  # before an embedded server stops under its connections


def show_status(display: ProgressDisplay, obj: Mapping[str, Any]) -> None:
    """Show a Study object, as the API server returns it, on ``display``."""
    status = obj.get("status") or {}
    budget = ((obj.get("spec") or {}).get("budget") or {}).get("maxTrials", 100)
    best_trial = status.get("bestTrial") or {}
    best = [best_trial["value"]] if best_trial.get("value") is not None else None
    progress = str(status.get("progress") or "")
    done = progress.split("/", 1)[0]
    display.update(
        total=int(budget),
        counts=TrialCounts.model_validate(status.get("trials") or {}),
        best=best,
        best_number=best_trial.get("number") if best else None,
        phase=status.get("phase"),
        spend=spend_text(status.get("spend")),
        # status.progress counts what the budget counts (a handed-back trial does not).
        done=int(done) if done.isdigit() else None,
        front=_front_size(status),
    )


def _front_size(status: Mapping[str, Any]) -> int | None:
    """A multi-objective study's whole Pareto front size: status.best says it
    (``12 on the Pareto front``); paretoFront lists only the first few."""
    if not status.get("paretoFront"):
        return None
    size = str(status.get("best") or "").split(" ", 1)[0]
    return int(size) if size.isdigit() else len(status["paretoFront"])


def spend_text(spend: Mapping[str, Any] | None) -> str:
    """status.spend as the progress line shows it (``0.5 GPU-h, cost 1.25``)."""
    if not spend:
        return ""
    return Spend(
        trial_hours=float(spend.get("trialHours", 0)),
        gpu_hours=float(spend.get("gpuHours", 0)),
        cpu_hours=float(spend.get("cpuHours", 0)),
        cost=None if spend.get("cost") is None else float(spend["cost"]),
    ).summary()
