"""Whether a saga can start: the one place the runtime and the test kit ask, every error
it raises (no Ray)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from saga_actors import (
    Child,
    InvalidSagaIdError,
    Saga,
    SagaDefinitionError,
    SagaInputError,
    Step,
    StepKind,
    UnknownParticipantError,
    UnknownPlacementError,
)
from saga_actors.engine.startable import check_handlers, start_record
from saga_actors.testing import SagaTestKit
from tests.sagas import ORDER


class Input(BaseModel):
    order_id: str
    amount: int


PIVOTED = Saga(name="pivoted", input_model=Input, steps=[
    Step(name="capture", participant="pay", kind=StepKind.PIVOT)])
PARENT = Saga(name="parent", input_model=Input, steps=[
    Step(name="hold", participant="pay", compensation="release"),
    Child("run_child", saga=PIVOTED)])   # compensatable: the child has a pivot
OK = {"order_id": "o", "amount": 1}


def start(saga, payload=OK, saga_id=None, placement=None, known=()):
    return start_record(saga, payload, saga_id, placement, now=0.0,
                        lookup={s.name: s for s in known}.get)


def test_a_saga_that_can_start_gets_its_record_and_its_childrens_versions():
    record, children = start(ORDER, saga_id="o-1")
    assert (record.saga_id, record.placement, children) == ("o-1", "dedicated", {})
    assert start(ORDER)[0].saga_id.startswith("order-")
    safe = Saga(name="safe", input_model=Input, steps=[Step(name="x", participant="pay",
                                                          compensation="undo_x")])
    parent = Saga(name="parent2", input_model=Input, steps=[Child("run_safe", saga=safe)])
    record, children = start(parent, known=[safe])
    assert children == {"safe": safe} and record.child_versions == {"safe": 1}


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"saga_id": "has space"}, InvalidSagaIdError, "has space"),
    ({"saga_id": ""}, InvalidSagaIdError, "saga_id ''"),
    ({"placement": "somewhere"}, UnknownPlacementError, "somewhere"),
    ({"payload": {"order_id": "o"}}, SagaInputError, "amount"),
])
def test_every_bad_start_is_a_specific_error(kwargs, error, message):
    with pytest.raises(error, match=message):
        start(ORDER, **kwargs)


def test_child_steps_are_checked_known_orchestrated_acyclic_and_undoable():
    with pytest.raises(SagaDefinitionError, match="runs child saga 'pivoted', which is not "
                       "registered"):
        start(PARENT)
    with pytest.raises(SagaDefinitionError, match="has a pivot and cannot always be undone"):
        start(PARENT, known=[PIVOTED])
    loop_a = Saga(name="a", input_model=Input, steps=[Child("to_b", saga=ORDER)])
    loop_b = Saga(name="order", input_model=Input, steps=[Child("to_a", saga=loop_a)])
    with pytest.raises(SagaDefinitionError, match="which runs it in turn"):
        start(loop_a, known=[loop_b, loop_a])


def test_participants_must_have_each_method_in_its_role():
    with pytest.raises(UnknownParticipantError, match="method 'refund'"):
        check_handlers(ORDER, "pay", {"actions": ["pay"], "compensations": {}})
    check_handlers(ORDER, "inv", {"actions": ["reserve"], "compensations": {"release":
                                                                          "reserve"}})
    swapped = {"actions": ["release"], "compensations": {"reserve": "release"}}
    with pytest.raises(UnknownParticipantError, match="it is an action, but 'order' calls "
                       "it as a compensation"):
        check_handlers(ORDER, "inv", swapped)


def test_the_test_kit_refuses_what_the_runtime_refuses():
    with pytest.raises(SagaDefinitionError, match="which is not registered"):
        SagaTestKit(PARENT, fakes={"pay": {}})
    with pytest.raises(SagaDefinitionError, match="has a pivot and cannot always be undone"):
        SagaTestKit(PARENT, fakes={"pay": {}}, children=[PIVOTED])
    kit = SagaTestKit(ORDER, fakes={"inv": {}, "pay": {}, "ship": {}})
    with pytest.raises(InvalidSagaIdError):
        kit.run(OK, saga_id="has space")
