"""Parallel groups, child sagas and waits for signals, on Ray, on both placements.

One saga type holds all three; each saga's input says which of its calls fail or are slow,
so the scenarios run side by side. Outcomes are judged from the participant's own ledger.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import ray
from click.testing import CliRunner
from pydantic import BaseModel

from saga_actors import (
    Child,
    Parallel,
    Participant,
    RetryPolicy,
    Saga,
    SagaFinishedError,
    SagaNotFoundError,
    SagaStatus,
    SignalPayloadError,
    Step,
    StepContext,
    StepKind,
    UnknownSignalError,
    Wait,
    action,
    compensation,
)
from saga_actors.ops.cli import main
from tests.conftest import poll

pytestmark = pytest.mark.ray

ONCE = RetryPolicy(max_attempts=1)


class Plan(BaseModel):
    trip: str
    script: dict[str, str] = {}  # method -> "fail" | "slow"


class Approval(BaseModel):
    approved_by: str


class Agency(Participant):
    """Books a, b, c; issues and voids tickets; captures payment. ``script`` in the input
    makes a method fail for good or take its time."""

    name = "agency"

    async def _do(self, ctx: StepContext, method: str) -> dict:
        how = ctx.data.get("script", {}).get(method)
        if how == "fail":
            from saga_actors import NonRetryableError

            raise NonRetryableError(f"{method} refused")
        if how == "slow":
            await asyncio.sleep(2.0)
        return {f"{method}_ref": f"{method}-{ctx.data['trip']}"}

    @action
    async def book_a(self, ctx):
        return await self._do(ctx, "book_a")

    @compensation("book_a")
    def cancel_a(self, ctx):
        return {}

    @action
    async def book_b(self, ctx):
        return await self._do(ctx, "book_b")

    @compensation("book_b")
    def cancel_b(self, ctx):
        return {}

    @action
    async def book_c(self, ctx):
        return await self._do(ctx, "book_c")

    @compensation("book_c")
    def cancel_c(self, ctx):
        return {}

    @action
    async def issue(self, ctx):
        return await self._do(ctx, "issue")

    @compensation("issue")
    def void(self, ctx):
        return {}

    @action
    async def pay(self, ctx):
        return await self._do(ctx, "pay")


def _step(name: str, undo: str | None = None, **kw) -> Step:
    return Step(name=name, participant="agency", compensation=undo, retry=ONCE,
                timeout_s=5, **kw)


TICKET = Saga(name="ticket", input_model=Plan, steps=[_step("issue", "void")])


def travel(name: str, wait_s: float) -> Saga:
    return Saga(name=name, input_model=Plan, steps=[
        Parallel(_step("book_a", "cancel_a"), _step("book_b", "cancel_b"),
                 _step("book_c", "cancel_c"), name="bookings"),
        Child("tickets", saga=TICKET),
        Wait("approval", payload=Approval, timeout_s=wait_s),
        _step("pay", kind=StepKind.PIVOT),
    ])


# the approval wait is long where the test sends a signal (a slow hour of a 2-core VM must
# not time it out first), and short for the saga that is meant to time out
TRAVEL = travel("travel", wait_s=120)
TRAVEL_BRIEF = travel("travel_brief", wait_s=4)
BOOKINGS = {"book_a", "book_b", "book_c"}
UNDONE = {"cancel_a", "cancel_b", "cancel_c"}


def applied(agency, saga_id: str) -> list[str]:
    """Methods applied for ``saga_id`` and its child, from the participant's own store."""
    return sorted(e["method"] for sid in (saga_id, f"{saga_id}/tickets")
                  for e in ray.get(agency.ledger.remote(sid)))


def waiting(rt, saga_id: str) -> bool:
    return rt.get(saga_id).current_step == "approval"


