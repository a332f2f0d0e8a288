"""A test kit for users' sagas: run a definition in-process, without Ray, in milliseconds.

The real state machine (:class:`SagaInstance`) runs against the real participant classes
(each with its own SQLite store in a temporary folder, so idempotency is the real one) or
against fakes, on a fake clock that skips time (retry backoff, step timeouts, deadlines),
with a journal in memory. Faults are injected at a chosen step, kind and attempt:

- ``fail``: the participant answers with a failure (``retryable`` or not), nothing applied;
- ``timeout``: the call reaches the participant (the effect applies) and its reply is lost
  at the step's timeout, as when a slow reply misses it: the outcome is unknown to the saga;
- ``crash="sent"``: the process running the saga dies once the journal says the call was
  sent, before it went out; ``crash="replied"``: it dies after the participant answered,
  before the journal holds the answer. The kit rebuilds the saga from the journal, as Ray
  and the supervisor do, and it carries on;
- ``duplicate``: the request is delivered twice (a resend): the participant applies it once.

A choreography runs in the kit too (its reactions are its steps: inject at a reaction's
name, or at the step a compensating reaction undoes with ``kind="compensation"``); events
from outside are sent with :meth:`SagaTestKit.publish` (before :meth:`SagaTestKit.run`, as
``events=[(type, payload)]``, or from a task beside :meth:`SagaTestKit.arun`).

Child steps run their child sagas (give their definitions as ``children=``) in the same
kit, and their steps take injections too. A wait step takes the signals given to
:meth:`SagaTestKit.run` (``signals={"approval": {...}}``, journaled before the saga starts,
as a signal that comes early is) or, without one, times out at once on the fake clock.

Then assert on the outcome, the journaled history and the participants' own stores::

    from saga_actors.testing import SagaTestKit

    def test_a_declined_card_releases_the_stock():
        kit = SagaTestKit(ORDER_FULFILLMENT, [Inventory, Payment, Shipping])
        kit.inject("process_payment", fail=True)
        rec = kit.run(sample_input(1))
        assert rec.status is SagaStatus.FAILED
        assert rec.compensated == ["reserve_inventory"]
        assert kit.effects("inventory") == {"reserve_inventory": 1, "release_inventory": 1}

No Ray here.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from saga_actors.engine.admission import admit
from saga_actors.engine.catalog import Catalog
from saga_actors.engine.choreography import ChoreographyInstance
from saga_actors.engine.orchestration import SagaInstance
from saga_actors.engine.outside_events import accept_outside_event, find_saga
from saga_actors.engine.signals import accept_signal
from saga_actors.engine.startable import check_handlers, child_sagas, start_record
from saga_actors.errors import SagaUsageError, StepTimeoutError
from saga_actors.journal import open_journal
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga
from saga_actors.model.messages import MAX_PAYLOAD_BYTES, StepReply, StepRequest
from saga_actors.model.records import SagaRecord, Transition
from saga_actors.participant.base import Participant
from saga_actors.participant.handlers import StepContext, action, compensation

MAX_CRASHES = 100  # a saga that keeps crashing past this is a bug in the test
FakeHandler = Callable[[StepContext], dict[str, Any] | None]


class FakeClock:
    """Virtual time: ``sleep`` moves it forward at once and records the wait."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class Injection(BaseModel):
    """A fault at one step: which call it hits, and what happens."""

    model_config = ConfigDict(extra="forbid")

    step: str
    kind: Literal["action", "compensation"] = "action"
    attempt: int | None = Field(None, ge=1, description="None: every attempt.")
    fail: bool = False
    retryable: bool = False
    timeout: bool = False
    crash: Literal["sent", "replied"] | None = None
    duplicate: bool = False

    def hits(self, step: str, kind: str, attempt: int) -> bool:
        return (self.step, self.kind) == (step, kind) and self.attempt in (None, attempt)


