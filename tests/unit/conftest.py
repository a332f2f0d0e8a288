"""Unit tests run without Ray: any attempt to start or reach it fails loudly."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("unit tests must not use Ray")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "get_actor", refuse)
