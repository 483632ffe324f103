"""Checkpoint names of MTP weights, as DeepSeek-V3 and GLM-4.x publish them.

DeepSeek-V3 (``README_WEIGHTS.md``; arXiv 2412.19437 section 2.2) stores its MTP module as one more
decoder layer after the main ones: with ``num_hidden_layers = N``, depth ``k`` (1-based) is
``model.layers.{N + k - 1}`` and holds ``enorm``, ``hnorm``, ``eh_proj``, ``shared_head.norm`` and
the block's own weights (``self_attn.*``, ``mlp.*``, ``input_layernorm``, ...) directly under that
prefix, plus copies of the shared ``embed_tokens`` and ``shared_head.head``. GLM-4.5 (layer 92) and
GLM-4.5-Air (layer 46) follow the same layout, which is what vLLM's ``glm4_moe_mtp`` and SGLang's
``glm4_moe_nextn`` loaders map; the config records the depth count as ``num_nextn_predict_layers``.
Here the prefix is the LLM's own decoder path (``model.layers.`` for ``*ForCausalLM``,
``model.language_model.layers.`` for a transformers VLM such as ``Glm4vForConditionalGeneration``).

glmkit's shared ``<|image|>`` vector (GLM-5V-Turbo section 2.2, option 3) has no published name; it
is stored under the first MTP layer as ``{prefix}{N}.image_input.embedding``, so loaders that skip
layers ``>= N`` for the main model skip it too.

:func:`load_language_model` loads the LLM of such a checkpoint without transformers reporting the
MTP layers the config records as unexpected keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from glmkit.models.mtp.heads import MTPHeads

#: the per-depth names of DeepSeek-V3 / GLM MTP layers that are not part of the decoder block
OWN_NAMES: tuple[str, ...] = ("enorm.", "hnorm.", "eh_proj.", "shared_head.norm.")
#: copies of shared weights that published MTP layers carry (never loaded: the LLM's are used)
SHARED_NAMES: tuple[str, ...] = ("embed_tokens.", "shared_head.head.")
CONFIG_DEPTHS_KEY = "num_nextn_predict_layers"
CONFIG_IMAGE_INPUT_KEY = "mtp_image_input"
#: ``from_pretrained`` arguments that say which ``config.json`` it reads
_CONFIG_LOCATION_ARGS = ("cache_dir", "local_files_only", "revision", "subfolder", "token")


def to_checkpoint_key(local: str, num_hidden_layers: int, prefix: str) -> str | None:
    """The published name of an :class:`MTPHeads` state-dict key (``None`` for keys not saved).

    ``layers.{k}.block.{rest}`` and ``layers.{k}.{rest}`` become ``{prefix}{N + k}.{rest}`` (``k``
    0-based here); ``image_input.{rest}`` becomes ``{prefix}{N}.image_input.{rest}``.
    """
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", local)
    if match is not None:
        rest = match.group(2)
        rest = rest[len("block.") :] if rest.startswith("block.") else rest
        return f"{prefix}{num_hidden_layers + int(match.group(1))}.{rest}"
    if local.startswith("image_input."):
        return f"{prefix}{num_hidden_layers}.{local}"
    return None  # e.g. the shared rotary embedding's buffers


def from_checkpoint_key(key: str, num_hidden_layers: int, prefix: str) -> tuple[str | None, str]:
    """``(local key or None, kind)`` for a checkpoint key; kind is ``mtp``, ``shared`` or ``other``.

    ``other`` is anything that is not an MTP layer (``{prefix}{i}`` with ``i >= N``).
    """
    match = re.fullmatch(rf"{re.escape(prefix)}(\d+)\.(.+)", key)
    if match is None or int(match.group(1)) < num_hidden_layers:
        return None, "other"
    depth, rest = int(match.group(1)) - num_hidden_layers, match.group(2)
    if rest.startswith(SHARED_NAMES):
        return None, "shared"
    if rest.startswith("image_input."):
        return (rest, "mtp") if depth == 0 else (None, "other")
    if rest.startswith(OWN_NAMES):
        return f"layers.{depth}.{rest}", "mtp"
    return f"layers.{depth}.block.{rest}", "mtp"


def export_mtp_state_dict(
    heads: MTPHeads,
    prefix: str,
    *,
    embed_weight: Tensor | None = None,
    head_weight: Tensor | None = None,
) -> dict[str, Tensor]:
    """The heads' weights under their published names; with the shared copies if weights are given.

    ``prefix`` is the decoder's layer prefix (``"model.layers."``). ``embed_weight`` and
    ``head_weight`` (the LLM's input embedding and ``lm_head`` weights) are written as
    ``{prefix}{i}.embed_tokens.weight`` and ``{prefix}{i}.shared_head.head.weight`` for every MTP
    layer ``i``, as DeepSeek-V3 publishes them; they are cloned, since safetensors refuses tensors
    that share memory.
    """
    out: dict[str, Tensor] = {}
    for local, tensor in heads.state_dict().items():
        key = to_checkpoint_key(local, heads.num_hidden_layers, prefix)
        if key is not None:
            out[key] = tensor.detach()
    for k in range(heads.depths):
        layer = f"{prefix}{heads.num_hidden_layers + k}."
        if embed_weight is not None:
            out[layer + "embed_tokens.weight"] = embed_weight.detach().clone()
        if head_weight is not None:
            out[layer + "shared_head.head.weight"] = head_weight.detach().clone()
    return out


@dataclass
class MTPLoadReport:
    """What :func:`load_mtp_state_dict` found for each of the heads' weights."""

    source: str
    depths: int
    #: heads' state-dict keys loaded from the checkpoint
    loaded: list[str] = field(default_factory=list)
    #: heads' state-dict keys the checkpoint lacks (left freshly initialised)
    missing: list[str] = field(default_factory=list)
    #: checkpoint keys of MTP layers the heads have no place for (e.g. a deeper checkpoint)
    unexpected: list[str] = field(default_factory=list)
    #: checkpoint copies of the shared embedding / head (skipped: the LLM's own are used)
    shared: list[str] = field(default_factory=list)

    @property
    def fresh_depths(self) -> list[int]:
        """1-based depths of which no weight was loaded (freshly initialised)."""
        return [
            k + 1
            for k in range(self.depths)
            if not any(key.startswith(f"layers.{k}.") for key in self.loaded)
        ]

    def summary(self) -> str:
        """One line for a warning or a log."""
        parts = [f"{self.source}: loaded {len(self.loaded)} MTP tensors"]
        if self.fresh_depths:
            parts.append(f"depths {self.fresh_depths} freshly initialised (no weights in the checkpoint)")
        other_missing = [
            key
            for key in self.missing
            if not any(key.startswith(f"layers.{k - 1}.") for k in self.fresh_depths)
        ]
        if other_missing:
            parts.append(f"missing (freshly initialised): {', '.join(other_missing)}")
        if self.unexpected:
            parts.append(f"ignored: {', '.join(self.unexpected)}")
        return "; ".join(parts)


def load_mtp_state_dict(
    heads: MTPHeads, tensors: dict[str, Tensor], prefix: str, source: str = "<state dict>"
) -> MTPLoadReport:
    """Load published-name MTP weights from ``tensors`` into ``heads``; keys of other layers are skipped.

    A tensor whose shape differs from the heads' raises ``ValueError`` naming the key.
    """
    own = {
        key: value
        for key, value in heads.state_dict().items()
        if to_checkpoint_key(key, heads.num_hidden_layers, prefix)
    }
    report = MTPLoadReport(source=source, depths=heads.depths)
    found: dict[str, Tensor] = {}
    for key, value in tensors.items():
        local, kind = from_checkpoint_key(key, heads.num_hidden_layers, prefix)
        if kind == "shared":
            report.shared.append(key)
        elif kind == "mtp":
            if local not in own:
                report.unexpected.append(key)
                continue
            if tuple(value.shape) != tuple(own[local].shape):
                raise ValueError(
                    f"{source}: {key} has shape {tuple(value.shape)}, but the MTP heads expect "
                    f"{tuple(own[local].shape)} for {local}"
                )
            found[local] = value
    heads.load_state_dict(found, strict=False)
    report.loaded = sorted(found)
    report.missing = sorted(set(own) - set(found))
    return report


def read_checkpoint_tensors(directory: str | Path, keep: Callable[[str], bool]) -> dict[str, Tensor]:
    """Tensors whose key satisfies ``keep`` from a transformers safetensors checkpoint (sharded or not)."""
    from safetensors import safe_open

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({name for key, name in weight_map.items() if keep(key)})
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(
            f"{directory}: no model.safetensors or model.safetensors.index.json (a transformers checkpoint directory)"
        )
    out: dict[str, Tensor] = {}
    for name in files:
        with safe_open(str(directory / name), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
                if keep(key):
                    out[key] = handle.get_tensor(key)
    return out


def mtp_key_pattern(config: Any) -> str | None:
    """A regex matching the checkpoint keys of the MTP layers ``config`` records (None if it records none).

    ``num_nextn_predict_layers = D`` on the text config makes layers ``N .. N + D - 1`` (``N =
    num_hidden_layers``) the MTP layers, under whichever decoder prefix the model uses
    (``model.layers.``, ``model.language_model.layers.``).
    """
    text_config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    depths = int(getattr(text_config, CONFIG_DEPTHS_KEY, None) or 0)
    if depths == 0:
        return None
    first = int(text_config.num_hidden_layers)
    layers = "|".join(str(first + k) for k in range(depths))
    return rf"(?:^|\.)layers\.(?:{layers})\."


@contextmanager
def _ignoring_unexpected(model_class: type, pattern: str) -> Iterator[None]:
    """``model_class._keys_to_ignore_on_load_unexpected`` with ``pattern`` added, while the block runs.

    transformers copies the class attribute onto each instance in ``post_init``, before it loads
    the weights, so the class is the only place a caller can extend it; it is restored afterwards
    (a load of the same class in another thread meanwhile would skip reporting those keys too).
    """
    name = "_keys_to_ignore_on_load_unexpected"
    had_own = name in model_class.__dict__
    own = model_class.__dict__.get(name)
    setattr(model_class, name, [*(getattr(model_class, name, None) or ()), pattern])
    try:
        yield
    finally:
        if had_own:
            setattr(model_class, name, own)
        else:
            delattr(model_class, name)


def load_language_model(path: str | Path, auto_class: Any = None, **kwargs: Any) -> nn.Module:
    """``auto_class.from_pretrained(path, **kwargs)`` (default ``AutoModelForCausalLM``), quiet about MTP layers.

    A checkpoint written by :meth:`MTPCausalLM.save_pretrained` holds the MTP layers beside the LLM;
    the LLM has no place for them, and transformers would list every one as UNEXPECTED in its load
    report. The layers the config records (:func:`mtp_key_pattern`) are declared expected to go
    unused, as transformers' own DeepSeek-V3 and GLM-4.5 classes declare theirs; any other unused
    key is still reported. The weights loaded are the same either way; ``kwargs`` go to
    ``from_pretrained`` (``output_loading_info=True`` returns ``(model, info)`` as there).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    auto_class = AutoModelForCausalLM if auto_class is None else auto_class
    where = {key: value for key, value in kwargs.items() if key in _CONFIG_LOCATION_ARGS}
    config = AutoConfig.from_pretrained(str(path), **where)
    pattern = mtp_key_pattern(config)
    if pattern is None:
        return auto_class.from_pretrained(str(path), **kwargs)
    model_class = auto_class
    if hasattr(auto_class, "_model_mapping"):  # an Auto* class: the model class it picks for the config
        from transformers.models.auto.auto_factory import _get_model_class

        model_class = _get_model_class(config, auto_class._model_mapping)
    with _ignoring_unexpected(model_class, pattern):
        return auto_class.from_pretrained(str(path), **kwargs)


__all__ = [
    "CONFIG_DEPTHS_KEY",
    "CONFIG_IMAGE_INPUT_KEY",
    "MTPLoadReport",
    "export_mtp_state_dict",
    "from_checkpoint_key",
    "load_language_model",
    "load_mtp_state_dict",
    "mtp_key_pattern",
    "read_checkpoint_tensors",
    "to_checkpoint_key",
]
