"""Tools for testing and demonstrating sagas. No Ray.

:class:`SagaTestKit` runs a saga in-process, without Ray, on a fake clock, with faults
injected (:mod:`saga_actors.testing.testkit`). :class:`Fault` is injected into a running
participant (``rt.deploy(Payment, faults={"charge": Fault(delay_s=2)})``), and
:func:`crash_points` makes the process running a saga exit at exact points (see
``RuntimeConfig.crash_points``).
"""

from __future__ import annotations

from saga_actors.engine.crash_points import crash_points
from saga_actors.participant.faults import Fault
from saga_actors.testing.testkit import FakeClock, Injection, SagaTestKit

__all__ = ["Fault", "FakeClock", "Injection", "SagaTestKit", "crash_points"]
