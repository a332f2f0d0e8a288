"""Tools for testing and demonstrating sagas: :class:`SagaTestKit` (run a saga in-process,
without Ray, on a fake clock, with faults injected: see :mod:`saga_actors.testkit`), and
injected participant faults for a running cluster. No Ray.

``rt.deploy(Payment, faults={"charge": Fault(delay_s=2)})`` makes the participant wait 2 s
before applying ``charge`` (the wait is cancellable, like a slow outside call);
``Fault(fail=True)`` makes it fail instead (``retryable=True``: a failure worth retrying),
``times=N`` only the first N calls. A replay of a recorded effect is never delayed nor
failed. ``participant.set_faults({...})`` replaces them on a running participant. The
process running a saga can also be made to exit at exact points: see
``RuntimeConfig.crash_points``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # a participant imports Fault from here: keep it light
    from saga_actors.config import RuntimeConfig
    from saga_actors.journaled import FaultPoint


class Fault(BaseModel):
    """An injected fault for demos and tests: delay a method and/or make it fail."""

    model_config = ConfigDict(extra="forbid")

    delay_s: float = Field(0.0, ge=0, description="Pause before the effect (cancellable).")
    fail: bool = Field(False, description="Raise instead of applying the effect.")
    retryable: bool = Field(False, description="Whether the injected failure is retryable.")
    times: int | None = Field(None, ge=1, description="Fault the first N calls only.")


def crash_points(config: RuntimeConfig) -> FaultPoint | None:
    """Exit this process once per saga at each of ``config.crash_points`` (fault
    injection); a marker file in the data folder makes the restarted process go on."""
    points = set(config.crash_points)
    if not points:
        return None

    def at(saga_id: str, point: str) -> None:
        marker = Path(config.data_dir) / "crashed" / f"{saga_id}@{point}"
        if point not in points or marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        logger.bind(saga_id=saga_id).warning("crash point {}: exiting", point)
        os._exit(1)

    return at


_KIT = ("FakeClock", "Injection", "SagaTestKit")


def __getattr__(name: str) -> object:
    """The test kit, imported on first use (it needs the participant base class, which
    imports :class:`Fault` from here)."""
    if name in _KIT:
        from saga_actors import testkit

        return getattr(testkit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Fault", "FakeClock", "Injection", "SagaTestKit", "crash_points"]  # noqa: F822
