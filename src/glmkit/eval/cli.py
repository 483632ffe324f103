"""``glmkit eval``: run a registered benchmark against a model and print the summary.

Examples::

    glmkit eval --list
    glmkit eval --benchmark demo-ocr --model oracle
    glmkit eval --benchmark demo-vqa --model openai:http://localhost:8000/v1@glm-4.5v --workers 8
    glmkit eval --benchmark refcoco --data refcoco_val.jsonl --model openai:http://host/v1@m --resume
    glmkit eval --benchmark demo-imagemining --model agent:http://host/v1@m --judge-url http://host/v1@judge
    glmkit eval --benchmark demo-imagemining --model agent:http://host/v1@glm-4.5v --tool-format glm45
    glmkit eval --import my_benchmarks --benchmark my-bench --model oracle

Exit status: 0 when the run completed (per-sample failures are reported in the results), 1 when
the run could not start or every sample failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from glmkit.cli_imports import add_import_option, import_modules

DEFAULT_OUT = Path("eval_results")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``glmkit eval``."""
    parser = argparse.ArgumentParser(
        prog="glmkit eval",
        description="Evaluate a model on a registered benchmark; writes samples.jsonl, summary.json, summary.md.",
    )
    parser.add_argument("--benchmark", "-b", help="registered benchmark name (see --list)")
    parser.add_argument(
        "--model",
        "-m",
        help="model spec: oracle | random[:SEED] | constant:TEXT | openai:URL@MODEL | agent:URL@MODEL | "
        "local:module:attr, local:DIR (an exported glmkit VLM; a bare http(s) URL means openai)",
    )
    parser.add_argument("--data", help="benchmark JSONL (overrides the benchmark's default or demo data)")
    parser.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/<benchmark>/<model>)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples")
    parser.add_argument("--resume", action="store_true", help="keep finished samples in --out, run the rest")
    parser.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    parser.add_argument(
        "--judge-url", help="LLM judge endpoint http://host/v1@model (for judge-scored benchmarks)"
    )
    parser.add_argument(
        "--k",
        type=int,
        default=1,
        help="attempts per sample; > 1 reports pass@k (a failed attempt counts as incorrect)",
    )
    parser.add_argument("--workers", type=int, default=1, help="samples evaluated concurrently (API models)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (openai / agent models)")
    parser.add_argument("--max-tokens", type=int, help="max tokens per reply (openai models)")
    parser.add_argument("--max-turns", type=int, help="max model turns per sample (agent models)")
    parser.add_argument(
        "--tool-format",
        metavar="{openai,hermes,glm45}",
        help="how an agent model writes tool calls: openai (native tool_calls, the default), hermes "
        "(<tool_call>{json}</tool_call> in the text), glm45 (GLM XML in the text) or another registered "
        "tool-call format (agent models)",
    )
    add_import_option(parser, "benchmarks, metrics and adapters")
    parser.add_argument("--list", action="store_true", help="list benchmarks and model adapters, then exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="no per-sample progress lines")
    return parser


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


def list_text() -> str:
    """The text printed by ``--list``."""
    from glmkit.eval import BENCHMARKS, MODEL_ADAPTERS, get_benchmark

    lines = ["benchmarks:"]
    names = BENCHMARKS.names()
    width = max(len(n) for n in names)
    for name in names:
        lines.append(f"  {name:<{width}}  {get_benchmark(name).description}")
    lines.append("model adapters: " + ", ".join(MODEL_ADAPTERS.names()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``glmkit eval``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)

    from glmkit.eval import build_adapter, get_benchmark, run_benchmark
    from glmkit.eval.adapters import adapter_options, split_spec
    from glmkit.eval.report import print_summary
    from glmkit.registry import RegistryError

    # Before any name is resolved: the modules may register benchmarks, metrics and adapters.
    error = import_modules(args.imports)
    if error:
        print(f"glmkit eval: {error}", file=sys.stderr)
        return 2
    if args.list:
        print(list_text())
        return 0
    if not args.benchmark or not args.model:
        parser.error("--benchmark and --model are required (or --list)")
    if args.k < 1:
        parser.error(f"--k must be >= 1, got {args.k}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")

    try:
        benchmark = get_benchmark(args.benchmark)
        options = {
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "max_turns": args.max_turns,
        }
        if args.model.startswith("agent:") and args.max_tokens is not None:
            options["max_tokens_per_turn"] = options.pop("max_tokens")
        if args.tool_format is not None:
            from glmkit.agent.formats import TOOL_CALL_FORMATS

            TOOL_CALL_FORMATS.get(args.tool_format)  # an unknown name fails here, with suggestions
            options["tool_format"] = args.tool_format
        adapter = build_adapter(args.model, **options)
        adapter_name = split_spec(args.model)[0]
    except (RegistryError, ValueError, TypeError) as exc:
        print(f"glmkit eval: {exc}", file=sys.stderr)
        return 2

    if args.tool_format is not None and "tool_format" not in adapter_options(adapter_name):
        print(
            f"glmkit eval: note: model adapter {adapter_name!r} takes no tool-call format; --tool-format "
            "is unused (it applies to agent models)"
        )

    if args.judge_url and not benchmark.takes_judge:
        print(
            f"glmkit eval: note: benchmark {args.benchmark!r} has no judge-scored metric (no metric "
            "declares a judge_url in its init_args); --judge-url is unused"
        )
    # The judge endpoint reaches the metrics through their specs, where they declare a judge_url.
    benchmark = benchmark.with_judge(args.judge_url)
    out = Path(args.out) if args.out else DEFAULT_OUT / args.benchmark / _slug(args.model)
    try:
        result = run_benchmark(
            benchmark,
            adapter,
            out,
            data=args.data,
            limit=args.limit,
            resume=args.resume,
            overwrite=args.overwrite,
            num_samples=args.k,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (
        OSError,
        ValueError,
        RuntimeError,
    ) as exc:  # DataError is a ValueError, FileExistsError an OSError
        print(f"glmkit eval: {exc}", file=sys.stderr)
        return 1

    print_summary(result.summary)
    scorer = (result.summary.get("extra") or {}).get("scorer")
    if scorer:  # judge or rule fallback: say which, beside the table, not only in summary.json
        print(f"scorer: {scorer}")
    overall = result.summary["overall"]
    # "errors" counts samples without any score; with --k > 1 a sample whose other attempts were
    # scored is not an error, its failed attempts are counted separately (as incorrect).
    failed_attempts = (
        f", {overall['failed_attempts']} of {overall['attempts']} attempts failed"
        if overall.get("failed_attempts")
        else ""
    )
    print(
        f"results: {result.out_dir} ({overall['n']} samples, {overall['errors']} errors{failed_attempts}, "
        f"{result.skipped} resumed)"
    )
    if overall["n"] and overall["errors"] == overall["n"]:
        print("glmkit eval: every sample failed; see the 'error' field in samples.jsonl", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
