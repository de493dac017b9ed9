"""The Study: the one definition of its spec and status, and what derives from it.

The lowest layer of kubetune (it imports only :mod:`kubetune.errors`): the spec
model (:mod:`~kubetune.study.spec`), the built-in objectives' rules the spec is
checked against (:mod:`~kubetune.study.builtin_rules`), the names of the objects
that belong to a Study (:mod:`~kubetune.study.names`) and the CRD generated from
the model (:mod:`~kubetune.study.crd`). Everything above (the engine, local mode,
the operator, the client) takes a validated :class:`Study` from here.

Example:
    >>> from kubetune.study import load_study
    >>> study = load_study("examples/quickstart.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

from kubetune._lazy import exports

_NAMES = {
    "Study": "kubetune.study.spec",
    "StudySpec": "kubetune.study.spec",
    "StudyStatus": "kubetune.study.spec",
    "ObjectMeta": "kubetune.study.spec",
    "SpecError": "kubetune.study.spec",
    "load_study": "kubetune.study.spec",
    "validate_spec": "kubetune.study.spec",
    "crd_yaml": "kubetune.study.crd",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
