"""Logging with loguru: no sink on import; :func:`configure_logging` adds one.

Every line carries the saga id, step and attempt from loguru's context
(``logger.contextualize``), bound once per saga and per step, not passed on each call.
"""

from __future__ import annotations

import sys

from loguru import logger

FORMAT = (
    "{time:HH:mm:ss.SSS} {level: <7} {extra[component]} "
    "saga={extra[saga_id]} step={extra[step]} attempt={extra[attempt]} | {message}"
)


def configure_logging(component: str, level: str = "INFO", *, sink=None) -> None:
    """Replace loguru's sinks with one that prints the correlation ids (idempotent)."""
    logger.remove()
    logger.configure(
        extra={"component": component, "saga_id": "-", "step": "-", "attempt": "-"}
    )
    logger.add(sink or sys.stderr, level=level.upper(), format=FORMAT, enqueue=False)
