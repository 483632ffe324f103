"""Building transformers-backed teachers: from a hub id or directory, or from a seeded config dict.

Loading goes through ``from_pretrained`` with nothing but the source and the dtype, so the usual
Hugging Face environment (``HF_HUB_OFFLINE``, ``HF_HOME``, tokens) decides how files are found.
A frozen teacher with silently re-initialised weights would distil noise, so a checkpoint that
lacks weights the teacher uses is an error, not a warning.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glmkit.models.teachers.base import seeded

# Weights a teacher never uses: the pooling head (SigLIP MAP head) and DINOv3's MIM mask token.
_UNUSED_WEIGHTS = ("head.", "mask_token")


def pick_source(
    teacher: str, model: str | None, config: Mapping[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """Check that exactly one of ``model`` and ``config`` is given; return (model, config)."""
    if (model is None) == (config is None):
        what = "both" if model is not None else "neither"
        raise ValueError(
            f"{teacher}: give exactly one of model= (hub id or local directory) or config= (a config dict "
            f"for a randomly initialised teacher; {teacher}.preset(name) gives a named one); got {what}"
        )
    return model, dict(config) if config is not None else None


def resolve_source(teacher: str, source: str) -> str:
    """A local directory as an absolute path, or a hub id unchanged; a missing path is an error."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ValueError(
            f"{teacher}: {source!r} is a file; pass the directory that holds config.json and the weights"
        )
    # a hub id is "name" or "org/name"; anything else can only be a path
    looks_local = source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
    if looks_local:
        raise FileNotFoundError(f"{teacher}: the checkpoint directory {source!r} does not exist")
    return source


def load_config(teacher: str, source: str) -> Any:
    """``AutoConfig`` of ``source`` with an error that names it."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        where = "directory" if Path(source).is_dir() else "hub id"
        raise OSError(
            f"{teacher}: cannot read a transformers config from the {where} {source!r} ({exc}). "
            "A hub id needs network access or, with HF_HUB_OFFLINE=1, a copy in the local cache; "
            "a directory needs the config.json and weights written by save_pretrained"
        ) from exc


def load_pretrained(teacher: str, cls: Any, source: str, dtype: torch.dtype) -> nn.Module:
    """``cls.from_pretrained(source)`` in ``dtype``, refusing checkpoints that lack used weights."""
    model, info = cls.from_pretrained(source, dtype=dtype, output_loading_info=True)
    missing = sorted(k for k in info["missing_keys"] if not any(p in k for p in _UNUSED_WEIGHTS))
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ValueError(
            f"{teacher}: the checkpoint {source!r} has no weights for {shown}; "
            f"is it a {cls.__name__} checkpoint?"
        )
    return model


def build_random(
    teacher: str, config_cls: Any, model_cls: Any, config: Mapping[str, Any], seed: int
) -> nn.Module:
    """A randomly initialised ``model_cls`` from a config dict, identical for a given ``seed``."""
    known = set(config_cls().to_dict())
    unknown = sorted(set(config) - known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{teacher}: unknown {config_cls.__name__} keys: {', '.join(hints)}")
    with seeded(seed):
        return model_cls(config_cls(**config))


def select_hidden_state(
    run: Callable[..., Any], layer: int, final_norm: bool, norm: Callable[[Tensor], Tensor]
) -> Tensor:
    """The output of block ``layer`` (optionally through the final ``norm``) from an HF forward.

    ``run(**kwargs)`` calls the model; HF ``hidden_states`` hold the embeddings and then the output
    of every block, so block ``i`` is ``hidden_states[i + 1]``.
    """
    return select_hidden_and_pooled(run, layer, final_norm, norm)[0]


def select_hidden_and_pooled(
    run: Callable[..., Any], layer: int, final_norm: bool, norm: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor | None]:
    """:func:`select_hidden_state`'s tokens and the model's ``pooler_output`` (of its last block,
    whatever ``layer``; None for a model without a pooling head) from one forward pass."""
    if layer == -1 and final_norm:
        out = run()
        return out.last_hidden_state, getattr(out, "pooler_output", None)
    out = run(output_hidden_states=True)
    hidden = out.hidden_states
    x = hidden[layer + 1] if layer >= 0 else hidden[layer]
    return (norm(x) if final_norm else x), getattr(out, "pooler_output", None)
