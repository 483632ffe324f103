"""The optimizer and schedule of a stage, configured in the recipe with every default visible.

A stage takes one ``optimization:`` component and calls it from ``configure_optimizers``: the
builder routes the stage's parameters (:func:`~glmkit.optim.muon_param_groups`), builds the
optimizer and the per-step schedule over ``trainer.max_steps``, and returns what Lightning expects.
Because each hyperparameter is an argument with its real default, ``--print_config`` shows the
learning rate, weight decay, momentum, schedule and routing patterns that run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jsonargparse import lazy_instance
from torch import nn
from torch.optim import Optimizer

from glmkit.optim.muon import Muon
from glmkit.optim.param_groups import (
    DEFAULT_FALLBACK_PATTERNS,
    DEFAULT_NO_DECAY_PATTERNS,
    DEFAULT_QKV_PATTERNS,
    QKV_SPLITS,
    muon_param_groups,
)
from glmkit.optim.schedules import Schedule, WarmupCosine, build_scheduler
from glmkit.registry import declare

FALLBACKS: tuple[str, ...] = ("adamw", "nadamw")
"""The optimizers :class:`MuonAdamW` can run on the parameters Muon does not take."""


@dataclass
class ModuleOptim:
    """Settings of one named module's param groups (stage 2: vision, text, projection).

    ``None`` takes the builder's value.
    """

    lr: float | None = None
    weight_decay: float | None = None
    schedule: Schedule | None = None


class OptimizerBuilder:
    """Base class: ``build(module, total_steps, modules=None)`` -> Lightning's optimizer config."""

    def build(
        self, module: nn.Module, total_steps: int, modules: Mapping[str, nn.Module] | None = None
    ) -> dict[str, Any]:
        """``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., "interval": "step"}}``."""
        raise NotImplementedError


OPTIMIZERS = declare("optimizers", "optimizer + schedule builders of the stages", base=OptimizerBuilder)


