"""Versions side by side, without Ray: a saga is pinned to its definition's shape; a
changed definition under an old version is refused, naming what changed; a saga whose
version (or shape) is not to be found waits instead of running on the wrong steps."""

from __future__ import annotations

import uuid

import pytest
from pydantic import BaseModel

from saga_actors import SagaDefinitionError, Step
from saga_actors.engine.admission import admit, build_record
from saga_actors.engine.catalog import Catalog
from saga_actors.journal import open_journal
from saga_actors.model.shapes import shape_changes, shape_hash
from tests.sagas import ORDER


def test_the_shape_is_the_steps_and_models_not_the_tunables():
    tuned = ORDER.model_copy(update={"deadline_s": 5.0, "steps": tuple(
        s.model_copy(update={"timeout_s": 1.0}) for s in ORDER.steps)})
    assert shape_hash(tuned) == shape_hash(ORDER) and shape_changes(ORDER, tuned) == []
    fewer = ORDER.model_copy(update={"steps": ORDER.steps[:2]})
    assert shape_changes(ORDER, fewer) == ["steps removed: ['ship']"]
    swapped = ORDER.model_copy(update={"steps": (
        ORDER.steps[0], ORDER.steps[1].model_copy(update={"compensation": "refund_all"}),
        ORDER.steps[2])})
    assert shape_changes(ORDER, swapped) == ["step 'pay' compensation: 'refund' -> 'refund_all'"]

    class Wider(BaseModel):
        order_id: str
        amount: int
        currency: str = "EUR"

    wider = ORDER.model_copy(update={"input_model": Wider})
    assert shape_changes(ORDER, wider) == ["input model: fields added ['currency']"]
    assert len({shape_hash(x) for x in (ORDER, fewer, swapped, wider)}) == 4


def test_a_started_saga_is_pinned_to_its_shape():
    record = build_record(ORDER, "s1", {"order_id": "o", "amount": 1}, now=0.0)
    assert (record.saga_type, record.version, record.shape) == ("order", 1, shape_hash(ORDER))


def test_a_changed_definition_under_a_known_version_is_refused_naming_the_change():
    catalog = Catalog()
    catalog.register(ORDER)
    catalog.register(ORDER.model_copy())  # the same shape again: fine
    changed = ORDER.model_copy(update={"steps": (*ORDER.steps, Step(
        name="invoice", participant="billing", compensation="void"))})
    with pytest.raises(SagaDefinitionError, match=r"version 1 is already registered with "
                       r"another shape \(steps added: \['invoice'\]\).*as version 2"):
        catalog.register(changed)
    catalog.register(changed.model_copy(update={"version": 2}))  # side by side
    assert catalog.lookup("order", 1) == ORDER
    assert catalog.lookup("order", 2).version == 2


def test_a_saga_whose_shape_is_not_registered_is_not_run_on_another():
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    record = admit(journal, build_record(ORDER, "s1", {"order_id": "o", "amount": 1}, now=0.0))
    catalog = Catalog()
    other = ORDER.model_copy(update={"steps": ORDER.steps[:2]})  # v1, another shape
    catalog.register(other)
    assert catalog.resolve(record) is None  # waits (the supervisor journals why), not run
    fresh = Catalog()
    fresh.register(ORDER)
    assert fresh.resolve(record) is ORDER
    old = record.model_copy(update={"shape": None})  # journaled before shapes: by version
    assert catalog.resolve(old) is other


def test_a_changed_choreography_names_the_reaction_and_what_changed():
    from examples.order_choreography import ORDER_CHOREOGRAPHY as CHO

    def with_reactions(*reactions):
        return CHO.model_copy(update={"reactions": reactions})

    pay = CHO.reaction("process_payment")
    moved = with_reactions(*(r.model_copy(update={"participant": "billing"})
                             if r is pay else r for r in CHO.reactions))
    assert shape_changes(CHO, moved) == [
        "reaction 'process_payment' participant: 'payment' -> 'billing'"]
    refund = CHO.reaction("refund_after_shipment_failed")
    other = with_reactions(*(r.model_copy(update={"handler": "refund_all", "failure": None})
                             if r is refund else r for r in CHO.reactions))
    assert shape_changes(CHO, other) == [
        "reaction 'refund_after_shipment_failed' handler: 'refund_payment' -> 'refund_all'"]
    fewer = with_reactions(*(r for r in CHO.reactions if r.name != "release_after_refund"))
    assert shape_changes(CHO, fewer) == ["reactions removed: ['release_after_refund']"]
    catalog = Catalog()
    catalog.register(CHO)
    with pytest.raises(SagaDefinitionError, match=r"another shape \(reaction 'process_payment' "
                       r"participant: 'payment' -> 'billing'\)"):
        catalog.register(moved)
