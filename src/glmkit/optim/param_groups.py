"""Route parameters between Muon and its AdamW fallback, with per-module settings.

Muon orthogonalises the update of a weight *matrix*; it suits the 2-D hidden weights of
transformer blocks and nothing else (Keller Jordan's Muon note; Moonlight, arXiv 2502.16982).
Everything else -- the patch embedding (a pixel-to-feature map), output projections, norms,
biases, learned tokens -- is trained with AdamW. :func:`muon_param_groups` produces the param
groups for one ``timm.optim.Muon`` instance, which reads ``use_fallback`` per group, so Lightning
sees a single optimizer and keeps automatic clipping and accumulation.

Stage 2 (module-specific learning rates for vision, text and projection) calls it with a dict of
modules and a ``settings`` entry per module; each module yields its own groups, named after it,
so a schedule can be attached per module.

Routing reads each parameter's original name and shape (:mod:`glmkit.optim.shapes`), so it is the
same after FSDP has flattened the parameters; the groups carry those shapes, and how many row
blocks each Muon matrix is orthogonalised in (q, k and v of a fused qkv weight separately), for
:class:`~glmkit.optim.Muon`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from glmkit.optim.shapes import clean_param_name, original_shape

DEFAULT_FALLBACK_PATTERNS: tuple[str, ...] = (
    "*patch_embed.*",
    "*embed_tokens.*",
    "*embeddings.*",
    "*mask_token",
    "*cls_token",
    "*reg_token",
    "out.*",
    "*.out.*",
    "head.*",
    "*.head.*",
    "lm_head.*",
    "*.lm_head.*",
)
"""Names of 2-D weights that still go to AdamW: pixel and token embeddings, learned tokens, output
layers. Anchored at dots so that e.g. an MTP module's blocks (``mtp_heads.0.attn.qkv.weight``) or a
``token_mixer`` stay with Muon."""

DEFAULT_NO_DECAY_PATTERNS: tuple[str, ...] = (
    "*mask_token",
    "*cls_token",
    "*reg_token",
    "*pos_embed*",
    "*probe",  # the learned query of attention pooling (MAPHead)
)
"""Names excluded from weight decay besides every parameter with fewer than 2 dimensions."""


DEFAULT_QKV_PATTERNS: tuple[str, ...] = ("*qkv.weight", "*in_proj_weight")
"""Names of fused ``[3D, D]`` query-key-value weights (q rows first, then k, then v): glmkit's and
timm's ``qkv``, ``torch.nn.MultiheadAttention``'s ``in_proj_weight``."""

QKV_SPLITS: tuple[str, ...] = ("none", "qkv", "heads")
"""How Muon orthogonalises a fused qkv weight: as one ``[3D, D]`` matrix, as q, k and v ``[D, D]``
each, or as one ``[head_dim, D]`` block per head of each."""


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def muon_param_groups(
    modules: nn.Module | Mapping[str, nn.Module],
    *,
    fallback_patterns: Sequence[str] = DEFAULT_FALLBACK_PATTERNS,
    no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
    qkv_patterns: Sequence[str] = DEFAULT_QKV_PATTERNS,
    qkv_split: str = "qkv",
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    root: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Split trainable parameters into Muon and AdamW groups.

    A parameter goes to Muon when its original shape (before any FSDP flattening, see
    :func:`~glmkit.optim.original_shape`) has exactly two dimensions and its name (wrapper
    segments removed) matches none of ``fallback_patterns``; every other parameter is routed to
    AdamW. Each group says so explicitly (``use_muon`` / ``use_fallback``), so the optimizer's own
    shape heuristic never moves a parameter. Parameters with fewer than two dimensions or matching
    ``no_decay_patterns`` get ``weight_decay=0``; decayed groups take the optimizer's
    ``weight_decay`` (one value, set in the recipe's optimizer) unless ``settings`` gives one.
    Frozen parameters (``requires_grad=False``) are left out, which keeps frozen teachers out of
    the optimizer.

    Args:
        modules: one module, or named modules (``{"vision": ..., "text": ...}``) whose groups are
            named ``"<module>/muon"``, ``"<module>/adamw"`` and ``"<module>/adamw_no_decay"``.
        fallback_patterns: ``fnmatch`` patterns of 2-D weights that still go to AdamW.
        no_decay_patterns: ``fnmatch`` patterns of parameters exempt from decay.
        qkv_patterns: ``fnmatch`` patterns of fused ``[3D, D]`` qkv weights routed to Muon.
        qkv_split: how Muon orthogonalises those: ``"none"`` (one matrix), ``"qkv"`` (q, k and v
            separately) or ``"heads"`` (each head of q, k and v separately; the head width is read
            from the nearest enclosing module's ``head_dim``).
        settings: per-module extra group keys (``lr``, ``weight_decay``, ...), by module name.
        root: the module that owns all of ``modules``; if given, every trainable parameter of
            ``root`` must fall in some group, or a ``ValueError`` names the ones left out (a
            temperature or bias outside the named modules would otherwise never train).

    Returns:
        Param groups (empty ones dropped), each with ``name``, ``params``, ``use_muon`` and
        ``use_fallback`` keys, per-parameter ``param_names`` and ``orig_shapes`` (and
        ``muon_blocks`` in Muon groups), plus ``weight_decay`` where it is fixed and the module's
        settings.
    """
    if qkv_split not in QKV_SPLITS:
        raise ValueError(f"qkv_split must be one of {list(QKV_SPLITS)}, got {qkv_split!r}")
    named = {"": modules} if isinstance(modules, nn.Module) else dict(modules)
    settings = dict(settings or {})
    unknown = set(settings) - set(named)
    if unknown:
        raise KeyError(f"settings given for unknown modules {sorted(unknown)}; modules are {sorted(named)}")
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for module_name, module in named.items():
        extra = dict(settings.get(module_name, {}))
        prefix = f"{module_name}/" if module_name else ""
        buckets: dict[str, list[tuple[str, nn.Parameter, tuple[int, ...], int]]] = {
            "muon": [],
            "adamw": [],
            "adamw_no_decay": [],
        }
        for raw_name, param in module.named_parameters():
            if not param.requires_grad or id(param) in seen:  # shared params are stepped once
                continue
            seen.add(id(param))
            name, shape = clean_param_name(raw_name), original_shape(module, raw_name)
            if len(shape) < 2 or _matches(name, no_decay_patterns):
                kind, blocks = "adamw_no_decay", 1
            elif len(shape) == 2 and not _matches(name, fallback_patterns):
                kind, blocks = "muon", 1
                if qkv_split != "none" and _matches(name, qkv_patterns):
                    blocks = _qkv_blocks(module, raw_name, prefix + name, shape, qkv_split)
            else:
                kind, blocks = "adamw", 1
            buckets[kind].append((prefix + name, param, shape, blocks))
        for kind, entries in buckets.items():
            if not entries:
                continue
            names, params, shapes, blocks = (list(column) for column in zip(*entries, strict=True))
            group = {
                **extra,
                "name": prefix + kind,
                "params": params,
                "param_names": names,
                "orig_shapes": shapes,
            }
            group.update(use_muon=kind == "muon", use_fallback=kind != "muon")
            if kind == "muon":
                group["muon_blocks"] = blocks
            if kind == "adamw_no_decay":
                group["weight_decay"] = 0.0
            groups.append(group)
    if root is not None:
        missing = [n for n, p in root.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            missing = [clean_param_name(n) for n in missing]
            raise ValueError(
                f"trainable parameters outside the modules {sorted(named)} would never be optimised: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; add their module to the routing"
            )
    return groups


def _qkv_blocks(module: nn.Module, raw_name: str, name: str, shape: tuple[int, ...], split: str) -> int:
    """Row blocks of a fused ``[3D, D]`` qkv weight: 3 (q, k, v) or 3 x heads."""
    rows = shape[0]
    if rows % 3:
        raise ValueError(
            f"{name} matches qkv_patterns but its {rows} rows do not split into equal q, k and v "
            "(grouped-query attention?); leave it out of qkv_patterns or set qkv_split: none"
        )
    if split == "qkv":
        return 3
    path = raw_name.split(".")[:-1]
    while path:  # the nearest enclosing module that knows its head width (e.g. the attention module)
        head_dim = getattr(module.get_submodule(".".join(path)), "head_dim", None)
        if isinstance(head_dim, int):
            break
        path.pop()
    else:
        head_dim = getattr(module, "head_dim", None)
    if not isinstance(head_dim, int) or head_dim <= 0 or (rows // 3) % head_dim:
        raise ValueError(
            f"qkv_split: heads needs the head width of {name} (shape {shape}): no enclosing module has an "
            f"integer head_dim dividing {rows // 3} (found {head_dim!r}); use qkv_split: qkv"
        )
    return rows // head_dim
