"""``python -m glmkit.agent.skills``: the same as ``glmkit tools export-skills``."""

import sys

from glmkit.agent.skills.cli import main

sys.exit(main())
