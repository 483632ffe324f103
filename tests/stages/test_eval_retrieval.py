"""``glmkit eval-retrieval``: zero-shot evaluation of an exported pair of stage-2 towers."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("transformers")

import lightning.pytorch as pl

from glmkit.cli import main
from glmkit.config import instantiate
from glmkit.losses.siglip import SigLIPLoss
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text import HFTextTower
from glmkit.stages.contrastive import Contrastive, PairsInOrder
from tests.models.test_text_towers import tiny_bert

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart" / "stage2_tiny.yaml"
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Contrastive, Path]:
    """A small untrained stage and its two towers exported under one directory."""
    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    stage = Contrastive(
        ImageTower(CogViT.preset("tiny", depth=1), embed_dim=16),
        HFTextTower(tiny_bert(root), embed_dim=16, max_length=16),
        loss=SigLIPLoss(),
        class_names=COLOURS,
        class_templates=["{} shapes", "{}"],
    )
    with torch.no_grad():  # a trained temperature and bias, not the initial ones
        stage.loss.logit_scale.fill_(1.5)
        stage.loss.logit_bias.fill_(-2.0)
    stage.image_tower.save_pretrained(root / "image_tower")
    stage.text_tower.save_pretrained(root / "text_tower")
    stage.loss.save_pretrained(root / "loss")
    return stage, root


def _held_out_recipe(path: Path) -> Path:
    """The quickstart recipe with its held-out procedural pairs cut to 24 at 24 patches."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    data = recipe["data"]["init_args"]
    data.update(val_samples=24, val_seq_len=24, max_tokens_per_batch=96, row_len=48)
    data["val_naflex"]["init_args"]["max_num_patches"] = 24
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_exported_towers_score_as_the_stage_validates_them(towers, tmp_path: Path) -> None:
    """On the quickstart's held-out pairs the command reports exactly what the training stage's
    validation computes in memory (retrieval both ways, zero-shot over the recipe's colours)."""
    stage, root = towers
    recipe = _held_out_recipe(tmp_path / "recipe.yaml")
    out = tmp_path / "metrics.json"
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--config", str(recipe), "--accelerator", "cpu", "--out", str(out)]
    assert main(argv) == 0
    got = json.loads(out.read_text())

    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    datamodule = instantiate(yaml.safe_load(recipe.read_text())["data"])
    trainer.validate(stage, datamodule=datamodule, verbose=False)
    want = {
        k[4:]: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith("val/") and k != "val/loss"
    }
    assert set(got) == {"i2t/R@1", "i2t/R@5", "t2i/R@1", "t2i/R@5", "zero_shot/top1"}
    assert got == pytest.approx(want, abs=1e-6)


def test_the_exported_loss_gives_the_stages_validation_loss(towers, tmp_path: Path) -> None:
    """``--loss``: the pair's exported temperature and bias; the reported loss is the stage's."""
    stage, root = towers
    recipe = _held_out_recipe(tmp_path / "recipe.yaml")
    out = tmp_path / "metrics.json"
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--config", str(recipe), "--accelerator", "cpu", "--out", str(out)]
    assert main([*argv, "--loss", str(root / "loss")]) == 0
    got = json.loads(out.read_text())
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(stage, datamodule=instantiate(yaml.safe_load(recipe.read_text())["data"]), verbose=False)
    assert got["loss"] == pytest.approx(float(trainer.callback_metrics["val/loss"]), abs=1e-6)
    loaded = SigLIPLoss.from_pretrained(root / "loss")
    assert loaded.logit_scale.item() == 1.5 and loaded.logit_bias.item() == -2.0


