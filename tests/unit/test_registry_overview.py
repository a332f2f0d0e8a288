"""The registry's overview (what the console shows first) and its list filters: one answer
for counts by status and by type, starts and ends over time, and STUCK sagas first; asked
again within its TTL, the journal is not asked again."""

from __future__ import annotations

import uuid

from saga_actors.journal import open_journal
from saga_actors.model.records import SagaRecord, first_transition
from saga_actors.model.state import SagaStatus
from saga_actors.services.registry import OVERVIEW_TTL_S, Registry


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _put(journal, saga_id: str, status: SagaStatus, at: float, **more) -> None:
    record = SagaRecord(saga_id=saga_id, saga_type=more.pop("saga_type", "order"),
                        status=status, created_at=at, updated_at=at + 1, **more)
    journal.create(record, first_transition(record))


def test_the_overview_puts_stuck_sagas_first_and_is_computed_once_per_ttl():
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    clock = Clock(10_000.0)
    _put(journal, "old-stuck", SagaStatus.STUCK, 9_000.0, error="refund failed")
    _put(journal, "new-stuck", SagaStatus.STUCK, 9_900.0, error="release failed")
    _put(journal, "done", SagaStatus.COMPLETED, 9_950.0, saga_type="trip")
    registry = Registry(journal, clock=clock)
    ov = registry.overview(window_s=600, bucket_s=60)
    assert [s["saga_id"] for s in ov["stuck"]] == ["new-stuck", "old-stuck"]
    assert ov["stuck"][0]["error"] == "release failed" and ov["stuck_total"] == 2
    assert ov["counts"]["STUCK"] == 2 and ov["counts"]["COMPLETED"] == 1
    assert ov["by_type"] == {"order": {"STUCK": 2}, "trip": {"COMPLETED": 1}}
    assert sum(ov["activity"]["starts"]) == 2 and len(ov["activity"]["starts"]) == 10
    _put(journal, "later", SagaStatus.COMPLETED, 9_990.0)
    assert registry.overview(window_s=600, bucket_s=60) is ov  # within the TTL: as it was
    clock.now += OVERVIEW_TTL_S + 0.1
    assert registry.overview(window_s=600, bucket_s=60)["counts"]["COMPLETED"] == 2


def test_the_list_filters_open_and_finished_sagas_by_version_and_id_prefix():
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    _put(journal, "ord-1", SagaStatus.PENDING, 1.0)
    _put(journal, "ord-2", SagaStatus.PENDING, 2.0, version=2)
    _put(journal, "trp-1", SagaStatus.COMPLETED, 3.0, version=2)
    registry = Registry(journal)
    ids = lambda **kw: [e["saga_id"] for e in registry.list(**kw)]  # noqa: E731
    assert ids(status="PENDING", id_prefix="ord-") == ["ord-2", "ord-1"]  # from memory
    assert ids(status="PENDING", version=2) == ["ord-2"]
    assert ids(version=2) == ["trp-1", "ord-2"]
    assert ids(id_prefix="trp") == ["trp-1"]
    shown = registry.saga_input("ord-1")
    assert shown == {"saga_type": "order", "version": 1, "input": {}}
