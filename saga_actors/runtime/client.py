"""What users call: :class:`SagaRuntime` starts sagas and answers where each one stands."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from loguru import logger

from saga_actors.config import RuntimeConfig
from saga_actors.constants import POOLED, pool_actor_name
from saga_actors.engine.admission import admit, admit_async, admitted_before
from saga_actors.engine.startable import start_record
from saga_actors.errors import (
    SagaConflictError,
    SagaError,
    SagaUsageError,
    UnknownSagaTypeError,
)
from saga_actors.journal import open_journal
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga
from saga_actors.model.records import SagaRecord, as_admitted, first_transitions, runner_name
from saga_actors.participant.base import Participant
from saga_actors.participant.stores import check_reachable as check_store_reachable
from saga_actors.ray import calls
from saga_actors.ray.cluster import (
    check_participants,
    check_reachable,
    connect,
    pin_to_local_files,
)
from saga_actors.ray.gateway import get_riding_restarts
from saga_actors.ray.host_count import current_hosts
from saga_actors.ray.participants import (
    deploy_participant,
    deploy_participants,
    scale_participant,
)
from saga_actors.ray.sagas import saga_hosts
from saga_actors.ray.services import ensure_services
from saga_actors.runtime.definitions import RuntimeDefinitions
from saga_actors.runtime.executions import Executions
from saga_actors.runtime.queries import QueriesAndActions
from saga_actors.services.host import by_shard, shard_of


def _admitted(record: SagaRecord) -> dict[str, Any] | None:
    """A just-journaled record, handed to its host to save it a journal read."""
    return record.model_dump(mode="json") if as_admitted(record) else None


class SagaRuntime(QueriesAndActions):
    """Start sagas, query them, wait for them, cancel them.

    Options are keyword-only; each falls back to ``SAGA_ACTORS_<NAME>`` in the environment,
    then to its default. ``settings`` takes any other :class:`RuntimeConfig` field
    (``max_dedicated``, ``restart_budget``, ...).
    """

    def __init__(
        self,
        *,
        sagas: Iterable[Saga] = (),
        address: str | None = None,
        namespace: str | None = None,
        data_dir: str | None = None,
        journal_url: str | None = None,
        log_level: str | None = None,
        ray_init: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.config = RuntimeConfig.load(
            namespace=namespace, data_dir=data_dir, journal_url=journal_url,
            log_level=log_level, **settings,
        )
        if address and not calls.is_initialized():
            check_reachable(address)  # before the journal is created: a typo changes nothing
        if self.config.store_url:  # a participant that cannot open its store never serves
            check_store_reachable(self.config.store_url)
        self.journal = open_journal(self.config.journal)
        self.definitions = RuntimeDefinitions(self.journal, self.config.namespace)
        self._participants_ok: set[tuple[str, str, str]] = set()
        self._services: tuple[Any, Any] | None = None
        self._pools: dict[str, list[Any]] = {}  # hosts, buses: by placement
        self._deployed: dict[str, int] = {}  # participant name -> its place, to spread them
        self._registered: set[tuple[str, str]] = set()
        self._executing = 0  # execute() calls under way: one alone commits its start at once
        self._executions = Executions(
            lambda key: self._pool(key[0])[key[1]], lambda p: self._pools.pop(p, None),
            lambda saga_id: self.get(saga_id).status.terminal)
        self.journal.write_alone_when(lambda: self._executing <= 1)
        for saga in sagas:
            self.register(saga)
        connect(self.config, address, **(ray_init or {}))
        self.config = pin_to_local_files(self.config)
        self.definitions.connect()

    # --- services -------------------------------------------------------------------

    def services(self) -> tuple[Any, Any]:
        """The supervisor and registry actors, started if they are not running.

        The supervisor recovers every non-terminal saga in the journal when it starts, so
        after a whole-cluster restart, deploy the participants first, then call this.
        """
        if self._services is None:
            self._services = ensure_services(self.config)
        return self._services

    def hosts(self) -> list[Any]:
        """The SagaHost actors of `hosted` placement, started if need be."""
        return self._pool("hosted")

    def buses(self) -> list[Any]:
        """The bus actors of choreographed sagas, started if need be."""
        return self._pool("choreography")

    def _pool(self, placement: str) -> list[Any]:
        pool = self._pools.get(placement)
        if pool is None or len(pool) != current_hosts(self.config):  # (hosts="auto")
            pool = self._pools[placement] = saga_hosts(self.config, placement)
        return pool

    def _host_of(self, saga_id: str, placement: str = "hosted") -> Any:
        return self._pool(placement)[shard_of(saga_id, current_hosts(self.config))]

    @property
    def supervisor(self) -> Any:
        return self.services()[0]

    @property
    def registry(self) -> Any:
        return self.services()[1]

    # --- definitions and participants ------------------------------------------------

    def register(self, saga: Saga | Choreography) -> None:
        """Make ``saga`` startable by its name, and its definition reachable from every
        process that may run or recover its sagas (also when it cannot be imported: a
        saga defined in ``__main__`` or inside a function). Sagas that were waiting for
        this definition (after a whole-cluster restart) recover now.

        Several versions of one saga type may be registered side by side: new starts take
        the newest unless ``version=`` says otherwise; each journaled saga runs on the
        version (and shape) it started with. A definition whose version is already known
        with another shape (registered here or in the cluster, or pinned by unfinished
        sagas in the journal) is refused with :class:`SagaDefinitionError` naming what
        changed."""
        self.definitions.register(saga)

    def definition(self, saga_type: str | Saga | Choreography,
                   version: int | None = None) -> Saga | Choreography:
        """The registered definition called ``saga_type``: its newest version, or
        ``version``."""
        return self.definitions.get(saga_type, version)

    def deploy(
        self,
        cls: type[Participant],
        *,
        name: str | None = None,
        faults: dict | None = None,
        replicas: int | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        runtime_env: dict[str, Any] | None = None,
        label_selector: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start (or find) a participant's actors with this runtime's store settings and
        namespace; returns the first replica's. ``replicas`` actors share its store (a
        saga's calls all go to one); the rest is what they ask Ray for (over the class's
        attributes of the same names); ``kwargs`` go to its constructor (``store=URL``
        gives it a store of its own instead of the runtime's). One that no node can hold
        raises :class:`ParticipantPlacementError`."""
        name = name or cls.name or cls.__name__.lower()
        placement = {k: v for k, v in (
            ("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory),
            ("resources", resources), ("runtime_env", runtime_env),
            ("label_selector", label_selector)) if v is not None}
        return deploy_participant(cls, self.config, name=name, faults=faults,
                                  index=self._spread_index(name), replicas=replicas,
                                  placement=placement, **kwargs)

    def scale(self, participant: str, replicas: int,
              cls: type[Participant] | None = None) -> int:
        """Run ``replicas`` actors of a deployed participant, while sagas run; returns how
        many ran before. Nothing is lost or applied twice: a call to a replica that stops
        is sent again, with the same key, to one that stays. ``cls`` where its class
        cannot be imported by name (defined in ``__main__``)."""
        return scale_participant(self.config, participant, replicas, cls)

    def deploy_many(
        self, classes: Iterable[type[Participant]], *, faults: dict[str, dict | None] | None = None
    ) -> dict[str, Any]:
        """:meth:`deploy` for several participants at once (their processes start side by
        side); ``faults`` by participant name. Returns the actors by participant name."""
        return deploy_participants(classes, self.config, faults=faults,
                                   index=self._spread_index)

    def _spread_index(self, name: str) -> int:
        """A participant's place in the order this runtime deployed them: spreads them
        round-robin over the nodes."""
        return self._deployed.setdefault(name, len(self._deployed))

    # --- starting -------------------------------------------------------------------

    def start(
        self,
        saga_type: str | Saga,
        input: Any,
        *,
        saga_id: str | None = None,
        placement: str | None = None,
        version: int | None = None,
    ) -> str:
        """Validate, journal and launch a saga; return its id. ``version``: which
        registered version of the saga type (default: the newest).

        Nothing is journaled or started when the input, the saga type, a participant or
        the placement is wrong. Starting an existing id with the same input returns that
        saga instead of running it twice.
        """
        saga, record = self._prepare(saga_type, input, saga_id, placement, version)
        return self._launch(saga, admit(self.journal, record))

    def _prepare(
        self, saga_type: str | Saga, payload: Any, saga_id: str | None, placement: str | None,
        version: int | None = None,
    ) -> tuple[Saga, SagaRecord]:
        """Every check that must pass before anything is journaled
        (:func:`~saga_actors.engine.startable.start_record`), then the participants."""
        saga = self.definition(saga_type, version)
        record, children = start_record(
            saga, payload, saga_id, placement, lookup=self._newest, now=time.time(),
            definition_ref=self.definitions.ref(saga), max_bytes=self.config.max_input_bytes)
        for definition in (saga, *children.values()):
            self.definitions.publish(definition)
            check_participants(definition, self.config.namespace, self._participants_ok)
            self._register(definition, record.placement)
        return saga, record

    def _newest(self, saga_type: str) -> Saga | Choreography | None:
        try:
            return self.definition(saga_type)
        except UnknownSagaTypeError:
            return None

    def _launch(self, saga: Saga, record: SagaRecord) -> str:
        """Hand a journaled saga to whatever runs it."""
        if record.status.terminal:
            return record.saga_id
        if record.placement in POOLED:
            # no call stays open per saga (the host would hold ~55 KB for it): if this one
            # is lost, the supervisor's next pass over pooled sagas starts the saga
            admitted = _admitted(record)
            self._host_of(record.saga_id, record.placement).start.remote(
                [record.saga_id], [admitted] if admitted else None)
        else:
            self.supervisor.notify.remote()  # the supervisor admits it when a slot is free
        return record.saga_id

    def start_many(
        self,
        saga_type: str | Saga,
        inputs: Iterable[Any],
        *,
        saga_ids: Iterable[str] | None = None,
        placement: str | None = None,
        version: int | None = None,
    ) -> list[str]:
        """Start many sagas: every input (and id) is checked before any is journaled, and
        all are journaled in one transaction. With ``saga_ids`` (one per input) a bulk
        start can be retried safely: an id already started with the same input is that
        saga, not a second one; with another input it is a :class:`SagaConflictError`
        and nothing is journaled. Once journaled, the sagas run: nothing raises after
        that (a host that cannot be reached now is left to the supervisor)."""
        payloads = list(inputs)
        ids: list[str | None] = [None] * len(payloads)
        if saga_ids is not None:
            ids = list(saga_ids)
            if len(ids) != len(payloads):
                raise SagaUsageError(f"start_many got {len(payloads)} inputs but "
                                     f"{len(ids)} saga_ids")
            seen: set[str] = set()
            for saga_id in ids:
                if saga_id in seen:
                    raise SagaConflictError(saga_id, "it is given twice in this start_many")
                seen.add(saga_id)
        prepared = [self._prepare(saga_type, payload, saga_id, placement, version)
                    for payload, saga_id in zip(payloads, ids, strict=True)]
        existing = {r.saga_id: admitted_before(self.journal, r) for _, r in prepared
                    if saga_ids is not None}  # raises SagaConflictError before any write
        fresh = [r for _, r in prepared if existing.get(r.saga_id) is None]
        self.journal.create_many([(r, *first_transitions(r)) for r in fresh])
        records = [existing.get(r.saga_id) or r for _, r in prepared]
        for placement in POOLED:
            pooled = [r for r in records if r.placement == placement and not r.status.terminal]
            if pooled:
                self._start_hosted(pooled, placement)
        for saga, record in prepared:
            if record.placement not in POOLED:
                self._launch(saga, existing.get(record.saga_id) or record)
        return [r.saga_id for r in records]

    def _start_hosted(self, records: list[SagaRecord], placement: str) -> None:
        """One call per host for the lot (not one open call per saga). A host that died is
        looked up again (the supervisor replaces it); if it still cannot be reached, the
        supervisor's next pass over hosted sagas starts them."""
        groups = by_shard(records, current_hosts(self.config), lambda r: r.saga_id)
        for index, group in groups.items():
            args = ([r.saga_id for r in group], [r.model_dump(mode="json") for r in group])
            try:
                self._ask_host(placement, index, "start", *args)
            except (calls.RayError, SagaError) as exc:
                logger.warning("{} did not take {} journaled saga(s) now ({}); the "
                               "supervisor will start them", pool_actor_name(placement, index),
                               len(group), exc)

    def _ask_host(self, placement: str, index: int, method: str, *args: Any,
                  timeout_s: float = 60.0) -> Any:
        """Call host ``index``; a host that died is found (or started) again, and asked once
        more."""
        for attempt in (1, 2):
            host = self._pool(placement)[index]
            try:
                return get_riding_restarts(lambda h=host: getattr(h, method).remote(*args),
                                           timeout_s=timeout_s)
            except calls.RayActorError:
                self._pools.pop(placement, None)  # dead handles: look them up again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def runner_of(self, saga_id: str) -> str:
        """The Ray actor that runs ``saga_id``: ``saga:<saga_id>`` (dedicated) or the
        ``saga_actors:host:<i>`` that hosts it."""
        return runner_name(self.get(saga_id), current_hosts(self.config))

    def _register(self, saga: Saga, placement: str) -> None:
        """Tell the actors that run sagas of this type what it is (once per runtime)."""
        if (saga.name, placement) in self._registered:
            return
        targets = [self.supervisor]
        if placement in POOLED:
            targets += self._pool(placement)
        get_riding_restarts(lambda: [t.register.remote([saga]) for t in targets])
        self._registered.add((saga.name, placement))

    async def execute(
        self,
        saga_type: str | Saga,
        input: Any,
        *,
        saga_id: str | None = None,
        placement: str | None = None,
        poll_s: float = 0.02,
        version: int | None = None,
    ) -> SagaRecord:
        """Start a saga and await its terminal record (for asyncio callers)."""
        saga, record = self._prepare(saga_type, input, saga_id, placement, version)
        self._executing += 1
        try:
            record = await admit_async(self.journal, record)
            saga_id = record.saga_id
            if record.placement in POOLED and not record.status.terminal:
                if self._executing > 1:  # many at once: started in bulk, their ends polled
                    shard = shard_of(saga_id, current_hosts(self.config))
                    await self._executions.run((record.placement, shard), record)
                else:  # the host answers when the saga ends: no polling while it runs
                    try:
                        await self._host_of(saga_id, record.placement).run.remote(
                            saga_id, _admitted(record))
                    except calls.RayError:  # its host died: look it up again
                        self._pools.pop(record.placement, None)
            else:
                self._launch(saga, record)
            # the journal says how it ended (the supervisor recovers a lost host's sagas)
            while not (record := self.get(saga_id)).status.terminal:
                await asyncio.sleep(poll_s)
            return record
        finally:
            self._executing -= 1

    def close(self) -> None:
        """Close the journal connection (Ray stays up, and so do the sagas)."""
        self._executions.close()
        self.journal.close()

    def __enter__(self) -> SagaRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
