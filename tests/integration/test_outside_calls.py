"""Handlers that wait on the outside world, on real Ray actors (acceptance finding 6): an
``async def`` handler is cancelled at its timeout with nothing recorded; a blocking one
runs off the participant's event loop, so other sagas are served meanwhile, and its late
effect is refused."""

from __future__ import annotations

import pytest
import ray
from pydantic import BaseModel

from participants.notifier import Notifier
from saga_actors import RetryPolicy, Saga, SagaStatus, Step
from tests.conftest import poll

pytestmark = pytest.mark.ray


class Contact(BaseModel):
    customer_id: str
    mail_latency_s: float = 0.01
    sms_latency_s: float = 0.01


ONCE = RetryPolicy(max_attempts=1)


def notify_saga(step: str, undo: str, timeout_s: float) -> Saga:
    return Saga(name=f"notify_{step}", input_model=Contact, steps=[
        Step(name=step, participant="notifier", compensation=undo, timeout_s=timeout_s,
             retry=ONCE)])


def test_slow_outside_calls_are_cancelled_or_refused_and_never_freeze_the_participant(
        make_harness):
    # what is tested is the participant; hosted sagas reach it through batched calls, the
    # path where one request's cancel must not touch the others
    placed = make_harness(placement="hosted")
    notifier = placed.deploy(Notifier)
    rt = placed.runtime
    email = notify_saga("send_email", "retract_email", timeout_s=0.5)
    # the SMS step's timeout leaves a slow VM time to hand the call to the participant
    sms = notify_saga("send_sms", "retract_sms", timeout_s=3)
    rt.register(email)
    rt.register(sms)
    # a mail provider that hangs: the async handler is cancelled at its 0.5 s timeout
    hung_mail = placed.start(email.name, {"customer_id": "a", "mail_latency_s": 60})
    # a blocking SMS client that answers after 8 s, long after the step's 3 s timeout
    late_sms = placed.start(sms.name, {"customer_id": "b", "sms_latency_s": 8})
    poll(lambda: f"{late_sms}/send_sms/action" in ray.get(notifier.busy_keys.remote()),
         what="the SMS call on the participant")
    quick = placed.start(email.name, {"customer_id": "c"})

    assert rt.wait(quick, timeout_s=30).status is SagaStatus.COMPLETED
    # served while the blocking call still held its thread
    assert ray.get(notifier.outside_calls.remote())["sms"] == []
    for saga_id in (hung_mail, late_sms):
        rec = rt.wait(saga_id, timeout_s=30)
        assert rec.status is SagaStatus.FAILED and "timed out" in rec.error, rec.error

    # the hung e-mail call was stopped on the participant, not left running
    poll(lambda: ray.get(notifier.busy_keys.remote()) == [], what="cancelled calls gone")
    assert ray.get(notifier.outside_calls.remote())["email"] == [f"{quick}/send_email/action"]
    # the SMS client answers late: its effect is refused, nothing recorded
    poll(lambda: ray.get(notifier.outside_calls.remote())["sms"], timeout_s=40,
         what="the late SMS call to return")
    poll(lambda: ray.get(notifier.blocking_running.remote()) == 0,
         what="the late SMS thread to finish")
    assert ray.get(notifier.messages.remote(hung_mail)) == []
    assert ray.get(notifier.messages.remote(late_sms)) == []
    assert ray.get(notifier.messages.remote(quick)) == [("email", "sent")]
    assert [e["method"] for e in ray.get(notifier.ledger.remote())] == ["send_email"]
