"""The participant base: a service with its own database, and idempotency built in.

A participant declares actions and compensations with :func:`action` and
:func:`compensation`. Each request carries the idempotency key
``<saga_id>/<step>/<action|compensation>``; the participant records the outcome in its own
store (an SQLite file or a PostgreSQL schema, :mod:`saga_actors.participant.stores`) *in
the same transaction* as the business effect, so a participant that crashes and restarts
neither loses an effect nor applies one twice:

- a repeated key returns the recorded outcome (``replayed=True``) without re-applying;
- a compensation whose action never applied records a tombstone for the action's key, so
  a late duplicate of that action is refused instead of applied.

The class users subclass holds their handlers and little else: the machinery is a private
:class:`~saga_actors.participant.engine.ParticipantEngine` it is composed with. No Ray
here: :mod:`saga_actors.ray.participants` turns a subclass into a named Ray actor.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

from saga_actors.errors import SagaDefinitionError
from saga_actors.model.messages import StepReply, StepRequest
from saga_actors.participant.engine import DefinitionLookup, ParticipantEngine
from saga_actors.participant.faults import Fault
from saga_actors.participant.handlers import mode_of


class Participant:
    """Base class of participant services. Subclasses set ``name`` and declare handlers
    (see :mod:`saga_actors.participant.handlers` for the three kinds: ``def``, ``async def`` and
    ``@action(blocking=True)``)."""

    name: ClassVar[str] = ""
    blocking_threads: ClassVar[int] = 8
    """Threads for blocking handlers (each participant has its own pool; calls beyond it
    queue, and a call cancelled while queued never runs)."""
    replicas: ClassVar[int] = 1
    """Actors of this participant (``participant:<name>``, ``participant:<name>:<i>``),
    sharing its store; a saga's calls all go to one of them (``deploy(replicas=)``)."""
    # what the participant's actors ask Ray for (None / empty: Ray's defaults); the same
    # names are deploy() arguments
    num_cpus: ClassVar[float | None] = None
    num_gpus: ClassVar[float | None] = None
    memory: ClassVar[int | None] = None  # bytes
    resources: ClassVar[dict[str, float]] = {}  # custom resources: {"licence": 1}
    runtime_env: ClassVar[dict[str, Any] | None] = None
    label_selector: ClassVar[dict[str, str]] = {}  # node labels: {"zone": "eu-1"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A handler may not shadow a method the runtime calls, and a compensation must
        undo an action of the class, and a handler is async or blocking, not both."""
        super().__init_subclass__(**kwargs)
        reserved = _reserved_names()
        for attr, value in vars(cls).items():
            handler = getattr(value, "__saga_role__", None) is not None
            # a helper too, private ones included: the machinery is never shadowed; and a
            # handler is not one of the hooks a subclass overrides either
            if attr in reserved or (handler and attr in OVERRIDABLE):
                what = "handler" if handler else "name"
                raise SagaDefinitionError(cls.__name__, f"{what} {attr!r} shadows the "
                                          f"participant's own {attr!r}; rename it")
        own = {attr: fn for attr, fn in vars(cls).items() if getattr(fn, "__saga_role__", None)}
        if not own:
            return
        handlers = cls.handlers()
        for attr, fn in own.items():
            role, of = fn.__saga_role__
            if role == "compensation" and handlers.get(of, ("",))[0] != "action":
                raise SagaDefinitionError(cls.__name__, f"{attr!r} compensates {of!r}, "
                                          "which is not an action of this participant")
            if getattr(fn, "__saga_blocking__", False) and mode_of(fn) == "async":
                raise SagaDefinitionError(cls.__name__, f"{attr!r} is async def: it cannot "
                                          "also be blocking=True")

    def __init__(
        self, *, store_path: str | Path | None = None, store: str | Path | None = None,
        name: str | None = None, faults: dict | None = None,
    ) -> None:
        """``store`` (or its older name ``store_path``): an SQLite file, or a PostgreSQL
        schema ``postgresql://user@host:port/db?schema=NAME`` (default schema: the
        participant's name). See :mod:`saga_actors.participant.stores`."""
        location = store if store is not None else store_path
        if location is None:
            raise TypeError(f"{type(self).__name__}: give store= (a file or a URL)")
        self._engine = ParticipantEngine(
            self, location, name or type(self).name or type(self).__name__.lower(), faults)
        self.participant_name = self._engine.participant_name
        self.store = self._engine.store  # the handlers' own reads (balance(), ...) use these
        self.store_path = self._engine.store_path
        self.db = self._engine.db

    # --- for subclasses -------------------------------------------------------------

    def setup(self, db: Any) -> None:
        """Create the business tables (runs inside a transaction, on every start). Write
        SQL that runs on SQLite and PostgreSQL alike (see :mod:`saga_actors.participant.stores`)."""

    @classmethod
    def handlers(cls) -> dict[str, tuple[str, str | None]]:
        """Method name -> (role, action it compensates)."""
        cached = cls.__dict__.get("_handlers_cache")
        if cached is None:
            cached = {}
            for klass in reversed(cls.__mro__):
                for attr, fn in vars(klass).items():
                    role = getattr(fn, "__saga_role__", None)
                    if role:
                        cached[attr] = role
            cls._handlers_cache = cached
        return cached

    @classmethod
    def handler_modes(cls) -> dict[str, str]:
        """Handler name -> ``inline``, ``async`` or ``blocking``."""
        return {name: mode_of(getattr(cls, name)) for name in cls.handlers()}

    # --- what the runtime calls (each delegates to the engine) -------------------------

    def describe(self) -> dict[str, Any]:
        """Name, actions and compensations (compensation -> the action it undoes)."""
        return self._engine.describe()

    def use_definitions(self, lookup: DefinitionLookup) -> None:
        """Where ``ctx.input`` finds a saga's definition (the actor shell gives the
        cluster's catalog)."""
        self._engine.use_definitions(lookup)

    def set_faults(self, faults: dict[str, Fault | dict]) -> None:
        """Replace the injected faults (method name -> :class:`Fault`)."""
        self._engine.set_faults(faults)

    async def handle(self, request: StepRequest | dict) -> StepReply:
        """Apply one action or compensation exactly once per idempotency key."""
        return await self._engine.handle(request)

    async def handle_call(self, request: StepRequest | dict) -> StepReply:
        """:meth:`handle` as a call :meth:`cancel_calls` can stop by its call id."""
        return await self._engine.handle_call(request)

    async def handle_many(self, requests: list[StepRequest | dict]) -> list[StepReply]:
        """Several requests in one call (a host's batch), one reply each."""
        return await self._engine.handle_many(requests)

    def cancel_calls(self, call_ids: list[str]) -> int:
        """Stop the calls with these ids (and refuse any that arrive later)."""
        return self._engine.cancel_calls(call_ids)

    async def fence(self, saga_id: str, step: str) -> dict[str, Any]:
        """Settle an action of unknown outcome: applied (its output), or never will be."""
        return await self._engine.fence(saga_id, step)

    def busy_keys(self) -> list[str]:
        """Idempotency keys being applied right now."""
        return self._engine.busy_keys()

    def ledger(self, saga_id: str | None = None) -> list[dict[str, Any]]:
        """Applied effects (not tombstones), oldest first: what tests and scripts audit."""
        return self._engine.ledger(saga_id)

    def effect_counts(self) -> dict[str, int]:
        """Applied effects by method."""
        return self._engine.effect_counts()

    def blocking_running(self) -> int:
        """Blocking handlers running in their threads right now."""
        return self._engine.blocking_running()

    def busy(self) -> bool:
        """Whether any call is under way (a recycling process waits for none)."""
        return self._engine.busy()


# what a subclass is meant to set or override
OVERRIDABLE = frozenset({"name", "blocking_threads", "setup", "replicas", "num_cpus",
                         "num_gpus", "memory", "resources", "runtime_env", "label_selector"})
# attributes every participant instance holds (a test checks this against a real one), and
# what the Ray actor shell adds
INSTANCE_ATTRIBUTES = frozenset({"participant_name", "store", "store_path", "db", "_engine"})
SHELL_ATTRIBUTES = frozenset({"call", "call_many", "_recycler", "_replica", "replica",
                              "_served", "served", "_count", "_namespace", "_metric",
                              "_tags"})


@functools.cache
def _reserved_names() -> frozenset[str]:
    """What a subclass may not define (a handler, a helper, an attribute): the base class's
    own methods and attributes, its instances', and the actor shell's; any of them would
    silently replace the machinery. Dunders and :data:`OVERRIDABLE` are the subclass's."""
    own = {n for n in dir(Participant) if not (n.startswith("__") and n.endswith("__"))}
    return frozenset((own | INSTANCE_ATTRIBUTES | SHELL_ATTRIBUTES) - OVERRIDABLE)
