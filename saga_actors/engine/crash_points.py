"""Crash points: the process running a saga exits at exact points of its run (fault
injection for tests and demos, from ``RuntimeConfig.crash_points``). No Ray."""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from saga_actors.config import RuntimeConfig
from saga_actors.engine.runner import FaultPoint


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
