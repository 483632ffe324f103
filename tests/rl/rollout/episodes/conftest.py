"""Fixtures of the multi-step episode tests (in-process and server engines alike)."""

from __future__ import annotations

import pytest

from glmkit.models.vlm_processor import VLMProcessor
from glmkit.rl.gym.categories import SmallText
from tests.rl.rollout.episodes.kit import episode_processor


@pytest.fixture(scope="module")
def processor() -> VLMProcessor:
    """The episode tokenizer's processor: 8-pixel patches, at most 16 per image."""
    return episode_processor()


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory) -> SmallText:
    """The small-text reading category, three turns at most."""
    return SmallText(data_dir=str(tmp_path_factory.mktemp("gym")), max_turns=3)
