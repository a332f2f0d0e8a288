"""The definitions a runtime knows, by name and version: registered once, checked against
the shapes the journal and the cluster already pin, published to the cluster's shared
store (Ray's KV) so that every process can run or recover their sagas."""

from __future__ import annotations

import sys
from collections import Counter

from saga_actors.engine.catalog import refuse_changed_shape
from saga_actors.errors import SagaDefinitionError, SagaUsageError, UnknownSagaTypeError
from saga_actors.journal.base import Journal
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga
from saga_actors.model.shapes import shape_hash
from saga_actors.model.state import SagaStatus
from saga_actors.ray.definitions import KVDefinitions
from saga_actors.ray.services import find_services

_LIVE = [s for s in SagaStatus if not s.terminal]
_SHAPE_CHECK_LIMIT = 10_000  # unfinished sagas read when a definition is registered


def definition_ref(saga: Saga) -> str | None:
    """``module:attr`` under which ``saga`` can be imported again, or None (a saga made in
    ``__main__`` or inside a function: then the cluster's catalog has it, and after a
    whole-cluster restart its sagas wait until it is registered again). The module of its
    input model is looked in first, then every loaded module (once per saga type)."""
    first = saga.input_model.__module__
    for module_name in [first, *(m for m in list(sys.modules) if m != first)]:
        module = sys.modules.get(module_name)
        if module is None or module is sys.modules.get("__main__"):  # (__mp_main__ too)
            continue
        try:
            found = next((a for a, v in vars(module).items() if v is saga), None)
        except TypeError:  # a module object without a __dict__
            continue
        if found:
            return f"{module_name}:{found}"
    return None



class RuntimeDefinitions:
    """A runtime's saga definitions (orchestrated and choreographed), by name and version."""

    def __init__(self, journal: Journal, namespace: str) -> None:
        self._journal = journal
        self._namespace = namespace
        self._known: dict[str, dict[int, Saga | Choreography]] = {}  # name -> version
        self._published: set[tuple[str, int]] = set()
        self._refs: dict[tuple[str, int], str | None] = {}  # by name and version
        self.connected = False  # to the cluster: publish there too

    def connect(self) -> None:
        """Now attached to the cluster: check and publish what was registered before."""
        self.connected = True
        for versions in self._known.values():
            for saga in versions.values():
                self._check_shape_in_cluster(saga)
                self.publish(saga)

    def register(self, saga: Saga | Choreography) -> None:
        """Know ``saga`` by name and version (see :meth:`SagaRuntime.register`), after
        checking its shape against the journal's unfinished sagas and the cluster's."""
        if not isinstance(saga, (Saga, Choreography)):
            raise SagaUsageError(f"register() takes a Saga or a Choreography, not "
                                 f"{type(saga).__name__}")
        known = self._known.get(saga.name, {}).get(saga.version)
        if known is not None and known is not saga:
            refuse_changed_shape(known, saga)
        self._check_shape_in_journal(saga)
        if self.connected:
            self._check_shape_in_cluster(saga)
        self._known.setdefault(saga.name, {})[saga.version] = saga
        if self.connected:
            self.publish(saga)

    def _check_shape_in_cluster(self, saga: Saga | Choreography) -> None:
        """Refuse ``saga`` if the cluster's shared definitions hold its version with
        another shape (another driver registered it)."""
        try:
            shared = KVDefinitions(self._namespace).get(saga.name, saga.version)
        except Exception:  # noqa: BLE001 - unreadable (an older pickle): nothing to compare
            shared = None
        if shared is not None:
            refuse_changed_shape(shared, saga)

    def _check_shape_in_journal(self, saga: Saga | Choreography) -> None:
        """Refuse ``saga`` if unfinished sagas of its name and version were started with
        another shape (the journal keeps only its hash)."""
        shape = shape_hash(saga)
        pinned = Counter(r.shape for r in self._journal.query(
            statuses=_LIVE, saga_type=saga.name, limit=_SHAPE_CHECK_LIMIT)
            if r.version == saga.version and r.shape and r.shape != shape)
        if pinned:
            other, n = pinned.most_common(1)[0]
            raise SagaDefinitionError(saga.name, f"{n} unfinished saga(s) of version "
                                      f"{saga.version} in the journal were started with "
                                      f"shape {other}, and this definition has shape "
                                      f"{shape}: register the changed definition as version "
                                      f"{saga.version + 1}, and the old one as "
                                      f"{saga.version} until they finish")

    def ref(self, saga: Saga) -> str | None:
        """``module:attr`` of ``saga``, looked for once per name and version."""
        key = (saga.name, saga.version)
        if key not in self._refs:
            self._refs[key] = definition_ref(saga)
        return self._refs[key]

    def publish(self, saga: Saga) -> None:
        """Put ``saga`` in the cluster's shared definitions; wake a running supervisor."""
        key = (saga.name, saga.version)
        if key in self._published:
            return
        KVDefinitions(self._namespace).put(saga)
        self._published.add(key)
        supervisor = find_services(self._namespace)[0]
        if supervisor is not None:
            supervisor.register.remote([saga])  # it looks at waiting sagas now

    def get(self, saga_type: str | Saga | Choreography,
                   version: int | None = None) -> Saga | Choreography:
        """The registered definition called ``saga_type``: its newest version, or
        ``version``."""
        if isinstance(saga_type, (Saga, Choreography)):
            return saga_type
        versions = self._known.get(saga_type)
        if not versions:
            raise UnknownSagaTypeError(str(saga_type), tuple(self._known))
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise UnknownSagaTypeError(f"{saga_type} v{version}", tuple(
                f"{saga_type} v{v}" for v in sorted(versions)))
        return versions[version]