class SagaTestKit:
    """One saga definition, its participants (real classes, instances, or fakes), a fake
    clock and an in-memory journal. See the module docstring."""

    def __init__(self, saga: Saga | Choreography,
                 participants: Iterable[type[Participant] | Participant] = (),
                 *, fakes: dict[str, dict[str, FakeHandler]] | None = None,
                 children: Iterable[Saga] = (),
                 store_dir: str | Path | None = None) -> None:
        self.saga = saga
        self._sagas = [saga, *children]
        self.definitions = Catalog()
        for one in self._sagas:
            self.definitions.register(one)
        self.clock = FakeClock()
        self.journal = open_journal(f"memory://kit-{uuid.uuid4().hex}")
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="saga-kit-"))
        self.crashes = 0
        self._injections: list[Injection] = []
        self._fired: set[tuple[int, str, str, int]] = set()  # injection, saga, kind, attempt
        self._running: dict[str, Any] = {}  # saga id -> its instance now (to nudge)
        self.participants: dict[str, Participant] = {}
        for p in participants:
            instance = p if isinstance(p, Participant) else self._start(p)
            self.participants[instance.participant_name] = instance
        for name, handlers in (fakes or {}).items():
            self.participants[name] = self._start(self._fake_class(name, handlers))
        for p in self.participants.values():
            p.use_definitions(self.definitions.lookup)  # for ctx.input, as on Ray
        # the runtime's own checks at start (engine.startable): children, participants
        if isinstance(saga, Saga):
            child_sagas(saga, {c.name: c for c in self._sagas}.get)
        missing = {s.participant for one in self._sagas for s in one.steps
                   if s.participant} - set(self.participants)
        if missing:
            raise SagaUsageError(f"SagaTestKit({saga.name}): no participant named "
                                 f"{sorted(missing)} (give its class, or fakes={{name: ...}})")
        for one in self._sagas:
            for participant in one.participants:
                check_handlers(one, participant, self.participants[participant].describe())
        self._gateway = _KitGateway(self)

    # --- set-up -------------------------------------------------------------------------

    def inject(self, step: str, **fault: Any) -> None:
        """Add a fault at ``step`` (see :class:`Injection`: ``kind``, ``attempt``, ``fail``,
        ``retryable``, ``timeout``, ``crash``, ``duplicate``)."""
        names = list(dict.fromkeys(n for one in self._sagas for s in one.steps
                                   for n in (s.name, getattr(s, "step", s.name))))
        if step not in names:
            raise SagaUsageError(f"inject: {step!r} is not a step of {self.saga.name} or "
                                 f"its children (steps: {', '.join(names)})")
        self._injections.append(Injection(step=step, **fault))

    def participant(self, name: str) -> Participant:
        return self.participants[name]

    # --- running ------------------------------------------------------------------------

    def run(self, payload: Any, saga_id: str | None = None, *,
            signals: dict[str, Any] | None = None,
            events: Iterable[tuple[str, Any]] = ()) -> SagaRecord:
        """Run one saga to its end (crashes included) and return its last record.
        ``signals``: name -> payload, sent once the saga is journaled (before it runs);
        ``events``: (event type, payload) from outside, sent then too (a choreography)."""
        return asyncio.run(self.arun(payload, saga_id, signals=signals, events=events))

    async def arun(self, payload: Any, saga_id: str | None = None, *,
                   signals: dict[str, Any] | None = None,
                   events: Iterable[tuple[str, Any]] = ()) -> SagaRecord:
        """:meth:`run`, from a test that already has an event loop."""
        record, _ = start_record(self.saga, payload, saga_id, None, now=self.clock.now(),
                                 lookup={c.name: c for c in self._sagas}.get)
        saga_id = admit(self.journal, record).saga_id
        for name, data in (signals or {}).items():
            self.signal(saga_id, name, data)
        for event_type, data in events:
            self.publish(event_type, data, saga_id=saga_id)
        admitted = True  # the first instance runs the saga as admitted; later ones resume
        while True:
            instance = self._instance(saga_id, admitted=admitted)
            admitted = False
            self._running[saga_id] = instance
            try:
                return await instance.run()
            except _Crash:
                self.crashes += 1
                if self.crashes > MAX_CRASHES:
                    raise RuntimeError(f"{saga_id} crashed {self.crashes} times") from None

    def signal(self, saga_id: str, name: str, payload: Any, *,
               signal_id: str | None = None) -> str:
        """Send a signal to a journaled saga, checked as :meth:`SagaRuntime.signal` checks
        it (same errors); returns its id."""
        record = self.journal.load(saga_id)
        if record is None:
            raise SagaUsageError(f"signal: no saga {saga_id!r} in this kit")
        definition = self.definitions.lookup(record.saga_type, record.version) or self.saga
        signal_id = signal_id or uuid.uuid4().hex
        accept_signal(self.journal, definition, record, name, payload, signal_id=signal_id,
                      now=self.clock.now(), max_bytes=MAX_PAYLOAD_BYTES)
        return signal_id

    def publish(self, event_type: str, payload: Any, *, saga_id: str | None = None,
                event_id: str | None = None) -> str:
        """Send an event from outside to a choreographed saga (``saga_id``, or found by the
        event's correlation field), checked as :meth:`SagaRuntime.publish` checks it (same
        errors), and wake the saga if it runs; returns the saga id. The same ``event_id``
        sent again is kept once."""
        c = self.saga
        if not isinstance(c, Choreography):
            raise SagaUsageError(f"publish: {c.name} is not a choreography")
        record = (self.journal.load(saga_id) if saga_id is not None
                  else find_saga(self.journal, c, event_type, payload))
        if record is None:
            raise SagaUsageError(f"publish: no saga {saga_id!r} in this kit")
        accept_outside_event(self.journal, c, record, event_type, payload,
                             event_id=event_id or uuid.uuid4().hex, now=self.clock.now(),
                             max_bytes=MAX_PAYLOAD_BYTES)
        running = self._running.get(record.saga_id)
        if running is not None:
            running.nudge()
        return record.saga_id

    # --- what to assert on ----------------------------------------------------------------

    def history(self, saga_id: str) -> list[Transition]:
        """Every journaled transition of the saga, in order."""
        return self.journal.history(saga_id)

    def events(self, saga_id: str) -> list[tuple[str, str | None]]:
        """(event, step) of every journaled transition: the short form of :meth:`history`."""
        return [(getattr(t.event, "value", t.event), t.step) for t in self.history(saga_id)]

    def effects(self, participant: str) -> dict[str, int]:
        """Effects applied by ``participant``, by method, read from its own store."""
        return self.participants[participant].effect_counts()

    # --- inside -------------------------------------------------------------------------

    def _instance(self, saga_id: str, *,
                  admitted: bool = False) -> SagaInstance | ChoreographyInstance:
        options = {"clock": self.clock, "rng": random.Random(0),
                   "fault_point": self._crash_point, "admitted": admitted}
        record = self.journal.load(saga_id)
        if isinstance(self.saga, Choreography):
            return ChoreographyInstance(self.saga, record, self.journal, self._gateway,
                                        **options)
        return SagaInstance(self.saga, record, self.journal, self._gateway,
                            definitions=self.definitions, **options)

    def _start(self, cls: type[Participant]) -> Participant:
        name = cls.name or cls.__name__.lower()
        return cls(store=self.store_dir / f"{name}.sqlite")

    def _fake_class(self, name: str, handlers: dict[str, FakeHandler]) -> type[Participant]:
        """A participant named ``name`` with the saga's methods for it: each runs the
        given function (or answers ``{}``) with the real idempotency store."""
        attrs: dict[str, Any] = {"name": name}
        for one in self._sagas:
            for step in one.steps:
                if step.participant != name:
                    continue
                undoes = getattr(step, "compensates", None)  # a compensating reaction
                if undoes:
                    method = step.handler
                    attrs[method] = compensation(one.reaction(undoes).handler)(
                        _runs(handlers.get(method), method))
                    continue
                attrs[step.action] = action(_runs(handlers.get(step.action), step.action))
                if getattr(step, "compensation", None):
                    attrs[step.compensation] = compensation(step.action)(
                        _runs(handlers.get(step.compensation), step.compensation))
        unknown = set(handlers) - set(attrs)
        if unknown:
            raise SagaUsageError(f"SagaTestKit fakes for {name!r}: {sorted(unknown)} are not "
                                 f"methods of {name} in {self.saga.name}")
        return type(f"Fake{name.title()}", (Participant,), attrs)

    def _match(self, step: str, kind: str, attempt: int, saga_id: str,
               what: str) -> Injection | None:
        """The first injection of kind ``what`` that hits this call and has not fired for
        it yet (each fires once per saga and attempt)."""
        for i, inj in enumerate(self._injections):
            if not inj.hits(step, kind, attempt) or not _is(inj, what):
                continue
            mark = (i, saga_id, kind, attempt)
            if mark not in self._fired:
                self._fired.add(mark)
                return inj
        return None

    def _crash_point(self, saga_id: str, point: str) -> None:
        """``<step>:<kind>:sent|replied``: the journal holds the call's attempt."""
        step, kind, when = point.rsplit(":", 2)
        record = self.journal.load(saga_id)
        branch = record.branches.get(step) if kind == "action" else None
        attempt = branch.attempt if branch is not None else record.attempt
        if self._match(step, kind, attempt, saga_id, when):
            raise _Crash


