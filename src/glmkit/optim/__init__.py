"""Optimisation: Muon/AdamW parameter routing and learning-rate schedules."""

from glmkit.optim.param_groups import DEFAULT_FALLBACK_PATTERNS, DEFAULT_NO_DECAY_PATTERNS, muon_param_groups
from glmkit.optim.schedules import SCHEDULES, Constant, WarmupCosine

__all__ = [
    "DEFAULT_FALLBACK_PATTERNS",
    "DEFAULT_NO_DECAY_PATTERNS",
    "SCHEDULES",
    "Constant",
    "WarmupCosine",
    "muon_param_groups",
]
