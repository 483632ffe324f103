"""``glmkit eval`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glmkit.eval.cli import main
from tests.helpers.openai_server import ScriptedOpenAIServer, reply


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("demo-ocr", "demo-ui2code", "refcoco", "imagemining", "oracle", "agent"):
        assert name in out


def test_oracle_run_resume_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    base = ["--benchmark", "demo-ocr", "--model", "oracle", "--out", str(out), "-q"]
    args = [*base, "--limit", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "100.0" in printed and "4 samples, 0 errors" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["scores"]["ocr_ned"] == 1.0 and summary["model"]["spec"] == "oracle"
    assert (out / "data" / "demo-ocr.jsonl").is_file()  # demo data built under --out
    assert main(args) == 1  # refuses to clobber results
    assert "--resume" in capsys.readouterr().err
    assert main([*base, "--limit", "6", "--resume"]) == 0
    assert "6 samples, 0 errors, 4 resumed" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0


def test_openai_model_and_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": i, "question": "2+2?", "answer": 4}) + "\n" for i in range(2)))
    answers = iter(["4", "5", "4", "4"])
    with ScriptedOpenAIServer([lambda body: reply(content=next(answers))]) as srv:
        code = main(
            [
                "-b",
                "vqa",
                "-m",
                f"openai:{srv.base_url}@m",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "o"),
                "--k",
                "2",
                "--temperature",
                "0.8",
                "-q",
            ]
        )
        sent = srv.requests
    assert code == 0
    assert len(sent) == 4 and all(b["temperature"] == 0.8 for b in sent)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["overall"]["pass_at_k"] == {"pass@1": pytest.approx(0.75), "pass@2": pytest.approx(1.0)}
    assert "pass@2" in capsys.readouterr().out


def test_every_sample_failing_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": 1, "question": "q", "answer": "a"}) + "\n")
    with ScriptedOpenAIServer([404]) as srv:
        code = main(
            ["-b", "vqa", "-m", srv.base_url, "--data", str(data), "--out", str(tmp_path / "o"), "-q"]
        )
    assert code == 1 and "every sample failed" in capsys.readouterr().err


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-b", "demo-orc", "-m", "oracle"]) == 2
    assert "Did you mean 'demo-ocr'" in capsys.readouterr().err
    assert main(["-b", "demo-ocr", "-m", "nomodel"]) == 2
    assert (
        main(
            [
                "-b",
                "vqa",
                "-m",
                "oracle",
                "--data",
                str(tmp_path / "missing.jsonl"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "benchmark file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--model", "oracle"])
    assert exc.value.code == 2


def test_eval_imports_without_lightning() -> None:
    code = (
        "import sys, glmkit.eval, glmkit.eval.cli; "
        "bad = [m for m in sys.modules if m == 'lightning' or m.startswith(('lightning.', 'pytorch_lightning', "
        "'glmkit.stages'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
