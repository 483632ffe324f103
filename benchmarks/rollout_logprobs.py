"""In-process rollout: recording each sampled token's log-probability step by step vs ``output_logits``.

:class:`~glmkit.rl.rollout.inprocess.InProcessEngine` needs the log-probability of every token it
samples (the RL loss's "old" log-probs). Asking transformers' ``generate`` for ``output_logits=True``
keeps every step's ``[B, V]`` logits until the end (``B x N x V`` floats), then takes their
log-softmax; the engine instead records each step's value as it goes (one ``[B, V]`` step alive).
Both modes run the same batch (``--rows`` samples of counting prompts, exactly ``--tokens`` new tokens
each, temperature 1) on the VLM quickstart's model, each in its own process so that the peak RSS
is its own; the baseline is ``output_logits``, measured in the same run::

    python benchmarks/rollout_logprobs.py --policy runs/quickstart_vlm/vlm --tokens 24 48 --rows 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run_mode(args: argparse.Namespace) -> dict[str, float]:
    """One mode in this process: seconds per batch (best of ``--repeats``) and peak RSS."""
    from glmkit.rl.gym.categories import Counting
    from glmkit.rl.rollout import RolloutRequest, SamplingParams
    from glmkit.rl.rollout.inprocess import ChatPrompts, InProcessEngine, model_inputs
    from glmkit.stages.multitask_rl import load_policy

    torch.set_num_threads(args.threads)
    policy, processor = load_policy(args.policy)
    policy.to(args.device).eval()
    category = Counting(seed=0, data_dir=tempfile.mkdtemp(prefix="rollout-logprobs-"))
    samples = [category.sample(i) for i in range(args.rows)]
    n = args.mode_tokens
    params = SamplingParams(max_new_tokens=n, temperature=1.0, extra={"min_new_tokens": n})
    times = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        if args.mode == "glmkit":
            engine = InProcessEngine(
                policy, processor, max_batch_size=args.rows, seed=repeat, in_thread=False
            )

            async def rollout(engine: InProcessEngine = engine) -> list:
                futures = [
                    engine.submit(RolloutRequest(f"p{i}", 0, s, params)) for i, s in enumerate(samples)
                ]
                done = await asyncio.gather(*futures)
                await engine.close()
                return done

            asyncio.run(rollout())
        else:  # transformers' output_logits, the log-softmax of every step at the end
            prompts = ChatPrompts(processor)
            batch = {k: v.to(args.device) for k, v in prompts.encode(samples).items()}
            torch.manual_seed(repeat)
            with torch.no_grad():
                out = policy.generate(
                    **model_inputs(batch),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=True,
                    top_k=0,
                    pad_token_id=prompts.pad_token_id,
                    return_dict_in_generate=True,
                    output_logits=True,
                )
                new = out.sequences[:, batch["input_ids"].shape[1] :]
                logits = torch.stack(out.logits, dim=1).float()
                torch.log_softmax(logits, dim=-1).gather(-1, new[..., None])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):  # the logits live on the GPU there
        peak = torch.cuda.max_memory_allocated() / 2**20
    return {"seconds": min(times), "peak_rss_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy",
        default="runs/quickstart_vlm/vlm",
        help="a save_pretrained VLM (default: the VLM quickstart's export, which glmkit fit --config "
        "recipes/quickstart/vlm_tiny.yaml writes)",
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (peak: RSS on the CPU, allocated memory on CUDA)"
    )
    parser.add_argument("--mode", choices=["glmkit", "output_logits"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode-tokens", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (Path(args.policy) / "vlm_config.json").is_file():
        parser.error(
            f"--policy {args.policy}: no VLM there; run glmkit fit --config recipes/quickstart/vlm_tiny.yaml"
        )
    if args.mode is not None:
        print(json.dumps(run_mode(args)))
        return
    print(
        f"| new tokens | rows | mode | seconds (best of {args.repeats}) | x output_logits | peak RSS (MiB) | x output_logits |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in args.tokens:
        results = {}
        for mode in ("output_logits", "glmkit"):
            command = [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--mode-tokens",
                str(n),
                "--rows",
                str(args.rows),
            ]
            command += [
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--policy",
                args.policy,
                "--device",
                args.device,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        base = results["output_logits"]
        for mode, r in results.items():
            print(
                f"| {n} | {args.rows} | {mode} | {r['seconds']:.2f} | {r['seconds'] / base['seconds']:.2f} "
                f"| {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / base['peak_rss_mib']:.2f} |"
            )


if __name__ == "__main__":
    main()
