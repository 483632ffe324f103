"""``glmkit eval`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    assert len((out / "samples.jsonl").read_text().splitlines()) == 6
    assert main([*args, "--overwrite"]) == 0
    assert "4 samples, 0 errors, 0 resumed" in capsys.readouterr().out
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4  # the old records are gone


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


FLAKY_MODEL = """
import itertools

_calls = itertools.count()


def model(question, images):
    if next(_calls) % 4 == 3:  # a transient endpoint failure on every 4th call
        raise RuntimeError("HTTP 503 (transient)")
    return "EXIT"


def down(question, images):
    raise RuntimeError("HTTP 503 (down)")
"""


def test_k_with_some_failed_attempts_is_not_every_sample_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old code: one failed attempt made the whole sample an error, so 9/12 good attempts still
    # printed "every sample failed" and exited 1.
    (tmp_path / "flaky_cli_model.py").write_text(FLAKY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flaky_cli_model", raising=False)
    base = ["-b", "demo-ocr", "--k", "4", "--limit", "3", "-q"]
    code = main([*base, "-m", "local:flaky_cli_model:model", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 0 and "every sample failed" not in captured.err
    assert "3 samples, 0 errors, 3 of 12 attempts failed" in captured.out
    assert "ned (lower is better)" in captured.out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["overall"]["errors"] == 0 and summary["overall"]["failed_attempts"] == 3
    # With every attempt failing, every sample is an error and the exit status says so.
    code = main([*base, "-m", "local:flaky_cli_model:down", "--out", str(tmp_path / "o2")])
    assert code == 1 and "every sample failed" in capsys.readouterr().err
    sys.modules.pop("flaky_cli_model", None)


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
    assert "sample file not found" in capsys.readouterr().err
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


def test_building_a_benchmarks_metrics_does_not_import_lightning() -> None:
    code = (
        "import sys; from glmkit.eval import get_benchmark; get_benchmark('demo-ocr').build_metrics(); "
        "bad = [m for m in sys.modules if m == 'lightning' or m.startswith(('lightning.', 'glmkit.stages'))]; "
        "print(bad[:5]); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _crop_then_answer(fmt: str, bodies: list[dict[str, Any]]):
    """A policy that crops once, written in ``fmt``'s text syntax, then answers."""
    from glmkit.agent.formats import ToolCall, get_tool_call_format

    call = ToolCall("crop_image", {"image": "img_0", "bbox": [0, 0, 500, 500]})

    def policy(body: dict[str, Any]) -> dict[str, Any]:
        bodies.append(body)
        if len(bodies) == 1:
            return reply(content=get_tool_call_format(fmt).render_call(call))
        return reply(content="<|begin_of_box|>unknown<|end_of_box|>")

    return policy


@pytest.mark.parametrize("fmt", ["hermes", "glm45"])
def test_tool_format_reaches_the_agent_model(tmp_path: Path, fmt: str) -> None:
    bodies: list[dict[str, Any]] = []
    out = tmp_path / "o"
    args = ["-b", "demo-imagemining", "--limit", "1", "--out", str(out), "-q", "--tool-format", fmt]
    with ScriptedOpenAIServer([_crop_then_answer(fmt, bodies)]) as srv:
        assert main([*args, "-m", f"agent:{srv.base_url}@m"]) == 0
    record = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    # The call written as text was parsed and run; the tools went into the prompt, not the API field.
    assert record["tool_calls"] == 1 and record["tools_used"] == ["crop_image"] and record["turns"] == 2
    assert "tools" not in bodies[0]
    assert "<tools>" in bodies[0]["messages"][0]["content"]


def test_tool_format_default_is_native_and_bad_names_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies: list[dict[str, Any]] = []
    with ScriptedOpenAIServer([lambda body: bodies.append(body) or reply(content="x")]) as srv:
        args = ["-b", "demo-imagemining", "--limit", "1", "-q", "-m", f"agent:{srv.base_url}@m"]
        assert main([*args, "--out", str(tmp_path / "o")]) == 0
        assert bodies[0]["tools"]  # openai: the native tools parameter
        assert main([*args, "--out", str(tmp_path / "o2"), "--tool-format", "hermse"]) == 2
        assert "Did you mean 'hermes'" in capsys.readouterr().err
    oracle = ["-b", "demo-ocr", "-m", "oracle", "--limit", "1", "-q", "--out", str(tmp_path / "o3")]
    assert main([*oracle, "--tool-format", "hermes"]) == 0
    assert "--tool-format is unused" in capsys.readouterr().out


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module on sys.path that registers a benchmark, a metric and an adapter; unregistered afterwards."""
    from glmkit.eval import BENCHMARKS, MODEL_ADAPTERS
    from glmkit.eval.metrics import METRICS

    name = f"glmkit_test_plugin_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        "from glmkit.eval import MODEL_ADAPTERS, Benchmark, register_benchmark\n"
        "from glmkit.eval.adapters import ModelAdapter, Prediction\n"
        "from glmkit.eval.metrics import METRICS\n"
        "from glmkit.eval.metrics.vqa import ExactMatchScorer\n\n"
        f"@METRICS.register('{name}_metric')\n"
        "class PluginExactMatch(ExactMatchScorer):\n"
        f"    name = '{name}_metric'\n\n"
        f"register_benchmark(Benchmark('{name}_bench', ['{name}_metric'], description='from a plugin'))\n\n"
        f"@MODEL_ADAPTERS.register('{name}_model')\n"
        "class PluginYes(ModelAdapter):\n"
        f"    name = '{name}_model'\n\n"
        "    def predict(self, request):\n"
        "        return Prediction('yes')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for reg, key in ((BENCHMARKS, "bench"), (METRICS, "metric"), (MODEL_ADAPTERS, "model")):
        reg._entries.pop(f"{name}_{key}", None)
    sys.modules.pop(name, None)


def test_import_registers_benchmarks_metrics_and_adapters(
    tmp_path: Path, plugin_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench, model = f"{plugin_module}_bench", f"{plugin_module}_model"
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": 1, "question": "q", "answer": "yes"}) + "\n")
    assert main(["-b", bench, "-m", model, "--data", str(data), "-q"]) == 2  # not imported: unknown
    assert f"unknown benchmarks {bench!r}" in capsys.readouterr().err
    out = tmp_path / "o"
    args = ["--import", "json", "--import", plugin_module, "-b", bench, "-m", model]
    assert main([*args, "--data", str(data), "--out", str(out), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["scores"] == {f"{plugin_module}_metric": 1.0}
    assert main(["--import", plugin_module, "--list"]) == 0
    assert bench in capsys.readouterr().out


def test_import_failures_name_the_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--import", "no_such_module_xyz", "--list"]) == 2
    assert "--import no_such_module_xyz: no module named 'no_such_module_xyz'" in capsys.readouterr().err
    (tmp_path / "broken_plugin_xyz.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--import", "broken_plugin_xyz", "--list"]) == 2
    assert "--import broken_plugin_xyz: importing it failed: RuntimeError: boom" in capsys.readouterr().err
    sys.modules.pop("broken_plugin_xyz", None)
