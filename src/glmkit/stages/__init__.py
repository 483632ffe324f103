"""Training stages: one LightningModule per stage of the GLM-5V-Turbo recipe, and the kit they share."""

from glmkit.stages.base import STAGES, Stage, seed_for
from glmkit.stages.export import Export, ExportEncoder, ExportVLM
from glmkit.stages.mim_distill import MIMDistill
from glmkit.stages.multitask_rl import MultiTaskRL, TaskPrompts
from glmkit.stages.plots import PlotMetrics
from glmkit.stages.seeding import Reseed
from glmkit.stages.skips import SkippedSamples

__all__ = [
    "STAGES",
    "Export",
    "ExportEncoder",
    "ExportVLM",
    "MIMDistill",
    "MultiTaskRL",
    "PlotMetrics",
    "Reseed",
    "SkippedSamples",
    "Stage",
    "TaskPrompts",
    "seed_for",
]
