"""Unit tests must not start Ray: an autouse fixture makes ``ray.init`` raise."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = sys.modules.get("ray")
    if ray is not None:

        def refuse(*args: object, **kwargs: object) -> None:
            raise RuntimeError("unit tests may not start Ray")

        monkeypatch.setattr(ray, "init", refuse)
