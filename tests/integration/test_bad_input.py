"""Bad input, on the real path: a clear, specific error, nothing half-written in the
journal, and the runtime goes on serving other sagas."""

from __future__ import annotations

import re
import sqlite3
import threading
from typing import Any

import pytest
import ray
from pydantic import BaseModel

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import (
    InvalidSagaIdError,
    Participant,
    RetryPolicy,
    Saga,
    SagaConflictError,
    SagaInputError,
    SagaStatus,
    Step,
    StepContext,
    StepKind,
    UnknownParticipantError,
    UnknownPlacementError,
    UnknownSagaTypeError,
    action,
    compensation,
)

pytestmark = pytest.mark.ray


def journal_rows(harness) -> tuple[list, list]:
    """Every saga row and every transition row, read straight from the SQLite file."""
    path = harness.runtime.config.journal.split("://", 1)[1][1:]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (db.execute("SELECT * FROM sagas ORDER BY saga_id").fetchall(),
                db.execute("SELECT * FROM transitions ORDER BY saga_id, seq").fetchall())
    finally:
        db.close()


class Note(BaseModel):
    order_id: str
    note: Any = None


class Unpicklable(Exception):
    """Holds a lock: it cannot cross a process boundary as itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class Misbehaving(Participant):
    """Applies its effect, then answers badly in one of several ways."""

    name = "misbehaving"

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS done (saga_id TEXT, what TEXT)")

    def _did(self, ctx: StepContext, what: str) -> None:
        ctx.db.execute("INSERT INTO done VALUES (?, ?)", (ctx.saga_id, what))

    @action
    def wrong_shape(self, ctx: StepContext) -> dict:
        self._did(ctx, "wrong_shape")
        return {"tracking": 12345}  # the step's output model wants a shipment_id

    @compensation("wrong_shape")
    def undo_wrong_shape(self, ctx: StepContext) -> dict:
        self._did(ctx, "undo_wrong_shape")
        return {}

    @action
    def raise_unpicklable(self, ctx: StepContext) -> dict:
        self._did(ctx, "raise_unpicklable")
        raise Unpicklable("the warehouse API is down")

    @action
    def not_json(self, ctx: StepContext) -> dict:
        self._did(ctx, "not_json")
        return {"when": object()}

    @action
    def not_a_number(self, ctx: StepContext) -> dict:
        self._did(ctx, "not_a_number")
        return {"rate": float("nan")}

    @action
    def huge(self, ctx: StepContext) -> dict:
        self._did(ctx, "huge")
        return {"blob": "x" * 2_000_000}

    def done(self, saga_id: str) -> list[str]:
        """What was applied (and kept) for ``saga_id``."""
        return [r[0] for r in self.db.execute(
            "SELECT what FROM done WHERE saga_id=? ORDER BY rowid", (saga_id,))]


class ShipmentOut(BaseModel):
    shipment_id: str


def misbehaving_saga(method: str, **step: Any) -> Saga:
    undo = {"compensation": "undo_wrong_shape"} if method == "wrong_shape" else {
        "kind": StepKind.PIVOT}  # nothing to undo: failing, it still compensates what came before
    return Saga(name=f"bad_{method}", input_model=ORDER_FULFILLMENT.input_model, steps=[
        ORDER_FULFILLMENT.steps[0],
        Step(name=method, participant="misbehaving",
             retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01), **undo, **step),
    ])


def deploy_order(harness):
    harness.runtime.register(ORDER_FULFILLMENT)
    return harness.deploy_many(PARTICIPANTS)


def test_bad_starts_are_refused_and_change_nothing(harness):
    deploy_order(harness)
    rt = harness.runtime
    kept = rt.start("order_fulfillment", sample_input(1), saga_id="order-kept")
    assert rt.wait(kept, timeout_s=60).status is SagaStatus.COMPLETED
    before = journal_rows(harness)
    notes = Saga(name="notes", input_model=Note, steps=[
        Step(name="reserve_inventory", participant="inventory",
             compensation="release_inventory")])
    ghost = Saga(name="ghost", input_model=ORDER_FULFILLMENT.input_model, steps=[
        Step(name="haunt", participant="nobody", compensation="unhaunt")])
    typo = Saga(name="typo", input_model=ORDER_FULFILLMENT.input_model, steps=[
        Step(name="reserve_inventroy", participant="inventory", compensation="release_inventory")])
    backwards = Saga(name="backwards", input_model=ORDER_FULFILLMENT.input_model, steps=[
        Step(name="release_inventory", participant="inventory",
             compensation="reserve_inventory")])
    good = sample_input(2)
    bad: list[tuple[type[Exception], str, Any, Any, dict]] = [
        (UnknownSagaTypeError, "'nope'.*order_fulfillment", "nope", good, {}),
        (SagaInputError, "amount_cents.*greater than 0", "order_fulfillment",
         {**good, "amount_cents": -5}, {}),
        (SagaInputError, "amount_cents.*valid integer", "order_fulfillment",
         {**good, "amount_cents": "lots"}, {}),
        (SagaInputError, "items.*required", "order_fulfillment",
         {k: v for k, v in good.items() if k != "items"}, {}),
        (SagaInputError, "valid dictionary", "order_fulfillment", ["not", "a", "dict"], {}),
        (SagaInputError, r"2\.0 MiB as JSON, over the limit of 1\.0 MiB", "order_fulfillment",
         {**good, "address": "x" * 2_100_000}, {}),
        (SagaInputError, "not JSON-serializable", notes, {"order_id": "o", "note": object()}, {}),
        (SagaInputError, "NaN and Infinity have no JSON form", notes,
         {"order_id": "o", "note": float("nan")}, {}),
        (SagaInputError, "NaN and Infinity have no JSON form", notes,
         {"order_id": "o", "note": [1.0, float("-inf")]}, {}),
        (InvalidSagaIdError, "saga_id 'has/slash'", "order_fulfillment", good,
         {"saga_id": "has/slash"}),
        (InvalidSagaIdError, "saga_id ''", "order_fulfillment", good, {"saga_id": ""}),
        (UnknownPlacementError, "placement 'elsewhere'", "order_fulfillment", good,
         {"placement": "elsewhere"}),
        (UnknownParticipantError, "'nobody'.*no actor 'participant:nobody'", ghost, good, {}),
        (UnknownParticipantError, "method 'reserve_inventroy'", typo, good, {}),
        (UnknownParticipantError, "'release_inventory': it is a compensation, but 'backwards' "
         "calls it as an action", backwards, good, {}),
        (SagaConflictError, "different input", "order_fulfillment", good,
         {"saga_id": "order-kept"}),
        (SagaConflictError, "it is a 'order_fulfillment' saga", notes, {"order_id": "o"},
         {"saga_id": "order-kept"}),
    ]
    for error, message, saga_type, payload, kwargs in bad:
        with pytest.raises(error, match=message):
            rt.start(saga_type, payload, **kwargs)
        assert journal_rows(harness) == before, f"{error.__name__} {message} wrote something"
    # still serving
    again = rt.start("order_fulfillment", good)
    assert rt.wait(again, timeout_s=60).status is SagaStatus.COMPLETED


BAD_ANSWERS = [
    ("wrong_shape", {"output_model": ShipmentOut}, "invalid output: shipment_id: Field required"),
    ("raise_unpicklable", {}, "Unpicklable: the warehouse API is down"),
    ("not_json", {}, "not_json returned output that is not JSON-serializable.* not applied"),
    ("not_a_number", {}, "not_a_number returned output that is not JSON: NaN and Infinity"),
    ("huge", {},
     r"huge returned output that is 1\.9 MiB as JSON, over the limit of 1\.0 MiB; its effect"),
]


def test_a_participant_answering_badly_fails_its_saga_cleanly(placed):
    actors = deploy_order(placed)
    bad = placed.deploy(Misbehaving)
    started = {}
    for method, step, error in BAD_ANSWERS:
        saga = misbehaving_saga(method, **step)
        placed.runtime.register(saga)
        started[placed.start(saga.name, sample_input(3))] = (method, error)
    for saga_id, (method, error) in started.items():
        rec = placed.runtime.wait(saga_id, timeout_s=60)
        assert rec.status is SagaStatus.FAILED
        assert rec.error is not None and re.search(error, rec.error), rec.error
        # the reservation was released; the misbehaving effect was undone or never kept
        assert rec.compensated[-1] == "reserve_inventory"
        kept = ray.get(bad.done.remote(saga_id))
        assert kept in ([], [method, f"undo_{method}"]), kept
        inventory = [e["method"] for e in ray.get(actors["inventory"].ledger.remote(saga_id))]
        assert inventory == ["reserve_inventory", "release_inventory"]
    # the same participant and runtime still serve a good saga
    ok = placed.start("order_fulfillment", sample_input(4))
    assert placed.runtime.wait(ok, timeout_s=60).status is SagaStatus.COMPLETED
