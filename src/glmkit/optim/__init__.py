"""Optimisation: the stage's optimizer builder, Muon/AdamW parameter routing, learning-rate schedules."""

from glmkit.optim.builder import OPTIMIZERS, ModuleOptim, MuonAdamW, OptimizerBuilder
from glmkit.optim.muon import Muon
from glmkit.optim.param_groups import (
    DEFAULT_FALLBACK_PATTERNS,
    DEFAULT_NO_DECAY_PATTERNS,
    DEFAULT_QKV_PATTERNS,
    QKV_SPLITS,
    muon_param_groups,
)
from glmkit.optim.schedules import SCHEDULES, Constant, WarmupCosine
from glmkit.optim.shapes import clean_param_name, original_shape, record_param_shapes

__all__ = [
    "OPTIMIZERS",
    "ModuleOptim",
    "Muon",
    "MuonAdamW",
    "OptimizerBuilder",
    "DEFAULT_FALLBACK_PATTERNS",
    "DEFAULT_NO_DECAY_PATTERNS",
    "DEFAULT_QKV_PATTERNS",
    "QKV_SPLITS",
    "SCHEDULES",
    "Constant",
    "WarmupCosine",
    "clean_param_name",
    "muon_param_groups",
    "original_shape",
    "record_param_shapes",
]
