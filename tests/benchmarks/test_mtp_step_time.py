"""benchmarks/mtp_step_time.py: the two stages share the VLM and the batch; the table's ratios."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mtp_step_time.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # benchmarks/ is not a package: load the script from its path
    spec = importlib.util.spec_from_file_location("mtp_step_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_table_ratios_are_against_no_mtp(bench: ModuleType) -> None:
    times = {0: [(0.2, 0.1), (0.4, 0.3), (0.3, 0.2)], 1: [(0.5, 0.3), (0.6, 0.3), (0.7, 0.3)]}
    rows = bench.table(times, tokens=30).splitlines()
    assert rows[2] == "| D=0 | 300.0 | 1.000 | 200.0 | 1.000 | 150 |"
    assert rows[3] == "| D=1 | 600.0 | 2.000 | 300.0 | 1.500 | 100 |"


def test_one_step_of_each_on_the_quickstart_recipe(bench: ModuleType) -> None:
    stages, batch = bench.build(bench.RECIPE, batch_size=2)
    assert stages[0].mtp is None and stages[1].mtp.depths == 1
    assert stages[0].vlm is stages[1].vlm  # the same weights in both
    assert batch["input_ids"].shape[0] == 2
    times = bench.measure(stages, batch, steps=1, warmup=0)
    assert {depth: len(values) for depth, values in times.items()} == {0: 1, 1: 1}
    assert all(wall > 0 and cpu > 0 for values in times.values() for wall, cpu in values)
