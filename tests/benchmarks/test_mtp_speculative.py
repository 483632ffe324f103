"""benchmarks/mtp_speculative.py on a tiny random VLM export: every row is lossless and self-consistent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.inference.tiny_vlm import export_tiny_vlm

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mtp_speculative.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # benchmarks/ is not a package: load the script from its path
    spec = importlib.util.spec_from_file_location("mtp_speculative", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rows_on_a_tiny_export(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    directory = export_tiny_vlm(tmp_path / "vlm", depths=2)
    argv = ["--vlm", str(directory), "--ks", "1", "3", "--prompts-per-task", "1", "--repeats", "1"]
    runs = bench.main([*argv, "--tasks", "caption", "video", "text", "--max-new-tokens", "6"])
    assert [run.k for run in runs] == [0, 1, 3]
    base = runs[0]
    assert base.main_forwards == base.new_tokens and base.rounds == 0  # plain decoding: one forward a token
    for run in runs[1:]:
        assert run.sequences == base.sequences  # lossless: the same tokens as plain greedy
        assert run.new_tokens == base.new_tokens
        assert run.acceptance_length == pytest.approx(1 + run.accepted / run.rounds)
        assert run.accepted <= run.drafted <= run.k * run.rounds
        # one prefill, then one verification per round (each ends on the main model's own token)
        assert run.main_forwards <= base.main_forwards
        assert set(run.per_task) == {"caption", "video", "text"}
    out = capsys.readouterr().out
    assert "| plain greedy | 1.000 |" in out and "| MTP k=3 |" in out and "| NO |" not in out


def test_training_recipe_writes_only_under_the_export_directory(bench: ModuleType, tmp_path: Path) -> None:
    edited = bench.quickstart_recipe(tmp_path / "work" / "vlm")
    text = yaml.safe_dump(edited)
    assert bench.RECIPE_RUN_DIR not in text
    export = [c for c in edited["trainer"]["callbacks"] if c["class_path"].endswith("ExportVLM")]
    assert export[0]["init_args"]["dirpath"] == str(tmp_path / "work" / "vlm")
    assert edited["trainer"]["default_root_dir"] == str(tmp_path / "work")


def test_bad_arguments_are_refused(bench: ModuleType) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--vlm", "x", "--ks", "0"])
