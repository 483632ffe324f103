"""Collating samples into batches: stack, pad to buckets, or pack.

A collate is a small component with ``__call__(samples) -> batch``, chosen in the recipe. All three
share the bookkeeping of the mixture's keys: ``source`` and other strings become lists, numbers
become a tensor, ``skipped`` reports are concatenated (so no skip is lost), PIL images become float
tensors. They differ only in how a tensor field whose length varies (a NaFlex patch sequence, a
token sequence) is batched:

- :class:`StackCollate`: every tensor field has one shape across the batch (stage 1's crops);
- :class:`PadCollate`: the ``pad_keys`` fields are padded along their first dimension to a length
  bucket (a multiple of ``multiple``), with a ``<key>_valid`` mask;
- :class:`PackCollate`: the ``pack_keys`` fields are concatenated along their first dimension into
  one row, with ``<key>_seq_lens`` giving each sample's length (for block-diagonal attention).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from glmkit.data.transforms import to_tensor
from glmkit.registry import declare

Sample = dict[str, Any]


class Collate:
    """Base class: ``collate(samples) -> batch``; tensors of one shape are stacked."""

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        keys = list(samples[0])
        for i, sample in enumerate(samples[1:], start=1):
            if set(sample) != set(keys):
                raise KeyError(
                    f"samples of one batch have different fields: sample 0 has {sorted(keys)}, "
                    f"sample {i} (source {sample.get('source')!r}) has {sorted(sample)}"
                )
        return {key: self.collate_field(key, [s[key] for s in samples]) for key in keys} | self.extra(samples)

    def collate_field(self, key: str, values: list[Any]) -> Any:
        """Batch one field's values (override for fields that need special handling)."""
        if key == "skipped":
            return [item for value in values for item in value]
        values = [to_tensor(v) if isinstance(v, Image.Image) else v for v in values]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"field {key!r} has different shapes {sorted(shapes)} in one batch; use a transform that "
                    "outputs a fixed size (TrainTransform / EvalTransform), or PadCollate / PackCollate"
                )
            return torch.stack(values)
        if isinstance(first, bool | numbers.Integral) and all(
            isinstance(v, numbers.Integral) for v in values
        ):
            return torch.tensor(values, dtype=torch.long)
        if isinstance(first, numbers.Real) and all(isinstance(v, numbers.Real) for v in values):
            return torch.tensor(values, dtype=torch.float32)
        return list(values)

    def extra(self, samples: list[Sample]) -> dict[str, Any]:
        """Fields the collate adds beyond the samples' own (masks, lengths)."""
        return {}


COLLATES = declare("collates", "how samples are batched (stack, pad to buckets, pack)", base=Collate)


@COLLATES.register("stack")
class StackCollate(Collate):
    """Stack every tensor field (one shape per field across the batch)."""


def _check_sequences(key: str, values: list[Any]) -> list[torch.Tensor]:
    for value in values:
        if not isinstance(value, torch.Tensor) or value.ndim < 1:
            raise TypeError(
                f"field {key!r} must hold tensors of at least one dimension, got {type(value).__name__}"
            )
    tails = {tuple(v.shape[1:]) for v in values}
    if len(tails) > 1:
        raise ValueError(f"field {key!r}: sequences differ beyond their length: {sorted(tails)}")
    return values


@COLLATES.register("pad")
class PadCollate(Collate):
    """Pad the ``pad_keys`` fields along dim 0 to the batch's longest, rounded up to ``multiple``.

    Rounding to a few bucket lengths keeps the number of distinct shapes small (fewer recompiles
    and allocator churn). Each padded field gets ``<key>_valid [B, L]`` (True at real positions).

    Args:
        pad_keys: the variable-length fields.
        multiple: bucket granularity of the padded length.
        pad_value: value written at padded positions.
    """

    def __init__(
        self, pad_keys: Sequence[str] = ("patches",), multiple: int = 64, pad_value: float = 0.0
    ) -> None:
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.pad_keys = tuple(pad_keys)
        self.multiple = int(multiple)
        self.pad_value = pad_value

    def collate_field(self, key: str, values: list[Any]) -> Any:
        """Pad the variable-length fields; batch the others as :class:`Collate` does."""
        if key not in self.pad_keys:
            return super().collate_field(key, values)
        values = _check_sequences(key, values)
        longest = max(v.shape[0] for v in values)
        length = -(-longest // self.multiple) * self.multiple
        out = values[0].new_full((len(values), length, *values[0].shape[1:]), self.pad_value)  # B, L, ...
        for i, value in enumerate(values):
            out[i, : value.shape[0]] = value
        return out

    def extra(self, samples: list[Sample]) -> dict[str, Any]:
        """``<key>_valid`` masks of the padded fields."""
        masks = {}
        for key in self.pad_keys:
            if key not in samples[0]:
                raise KeyError(f"PadCollate: samples have no field {key!r}; they have {sorted(samples[0])}")
            lengths = [s[key].shape[0] for s in samples]
            length = -(-max(lengths) // self.multiple) * self.multiple
            masks[f"{key}_valid"] = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]  # B, L
        return masks


@COLLATES.register("pack")
class PackCollate(Collate):
    """Concatenate the ``pack_keys`` fields of all samples into one row ``[1, sum(L_i), ...]``.

    ``<key>_seq_lens`` (LongTensor ``[B]``) gives each sample's length in order, which is what
    variable-length (block-diagonal) attention needs; no compute goes to padding.

    Args:
        pack_keys: the variable-length fields.
    """

    def __init__(self, pack_keys: Sequence[str] = ("patches",)) -> None:
        self.pack_keys = tuple(pack_keys)

    def collate_field(self, key: str, values: list[Any]) -> Any:
        """Pack the variable-length fields; batch the others as :class:`Collate` does."""
        if key not in self.pack_keys:
            return super().collate_field(key, values)
        return torch.cat(_check_sequences(key, values))[None]  # 1, sum(L_i), ...

    def extra(self, samples: list[Sample]) -> dict[str, Any]:
        """``<key>_seq_lens`` of the packed fields."""
        for key in self.pack_keys:
            if key not in samples[0]:
                raise KeyError(f"PackCollate: samples have no field {key!r}; they have {sorted(samples[0])}")
        return {f"{key}_seq_lens": torch.tensor([s[key].shape[0] for s in samples]) for key in self.pack_keys}
