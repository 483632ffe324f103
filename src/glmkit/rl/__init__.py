"""Multi-task multimodal reinforcement learning (GLM-5V-Turbo report sections 2.3 and 2.4).

- :mod:`~glmkit.rl.metrics`: per-data-source and overall rollout metrics (mean reward, unbiased
  pass@k, response length, aborts, deferrals, verifier failures) as one flat dict for
  ``LightningModule.log_dict``;
- :mod:`~glmkit.rl.algorithms`: advantage estimators (registry ``rl_algorithms``: GRPO, RLOO),
  dynamic sampling and the relative visual reward for UI-to-code.

The policy losses live in :mod:`glmkit.losses.policy` and the joint text/ViT micro-batch packing
in :mod:`glmkit.data.packing`. Nothing here imports Lightning; this package imports no submodule,
so ``import glmkit.rl`` costs nothing.
"""
