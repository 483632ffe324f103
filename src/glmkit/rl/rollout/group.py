"""The records of a rollout: a scored sample, and the group of samples that answer one prompt.

A :class:`RolloutGroup` is the unit the rollout issues, aborts, caches and trains on: the
``group_size`` samples of one prompt (one GRPO group, keyed by ``prompt_id``). It keeps the
samples already scored, so an aborted group is re-issued for its missing samples only, and
carries its version stamp (the policy version when it was first issued) for the cache's age cap.
Both records turn into plain Python (:meth:`RolloutGroup.to_state`) for checkpoints; the reward's
raw result object stays in memory only. A multi-step episode's sample also carries what the trainer
needs besides its token ids: the mask of the tokens the policy generated and the observation images
(tool results: crops, screenshots). Both travel with the sample, through the prompt cache and a
checkpoint (the images as base64 PNG, so the state stays valid JSON), never through the reward's
metadata (which the reward system may send to another process).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from typing import Any

from glmkit.rl.rollout.engine import Completion
from glmkit.scoring import Sample


@dataclass
class ScoredSample:
    """One finished, scored request.

    Args:
        prompt_id: its group's id.
        index: its index in the group.
        source: the data-source tag of its sample.
        response: the generated text.
        reward: the reward; NaN when unscored.
        failure: why the reward fell back or failed (None when it did not).
        finish_reason: ``stop`` or ``length``.
        response_tokens: response length in tokens.
        version: the policy version when it was issued.
        weights_version: the engine's weights version when it finished.
        attempt: how many times this sample had been issued before.
        token_ids: response token ids, where the engine gives them.
        logprobs: their sampling log-probabilities, where the engine gives them.
        token_mask: an episode's: True on the ``token_ids`` the policy generated, False on the
            observations' (None: every token is the policy's, a single-step sample).
        observation_images: an episode's observation images (PIL), in the order of their
            placeholders in ``token_ids``.
        stop_token_id: the id that ended the response, where a server that returns text only names
            it (vLLM's ``stop_reason``, SGLang's ``matched_stop``); None otherwise.
        result: the reward's raw result (its breakdown); not saved in checkpoints.
    """

    prompt_id: str
    index: int
    source: str
    response: str
    reward: float
    failure: str | None = None
    finish_reason: str = "stop"
    response_tokens: int = 0
    version: int = 0
    weights_version: int = 0
    attempt: int = 0
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    token_mask: list[bool] | None = None
    observation_images: list[Any] = field(default_factory=list, repr=False)
    stop_token_id: int | None = None
    result: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_completion(
        cls, completion: Completion, reward: float, *, failure: str | None = None, result: Any = None
    ) -> ScoredSample:
        """The scored form of ``completion`` (an episode's completion,
        :class:`~.episodes.EpisodeCompletion`, also gives ``token_mask`` and ``observation_images``)."""
        request = completion.request
        mask = getattr(completion, "token_mask", None)
        return cls(
            prompt_id=request.prompt_id,
            index=request.index,
            source=request.sample.source,
            response=completion.response,
            reward=reward,
            failure=failure,
            finish_reason=completion.finish_reason,
            response_tokens=completion.response_tokens,
            version=request.version,
            weights_version=completion.weights_version,
            attempt=request.attempt,
            token_ids=completion.token_ids,
            logprobs=completion.logprobs,
            token_mask=None if mask is None else list(mask),
            observation_images=list(getattr(completion, "observation_images", ())),
            stop_token_id=completion.metadata.get("stop_token_id"),
            result=result,
        )

    @property
    def scored(self) -> bool:
        """False when the reward is NaN (excluded from its group's baseline)."""
        return not math.isnan(self.reward)

    def to_state(self) -> dict[str, Any]:
        """Plain Python for a checkpoint (NaN reward as None, an episode's images as base64 PNG, so
        the state is valid JSON)."""
        state = {
            "index": self.index,
            "response": self.response,
            "reward": self.reward if self.scored else None,
            "failure": self.failure,
            "finish_reason": self.finish_reason,
            "response_tokens": self.response_tokens,
            "version": self.version,
            "weights_version": self.weights_version,
            "attempt": self.attempt,
            "token_ids": self.token_ids,
            "logprobs": self.logprobs,
        }
        if self.stop_token_id is not None:
            state["stop_token_id"] = self.stop_token_id
        if self.token_mask is not None:
            state["token_mask"] = [bool(m) for m in self.token_mask]
            state["observation_images"] = [_png_text(im) for im in self.observation_images]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], prompt_id: str, source: str) -> ScoredSample:
        """Inverse of :meth:`to_state`."""
        reward = state["reward"]
        mask = state.get("token_mask")
        return cls(
            prompt_id=prompt_id,
            index=int(state["index"]),
            source=source,
            response=state["response"],
            reward=math.nan if reward is None else float(reward),
            failure=state.get("failure"),
            finish_reason=state.get("finish_reason", "stop"),
            response_tokens=int(state.get("response_tokens", 0)),
            version=int(state.get("version", 0)),
            weights_version=int(state.get("weights_version", 0)),
            attempt=int(state.get("attempt", 0)),
            token_ids=state.get("token_ids"),
            logprobs=state.get("logprobs"),
            token_mask=None if mask is None else [bool(m) for m in mask],
            observation_images=[_png_image(text) for text in state.get("observation_images", [])],
            stop_token_id=state.get("stop_token_id"),
        )