def test_a_manifest_of_pairs(towers, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--data``: pairs from a JSONL manifest (image and {language: caption}); with K = the number
    of distinct captions every image finds its caption (R@K = 1); the table names every metric."""
    from PIL import Image

    _, root = towers
    lines = []
    for i, (colour, size) in enumerate([("red", (40, 60)), ("blue", (64, 32)), ("green", (48, 48))]):
        Image.new("RGB", size, colour).save(tmp_path / f"{i}.png")
        lines.append({"image": f"{i}.png", "caption": {"en": f"a {colour} picture", "zh": f"{i}"}})
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--data", str(tmp_path / "pairs.jsonl"), "--languages", "en"]
    argv += ["--ks", "1", "3", "--max-num-patches", "16", "--accelerator", "cpu"]
    assert main(argv) == 0
    table = dict(line.split() for line in capsys.readouterr().out.strip().splitlines()[-4:])
    assert float(table["i2t/R@3"]) == float(table["t2i/R@3"]) == 1.0
    assert set(table) == {"i2t/R@1", "i2t/R@3", "t2i/R@1", "t2i/R@3"}


def test_a_manifest_with_another_caption_field(towers, tmp_path: Path, capsys) -> None:
    """``--caption-key text``: the field is read and the stage scores it (it looked for ``caption``)."""
    from PIL import Image

    _, root = towers
    lines = []
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.png")
        lines.append({"image": f"{i}.png", "text": f"a {colour} picture"})
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--data", str(tmp_path / "pairs.jsonl"), "--caption-key", "text"]
    argv += ["--ks", "2", "--max-num-patches", "16", "--accelerator", "cpu"]
    assert main(argv) == 0
    table = dict(line.split() for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert float(table["i2t/R@2"]) == float(table["t2i/R@2"]) == 1.0


def test_a_recipe_without_held_out_pairs_is_refused(towers, tmp_path: Path, capsys) -> None:
    _, root = towers
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["data"]["init_args"]["val_samples"] = 0
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--config", str(tmp_path / "r.yaml")]
    assert main(argv) == 2
    assert "val_samples is 0; give --samples N" in capsys.readouterr().err


def _manifest(folder: Path) -> tuple[Path, list[str]]:
    """Six lines: four good pairs of distinct images and captions, a line without a caption (3) and
    a line whose image is missing (5). Returns the manifest and the good lines' captions in order."""
    from PIL import Image

    lines: list[dict[str, Any]] = []
    good = []
    specs = [("red", (40, 60)), ("blue", (64, 32)), (None, (16, 16)), ("green", (48, 48))]
    specs += [("missing", (16, 16)), ("purple", (24, 56))]
    for i, (colour, size) in enumerate(specs):
        Image.new("RGB", size, colour if colour not in (None, "missing") else "black").save(
            folder / f"{i}.png"
        )
        if colour is None:
            lines.append({"image": f"{i}.png", "caption": ""})
        elif colour == "missing":
            lines.append({"image": "no-such-image.png", "caption": "never read"})
        else:
            lines.append({"image": f"{i}.png", "caption": f"a {colour} picture"})
            good.append(f"a {colour} picture")
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path, good


def _spy_on_validation(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], list[int], Any, Any]]:
    """Record the captions, record indices and image and text embeddings of every batch the stage
    validates."""
    seen: list[tuple[list[str], list[int], Any, Any]] = []
    step = Contrastive.validation_step

    def spy(self: Contrastive, batch: dict[str, Any], batch_idx: int) -> None:
        step(self, batch, batch_idx)
        images, texts = self._val["image"][-1], self._val["text"][-1]
        seen.append((list(batch["caption"]), batch["index"].tolist(), images, texts))

    monkeypatch.setattr(Contrastive, "validation_step", spy)
    return seen


