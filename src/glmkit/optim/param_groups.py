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
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

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

DEFAULT_NO_DECAY_PATTERNS: tuple[str, ...] = ("*mask_token", "*cls_token", "*reg_token", "*pos_embed*")
"""Names excluded from weight decay besides every parameter with fewer than 2 dimensions."""


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def muon_param_groups(
    modules: nn.Module | Mapping[str, nn.Module],
    *,
    fallback_patterns: Sequence[str] = DEFAULT_FALLBACK_PATTERNS,
    no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    root: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Split trainable parameters into Muon and AdamW groups.

    A parameter goes to Muon when it has exactly two dimensions and its qualified name matches
    none of ``fallback_patterns``; every other parameter is routed to AdamW. Each group says so
    explicitly (``use_muon`` / ``use_fallback``), so the optimizer's own shape heuristic never
    moves a parameter. Parameters with fewer than two dimensions or matching ``no_decay_patterns``
    get ``weight_decay=0``; decayed groups take the optimizer's ``weight_decay`` (one value, set in
    the recipe's optimizer) unless ``settings`` gives one. Frozen parameters
    (``requires_grad=False``) are left out, which keeps frozen teachers out of the optimizer.

    Args:
        modules: one module, or named modules (``{"vision": ..., "text": ...}``) whose groups are
            named ``"<module>/muon"``, ``"<module>/adamw"`` and ``"<module>/adamw_no_decay"``.
        fallback_patterns: ``fnmatch`` patterns of 2-D weights that still go to AdamW.
        no_decay_patterns: ``fnmatch`` patterns of parameters exempt from decay.
        settings: per-module extra group keys (``lr``, ``weight_decay``, ...), by module name.
        root: the module that owns all of ``modules``; if given, every trainable parameter of
            ``root`` must fall in some group, or a ``ValueError`` names the ones left out (a
            temperature or bias outside the named modules would otherwise never train).

    Returns:
        Param groups (empty ones dropped), each with ``name``, ``params``, ``use_muon`` and
        ``use_fallback`` keys plus ``weight_decay`` where it is fixed and the module's settings.
    """
    named = {"": modules} if isinstance(modules, nn.Module) else dict(modules)
    settings = dict(settings or {})
    unknown = set(settings) - set(named)
    if unknown:
        raise KeyError(f"settings given for unknown modules {sorted(unknown)}; modules are {sorted(named)}")
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for module_name, module in named.items():
        extra = dict(settings.get(module_name, {}))
        buckets: dict[str, list[nn.Parameter]] = {"muon": [], "adamw": [], "adamw_no_decay": []}
        for name, param in module.named_parameters():
            if not param.requires_grad or id(param) in seen:  # shared params are stepped once
                continue
            seen.add(id(param))
            if param.ndim < 2 or _matches(name, no_decay_patterns):
                buckets["adamw_no_decay"].append(param)
            elif param.ndim == 2 and not _matches(name, fallback_patterns):
                buckets["muon"].append(param)
            else:
                buckets["adamw"].append(param)
        prefix = f"{module_name}/" if module_name else ""
        for kind, params in buckets.items():
            if not params:
                continue
            group = {**extra, "name": prefix + kind, "params": params}
            group.update(use_muon=kind == "muon", use_fallback=kind != "muon")
            if kind == "adamw_no_decay":
                group["weight_decay"] = 0.0
            groups.append(group)
    if root is not None:
        missing = [n for n, p in root.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            raise ValueError(
                f"trainable parameters outside the modules {sorted(named)} would never be optimised: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; add their module to the routing"
            )
    return groups
