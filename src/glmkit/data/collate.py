"""Collating samples into batches: stack, pad to buckets, or pack.

A collate is a small component with ``__call__(samples) -> batch``, chosen in the recipe. All three
share the bookkeeping of the mixture's keys: ``source`` and other strings become lists, numbers
become a tensor, ``skipped`` reports are concatenated (so no skip is lost), PIL images become float
tensors. They differ only in how a tensor field whose length varies (a NaFlex patch sequence, a
token sequence) is batched:

- :class:`StackCollate`: every tensor field has one shape across the batch (stage 1's crops);
- :class:`PadCollate`: the ``pad_keys`` fields are padded along their first dimension to a length
  bucket (a multiple of ``multiple``), with a ``<key>_valid`` mask;
- :class:`PackCollate`: the ``keys`` fields are packed back to back into rows of ``row_len``
  positions, with ``<key>_seq_lens [R, S]`` giving each row's sample lengths (the encoder's packed
  layout: block-diagonal attention, no compute on padding) and ``<key>_valid [R, row_len]``.
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
    """Pack samples back to back into rows of ``row_len`` positions (NaViT's Patch n' Pack).

    The ``keys`` fields (``[n_i, ...]`` per sample) become ``[R, row_len, ...]``, zero after each
    row's last image; ``<key>_seq_lens [R, S]`` (int64, for the first key) gives the images' lengths
    row by row, 0 in unused slots (CogViT's ``seq_lens``), and ``<key>_valid [R, row_len]`` marks
    the positions that hold a patch. Other fields are batched as :class:`Collate` does, one entry
    per image in row-major order (the order of the encoder's ``prefix_tokens``).

    Called on samples alone it fills rows in order, starting a new row when the next image does not
    fit; :meth:`pack` takes the layout from a :class:`glmkit.data.naflex.NaFlexStep` instead, so that every rank has
    the same ``R`` and ``S``.

    Args:
        row_len: positions per row.
        keys: the variable-length fields, packed alike; the first one's length counts.
    """

    def __init__(self, row_len: int = 1024, keys: Sequence[str] = ("patches", "coords")) -> None:
        if row_len < 1:
            raise ValueError(f"row_len must be >= 1, got {row_len}")
        if not keys:
            raise ValueError("PackCollate needs at least one key to pack")
        self.row_len = int(row_len)
        self.keys = tuple(keys)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        rows: list[int] = []
        used = self.row_len  # forces a first row
        for n in self._lengths(samples):
            if used + n > self.row_len:
                rows.append(0)
                used = 0
            rows[-1] += 1
            used += n
        return self.pack(samples, rows)

    def pack(
        self, samples: list[dict[str, Any]], row_sizes: Sequence[int], num_slots: int | None = None
    ) -> dict[str, Any]:
        """Pack ``samples`` in order: ``row_sizes[r]`` images in row ``r``, ``num_slots`` columns of
        ``seq_lens`` (default: the largest row size)."""
        if not samples:
            raise ValueError("cannot collate an empty batch")
        lengths = self._lengths(samples)
        if any(int(k) < 0 for k in row_sizes) or sum(row_sizes) != len(samples):
            raise ValueError(
                f"row_sizes {list(row_sizes)} must be >= 0 and sum to the {len(samples)} samples"
            )
        slots = max(row_sizes) if num_slots is None else int(num_slots)
        if max(row_sizes) > slots:
            raise ValueError(f"a row holds {max(row_sizes)} images, more than num_slots={slots}")
        seq_lens = torch.zeros(len(row_sizes), slots, dtype=torch.long)  # R, S
        starts: list[tuple[int, int]] = []  # (row, position) of each sample
        i = 0
        for r, size in enumerate(row_sizes):
            position = 0
            for s in range(int(size)):
                seq_lens[r, s] = lengths[i]
                starts.append((r, position))
                position += lengths[i]
                i += 1
            if position > self.row_len:
                first = i - int(size)
                raise ValueError(
                    f"row {r} holds images of {lengths[first:i]} patches, {position} in all, more than "
                    f"row_len={self.row_len}"
                )
        head = self.keys[0]
        batch = super().__call__([{k: v for k, v in s.items() if k not in self.keys} for s in samples])
        for key in self.keys:
            first = samples[0][key]
            out = first.new_zeros((len(row_sizes), self.row_len, *first.shape[1:]))  # R, L, ...
            for sample, (r, position), n in zip(samples, starts, lengths, strict=True):
                value = sample[key]
                if value.shape[0] != n or value.shape[1:] != first.shape[1:]:
                    raise ValueError(
                        f"field {key!r} of sample {sample.get('index', '?')} has shape {list(value.shape)}; "
                        f"expected [{n}, {', '.join(map(str, first.shape[1:]))}] like {head!r}"
                    )
                out[r, position : position + n] = value
            batch[key] = out
        batch[f"{head}_seq_lens"] = seq_lens
        batch[f"{head}_valid"] = torch.arange(self.row_len)[None] < seq_lens.sum(1, keepdim=True)  # R, L
        return batch

    def _lengths(self, samples: list[dict[str, Any]]) -> list[int]:
        head = self.keys[0]
        lengths = []
        for i, sample in enumerate(samples):
            missing = [k for k in self.keys if k not in sample]
            if missing:
                raise KeyError(f"PackCollate: sample {i} has no field(s) {missing}; it has {sorted(sample)}")
            value = sample[head]
            if not isinstance(value, torch.Tensor) or value.ndim < 1:
                raise TypeError(f"field {head!r} must hold tensors [n, ...], got {type(value).__name__}")
            n = int(value.shape[0])
            if n > self.row_len:
                raise ValueError(
                    f"sample {i} has {n} patches, more than row_len={self.row_len}; raise row_len or lower "
                    "the transform's max_num_patches"
                )
            lengths.append(n)
        return lengths
