"""Rollout: engines, completion callbacks, early abort with a prompt cache, the asynchronous pipeline.

GLM-5V-Turbo, section 2.4 ("infrastructure"): each finished request goes straight to the reward
system; a step stops early once enough groups are complete, and the aborted prompts are cached
and reused; batch construction overlaps with the next rollout. The pieces, one per module:

- :mod:`~.engine`: :class:`RolloutEngine` (registry ``rollout_engines``) with
  :class:`RolloutRequest`, :class:`SamplingParams` and :class:`Completion`: submit with a
  completion callback, abort, weight versions;
- :mod:`~.simulated`: :class:`SimulatedEngine`, seeded log-normal latencies, no model;
- :mod:`~.inprocess`: :class:`InProcessEngine` (``transformers``), batched generation on the
  in-process policy, and :class:`ChatPrompts`, a sample's prompt (or a conversation) for generation
  and teacher forcing;
- :mod:`~.episodes`: :class:`EpisodeRunner`, multi-step (tool-using) samples run as episodes of the
  gym's environment, one rollout request each, token in and token out (:class:`EpisodeTrace`);
- :mod:`~.server`: :class:`OpenAIServerEngine` (``openai_server``), rollouts on a vLLM / SGLang /
  OpenAI-compatible server with policy weight push;
- :mod:`~.reward`: :class:`CompletionReward`, the per-request reward protocol the reward system
  satisfies, and :class:`RewardFunction` for a plain function;
- :mod:`~.group`: :class:`ScoredSample` and :class:`RolloutGroup`, the records and their
  checkpoint form; :mod:`~.batch`: :class:`RolloutBatch`, one step's result;
- :mod:`~.abort`: :class:`EarlyAbort`, stop by completed-group count or time;
- :mod:`~.cache`: :class:`PromptCache`, deferred groups, version-stamped, capped in age;
- :mod:`~.scheduler`: :class:`RolloutScheduler`, one step: issue, score on completion, stop, cache;
- :mod:`~.pipeline`: :class:`RolloutPipeline`, rollouts running ahead of training;
- :mod:`~.virtual_time`: :func:`run_virtual`, an event loop on a virtual clock for exact tests.

Nothing here imports Lightning; only :mod:`~.inprocess` runs a model.
"""

from glmkit.rl.rollout.abort import EarlyAbort
from glmkit.rl.rollout.batch import RolloutBatch
from glmkit.rl.rollout.cache import PromptCache
from glmkit.rl.rollout.engine import (
    ROLLOUT_ENGINES,
    Completion,
    RolloutEngine,
    RolloutRequest,
    SamplingParams,
)
from glmkit.rl.rollout.episodes import EpisodeBuilder, EpisodeRunner, EpisodeTrace
from glmkit.rl.rollout.group import RolloutGroup, ScoredSample
from glmkit.rl.rollout.inprocess import ChatPrompts, InProcessEngine, TokenPrompt
from glmkit.rl.rollout.pipeline import RolloutPipeline
from glmkit.rl.rollout.reward import CompletionReward, RewardFunction, reward_value, score_completion
from glmkit.rl.rollout.scheduler import RolloutScheduler
from glmkit.rl.rollout.server import OpenAIServerEngine, VLLMWeightLoader, WeightUpdateError
from glmkit.rl.rollout.simulated import SimulatedEngine
from glmkit.rl.rollout.virtual_time import VirtualTimeLoop, run_virtual

__all__ = [
    "ROLLOUT_ENGINES",
    "ChatPrompts",
    "Completion",
    "CompletionReward",
    "EarlyAbort",
    "EpisodeBuilder",
    "EpisodeRunner",
    "EpisodeTrace",
    "InProcessEngine",
    "OpenAIServerEngine",
    "PromptCache",
    "RewardFunction",
    "RolloutBatch",
    "RolloutEngine",
    "RolloutGroup",
    "RolloutPipeline",
    "RolloutRequest",
    "RolloutScheduler",
    "SamplingParams",
    "ScoredSample",
    "SimulatedEngine",
    "TokenPrompt",
    "VLLMWeightLoader",
    "WeightUpdateError",
    "VirtualTimeLoop",
    "reward_value",
    "run_virtual",
    "score_completion",
]
