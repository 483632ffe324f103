"""Training stages: one LightningModule per stage of the GLM-5V-Turbo recipe."""

from glmkit.stages.callbacks import ExportEncoder, PlotMetrics
from glmkit.stages.mim_distill import STAGES, MIMDistill

__all__ = ["STAGES", "ExportEncoder", "MIMDistill", "PlotMetrics"]
