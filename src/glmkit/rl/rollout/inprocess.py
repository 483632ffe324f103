"""The in-process rollout engine: transformers ``generate`` on the policy itself, batched (the CPU default).

GLM-5V-Turbo (section 2.4) rolls out through inference servers at scale; on one machine the policy
being trained can generate its own rollouts. :class:`InProcessEngine` (registry
``rollout_engines``, name ``transformers``) implements :class:`~.engine.RolloutEngine` on a glmkit
:class:`~glmkit.models.vlm.VisionLanguageModel` with its
:class:`~glmkit.models.vlm_processor.VLMProcessor`, or on any transformers causal LM with its
tokenizer (text-only prompts):

* **Batching.** Each :meth:`~InProcessEngine.generate` call queues its request; a batcher task
  takes the requests queued in the same event-loop turn (up to ``max_batch_size``, same sampling
  parameters) into one left-padded ``generate`` call, run in a worker thread so that completion
  callbacks (rewards) run while the next batch generates. Greedy batched output equals one-by-one
  output (left padding, position ids from the attention mask).
* **Sampling parameters.** ``temperature == 0`` is greedy; otherwise multinomial sampling at that
  temperature with nucleus ``top_p`` (``top_k`` off unless ``extra`` sets it); ``stop`` strings end
  a response (the text stops before the string, the tokens include the one that completed it);
  ``max_new_tokens`` ends it with ``finish_reason="length"``.
* **Log-probabilities.** ``Completion.logprobs`` are ``log_softmax(logits / T)`` of the sampled
  tokens under the rollout policy (``T = 1`` when greedy), from the model's raw logits: the
  distribution before ``top_p`` truncation, as vLLM reports them and as :func:`token_logprobs`
  recomputes them by teacher forcing for the policy loss.
* **Abort.** A cancelled request leaves the queue, or, when its batch is already generating,
  stops its row at the next token (a stopping criterion); a batch whose rows are all cancelled
  ends early.
* **Weights.** :meth:`~InProcessEngine.load_weights` loads a state dict into the model; when the
  engine generates with the very module being trained (the RL stage's default), an update only
  bumps ``weights_version``.

:class:`ChatPrompts` renders conversations with the policy's chat template for generation and for
teacher forcing (:meth:`ChatPrompts.teacher_forcing_batch`), so rollout and training expand image
placeholders identically (anchors_rl.md, pitfall 3); a :class:`~glmkit.scoring.Sample`'s prompt
(one user turn: the images, then the question) is the special case of a one-message conversation.
A multi-step episode (:mod:`~.episodes`) continues from a :class:`TokenPrompt`, the token ids of
everything so far and the images their placeholders stand for: :meth:`InProcessEngine.generate`
takes one, so a turn's generated tokens are never decoded and tokenized again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from glmkit.rl.rollout.engine import (
    ROLLOUT_ENGINES,
    Completion,
    RolloutEngine,
    RolloutRequest,
    SamplingParams,
)
from glmkit.scoring import Sample

#: The batch keys a glmkit VLM reads besides ``input_ids`` and ``attention_mask``.
VISUAL_KEYS = ("patches", "coords", "grid_thw", "visual_batch_index")

Prompt = Sample | Sequence[Mapping[str, Any]]
"""A prompt: a sample (its opening user turn) or a conversation (canonical messages, images as parts)."""


@dataclass(frozen=True)
class TokenPrompt:
    """A prompt given as token ids and the images its ``<|image|>`` placeholders stand for, in order.

    How an episode continues after its first turn (:mod:`~.episodes`): the ids are the opening's
    rendering, the tokens the policy generated and the observations' rendered tokens, so what the
    policy generated is never decoded and tokenized again. ``stop_token_ids`` are the ids that end
    the turn (the episode's, from :meth:`~.engine.RolloutEngine.stop_token_ids`; a server engine
    without its own sends them, this engine uses its own).
    """

    token_ids: tuple[int, ...]
    images: tuple[Any, ...] = ()
    stop_token_ids: tuple[int, ...] = ()


# ------------------------------------------------------------------------------------ prompts
class ChatPrompts:
    """A sample's prompt for the policy: chat-rendered, tokenized, its images preprocessed.

    Args:
        processor: a :class:`~glmkit.models.vlm_processor.VLMProcessor` (images and text) or a
            transformers tokenizer (text-only samples; its chat template is used when it has one).
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.multimodal = hasattr(processor, "extract_media")

    @property
    def pad_token_id(self) -> int:
        """The padding id (0 when the tokenizer has none)."""
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def stop_token_ids(self) -> list[int]:
        """Ids that end a response: the processor's turn ends, else the tokenizer's EOS."""
        if hasattr(self.processor, "stop_token_ids"):
            return list(self.processor.stop_token_ids())
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError(
                f"{type(self.tokenizer).__name__} has no eos_token_id; give the rollout engine "
                "stop_token_ids (InProcessEngine, OpenAIServerEngine)"
            )
        return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]

    def messages(self, sample: Sample) -> list[dict[str, Any]]:
        """One user turn: the sample's images, then its question."""
        content: list[dict[str, Any]] = [{"type": "image", "image": str(p)} for p in sample.images]
        content.append({"type": "text", "text": sample.question})
        return [{"role": "user", "content": content}]

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """A conversation's text by the chat template (``add_generation_prompt``: with the opening
        of the next assistant turn)."""
        if self.multimodal:
            return self.processor.apply_chat_template(
                list(messages), add_generation_prompt=add_generation_prompt
            )
        if any(isinstance(m.get("content"), list) for m in messages):
            raise ValueError(
                f"the policy's processor is a text tokenizer ({type(self.processor).__name__}); it renders "
                "string contents only, not content parts (images); give a VLMProcessor"
            )
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"{type(self.tokenizer).__name__} has no chat template; a conversation of several turns "
                "needs one (or a VLMProcessor)"
            )
        return self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=add_generation_prompt, tokenize=False
        )

    def images(self, prompt: Prompt) -> list[Any]:
        """The images of a prompt, in the order of their placeholders (none for a text tokenizer)."""
        if not self.multimodal:
            return []
        messages = self.messages(prompt) if isinstance(prompt, Sample) else prompt
        return self.processor.extract_media(messages)[0]

    def text(self, sample: Sample) -> str:
        """The prompt text with the generation prompt (the assistant turn's opening)."""
        if self.multimodal:
            return self.render(self.messages(sample))
        if sample.images:
            raise ValueError(
                f"sample {sample.id!r} has {len(sample.images)} image(s) but the policy's processor is a "
                f"text tokenizer ({type(self.processor).__name__}); give a VLMProcessor"
            )
        if getattr(self.tokenizer, "chat_template", None):
            chat = [{"role": "user", "content": sample.question}]
            return self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return sample.question

    def with_decoded_images(self, sample: Sample) -> Prompt:
        """``sample``'s one-turn conversation (:meth:`messages`) holding its images decoded
        (:meth:`images`): it encodes exactly as the sample does, without reading the images again.
        The sample itself when there is nothing to decode (no images, or a text tokenizer, which
        renders a sample differently from a conversation)."""
        if not (self.multimodal and sample.images):
            return sample
        images = iter(self.images(sample))
        return [
            {
                **m,
                "content": [
                    {**p, "image": next(images)} if p["type"] == "image" else p for p in m["content"]
                ],
            }
            for m in self.messages(sample)
        ]

    def size(self, prompt: Prompt) -> tuple[int, tuple[int, ...]]:
        """The tokens of ``prompt`` and each of its images' encoder patches, as :meth:`encode` gives
        them (its ``input_ids`` width and ``grid_thw``), from the images' sizes: no image is resized or
        cut into patches, and the images are decoded only when ``prompt`` holds paths."""
        text = self.text(prompt) if isinstance(prompt, Sample) else self.render(prompt)
        tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        images = self.images(prompt)
        # an image's marker is one special token (the processor checks), which the tokenizer splits the
        # text around: expanding it into the image's placeholders adds num_image_tokens - 1 tokens
        tokens += sum(self.processor.num_image_tokens(im.width, im.height) - 1 for im in images)
        return tokens, self.patch_counts(images)

    def encode(self, samples: Sequence[Prompt], padding_side: str = "left") -> dict[str, Tensor]:
        """A padded batch of prompts (``input_ids``, ``attention_mask`` and the visual fields);
        a prompt is a sample or a conversation (rendered with the generation prompt)."""
        texts = [self.text(s) if isinstance(s, Sample) else self.render(s) for s in samples]
        if self.multimodal:
            images = [self.images(s) for s in samples]
            return dict(self.processor(texts, images=images, padding_side=padding_side))
        encoded = self.tokenizer(
            texts, padding=True, padding_side=padding_side, return_tensors="pt", add_special_tokens=False
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def token_prompt(self, prompt: Prompt) -> TokenPrompt:
        """``prompt`` rendered and tokenized, with its images."""
        ids = self.encode([prompt])["input_ids"][0].tolist()
        return TokenPrompt(tuple(ids), tuple(self.images(prompt)))

    def encode_text(self, text: str, images: Sequence[Any] = ()) -> list[int]:
        """The token ids of a piece of rendered text, its image markers expanded for ``images``."""
        if self.multimodal:
            return self.processor([text], images=[list(images)])["input_ids"][0].tolist()
        if images:
            raise ValueError(f"a text tokenizer ({type(self.processor).__name__}) cannot encode images")
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def visual_fields(self, images: Sequence[Sequence[Any]]) -> dict[str, Tensor]:
        """The visual fields (``patches``, ``coords``, ``grid_thw``, ``visual_batch_index``) of
        each sample's images, in sample order; empty when there are none."""
        items = [(b, self.processor.preprocess_image(im)) for b, ims in enumerate(images) for im in ims]
        if not items:
            return {}
        return {
            "patches": torch.cat([it.patches for _, it in items]),  # N, P*P*C
            "coords": torch.cat([it.coords for _, it in items]),  # N, 2
            "grid_thw": torch.tensor([it.grid for _, it in items], dtype=torch.long),  # I, 3
            "visual_batch_index": torch.tensor([b for b, _ in items], dtype=torch.long),  # I
        }

    def patch_counts(self, images: Sequence[Any]) -> tuple[int, ...]:
        """The encoder patches of each image (its ``h * w`` grid), as the processor resizes it."""
        if not self.multimodal:
            return ()
        return tuple(int(h * w) for h, w in (self.processor.image_grid(im.width, im.height) for im in images))

    def encode_tokens(self, prompts: Sequence[TokenPrompt], padding_side: str = "left") -> dict[str, Tensor]:
        """A padded batch of token-id prompts with the visual fields of their images."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        longest = max(len(p.token_ids) for p in prompts)
        input_ids = torch.full((len(prompts), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(len(prompts), longest, dtype=torch.long)
        for b, prompt in enumerate(prompts):
            n = len(prompt.token_ids)
            cols = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
            input_ids[b, cols] = torch.as_tensor(prompt.token_ids, dtype=torch.long)
            attention_mask[b, cols] = 1
        if any(p.images for p in prompts) and not self.multimodal:
            raise ValueError(f"a text tokenizer ({type(self.processor).__name__}) cannot encode images")
        fields = self.visual_fields([p.images for p in prompts]) if self.multimodal else {}
        return {"input_ids": input_ids, "attention_mask": attention_mask, **fields}

    def teacher_forcing_batch(
        self,
        samples: Sequence[Prompt],
        responses: Sequence[Sequence[int]],
        masks: Sequence[Sequence[bool] | None] | None = None,
        images: Sequence[Sequence[Any]] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Prompt + response sequences for a forward pass: prompts left-padded (as in generation),
        responses right-padded after them, so every response starts at the same column.

        A multi-step episode's response holds the policy's tokens and the observations' tokens
        between them: ``masks[b]`` marks the policy's (True) and the observations' (False) tokens
        of response ``b`` (None: all the policy's), and ``images[b]`` lists the observations'
        images, whose placeholders are in the response (their visual fields follow the prompt's).

        Returns ``(batch, response_ids [B, R], response_mask [B, R])``: ``batch`` holds
        ``input_ids [B, P + R]``, ``attention_mask`` (every response token, observations included),
        the visual fields of the prompts' and responses' images, and ``prompt_length`` (``P``);
        ``R`` is the longest response; ``response_mask`` is True on the policy's tokens only, the
        ones that get a loss. :func:`token_logprobs` reads it.
        """
        if len(samples) != len(responses):
            raise ValueError(f"got {len(responses)} responses for {len(samples)} samples")
        for name, given in (("masks", masks), ("images", images)):
            if given is not None and len(given) != len(samples):
                raise ValueError(f"got {len(given)} {name} for {len(samples)} samples")
        batch = self.encode(samples, padding_side="left")
        size, longest = len(samples), max(1, max(len(r) for r in responses))
        response_ids = torch.full((size, longest), self.pad_token_id, dtype=torch.long)
        response_mask = torch.zeros(size, longest, dtype=torch.bool)
        for b, response in enumerate(responses):
            response_ids[b, : len(response)] = torch.as_tensor(list(response), dtype=torch.long)
            response_mask[b, : len(response)] = True
        prompt_length = int(batch["input_ids"].shape[1])
        batch["input_ids"] = torch.cat([batch["input_ids"], response_ids], dim=1)  # B, P + R
        batch["attention_mask"] = torch.cat([batch["attention_mask"], response_mask.long()], dim=1)
        batch["prompt_length"] = torch.tensor(prompt_length)
        if images is not None and any(images):  # the visual fields again, each sample's in order
            batch.update(
                self.visual_fields(
                    [[*self.images(s), *extra] for s, extra in zip(samples, images, strict=True)]
                )
            )
        if masks is not None:
            for b, mask in enumerate(masks):
                if mask is None:
                    continue
                if len(mask) != len(responses[b]):
                    raise ValueError(f"response {b}: {len(mask)} mask values for {len(responses[b])} tokens")
                response_mask[b, : len(mask)] = torch.as_tensor(list(mask), dtype=torch.bool)
        return batch, response_ids, response_mask


class _SampledLogprobs:
    """The log-probabilities of the tokens ``generate`` samples, one step at a time.

    Keeping every step's logits (``output_logits=True``) costs ``B x N x V`` floats: 0.75 GB for 128
    rows of 48 tokens over a 30k vocabulary, 150 GB for 256 rows of 1024 over 150k. Instead a forward
    hook on the language model takes each step's raw last-position logits (before any logits
    processor, so constrained decoding still records the model's own distribution), keeps their
    log-softmax at ``temperature`` until the next step's input names the token drawn from them, and
    keeps that one value: one ``[B, V]`` step alive at a time.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.pending: Tensor | None = None
        self.steps: list[Tensor] = []

    @contextlib.contextmanager
    def attached(self, language_model: nn.Module) -> Iterator[None]:
        """Record while the block runs (``language_model``: the module whose output has ``logits``)."""
        handle = language_model.register_forward_hook(self._hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def _hook(self, module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.pending is not None and ids is not None:  # a decoding step: its input is the last token
            self.steps.append(self.pending.gather(-1, ids[:, -1:].to(self.pending.device)).squeeze(-1))
        logits = output.logits[:, -1].float() / self.temperature
        self.pending = torch.log_softmax(logits, dim=-1)

    def logprobs(self, new: Tensor) -> Tensor:
        """``[B, N]`` log-probabilities of the ``N`` new tokens (a step ``generate`` ran past the end
        and undid is dropped)."""
        steps = self.steps[: new.shape[1]]
        if len(steps) < new.shape[1] and self.pending is not None:  # the last token's step
            steps.append(self.pending.gather(-1, new[:, len(steps) : len(steps) + 1]).squeeze(-1))
        self.pending = None
        if len(steps) != new.shape[1]:
            raise RuntimeError(
                f"recorded {len(steps)} generation steps for {new.shape[1]} new tokens: the language "
                "model's forward was not called once per step"
            )
        return torch.stack(steps, dim=1) if steps else new.new_zeros(new.shape, dtype=torch.float32)


def _logits_module(model: nn.Module) -> nn.Module:
    """The module whose forward returns each generation step's ``logits``: a glmkit VLM's language
    model (its ``generate`` runs the LM's), else the model itself (a transformers causal LM or VLM,
    whose own ``language_model`` is a backbone without the LM head)."""
    from glmkit.models.vlm import VisionLanguageModel

    return model.language_model if isinstance(model, VisionLanguageModel) else model


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a :class:`ChatPrompts` batch that the policy's forward / generate take."""
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", *VISUAL_KEYS)}


def token_logprobs(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    response_ids: Tensor,
    response_mask: Tensor,
    temperature: float = 1.0,
) -> Tensor:
    """Log-probabilities ``[B, R]`` of the response tokens by teacher forcing (0 where
    ``response_mask`` is False: padding, and an episode's observation tokens).

    ``batch`` is :meth:`ChatPrompts.teacher_forcing_batch`'s: the logits at column ``P - 1 + j``
    predict response token ``j``. Only the last ``R + 1`` columns go through the LM head
    (transformers' ``logits_to_keep``; a model without it returns every column, which is sliced).
    Logits are divided by ``temperature`` (``<= 0`` counts as 1, the greedy convention of
    :class:`InProcessEngine`). Differentiable; the caller decides on ``no_grad``.
    """
    width = response_ids.shape[1]
    prompt_length = int(batch["prompt_length"])
    logits = model(**model_inputs(batch), use_cache=False, logits_to_keep=width + 1).logits
    if logits.shape[1] == width + 1:  # B, R + 1, V: columns P - 1 .. P + R - 1
        logits = logits[:, :width]
    else:  # B, P + R, V
        logits = logits[:, prompt_length - 1 : prompt_length - 1 + width]
    scale = temperature if temperature > 0 else 1.0
    logp = torch.log_softmax(logits.float() / scale, dim=-1)  # B, R, V
    out = logp.gather(-1, response_ids.to(logits.device)[..., None]).squeeze(-1)  # B, R
    return torch.where(response_mask.to(out.device), out, torch.zeros_like(out))


# ------------------------------------------------------------------------------------ engine
@dataclass
class _Pending:
    request: RolloutRequest
    future: asyncio.Future[Completion]
    cancelled: threading.Event = field(default_factory=threading.Event)
    prompt: TokenPrompt | None = None  # None: the request's sample


class _RowStop:
    """A stopping criterion: a row stops at a stop string or when its request is cancelled."""

    def __init__(self, items: list[_Pending], prompt_length: int, stop: tuple[str, ...], decode: Any) -> None:
        self.items, self.prompt_length, self.stop, self.decode = items, prompt_length, stop, decode

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs: Any) -> Tensor:
        done = torch.tensor([item.cancelled.is_set() for item in self.items], device=input_ids.device)
        if self.stop:
            for b in range(input_ids.shape[0]):
                if not done[b]:
                    text = self.decode(input_ids[b, self.prompt_length :].tolist())
                    done[b] = any(s in text for s in self.stop)
        return done


