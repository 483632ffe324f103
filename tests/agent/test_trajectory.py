"""The JSONL trajectory log: events survive any model text and read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from glmkit.agent.trajectory import TrajectoryLogger, read_trajectory

# What httpx's response.json() gives for an emoji cut in half by max_tokens: a lone surrogate.
LONE_SURROGATE = json.loads('"EXIT \\ud83d"')


def test_lone_surrogate_in_model_text_is_logged_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    logger = TrajectoryLogger(path, run_id="r1")
    message = {"role": "assistant", "content": LONE_SURROGATE}
    logger.log("assistant", turn=1, message=message)  # UnicodeEncodeError before the fix
    logger.log("stop", reason="answer", final_answer=LONE_SURROGATE + " \u00e9\u4e2d")
    raw = path.read_bytes().decode("utf-8")  # valid UTF-8
    assert "\\ud83d" in raw and "\u00e9\u4e2d" in raw  # escaped surrogate, readable non-ASCII
    events = read_trajectory(path, run_id="r1")
    assert [e["event"] for e in events] == ["assistant", "stop"]
    assert events[0]["message"]["content"] == LONE_SURROGATE
    assert events[1]["final_answer"] == LONE_SURROGATE + " \u00e9\u4e2d"
