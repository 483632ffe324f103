"""Exports as config.json + model.safetensors: round trips, hub path, and errors naming the path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from glmkit.models import zoo
from glmkit.models.encoders import CogViT
from glmkit.models.zoo import CONFIG_NAME, WEIGHTS_NAME, load_pretrained, save_pretrained


class TinyLinear(nn.Module):
    """A second exportable class (importable as tests.models.test_zoo.TinyLinear)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[CogViT, Path]:
    torch.manual_seed(0)
    model = CogViT.preset("tiny", depth=2).eval()
    directory = model.save_pretrained(tmp_path_factory.mktemp("zoo") / "cogvit-tiny")
    return model, directory


def test_round_trip_gives_equal_outputs(export: tuple[CogViT, Path]) -> None:
    model, directory = export
    loaded = CogViT.from_pretrained(directory).eval()
    x = torch.randn(2, 3, 32, 48)
    torch.testing.assert_close(loaded(x).patch_tokens, model(x).patch_tokens, atol=0, rtol=0)
    assert loaded.init_args == model.init_args
    generic = load_pretrained(str(directory))
    assert type(generic) is CogViT


def test_config_json_contents(export: tuple[CogViT, Path]) -> None:
    model, directory = export
    config = json.loads((directory / CONFIG_NAME).read_text())
    assert config["class_path"] == "glmkit.models.encoders.cogvit.CogViT"
    # every resolved argument, in its JSON form (tuples become lists)
    assert (
        config["init_args"] == json.loads(json.dumps(model.init_args)) and config["init_args"]["depth"] == 2
    )
    assert config["glmkit_version"] == zoo.glmkit_version() != ""
    assert (directory / WEIGHTS_NAME).is_file()


def test_overrides_that_keep_shapes(export: tuple[CogViT, Path]) -> None:
    _, directory = export
    loaded = CogViT.from_pretrained(directory, grad_checkpointing=True, attn_backend="xformers")
    assert loaded.grad_checkpointing and loaded.blocks[0].attn.attn_backend == "xformers"
    with pytest.raises(RuntimeError, match=rf"{WEIGHTS_NAME} does not match"):
        CogViT.from_pretrained(directory, depth=3)  # changes parameters: the strict load says so


def test_generic_save_and_load_of_another_module(tmp_path: Path) -> None:
    module = TinyLinear(width=3)
    save_pretrained(module, tmp_path / "lin", {"width": 3})
    loaded = load_pretrained(tmp_path / "lin")
    assert isinstance(loaded, TinyLinear)
    torch.testing.assert_close(loaded.fc.weight, module.fc.weight)


def test_missing_directory_config_and_weights(tmp_path: Path, export: tuple[CogViT, Path]) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        CogViT.from_pretrained(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=str(empty / CONFIG_NAME)):
        CogViT.from_pretrained(empty)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / CONFIG_NAME).write_text((export[1] / CONFIG_NAME).read_text())
    with pytest.raises(FileNotFoundError, match=str(no_weights / WEIGHTS_NAME)):
        CogViT.from_pretrained(no_weights)
    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=str(a_file)):
        load_pretrained(a_file)


def test_class_mismatch_names_path_and_classes(tmp_path: Path) -> None:
    save_pretrained(TinyLinear(), tmp_path / "lin", {"width": 4})
    with pytest.raises(
        TypeError, match=rf"{tmp_path / 'lin' / CONFIG_NAME} holds a tests.models.test_zoo.TinyLinear"
    ):
        CogViT.from_pretrained(tmp_path / "lin")


def test_bad_config_files(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.mkdir()
    (path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=f"{path / CONFIG_NAME} is not valid JSON"):
        load_pretrained(path)
    (path / CONFIG_NAME).write_text(json.dumps({"init_args": {}}))
    with pytest.raises(ValueError, match="key 'class_path' must be a string"):
        load_pretrained(path)
    (path / CONFIG_NAME).write_text(json.dumps({"class_path": "os.path.join", "init_args": {}}))
    with pytest.raises(TypeError, match="is not a torch.nn.Module subclass"):
        load_pretrained(path)
    (path / CONFIG_NAME).write_text(json.dumps({"class_path": "glmkit.nothing.Here", "init_args": {}}))
    with pytest.raises(ImportError, match="cannot import class_path 'glmkit.nothing.Here'"):
        load_pretrained(path)


def test_save_rejects_unexportable_things(tmp_path: Path) -> None:
    class Local(nn.Module):
        pass

    with pytest.raises(ValueError, match="not importable"):
        save_pretrained(Local(), tmp_path / "x", {})
    with pytest.raises(TypeError, match=r"init_args\['width'\]"):
        save_pretrained(TinyLinear(), tmp_path / "y", {"width": object()})


def test_hub_id_goes_through_snapshot_download(
    monkeypatch: pytest.MonkeyPatch, export: tuple[CogViT, Path]
) -> None:
    import huggingface_hub

    model, directory = export
    calls = []

    def fake_snapshot_download(
        repo_id: str, revision: str | None = None, allow_patterns: list[str] | None = None
    ) -> str:
        calls.append((repo_id, revision, allow_patterns))
        return str(directory)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = CogViT.from_pretrained("zai-org/cogvit-tiny")
    assert calls == [("zai-org/cogvit-tiny", None, [CONFIG_NAME, WEIGHTS_NAME])]
    torch.testing.assert_close(loaded.cls_token, model.cls_token)
    load_pretrained("hf-hub:zai-org/cogvit-tiny", revision="v1")
    assert calls[-1][:2] == ("zai-org/cogvit-tiny", "v1")

    def failing(*args: object, **kwargs: object) -> str:
        raise ConnectionError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(OSError, match="could not download pretrained export 'zai-org/other'.*offline"):
        load_pretrained("zai-org/other")
    # a mistyped local run folder looks like a hub id: the error says it is not on disk either
    with pytest.raises(
        OSError, match=r"from the Hugging Face hub \(no local directory /.*runs/encodr exists"
    ):
        load_pretrained("runs/encodr")