@OPTIMIZERS.register("muon")
class MuonAdamW(OptimizerBuilder):
    """One :class:`~glmkit.optim.Muon` (timm's): Muon on 2-D hidden weights, AdamW on everything else.

    Muon orthogonalises each hidden weight matrix's momentum update (Newton-Schulz, ``ns_steps``
    iterations); with ``adjust_lr_fn="match_rms_adamw"`` its step is scaled to AdamW's RMS
    (Moonlight, arXiv 2502.16982), so one ``lr`` serves both kinds of group. The fallback is
    ``fallback`` (plain AdamW by default) with ``betas`` and ``fallback_eps``, whatever
    ``nesterov`` says: timm's ``Muon`` alone would turn ``nesterov=True`` into NAdamW in the
    fallback and reuse the Newton-Schulz ``eps`` (1e-7) as Adam's epsilon, so the builder sets both
    on the fallback groups itself. Norms, biases and learned tokens never decay. Routing reads the
    parameters' original shapes and names, and Muon orthogonalises whole matrices, under FSDP too;
    fused qkv weights are orthogonalised as q, k and v (``qkv_split``).

    Args:
        lr: peak learning rate (before the schedule's multiplier).
        weight_decay: decoupled weight decay of the decayed groups.
        momentum: Muon's momentum.
        nesterov: Nesterov momentum in Muon's groups only (the fallback is chosen by ``fallback``).
        ns_steps: Newton-Schulz iterations of the orthogonalisation.
        eps: epsilon of the Newton-Schulz orthogonalisation (Muon groups).
        betas: betas of the fallback.
        fallback: the optimizer of the non-Muon groups: ``adamw`` (decoupled weight decay,
            Loshchilov & Hutter) or ``nadamw`` (AdamW with Nesterov momentum, Dozat 2016).
        fallback_eps: Adam's epsilon in the fallback (1e-8, PyTorch's AdamW default).
        adjust_lr_fn: timm's Muon learning-rate adjustment (``match_rms_adamw``, ``original``).
        schedule: multiplier of ``lr`` over ``trainer.max_steps`` steps.
        fallback_patterns: names of 2-D weights that still go to AdamW (embeddings, heads).
        no_decay_patterns: names exempt from weight decay besides every 1-D parameter.
        qkv_split: how Muon orthogonalises fused qkv weights: ``none`` (one ``[3D, D]`` matrix),
            ``qkv`` (q, k and v separately, as nanochat and modded-nanogpt) or ``heads`` (each
            head of q, k and v separately).
        qkv_patterns: names of fused ``[3D, D]`` qkv weights.
        modules: per-module settings by the names the stage routes (e.g. ``vision``, ``text``,
            ``proj``); a module without an entry takes the values above.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        momentum: float = 0.95,
        nesterov: bool = False,
        ns_steps: int = 5,
        eps: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.95),
        fallback: Literal["adamw", "nadamw"] = "adamw",
        fallback_eps: float = 1e-8,
        adjust_lr_fn: str = "match_rms_adamw",
        schedule: Schedule = lazy_instance(WarmupCosine, warmup_steps=0, min_lr_ratio=0.0),
        fallback_patterns: Sequence[str] = DEFAULT_FALLBACK_PATTERNS,
        no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
        qkv_split: str = "qkv",
        qkv_patterns: Sequence[str] = DEFAULT_QKV_PATTERNS,
        modules: dict[str, ModuleOptim] | None = None,
    ) -> None:
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
        if qkv_split not in QKV_SPLITS:
            raise ValueError(f"qkv_split must be one of {list(QKV_SPLITS)}, got {qkv_split!r}")
        if fallback not in FALLBACKS:
            raise ValueError(f"optimization.fallback must be one of {list(FALLBACKS)}, got {fallback!r}")
        if fallback_eps <= 0:
            raise ValueError(f"optimization.fallback_eps must be > 0, got {fallback_eps}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.nesterov = nesterov
        self.ns_steps = ns_steps
        self.eps = eps
        self.betas = (float(betas[0]), float(betas[1]))
        self.fallback = fallback
        self.fallback_eps = float(fallback_eps)
        self.adjust_lr_fn = adjust_lr_fn
        self.schedule = schedule
        self.fallback_patterns = tuple(fallback_patterns)
        self.no_decay_patterns = tuple(no_decay_patterns)
        self.qkv_split = qkv_split
        self.qkv_patterns = tuple(qkv_patterns)
        self.modules = dict(modules or {})

    def param_groups(
        self, module: nn.Module, modules: Mapping[str, nn.Module] | None = None
    ) -> list[dict[str, Any]]:
        """Muon/AdamW groups of ``module`` (or of its named ``modules``, each with its settings)."""
        if self.modules and modules is None:
            raise ValueError(
                f"optimization.modules names {sorted(self.modules)}, but this stage routes its parameters "
                "as one module; remove `modules` from the recipe"
            )
        named = modules if modules is not None else module
        settings = {}
        for name, extra in self.modules.items():
            values = {"lr": extra.lr, "weight_decay": extra.weight_decay}
            settings[name] = {k: v for k, v in values.items() if v is not None}
        groups = muon_param_groups(
            named,
            fallback_patterns=self.fallback_patterns,
            no_decay_patterns=self.no_decay_patterns,
            qkv_patterns=self.qkv_patterns,
            qkv_split=self.qkv_split,
            settings=settings or None,
            root=module if modules is not None else None,
        )
        for group in groups:
            if group["use_fallback"]:
                # timm's Muon runs a fallback group as NAdamW when the group's ``nesterov`` is set and
                # uses the group's ``eps`` as Adam's: both say what the fallback is, not Muon's momentum
                group["nesterov"] = self.fallback == "nadamw"
                group["eps"] = self.fallback_eps
        return groups

    def optimizer(self, groups: list[dict[str, Any]]) -> Optimizer:
        """The :class:`~glmkit.optim.Muon` over ``groups``."""
        return Muon(
            groups,
            lr=self.lr,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            nesterov=self.nesterov,
            ns_steps=self.ns_steps,
            eps=self.eps,
            betas=self.betas,
            adjust_lr_fn=self.adjust_lr_fn,
        )

    def build(
        self, module: nn.Module, total_steps: int, modules: Mapping[str, nn.Module] | None = None
    ) -> dict[str, Any]:
        """Route, build the optimizer, attach the per-step schedule (per module where given)."""
        if total_steps is None or total_steps <= 0:
            raise ValueError(
                f"the learning-rate schedule needs trainer.max_steps > 0 (got {total_steps}); set it in the "
                "recipe's trainer section"
            )
        optimizer = self.optimizer(self.param_groups(module, modules))
        schedule: Schedule | dict[str, Schedule] = self.schedule
        if modules is not None:
            schedule = {name: self._module_schedule(name) for name in modules}
        scheduler = build_scheduler(optimizer, total_steps, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _module_schedule(self, name: str) -> Schedule:
        extra = self.modules.get(name)
        return extra.schedule if extra is not None and extra.schedule is not None else self.schedule
