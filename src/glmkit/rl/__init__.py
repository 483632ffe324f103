"""Multi-task multimodal reinforcement learning (GLM-5V-Turbo report sections 2.3 and 2.4).

- :mod:`~glmkit.rl.metrics`: per-data-source and overall rollout metrics (mean reward, unbiased
  pass@k, response length, aborts, deferrals, verifier failures) as one flat dict for
  ``LightningModule.log_dict``;
- :mod:`~glmkit.rl.algorithms`: advantage estimators (registry ``rl_algorithms``: GRPO, RLOO),
  dynamic sampling and the relative visual reward for UI-to-code;
- :mod:`~glmkit.rl.rewards`: the reward system: eval's metrics as rule verifiers (inline or in
  killable worker processes), model judges asynchronously under a concurrency limit, aggregation
  strategies, and per-source failure policies;
- :mod:`~glmkit.rl.rollout`: rollout engines, completion callbacks, early abort and the cache of
  aborted prompts;
- :mod:`~glmkit.rl.gym`: the task categories (procedural, with exact verifiers), their weighted mix
  and the single- and multi-step environment built on the agent's turn logic.

The policy losses live in :mod:`glmkit.losses.policy` and the joint text/ViT micro-batch packing
in :mod:`glmkit.data.packing`. Nothing here imports Lightning; this package imports no submodule,
so ``import glmkit.rl`` costs nothing.
"""