def test_a_manifest_is_evaluated_line_by_line(towers, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--data``: each good line once, in order (no draws with replacement); the two bad lines are
    skipped, counted and named; the figures are those of the good pairs embedded one by one."""
    stage, root = towers
    manifest, captions = _manifest(tmp_path)
    seen = _spy_on_validation(monkeypatch)
    out = tmp_path / "metrics.json"
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--data", str(manifest), "--ks", "1", "2", "--max-num-patches", "16"]
    argv += ["--batch-size", "3", "--accelerator", "cpu", "--out", str(out)]
    assert main(argv) == 0

    assert [c for batch, *_ in seen for c in batch] == captions  # every good line once, in order
    assert [i for _, batch, *_ in seen for i in batch] == [0, 1, 3, 5]  # record indices of the good lines
    assert [len(batch) for batch, *_ in seen] == [3, 1]
    err = capsys.readouterr().err
    assert f"4 pairs from {manifest}, 2 lines skipped" in err
    assert f"{manifest}:3: field 'caption' is missing or empty" in err  # named by manifest line
    assert "no-such-image.png" in err and f"{manifest}:5" in err

    # the reference: the good pairs embedded one at a time, in manifest order
    from PIL import Image

    from glmkit.data.collate import PadCollate
    from glmkit.data.naflex import NaFlexResize
    from glmkit.eval.retrieval import retrieval_metrics

    resize = NaFlexResize(patch_size=stage.image_tower.encoder.patch_size, max_num_patches=16)
    collate = PadCollate(("patches", "coords"), multiple=16)
    stage.eval()  # as validation runs it: no stochastic depth
    with torch.no_grad():
        images = torch.cat(
            [
                stage.encode_images(
                    collate([resize({"image": Image.open(tmp_path / f"{i}.png").convert("RGB")})])
                )
                for i in (0, 1, 3, 5)
            ]
        )
        texts = stage.encode_texts(captions)[0]
    stage.train()
    got_images = torch.cat([emb for *_, emb, _ in seen])
    got_texts = torch.cat([emb for *_, emb in seen])
    assert got_images.shape == got_texts.shape == (4, 16)  # N image and N text embeddings
    torch.testing.assert_close(got_images, images, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_texts, texts, rtol=0, atol=1e-5)
    groups = torch.tensor([zlib.crc32(c.encode()) for c in captions])
    want = retrieval_metrics(got_images, got_texts, (1, 2), groups)
    assert json.loads(out.read_text()) == pytest.approx(want, abs=1e-6)


def test_limit_reads_the_first_lines_and_samples_is_for_recipes(
    towers, tmp_path: Path, capsys, monkeypatch
) -> None:
    _, root = towers
    manifest, captions = _manifest(tmp_path)
    seen = _spy_on_validation(monkeypatch)
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [
        str(root / "text_tower"),
        "--data",
        str(manifest),
        "--max-num-patches",
        "16",
        "--accelerator",
        "cpu",
    ]
    assert main([*argv, "--limit", "3"]) == 0  # lines 1-3: two pairs, the caption-less line skipped
    assert [c for batch, *_ in seen for c in batch] == captions[:2]
    assert "2 pairs from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--samples", "8"])
    assert exc.value.code == 2
    assert "--data reads every line once, use --limit N" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "no-such.png", "caption": "x"}\n')
    argv[argv.index(str(manifest))] = str(bad)
    assert main(argv) == 2  # nothing to evaluate: an error, with the line named
    err = capsys.readouterr().err
    assert f"0 pairs from {bad}, 1 line skipped" in err and f"no line of {bad} could be read" in err


def test_pairs_in_order_survive_an_unreadable_manifest(tmp_path: Path) -> None:
    """Every line bad: no batch, each line named, nothing raised (the command reports it)."""
    from glmkit.data.captions import CaptionedSource
    from glmkit.data.naflex import NaFlexResize
    from glmkit.data.sources import JsonlManifest

    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"image": "a.png", "caption": "x"}\n{"image": "b.png", "caption": "y"}\n')
    pairs = PairsInOrder(
        CaptionedSource(JsonlManifest(str(manifest), fields=["caption"])), NaFlexResize(16, 16)
    )
    assert list(pairs) == [] and pairs.pairs == 0
    assert [s.split(" (")[0] for s in pairs.skipped] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]


def test_a_manifest_with_class_labels_scores_zero_shot(towers, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--data`` with ``--class-names``: each line's class index reaches zero-shot classification,
    in line order, under any field name; a label that is no class index is refused, naming the line;
    a line without one is skipped and named; ``--label-key`` without ``--class-names`` is refused."""
    from PIL import Image

    import glmkit.stages.contrastive as contrastive

    _, root = towers
    colours = ["red", "blue", "green", "red", "blue"]
    for i, colour in enumerate(colours):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.png")
    scored: list[list[int]] = []
    real = contrastive.zero_shot_accuracy

    def recording(logits, labels):  # what the stage scores: the labels it gathered, in order
        scored.append(labels.tolist())
        return real(logits, labels)

    monkeypatch.setattr(contrastive, "zero_shot_accuracy", recording)

    def run(labels: list, key: str = "label", classes: tuple = ("red", "blue")) -> tuple[int, dict, str]:
        lines = [
            {"image": f"{i}.png", "caption": f"a {c} picture", **({key: y} if y is not None else {})}
            for i, (c, y) in enumerate(zip(colours, labels, strict=True))
        ]
        (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
        argv += [str(root / "text_tower"), "--data", str(tmp_path / "pairs.jsonl"), "--label-key", key]
        argv += ["--class-names", *classes, "--ks", "1", "--max-num-patches", "16", "--accelerator", "cpu"]
        code = main(argv)
        out, err = capsys.readouterr()
        table = dict(line.split() for line in out.strip().splitlines() if "/" in line.split()[0])
        return code, {k: float(v) for k, v in table.items()}, err

    code, table, _ = run([0, 1, 2, 0, 1], classes=("red", "blue", "green"))
    assert code == 0 and "zero_shot/top1" in table and scored[-1] == [0, 1, 2, 0, 1]
    code, _, _ = run([1, 0, 1, 1, 0], key="class")  # another field name
    assert code == 0 and scored[-1] == [1, 0, 1, 1, 0]
    code, _, err = run([0, 1, 2, 0, 1])
    assert code == 2 and "pairs.jsonl:3: 'label' is 2" in err and "0 to 1" in err
    code, _, err = run([0, None, 1, 0, 1])
    assert code == 0 and scored[-1] == [0, 1, 0, 1]  # the line without a label is left out
    assert "1 line skipped" in err and "pairs.jsonl:2: field 'label' is missing" in err
    argv = [
        "eval-retrieval",
        "--image-tower",
        "x",
        "--text-tower",
        "y",
        "--data",
        "z",
        "--label-key",
        "class",
    ]
    with pytest.raises(SystemExit):
        main(argv)
    assert "--label-key names the class field" in capsys.readouterr().err
