"""A pydantic validation error said in one line, for the errors users see. No Ray."""

from __future__ import annotations

from pydantic import ValidationError


def validation_brief(exc: ValidationError) -> str:
    """``field.sub: message; other: message`` (``input`` for the whole value)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
    )
