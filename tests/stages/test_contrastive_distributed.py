"""The contrastive stage on 2 CPU processes (gloo): one step equals one process over the global
batch, and the stage-2 quickstart recipe runs under DDP with the bidirectional loss and exports."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from glmkit.data.captions import ShapeCaptions
from glmkit.losses.siglip import SigLIPLoss
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text import HFTextTower
from glmkit.stages.contrastive import Contrastive
from tests.helpers.distributed import run_on_ranks
from tests.models.test_text_towers import tiny_bert
from tests.stages.test_export import check_exported_towers

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart" / "stage2_tiny.yaml"
GLOBAL_BATCH = 8
#: the stage normalises the embeddings in float32 (for bf16 runs), so the towers agree to float32 rounding
FLOAT32 = {"rtol": 1e-6, "atol": 1e-6}


def _stage(bert: str, exchange: str) -> Contrastive:
    torch.manual_seed(0)
    stage = Contrastive(
        ImageTower(CogViT.preset("tiny", depth=2), embed_dim=32, pooling="map"),
        HFTextTower(bert, embed_dim=32, max_length=16),
        loss=SigLIPLoss(exchange=exchange, init_logit_bias=-3.0),
    )
    return stage.double().eval()  # eval: no dropout, so every rank computes what one process does


def _global_batch() -> tuple[torch.Tensor, list[str]]:
    source = ShapeCaptions(100, seed=3, min_size=48, max_size=48)
    records = [source.read(i) for i in range(GLOBAL_BATCH)]
    pixels = np.stack([np.asarray(r["image"].convert("RGB")) for r in records])  # B, H, W, 3
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).double() / 255
    return images, [r["caption"]["en"] for r in records]


def _step(stage: Contrastive, images: torch.Tensor, captions: list[str]) -> tuple[float, dict]:
    """One step's loss and gradients. A rank's loss covers its images against every rank's texts;
    the mean of the ranks' gradients is then the gradient of the global batch's loss."""
    stage.zero_grad()
    loss = stage.loss(stage.encode_images({"image": images}), stage.encode_texts(captions)[0])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in stage.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def _rank_step(rank: int, world: int, bert: str) -> dict:
    import torch.distributed as dist

    torch.set_num_threads(1)
    images, captions = _global_batch()
    local = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    out = {}
    for exchange in ("bidirectional", "all_gather"):
        loss, grads = _step(_stage(bert, exchange), images[local], captions[local])
        for grad in grads.values():  # what DDP's reducer does: the mean over the ranks
            dist.all_reduce(grad)
            grad /= world
        out[exchange] = (loss, grads)
    return out


@pytest.mark.distributed
def test_a_two_process_step_equals_one_process_over_the_global_batch(tmp_path: Path) -> None:
    """Each rank's images meet both ranks' texts: under DDP the averaged gradients of every weight
    (image tower, text tower, temperature, bias) equal one process's over all 8 pairs. (A text
    gradient scaled by 1/W, the classic mistake when DDP averages the exchanged gradients again, is
    off by 50%.)"""
    bert = tiny_bert(tmp_path)
    ranks = run_on_ranks(_rank_step, 2, tmp_path / "dist", bert)
    images, captions = _global_batch()
    for exchange in ("bidirectional", "all_gather"):
        loss, grads = _step(_stage(bert, exchange), images, captions)
        assert math.isclose(sum(r[exchange][0] for r in ranks) / 2, loss, rel_tol=1e-6)
        for rank in ranks:
            assert rank[exchange][1].keys() == grads.keys()
            for name, grad in grads.items():
                torch.testing.assert_close(rank[exchange][1][name], grad, **FLOAT32, msg=name)
    assert {"loss.logit_scale", "loss.logit_bias", "text_tower.proj.weight"} <= set(grads)


@pytest.mark.slow
@pytest.mark.distributed
def test_stage2_quickstart_on_two_ddp_processes_with_the_bidirectional_loss(tmp_path: Path) -> None:
    """``glmkit fit`` of the shipped stage-2 quickstart, shortened to 4 steps, on 2 gloo ranks
    (about 60-90 s here): both ranks train with the ring exchange, validation gathers both ranks'
    held-out pairs, and rank 0 exports both towers, equal to the trained weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "glmkit.cli", "fit", "--config", str(QUICKSTART)]
    cmd += ["--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.num_nodes=1"]
    cmd += ["--trainer.max_steps=4", "--trainer.val_check_interval=4", "--trainer.log_every_n_steps=1"]
    cmd += ["--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path / 'run'}"]
    cmd += ["--model.init_args.loss.init_args.exchange=bidirectional"]
    cmd += ["--data.init_args.max_tokens_per_batch=256", "--data.init_args.val_samples=32"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    run_dir = tmp_path / "run"
    (metrics,) = run_dir.glob("logs/version_*/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    assert sorted(int(r["step"]) for r in rows if r.get("train/loss")) == [0, 1, 2, 3]
    assert all(math.isfinite(float(r["train/loss"])) for r in rows if r.get("train/loss"))
    assert any(r.get("val/i2t/R@1") for r in rows)
    check_exported_towers(run_dir, "logs/version_*/checkpoints/*step=4.ckpt")
