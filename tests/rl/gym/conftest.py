"""Fixtures of the gym tests: every built-in category, built in a temporary data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glmkit.eval.render import chromium_unavailable_reason
from glmkit.rl.gym import TASK_CATEGORIES, TaskCategory

TASK_CATEGORIES.discover()
NAMES = TASK_CATEGORIES.names()
# UI-to-code draws mock screenshots here, so its generator needs no browser; scoring it does.
OPTIONS: dict[str, dict[str, Any]] = {"ui2code": {"screenshots": "mock"}}

needs_chromium = pytest.mark.skipif(
    chromium_unavailable_reason() is not None,
    reason=f"needs headless Chromium: {chromium_unavailable_reason()}",
)


def make(name: str, tmp_path: Path, **kwargs: Any) -> TaskCategory:
    """Category ``name`` writing under ``tmp_path``."""
    return TASK_CATEGORIES.get(name)(**{**OPTIONS.get(name, {}), "data_dir": str(tmp_path), **kwargs})
