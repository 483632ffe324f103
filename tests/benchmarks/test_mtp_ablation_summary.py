"""benchmarks/mmtp_ablation.py's summary: final-window means, spread over seeds, paired differences."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mmtp_ablation.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # benchmarks/ is not a package: load the script from its path
    spec = importlib.util.spec_from_file_location("mmtp_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def rows(offsets: dict[str, float], seeds=(0, 1)) -> list[dict]:
    """Four logged steps per run; losses 10 - step + the option's offset + the seed."""
    return [
        {
            "option": o,
            "seed": s,
            "step": step,
            "main_loss": 10 - step + d + s,
            "mtp_loss": 2 * (10 - step + d + s),
        }
        for o, d in offsets.items()
        for s in seeds
        for step in range(1, 5)
    ]


def test_final_losses_average_the_last_window(bench: ModuleType) -> None:
    finals = bench.final_losses(rows({"visual": 0.5, "image_token": 0.0}), window=2)
    # steps 3 and 4 of seed 1, option visual: (10 - 3 + 0.5 + 1 + 10 - 4 + 0.5 + 1) / 2
    assert finals["visual", 1] == {"main_loss": 8.0, "mtp_loss": 16.0}
    assert finals["image_token", 0]["main_loss"] == 6.5


def test_summary_gives_paired_differences_and_the_ordering(bench: ModuleType) -> None:
    text = bench.summary(rows({"visual": 0.5, "mask": 0.25, "image_token": 0.0}), window=2)
    # seeds differ by 1 in absolute loss, but every pair differs by exactly the option's offset
    assert "| visual | 7.5000 ± 0.7071 | 15.0000 ± 1.4142 | +0.5000 ± 0.0000 | +1.0000 ± 0.0000 |" in text
    assert "| image_token | 7.0000 ± 0.7071 | 14.0000 ± 1.4142 | - | - |" in text
    assert "ordering of main_loss (lowest first): image_token < mask < visual" in text


def test_finished_only_summarises_the_complete_seeds(bench: ModuleType, tmp_path: Path) -> None:
    def write(option: str, seed: int, steps: int) -> None:
        logs = (
            tmp_path
            / "work"
            / f"{option}_seed{seed}"
            / "runs"
            / "mmtp_ablation"
            / option
            / "logs"
            / "version_0"
        )
        logs.mkdir(parents=True)
        lines = ["step,train/main_loss,train/mtp_loss,lr"] + [f"{s},{9 - s},{8 - s}," for s in range(steps)]
        lines.insert(2, "1,,,0.001")  # a learning-rate row without losses is skipped
        (logs / "metrics.csv").write_text("\n".join(lines) + "\n")

    for option in bench.OPTIONS:
        write(option, 0, steps=4)
    write("visual", 1, steps=4)  # seed 1 is incomplete: left out of the paired comparison
    write("mask", 2, steps=2)
    argv = ["--steps", "4", "--seeds", "0", "1", "2", "--final-window", "2", "--out", str(tmp_path)]
    rows = bench.main([*argv, "--finished-only"])
    assert {(r["option"], r["seed"]) for r in rows} == {(o, 0) for o in bench.OPTIONS}
    text = (tmp_path / "mmtp_ablation.md").read_text()
    assert "seeds [0]" in text and "| visual | 6.5000 ± nan | 5.5000 ± nan | +0.0000 ± nan |" in text
    assert (tmp_path / "mmtp_ablation.csv").read_text().count("\n") == 1 + 3 * 4
    with pytest.raises(SystemExit):
        bench.main(["--steps", "9", "--seeds", "0", "--out", str(tmp_path), "--finished-only"])