def _cuda_index(device: torch.device) -> list[int]:
    """The CUDA device whose generator state ``fork_rng`` keeps (none on the CPU)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _params_key(params: SamplingParams) -> str:
    return repr(params)  # frozen dataclass with a dict field: repr is its value


@ROLLOUT_ENGINES.register("transformers")
class InProcessEngine(RolloutEngine):
    """Batched transformers generation on an in-process policy (module docstring).

    Args:
        model: the policy (a glmkit VLM or a transformers causal LM); may be attached later with
            :meth:`attach` (the RL stage attaches the module it trains).
        processor: its :class:`~glmkit.models.vlm_processor.VLMProcessor` or tokenizer.
        max_batch_size: most requests in one ``generate`` call.
        in_thread: run ``generate`` in a worker thread (the event loop keeps scoring completions);
            False runs it in the loop (simpler to debug).
        stop_token_ids: ids that end a response (default: the processor's turn ends, else EOS;
            :meth:`~.engine.RolloutEngine.stop_token_ids` resolves them).
        seed: sampling seed; batch ``k`` samples with a generator state derived from ``(seed, k)``.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        processor: Any = None,
        *,
        max_batch_size: int = 16,
        in_thread: bool = True,
        stop_token_ids: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(stop_token_ids)
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = int(max_batch_size)
        self.in_thread = in_thread
        self.seed = int(seed)
        self.model: nn.Module | None = None
        self.prompts: ChatPrompts | None = None
        self.batches = 0  # generate calls so far (the sampling seed's counter)
        self.batch_sizes: list[int] = []  # requests per generate call
        self.batch_tokens: list[int] = []  # new tokens per generate call (its longest row)
        self._queue: list[_Pending] = []
        self._batcher: tuple[asyncio.AbstractEventLoop, asyncio.Task[None], asyncio.Event] | None = None
        if model is not None:
            self.attach(model, processor)

    def attach(self, model: nn.Module, processor: Any) -> None:
        """Generate with ``model`` and its ``processor`` from now on."""
        if processor is None:
            raise ValueError("InProcessEngine needs the policy's processor (a VLMProcessor or a tokenizer)")
        self.model = model
        self.prompts = ChatPrompts(processor)

    # -- RolloutEngine ---------------------------------------------------------------------------
    async def generate(self, request: RolloutRequest, prompt: TokenPrompt | None = None) -> Completion:
        """Queue ``request`` for the next batch and wait for its completion; ``prompt`` (an
        episode's later turn) replaces the request's sample as the prompt."""
        if self.model is None or self.prompts is None:
            raise RuntimeError("InProcessEngine has no model; call attach(model, processor) first")
        loop = asyncio.get_running_loop()
        item = _Pending(request, loop.create_future(), prompt=prompt)
        self._queue.append(item)
        self._wake(loop)
        try:
            return await item.future
        except asyncio.CancelledError:
            item.cancelled.set()  # leaves the queue, or stops its row in the batch generating now
            if item in self._queue:
                self._queue.remove(item)
            raise

    async def load_weights(self, weights: Any) -> None:
        """Load a state dict into the model (strict)."""
        if self.model is None:
            raise RuntimeError("InProcessEngine has no model to load weights into")
        if not isinstance(weights, Mapping):
            raise TypeError(f"InProcessEngine loads a state dict, got {type(weights).__name__}")
        self.model.load_state_dict(weights, strict=True)

    async def close(self) -> None:
        """Abort everything and stop the batcher."""
        await super().close()
        if self._batcher is not None:
            self._batcher[1].cancel()
            await asyncio.gather(self._batcher[1], return_exceptions=True)
            self._batcher = None

    # -- batching ------------------------------------------------------------------------------
    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._batcher is None or self._batcher[0] is not loop or self._batcher[1].done():
            event = asyncio.Event()
            task = loop.create_task(self._run_batches(event), name="in-process rollout batcher")
            self._batcher = (loop, task, event)
        self._batcher[2].set()

    async def _run_batches(self, event: asyncio.Event) -> None:
        while True:
            await event.wait()
            event.clear()
            await asyncio.sleep(0)  # let the requests submitted in this turn queue up
            while self._queue:
                items = self._take()
                if not items:
                    continue
                try:
                    if self.in_thread:
                        results = await asyncio.to_thread(self._generate_batch, items)
                    else:
                        results = self._generate_batch(items)
                except Exception as exc:  # the whole batch failed: every request finishes with an error
                    results = [exc] * len(items)
                for item, result in zip(items, results, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
                await asyncio.sleep(0)  # completion callbacks run before the next batch is taken

    def _take(self) -> list[_Pending]:
        """Up to ``max_batch_size`` live requests with the first one's sampling parameters."""
        self._queue = [i for i in self._queue if not i.cancelled.is_set()]
        if not self._queue:
            return []
        key = _params_key(self._queue[0].request.params)
        items = [i for i in self._queue if _params_key(i.request.params) == key][: self.max_batch_size]
        taken = {id(i) for i in items}
        self._queue = [i for i in self._queue if id(i) not in taken]
        return items

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[nn.Module]:
        assert self.model is not None
        was_training = self.model.training
        self.model.eval()
        try:
            yield self.model
        finally:
            self.model.train(was_training)

    def _generate_batch(self, items: list[_Pending]) -> list[Completion | Exception]:
        """One ``generate`` call (in the worker thread); a prompt that cannot be encoded fails alone."""
        assert self.prompts is not None and self.model is not None
        results: list[Completion | Exception | None] = [None] * len(items)
        live: list[int] = []
        for i, item in enumerate(items):
            try:  # encoded alone first, so that one bad prompt (a missing image) fails alone
                self._encode([item])
                live.append(i)
            except Exception as exc:
                results[i] = exc
        if live:
            batch_items = [items[i] for i in live]
            for i, completion in zip(live, self._generate(batch_items), strict=True):
                results[i] = completion
        return [r if r is not None else RuntimeError("no result") for r in results]

    def _encode(self, items: list[_Pending]) -> dict[str, Tensor]:
        """The left-padded prompts of a batch: rendered from the samples, or, when any request
        continues an episode, as token ids (the others' rendered and tokenized alone)."""
        assert self.prompts is not None
        if all(i.prompt is None for i in items):
            return self.prompts.encode([i.request.sample for i in items])
        prompts = [i.prompt or self.prompts.token_prompt(i.request.sample) for i in items]
        return self.prompts.encode_tokens(prompts)

    def _generate(self, items: list[_Pending]) -> list[Completion]:
        assert self.prompts is not None and self.model is not None
        params = items[0].request.params
        prompts = self.prompts
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in self._encode(items).items()}
        prompt_length = int(batch["input_ids"].shape[1])
        stop_ids = self.stop_token_ids(prompts)
        tokenizer = prompts.tokenizer
        greedy = params.temperature == 0
        sampling: dict[str, Any] = (
            {"do_sample": False}
            if greedy
            else {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        )
        sampling.update(params.extra)
        criterion = _RowStop(items, prompt_length, params.stop, lambda ids: tokenizer.decode(ids))
        self.batch_sizes.append(len(items))
        recorder = _SampledLogprobs(1.0 if greedy else params.temperature)
        with (
            self._eval_mode() as model,
            torch.no_grad(),
            torch.random.fork_rng(devices=_cuda_index(device)),
            recorder.attached(_logits_module(model)),
        ):
            torch.manual_seed(self.seed * 1_000_003 + self.batches)
            self.batches += 1
            out = model.generate(
                **model_inputs(batch),
                max_new_tokens=params.max_new_tokens,
                eos_token_id=stop_ids,
                pad_token_id=prompts.pad_token_id,
                return_dict_in_generate=True,
                stopping_criteria=[criterion],
                **sampling,
            )
        new = out.sequences[:, prompt_length:]  # B, N
        self.batch_tokens.append(int(new.shape[1]))
        logp = recorder.logprobs(new)  # B, N
        version = self.weights_version
        return [
            self._completion(item, new[b].tolist(), logp[b].tolist(), stop_ids, version)
            for b, item in enumerate(items)
        ]

    def _completion(
        self, item: _Pending, ids: list[int], logps: list[float], stop_ids: list[int], version: int
    ) -> Completion:
        """Cut a row at its first stop token or stop string; decode the text before it."""
        assert self.prompts is not None
        params = item.request.params
        tokenizer = self.prompts.tokenizer
        stops = set(stop_ids)
        end = next((i + 1 for i, t in enumerate(ids) if t in stops), None)
        finish = "stop" if end is not None else "length"
        ids = ids[:end] if end is not None else ids[: params.max_new_tokens]
        text_ids = ids[:-1] if finish == "stop" else ids
        text = tokenizer.decode(text_ids, skip_special_tokens=False)
        if params.stop:  # the shortest prefix whose text holds a stop string ends the response
            for k in range(1, len(text_ids) + 1):
                partial = tokenizer.decode(text_ids[:k], skip_special_tokens=False)
                hits = [partial.index(s) for s in params.stop if s in partial]
                if hits:
                    ids, text, finish = ids[:k], partial[: min(hits)], "stop"
                    break
        return Completion(
            item.request,
            text,
            finish_reason=finish,
            response_tokens=len(ids),
            weights_version=version,
            token_ids=ids,
            logprobs=logps[: len(ids)],
        )


__all__ = ["ChatPrompts", "InProcessEngine", "Prompt", "TokenPrompt", "model_inputs", "token_logprobs"]