def test_groups_children_and_signals_end_right_and_apply_each_effect_once(placed):
    rt = placed.runtime
    agency = placed.deploy(Agency)
    rt.register(TICKET)
    rt.register(TRAVEL)
    rt.register(TRAVEL_BRIEF)
    start = {name: placed.start("travel_brief" if name == "timeout" else "travel",
                                {"trip": name, "script": script},
                                saga_id=f"{name}-{placed.placement}")
             for name, script in [("ok", {}), ("early", {}), ("timeout", {}),
                                  ("group_fail", {"book_b": "fail", "book_a": "slow"}),
                                  ("child_fail", {"issue": "fail"}),
                                  ("undo", {"pay": "fail"}), ("crash", {"book_c": "slow"})]}
    ids = start.values()
    # a signal sent before the saga reaches its wait is kept; sent twice, it is taken once
    for _ in range(2):
        rt.signal(start["early"], "approval", {"approved_by": "ann"}, signal_id="early-1")
    # the runner dies while a step of the group is in flight: the saga resumes per branch
    poll(lambda: rt.get(start["crash"]).branches.get("book_c", None) is not None
         and rt.get(start["crash"]).branches["book_c"].in_flight, timeout_s=30)
    placed.kill_runner(start["crash"], no_restart=False)
    for name in ("ok", "undo", "crash"):
        poll(lambda n=name: waiting(rt, start[n]), timeout_s=60)
        rt.signal(start[name], "approval", {"approved_by": "bob"})
    records = {r.saga_id.split("-")[0]: r for r in rt.wait_all(ids, timeout_s=90)}

    ok = records["ok"]
    assert ok.status is SagaStatus.COMPLETED and ok.data["approved_by"] == "bob"
    assert ok.data["issue_ref"] == "issue-ok"  # the child's output, merged
    assert set(ok.completed[:3]) == BOOKINGS
    assert applied(agency, start["ok"]) == sorted([*BOOKINGS, "issue", "pay"])
    child = rt.get(f"{start['ok']}/tickets")
    assert child.status is SagaStatus.COMPLETED and child.parent_id == start["ok"]

    early = records["early"]
    assert early.status is SagaStatus.COMPLETED and len(early.signals_taken) == 1
    assert early.data["approved_by"] == "ann"

    timeout = records["timeout"]  # no signal: the wait times out, everything is undone
    assert timeout.status is SagaStatus.FAILED and "no 'approval' signal" in timeout.error
    assert timeout.compensated[0] == "tickets" and set(timeout.compensated[1:]) == BOOKINGS
    assert applied(agency, start["timeout"]) == sorted([*BOOKINGS, *UNDONE, "issue", "void"])
    assert rt.get(f"{start['timeout']}/tickets").status is SagaStatus.FAILED

    group = records["group_fail"]  # b fails while a is in flight: a is stopped and undone
    assert group.status is SagaStatus.FAILED and "book_b refused" in group.error
    assert "book_b" not in group.compensated and {"book_a", "book_c"} <= set(group.compensated)
    effects = applied(agency, start["group_fail"])
    assert "book_b" not in effects and "issue" not in effects
    for branch, undo in (("book_a", "cancel_a"), ("book_c", "cancel_c")):
        # a branch stopped before it applied is fenced; one that applied is undone once
        assert effects.count(branch) <= 1 and effects.count(undo) == effects.count(branch)

    failed_child = records["child_fail"]  # the child failed: the step fails, the parent undoes
    assert failed_child.status is SagaStatus.FAILED
    assert "child saga child_fail" in failed_child.error
    assert set(failed_child.compensated) == BOOKINGS
    assert applied(agency, start["child_fail"]) == sorted([*BOOKINGS, *UNDONE])

    undo = records["undo"]  # the pivot fails: the completed child is undone by its parent
    assert undo.status is SagaStatus.FAILED and undo.compensated[0] == "tickets"
    undone = rt.get(f"{start['undo']}/tickets")
    assert undone.status is SagaStatus.FAILED and undone.compensated == ["issue"]
    assert undone.error.startswith(f"undone: its parent {start['undo']}")
    assert applied(agency, start["undo"]) == sorted([*BOOKINGS, *UNDONE, "issue", "void"])

    crash = records["crash"]
    assert crash.status is SagaStatus.COMPLETED
    assert applied(agency, start["crash"]) == sorted([*BOOKINGS, "issue", "pay"])
    assert any(t.event == "resumed" for t in rt.history(start["crash"]))


def test_bad_signals_are_refused_and_the_cli_sends_one(make_harness):
    h = make_harness(placement="hosted")
    rt = h.runtime
    h.deploy(Agency)
    rt.register(TICKET)
    rt.register(TRAVEL)
    saga_id = h.start("travel", {"trip": "cli"}, saga_id="cli-1")
    with pytest.raises(SagaNotFoundError):
        rt.signal("nobody", "approval", {"approved_by": "x"})
    with pytest.raises(UnknownSignalError, match="signals it takes: approval"):
        rt.signal(saga_id, "refund", {})
    with pytest.raises(SignalPayloadError, match="approved_by"):
        rt.signal(saga_id, "approval", {"approver": "x"})
    assert rt.journal.signals(saga_id) == []  # nothing was journaled
    poll(lambda: waiting(rt, saga_id), timeout_s=60)
    out = cli("signal", saga_id, "approval", "--data", json.dumps({"approved_by": "cli"}),
              "--namespace", rt.config.namespace)
    assert out.exit_code == 0, out.output
    assert "signal 'approval' sent" in out.output
    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED and rec.data["approved_by"] == "cli"
    with pytest.raises(SagaFinishedError):
        rt.signal(saga_id, "approval", {"approved_by": "late"})
    shown = cli("show", saga_id, "--json", "--namespace", rt.config.namespace)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["children"] == [f"{saga_id}/tickets"]


def cli(*args: str):
    return CliRunner().invoke(main, list(args), env={
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "token"})
