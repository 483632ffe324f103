"""Inference: generation with MTP heads as a speculative draft (DeepSeek-V3 section 5.4.3; GLM-5V-Turbo section 2.2)."""

from glmkit.inference.draft import MTPDrafter, crop_cache
from glmkit.inference.sampling import greedy_verify, rejection_verify, sample_tokens, warp_logits
from glmkit.inference.speculative import GenerationOutput, SpeculativeStats, generate
from glmkit.inference.vlm import SpeculativeVLM, load_chat, load_vlm

__all__ = [
    "GenerationOutput",
    "MTPDrafter",
    "SpeculativeStats",
    "SpeculativeVLM",
    "crop_cache",
    "generate",
    "load_chat",
    "load_vlm",
    "greedy_verify",
    "rejection_verify",
    "sample_tokens",
    "warp_logits",
]
