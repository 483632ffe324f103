"""Tensors that move with their module but are never cast: RoPE frequencies, target statistics.

Module buffers follow every ``model.to(dtype)``, and FSDP's mixed precision (Lightning's
``bf16-mixed`` sets ``buffer_dtype=bfloat16``) casts buffers behind ``nn.Module._apply``'s back. A
float64 running sum cast to bf16 loses every update (300 + 1 == 300 in bf16), and RoPE frequencies
rounded to bf16 turn every angle by up to 0.4%, more with each patch of distance. Such tensors are
therefore kept as plain attributes, which no caster sees, and a module's ``_apply`` override moves
them to wherever the module goes, using :func:`target_device`. FSDP moves parameters and buffers to
the GPU without ``_apply``, so such modules also move these tensors to their inputs' device on use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def target_device(fn: Callable[[Tensor], Tensor], like: Tensor) -> torch.device:
    """The device ``nn.Module._apply``'s ``fn`` sends tensors to (``to``, ``cuda``, ``to_empty``...).

    ``fn`` runs on an empty probe, so whatever it would do to the dtype or the data does not matter.
    A probe on the meta device cannot be copied anywhere, so meta tensors are probed from the CPU.
    """
    probe = torch.empty(0, device="cpu" if like.is_meta else like.device)
    return fn(probe).device