def _png_text(image: Any) -> str:
    """A PIL image as base64 PNG text (lossless; JSON-able)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_image(text: str) -> Any:
    """Inverse of :func:`_png_text`: the image, loaded into memory."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


@dataclass
class RolloutGroup:
    """The ``group_size`` samples of one prompt of one epoch.

    Args:
        epoch: the epoch the prompt belongs to.
        prompt_index: the prompt's index in the prompt dataset.
        sample: the prompt.
        group_size: samples per prompt.
        version: the version stamp: the policy version when the group was issued (reset when a
            stale group is re-issued from scratch).
        samples: the scored samples so far, by index in the group.
        deferrals: how many steps ended with this group unfinished or unused (aborted or surplus).
        attempts: per index, how many times that sample was issued.
        completed_at: event-loop time when its last sample was scored (not saved).
    """

    epoch: int
    prompt_index: int
    sample: Sample
    group_size: int
    version: int = 0
    samples: dict[int, ScoredSample] = field(default_factory=dict)
    deferrals: int = 0
    attempts: list[int] = field(default_factory=list)
    completed_at: float | None = None

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if not self.attempts:
            self.attempts = [0] * self.group_size
        elif len(self.attempts) != self.group_size:
            raise ValueError(f"attempts needs {self.group_size} entries, got {len(self.attempts)}")

    @property
    def prompt_id(self) -> str:
        """``"<epoch>/<prompt_index>"``: the group key (unique per prompt and epoch)."""
        return f"{self.epoch}/{self.prompt_index}"

    @property
    def source(self) -> str:
        """The data-source tag of the prompt."""
        return self.sample.source

    @property
    def complete(self) -> bool:
        """True when every sample of the group is scored (or marked unscored by its reward)."""
        return len(self.samples) == self.group_size

    def missing(self) -> list[int]:
        """Indices of the samples still to generate."""
        return [i for i in range(self.group_size) if i not in self.samples]

    def scored_samples(self) -> list[ScoredSample]:
        """The finished samples in index order."""
        return [self.samples[i] for i in sorted(self.samples)]

    def restart(self, version: int) -> None:
        """Forget every sample and restamp the group with ``version`` (a stale group re-issued)."""
        self.samples.clear()
        self.version = version
        self.completed_at = None

    def to_state(self) -> dict[str, Any]:
        """Plain Python for a checkpoint; the prompt is saved by its index, not its contents."""
        return {
            "epoch": self.epoch,
            "prompt_index": self.prompt_index,
            "version": self.version,
            "deferrals": self.deferrals,
            "attempts": list(self.attempts),
            "samples": [s.to_state() for s in self.scored_samples()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], sample: Sample, group_size: int) -> RolloutGroup:
        """Inverse of :meth:`to_state`, with the prompt ``sample`` read back from the dataset."""
        attempts = [int(a) for a in state.get("attempts", [])]
        where = f"checkpointed group {state['epoch']}/{state['prompt_index']}"
        if attempts and len(attempts) != group_size:
            raise ValueError(
                f"{where} has {len(attempts)} samples but group_size is {group_size}; "
                "was the checkpoint written with another group_size?"
            )
        group = cls(
            epoch=int(state["epoch"]),
            prompt_index=int(state["prompt_index"]),
            sample=sample,
            group_size=group_size,
            version=int(state["version"]),
            deferrals=int(state.get("deferrals", 0)),
            attempts=attempts,
        )
        for item in state.get("samples", []):
            scored = ScoredSample.from_state(item, group.prompt_id, sample.source)
            if not 0 <= scored.index < group_size:
                raise ValueError(
                    f"{where}: sample index {scored.index} is outside 0..{group_size - 1}; "
                    "was the checkpoint written with another group_size?"
                )
            group.samples[scored.index] = scored
        return group
