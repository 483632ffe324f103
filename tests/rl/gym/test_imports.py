"""The gym imports without Lightning, and ``import glmkit.rl.gym`` alone loads none of its modules."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import glmkit.rl.gym as gym
assert "glmkit.rl.gym.environment" not in sys.modules
from glmkit.registry import import_builtins
report = import_builtins("glmkit.rl.gym")
assert not report.failed, report.failed
assert len(report.loaded) >= 15, report.loaded
gym.TaskEnvironment, gym.TaskMix, gym.build_reward_system
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning"))
assert not loaded, loaded
"""


def test_the_gym_imports_without_lightning() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
