"""Tokenizers trained in the tests themselves (no download)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def byte_level_bpe(
    corpus: Sequence[str],
    vocab_size: int,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    **tokenizer_kwargs: Any,
) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``corpus``: it decodes what it encodes
    exactly. ``tokenizer_kwargs`` (``eos_token``, ``pad_token``, ...) go to the fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(corpus), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokenizer_kwargs)