class _Crash(BaseException):
    """The process running the saga died (caught by the kit, which rebuilds the saga)."""


def _is(inj: Injection, what: str) -> bool:
    return {"fail": inj.fail, "timeout": inj.timeout, "duplicate": inj.duplicate,
            "sent": inj.crash == "sent", "replied": inj.crash == "replied"}[what]


def _runs(fn: FakeHandler | None, method: str) -> Callable[[Any, StepContext], dict]:
    def handler(self: Any, ctx: StepContext) -> dict:
        return (fn(ctx) if fn is not None else None) or {}

    handler.__name__ = method
    return handler


class _KitGateway:
    """Delivers each request to its participant in this process, with the injections."""

    def __init__(self, kit: SagaTestKit) -> None:
        self._kit = kit

    async def call(self, participant: str, request: StepRequest, timeout_s: float) -> StepReply:
        kit = self._kit

        def hit(what: str) -> Injection | None:
            return kit._match(request.step, request.kind, request.attempt, request.saga_id,
                              what)

        failure = hit("fail")
        if failure is not None:
            return StepReply(ok=False, error_type="InjectedFailure",
                             error=f"injected failure of {request.step} ({request.kind}, "
                                   f"attempt {request.attempt})", retryable=failure.retryable)
        target = kit.participants[participant]
        reply = await target.handle(request)
        if hit("duplicate"):
            reply = await target.handle(request)  # a resend: answered from the store
        if hit("timeout"):
            await kit.clock.sleep(timeout_s)
            raise StepTimeoutError(request.saga_id, request.step, request.attempt, timeout_s)
        return reply

    async def fence(self, participant: str, saga_id: str, step: str,
                    timeout_s: float) -> dict[str, Any]:
        return await self._kit.participants[participant].fence(saga_id, step)
