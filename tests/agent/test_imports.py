"""``glmkit.agent`` imports without Lightning, torch or transformers (DESIGN: tools/agent stay light)."""

from __future__ import annotations

import subprocess
import sys


def test_agent_imports_without_lightning_torch_or_mcp():
    code = (
        "import sys, glmkit.agent, glmkit.agent.skills, glmkit.agent.mcp_server\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', 'torch', "
        "'transformers', 'mcp'})\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
