"""What users call: :class:`SagaRuntime` (:mod:`.client`) starts sagas and answers where
each one stands; it reaches Ray through :mod:`saga_actors.ray`, keeps its definitions in
:mod:`.definitions`, and answers operators through :mod:`.queries`."""

from __future__ import annotations

from saga_actors.ray.cluster import check_reachable, connect, pin_to_local_files
from saga_actors.runtime.client import SagaRuntime
from saga_actors.runtime.definitions import definition_ref

__all__ = ["SagaRuntime", "check_reachable", "connect", "definition_ref", "pin_to_local_files"]
