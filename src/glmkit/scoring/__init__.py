"""The scoring seam: what evaluation metrics implement and RL rewards call.

- :class:`~glmkit.scoring.verifier.Verifier`: ``score(sample, response, metadata=None)`` and
  ``await ascore(...)``, returning :class:`~glmkit.scoring.verifier.Scores`;
- :class:`~glmkit.scoring.sample.Sample`: the item a response is scored against, with its
  ``category`` and data ``source`` tags, and the JSONL reader (:func:`load_samples`).

The built-in verifiers are the evaluation metrics (registry ``metrics``, declared by
:mod:`glmkit.eval.metrics`). This package imports neither them nor torch nor Lightning.
"""

from glmkit.scoring.sample import DEFAULT_TAG, DataError, Sample, load_samples, parse_sample
from glmkit.scoring.verifier import Scores, Verifier

__all__ = ["DEFAULT_TAG", "DataError", "Sample", "Scores", "Verifier", "load_samples", "parse_sample"]
