"""Multimodal context management for long agent trajectories (report section 3.5).

glmkit's canonical messages are OpenAI-shaped chat messages whose image parts are
``{"type": "image", "image_id": "img_3", "image": <PIL image>}``: the id is how tools and the model
refer to the image, the PIL object is converted to whatever the endpoint needs (a data URL, a
placeholder token, pixel values) only when a request is built, and the trajectory log stores the id
and a PNG path instead of the pixels.

A thinking-with-images trajectory adds an image at almost every turn (a crop, a drawing), so the
context fills with pixels. :class:`ImageWindowPolicy` keeps the question's images and the newest
tool images and replaces each older one with a short text placeholder that keeps its id
(``[image img_3 omitted]``), so the slot and the reference survive and the model can ask a tool
to bring the image back. It is applied to a copy of the history before every request; the full
history is kept. The precedents are the GLM-4.1V GUI agent (last 4 screenshots), smolagents'
browser (last 2) and Anthropic's computer-use loop (drop the oldest, in chunks so a prefix cache
stays valid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from glmkit.registry import declare

if TYPE_CHECKING:
    from PIL import Image


def image_ref(image_id: str, image: Image.Image) -> dict[str, Any]:
    """A canonical image content part."""
    return {"type": "image", "image_id": image_id, "image": image}


def is_image_ref(part: Any) -> bool:
    """True for a canonical image part (``{"type": "image", "image_id": ...}``)."""
    return isinstance(part, dict) and part.get("type") == "image" and "image_id" in part


def iter_image_refs(messages: Sequence[dict[str, Any]]) -> list[tuple[int, int, dict[str, Any]]]:
    """``(message index, part index, part)`` of every canonical image part, in order."""
    found = []
    for mi, msg in enumerate(messages):
        content = msg.get("content")
        if isinstance(content, list):
            found.extend((mi, pi, part) for pi, part in enumerate(content) if is_image_ref(part))
    return found


def is_observation_message(messages: Sequence[dict[str, Any]], index: int) -> bool:
    """True for a user message that carries tool results' images: it directly follows ``role: tool``."""
    return messages[index].get("role") == "user" and index > 0 and messages[index - 1].get("role") == "tool"


def current_question_index(messages: Sequence[dict[str, Any]]) -> int | None:
    """Index of the last user message that is a question, not a tool observation (``None``: no question)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user" and not is_observation_message(messages, index):
            return index
    return None


def image_tokens(image: Image.Image | None, pixels_per_token: int = 28) -> int:
    """Rough visual-token cost of an image: one token per ``pixels_per_token``-square cell.

    28 matches GLM-4.1V/4.5V (14-px patches merged 2x2): a 1120x1120 image costs about 1,600 tokens.
    """
    if image is None:
        return 0
    width, height = image.size
    return math.ceil(width / pixels_per_token) * math.ceil(height / pixels_per_token)


@runtime_checkable
class ContextPolicy(Protocol):
    """Rewrites the history just before a request; must not modify its input."""

    def apply(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages to send."""
        ...


# Declared after ContextPolicy: a member must define the protocol's ``apply`` method.
CONTEXT_POLICIES = declare(
    "context_policies", "agent-loop context policies applied before each request", base=ContextPolicy
)


@CONTEXT_POLICIES.register("keep_all")
class KeepAllImages:
    """Send the history unchanged."""

    def apply(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """A shallow copy of ``messages``."""
        return list(messages)


@CONTEXT_POLICIES.register("image_window")
class ImageWindowPolicy:
    """Keep the current question's images and the last ``keep_last`` other images; older ones become placeholders.

    The current question is the last user message that is not a tool observation (the image
    message that follows ``role: tool`` results), so in a continued conversation the follow-up
    question's images are pinned and an earlier question's images age like tool images.

    Args:
        keep_last: tool images kept in full, newest first.
        keep_question_images: never replace the current question's images.
        chunk: replace images ``chunk`` at a time, so the request prefix, and a server's prefix
            cache, changes once every ``chunk`` new images instead of every turn; between
            ``keep_last`` and ``keep_last + chunk - 1`` tool images are then kept.
        max_image_tokens: optional budget for the kept images (estimated by :func:`image_tokens`);
            more old tool images are replaced until the kept ones fit, also in whole chunks where
            that still leaves ``keep_last``; only the budget goes below ``keep_last``, and it never
            hides the newest image. The current question's images always stay.
        placeholder: text that replaces an image; ``{image_id}``, ``{width}`` and ``{height}`` are filled in.
        pixels_per_token: passed to :func:`image_tokens`.
    """

    def __init__(
        self,
        keep_last: int = 4,
        keep_question_images: bool = True,
        chunk: int = 1,
        max_image_tokens: int | None = None,
        placeholder: str = "[image {image_id} omitted]",
        pixels_per_token: int = 28,
    ) -> None:
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.keep_last = keep_last
        self.keep_question_images = keep_question_images
        self.chunk = chunk
        self.max_image_tokens = max_image_tokens
        self.placeholder = placeholder
        self.pixels_per_token = pixels_per_token

    def omitted(self, messages: Sequence[dict[str, Any]]) -> list[tuple[int, int, dict[str, Any]]]:
        """The image parts this policy replaces, as ``(message index, part index, part)``."""
        current = current_question_index(messages)
        refs = iter_image_refs(messages)
        question = [r for r in refs if r[0] == current]
        # Every other image, oldest first: tool images and the images of earlier questions.
        tools = [r for r in refs if r[0] != current]
        if not self.keep_question_images:
            tools, question = refs, []
        # Whole chunks only, rounded down: the window keeps keep_last .. keep_last + chunk - 1 images,
        # so the newest tool image is never hidden by the rounding.
        n_drop = max(0, len(tools) - self.keep_last) // self.chunk * self.chunk
        if self.max_image_tokens is not None and tools:
            cost = [image_tokens(r[2].get("image"), self.pixels_per_token) for r in tools]
            fixed = sum(image_tokens(r[2].get("image"), self.pixels_per_token) for r in question)
            # The budget never hides the newest image: a tool just returned it, and without it the
            # model would ask for it again and again.
            newest = len(tools) - 1
            need = n_drop
            while need < newest and fixed + sum(cost[need:]) > self.max_image_tokens:
                need += 1
            if need > n_drop:
                # The budget may go below keep_last; rounding its count up to a chunk may not.
                rounded = math.ceil(need / self.chunk) * self.chunk
                n_drop = min(rounded, max(need, len(tools) - self.keep_last), newest)
        return tools[:n_drop]

    def apply(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """A copy of ``messages`` with the omitted images replaced by text placeholders."""
        out = list(messages)
        for mi, pi, part in self.omitted(messages):
            if out[mi] is messages[mi]:
                out[mi] = {**messages[mi], "content": list(messages[mi]["content"])}
            image = part.get("image")
            width, height = image.size if image is not None else (0, 0)
            text = self.placeholder.format(image_id=part["image_id"], width=width, height=height)
            out[mi]["content"][pi] = {"type": "text", "text": text}
        return out


def get_context_policy(policy: str | ContextPolicy | None, **kwargs: Any) -> ContextPolicy:
    """A policy from its registered name (``keep_all``, ``image_window``) or as given (``None`` = keep all)."""
    if policy is None:
        return KeepAllImages()
    if isinstance(policy, str):
        return CONTEXT_POLICIES.get(policy)(**kwargs)
    return policy
