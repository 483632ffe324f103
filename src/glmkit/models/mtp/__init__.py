"""Multi-token prediction heads (DeepSeek-V3, arXiv 2412.19437, section 2.2) for any transformers causal LM.

MMTP for vision-language models (GLM-5V-Turbo section 2.2): the VLM passes its LLM input
(``inputs_embeds``) and the image-position mask; what the heads read at image positions is a
registered strategy (``mtp_image_inputs``: ``visual``, ``mask``, ``image_token``).
"""

from glmkit.models.mtp.checkpoint import (
    MTPLoadReport,
    export_mtp_state_dict,
    from_checkpoint_key,
    load_language_model,
    load_mtp_state_dict,
    mtp_key_pattern,
    read_checkpoint_tensors,
    to_checkpoint_key,
)
from glmkit.models.mtp.heads import (
    MTP_HEADS,
    DecoderParts,
    MTPHeads,
    MTPLayer,
    decoder_parts,
    mtp_block_config,
)
from glmkit.models.mtp.image_inputs import (
    MTP_IMAGE_INPUTS,
    LearnedImageToken,
    MaskedImageInput,
    MTPImageInput,
    VisualImageInput,
    build_image_input,
)
from glmkit.models.mtp.model import MTPCausalLM, MTPOutput, packed_position_ids

__all__ = [
    "MTP_HEADS",
    "MTP_IMAGE_INPUTS",
    "DecoderParts",
    "LearnedImageToken",
    "MTPCausalLM",
    "MTPHeads",
    "MTPImageInput",
    "MTPLayer",
    "MTPLoadReport",
    "MTPOutput",
    "MaskedImageInput",
    "VisualImageInput",
    "build_image_input",
    "decoder_parts",
    "export_mtp_state_dict",
    "from_checkpoint_key",
    "load_language_model",
    "load_mtp_state_dict",
    "mtp_block_config",
    "mtp_key_pattern",
    "packed_position_ids",
    "read_checkpoint_tensors",
    "to_checkpoint_key",
]
