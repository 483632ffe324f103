"""Optimisation: the stage's optimizer builder, Muon/AdamW parameter routing, learning-rate schedules."""

from glmkit.optim.builder import OPTIMIZERS, ModuleOptim, MuonAdamW, OptimizerBuilder
from glmkit.optim.param_groups import DEFAULT_FALLBACK_PATTERNS, DEFAULT_NO_DECAY_PATTERNS, muon_param_groups
from glmkit.optim.schedules import SCHEDULES, Constant, WarmupCosine

__all__ = [
    "OPTIMIZERS",
    "ModuleOptim",
    "MuonAdamW",
    "OptimizerBuilder",
    "DEFAULT_FALLBACK_PATTERNS",
    "DEFAULT_NO_DECAY_PATTERNS",
    "SCHEDULES",
    "Constant",
    "WarmupCosine",
    "muon_param_groups",
]
