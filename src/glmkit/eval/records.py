"""The result files of a run: ``samples.jsonl`` (one record per sample) and the summary files.

A record holds the sample's ``id``, ``category`` and ``source`` tags, the question, answer and
prompt, the prediction, per-metric ``scores``, metric failures, latency, tool calls and turns; for
several attempts per sample, every attempt and the pass@k counts (see
:func:`glmkit.eval.runner.evaluate_sample`). Records are appended and flushed as each sample
finishes; when a file holds an id twice, the last record wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records of a ``samples.jsonl`` by id (last one wins); an unreadable line (a write cut short
    by a crash) is skipped."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "id" in rec:
                records[str(rec["id"])] = rec
    return records


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (anything else becomes its ``str``)."""
    return json.loads(json.dumps(value, default=str))
